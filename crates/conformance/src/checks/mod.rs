//! The checks, one module per spec area. Each check is an async function of the probe that
//! passes, fails with a reason, or says why it does not apply; [`all`] lists every numbered
//! requirement exactly once.

mod confirmation;
mod content_sharing;
mod current_context;
mod derived_events;
mod discovery;
mod lifecycle;
mod notification;
mod request_change;
mod robustness;
mod subscribe;
mod sync_error;
mod transport;

use crate::probe::Probe;
use crate::verdict::{CheckResult, Finding};
use crate::wire::Answer;
use futures_util::future::LocalBoxFuture;

pub(crate) type CheckFn = for<'a> fn(&'a Probe) -> LocalBoxFuture<'a, CheckResult>;

pub(crate) struct Check {
    pub number: u16,
    pub run: CheckFn,
}

/// `checks![12 => accepted, ...]`: the module's checks by number.
macro_rules! checks {
    ($($number:literal => $check:path),* $(,)?) => {
        vec![$(crate::checks::Check { number: $number, run: |probe| Box::pin($check(probe)) }),*]
    };
}
pub(crate) use checks;

/// Every check, in number order.
pub(crate) fn all() -> Vec<Check> {
    let mut all: Vec<Check> = [
        discovery::checks(),
        transport::checks(),
        subscribe::checks(),
        confirmation::checks(),
        lifecycle::checks(),
        notification::checks(),
        sync_error::checks(),
        request_change::checks(),
        current_context::checks(),
        content_sharing::checks(),
        derived_events::checks(),
        robustness::checks(),
    ]
    .into_iter()
    .flatten()
    .collect();
    all.sort_by_key(|check| check.number);
    all
}

/// Passes when `answer` is a 4xx; `what` says what was sent.
pub(crate) fn refused(answer: &Answer, what: &str) -> CheckResult {
    if answer.is_client_error() {
        Ok(())
    } else {
        Err(Finding::fail(format!(
            "{what} was answered {}, not 4xx",
            answer.status
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_requirement_has_exactly_one_check() {
        let numbers: Vec<u16> = all().iter().map(|c| c.number).collect();
        assert_eq!(numbers, (1..=110).collect::<Vec<u16>>());
    }
}
