//! The open contexts of one topic: what is current, what a late joiner is replayed, the shared
//! content of anchor contexts (spec 2-10), and the opens an event implies (spec 2-5).
//!
//! This is the state machine every context change goes through, with no knowledge of
//! subscribers or sockets; the engine calls it under the topic's lock.

use crate::engine::FrameText;
use crate::ids::event_id;
use lockstep_fhircast::event::EventKind;
use lockstep_fhircast::notification::{ContextEntry, Frame, Versions};
use lockstep_fhircast::summary::ContextSummary;
use lockstep_fhircast::{ContextChange, EventSpec};
use serde_json::{Value, json};
use std::sync::Arc;

/// Why a change cannot be applied to the topic's current state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContextRefusal {
    /// The change conflicts with the current state (stale version, not the current anchor).
    #[error("{0}")]
    Conflict(String),
    /// The change is malformed in a way only the hub can see (an update bundle's rules).
    #[error("{0}")]
    Invalid(String),
}

/// The latest open of one anchor type, kept for replay to new subscribers.
pub(crate) struct OpenRecord {
    pub anchor_type: &'static str,
    pub anchor_id: String,
    pub event: &'static EventSpec,
    pub event_id: Arc<str>,
    pub frame: FrameText,
    /// For an implied open: the event that implied it.
    pub implied_by: Option<&'static EventSpec>,
    /// The id of the patient the context belongs to, where it names one.
    pub patient: Option<String>,
}

struct Current {
    context_type: &'static str,
    anchor_id: String,
    context: Arc<str>,
    context_is_empty: bool,
    summary: ContextSummary,
}

/// Shared content of one open anchor context (a report being dictated).
struct Content {
    anchor_type: &'static str,
    anchor_id: String,
    patient: Option<String>,
    version: String,
    /// `Type/id` → resource, in the order first added.
    resources: Vec<(String, Value)>,
}

/// The outcome of applying a change: the frames to send and what to tell listeners.
pub(crate) struct Applied {
    pub frame: FrameText,
    /// Opens the event implies, for subscribers that want them but not the event itself.
    pub implied: Vec<(&'static EventSpec, FrameText)>,
    pub summary: Option<ContextSummary>,
}

/// The Get Current Context view (spec 2-9).
#[derive(Debug, Clone)]
pub struct CurrentContext {
    /// The anchor's resource type, or `""` when no context is open.
    pub context_type: &'static str,
    pub version_id: String,
    /// The context array of the open that set it, as received, plus the `content` Bundle.
    pub context: String,
    pub summary: Option<ContextSummary>,
}

impl CurrentContext {
    /// The response body, with the context relayed verbatim.
    pub fn to_json(&self) -> String {
        format!(
            "{{\"context.type\":{},\"context.versionId\":{},\"context\":{}}}",
            json!(self.context_type),
            json!(self.version_id),
            self.context
        )
    }
}

pub(crate) struct TopicContexts {
    latest_open: Vec<OpenRecord>,
    current: Option<Current>,
    /// Changes whenever the current context changes (GET's `context.versionId`).
    version: String,
    content: Vec<Content>,
}

impl TopicContexts {
    pub fn new() -> Self {
        TopicContexts {
            latest_open: Vec::new(),
            current: None,
            version: event_id(),
            content: Vec::new(),
        }
    }

    /// Applies a validated change and builds the frames it is sent as.
    pub fn apply(&mut self, change: &ContextChange) -> Result<Applied, ContextRefusal> {
        let event = change.event;
        match event.kind {
            EventKind::Open => Ok(self.open(change)),
            EventKind::Close => {
                self.close(change);
                Ok(plain(change))
            }
            EventKind::Update => self.update(change),
            EventKind::Select => {
                self.require_current_anchor(change)?;
                Ok(plain(change))
            }
            EventKind::Infrastructure => {
                if event.name == "UserLogout" {
                    // A logged-out session must not hand its last patient to the next app.
                    self.latest_open.clear();
                    self.content.clear();
                    self.current = None;
                    self.version = event_id();
                }
                Ok(plain(change))
            }
        }
    }

