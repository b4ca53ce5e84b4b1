//! What a check concludes, and how it says so.

use serde::Serialize;

/// Why a check did not pass: it failed, or it cannot apply to this hub.
#[derive(Debug, Clone)]
pub enum Finding {
    /// The hub did not do what the requirement says.
    Fail(String),
    /// The requirement does not apply here, or cannot be observed (and why).
    NotApplicable(String),
}

impl Finding {
    pub fn fail(why: impl Into<String>) -> Finding {
        Finding::Fail(why.into())
    }

    pub fn not_applicable(why: impl Into<String>) -> Finding {
        Finding::NotApplicable(why.into())
    }

    /// The checker could not do a step it needs; reported as a failure of the check, since a
    /// conforming hub lets an authorised client do it.
    pub fn setup(why: impl Into<String>) -> Finding {
        Finding::Fail(format!("could not set the check up: {}", why.into()))
    }
}

/// A check's body: `Ok` is a pass.
pub type CheckResult = Result<(), Finding>;

/// Fails with `why` unless `condition` holds.
pub fn ensure(condition: bool, why: impl FnOnce() -> String) -> CheckResult {
    if condition {
        Ok(())
    } else {
        Err(Finding::Fail(why()))
    }
}

/// The outcome of one check in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    NotApplicable,
    /// Left out by `--only` / `--skip`.
    Skipped,
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::NotApplicable => "n/a",
            Outcome::Skipped => "skipped",
        }
    }
}
