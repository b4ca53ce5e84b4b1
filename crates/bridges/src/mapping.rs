//! The identifier mapping shared by every bridge: which FHIR identifier system stands for the
//! MRN or accession a legacy app knows, under which issuer name.
//!
//! Both directions refuse rather than guess. Out: a patient with no identifier in a mapped
//! system is not rendered, whatever other identifiers it has. In: an issuer that is not mapped
//! is refused; a message with no issuer is read only when the bridge maps exactly one system
//! (the site's statement that this app knows one issuer). Names and dates never identify.

use crate::problem::ConfigProblem;
pub use lockstep_fhircast::identifier::DICOM_UID_SYSTEM;
use lockstep_fhircast::identifier::{IdentifierRef, based_on_identifiers, identifiers};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// `identifiers` of a bridge.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IdentifierMapping {
    /// Patient identifiers (v2-0203 `MR`), in order of preference when rendering.
    pub mrn: Vec<IdentifierSystem>,
    /// Accession numbers (v2-0203 `ACSN`), in order of preference when rendering.
    pub accession: Vec<IdentifierSystem>,
}

/// One mapped system.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierSystem {
    /// The FHIR `Identifier.system`, e.g. `urn:oid:1.2.36.1.2001.1003.0`.
    pub system: String,
    /// The name the legacy app gives this issuer (assigning authority), e.g. `GENHOSP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
}

/// Which kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdKind {
    Mrn,
    Accession,
}

impl IdKind {
    pub fn label(self) -> &'static str {
        match self {
            IdKind::Mrn => "MRN",
            IdKind::Accession => "accession",
        }
    }

    /// The v2-0203 identifier type code.
    pub fn type_code(self) -> &'static str {
        match self {
            IdKind::Mrn => "MR",
            IdKind::Accession => "ACSN",
        }
    }

    pub(crate) fn config_key(self) -> &'static str {
        match self {
            IdKind::Mrn => "mrn",
            IdKind::Accession => "accession",
        }
    }
}

/// Why an identifier could not be mapped; every variant is a refusal, never a fallback.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error(
        "the {kind} is in no system mapped for this bridge (systems present: {present}); refused, not guessed"
    )]
    UnmappedSystem { kind: &'static str, present: String },
    #[error("no {kind} in the context")]
    Missing { kind: &'static str },
    #[error("the {kind} issuer `{issuer}` is not mapped for this bridge; refused, not guessed")]
    UnmappedIssuer { kind: &'static str, issuer: String },
    #[error(
        "the message names no {kind} issuer and this bridge maps several; refused, not guessed"
    )]
    NoIssuer { kind: &'static str },
    #[error("the {kind} system `{system}` has no issuer name configured for this bridge")]
    NoIssuerName { kind: &'static str, system: String },
}

/// An identifier found in (or made for) a context, with its mapped issuer name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapped {
    pub value: String,
    pub system: String,
    pub issuer: Option<String>,
}

impl Mapped {
    /// The FHIR Identifier, typed with its v2-0203 code.
    pub fn identifier(&self, kind: IdKind) -> Value {
        json!({
            "type": { "coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                "code": kind.type_code(),
            }]},
            "system": self.system,
            "value": self.value,
        })
    }
}

impl IdentifierMapping {
    pub fn systems(&self, kind: IdKind) -> &[IdentifierSystem] {
        match kind {
            IdKind::Mrn => &self.mrn,
            IdKind::Accession => &self.accession,
        }
    }

