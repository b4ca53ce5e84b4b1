//! The event notification envelope (spec 2-3, 2-5, 2-6): parsing a request for a context change
//! and writing the notification frames the hub sends.
//!
//! The `context` array is kept as the exact bytes received and written back unchanged: FHIR
//! resources are relayed verbatim, never re-serialised through a model.

use crate::event::EventSpec;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;

/// A validated request for a context change (or content change, selection, SyncError, ...).
#[derive(Debug)]
pub struct ContextChange {
    pub timestamp: String,
    pub id: String,
    pub topic: String,
    pub event: &'static EventSpec,
    /// The `context` array exactly as received.
    pub context: Box<RawValue>,
    /// The same array, parsed, for the hub's decisions (anchors, ids, versions).
    pub entries: Vec<ContextEntry>,
    /// `context.versionId` as sent (updates name the version they apply to).
    pub version_id: Option<String>,
}

/// One element of the context array.
#[derive(Debug, Clone)]
pub struct ContextEntry {
    pub key: String,
    /// The whole entry object (`{"key": .., "resource": ..}`).
    pub value: Value,
}

impl ContextEntry {
    /// The entry's `resource` member, if it carries one.
    pub fn resource(&self) -> Option<&Value> {
        self.value.get("resource")
    }

    /// The entry's `reference.reference` string, if it carries a reference.
    pub fn reference(&self) -> Option<&str> {
        self.value.get("reference")?.get("reference")?.as_str()
    }
}

/// Why a request for a context change was refused; the text is the 4xx body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    #[error("malformed request: {0}")]
    Json(String),
    #[error("event `{0}` is not supported by this hub")]
    UnknownEvent(String),
    #[error("invalid {event}: {reason}")]
    Invalid { event: &'static str, reason: String },
}

#[derive(Deserialize)]
struct RawRequest {
    timestamp: String,
    id: String,
    event: RawEvent,
}

#[derive(Deserialize)]
struct RawEvent {
    #[serde(rename = "hub.topic")]
    topic: String,
    #[serde(rename = "hub.event")]
    event: String,
    context: Box<RawValue>,
    // The field table of 2-3 says `versionId`, every example `context.versionId` (spec §12.1):
    // accept both, emit the dotted form.
    #[serde(rename = "context.versionId", alias = "versionId", default)]
    version_id: Option<String>,
}

impl ContextChange {
    /// Parses and validates a request body against the event catalogue.
    pub fn parse(body: &[u8]) -> Result<Self, NotificationError> {
        let raw: RawRequest =
            serde_json::from_slice(body).map_err(|e| NotificationError::Json(e.to_string()))?;
        let event = EventSpec::lookup(&raw.event.event)
            .ok_or(NotificationError::UnknownEvent(raw.event.event))?;
        let invalid = |reason: String| NotificationError::Invalid {
            event: event.name,
            reason,
        };
        // The envelope's own keys are checked by its parse; a repeat inside a resource only
        // by this pass.
        crate::unique_keys::check(body)
            .map_err(|why| invalid(format!("{why}: FHIR JSON allows each key once")))?;
        for (name, value) in [
            ("timestamp", &raw.timestamp),
            ("id", &raw.id),
            ("event.hub.topic", &raw.event.topic),
        ] {
            if value.trim().is_empty() {
                return Err(invalid(format!("`{name}` is empty")));
            }
        }
        let values: Vec<Value> = serde_json::from_str(raw.event.context.get())
            .map_err(|_| invalid("`event.context` must be an array".to_owned()))?;
        let entries = values
            .into_iter()
            .enumerate()
            .map(
                |(i, value)| match value.get("key").and_then(Value::as_str) {
                    Some(key) => Ok(ContextEntry {
                        key: key.to_owned(),
                        value,
                    }),
                    None => Err(invalid(format!("context[{i}] has no string `key`"))),
                },
            )
            .collect::<Result<Vec<_>, _>>()?;
        crate::validate::context(event, &entries).map_err(invalid)?;
        Ok(ContextChange {
            timestamp: raw.timestamp,
            id: raw.id,
            topic: raw.event.topic,
            event,
            context: raw.event.context,
            entries,
            version_id: raw.event.version_id,
        })
    }

