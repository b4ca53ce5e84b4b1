//! The patient rule: whether a message a legacy app sent (a message dropped, a CCOW commit) may name the patient of a request, and which
//! patient. Pure: what the message said, what is current and the rule's setting in; a decision
//! out.
//!
//! It refuses rather than guesses. A message is tied to the current patient by its MRN (same mapped
//! system, same value), or, when it names no MRN, only by the current study (its accession in the
//! same system, or its Study Instance UID). Another patient is refused unless the rule allows a
//! patient change, and always when the message also names the current study.

use crate::mapping::Mapped;
use lockstep_fhircast::identifier::{IdentifierRef, based_on_identifiers, identifiers, study_uid};
use serde_json::Value;

/// What a message says, with its identifiers already mapped.
#[derive(Debug, Default)]
pub(crate) struct Said {
    pub mrn: Option<Mapped>,
    pub accession: Option<Mapped>,
    /// The Study Instance UID, without a `urn:oid:` prefix.
    pub uid: Option<String>,
    pub family: Option<String>,
    pub given: Option<String>,
    /// A FHIR date.
    pub birth_date: Option<String>,
}

/// The current context's resources.
#[derive(Debug, Default)]
pub(crate) struct Current {
    pub patient: Option<Value>,
    pub study: Option<Value>,
    pub report: Option<Value>,
}

impl Current {
    /// From a context as the engine keeps it (a JSON array of `{key, resource}`); unreadable is
    /// empty.
    pub fn from_context(context: &str) -> Current {
        let entries: Vec<Value> = serde_json::from_str(context).unwrap_or_default();
        let resource = |key: &str| {
            entries
                .iter()
                .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
                .and_then(|e| e.get("resource"))
                .cloned()
        };
        Current {
            patient: resource("patient"),
            study: resource("study"),
            report: resource("report"),
        }
    }
}

/// What the rule decided about a message's patient.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Decision<'a> {
    /// The message's patient is the current one: the request keeps the current Patient.
    Current {
        patient: &'a Value,
        /// The message names the current study (whose resources the request keeps).
        current_study: bool,
    },
    /// There is no current patient: the request names the patient the message names by MRN.
    Named {
        mrn: &'a Mapped,
        current_study: bool,
    },
    /// The message names another patient by MRN, not with the current study, and its rule allows
    /// a patient change.
    Switch {
        mrn: &'a Mapped,
    },
    Refuse(Refusal<'a>),
}

/// Why the rule refused a message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Refusal<'a> {
    /// The MRN is another patient's, and the rule does not allow a patient change.
    OtherPatient { mrn: &'a Mapped },
    /// The message names the current study with another patient's MRN: a contradiction no rule
    /// can allow.
    CurrentStudyOtherPatient { mrn: &'a Mapped },
    /// No MRN, and the study is not the current one: nothing ties the message to the current
    /// patient.
    OtherStudyNoMrn,
    /// No MRN, and no current patient to take one from.
    NoPatient,
}

impl Decision<'_> {
    /// Whether the request keeps the current study's (and report's) resources.
    pub fn current_study(&self) -> bool {
        match self {
            Decision::Current { current_study, .. } | Decision::Named { current_study, .. } => {
                *current_study
            }
            Decision::Switch { .. } | Decision::Refuse(_) => false,
        }
    }
}

/// The patient rule.
pub(crate) fn decide<'a>(
    said: &'a Said,
    current: &'a Current,
    allow_patient_change: bool,
) -> Decision<'a> {
    let current_study = is_current_study(said, current);
    let Some(patient) = &current.patient else {
        return match &said.mrn {
            Some(mrn) => Decision::Named { mrn, current_study },
            None => Decision::Refuse(Refusal::NoPatient),
        };
    };
    match &said.mrn {
        Some(mrn) if names(identifiers(patient), mrn) => Decision::Current {
            patient,
            current_study,
        },
        Some(mrn) if current_study => Decision::Refuse(Refusal::CurrentStudyOtherPatient { mrn }),
        Some(mrn) if allow_patient_change => Decision::Switch { mrn },
        Some(mrn) => Decision::Refuse(Refusal::OtherPatient { mrn }),
        // No MRN in the message: only its study can tie it to the current patient.
        None if current_study => Decision::Current {
            patient,
            current_study,
        },
        None => Decision::Refuse(Refusal::OtherStudyNoMrn),
    }
}

