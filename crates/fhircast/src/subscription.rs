//! The subscription request (spec 2-4): form-encoded as the spec says, JSON accepted too.

use crate::event::EventSpec;
use serde_json::Value;

/// `hub.mode` of a subscription request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Subscribe,
    Unsubscribe,
}

/// A well-formed subscribe or unsubscribe request. Whether it is *allowed* is the hub's call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRequest {
    pub mode: Mode,
    pub topic: String,
    /// The requested events, canonical and without repeats, in request order. Empty on unsubscribe.
    pub events: Vec<&'static EventSpec>,
    /// Requested events this hub does not support, left out of the grant (logged).
    pub ignored_events: Vec<String>,
    pub lease_seconds: Option<u64>,
    pub channel_endpoint: Option<String>,
    pub subscriber_name: Option<String>,
}

/// Why a subscription request was refused; the text is the 4xx body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscriptionError {
    #[error("parameter `{0}` appears more than once")]
    Repeated(String),
    #[error("missing required parameter `{0}`")]
    Missing(&'static str),
    #[error("`hub.channel.endpoint` and `endpoint` name two different endpoints")]
    TwoEndpoints,
    #[error("`hub.channel.type` must be `websocket` (STU3 has no other channel), got `{0}`")]
    ChannelType(String),
    #[error("`hub.mode` must be `subscribe` or `unsubscribe`, got `{0}`")]
    Mode(String),
    #[error("`hub.events` names no event")]
    NoEvents,
    #[error("`hub.events` names an event this hub does not support: `{0}`")]
    UnknownEvent(String),
    #[error("`hub.lease_seconds` must be a positive integer, got `{0}`")]
    Lease(String),
    #[error("parameter `{0}` must be a string")]
    NotAString(String),
    #[error("the body is not valid form-encoded data or a JSON object: {0}")]
    Body(String),
}

const CHANNEL_TYPE: &str = "hub.channel.type";
const MODE: &str = "hub.mode";
const TOPIC: &str = "hub.topic";
const EVENTS: &str = "hub.events";
const LEASE: &str = "hub.lease_seconds";
const ENDPOINT: &str = "hub.channel.endpoint";
/// What `@medplum/core` names the endpoint of its unsubscribe requests.
const ENDPOINT_ALIAS: &str = "endpoint";
const NAME: &str = "subscriber.name";

/// The raw parameters of a request, each present at most once.
#[derive(Default)]
struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    fn insert(&mut self, key: String, value: String) -> Result<(), SubscriptionError> {
        if self.pairs.iter().any(|(k, _)| *k == key) {
            return Err(SubscriptionError::Repeated(key));
        }
        self.pairs.push((key, value));
        Ok(())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    fn require(&self, key: &'static str) -> Result<&str, SubscriptionError> {
        self.get(key).ok_or(SubscriptionError::Missing(key))
    }
}

impl SubscriptionRequest {
    /// Parses an `application/x-www-form-urlencoded` body.
    pub fn from_form(body: &[u8]) -> Result<Self, SubscriptionError> {
        let mut params = Params::default();
        for (key, value) in form_urlencoded::parse(body) {
            params.insert(key.into_owned(), value.into_owned())?;
        }
        Self::from_params(&params)
    }

    /// Parses a JSON object with the same keys; `hub.events` may be a string or an array and
    /// `hub.lease_seconds` a number or a string. Duplicate JSON keys are refused like repeated
    /// form parameters.
    pub fn from_json(body: &[u8]) -> Result<Self, SubscriptionError> {
        let pairs: Vec<(String, Value)> = parse_json_object_pairs(body)?;
        let mut params = Params::default();
        for (key, value) in pairs {
            // Some clients send the lease as `hub.lease`.
            let key = if key == "hub.lease" {
                LEASE.to_owned()
            } else {
                key
            };
            let known = [
                CHANNEL_TYPE,
                MODE,
                TOPIC,
                EVENTS,
                LEASE,
                ENDPOINT,
                ENDPOINT_ALIAS,
                NAME,
            ];
            if !known.contains(&key.as_str()) {
                // Ignored, as unknown form parameters are, whatever their JSON type.
                continue;
            }
            let text = match value {
                Value::String(s) => s,
                Value::Number(n) if key == LEASE => n.to_string(),
                Value::Array(items) if key == EVENTS => items
                    .into_iter()
                    .map(|item| match item {
                        Value::String(s) => Ok(s),
                        _ => Err(SubscriptionError::NotAString(EVENTS.to_owned())),
                    })
                    .collect::<Result<Vec<_>, _>>()?
                    .join(","),
                Value::Null => String::new(),
                _ => return Err(SubscriptionError::NotAString(key)),
            };
            params.insert(key, text)?;
        }
        Self::from_params(&params)
    }

