//! `lockstepd doctor`: what site IT checks first when a workstation misbehaves, each check a
//! line with ok / warning / problem and what to do. It reads; it changes nothing (it does not
//! create a missing database, move a damaged one aside, or take the hub's port).

mod bundle;
mod checks;
mod holder;

pub use bundle::write_bundle;
pub use checks::examine;

use serde::Serialize;
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Warning,
    Problem,
}

impl Health {
    pub fn label(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Warning => "warning",
            Health::Problem => "problem",
        }
    }
}

/// One line of the doctor's report.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// What was checked, e.g. "port".
    pub check: &'static str,
    pub health: Health,
    /// What was found.
    pub detail: String,
    /// What to do, where something is wrong.
    pub advice: Option<String>,
}

impl Finding {
    pub(crate) fn ok(check: &'static str, detail: impl Into<String>) -> Finding {
        Finding {
            check,
            health: Health::Ok,
            detail: detail.into(),
            advice: None,
        }
    }

    pub(crate) fn warning(
        check: &'static str,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Finding {
        Finding::with_advice(check, Health::Warning, detail.into(), advice.into())
    }

    pub(crate) fn problem(
        check: &'static str,
        detail: impl Into<String>,
        advice: impl Into<String>,
    ) -> Finding {
        Finding::with_advice(check, Health::Problem, detail.into(), advice.into())
    }

    fn with_advice(check: &'static str, health: Health, detail: String, advice: String) -> Finding {
        Finding {
            check,
            health,
            detail,
            advice: Some(advice),
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:<8} {:<16} {}",
            self.health.label(),
            self.check,
            self.detail
        )?;
        if let Some(advice) = &self.advice {
            write!(f, "\n{:<25} → {advice}", "")?;
        }
        Ok(())
    }
}

/// The report as text, one finding per line, then a summary line.
pub fn render(findings: &[Finding]) -> String {
    let mut out: String = findings.iter().map(|f| format!("{f}\n")).collect();
    let count = |h: Health| findings.iter().filter(|f| f.health == h).count();
    out.push_str(&format!(
        "\n{} ok, {} warnings, {} problems\n",
        count(Health::Ok),
        count(Health::Warning),
        count(Health::Problem)
    ));
    out
}
