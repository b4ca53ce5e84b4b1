//! The history's engine observer: each decision worth keeping becomes a history row or an
//! audit row, queued to the store's writer (never blocking the engine).

use lockstep_hub::{Delivery, EngineEvent, LinkEnd, LinkState};
use lockstep_store::{AuditKind, AuditRecord, HistoryRecord, StoreWriter};

/// Records every engine event worth keeping; called synchronously by the engine.
pub fn record(writer: &StoreWriter, event: &EngineEvent) {
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
            writer.record_history(record);
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
