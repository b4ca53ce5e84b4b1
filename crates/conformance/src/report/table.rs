//! The readable report: one line per check, then each failure with its requirement, reason and
//! transcript.

use crate::runner::Report;
use crate::verdict::Outcome;
use std::fmt::Write;

pub fn table(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "FHIRcast 3.0.0 conformance of {} (topic {})",
        report.hub_url, report.topic
    );
    let mut area = None;
    for check in report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Skipped)
    {
        if area != Some(check.area) {
            let _ = writeln!(out, "\n{}", check.area.label());
            area = Some(check.area);
        }
        let reason = match check.outcome {
            Outcome::NotApplicable | Outcome::Fail => format!("  {}", one_line(&check.reason)),
            _ => String::new(),
        };
        let _ = writeln!(
            out,
            "  {:>3}  {:<7} {:<15}{}",
            check.number,
            check.outcome.label(),
            check.level.label(),
            reason
        );
    }
    let failures: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    if !failures.is_empty() {
        let _ = writeln!(out, "\nFailures");
        for check in failures {
            let _ = writeln!(
                out,
                "\n{} [{}] {}",
                check.number,
                check.level.label(),
                check.requirement
            );
            let _ = writeln!(out, "  why: {}", check.reason);
            for line in &check.transcript {
                for (i, part) in line.lines().enumerate() {
                    let _ = writeln!(out, "  {}{part}", if i == 0 { "" } else { "  " });
                }
            }
        }
    }
    if let Some(open) = &report.left_in_context {
        let _ = writeln!(
            out,
            "\nWARNING: a {open} context is still open on the topic after the run"
        );
    }
    let _ = writeln!(
        out,
        "\n{} passed, {} failed ({} of them SHALL), {} not applicable, {} skipped, in {:.1} s",
        report.count(Outcome::Pass),
        report.count(Outcome::Fail),
        report
            .checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail && c.level.is_mandatory())
            .count(),
        report.count(Outcome::NotApplicable),
        report.count(Outcome::Skipped),
        report.milliseconds as f64 / 1000.0
    );
    out
}

fn one_line(text: &str) -> String {
    let line = text.lines().next().unwrap_or_default();
    if line.chars().count() > 110 {
        format!("{}…", line.chars().take(110).collect::<String>())
    } else {
        line.to_owned()
    }
}