    fn open(&mut self, change: &ContextChange) -> Applied {
        let event = change.event;
        let (Some(anchor_type), Some(anchor_id)) = (event.anchor, change.anchor_id()) else {
            return plain(change);
        };
        let anchor_id = anchor_id.to_owned();
        let patient = patient_of(change);
        if let Some(patient) = &patient {
            self.supersede_other_patients(patient);
        }
        self.version = event_id();
        // Anchors that can carry content get a content version, minted here (spec 2-10);
        // reopening the same report starts a new, empty content session.
        let content_version = supports_content(event).then(|| {
            self.content
                .retain(|c| !(c.anchor_type == anchor_type && c.anchor_id == anchor_id));
            self.content.push(Content {
                anchor_type,
                anchor_id: anchor_id.clone(),
                patient: patient.clone(),
                version: self.version.clone(),
                resources: Vec::new(),
            });
            self.version.clone()
        });
        let frame: FrameText = change
            .frame(Versions {
                version_id: content_version.as_deref(),
                prior_version_id: None,
            })
            .into();
        let event_id: Arc<str> = change.id.as_str().into();
        let implied = implied_opens(change);
        // Implied opens make their anchors current for replay too: a late joiner that wants
        // only Patient-open learns the patient of the report being read.
        for (spec, implied_frame, id) in &implied {
            self.remember_open(OpenRecord {
                anchor_type: spec.anchor.unwrap_or_default(),
                anchor_id: id.clone(),
                event: spec,
                event_id: event_id.clone(),
                frame: implied_frame.clone(),
                implied_by: Some(event),
                patient: patient.clone(),
            });
        }
        self.remember_open(OpenRecord {
            anchor_type,
            anchor_id: anchor_id.clone(),
            event,
            event_id,
            frame: frame.clone(),
            implied_by: None,
            patient,
        });
        let summary = ContextSummary::from_entries(event.name, &change.entries);
        self.current = Some(Current {
            context_type: anchor_type,
            anchor_id,
            context: change.context.get().into(),
            context_is_empty: change.entries.is_empty(),
            summary: summary.clone(),
        });
        Applied {
            frame,
            implied: implied
                .into_iter()
                .map(|(spec, frame, _)| (spec, frame))
                .collect(),
            summary: Some(summary),
        }
    }

    /// An open of one patient ends what is open for any other (see the README's positions
    /// table): a late joiner is never replayed, and an update never reaches, a study or report
    /// of the patient the clinician left. Contexts that name no patient stay.
    fn supersede_other_patients(&mut self, patient: &str) {
        let other = |of: &Option<String>| of.as_deref().is_some_and(|p| p != patient);
        self.latest_open.retain(|o| !other(&o.patient));
        self.content.retain(|c| !other(&c.patient));
    }

    fn remember_open(&mut self, record: OpenRecord) {
        // An implied open of the context already open keeps the explicit open that set it:
        // a late joiner is replayed what a subscriber present all along received.
        if record.implied_by.is_some()
            && self
                .latest_open
                .iter()
                .any(|o| o.anchor_type == record.anchor_type && o.anchor_id == record.anchor_id)
        {
            return;
        }
        self.latest_open
            .retain(|o| o.anchor_type != record.anchor_type);
        self.latest_open.push(record);
    }

    fn close(&mut self, change: &ContextChange) {
        let (Some(anchor_type), Some(anchor_id)) = (change.event.anchor, change.anchor_id()) else {
            return;
        };
        // Only the context the close names ends; an earlier one is not restored (multi-tab
        // rule, spec 4-2-2), and a close naming nothing open is relayed but changes nothing.
        let names = |t: &str, id: &str| t == anchor_type && id == anchor_id;
        self.latest_open
            .retain(|o| !names(o.anchor_type, &o.anchor_id));
        self.content.retain(|c| !names(c.anchor_type, &c.anchor_id));
        if self
            .current
            .as_ref()
            .is_some_and(|c| names(c.context_type, &c.anchor_id))
        {
            self.current = None;
            self.version = event_id();
        }
    }

    /// The anchor an update or select names must be the current context
    /// (`supportsNonCurrentContextUpdates` is false).
    fn require_current_anchor(&self, change: &ContextChange) -> Result<(), ContextRefusal> {
        let anchor_type = change.event.anchor.unwrap_or_default();
        let anchor_id = change.anchor_id().unwrap_or_default();
        match &self.current {
            Some(c) if c.context_type == anchor_type && c.anchor_id == anchor_id => Ok(()),
            _ => Err(ContextRefusal::Conflict(format!(
                "{anchor_type}/{anchor_id} is not the current context; this hub does not accept \
                 {} outside the current context",
                change.event.name
            ))),
        }
    }