    fn from_params(params: &Params) -> Result<Self, SubscriptionError> {
        let channel_type = params.require(CHANNEL_TYPE)?;
        if channel_type != "websocket" {
            return Err(SubscriptionError::ChannelType(channel_type.to_owned()));
        }
        let mode = match params.require(MODE)? {
            "subscribe" => Mode::Subscribe,
            "unsubscribe" => Mode::Unsubscribe,
            other => return Err(SubscriptionError::Mode(other.to_owned())),
        };
        let topic = params.require(TOPIC)?.to_owned();
        let channel_endpoint = match (params.get(ENDPOINT), params.get(ENDPOINT_ALIAS)) {
            (Some(endpoint), Some(alias)) if endpoint != alias => {
                return Err(SubscriptionError::TwoEndpoints);
            }
            (endpoint, alias) => endpoint.or(alias).map(str::to_owned),
        };
        let subscriber_name = params.get(NAME).map(str::to_owned);
        let lease_seconds = params
            .get(LEASE)
            .map(|v| match v.parse::<u64>() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(SubscriptionError::Lease(v.to_owned())),
            })
            .transpose()?;
        // hub.events is "Conditional" in STU3: required on subscribe, ignored on unsubscribe
        // (an unsubscribe cancels the whole subscription, it cannot modify it).
        let (events, ignored_events) = match mode {
            Mode::Subscribe => parse_events(
                params
                    .require(EVENTS)
                    .map_err(|_| SubscriptionError::NoEvents)?,
            )?,
            Mode::Unsubscribe => {
                if channel_endpoint.is_none() {
                    return Err(SubscriptionError::Missing(ENDPOINT));
                }
                (Vec::new(), Vec::new())
            }
        };
        Ok(SubscriptionRequest {
            mode,
            topic,
            events,
            ignored_events,
            lease_seconds,
            channel_endpoint,
            subscriber_name,
        })
    }
}

/// Splits a comma-separated event list into the canonical events this hub supports, each
/// once, and the names it does not know. The spec lets a hub grant the supported subset (the
/// confirmation says what was granted); only a list with none supported is refused.
pub fn parse_events(
    list: &str,
) -> Result<(Vec<&'static EventSpec>, Vec<String>), SubscriptionError> {
    let mut events: Vec<&'static EventSpec> = Vec::new();
    let mut unknown = Vec::new();
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        match EventSpec::lookup(name) {
            Some(spec) if !events.iter().any(|e| std::ptr::eq(*e, spec)) => events.push(spec),
            Some(_) => {}
            None => unknown.push(name.to_owned()),
        }
    }
    match (events.is_empty(), unknown.first()) {
        (true, Some(name)) => Err(SubscriptionError::UnknownEvent(name.clone())),
        (true, None) => Err(SubscriptionError::NoEvents),
        (false, _) => Ok((events, unknown)),
    }
}

/// Joins events as the confirmation's comma-separated `hub.events` string.
pub fn join_events(events: &[&'static EventSpec]) -> String {
    let mut out = String::new();
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e.name);
    }
    out
}

