//! Between a CCOW context and a FHIRcast request, both ways, through the bridge's identifier
//! mapping and the legacy patient rule.
//!
//! In: a committed CCOW context becomes the request it asks for (Patient-open, ImagingStudy-open,
//! or the close of a cleared subject), or is refused: an unmapped suffix, a name or birth date
//! that contradicts the session's patient of the same MRN, a study whose patient is not the
//! patient subject. Out: a FHIRcast context becomes the Patient and DICOMStudy items to write.

use super::items::{Subjects, Tagged};
use crate::legacy::{self, Current, Said};
use crate::mapping::{IdKind, IdentifierMapping, Mapped};
use lockstep_fhircast::identifier::study_uid;
use lockstep_fhircast::{EventKind, EventSpec};
use serde_json::{Value, json};

/// What a committed CCOW context asks of the session.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Follow {
    /// It changes nothing the session carries (another subject, or the same context).
    Nothing,
    Request {
        event: &'static EventSpec,
        context: Value,
    },
}

/// The request a committed context asks for, or why it is refused (plain words, for the
/// survey's reasons and the log: it names no patient).
pub(crate) fn request_for(
    subjects: &Subjects,
    mapping: &IdentifierMapping,
    current: &Current,
) -> Result<Follow, String> {
    if !subjects.patient_named && !subjects.study_named {
        return Ok(Follow::Nothing);
    }
    let study_given = subjects.study_uid.is_some() || !subjects.accessions.is_empty();
    if subjects.patient_named && subjects.mrns.is_empty() && !study_given {
        // The patient subject was cleared: close the session's patient, if it has one.
        return Ok(match &current.patient {
            Some(patient) => close("Patient-close", vec![entry("patient", only_id(patient))]),
            None => Follow::Nothing,
        });
    }
    let mrn = first_mapped(mapping, IdKind::Mrn, &subjects.mrns)?;
    let accession = first_mapped(mapping, IdKind::Accession, &subjects.accessions)?;
    let said = Said {
        mrn,
        accession,
        uid: subjects.study_uid.clone(),
        family: subjects.family.clone(),
        given: subjects.given.clone(),
        birth_date: subjects.birth_date.clone(),
    };
    if let (Some(mrn), Some(patient)) = (&said.mrn, &current.patient)
        && legacy::is_patient(patient, mrn)
        && let Some(why) = legacy::contradiction(&said, patient)
    {
        return Err(format!("the context names {why}; refused"));
    }
    if !study_given && subjects.study_named {
        // The study subject was cleared, the patient kept: close the session's study.
        if let Some(study) = &current.study {
            let closing = vec![
                entry("study", only_id(study)),
                entry(
                    "patient",
                    current.patient.as_ref().map(only_id).unwrap_or_default(),
                ),
            ];
            return Ok(close("ImagingStudy-close", closing));
        }
    }
    let event = if study_given {
        "ImagingStudy-open"
    } else {
        "Patient-open"
    };
    let event = EventSpec::lookup(event).ok_or("the event catalogue lacks an open")?;
    // A CCOW commit is the user's own choice of patient: a switch is allowed, a study of
    // another patient never.
    let context = legacy::build(event, &said, current, true).map_err(|why| match why {
        legacy::NotBuilt::OtherPatient(_) => {
            "the context names a study of another patient than its patient subject".to_owned()
        }
        legacy::NotBuilt::Unresolvable(why) => why,
    })?;
    if is_current(&context, current) {
        return Ok(Follow::Nothing);
    }
    Ok(Follow::Request { event, context })
}

/// The first identifier of `kind` that the mapping knows by its suffix (the issuer); none given
/// is `None`; given but none mapped is refused (test and production suffixes never mix unless
/// the site maps both).
fn first_mapped(
    mapping: &IdentifierMapping,
    kind: IdKind,
    tagged: &[Tagged],
) -> Result<Option<Mapped>, String> {
    if tagged.is_empty() {
        return Ok(None);
    }
    let mut why = None;
    for id in tagged {
        match mapping.resolve(kind, &id.value, id.suffix.as_deref()) {
            Ok(mapped) => return Ok(Some(mapped)),
            Err(error) => why = Some(error.to_string()),
        }
    }
    Err(why.unwrap_or_default())
}

fn close(event: &str, context: Vec<Value>) -> Follow {
    match EventSpec::lookup(event) {
        Some(event) => Follow::Request {
            event,
            context: Value::Array(context),
        },
        None => Follow::Nothing,
    }
}

fn entry(key: &str, resource: Value) -> Value {
    json!({ "key": key, "resource": resource })
}

/// A resource reduced to what a close names it by.
fn only_id(resource: &Value) -> Value {
    let mut slim = json!({});
    for key in ["resourceType", "id"] {
        if let Some(v) = resource.get(key) {
            slim[key] = v.clone();
        }
    }
    slim
}

