//! A display summary of a context: who and what is open, for the tray, history and logs.
//!
//! Only what a person needs to recognise the patient and study at a glance; the full resources
//! stay in the event. Fields that are absent or unreadable are `None`, never guessed.

use crate::identifier::{based_on_identifiers, identifier_of_type, identifiers, study_uid};
use crate::notification::ContextEntry;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContextSummary {
    /// The canonical event name that set this context.
    pub event: String,
    pub patient_name: Option<String>,
    pub patient_birth_date: Option<String>,
    pub patient_sex: Option<String>,
    pub patient_mrn: Option<String>,
    pub patient_mrn_issuer: Option<String>,
    pub study_accession: Option<String>,
    pub study_uid: Option<String>,
    pub study_modality: Option<String>,
    pub study_description: Option<String>,
    pub report_status: Option<String>,
}

impl ContextSummary {
    pub fn from_entries(event: &str, entries: &[ContextEntry]) -> Self {
        let resource = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .and_then(ContextEntry::resource)
        };
        let mut summary = ContextSummary {
            event: event.to_owned(),
            ..Default::default()
        };
        if let Some(patient) = resource("patient") {
            summary.patient_name = patient
                .get("name")
                .and_then(|n| n.get(0))
                .and_then(human_name);
            summary.patient_birth_date = text(patient.get("birthDate"));
            summary.patient_sex = text(patient.get("gender"));
            if let Some(mrn) =
                identifier_of_type(patient, "MR").or_else(|| identifiers(patient).next())
            {
                summary.patient_mrn = mrn.value().map(str::to_owned);
                summary.patient_mrn_issuer = mrn.issuer().map(str::to_owned);
            }
        }
        if let Some(study) = resource("study") {
            summary.study_accession = identifier_of_type(study, "ACSN")
                .and_then(|i| i.value())
                .map(str::to_owned);
            summary.study_uid = study_uid(study).map(str::to_owned);
            summary.study_modality = study
                .get("modality")
                .and_then(|m| m.get(0))
                .and_then(|m| text(m.get("code")));
            summary.study_description = text(study.get("description"));
        }
        if let Some(report) = resource("report") {
            summary.report_status = text(report.get("status"));
            if summary.study_accession.is_none() {
                summary.study_accession = based_on_identifiers(report)
                    .find(|i| i.has_type("ACSN"))
                    .and_then(|i| i.value())
                    .map(str::to_owned);
            }
        }
        summary
    }

    /// "FAMILY, Given · 1970-01-02 · MRN 12345": the one line the tray shows.
    pub fn patient_line(&self) -> Option<String> {
        let name = self.patient_name.as_deref()?;
        let mut line = name.to_owned();
        if let Some(dob) = &self.patient_birth_date {
            line.push_str(" · ");
            line.push_str(dob);
        }
        if let Some(mrn) = &self.patient_mrn {
            line.push_str(" · MRN ");
            line.push_str(mrn);
        }
        Some(line)
    }
}

fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// A HumanName as "FAMILY, Given Middle", or its `text`.
fn human_name(name: &Value) -> Option<String> {
    let family = text(name.get("family"));
    let given: Vec<&str> = name
        .get("given")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    match family {
        Some(family) if given.is_empty() => Some(family.to_uppercase()),
        Some(family) => Some(format!("{}, {}", family.to_uppercase(), given.join(" "))),
        None => text(name.get("text")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::notification::ContextChange;

    #[test]
    fn summarises_patient_and_study() {
        let body = r#"{"timestamp":"t","id":"i","event":{"hub.topic":"T","hub.event":"ImagingStudy-open","context":[
          {"key":"patient","resource":{"resourceType":"Patient","id":"p1","name":[{"family":"Doe","given":["Jane","Q"]}],
            "birthDate":"1970-01-02","gender":"female",
            "identifier":[{"type":{"coding":[{"code":"MR"}]},"system":"urn:oid:1.2.3","value":"12345"}]}},
          {"key":"study","resource":{"resourceType":"ImagingStudy","id":"s1","status":"available","subject":{"reference":"Patient/p1"},
            "identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.1"},{"type":{"coding":[{"code":"ACSN"}]},"value":"A77"}],
            "modality":[{"code":"CT"}],"description":"CT chest"}}]}}"#;
        let change = ContextChange::parse(body.as_bytes()).unwrap();
        let s = ContextSummary::from_entries(change.event.name, &change.entries);
        assert_eq!(
            s.patient_line().unwrap(),
            "DOE, Jane Q · 1970-01-02 · MRN 12345"
        );
        assert_eq!(s.patient_mrn_issuer.as_deref(), Some("urn:oid:1.2.3"));
        assert_eq!(s.study_accession.as_deref(), Some("A77"));
        assert_eq!(s.study_uid.as_deref(), Some("1.2.840.1"));
        assert_eq!(s.study_modality.as_deref(), Some("CT"));
        assert_eq!(s.patient_sex.as_deref(), Some("female"));
    }
}