    /// Applies a content update all-or-nothing and mints a new version (spec 2-10).
    fn update(&mut self, change: &ContextChange) -> Result<Applied, ContextRefusal> {
        self.require_current_anchor(change)?;
        let anchor_type = change.event.anchor.unwrap_or_default();
        let anchor_id = change.anchor_id().unwrap_or_default();
        let current_context = self.current.as_ref().map(|c| c.context.clone());
        let content = self
            .content
            .iter_mut()
            .find(|c| c.anchor_type == anchor_type && c.anchor_id == anchor_id)
            .ok_or_else(|| {
                ContextRefusal::Conflict(format!(
                    "{anchor_type}/{anchor_id} has no content session"
                ))
            })?;
        match change.version_id.as_deref() {
            None => {
                return Err(ContextRefusal::Conflict(
                    "an update must name the version it applies to in `context.versionId`".into(),
                ));
            }
            Some(v) if v != content.version => {
                return Err(ContextRefusal::Conflict(format!(
                    "stale context.versionId `{v}`: the current version is `{}`",
                    content.version
                )));
            }
            Some(_) => {}
        }
        let bundle = change
            .entry("updates")
            .and_then(ContextEntry::resource)
            .ok_or_else(|| ContextRefusal::Invalid("missing `updates` Bundle".into()))?;
        let protected = open_context_keys(current_context.as_deref());
        let mut resources = content.resources.clone();
        apply_bundle(bundle, &mut resources, &protected)?;
        let prior = std::mem::replace(&mut content.version, event_id());
        content.resources = resources;
        self.version = content.version.clone();
        let frame = change
            .frame(Versions {
                version_id: Some(&content.version),
                prior_version_id: Some(&prior),
            })
            .into();
        Ok(Applied {
            frame,
            implied: Vec::new(),
            summary: None,
        })
    }

    /// The opens to replay to a new subscriber: the latest unclosed open of each anchor type it
    /// wants, skipping an implied open when it also wants the event that implied it.
    pub fn replay<'a>(
        &'a self,
        wants: impl Fn(&'static EventSpec) -> bool + 'a,
    ) -> impl Iterator<Item = &'a OpenRecord> + 'a {
        self.latest_open.iter().filter(move |o| {
            let implied_and_covered = o.implied_by.is_some_and(|primary| {
                wants(primary)
                    && self
                        .latest_open
                        .iter()
                        .any(|p| std::ptr::eq(p.event, primary) && p.event_id == o.event_id)
            });
            wants(o.event) && !implied_and_covered
        })
    }

    /// The current anchor's display summary alone: what the tray shows, without building the
    /// whole [`CurrentContext`] (its content Bundle).
    pub fn current_summary(&self) -> Option<ContextSummary> {
        self.current.as_ref().map(|current| current.summary.clone())
    }

