//! After every (re)connection the local session is set to the site's current context: what
//! changed upstream while the link was down is not missed, and nothing the site closed stays
//! open here.

use super::LinkError;
use super::relay::Relay;
use super::signin::SiteSession;
use lockstep_fhircast::EventSpec;
use lockstep_hub::Engine;
use serde_json::{Value, json};

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
    /// The resources shared on the report so far (its `content` Bundle's entries).
    pub content: Vec<Value>,
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
        let (content, context): (Vec<Value>, Vec<Value>) = entries
            .into_iter()
            .partition(|e| e.get("key").and_then(Value::as_str) == Some("content"));
        let content = content
            .iter()
            .filter_map(|bundle| bundle.get("resource")?.get("entry")?.as_array())
            .flatten()
            .filter_map(|entry| entry.get("resource").cloned())
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
            content,
        })
    }

    /// The update that shares the report's content here, where there is content to share:
    /// every resource `PUT`, as the site's updates left them.
    fn content_update(&self) -> Option<Value> {
        if self.context_type != "DiagnosticReport" || self.content.is_empty() {
            return None;
        }
        let report = self.anchor_id()?;
        let mut context = vec![
            json!({ "key": "report", "reference": { "reference": format!("DiagnosticReport/{report}") } }),
        ];
        if let Some(patient) =
            entry(&self.context, "patient").and_then(|e| e.get("resource")?.get("id")?.as_str())
        {
            context.push(json!({ "key": "patient", "reference": { "reference": format!("Patient/{patient}") } }));
        }
        let entries: Vec<Value> = self
            .content
            .iter()
            .map(|resource| json!({ "request": { "method": "PUT" }, "resource": resource }))
            .collect();
        context.push(json!({ "key": "updates", "resource": {
            "resourceType": "Bundle",
            "id": uuid::Uuid::new_v4().to_string(),
            "type": "transaction",
            "entry": entries,
        } }));
        Some(Value::Array(context))
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

/// What is open here now, read as the site's answer is, to compare the two.
fn here(engine: &Engine, topic: &str) -> Option<SiteContext> {
    let current = engine.current_context_of(topic)?;
    Some(SiteContext {
        context_type: current.context_type.to_owned(),
        context: serde_json::from_str(&current.context).unwrap_or_default(),
        version_id: None,
        content: Vec::new(),
    })
}

/// The anchor open here now (its resource type and id), if any.
pub(crate) fn local_anchor(engine: &Engine, topic: &str) -> Option<(String, String)> {
    let here = here(engine, topic)?;
    let id = here.anchor_id()?.to_owned();
    Some((here.context_type, id))
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
    let Some(local) = here(engine, local_topic) else {
        return Ok(());
    };
    let step = match (site.open_event(), local.open_event()) {
        (Some(open), _)
            if (site.context_type.as_str(), site.anchor_id())
                != (local.context_type.as_str(), local.anchor_id()) =>
        {
            Some((open, site.context.clone(), site.version_id.as_deref()))
        }
        (None, Some(local_open)) => EventSpec::lookup(&local_open.name.replace("-open", "-close"))
            .map(|close| (close, local.context, None)),
        _ => None,
    };
    let Some((event, context, site_version)) = step else {
        return Ok(());
    };
    tracing::info!(
        event = event.name,
        "re-syncing from the site's current context"
    );
    let refused =
        |e| LinkError::Protocol(format!("the site's current context was refused here: {e}"));
    let content = (event.kind == lockstep_fhircast::EventKind::Open)
        .then(|| site.content_update())
        .flatten();
    // With content, the site's version pairs with the one the content makes here.
    let open_version = if content.is_some() {
        None
    } else {
        site_version
    };
    relay
        .apply_from_site(event, Value::Array(context), open_version)
        .map_err(refused)?;
    if let Some(update) = content {
        relay
            .apply_content_from_site(update, site_version)
            .map_err(refused)?;
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
    fn a_report_s_shared_content_becomes_one_update() {
        let site = SiteContext::read(&json!({ "context.type": "DiagnosticReport", "context.versionId": "v9", "context": [
            { "key": "report", "resource": { "resourceType": "DiagnosticReport", "id": "r1" } },
            patient("p1"),
            { "key": "content", "resource": { "resourceType": "Bundle", "id": "v9", "type": "collection", "entry": [
                { "fullUrl": "Observation/o1", "resource": { "resourceType": "Observation", "id": "o1" } }
            ] } },
        ] })).unwrap();
        let update = site.content_update().expect("an update");
        assert_eq!(update[0]["reference"]["reference"], "DiagnosticReport/r1");
        assert_eq!(update[1]["reference"]["reference"], "Patient/p1");
        assert_eq!(update[2]["resource"]["type"], "transaction");
        assert_eq!(update[2]["resource"]["entry"][0]["resource"]["id"], "o1");
        assert_eq!(
            update[2]["resource"]["entry"][0]["request"]["method"],
            "PUT"
        );
        let empty = SiteContext {
            content: Vec::new(),
            ..site
        };
        assert!(empty.content_update().is_none());
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
