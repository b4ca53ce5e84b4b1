//! One history entry in full: the event as the hub sent it, what each app answered, and
//! whether it can be reopened. The window and any tool read the same.

use super::{AuditQuery, HistoryEntry, HistoryQuery, reopenable};
use lockstep_store::{AuditKind, Store, StoreError};
use serde::Serialize;

/// What became of an event at one app, or another act on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum OutcomeKind {
    Acknowledged,
    Refused,
    TimedOut,
    /// Someone published it again from history.
    Reopened,
}

impl OutcomeKind {
    /// The outcome an audit row records, if it records one.
    fn of(kind: AuditKind) -> Option<OutcomeKind> {
        match kind {
            AuditKind::DeliveryAcknowledged => Some(OutcomeKind::Acknowledged),
            AuditKind::DeliveryRefused => Some(OutcomeKind::Refused),
            AuditKind::DeliveryTimedOut => Some(OutcomeKind::TimedOut),
            AuditKind::HistoryReopened => Some(OutcomeKind::Reopened),
            _ => None,
        }
    }
}

/// One app's outcome for an event (or who reopened it).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Outcome {
    pub at: String,
    /// The subscriber, or who reopened it.
    pub actor: String,
    pub outcome: OutcomeKind,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDetail {
    pub entry: HistoryEntry,
    /// The notification as the hub sent it, indented for reading.
    pub event_pretty: String,
    /// Oldest first: the order things happened in.
    pub outcomes: Vec<Outcome>,
    /// Only an open can be reopened.
    pub can_reopen: bool,
}

/// History entry `id` in full, or `None` if there is none. Blocking (SQLite).
pub fn detail(store: &Store, id: i64) -> Result<Option<HistoryDetail>, StoreError> {
    let Some(entry) = store.history_entry(id)? else {
        return Ok(None);
    };
    let audit = store.audit(&AuditQuery {
        subject: Some(entry.event_id.clone()),
        limit: HistoryQuery::MAX_LIMIT,
        ..AuditQuery::default()
    })?;
    // The store answers newest first. A row of acknowledgements names each app that
    // answered; each gets a line.
    let outcomes = audit
        .iter()
        .rev()
        .filter_map(|row| Some((row, OutcomeKind::of(row.kind()?)?)))
        .flat_map(|(row, outcome)| {
            row.actors().into_iter().map(move |actor| Outcome {
                at: row.at.clone(),
                actor,
                outcome,
                detail: row.detail.clone(),
            })
        })
        .collect();
    let event_pretty = serde_json::from_str::<serde_json::Value>(&entry.event_json)
        .and_then(|value| serde_json::to_string_pretty(&value))
        .unwrap_or_else(|_| entry.event_json.clone());
    let can_reopen = reopenable(&entry.event).is_some();
    Ok(Some(HistoryDetail {
        entry,
        event_pretty,
        outcomes,
        can_reopen,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_store::{AuditRecord, HistoryRecord, StoreOptions};

    fn store_with(event: &str, audit: &[(AuditKind, &str, &str)]) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path().join("h.db"), StoreOptions::default()).unwrap();
        let writer = store.writer().unwrap();
        let frame = r#"{"id":"e1","event":{"hub.event":"x","context":[]}}"#;
        writer.record_history(HistoryRecord::new("T", event, "e1", "RIS", frame));
        for (kind, actor, detail) in audit {
            writer.record_audit(AuditRecord::new(*kind, *actor, *detail).subject("e1"));
        }
        writer.record_audit(AuditRecord::new(
            AuditKind::DeliveryRefused,
            "PACS",
            "other event",
        ));
        writer.shutdown().unwrap();
        (dir, store)
    }

    #[test]
    fn each_app_s_answer_is_one_outcome_oldest_first() {
        let (_dir, store) = store_with(
            "Patient-open",
            &[
                (AuditKind::DeliveryAcknowledged, "PACS", "Patient-open: 200"),
                (
                    AuditKind::DeliveryAcknowledged,
                    "Dictation",
                    "Patient-open: 200",
                ),
                (AuditKind::DeliveryRefused, "EHR", "Patient-open: 409"),
                (AuditKind::SyncError, "EHR", "not an outcome"),
                (AuditKind::HistoryReopened, "jane (desktop)", "reopened"),
            ],
        );
        let id = store.history(&HistoryQuery::default()).unwrap()[0].id;
        let detail = detail(&store, id).unwrap().unwrap();
        let outcomes: Vec<(&str, OutcomeKind)> = detail
            .outcomes
            .iter()
            .map(|o| (o.actor.as_str(), o.outcome))
            .collect();
        // The two acknowledgements were committed together: one row naming both apps.
        assert_eq!(
            outcomes,
            [
                ("PACS", OutcomeKind::Acknowledged),
                ("Dictation", OutcomeKind::Acknowledged),
                ("EHR", OutcomeKind::Refused),
                ("jane (desktop)", OutcomeKind::Reopened),
            ]
        );
        assert!(detail.can_reopen);
        assert!(detail.event_pretty.contains("\n  \"id\": \"e1\""));
        assert_eq!(
            serde_json::to_value(OutcomeKind::TimedOut).unwrap(),
            "timed-out"
        );
    }

    #[test]
    fn only_an_open_can_be_reopened_and_a_missing_entry_is_none() {
        let (_dir, store) = store_with("Patient-close", &[]);
        let id = store.history(&HistoryQuery::default()).unwrap()[0].id;
        assert!(!detail(&store, id).unwrap().unwrap().can_reopen);
        assert!(detail(&store, id + 1).unwrap().is_none());
    }
}