    /// Every entry with this key.
    pub fn entries_with_key<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a ContextEntry> {
        self.entries.iter().filter(move |e| e.key == key)
    }

    /// The first entry with this key.
    pub fn entry(&self, key: &str) -> Option<&ContextEntry> {
        self.entries.iter().find(|e| e.key == key)
    }

    /// The logical id of the event's anchor: the anchor resource's `id`, or for references
    /// (update, select) the id part of `Type/id`.
    pub fn anchor_id(&self) -> Option<&str> {
        let entry = self.entry(self.event.anchor_key()?)?;
        match entry.resource() {
            Some(resource) => resource.get("id")?.as_str(),
            None => entry.reference()?.rsplit('/').next(),
        }
    }

    /// The notification frame for this change, as sent to subscribers of the event.
    pub fn frame(&self, versions: Versions<'_>) -> String {
        Frame {
            timestamp: &self.timestamp,
            id: &self.id,
            topic: &self.topic,
            event: self.event.name,
            context: self.context.get(),
            versions,
        }
        .to_json()
    }
}

/// The version keys the hub adds to an event (content sharing, spec 2-10).
#[derive(Debug, Clone, Copy, Default)]
pub struct Versions<'a> {
    pub version_id: Option<&'a str>,
    pub prior_version_id: Option<&'a str>,
}

/// A notification frame, written field by field so that the context stays byte-for-byte.
#[derive(Debug, Clone, Copy)]
pub struct Frame<'a> {
    pub timestamp: &'a str,
    pub id: &'a str,
    pub topic: &'a str,
    pub event: &'a str,
    /// The context array as JSON text.
    pub context: &'a str,
    pub versions: Versions<'a>,
}

impl Frame<'_> {
    pub fn to_json(&self) -> String {
        let mut out = String::with_capacity(self.context.len() + 160);
        out.push_str("{\"timestamp\":");
        push_json_str(&mut out, self.timestamp);
        out.push_str(",\"id\":");
        push_json_str(&mut out, self.id);
        out.push_str(",\"event\":{\"hub.topic\":");
        push_json_str(&mut out, self.topic);
        out.push_str(",\"hub.event\":");
        push_json_str(&mut out, self.event);
        out.push_str(",\"context\":");
        out.push_str(self.context);
        if let Some(v) = self.versions.version_id {
            out.push_str(",\"context.versionId\":");
            push_json_str(&mut out, v);
        }
        if let Some(v) = self.versions.prior_version_id {
            out.push_str(",\"context.priorVersionId\":");
            push_json_str(&mut out, v);
        }
        out.push_str("}}");
        out
    }
}

fn push_json_str(out: &mut String, s: &str) {
    // Serialising a &str into a String cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_default());
}

/// A subscriber's answer to a notification: `{"id": .., "status": ..}` (spec 2-5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberReply {
    pub id: String,
    /// The HTTP-like status. `None` when the reply carried none: `@medplum/core` answers with
    /// `{id, timestamp}` only, which is read as "received".
    pub status: Option<u16>,
}

impl SubscriberReply {
    /// Reads a reply frame; the status may be a number or a string (the spec's own example
    /// sends `"200"`). Anything else, a status out of range or a field given twice is no reply.
    ///
    /// Every subscriber answers every event, so this reads the two fields it needs straight off
    /// the text, with no intermediate JSON tree.
    pub fn parse(text: &str) -> Option<Self> {
        #[derive(Deserialize)]
        struct Reply<'a> {
            #[serde(borrow)]
            id: std::borrow::Cow<'a, str>,
            #[serde(default)]
            status: Option<ReplyStatus>,
        }
        let reply: Reply = serde_json::from_str(text).ok()?;
        Some(SubscriberReply {
            id: reply.id.into_owned(),
            status: reply.status.map(|s| s.0),
        })
    }
}

