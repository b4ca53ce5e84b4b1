//! What the site's hub sends on the link's socket, read as deployed hubs write it: a
//! confirmation with empty fields or none at all, heartbeats, numbers or strings, extra
//! members. The local apps only ever see the spec-exact frames the local hub writes.

use serde_json::Value;

/// One frame from the site's hub.
#[derive(Debug, PartialEq)]
pub(crate) enum Frame {
    /// `hub.mode: subscribe`: the subscription is confirmed (its lease, if it says).
    Confirmed { lease_seconds: Option<u64> },
    /// `hub.mode: denied`: a subscription on the topic was refused or ended (some hubs send
    /// it to every subscriber when any one leaves).
    Denied { reason: String },
    /// The removed STU2 keep-alive, still sent by deployed hubs.
    Heartbeat { id: Option<String> },
    /// An event: its id, name, and the whole frame.
    Event {
        id: String,
        name: String,
        frame: Value,
    },
    /// Anything else (a greeting, an echoed endpoint): ignored.
    Other,
}

impl Frame {
    pub(crate) fn read(text: &str) -> Frame {
        let Ok(value) = serde_json::from_str::<Value>(text) else {
            return Frame::Other;
        };
        if let Some(mode) = value.get("hub.mode").and_then(Value::as_str) {
            return match mode {
                "subscribe" => Frame::Confirmed {
                    lease_seconds: number(value.get("hub.lease_seconds")),
                },
                "denied" => Frame::Denied {
                    reason: value
                        .get("hub.reason")
                        .and_then(Value::as_str)
                        .unwrap_or("no reason given")
                        .to_owned(),
                },
                _ => Frame::Other,
            };
        }
        let id = value.get("id").and_then(Value::as_str).map(str::to_owned);
        let name = value
            .get("event")
            .and_then(|e| e.get("hub.event"))
            .and_then(Value::as_str)
            .map(str::to_owned);
        match (id, name) {
            (id, Some(name)) if name.eq_ignore_ascii_case("heartbeat") => Frame::Heartbeat { id },
            (Some(id), Some(name)) if !id.is_empty() => Frame::Event {
                id,
                name,
                frame: value,
            },
            _ => Frame::Other,
        }
    }
}

/// A number sent as a number or as a string.
fn number(value: Option<&Value>) -> Option<u64> {
    match value? {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confirmations_with_empty_or_string_fields_are_confirmations() {
        assert_eq!(
            Frame::read(r#"{"hub.mode":"subscribe","hub.events":"","hub.lease_seconds":"3600"}"#),
            Frame::Confirmed {
                lease_seconds: Some(3600)
            }
        );
        assert_eq!(
            Frame::read(r#"{"hub.mode":"subscribe","hub.topic":"t"}"#),
            Frame::Confirmed {
                lease_seconds: None
            }
        );
    }

    #[test]
    fn events_heartbeats_denials_and_noise_are_told_apart() {
        let event = Frame::read(
            r#"{"timestamp":"x","id":"e1","event":{"hub.topic":"t","hub.event":"Patient-open","context":[]}}"#,
        );
        assert!(
            matches!(event, Frame::Event { ref id, ref name, .. } if id == "e1" && name == "Patient-open")
        );
        assert_eq!(
            Frame::read(r#"{"id":"h","event":{"hub.event":"heartbeat","context":[]}}"#),
            Frame::Heartbeat {
                id: Some("h".into())
            }
        );
        assert_eq!(
            Frame::read(r#"{"hub.mode":"denied","hub.reason":"gone"}"#),
            Frame::Denied {
                reason: "gone".into()
            }
        );
        assert_eq!(Frame::read("not json"), Frame::Other);
        assert_eq!(
            Frame::read(r#"{"hub.channel.endpoint":"wss://x"}"#),
            Frame::Other
        );
        assert_eq!(
            Frame::read(r#"{"id":"","event":{"hub.event":"Patient-open"}}"#),
            Frame::Other
        );
    }
}
