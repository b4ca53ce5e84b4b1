//! The request a legacy app's message becomes: its FHIR resources (Patient, ImagingStudy,
//! DiagnosticReport) built from what the message said, or kept from the current context where
//! the patient rule ties the message to it.

use super::patient::{self, Current, Decision, Refusal, Said};
use crate::mapping::{DICOM_UID_SYSTEM, IdKind, Mapped, study_uid_identifier};
use lockstep_fhircast::{EventKind, EventSpec};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// Why a message did not become a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotBuilt {
    /// It names another patient than the current context (the detail may name the MRN: for
    /// the audit only).
    OtherPatient(String),
    /// It does not say enough to build the request.
    Unresolvable(String),
}

/// Builds the context of the request, refusing rather than guessing the patient.
pub(crate) fn build(
    event: &'static EventSpec,
    said: &Said,
    current: &Current,
    allow_patient_change: bool,
) -> Result<Value, NotBuilt> {
    let decision = patient::decide(said, current, allow_patient_change);
    let current_study = decision.current_study();
    let patient = match decision {
        Decision::Current { patient, .. } => patient.clone(),
        Decision::Named { mrn, .. } | Decision::Switch { mrn } => named_patient(mrn, said),
        Decision::Refuse(refusal) => return Err(refused(refusal)),
    };
    let patient_id = patient
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let subject = json!({ "reference": format!("Patient/{patient_id}") });

    let study = || -> Result<Value, NotBuilt> {
        if current_study && let Some(s) = &current.study {
            return Ok(s.clone());
        }
        let mut identifiers = Vec::new();
        let id = match (&said.accession, &said.uid) {
            (Some(a), _) => derived_id("study", &a.system, &a.value),
            (None, Some(uid)) => derived_id("study", DICOM_UID_SYSTEM, uid),
            (None, None) => {
                return Err(NotBuilt::Unresolvable(
                    "the message names no accession or Study Instance UID".into(),
                ));
            }
        };
        if let Some(a) = &said.accession {
            identifiers.push(a.identifier(IdKind::Accession));
        }
        if let Some(uid) = &said.uid {
            identifiers.push(study_uid_identifier(uid));
        }
        Ok(json!({
            "resourceType": "ImagingStudy",
            "id": id,
            "status": "available",
            "subject": subject,
            "identifier": identifiers,
        }))
    };
    let report = || -> Result<Value, NotBuilt> {
        if current_study && let Some(r) = &current.report {
            return Ok(r.clone());
        }
        let a = said.accession.as_ref().ok_or_else(|| {
            NotBuilt::Unresolvable("a report needs the accession of its order".into())
        })?;
        Ok(json!({
            "resourceType": "DiagnosticReport",
            "id": derived_id("report", &a.system, &a.value),
            "status": "preliminary",
            "subject": subject,
            "basedOn": [{ "identifier": a.identifier(IdKind::Accession) }],
        }))
    };
    let only_id = |r: Value, keep: &[&str]| -> Value {
        let mut slim = json!({});
        for key in ["resourceType", "id"].iter().chain(keep) {
            if let Some(v) = r.get(*key) {
                slim[*key] = v.clone();
            }
        }
        slim
    };
    let entry = |key: &str, resource: Value| json!({ "key": key, "resource": resource });
    let closing = event.kind == EventKind::Close;
    let patient_entry = if closing {
        entry("patient", only_id(patient, &[]))
    } else {
        entry("patient", patient)
    };
    let context = match event.anchor {
        Some("Patient") => vec![patient_entry],
        Some("ImagingStudy") if closing => vec![
            entry("study", only_id(study()?, &["status", "subject"])),
            patient_entry,
        ],
        Some("ImagingStudy") => vec![entry("study", study()?), patient_entry],
        Some("DiagnosticReport") => {
            let report = report()?;
            let study = study().ok();
            let mut context = vec![if closing {
                entry("report", only_id(report, &["subject"]))
            } else {
                entry("report", report)
            }];
            if let Some(s) = study {
                context.push(if closing {
                    entry("study", only_id(s, &[]))
                } else {
                    entry("study", s)
                });
            }
            context.push(patient_entry);
            context
        }
        _ => {
            return Err(NotBuilt::Unresolvable(format!(
                "`{}` cannot be requested from a legacy message",
                event.name
            )));
        }
    };
    Ok(Value::Array(context))
}

