//! What the tray and the windows show of the agent: the shapes the pages read, owned by the
//! shell.
//!
//! The pages read these shapes, not the agent's types, so a change in the agent or protocol
//! crates cannot silently blank a field on screen; every conversion here is display only.

use lockstep_agent::desktop::TrayStatus;
use lockstep_agent::{LastChange, LinkKind, LinkState, LinkView};
use lockstep_fhircast::identifier;
use lockstep_fhircast::summary::ContextSummary;
use serde::Serialize;
use serde_json::Value;

/// The tray's first line when no patient is open.
pub const NO_PATIENT: &str = "No patient in context";

/// The current-context window's main state: sent by the `current_view` command and by every
/// `context-changed` event, so the page renders both the same way.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentContext {
    pub hub_url: String,
    /// The same text as the tray's first line.
    pub headline: String,
    pub patient: Option<Patient>,
    pub study: Option<Study>,
    pub report: Option<Report>,
    /// The change that left the context as it is; `None` until the first change.
    pub change: Option<LastChange>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub mrn: Option<String>,
    pub mrn_issuer: Option<String>,
    /// Every identifier the patient resource carries, MRN first, each with its issuer.
    pub identifiers: Vec<Identifier>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Identifier {
    /// What kind of number it is: "MRN", a type's text or code, or "ID".
    pub label: String,
    pub value: String,
    /// Who issued it: the assigner's name, else the identifier system.
    pub issuer: Option<String>,
}

/// No study instance UID: people check a study by its accession number, and a 60-digit UID
/// on screen only crowds out what they read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Study {
    pub accession: Option<String>,
    pub modality: Option<String>,
    pub description: Option<String>,
    /// When the study started, as the sender wrote it (`2026-04-12` or with a time).
    pub date: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    pub status: String,
}

impl CurrentContext {
    /// `context` is the current context array exactly as the hub holds it (for the fields the
    /// summary does not keep: every identifier, the study date).
    pub fn new(
        hub_url: String,
        summary: Option<&ContextSummary>,
        context: Option<&str>,
        change: Option<LastChange>,
    ) -> Self {
        let resources: Value = context
            .and_then(|text| serde_json::from_str(text).ok())
            .unwrap_or(Value::Null);
        let resource = |key: &str| resource(&resources, key);
        let patient = summary.and_then(|s| Patient::new(s, resource("patient")));
        let study = summary.and_then(|s| Study::new(s, resource("study")));
        let report = summary
            .and_then(|s| present(&s.report_status))
            .map(|status| Report {
                status: capitalise(&status),
            });
        Self {
            hub_url,
            headline: headline(summary, patient.as_ref()),
            patient,
            study,
            report,
            change,
        }
    }
}

impl Patient {
    fn new(summary: &ContextSummary, resource: Option<&Value>) -> Option<Self> {
        let mrn = present(&summary.patient_mrn);
        let mrn_issuer = present(&summary.patient_mrn_issuer);
        let mut identifiers = resource.map(identifiers).unwrap_or_default();
        // The MRN the tray shows comes first, so the two never disagree about which is which.
        if let Some(mrn) = &mrn {
            match identifiers.iter().position(|i| &i.value == mrn) {
                Some(at) => {
                    let mut first = identifiers.remove(at);
                    first.label = "MRN".to_owned();
                    identifiers.insert(0, first);
                }
                None => identifiers.insert(
                    0,
                    Identifier {
                        label: "MRN".to_owned(),
                        value: mrn.clone(),
                        issuer: mrn_issuer.clone(),
                    },
                ),
            }
        }
        let patient = Self {
            name: present(&summary.patient_name),
            birth_date: present(&summary.patient_birth_date),
            sex: present(&summary.patient_sex).map(|sex| capitalise(&sex)),
            mrn,
            mrn_issuer,
            identifiers,
        };
        let any = patient.name.is_some()
            || patient.birth_date.is_some()
            || patient.sex.is_some()
            || !patient.identifiers.is_empty();
        any.then_some(patient)
    }
}

impl Study {
    fn new(summary: &ContextSummary, resource: Option<&Value>) -> Option<Self> {
        let study = Self {
            accession: present(&summary.study_accession),
            modality: present(&summary.study_modality),
            description: present(&summary.study_description),
            date: resource
                .and_then(|study| study.get("started"))
                .and_then(Value::as_str)
                .and_then(readable_date_time),
        };
        let any = study.accession.is_some()
            || study.modality.is_some()
            || study.description.is_some()
            || study.date.is_some();
        any.then_some(study)
    }
}

