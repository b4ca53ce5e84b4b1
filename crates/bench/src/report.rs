//! The results table: medians over runs, ratios to the baseline, and each target met or not.

use crate::client::Delivery;
use crate::servers::Machine;
use crate::stats::{Latency, median};
use crate::{Each, Plan, Run, System};

/// One line of the table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Row {
    pub measure: String,
    pub unit: &'static str,
    pub baseline: Option<f64>,
    pub hub: Option<f64>,
    pub lockstepd: Option<f64>,
    /// Median over runs of hub / baseline.
    pub hub_ratio: Option<f64>,
    /// Median over runs of lockstepd / baseline.
    pub lockstepd_ratio: Option<f64>,
    pub target: String,
    pub hub_met: Option<bool>,
    pub lockstepd_met: Option<bool>,
}

enum Goal {
    None,
    RatioAtMost(f64),
    RatioAtLeast(f64),
    Below(f64),
    AtMost(f64),
}

impl Goal {
    fn text(&self, unit: &str) -> String {
        match self {
            Goal::None => String::new(),
            Goal::RatioAtMost(x) => format!("≤ {x}× baseline"),
            Goal::RatioAtLeast(x) => format!("≥ {x}× baseline"),
            Goal::Below(x) => format!("< {x} {unit}"),
            Goal::AtMost(x) => format!("≤ {x} {unit}").trim_end().to_owned(),
        }
    }

    fn met(&self, value: Option<f64>, ratio: Option<f64>) -> Option<bool> {
        match self {
            Goal::None => None,
            Goal::RatioAtMost(x) => ratio.map(|r| r <= *x),
            Goal::RatioAtLeast(x) => ratio.map(|r| r >= *x),
            Goal::Below(x) => value.map(|v| v < *x),
            Goal::AtMost(x) => value.map(|v| v <= *x),
        }
    }
}

fn finite(x: f64) -> Option<f64> {
    x.is_finite().then_some(x)
}

struct Builder<'a> {
    runs: &'a [Run],
    rows: Vec<Row>,
}

impl Builder<'_> {
    /// A row from a figure of each run (NaN where a system has none); `scale` converts units
    /// after the medians are taken.
    fn row(
        &mut self,
        measure: String,
        unit: &'static str,
        goal: Goal,
        scale: f64,
        of: impl Fn(&Run) -> Each<f64>,
    ) {
        let each: Vec<Each<f64>> = self.runs.iter().map(of).collect();
        let value = |system: System| finite(median(each.iter().map(|e| *e.get(system))) * scale);
        let ratio = |system: System| {
            finite(median(
                each.iter().map(|e| e.get(system) / e.get(System::Baseline)),
            ))
        };
        let (hub, lockstepd) = (value(System::Hub), value(System::Lockstepd));
        let (hub_ratio, lockstepd_ratio) = (ratio(System::Hub), ratio(System::Lockstepd));
        self.rows.push(Row {
            target: goal.text(unit),
            hub_met: goal.met(hub, hub_ratio),
            lockstepd_met: goal.met(lockstepd, lockstepd_ratio),
            measure,
            unit,
            baseline: value(System::Baseline),
            hub,
            lockstepd,
            hub_ratio,
            lockstepd_ratio,
        });
    }

    fn latency(
        &mut self,
        what: &str,
        goals: [Goal; 3],
        of: impl Fn(&Run) -> Each<Option<Latency>>,
    ) {
        for (goal, (name, pick)) in goals.into_iter().zip([
            ("p50", (|l: &Latency| l.p50_us) as fn(&Latency) -> f64),
            ("p99", |l| l.p99_us),
            ("max", |l| l.max_us),
        ]) {
            // A target in milliseconds shows its row in milliseconds.
            let (unit, scale) = if matches!(goal, Goal::Below(_)) {
                ("ms", 1e-3)
            } else {
                ("µs", 1.0)
            };
            self.row(format!("{what} {name}"), unit, goal, scale, |r| {
                of(r).map(|l| l.as_ref().map_or(f64::NAN, pick))
            });
        }
    }
}