/// The Patient a message names by MRN (with the names and birth date it gives, for identity
/// verification).
fn named_patient(m: &Mapped, said: &Said) -> Value {
    let mut patient = json!({
        "resourceType": "Patient",
        "id": derived_id("patient", &m.system, &m.value),
        "identifier": [m.identifier(IdKind::Mrn)],
    });
    if said.family.is_some() || said.given.is_some() {
        let mut name = json!({});
        if let Some(f) = &said.family {
            name["family"] = f.clone().into();
        }
        if let Some(g) = &said.given {
            name["given"] = g.split_whitespace().collect::<Vec<_>>().into();
        }
        patient["name"] = json!([name]);
    }
    if let Some(d) = &said.birth_date {
        patient["birthDate"] = d.clone().into();
    }
    patient
}

/// The rejection for a refusal of the patient rule; the detail (audit only) may name the MRN.
fn refused(refusal: Refusal<'_>) -> NotBuilt {
    match refusal {
        Refusal::OtherPatient { mrn } | Refusal::CurrentStudyOtherPatient { mrn } => {
            NotBuilt::OtherPatient(format!(
                "the message names MRN {} ({})",
                mrn.value, mrn.system
            ))
        }
        Refusal::OtherStudyNoMrn => NotBuilt::OtherPatient(
            "the message names a study that is not the current one and no patient".into(),
        ),
        Refusal::NoPatient => NotBuilt::Unresolvable(
            "the message names no patient, and there is no current patient to take it from".into(),
        ),
    }
}

/// A stable logical id for a resource first seen in a legacy message: the same identifier
/// always gets the same id, so a later close names what was opened.
fn derived_id(kind: &str, system: &str, value: &str) -> String {
    let hash = Sha256::digest(format!("{kind}|{system}|{value}").as_bytes());
    format!("{kind}-{}", &format!("{hash:x}")[..24])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mrn(value: &str) -> Mapped {
        Mapped {
            value: value.into(),
            system: "urn:oid:1.2.3".into(),
            issuer: None,
        }
    }

    fn current_patient() -> Current {
        Current {
            patient: Some(json!({"resourceType": "Patient", "id": "p1",
                "identifier": [{"system": "urn:oid:1.2.3", "value": "M1"}]})),
            ..Current::default()
        }
    }

    #[test]
    fn refusals_name_the_mrn_only_in_their_detail() {
        let open = EventSpec::lookup("Patient-open").unwrap();
        let other = Said {
            mrn: Some(mrn("M2")),
            ..Said::default()
        };
        let err = build(open, &other, &current_patient(), false).unwrap_err();
        assert_eq!(
            err,
            NotBuilt::OtherPatient("the message names MRN M2 (urn:oid:1.2.3)".into())
        );
        let nobody = Said {
            uid: Some("1.2.840.1".into()),
            ..Said::default()
        };
        assert!(matches!(
            build(open, &nobody, &Current::default(), true),
            Err(NotBuilt::Unresolvable(_))
        ));
    }

    #[test]
    fn the_current_patient_is_kept_and_a_new_one_is_built_from_the_message() {
        let open = EventSpec::lookup("Patient-open").unwrap();
        let same = Said {
            mrn: Some(mrn("M1")),
            family: Some("Other".into()),
            ..Said::default()
        };
        let context = build(open, &same, &current_patient(), false).unwrap();
        assert_eq!(context[0]["resource"]["id"], "p1");
        assert!(context[0]["resource"].get("name").is_none());

        let switch = Said {
            mrn: Some(mrn("M2")),
            given: Some("Ann  Zoë".into()),
            birth_date: Some("1961-02-03".into()),
            ..Said::default()
        };
        let context = build(open, &switch, &current_patient(), true).unwrap();
        let patient = &context[0]["resource"];
        assert_eq!(patient["id"], derived_id("patient", "urn:oid:1.2.3", "M2"));
        assert_eq!(patient["name"][0]["given"], json!(["Ann", "Zoë"]));
        assert_eq!(patient["birthDate"], "1961-02-03");
    }
}