/// Whether a message's study is the current one: the same accession in the same system (in the
/// current study's identifiers or `basedOn`, or the current report's), or the same Study
/// Instance UID.
fn is_current_study(said: &Said, current: &Current) -> bool {
    let has_accession =
        |r: &Value, m: &Mapped| names(identifiers(r), m) || names(based_on_identifiers(r), m);
    let by_accession = said.accession.as_ref().is_some_and(|m| {
        current.study.as_ref().is_some_and(|s| has_accession(s, m))
            || current.report.as_ref().is_some_and(|r| has_accession(r, m))
    });
    let by_uid = said
        .uid
        .as_deref()
        .is_some_and(|uid| current.study.as_ref().and_then(study_uid) == Some(uid));
    by_accession || by_uid
}

/// What contradicts the current Patient in a message that names it by its MRN: another family
/// name or another birth date (two patients under one MRN, or a mistyped one). Only what both
/// give is compared; names case-insensitively.
pub(crate) fn contradiction(said: &Said, patient: &Value) -> Option<&'static str> {
    fn text(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str)
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }
    let family = text(
        patient
            .get("name")
            .and_then(|n| n.get(0))
            .and_then(|n| n.get("family")),
    );
    if let (Some(said), Some(current)) = (said.family.as_deref(), family)
        && !said.trim().eq_ignore_ascii_case(current)
    {
        return Some("another family name than the current patient of the same MRN");
    }
    if let (Some(said), Some(current)) =
        (said.birth_date.as_deref(), text(patient.get("birthDate")))
        && said.trim() != current
    {
        return Some("another birth date than the current patient of the same MRN");
    }
    None
}

/// Whether `patient` carries the identifier `mrn`.
pub(crate) fn is_patient(patient: &Value, mrn: &Mapped) -> bool {
    names(identifiers(patient), mrn)
}