pub fn rows(plan: &Plan, runs: &[Run]) -> Vec<Row> {
    let mut b = Builder {
        runs,
        rows: Vec::new(),
    };
    // A reading room has one to ten apps: the hub must cost next to nothing there as well as
    // at fifty or two hundred.
    for (i, &n) in plan.fanout_subscribers.iter().enumerate() {
        if runs.iter().any(|r| r.fanout.len() <= i) {
            break;
        }
        b.latency(
            &format!("fan-out N={n}"),
            [Goal::RatioAtMost(1.2), Goal::RatioAtMost(1.5), Goal::None],
            |r| r.fanout[i].1,
        );
    }
    for &n in &plan.throughput_subscribers {
        if runs
            .iter()
            .all(|r| r.throughput.iter().all(|(m, _)| *m != n))
        {
            continue;
        }
        b.row(
            format!("throughput N={n}"),
            "deliveries/s",
            Goal::RatioAtLeast(0.7),
            1.0,
            |r| {
                r.throughput
                    .iter()
                    .find(|(m, _)| *m == n)
                    .map_or(Each::default(), |(_, t)| *t)
                    .map(|t| t.unwrap_or(f64::NAN))
            },
        );
    }
    b.latency(
        &format!("{} subscribers, one topic", plan.scale_subscribers),
        [Goal::None, Goal::Below(10.0), Goal::None],
        |r| r.scale,
    );
    b.latency(
        &format!("{} topics × {}", plan.topics, plan.subscribers_per_topic),
        [Goal::None, Goal::None, Goal::None],
        |r| r.topics,
    );
    // The enterprise link, lockstepd only: set beside its own fan-out N=1 above.
    b.latency(
        "relay, site → app here (N=1)",
        [Goal::None, Goal::None, Goal::None],
        |r| Each {
            baseline: None,
            hub: None,
            lockstepd: r.relay_in,
        },
    );
    b.latency(
        "relay, app here → site (N=1)",
        [Goal::None, Goal::None, Goal::None],
        |r| Each {
            baseline: None,
            hub: None,
            lockstepd: r.relay_out,
        },
    );
    // Memory and start-up: absolute targets, the baseline's figures beside them for scale.
    // Decimal units (1 MB = 10⁶ bytes), the stricter reading of the targets.
    b.row("idle RSS".into(), "MB", Goal::AtMost(20.0), 1.0, |r| {
        r.idle_rss_kib
            .map(|kib| median(kib.iter().map(|&k| k as f64)) * 1024.0 / 1e6)
    });
    b.row(
        "RSS per idle subscriber".into(),
        "KB",
        Goal::AtMost(64.0),
        1e-3,
        |r| r.rss_per_subscriber.map(|b| b.unwrap_or(f64::NAN)),
    );
    b.row(
        "start to first answer".into(),
        "ms",
        Goal::AtMost(100.0),
        1.0,
        |r| Each {
            baseline: f64::NAN,
            hub: f64::NAN,
            lockstepd: median(r.ready_ms.iter().copied()),
        },
    );
    // Correctness is a total over every phase of every run, not a median.
    for (measure, count) in [
        (
            "deliveries lost (all runs)",
            (|d: &Delivery| d.lost) as fn(&Delivery) -> u64,
        ),
        ("deliveries duplicated or out of order (all runs)", |d| {
            d.disorder
        }),
        ("subscribers dropped (all runs)", |d| d.dropped),
    ] {
        let total = |system: System| {
            runs.iter()
                .map(|r| count(r.delivery.get(system)))
                .sum::<u64>() as f64
        };
        let (hub, lockstepd) = (total(System::Hub), total(System::Lockstepd));
        b.rows.push(Row {
            measure: measure.into(),
            unit: "",
            baseline: Some(total(System::Baseline)),
            hub: Some(hub),
            lockstepd: Some(lockstepd),
            hub_ratio: None,
            lockstepd_ratio: None,
            target: "0".into(),
            hub_met: Some(hub == 0.0),
            lockstepd_met: Some(lockstepd == 0.0),
        });
    }
    b.rows
}

fn figure(value: f64) -> String {
    if !value.is_finite() {
        "–".into()
    } else if value.abs() >= 1000.0 {
        // Thousands separated, so that 123456 reads at a glance.
        let whole = value.round() as i64;
        let digits = whole.abs().to_string();
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push(',');
            }
            out.push(c);
        }
        if whole < 0 { format!("-{out}") } else { out }
    } else if value.abs() >= 100.0 || value.fract() == 0.0 {
        format!("{value:.0}")
    } else {
        format!("{value:.1}")
    }
}

/// The table as Markdown, headed by the machine and the plan.
pub fn table(machine: &Machine, plan: &Plan, rows: &[Row]) -> String {
    let mut out = format!(
        "Machine: {} ({} cores, {} GiB, Linux {}; 1-min load {:.2} at start)\n\
         Runs: {}. Figures are medians over runs; a ratio is the median of the per-run ratios \
         to the baseline; met is hub / lockstepd.\n\n\
         | measure | unit | baseline | hub | lockstepd | hub ratio | lockstepd ratio | target | met |\n\
         |---|---|---:|---:|---:|---:|---:|---|---|\n",
        machine.cpu,
        machine.cores,
        machine.memory_gib,
        machine.kernel,
        machine.load_at_start,
        plan.runs
    );
    let value = |v: Option<f64>| v.map_or("–".into(), figure);
    let ratio = |r: Option<f64>| r.map_or(String::new(), |r| format!("{r:.2}×"));
    let met = |m: Option<bool>| match m {
        Some(true) => "yes",
        Some(false) => "**no**",
        None => "–",
    };
    for row in rows {
        let met = match (row.hub_met, row.lockstepd_met) {
            (None, None) => String::new(),
            (h, l) => format!("{} / {}", met(h), met(l)),
        };
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            row.measure,
            row.unit,
            value(row.baseline),
            value(row.hub),
            value(row.lockstepd),
            ratio(row.hub_ratio),
            ratio(row.lockstepd_ratio),
            row.target,
            met
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn figures_read_well() {
        assert_eq!(figure(1234567.4), "1,234,567");
        assert_eq!(figure(123.4), "123");
        assert_eq!(figure(12.34), "12.3");
        assert_eq!(figure(f64::NAN), "–");
    }
}
