//! Runs the selected checks one after another, each tidied up after, and gathers the report.

use crate::catalogue::{self, Area, Level};
use crate::checks;
use crate::probe::{Probe, SetupError, Target};
use crate::selection::Selection;
use crate::verdict::{Finding, Outcome};
use serde::Serialize;
use std::time::{Duration, Instant};

/// No check may take longer than this (a hub that hangs fails the check, not the run).
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// The outcome of one check.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub number: u16,
    pub level: Level,
    pub area: Area,
    /// The requirement, in the checklist's words.
    pub requirement: &'static str,
    pub outcome: Outcome,
    /// Why it failed or does not apply; empty on a pass.
    pub reason: String,
    /// On a failure: what was sent and what came back, in order.
    pub transcript: Vec<String>,
    pub milliseconds: u64,
}

/// A whole run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hub_url: String,
    pub topic: String,
    pub checks: Vec<CheckReport>,
    pub milliseconds: u64,
    /// What Get Current Context still showed after the run, when it was not empty: the
    /// checker failed to close something it opened (or another client opened it meanwhile).
    pub left_in_context: Option<String>,
}

impl Report {
    pub fn count(&self, outcome: Outcome) -> usize {
        self.checks.iter().filter(|c| c.outcome == outcome).count()
    }

    /// A SHALL (or SHALL NOT) failed: the hub does not conform.
    pub fn mandatory_failed(&self) -> bool {
        self.checks
            .iter()
            .any(|c| c.outcome == Outcome::Fail && c.level.is_mandatory())
    }
}

/// Runs the checks `selection` picks against `target`.
pub async fn run(target: &Target, selection: &Selection) -> Result<Report, SetupError> {
    let started = Instant::now();
    let probe = Probe::start(target).await?;
    let mut reports = Vec::new();
    for check in checks::all() {
        let Some(requirement) = catalogue::requirement(check.number) else {
            continue;
        };
        let mut report = CheckReport {
            number: check.number,
            level: requirement.level,
            area: requirement.area,
            requirement: requirement.words,
            outcome: Outcome::Skipped,
            reason: String::new(),
            transcript: Vec::new(),
            milliseconds: 0,
        };
        if selection.includes(check.number) {
            let began = Instant::now();
            probe.wire.transcript.take();
            let result = tokio::time::timeout(CHECK_TIMEOUT, (check.run)(&probe)).await;
            let transcript = probe.wire.transcript.take();
            probe.tidy().await;
            probe.wire.transcript.take();
            (report.outcome, report.reason) = match result {
                Ok(Ok(())) => (Outcome::Pass, String::new()),
                Ok(Err(Finding::NotApplicable(why))) => (Outcome::NotApplicable, why),
                Ok(Err(Finding::Fail(why))) => (Outcome::Fail, why),
                Err(_) => (
                    Outcome::Fail,
                    format!(
                        "the check did not finish within {} s",
                        CHECK_TIMEOUT.as_secs()
                    ),
                ),
            };
            if report.outcome == Outcome::Fail {
                report.transcript = transcript;
            }
            report.milliseconds = began.elapsed().as_millis() as u64;
        }
        reports.push(report);
    }
    let left_in_context = probe.left_in_context().await;
    Ok(Report {
        hub_url: probe.hub_url.clone(),
        topic: probe.first.topic.clone(),
        checks: reports,
        milliseconds: started.elapsed().as_millis() as u64,
        left_in_context,
    })
}
