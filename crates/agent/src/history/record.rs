//! The history's engine observer: each decision worth keeping becomes a history row or an
//! audit row, queued to the store's writer (never blocking the engine).

use lockstep_hub::{Delivery, EngineEvent, LinkEnd, LinkState};
use lockstep_store::{AuditKind, AuditRecord, HistoryRecord, StoreWriter};
use std::collections::VecDeque;
use std::sync::{Mutex, PoisonError};

/// The changes whose history rows the writer's full queue refused (the writer counts and
/// audits the drop), so that the request that made one is not answered as recorded. Only the
/// newest are kept: a change no one answers (a bridge's) is never asked about.
#[derive(Debug, Default)]
pub struct Unqueued(Mutex<VecDeque<String>>);

impl Unqueued {
    const KEPT: usize = 1024;

    fn note(&self, event_id: &str) {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if ids.len() == Self::KEPT {
            ids.pop_front();
        }
        ids.push_back(event_id.to_owned());
    }

    /// Whether `event_id`'s row was refused; forgets it.
    pub fn take(&self, event_id: &str) -> bool {
        let mut ids = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        match ids.iter().position(|id| id == event_id) {
            Some(at) => {
                ids.remove(at);
                true
            }
            None => false,
        }
    }
}

/// Records every engine event worth keeping; called synchronously by the engine.
pub fn record(writer: &StoreWriter, unqueued: &Unqueued, event: &EngineEvent) {
    match event {
        EngineEvent::ContextChanged {
            topic,
            event,
            event_id,
            requester,
            summary,
            frame,
            ..
        } => {
            let mut record =
                HistoryRecord::new(&**topic, *event, event_id, requester, frame.as_str());
            if let Some(summary) = summary {
                record = record.with_summary((**summary).clone());
            }
            if !writer.record_history(record) {
                unqueued.note(event_id);
            }
        }
        EngineEvent::Delivery {
            subscriber,
            event_id,
            event_name,
            outcome,
        } => {
            let (kind, detail) = match outcome {
                Delivery::Acknowledged { status, .. } => (
                    AuditKind::DeliveryAcknowledged,
                    format!("{event_name}: {status}"),
                ),
                Delivery::Refused { status, .. } => (
                    AuditKind::DeliveryRefused,
                    format!("{event_name}: {status}"),
                ),
                Delivery::TimedOut => (
                    AuditKind::DeliveryTimedOut,
                    format!("{event_name}: no answer in time"),
                ),
            };
            writer.record_audit(
                AuditRecord::new(kind, subscriber.display_name(), detail)
                    .topic(&*subscriber.topic)
                    .subject(event_id),
            );
        }
        EngineEvent::Link {
            subscriber,
            state,
            detail,
        } => {
            let (kind, why) = match state {
                LinkState::Pending => (AuditKind::SubscriptionGranted, "subscribed"),
                LinkState::Gone(end @ LinkEnd::LeaseExpired) => {
                    (AuditKind::SubscriptionExpired, end.describe())
                }
                LinkState::Gone(end) => (AuditKind::Unsubscribed, end.describe()),
                LinkState::Unresponsive => (AuditKind::Unsubscribed, "unresponsive"),
                // Refusals and recoveries are in the delivery rows; the other states are the
                // bridges' own, recorded from their reports.
                LinkState::Following
                | LinkState::FollowingUnacknowledged
                | LinkState::Refused { .. }
                | LinkState::Unconfirmed
                | LinkState::Broken
                | LinkState::Off => return,
            };
            let why = detail.as_deref().unwrap_or(why);
            writer.record_audit(
                AuditRecord::new(
                    kind,
                    &subscriber.client_id,
                    format!(
                        "{} ({}): {why}",
                        subscriber.display_name(),
                        subscriber.events
                    ),
                )
                .topic(&*subscriber.topic)
                .subject(subscriber.display_name()),
            );
        }
        EngineEvent::SyncError {
            topic,
            about,
            event_name,
            subscriber: _,
            event_id: _,
            diagnostics,
        } => {
            writer.record_audit(
                AuditRecord::new(
                    AuditKind::SyncError,
                    about,
                    format!("{event_name}: {diagnostics}"),
                )
                .topic(&**topic),
            );
        }
        // Counted on the app's report card; nothing to audit.
        EngineEvent::Renewed { .. } => {}
        EngineEvent::Paused { topic, paused } => {
            let detail = if *paused {
                "following paused: context changes are refused until resumed"
            } else {
                "following resumed"
            };
            writer.record_audit(
                AuditRecord::new(AuditKind::ConfigChanged, "user", detail).topic(&**topic),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Unqueued;

    #[test]
    fn a_refused_row_is_told_once_to_its_own_change_and_only_the_newest_are_kept() {
        let unqueued = Unqueued::default();
        unqueued.note("a");
        unqueued.note("b");
        assert!(!unqueued.take("c"), "a change whose row was queued");
        assert!(unqueued.take("b"));
        assert!(!unqueued.take("b"), "told once");
        for n in 0..Unqueued::KEPT {
            unqueued.note(&n.to_string());
        }
        assert!(!unqueued.take("a"), "the oldest went first");
        assert!(unqueued.take(&(Unqueued::KEPT - 1).to_string()));
    }
}