/// The resource under `key` in a FHIRcast context array.
fn resource<'a>(context: &'a Value, key: &str) -> Option<&'a Value> {
    context
        .as_array()?
        .iter()
        .find(|entry| entry.get("key").and_then(Value::as_str) == Some(key))?
        .get("resource")
}

fn identifiers(resource: &Value) -> Vec<Identifier> {
    identifier::identifiers(resource)
        .filter_map(|id| {
            let label = match id.type_code() {
                Some("MR") => "MRN",
                code => id.type_text().or(code).unwrap_or("ID"),
            };
            Some(Identifier {
                label: label.to_owned(),
                value: id.value()?.to_owned(),
                issuer: id.issuer().map(str::to_owned),
            })
        })
        .collect()
}

/// `2026-04-12T09:31:00+02:00` → `2026-04-12 09:31`; a bare date stays as it is. The sender's
/// own time zone is kept: a study date is read as the modality wrote it.
fn readable_date_time(value: &str) -> Option<String> {
    let value = value.trim();
    if value.is_empty() {
        return None;
    }
    Some(match value.split_once('T') {
        Some((date, time)) if time.len() >= 5 => format!("{date} {}", &time[..5]),
        Some((date, _)) => date.to_owned(),
        None => value.to_owned(),
    })
}

/// Who is open, in one line that fits a menu: the summary's own patient line.
///
/// A patient without a name still gets a line that says so, rather than reading like the
/// "no patient" state: a clinician must never mistake an open chart for none.
fn headline(summary: Option<&ContextSummary>, patient: Option<&Patient>) -> String {
    if let Some(line) = summary.and_then(ContextSummary::patient_line) {
        return line;
    }
    match patient {
        None => NO_PATIENT.to_owned(),
        Some(patient) => {
            let mut parts = vec!["Unnamed patient".to_owned()];
            parts.extend(patient.birth_date.clone());
            parts.extend(patient.mrn.as_ref().map(|mrn| format!("MRN {mrn}")));
            parts.join(" · ")
        }
    }
}

/// One connected app (or bridge) as the current-context window lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppLink {
    /// The name site IT registered it under.
    pub name: String,
    /// What the app calls itself (`subscriber.name`), where that differs.
    pub own_name: Option<String>,
    /// The bridge it joins through (`CCOW`), for an app that speaks no FHIRcast.
    pub via: Option<String>,
    pub client_id: String,
    pub kind: LinkKind,
    /// For styling (`data-state`): the state's name, `following`, `refused`, ...
    pub state: LinkState,
    /// The state in plain words.
    pub state_label: String,
    /// Why, in plain words (the last SyncError's reason), when there is one.
    pub detail: Option<String>,
    pub since: String,
    pub problem: bool,
}

impl From<&LinkView> for AppLink {
    fn from(link: &LinkView) -> Self {
        Self {
            name: link.name.clone(),
            own_name: link.own_name.clone(),
            via: link.via.clone(),
            client_id: link.client_id.clone(),
            kind: link.kind,
            state: link.state,
            state_label: state_label(link.kind, link.state).to_owned(),
            detail: link.detail.clone(),
            since: link.since.clone(),
            problem: link.problem,
        }
    }
}

fn state_label(kind: LinkKind, state: LinkState) -> &'static str {
    // The link to the site's hub: what the clinician must know is whether it follows the site.
    if kind == LinkKind::Upstream {
        return match state {
            LinkState::Pending => "Signing in",
            LinkState::Following | LinkState::FollowingUnacknowledged => "Following the site",
            LinkState::Refused { .. } => "Sign-in refused",
            LinkState::Off => "Not signed in",
            _ => "Down: changes are not shared with the site",
        };
    }
    match state {
        LinkState::Pending => "Connecting",
        LinkState::Following => "Following",
        LinkState::FollowingUnacknowledged => "Following, no acknowledgements",
        LinkState::Refused { .. } => "Refused the last change",
        LinkState::Unresponsive => "Not answering",
        LinkState::Gone(_) => "Disconnected",
        LinkState::Unconfirmed => "Launched, not confirmed",
        LinkState::Broken => "Not working",
        LinkState::Off => "Off",
    }
}

