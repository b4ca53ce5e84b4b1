//! The frames the hub itself writes: subscription confirmation and denial (spec 2-4) and the
//! SyncError notification (spec 2-5, profile `fhircast-hub-operation-outcome-syncerror`).

use crate::event::{EventSpec, SYNC_ERROR};
use crate::notification::{Frame, Versions};
use crate::subscription::join_events;
use serde_json::json;

/// The confirmation sent as the first frame on a new WebSocket: exactly the spec's four fields.
pub fn confirmation(topic: &str, events: &[&'static EventSpec], lease_seconds: u64) -> String {
    json!({
        "hub.mode": "subscribe",
        "hub.topic": topic,
        "hub.events": join_events(events),
        "hub.lease_seconds": lease_seconds,
    })
    .to_string()
}

/// The denial sent before the hub closes a subscription's socket.
pub fn denial(topic: &str, events: &[&'static EventSpec], reason: Option<&str>) -> String {
    let mut frame = json!({
        "hub.mode": "denied",
        "hub.topic": topic,
        "hub.events": join_events(events),
    });
    if let Some(reason) = reason {
        frame["hub.reason"] = reason.into();
    }
    frame.to_string()
}

/// `OperationOutcome.issue.code` of a SyncError.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IssueCode {
    /// A subscriber refused, failed or did not answer.
    Processing,
    /// A request was larger than the recipient accepts (spec 2-10).
    TooLong,
}

impl IssueCode {
    fn as_str(self) -> &'static str {
        match self {
            IssueCode::Processing => "processing",
            IssueCode::TooLong => "too-long",
        }
    }
}

/// What a SyncError is about.
#[derive(Debug, Clone)]
pub struct SyncErrorReport<'a> {
    /// `id` of the event that failed to synchronise.
    pub event_id: &'a str,
    /// `hub.event` of that event.
    pub event_name: &'a str,
    /// The subscriber that failed (its `subscriber.name`, or its client's name).
    pub subscriber_name: &'a str,
    /// Human-readable source and reason.
    pub diagnostics: &'a str,
    pub code: IssueCode,
}

const CODING_BASE: &str = "https://fhircast.hl7.org/events/syncerror/";

impl SyncErrorReport<'_> {
    /// The OperationOutcome resource, as the profile shapes it.
    pub fn operation_outcome(&self) -> serde_json::Value {
        json!({
            "resourceType": "OperationOutcome",
            "issue": [{
                "severity": "warning",
                "code": self.code.as_str(),
                "diagnostics": self.diagnostics,
                "details": {
                    "coding": [
                        { "system": format!("{CODING_BASE}eventid"), "code": self.event_id },
                        { "system": format!("{CODING_BASE}eventname"), "code": self.event_name },
                        { "system": format!("{CODING_BASE}subscribername"), "code": self.subscriber_name },
                    ]
                }
            }]
        })
    }

    /// The SyncError notification frame; `id` and `timestamp` are the hub's, for this frame.
    pub fn notification(&self, topic: &str, id: &str, timestamp: &str) -> String {
        let context = json!([{ "key": "operationoutcome", "resource": self.operation_outcome() }])
            .to_string();
        Frame {
            timestamp,
            id,
            topic,
            event: SYNC_ERROR,
            context: &context,
            versions: Versions::default(),
        }
        .to_json()
    }
}
