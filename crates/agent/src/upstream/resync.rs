//! After every (re)connection the local session is set to the site's current context: what
//! changed upstream while the link was down is not missed, and nothing the site closed stays
//! open here.

use super::LinkError;
use super::relay::Relay;
use super::signin::SiteSession;
use lockstep_fhircast::EventSpec;
use lockstep_hub::Engine;
use serde_json::Value;

/// The anchors a context may have, most specific first (an STU2 bare array names none).
const ANCHORS: [(&str, &str); 4] = [
    ("report", "DiagnosticReport"),
    ("study", "ImagingStudy"),
    ("encounter", "Encounter"),
    ("patient", "Patient"),
];

/// What the site's Get Current Context says is open.
#[derive(Debug, PartialEq)]
pub(crate) struct SiteContext {
    /// The anchor's resource type, `""` when nothing is open.
    pub context_type: String,
    /// The context array, without the content bundle (an open does not carry it).
    pub context: Vec<Value>,
    /// Its `context.versionId` (a report's content version), if it gave one.
    pub version_id: Option<String>,
}

impl SiteContext {
    /// The STU3 object, or the STU2 bare array some hubs still answer with.
    pub(crate) fn read(answer: &Value) -> Result<Self, LinkError> {
        let version_id = answer
            .get("context.versionId")
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned);
        let (context_type, entries) = match answer {
            Value::Array(entries) => (String::new(), entries.clone()),
            Value::Object(object) => (
                object
                    .get("context.type")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                object
                    .get("context")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default(),
            ),
            _ => {
                return Err(LinkError::Protocol(
                    "Get Current Context answered neither an object nor an array".into(),
                ));
            }
        };
        let context: Vec<Value> = entries
            .into_iter()
            .filter(|e| e.get("key").and_then(Value::as_str) != Some("content"))
            .collect();
        let context_type = if context_type.is_empty() {
            ANCHORS
                .iter()
                .find(|(key, _)| entry(&context, key).is_some())
                .map(|(_, anchor)| (*anchor).to_owned())
                .unwrap_or_default()
        } else {
            context_type
        };
        Ok(SiteContext {
            context_type,
            context,
            version_id,
        })
    }

    fn open_event(&self) -> Option<&'static EventSpec> {
        EventSpec::lookup(&format!("{}-open", self.context_type))
    }

    /// The anchor's id, as `Type/id` names it.
    fn anchor_id(&self) -> Option<&str> {
        let key = self.open_event()?.anchor_key()?;
        entry(&self.context, key)?
            .get("resource")?
            .get("id")?
            .as_str()
    }
}

fn entry<'a>(context: &'a [Value], key: &str) -> Option<&'a Value> {
    context
        .iter()
        .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
}

/// Sets the local session to the site's current context.
pub(super) async fn resync(
    http: &reqwest::Client,
    session: &SiteSession,
    relay: &Relay,
    engine: &Engine,
    local_topic: &str,
) -> Result<(), LinkError> {
    let url = format!(
        "{}/{}",
        session.hub_url.trim_end_matches('/'),
        session.topic
    );
    let body = super::answer_of(http.get(&url).bearer_auth(&session.token)).await?;
    let answer: Value = serde_json::from_str(&body)
        .map_err(|e| LinkError::Protocol(format!("Get Current Context is not JSON: {e}")))?;
    let site = SiteContext::read(&answer)?;
    let local = match engine.current_context_of(local_topic) {
        Some(current) => SiteContext {
            context_type: current.context_type.to_owned(),
            context: serde_json::from_str(&current.context).unwrap_or_default(),
            version_id: None,
        },
        None => return Ok(()),
    };
    let step = match (site.open_event(), local.open_event()) {
        (Some(open), _)
            if (site.context_type.as_str(), site.anchor_id())
                != (local.context_type.as_str(), local.anchor_id()) =>
        {
            Some((open, site.context, site.version_id.as_deref()))
        }
        (None, Some(local_open)) => EventSpec::lookup(&local_open.name.replace("-open", "-close"))
            .map(|close| (close, local.context, None)),
        _ => None,
    };
    if let Some((event, context, site_version)) = step {
        tracing::info!(
            event = event.name,
            "re-syncing from the site's current context"
        );
        relay
            .apply_from_site(event, Value::Array(context), site_version)
            .map_err(|e| {
                LinkError::Protocol(format!("the site's current context was refused here: {e}"))
            })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(id: &str) -> Value {
        json!({ "key": "patient", "resource": { "resourceType": "Patient", "id": id } })
    }

    #[test]
    fn the_stu3_answer_and_the_stu2_bare_array_read_alike() {
        let stu3 =
            SiteContext::read(&json!({ "context.type": "Patient", "context": [patient("p1")] }))
                .unwrap();
        let stu2 = SiteContext::read(&json!([patient("p1")])).unwrap();
        assert_eq!(stu3, stu2);
        assert_eq!(stu3.anchor_id(), Some("p1"));
        let study = SiteContext::read(&json!([patient("p1"), { "key": "study", "resource": { "resourceType": "ImagingStudy", "id": "s1" } }])).unwrap();
        assert_eq!(study.context_type, "ImagingStudy");
        assert_eq!(study.anchor_id(), Some("s1"));
    }

    #[test]
    fn nothing_open_and_the_content_bundle_are_read_as_such() {
        let empty = SiteContext::read(&json!({ "context.type": "", "context": [] })).unwrap();
        assert_eq!(empty.open_event(), None);
        let report = SiteContext::read(&json!({ "context.type": "DiagnosticReport", "context": [
            { "key": "report", "resource": { "resourceType": "DiagnosticReport", "id": "r1" } },
            { "key": "content", "resource": { "resourceType": "Bundle", "id": "b" } },
        ] }))
        .unwrap();
        assert_eq!(report.context.len(), 1);
        let versioned = SiteContext::read(&json!({ "context.type": "DiagnosticReport", "context.versionId": "v7", "context": [] })).unwrap();
        assert_eq!(versioned.version_id.as_deref(), Some("v7"));
        assert!(SiteContext::read(&json!("text")).is_err());
    }
}