/// The tray's state as windows show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusView {
    /// `idle`, `patient`, `problem`, `paused`, `no-history` or `sync-without-history`.
    pub status: TrayStatus,
    pub label: &'static str,
    /// Why, in full, where the label alone does not say (history that cannot be written).
    pub detail: Option<String>,
}

impl StatusView {
    pub fn new(status: TrayStatus, detail: Option<String>) -> Self {
        Self {
            status,
            label: status_label(status),
            detail,
        }
    }
}

pub fn status_label(status: TrayStatus) -> &'static str {
    match status {
        TrayStatus::Idle => "No patient in context",
        TrayStatus::Patient => "In step",
        TrayStatus::Problem => "Sync problem: an app did not follow",
        TrayStatus::Paused => "Paused: context changes are refused",
        TrayStatus::NoHistory => "History cannot be written: context changes are refused",
        TrayStatus::SyncWithoutHistory => {
            "History cannot be written: syncing without a record (site policy)"
        }
    }
}

/// A path as people read it: under the home folder, `~/…` (Linux and macOS).
pub fn display_path(path: &str) -> String {
    let home = if cfg!(windows) {
        None
    } else {
        std::env::var("HOME").ok().filter(|home| home.len() > 1)
    };
    match home.as_deref().and_then(|home| path.strip_prefix(home)) {
        Some(rest) if rest.starts_with('/') => format!("~{rest}"),
        _ => path.to_owned(),
    }
}