/// Whether any of `ids` is `m` (its system exactly, its value trimmed).
fn names<'a>(mut ids: impl Iterator<Item = IdentifierRef<'a>>, m: &Mapped) -> bool {
    ids.any(|i| i.is_in(&m.system) && i.value() == Some(m.value.as_str()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MRN: &str = "urn:oid:1.2.3";
    const OTHER_MRN: &str = "urn:oid:9.9";
    const ACSN: &str = "urn:oid:1.2.3.5";

    fn mapped(system: &str, value: &str) -> Mapped {
        Mapped {
            value: value.into(),
            system: system.into(),
            issuer: None,
        }
    }

    fn said(mrn: Option<(&str, &str)>, accession: Option<(&str, &str)>, uid: Option<&str>) -> Said {
        Said {
            mrn: mrn.map(|(s, v)| mapped(s, v)),
            accession: accession.map(|(s, v)| mapped(s, v)),
            uid: uid.map(str::to_owned),
            ..Said::default()
        }
    }

    #[test]
    fn a_name_or_birth_date_that_contradicts_the_current_patient_is_named() {
        let patient =
            json!({"name": [{"family": "Doe", "given": ["Jane"]}], "birthDate": "1970-01-02"});
        let cases: &[(Option<&str>, Option<&str>, bool)] = &[
            (Some("DOE"), Some("1970-01-02"), false),
            (None, None, false),
            (Some("Roe"), None, true),
            (None, Some("1970-01-03"), true),
        ];
        for (family, birth_date, contradicts) in cases {
            let said = Said {
                family: family.map(str::to_owned),
                birth_date: birth_date.map(str::to_owned),
                ..Said::default()
            };
            assert_eq!(
                contradiction(&said, &patient).is_some(),
                *contradicts,
                "{family:?} {birth_date:?}"
            );
        }
        let unnamed = json!({"id": "p1"});
        let said = Said {
            family: Some("Roe".into()),
            ..Said::default()
        };
        assert_eq!(
            contradiction(&said, &unnamed),
            None,
            "nothing to compare with"
        );
    }

    /// The current context: patient M1 (written ` M1 `), study A1 with UID 1.2.840.1.
    fn current_study_open() -> Current {
        Current {
            patient: Some(
                json!({"resourceType": "Patient", "id": "p1", "identifier": [
                    {"system": OTHER_MRN, "value": "X"},
                    {"system": MRN, "value": " M1 "},
                ]}),
            ),
            study: Some(
                json!({"resourceType": "ImagingStudy", "id": "s1", "identifier": [
                    {"type": {"coding": [{"code": "ACSN"}]}, "system": ACSN, "value": "A1"},
                    {"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1"},
                ]}),
            ),
            report: None,
        }
    }

    /// The current context: a report whose order (basedOn) is accession A7, no study.
    fn current_report_open() -> Current {
        Current {
            patient: current_study_open().patient,
            study: None,
            report: Some(
                json!({"resourceType": "DiagnosticReport", "id": "r1", "basedOn": [
                    {"identifier": {"system": ACSN, "value": "A7"}},
                ]}),
            ),
        }
    }

    /// A current study that names its order (basedOn) instead of an accession identifier.
    fn current_study_based_on() -> Current {
        Current {
            patient: current_study_open().patient,
            study: Some(
                json!({"resourceType": "ImagingStudy", "id": "s2", "basedOn": [
                    {"identifier": {"system": ACSN, "value": "A2"}},
                ]}),
            ),
            report: None,
        }
    }

    fn nothing_current() -> Current {
        Current::default()
    }

    /// What a row expects, without the borrowed resources.
    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Expect {
        SamePatient { current_study: bool },
        Named { current_study: bool },
        Switch,
        OtherPatient,
        CurrentStudyOtherPatient,
        OtherStudyNoMrn,
        NoPatient,
    }

    fn expect_of(d: &Decision<'_>, said: &Said, current: &Current) -> Expect {
        let is_said_mrn = |mrn: &Mapped| said.mrn.as_ref() == Some(mrn);
        match *d {
            Decision::Current {
                patient,
                current_study,
            } => {
                assert_eq!(
                    Some(patient),
                    current.patient.as_ref(),
                    "keeps the current one"
                );
                Expect::SamePatient { current_study }
            }
            Decision::Named { mrn, current_study } => {
                assert!(is_said_mrn(mrn));
                Expect::Named { current_study }
            }
            Decision::Switch { mrn } => {
                assert!(is_said_mrn(mrn));
                Expect::Switch
            }
            Decision::Refuse(Refusal::OtherPatient { mrn }) => {
                assert!(is_said_mrn(mrn));
                Expect::OtherPatient
            }
            Decision::Refuse(Refusal::CurrentStudyOtherPatient { mrn }) => {
                assert!(is_said_mrn(mrn));
                Expect::CurrentStudyOtherPatient
            }
            Decision::Refuse(Refusal::OtherStudyNoMrn) => Expect::OtherStudyNoMrn,
            Decision::Refuse(Refusal::NoPatient) => Expect::NoPatient,
        }
    }

    #[test]
    fn the_patient_rule() {
        use Expect::*;
        let m1 = Some((MRN, "M1"));
        let m2 = Some((MRN, "M2"));
        let a1 = Some((ACSN, "A1"));
        let a9 = Some((ACSN, "A9"));
        #[rustfmt::skip]
        let rows: Vec<(&str, Said, Current, bool, Expect)> = vec![
            // (case, what the message says, what is current, allow_patient_change, decision)
            ("same patient, same study by accession",
                said(m1, a1, None), current_study_open(), false, SamePatient { current_study: true }),
            ("same patient, another study of theirs",
                said(m1, a9, None), current_study_open(), false, SamePatient { current_study: false }),
            ("same patient by MRN alone",
                said(m1, None, None), current_study_open(), false, SamePatient { current_study: false }),
            ("the same MRN value in another system is another patient",
                said(Some((OTHER_MRN, "M1")), None, None), current_study_open(), true, Switch),
            ("other patient while a study is open, not allowed",
                said(m2, a9, None), current_study_open(), false, OtherPatient),
            ("other patient while a study is open, allowed",
                said(m2, a9, None), current_study_open(), true, Switch),
            ("other patient with the current study: refused even when allowed",
                said(m2, a1, None), current_study_open(), true, CurrentStudyOtherPatient),
            ("other patient with the current study UID: refused even when allowed",
                said(m2, None, Some("1.2.840.1")), current_study_open(), true, CurrentStudyOtherPatient),
            ("other patient with the current study, not allowed",
                said(m2, a1, None), current_study_open(), false, CurrentStudyOtherPatient),
            ("no MRN, accession match by system and value",
                said(None, a1, None), current_study_open(), false, SamePatient { current_study: true }),
            ("no MRN, the accession value in another system is not a match",
                said(None, Some((MRN, "A1")), None), current_study_open(), true, OtherStudyNoMrn),
            ("no MRN, match by study UID",
                said(None, None, Some("1.2.840.1")), current_study_open(), false, SamePatient { current_study: true }),
            ("no MRN, another study UID",
                said(None, None, Some("1.2.840.2")), current_study_open(), true, OtherStudyNoMrn),
            ("no MRN, another accession: refused even when allowed",
                said(None, a9, None), current_study_open(), true, OtherStudyNoMrn),
            ("no MRN, accession of the current report's order (basedOn)",
                said(None, Some((ACSN, "A7")), None), current_report_open(), false, SamePatient { current_study: true }),
            ("no MRN, accession of the current study's order (basedOn)",
                said(None, Some((ACSN, "A2")), None), current_study_based_on(), false, SamePatient { current_study: true }),
            ("no current context, MRN given",
                said(m1, a1, None), nothing_current(), false, Named { current_study: false }),
            ("no current context, no MRN",
                said(None, a1, Some("1.2.840.1")), nothing_current(), true, NoPatient),
        ];
        for (case, said, current, allow, expected) in &rows {
            let decision = decide(said, current, *allow);
            assert_eq!(expect_of(&decision, said, current), *expected, "{case}");
            let keeps_study = matches!(
                expected,
                SamePatient {
                    current_study: true
                } | Named {
                    current_study: true
                }
            );
            assert_eq!(decision.current_study(), keeps_study, "{case}");
        }
    }

    #[test]
    fn a_blank_or_missing_current_identifier_matches_nothing() {
        let current = Current {
            patient: Some(json!({"identifier": [{"system": MRN, "value": "  "}, {"system": MRN}]})),
            study: Some(json!({"identifier": [{"system": "urn:dicom:uid", "value": "urn:oid:"}]})),
            report: None,
        };
        let said = said(Some((MRN, "M1")), None, Some(""));
        assert!(matches!(
            decide(&said, &current, false),
            Decision::Refuse(Refusal::OtherPatient { .. })
        ));
    }

    #[test]
    fn the_current_context_is_read_by_key() {
        let current = Current::from_context(
            r#"[{"key":"study","resource":{"id":"s"}},{"key":"patient","resource":{"id":"p"}}]"#,
        );
        assert_eq!(current.patient, Some(json!({"id": "p"})));
        assert_eq!(current.study, Some(json!({"id": "s"})));
        assert_eq!(current.report, None);
        assert!(Current::from_context("not json").patient.is_none());
    }
}
