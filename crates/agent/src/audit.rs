//! The agent's audit recorder for what the engine does not decide: the local authorization
//! server's tokens, changes made from the desktop, and the bridges' reports. (The engine's own
//! decisions are recorded by the history's observer, `history::record`.) Every method only
//! queues a row for the store's writer.

use lockstep_bridges::{BridgeReport, Report};
use lockstep_store::{AuditKind, AuditRecord, StoreWriter};

#[derive(Clone)]
pub struct AuditTrail {
    writer: StoreWriter,
}

impl AuditTrail {
    pub(crate) fn new(writer: StoreWriter) -> Self {
        AuditTrail { writer }
    }

    /// A token request's outcome: the granted scopes, or why it was refused.
    pub fn token(&self, client_id: &str, outcome: Result<&str, &str>) {
        let record = match outcome {
            Ok(scope) => AuditRecord::new(AuditKind::TokenIssued, client_id, scope),
            Err(reason) => AuditRecord::new(AuditKind::TokenRefused, client_id, reason),
        };
        self.writer.record_audit(record);
    }

    /// A change made from the desktop (apps, settings).
    pub fn desktop_change(&self, detail: String) {
        self.writer
            .record_audit(AuditRecord::new(AuditKind::ConfigChanged, "user", detail));
    }

    /// What a bridge reported.
    pub fn bridge(&self, report: &Report) {
        let (kind, detail) = match report.kind {
            BridgeReport::Link(state) => (
                AuditKind::BridgeLink,
                format!("{}: {}", state.name(), report.detail),
            ),
            BridgeReport::Acted => (AuditKind::BridgeAction, report.detail.clone()),
            BridgeReport::Rejected => (AuditKind::BridgeRejected, report.detail.clone()),
        };
        self.writer
            .record_audit(AuditRecord::new(kind, &report.bridge, detail).topic(&*report.topic));
    }
}
