//! JUnit XML: one test case per check, named by number, in one suite per spec area; a failure
//! carries the reason and the transcript, a not-applicable check is skipped with its reason.

use crate::runner::Report;
use crate::verdict::Outcome;
use std::fmt::Write;

pub fn junit(report: &Report) -> String {
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let ran: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.outcome != Outcome::Skipped)
        .collect();
    let _ = writeln!(
        out,
        "<testsuites name=\"FHIRcast 3.0.0 conformance\" tests=\"{}\" failures=\"{}\" time=\"{:.3}\">",
        ran.len(),
        report.count(Outcome::Fail),
        report.milliseconds as f64 / 1000.0
    );
    let mut areas: Vec<_> = ran.iter().map(|c| c.area).collect();
    areas.dedup();
    for area in areas {
        let cases: Vec<_> = ran.iter().filter(|c| c.area == area).collect();
        let failures = cases.iter().filter(|c| c.outcome == Outcome::Fail).count();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\">",
            escape(area.label()),
            cases.len()
        );
        for check in cases {
            let _ = write!(
                out,
                "    <testcase classname=\"fhircast.{}\" name=\"{} [{}] {}\" time=\"{:.3}\"",
                escape(&format!("{:?}", check.area)),
                check.number,
                escape(check.level.label()),
                escape(check.requirement),
                check.milliseconds as f64 / 1000.0
            );
            match check.outcome {
                Outcome::Fail => {
                    let _ = writeln!(
                        out,
                        ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                        escape(&check.reason),
                        escape(&check.transcript.join("\n"))
                    );
                }
                Outcome::NotApplicable => {
                    let _ = writeln!(
                        out,
                        ">\n      <skipped message=\"{}\"/>\n    </testcase>",
                        escape(&check.reason)
                    );
                }
                _ => out.push_str("/>\n"),
            }
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// XML text and attribute escaping; control characters XML 1.0 cannot carry are dropped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if (c as u32) < 0x20 => {}
            c => out.push(c),
        }
    }
    out
}