    /// The first problem, keyed within `identifiers` (`mrn[0].system`).
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        for kind in [IdKind::Mrn, IdKind::Accession] {
            let systems = self.systems(kind);
            for (i, s) in systems.iter().enumerate() {
                let key = format!("{}[{i}]", kind.config_key());
                if s.system.trim().is_empty() {
                    return Err(ConfigProblem::new(
                        format!("{key}.system"),
                        "must not be empty",
                    ));
                }
                if s.system == DICOM_UID_SYSTEM {
                    return Err(ConfigProblem::new(
                        format!("{key}.system"),
                        "urn:dicom:uid is the Study Instance UID; it needs no mapping",
                    ));
                }
                if systems[..i].iter().any(|o| o.system == s.system) {
                    return Err(ConfigProblem::new(format!("{key}.system"), "mapped twice"));
                }
                if let Some(issuer) = &s.issuer
                    && systems[..i]
                        .iter()
                        .any(|o| o.issuer.as_deref() == Some(issuer))
                {
                    return Err(ConfigProblem::new(
                        format!("{key}.issuer"),
                        format!("`{issuer}` names two systems"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// The MRN of a Patient resource, in the first mapped system it has an identifier in.
    pub fn mrn_of(&self, patient: &Value) -> Result<Mapped, MappingError> {
        self.find(IdKind::Mrn, identifiers(patient))
    }

    /// The accession of a study (its identifiers), or of a report (`basedOn[].identifier`).
    pub fn accession_of(&self, resource: &Value) -> Result<Mapped, MappingError> {
        self.find(
            IdKind::Accession,
            identifiers(resource).chain(based_on_identifiers(resource)),
        )
    }

    fn find<'a>(
        &self,
        kind: IdKind,
        candidates: impl Iterator<Item = IdentifierRef<'a>>,
    ) -> Result<Mapped, MappingError> {
        let candidates: Vec<IdentifierRef<'a>> = candidates
            .filter(|i| {
                // An identifier typed as another kind (an MRN beside an accession) is not it.
                i.type_code().is_none_or(|code| code == kind.type_code())
            })
            .collect();
        if candidates.is_empty() {
            return Err(MappingError::Missing { kind: kind.label() });
        }
        for mapped in self.systems(kind) {
            // The first identifier in the system decides: a blank value there is no match.
            if let Some(value) = candidates
                .iter()
                .find(|i| i.is_in(&mapped.system))
                .and_then(|i| i.value())
            {
                return Ok(Mapped {
                    value: value.to_owned(),
                    system: mapped.system.clone(),
                    issuer: mapped.issuer.clone(),
                });
            }
        }
        let mut present: Vec<&str> = candidates
            .iter()
            .map(|i| i.system().unwrap_or("(no system)"))
            .collect();
        present.dedup();
        Err(MappingError::UnmappedSystem {
            kind: kind.label(),
            present: present.join(", "),
        })
    }

    /// An identifier a legacy message gave (value, and issuer if it named one) as FHIR.
    pub fn resolve(
        &self,
        kind: IdKind,
        value: &str,
        issuer: Option<&str>,
    ) -> Result<Mapped, MappingError> {
        let systems = self.systems(kind);
        let mapped = match issuer.map(str::trim).filter(|i| !i.is_empty()) {
            Some(issuer) => systems
                .iter()
                .find(|s| s.issuer.as_deref() == Some(issuer))
                .ok_or_else(|| MappingError::UnmappedIssuer {
                    kind: kind.label(),
                    issuer: issuer.to_owned(),
                })?,
            None => match systems {
                [only] => only,
                [] => {
                    return Err(MappingError::UnmappedSystem {
                        kind: kind.label(),
                        present: "none configured".into(),
                    });
                }
                _ => return Err(MappingError::NoIssuer { kind: kind.label() }),
            },
        };
        Ok(Mapped {
            value: value.trim().to_owned(),
            system: mapped.system.clone(),
            issuer: mapped.issuer.clone(),
        })
    }
}

/// The FHIR Identifier for a Study Instance UID.
pub fn study_uid_identifier(uid: &str) -> Value {
    json!({ "system": DICOM_UID_SYSTEM, "value": format!("urn:oid:{}", uid.trim_start_matches("urn:oid:")) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mapping() -> IdentifierMapping {
        IdentifierMapping {
            mrn: vec![
                IdentifierSystem {
                    system: "urn:oid:1.2.3".into(),
                    issuer: Some("GENHOSP".into()),
                },
                IdentifierSystem {
                    system: "urn:oid:9.9".into(),
                    issuer: Some("CHILDRENS".into()),
                },
            ],
            accession: vec![IdentifierSystem {
                system: "urn:oid:1.2.3.5".into(),
                issuer: None,
            }],
        }
    }

    #[test]
    fn rendering_takes_only_a_mapped_system_in_preference_order() {
        let patient = json!({"identifier": [
            {"system": "urn:oid:9.9", "value": "C-1"},
            {"system": "urn:oid:1.2.3", "value": "G-1"},
        ]});
        let m = mapping().mrn_of(&patient).unwrap();
        assert_eq!(
            (m.value.as_str(), m.issuer.as_deref()),
            ("G-1", Some("GENHOSP"))
        );

        let foreign =
            json!({"identifier": [{"system": "urn:oid:7.7", "value": "X"}, {"value": "Y"}]});
        let err = mapping().mrn_of(&foreign).unwrap_err();
        assert_eq!(
            err,
            MappingError::UnmappedSystem {
                kind: "MRN",
                present: "urn:oid:7.7, (no system)".into()
            }
        );
        assert!(err.to_string().contains("refused, not guessed"));
    }

    #[test]
    fn accessions_come_from_the_study_or_the_reports_order() {
        let report = json!({"basedOn": [{"identifier": {"type": {"coding": [{"code": "ACSN"}]},
            "system": "urn:oid:1.2.3.5", "value": "A-9"}}]});
        assert_eq!(mapping().accession_of(&report).unwrap().value, "A-9");
        // An MRN in the mapped accession system is still not an accession.
        let typed_mrn = json!({"identifier": [{"type": {"coding": [{"code": "MR"}]},
            "system": "urn:oid:1.2.3.5", "value": "M"}]});
        assert_eq!(
            mapping().accession_of(&typed_mrn).unwrap_err(),
            MappingError::Missing { kind: "accession" }
        );
    }

    #[test]
    fn inbound_issuers_must_be_mapped_and_unambiguous() {
        let m = mapping();
        assert_eq!(
            m.resolve(IdKind::Mrn, "1", Some("CHILDRENS"))
                .unwrap()
                .system,
            "urn:oid:9.9"
        );
        assert!(matches!(
            m.resolve(IdKind::Mrn, "1", Some("ELSEWHERE")),
            Err(MappingError::UnmappedIssuer { .. })
        ));
        assert_eq!(
            m.resolve(IdKind::Mrn, "1", None),
            Err(MappingError::NoIssuer { kind: "MRN" })
        );
        assert_eq!(
            m.resolve(IdKind::Accession, " A1 ", None).unwrap().value,
            "A1"
        );
        // A message naming an issuer for a system mapped without one is not a match.
        assert!(m.resolve(IdKind::Accession, "A1", Some("RIS")).is_err());
    }

    #[test]
    fn validation_refuses_duplicates_and_the_uid_system() {
        let mut m = mapping();
        m.accession.push(IdentifierSystem {
            system: "urn:oid:1.2.3.5".into(),
            issuer: Some("X".into()),
        });
        assert_eq!(m.validate().unwrap_err().key, "accession[1].system");
        let uid = IdentifierMapping {
            mrn: vec![IdentifierSystem {
                system: DICOM_UID_SYSTEM.into(),
                issuer: None,
            }],
            ..Default::default()
        };
        assert!(uid.validate().is_err());
    }
}