/// A reply's status: a number, or a string holding one.
struct ReplyStatus(u16);

impl<'de> Deserialize<'de> for ReplyStatus {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = ReplyStatus;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a status code, as a number or a string")
            }

            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<ReplyStatus, E> {
                u16::try_from(v)
                    .map(ReplyStatus)
                    .map_err(|_| E::custom("status out of range"))
            }

            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<ReplyStatus, E> {
                u16::try_from(v)
                    .map(ReplyStatus)
                    .map_err(|_| E::custom("status out of range"))
            }

            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ReplyStatus, E> {
                v.trim()
                    .parse()
                    .map(ReplyStatus)
                    .map_err(|_| E::custom("status is not a number"))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const PATIENT_OPEN: &str = r#"{"timestamp":"2026-11-26T10:00:00Z","id":"e1","event":{"hub.topic":"T","hub.event":"patient-open","context":[{"key":"patient","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"123"}]}}]}}"#;

    #[test]
    fn context_is_relayed_byte_for_byte() {
        let odd = PATIENT_OPEN.replace(r#""id":"p1""#, r#""id" : "p1", "x":1.50"#);
        let change = ContextChange::parse(odd.as_bytes()).unwrap();
        let frame = change.frame(Versions::default());
        assert!(frame.contains(r#""id" : "p1", "x":1.50"#), "{frame}");
        assert!(frame.contains(r#""hub.event":"Patient-open""#));
        assert_eq!(change.anchor_id(), Some("p1"));
        let parsed: Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(parsed["id"], "e1");
    }

    #[test]
    fn malformed_and_unknown_are_refused() {
        assert!(matches!(
            ContextChange::parse(b"{"),
            Err(NotificationError::Json(_))
        ));
        let unknown = PATIENT_OPEN.replace("patient-open", "heartbeat");
        assert_eq!(
            ContextChange::parse(unknown.as_bytes()).unwrap_err(),
            NotificationError::UnknownEvent("heartbeat".into())
        );
        let no_ts = PATIENT_OPEN.replace(r#""timestamp":"2026-11-26T10:00:00Z","#, "");
        assert!(
            ContextChange::parse(no_ts.as_bytes())
                .unwrap_err()
                .to_string()
                .contains("timestamp")
        );
    }

    #[test]
    fn replies_with_number_string_or_no_status() {
        assert_eq!(
            SubscriberReply::parse(r#"{"id":"a","status":200}"#),
            Some(SubscriberReply {
                id: "a".into(),
                status: Some(200)
            })
        );
        assert_eq!(
            SubscriberReply::parse(r#"{"id":"a","status":"409"}"#)
                .unwrap()
                .status,
            Some(409)
        );
        assert_eq!(
            SubscriberReply::parse(r#"{"id":"a","timestamp":"x"}"#)
                .unwrap()
                .status,
            None
        );
        assert_eq!(
            SubscriberReply::parse(r#"{"id":"a\\b","status":null}"#),
            Some(SubscriberReply {
                id: "a\\b".into(),
                status: None
            })
        );
        assert_eq!(SubscriberReply::parse(r#"{"status":200}"#), None);
        assert_eq!(SubscriberReply::parse("nonsense"), None);
        for odd in [
            r#"{"id":"a","status":70000}"#,
            r#"{"id":"a","status":-1}"#,
            r#"{"id":"a","status":200.5}"#,
            r#"{"id":"a","status":"ok"}"#,
            r#"{"id":"a","status":true}"#,
            r#"{"id":"a","status":{}}"#,
            r#"{"id":7,"status":200}"#,
            r#"{"id":"a","id":"b","status":200}"#,
        ] {
            assert_eq!(SubscriberReply::parse(odd), None, "{odd}");
        }
    }
}