/// Reads a JSON object keeping every key, so that a repeated key is seen rather than silently
/// collapsed (serde_json's `Map` keeps only the last).
fn parse_json_object_pairs(body: &[u8]) -> Result<Vec<(String, Value)>, SubscriptionError> {
    use serde::de::{Deserializer, MapAccess, Visitor};
    struct Pairs;
    impl<'de> Visitor<'de> for Pairs {
        type Value = Vec<(String, Value)>;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a JSON object")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some((k, v)) = map.next_entry::<String, Value>()? {
                out.push((k, v));
            }
            Ok(out)
        }
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let pairs = (&mut de)
        .deserialize_map(Pairs)
        .map_err(|e| SubscriptionError::Body(e.to_string()))?;
    de.end()
        .map_err(|e| SubscriptionError::Body(e.to_string()))?;
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: &str = "hub.channel.type=websocket&hub.mode=subscribe&hub.topic=T&hub.events=patient-open,Patient-open,ImagingStudy-open";

    #[test]
    fn form_subscribe_dedupes_and_canonicalises() {
        let req = SubscriptionRequest::from_form(OK.as_bytes()).unwrap();
        assert_eq!(req.mode, Mode::Subscribe);
        assert_eq!(join_events(&req.events), "Patient-open,ImagingStudy-open");
        assert_eq!(req.lease_seconds, None);
    }

    #[test]
    fn an_unsubscribe_may_name_its_endpoint_endpoint_as_medplum_does() {
        let body = "hub.channel.type=websocket&hub.mode=unsubscribe&hub.topic=T\
                    &hub.events=Patient-open&endpoint=ws%3A%2F%2Fh%2Fws%2Fabc";
        let req = SubscriptionRequest::from_form(body.as_bytes()).unwrap();
        assert_eq!(req.channel_endpoint.as_deref(), Some("ws://h/ws/abc"));
        // Both names, naming two endpoints: which one is meant cannot be told.
        let both = format!("{body}&hub.channel.endpoint=ws%3A%2F%2Fh%2Fws%2Fother");
        assert_eq!(
            SubscriptionRequest::from_form(both.as_bytes()).unwrap_err(),
            SubscriptionError::TwoEndpoints
        );
        let same = format!("{body}&hub.channel.endpoint=ws%3A%2F%2Fh%2Fws%2Fabc");
        assert!(SubscriptionRequest::from_form(same.as_bytes()).is_ok());
    }

    #[test]
    fn repeated_parameter_is_refused() {
        let body = format!("{OK}&hub.topic=U");
        assert_eq!(
            SubscriptionRequest::from_form(body.as_bytes()),
            Err(SubscriptionError::Repeated("hub.topic".into()))
        );
    }

    #[test]
    fn json_body_with_array_events_and_numeric_lease() {
        let body = br#"{"hub.channel.type":"websocket","hub.mode":"subscribe","hub.topic":"T","hub.events":["Patient-open"],"hub.lease_seconds":60}"#;
        let req = SubscriptionRequest::from_json(body).unwrap();
        assert_eq!(req.lease_seconds, Some(60));
        assert_eq!(req.events.len(), 1);
        let dup = br#"{"hub.channel.type":"websocket","hub.topic":"T","hub.topic":"U"}"#;
        assert_eq!(
            SubscriptionRequest::from_json(dup),
            Err(SubscriptionError::Repeated("hub.topic".into()))
        );
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        let cases = [
            (
                "hub.mode=subscribe&hub.topic=T&hub.events=Patient-open",
                "hub.channel.type",
            ),
            (
                "hub.channel.type=webhook&hub.mode=subscribe&hub.topic=T&hub.events=Patient-open",
                "webhook",
            ),
            (
                "hub.channel.type=websocket&hub.mode=publish&hub.topic=T&hub.events=Patient-open",
                "publish",
            ),
            (
                "hub.channel.type=websocket&hub.mode=subscribe&hub.events=Patient-open",
                "hub.topic",
            ),
            (
                "hub.channel.type=websocket&hub.mode=subscribe&hub.topic=T&hub.events=",
                "names no event",
            ),
            (
                "hub.channel.type=websocket&hub.mode=subscribe&hub.topic=T&hub.events=heartbeat",
                "heartbeat",
            ),
            (
                "hub.channel.type=websocket&hub.mode=subscribe&hub.topic=T&hub.events=Patient-open&hub.lease_seconds=0",
                "lease",
            ),
            (
                "hub.channel.type=websocket&hub.mode=unsubscribe&hub.topic=T",
                "hub.channel.endpoint",
            ),
        ];
        for (body, needle) in cases {
            let err = SubscriptionRequest::from_form(body.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(needle), "{body}: {err}");
        }
    }
}