/// Whether a request's anchor is what the session already has open (a commit that changed
/// another subject only): nothing to publish.
fn is_current(context: &Value, current: &Current) -> bool {
    let id = |key: &str| -> Option<Value> {
        context
            .as_array()?
            .iter()
            .find(|e| e.get("key").and_then(Value::as_str) == Some(key))?
            .get("resource")?
            .get("id")
            .cloned()
    };
    let current_id = |r: &Option<Value>| r.as_ref().and_then(|r| r.get("id")).cloned();
    match id("study") {
        Some(study) => Some(study) == current_id(&current.study),
        None => current.study.is_none() && id("patient") == current_id(&current.patient),
    }
}

/// The Patient and DICOMStudy items that say what a FHIRcast context holds: the patient by
/// every MRN whose system the mapping knows (its issuer as the suffix), the study by its UID
/// and mapped accession. A close (or an event without a patient) clears the subjects.
pub(crate) fn subjects_for(
    event: &EventSpec,
    context: &Value,
    mapping: &IdentifierMapping,
) -> Result<Subjects, String> {
    let resource = |key: &str| {
        context
            .as_array()
            .into_iter()
            .flatten()
            .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
            .and_then(|e| e.get("resource"))
    };
    let mut subjects = Subjects {
        patient_named: true,
        study_named: true,
        ..Subjects::default()
    };
    if event.kind == EventKind::Close {
        return Ok(subjects);
    }
    let Some(patient) = resource("patient") else {
        return Ok(subjects);
    };
    let mrn = mapping.mrn_of(patient).map_err(|e| e.to_string())?;
    let suffix = mrn.issuer.clone().ok_or_else(|| {
        format!(
            "the MRN system {} has no issuer configured for CCOW",
            mrn.system
        )
    })?;
    subjects.mrns.push(Tagged {
        suffix: Some(suffix),
        value: mrn.value,
    });
    let name = patient.get("name").and_then(|n| n.get(0));
    let text = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    subjects.family = text(name.and_then(|n| n.get("family")));
    subjects.given = name
        .and_then(|n| n.get("given"))
        .and_then(Value::as_array)
        .map(|given| {
            given
                .iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .filter(|g| !g.is_empty());
    subjects.birth_date = text(patient.get("birthDate"));
    subjects.gender = patient.get("gender").and_then(Value::as_str).and_then(|g| {
        ["male", "female", "other", "unknown"]
            .into_iter()
            .find(|k| *k == g)
    });
    if let Some(study) = resource("study") {
        subjects.study_uid = study_uid(study).map(str::to_owned);
        if let Ok(accession) = mapping.accession_of(study)
            && let Some(suffix) = accession.issuer.clone()
        {
            subjects.accessions.push(Tagged {
                suffix: Some(suffix),
                value: accession.value,
            });
        }
    }
    Ok(subjects)
}

/// The items to write for a change on the topic: [`subjects_for`], written; a close writes its
/// subject cleared.
pub(crate) fn items_for(
    event: &'static EventSpec,
    context: &Value,
    mapping: &IdentifierMapping,
    accession_item: &str,
) -> Result<Vec<(String, String)>, String> {
    let subjects = subjects_for(event, context, mapping)?;
    let items = subjects.write(accession_item).map_err(|e| e.message)?;
    Ok(with_cleared_subjects(items, event))
}

/// A close clears its subjects: an empty value for each identifier item, as CCOW writes a
/// cleared subject.
fn with_cleared_subjects(
    mut items: Vec<(String, String)>,
    event: &EventSpec,
) -> Vec<(String, String)> {
    if items.is_empty() && event.kind == EventKind::Close {
        let cleared = match event.anchor {
            Some("ImagingStudy") => "DICOMStudy.Id.InstanceUID",
            _ => "Patient.Id.MRN",
        };
        items.push((cleared.to_owned(), String::new()));
    }
    items
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mapping::IdentifierSystem;

    const MRN: &str = "urn:oid:1.2.36.1.2001.1003.0";
    const ACSN: &str = "urn:oid:1.2.36.1.2001.1005.52";

    fn mapping() -> IdentifierMapping {
        IdentifierMapping {
            mrn: vec![IdentifierSystem {
                system: MRN.into(),
                issuer: Some("GENHOSP".into()),
            }],
            accession: vec![IdentifierSystem {
                system: ACSN.into(),
                issuer: Some("GENHOSP".into()),
            }],
        }
    }

    fn tagged(suffix: &str, value: &str) -> Vec<Tagged> {
        vec![Tagged {
            suffix: Some(suffix.into()),
            value: value.into(),
        }]
    }

    fn patient_subject(mrn: &str, family: &str) -> Subjects {
        Subjects {
            mrns: tagged("GENHOSP", mrn),
            family: Some(family.into()),
            birth_date: Some("1970-01-02".into()),
            patient_named: true,
            ..Subjects::default()
        }
    }

    /// The session after Patient-open of `mrn` (DOE, born 1970-01-02), as the rule reads it.
    fn current(mrn: &str) -> Current {
        let subjects = patient_subject(mrn, "DOE");
        match request_for(&subjects, &mapping(), &Current::default()).unwrap() {
            Follow::Request { context, .. } => Current::from_context(&context.to_string()),
            Follow::Nothing => unreachable!(),
        }
    }

    fn event_of(follow: &Follow) -> &str {
        match follow {
            Follow::Request { event, .. } => event.name,
            Follow::Nothing => "nothing",
        }
    }

    #[test]
    fn commits_become_the_requests_they_ask_for() {
        let m = mapping();
        let with_study = Subjects {
            study_uid: Some("1.2.840.1".into()),
            accessions: tagged("GENHOSP", "A77"),
            study_named: true,
            ..patient_subject("12345", "DOE")
        };
        let cleared_patient = Subjects {
            patient_named: true,
            ..Subjects::default()
        };
        let user_only = Subjects::default();
        let cases: &[(&str, &Subjects, Current, &str)] = &[
            (
                "a patient",
                &patient_subject("12345", "DOE"),
                Current::default(),
                "Patient-open",
            ),
            (
                "a study of a new patient",
                &with_study,
                current("999"),
                "ImagingStudy-open",
            ),
            (
                "a study of the same patient",
                &with_study,
                current("12345"),
                "ImagingStudy-open",
            ),
            (
                "the same patient again",
                &patient_subject("12345", "DOE"),
                current("12345"),
                "nothing",
            ),
            (
                "a cleared patient",
                &cleared_patient,
                current("12345"),
                "Patient-close",
            ),
            (
                "a cleared patient, none open",
                &cleared_patient,
                Current::default(),
                "nothing",
            ),
            (
                "another subject only",
                &user_only,
                current("12345"),
                "nothing",
            ),
        ];
        for (case, subjects, current, expected) in cases {
            let follow =
                request_for(subjects, &m, current).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(event_of(&follow), *expected, "{case}");
        }
        let Follow::Request { context, .. } =
            request_for(&with_study, &m, &Current::default()).unwrap()
        else {
            unreachable!()
        };
        let study = &context[0]["resource"];
        assert_eq!(study["identifier"][0]["value"], "A77");
        assert_eq!(study["identifier"][0]["system"], ACSN);
        assert_eq!(context[1]["resource"]["identifier"][0]["system"], MRN);
        assert_eq!(context[1]["resource"]["name"][0]["family"], "DOE");
    }

    #[test]
    fn unmapped_or_contradicting_commits_are_refused() {
        let m = mapping();
        let test_suffix = Subjects {
            mrns: tagged("GENHOSP_TEST", "12345"),
            patient_named: true,
            ..Subjects::default()
        };
        let renamed = patient_subject("12345", "ROE");
        let reborn = Subjects {
            birth_date: Some("1971-01-02".into()),
            ..patient_subject("12345", "DOE")
        };
        let cases: &[(&str, &Subjects, &str)] = &[
            ("a suffix the site did not map", &test_suffix, "not mapped"),
            ("another name under the same MRN", &renamed, "family name"),
            (
                "another birth date under the same MRN",
                &reborn,
                "birth date",
            ),
        ];
        for (case, subjects, words) in cases {
            let why = request_for(subjects, &m, &current("12345")).unwrap_err();
            assert!(why.contains(words), "{case}: {why}");
            assert!(
                !why.contains("12345"),
                "{case}: no MRN in plain words: {why}"
            );
        }
    }

    #[test]
    fn a_fhircast_context_becomes_items_and_back() {
        let m = mapping();
        let subjects = Subjects {
            study_uid: Some("1.2.840.1".into()),
            accessions: tagged("GENHOSP", "A77"),
            study_named: true,
            given: Some("Jane".into()),
            gender: Some("female"),
            ..patient_subject("12345", "DOE")
        };
        let Follow::Request { event, context } =
            request_for(&subjects, &m, &Current::default()).unwrap()
        else {
            unreachable!()
        };
        let back = subjects_for(event, &context, &m).unwrap();
        assert_eq!(back.mrns, subjects.mrns);
        assert_eq!(back.family, subjects.family);
        assert_eq!(back.given, subjects.given);
        assert_eq!(back.birth_date, subjects.birth_date);
        assert_eq!(back.study_uid, subjects.study_uid);
        assert_eq!(back.accessions, subjects.accessions);

        let close = EventSpec::lookup("Patient-close").unwrap();
        let cleared = subjects_for(close, &context, &m).unwrap();
        assert!(cleared.patient_named && cleared.mrns.is_empty());

        let unmapped = json!([{ "key": "patient", "resource": {
            "resourceType": "Patient", "id": "p9",
            "identifier": [{ "system": "urn:oid:9.9", "value": "X" }] } }]);
        let open = EventSpec::lookup("Patient-open").unwrap();
        assert!(
            subjects_for(open, &unmapped, &m)
                .unwrap_err()
                .contains("refused")
        );
    }
}