/// Blank strings from a sender count as absent, so they neither show as empty rows nor make
/// an empty context look like an open one.
fn present(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// FHIR codes are lower case ("female", "preliminary"); people read "Female".
fn capitalise(code: &str) -> String {
    let mut chars = code.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn jane() -> ContextSummary {
        ContextSummary {
            event: "Patient-open".to_owned(),
            patient_name: Some("DOE, Jane".to_owned()),
            patient_birth_date: Some("1970-01-02".to_owned()),
            patient_sex: Some("female".to_owned()),
            patient_mrn: Some("12345".to_owned()),
            patient_mrn_issuer: Some("urn:oid:1.2.36.146.595.217.0.1".to_owned()),
            ..ContextSummary::default()
        }
    }

    fn view(summary: Option<&ContextSummary>, context: Option<&str>) -> CurrentContext {
        CurrentContext::new("http://127.0.0.1:9/".to_owned(), summary, context, None)
    }

    #[test]
    fn the_site_link_says_whether_changes_reach_the_site() {
        assert_eq!(
            state_label(LinkKind::Upstream, LinkState::Broken),
            "Down: changes are not shared with the site"
        );
        assert_eq!(
            state_label(LinkKind::Upstream, LinkState::Following),
            "Following the site"
        );
        assert_eq!(state_label(LinkKind::App, LinkState::Broken), "Not working");
    }

    #[test]
    fn no_context_reads_no_patient() {
        let view = view(None, None);
        assert_eq!(view.headline, "No patient in context");
        assert_eq!((view.patient, view.study, view.report), (None, None, None));
    }

    #[test]
    fn patient_headline_has_name_birth_date_and_mrn() {
        let view = view(Some(&jane()), None);
        assert_eq!(view.headline, "DOE, Jane · 1970-01-02 · MRN 12345");
        let patient = view.patient.unwrap();
        assert_eq!(patient.sex.as_deref(), Some("Female"));
        assert_eq!(
            patient.identifiers,
            [Identifier {
                label: "MRN".into(),
                value: "12345".into(),
                issuer: Some("urn:oid:1.2.36.146.595.217.0.1".into())
            }]
        );
        assert_eq!(view.study, None);
    }

    #[test]
    fn every_identifier_shows_with_its_issuer_mrn_first() {
        let context = json!([{"key": "patient", "resource": {
            "resourceType": "Patient",
            "identifier": [
                {"system": "http://hl7.org/fhir/sid/us-ssn", "type": {"text": "SSN"}, "value": "999-99-9999"},
                {"type": {"coding": [{"code": "MR"}]}, "system": "urn:oid:1.2.36.146.595.217.0.1",
                 "assigner": {"display": "General Hospital"}, "value": "12345"},
                {"value": "  "}
            ]
        }}])
        .to_string();
        let patient = view(Some(&jane()), Some(&context)).patient.unwrap();
        let shown: Vec<_> = patient
            .identifiers
            .iter()
            .map(|i| (i.label.as_str(), i.value.as_str(), i.issuer.as_deref()))
            .collect();
        assert_eq!(
            shown,
            [
                ("MRN", "12345", Some("General Hospital")),
                ("SSN", "999-99-9999", Some("http://hl7.org/fhir/sid/us-ssn")),
            ]
        );
    }

    #[test]
    fn unnamed_patient_is_still_a_patient() {
        let summary = ContextSummary {
            patient_name: None,
            patient_birth_date: Some("  ".to_owned()),
            ..jane()
        };
        assert_eq!(
            view(Some(&summary), None).headline,
            "Unnamed patient · MRN 12345"
        );
    }

    #[test]
    fn context_without_patient_fields_reads_no_patient() {
        let summary = ContextSummary {
            event: "DiagnosticReport-open".to_owned(),
            patient_sex: Some(String::new()),
            report_status: Some("preliminary".to_owned()),
            ..ContextSummary::default()
        };
        let view = view(Some(&summary), None);
        assert_eq!(view.headline, NO_PATIENT);
        assert_eq!(view.patient, None);
        assert_eq!(view.report.unwrap().status, "Preliminary");
    }

    #[test]
    fn study_shows_with_its_date() {
        let summary = ContextSummary {
            event: "ImagingStudy-open".to_owned(),
            study_accession: Some("ACC-42".to_owned()),
            study_modality: Some("CT".to_owned()),
            study_description: Some("CT chest with contrast".to_owned()),
            ..jane()
        };
        let context = json!([{"key": "study", "resource": {
            "resourceType": "ImagingStudy", "started": "2026-04-12T09:31:27+02:00"
        }}])
        .to_string();
        let study = view(Some(&summary), Some(&context)).study.unwrap();
        assert_eq!(study.accession.as_deref(), Some("ACC-42"));
        assert_eq!(study.modality.as_deref(), Some("CT"));
        assert_eq!(study.date.as_deref(), Some("2026-04-12 09:31"));
    }

    #[test]
    fn dates_read_as_written() {
        assert_eq!(
            readable_date_time("2026-04-12").as_deref(),
            Some("2026-04-12")
        );
        assert_eq!(
            readable_date_time("2026-04-12T09").as_deref(),
            Some("2026-04-12")
        );
        assert_eq!(readable_date_time(" "), None);
    }

    #[test]
    fn serialises_in_the_shape_the_page_reads() {
        let change = LastChange {
            at: "2026-04-12T07:31:27.000Z".into(),
            event: "Patient-open".into(),
            app: "Radiology worklist".into(),
        };
        let view = CurrentContext::new(
            "http://127.0.0.1:9/".to_owned(),
            Some(&jane()),
            None,
            Some(change),
        );
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["hubUrl"], "http://127.0.0.1:9/");
        assert_eq!(json["patient"]["birthDate"], "1970-01-02");
        assert_eq!(json["patient"]["identifiers"][0]["label"], "MRN");
        assert_eq!(json["change"]["app"], "Radiology worklist");
        assert!(json["study"].is_null());
    }

    #[test]
    #[cfg(unix)]
    fn paths_under_home_read_with_a_tilde() {
        let home = std::env::var("HOME").unwrap();
        assert_eq!(
            display_path(&format!("{home}/.config/x.toml")),
            "~/.config/x.toml"
        );
        assert_eq!(display_path(&format!("{home}x/y")), format!("{home}x/y"));
        assert_eq!(
            display_path("/etc/lockstep/config.toml"),
            "/etc/lockstep/config.toml"
        );
    }

    #[test]
    fn every_link_state_has_plain_words() {
        use lockstep_agent::LinkEnd;
        let states = [
            LinkState::Pending,
            LinkState::Following,
            LinkState::FollowingUnacknowledged,
            LinkState::Refused { status: Some(409) },
            LinkState::Unresponsive,
            LinkState::Gone(LinkEnd::Unsubscribed),
            LinkState::Unconfirmed,
            LinkState::Broken,
            LinkState::Off,
        ];
        let labels: std::collections::HashSet<&str> =
            states.map(|state| state_label(LinkKind::App, state)).into();
        assert_eq!(labels.len(), states.len(), "two states read alike");
        assert!(labels.iter().all(|label| !label.is_empty()));
    }
}