    pub fn current(&self) -> CurrentContext {
        let Some(current) = &self.current else {
            return CurrentContext {
                context_type: "",
                version_id: self.version.clone(),
                context: "[]".into(),
                summary: None,
            };
        };
        // With content sharing, GET always carries one `content` Bundle (empty when there is
        // none) next to the context of the original open, unchanged (spec 2-9, 2-10).
        let content = self
            .content
            .iter()
            .find(|c| c.anchor_type == current.context_type && c.anchor_id == current.anchor_id);
        let entries: Vec<Value> = content
            .map(|c| {
                c.resources
                    .iter()
                    .map(|(url, r)| json!({ "fullUrl": url, "resource": r }))
                    .collect()
            })
            .unwrap_or_default();
        let version_id = content.map_or_else(|| self.version.clone(), |c| c.version.clone());
        // The Bundle's id is the version it shows, so that repeated reads are identical.
        let bundle = json!({
            "key": "content",
            "resource": { "resourceType": "Bundle", "id": version_id, "type": "collection", "entry": entries },
        });
        let raw = current.context.trim_end();
        let body = raw.strip_suffix(']').unwrap_or(raw);
        let separator = if current.context_is_empty { "" } else { "," };
        CurrentContext {
            context_type: current.context_type,
            version_id,
            context: format!("{body}{separator}{bundle}]"),
            summary: Some(current.summary.clone()),
        }
    }
}

/// The id of the patient an open belongs to: its anchor for a Patient-open, else its
/// `patient` entry's. Patients are told apart by resource id, so that two ids are two
/// patients even where they might be one: the cautious side.
fn patient_of(change: &ContextChange) -> Option<String> {
    if change.event.anchor == Some("Patient") {
        return change.anchor_id().map(str::to_owned);
    }
    let patient = change.entry("patient")?.resource()?;
    patient.get("id")?.as_str().map(str::to_owned)
}

/// An event relayed as sent; its summary (the patient a close names, say) is for history.
fn plain(change: &ContextChange) -> Applied {
    Applied {
        frame: change.frame(Versions::default()).into(),
        implied: Vec::new(),
        summary: (!change.entries.is_empty())
            .then(|| ContextSummary::from_entries(change.event.name, &change.entries)),
    }
}

/// Anchors whose opens start a content session: those with an `*-update` event.
fn supports_content(open: &'static EventSpec) -> bool {
    EventSpec::all()
        .iter()
        .any(|e| e.kind == EventKind::Update && e.anchor == open.anchor)
}

/// The opens an open implies (spec 2-5): a Patient-open for its patient, an ImagingStudy-open
/// for each study of a report, an Encounter-open for its encounter; each with the patient.
fn implied_opens(change: &ContextChange) -> Vec<(&'static EventSpec, FrameText, String)> {
    let primary = change.event;
    let patient = change.entry("patient");
    let mut implied = Vec::new();
    for entry in &change.entries {
        let Some(resource_type) = entry
            .resource()
            .and_then(|r| r.get("resourceType"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if Some(resource_type) == primary.anchor {
            continue;
        }
        let Some(open) = EventSpec::all()
            .iter()
            .find(|e| e.kind == EventKind::Open && e.anchor == Some(resource_type))
        else {
            continue;
        };
        let Some(id) = entry
            .resource()
            .and_then(|r| r.get("id"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        // The implied event carries its anchor and, where its profile has one, the patient.
        let mut context = vec![entry.value.clone()];
        if resource_type != "Patient"
            && open.key("patient").is_some()
            && let Some(patient) = patient
        {
            context.push(patient.value.clone());
        }
        let context = Value::Array(context).to_string();
        let frame = Frame {
            timestamp: &change.timestamp,
            id: &change.id,
            topic: &change.topic,
            event: open.name,
            context: &context,
            versions: Versions::default(),
        }
        .to_json();
        implied.push((open, frame.into(), id.to_owned()));
    }
    implied
}

/// `Type/id` of the resources of the original open, which updates may not delete.
fn open_context_keys(context: Option<&str>) -> Vec<String> {
    let entries: Vec<Value> = context
        .and_then(|c| serde_json::from_str(c).ok())
        .unwrap_or_default();
    entries
        .iter()
        .filter_map(|e| {
            let r = e.get("resource")?;
            Some(format!(
                "{}/{}",
                r.get("resourceType")?.as_str()?,
                r.get("id")?.as_str()?
            ))
        })
        .collect()
}

/// Applies an update Bundle to `resources`; on error nothing of it may be kept (the caller
/// works on a copy).
fn apply_bundle(
    bundle: &Value,
    resources: &mut Vec<(String, Value)>,
    protected: &[String],
) -> Result<(), ContextRefusal> {
    let invalid = |m: String| Err(ContextRefusal::Invalid(m));
    if bundle.get("type").and_then(Value::as_str) != Some("transaction") {
        return invalid("the `updates` Bundle must have type `transaction`".into());
    }
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut seen: Vec<String> = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        let method = entry
            .get("request")
            .and_then(|r| r.get("method"))
            .and_then(Value::as_str);
        let target = match method {
            Some("PUT") => {
                let resource = entry.get("resource").ok_or_else(|| {
                    ContextRefusal::Invalid(format!("entry {i}: a PUT needs a `resource`"))
                })?;
                match (
                    resource.get("resourceType").and_then(Value::as_str),
                    resource.get("id").and_then(Value::as_str),
                ) {
                    (Some(t), Some(id)) if !id.is_empty() => format!("{t}/{id}"),
                    _ => {
                        return invalid(format!(
                            "entry {i}: a PUT resource needs `resourceType` and `id`"
                        ));
                    }
                }
            }
            Some("DELETE") => {
                // DELETE entries name their target by fullUrl (the spec's examples leave out
                // request.url).
                let url = entry
                    .get("fullUrl")
                    .or_else(|| entry.get("request").and_then(|r| r.get("url")))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                let mut parts = url.rsplit('/');
                match (parts.next(), parts.next()) {
                    (Some(id), Some(t)) if !id.is_empty() && !t.is_empty() => format!("{t}/{id}"),
                    _ => {
                        return invalid(format!(
                            "entry {i}: a DELETE needs a `fullUrl` of the form Type/id"
                        ));
                    }
                }
            }
            Some(other) => {
                return invalid(format!(
                    "entry {i}: method {other} is not allowed in an update (only PUT and DELETE)"
                ));
            }
            None => return invalid(format!("entry {i}: missing `request.method`")),
        };
        if seen.contains(&target) {
            return invalid(format!(
                "entry {i}: {target} appears more than once in the Bundle"
            ));
        }
        if method == Some("DELETE") && protected.contains(&target) {
            return invalid(format!(
                "entry {i}: {target} is part of the opened context and cannot be removed"
            ));
        }
        match method {
            Some("PUT") => {
                let resource = entry.get("resource").cloned().unwrap_or_default();
                match resources.iter_mut().find(|(k, _)| *k == target) {
                    Some((_, existing)) => *existing = resource,
                    None => resources.push((target.clone(), resource)),
                }
            }
            _ => resources.retain(|(k, _)| *k != target),
        }
        seen.push(target);
    }
    Ok(())
}
