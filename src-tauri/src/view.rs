//! What the tray and the window show of the shared context: one shape, owned by the shell.

use lockstep_fhircast::summary::ContextSummary;
use serde::Serialize;

/// The tray's first line when no patient is open.
pub const NO_PATIENT: &str = "No patient in context";

/// The window's whole state: sent by the `current_context` command and by every
/// `context-changed` event, so the page renders both the same way.
///
/// The UI reads this shape, not the agent's summary, so a change in the protocol crates
/// cannot silently blank a field on screen.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentContext {
    pub hub_url: String,
    /// The same text as the tray's first line.
    pub headline: String,
    pub patient: Option<Patient>,
    pub study: Option<Study>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Patient {
    pub name: Option<String>,
    pub birth_date: Option<String>,
    pub sex: Option<String>,
    pub mrn: Option<String>,
    pub mrn_issuer: Option<String>,
}

/// No study instance UID: people check a study by its accession number, and a 60-digit UID
/// on screen only crowds out what they read.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Study {
    pub accession: Option<String>,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub report_status: Option<String>,
}

impl CurrentContext {
    pub fn new(hub_url: String, summary: Option<&ContextSummary>) -> Self {
        let patient = summary.and_then(Patient::from_summary);
        let study = summary.and_then(Study::from_summary);
        Self {
            hub_url,
            headline: headline(summary, patient.as_ref()),
            patient,
            study,
        }
    }
}

impl Patient {
    fn from_summary(summary: &ContextSummary) -> Option<Self> {
        let patient = Self {
            name: present(&summary.patient_name),
            birth_date: present(&summary.patient_birth_date),
            sex: present(&summary.patient_sex).map(|sex| capitalise(&sex)),
            mrn: present(&summary.patient_mrn),
            mrn_issuer: present(&summary.patient_mrn_issuer),
        };
        let Self {
            name,
            birth_date,
            sex,
            mrn,
            mrn_issuer,
        } = &patient;
        let any = [name, birth_date, sex, mrn, mrn_issuer]
            .iter()
            .any(|field| field.is_some());
        any.then_some(patient)
    }
}

impl Study {
    fn from_summary(summary: &ContextSummary) -> Option<Self> {
        let study = Self {
            accession: present(&summary.study_accession),
            modality: present(&summary.study_modality),
            description: present(&summary.study_description),
            report_status: present(&summary.report_status),
        };
        let Self {
            accession,
            modality,
            description,
            report_status,
        } = &study;
        let any = [accession, modality, description, report_status]
            .iter()
            .any(|field| field.is_some());
        any.then_some(study)
    }
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

/// Blank strings from a sender count as absent, so they neither show as empty rows nor make
/// an empty context look like an open one.
fn present(value: &Option<String>) -> Option<String> {
    value
        .as_deref()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .map(str::to_owned)
}

/// FHIR codes are lower case ("female"); people read "Female".
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

    #[test]
    fn no_context_reads_no_patient() {
        let view = CurrentContext::new("http://127.0.0.1:9/".to_owned(), None);
        assert_eq!(view.headline, "No patient in context");
        assert_eq!((view.patient, view.study), (None, None));
    }

    #[test]
    fn patient_headline_has_name_birth_date_and_mrn() {
        let view = CurrentContext::new(String::new(), Some(&jane()));
        assert_eq!(view.headline, "DOE, Jane · 1970-01-02 · MRN 12345");
        assert_eq!(view.patient.unwrap().sex.as_deref(), Some("Female"));
        assert_eq!(view.study, None);
    }

    #[test]
    fn unnamed_patient_is_still_a_patient() {
        let summary = ContextSummary {
            patient_name: None,
            patient_birth_date: Some("  ".to_owned()),
            ..jane()
        };
        let view = CurrentContext::new(String::new(), Some(&summary));
        assert_eq!(view.headline, "Unnamed patient · MRN 12345");
    }

    #[test]
    fn context_without_patient_fields_reads_no_patient() {
        let summary = ContextSummary {
            event: "DiagnosticReport-open".to_owned(),
            patient_sex: Some(String::new()),
            report_status: Some("preliminary".to_owned()),
            ..ContextSummary::default()
        };
        let view = CurrentContext::new(String::new(), Some(&summary));
        assert_eq!(view.headline, NO_PATIENT);
        assert_eq!(view.patient, None);
        assert!(view.study.is_some());
    }

    #[test]
    fn study_shows_when_present() {
        let summary = ContextSummary {
            event: "ImagingStudy-open".to_owned(),
            study_accession: Some("ACC-42".to_owned()),
            study_modality: Some("CT".to_owned()),
            study_description: Some("CT chest with contrast".to_owned()),
            ..jane()
        };
        let study = CurrentContext::new(String::new(), Some(&summary))
            .study
            .unwrap();
        assert_eq!(study.accession.as_deref(), Some("ACC-42"));
        assert_eq!(study.modality.as_deref(), Some("CT"));
    }

    #[test]
    fn serialises_in_the_shape_the_page_reads() {
        let view = CurrentContext::new("http://127.0.0.1:9/".to_owned(), Some(&jane()));
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["hubUrl"], "http://127.0.0.1:9/");
        assert_eq!(json["patient"]["birthDate"], "1970-01-02");
        assert_eq!(
            json["patient"]["mrnIssuer"],
            "urn:oid:1.2.36.146.595.217.0.1"
        );
        assert!(json["study"].is_null());
    }
}
