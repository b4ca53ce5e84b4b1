//! FHIR `Identifier`s read out of a context's resources: the one walk over `identifier[]`,
//! `basedOn[].identifier` and an identifier's type codes, for the summary, the window and the
//! bridges alike.
//!
//! Reading is lenient the way a display or a mapping must be: a field of the wrong JSON type is
//! absent, and a value is trimmed (an identifier of only spaces has no value).

use serde_json::Value;

/// The system of DICOM UIDs (`urn:oid:` values), as a Study Instance UID is written in FHIR.
pub const DICOM_UID_SYSTEM: &str = "urn:dicom:uid";

/// One `Identifier` of a resource, borrowed from the event.
#[derive(Debug, Clone, Copy)]
pub struct IdentifierRef<'a>(&'a Value);

impl<'a> IdentifierRef<'a> {
    /// The trimmed `value`; `None` when absent, not a string or blank.
    pub fn value(&self) -> Option<&'a str> {
        text(self.0.get("value"))
    }

    /// The `system` as written; `None` when absent or not a string.
    pub fn system(&self) -> Option<&'a str> {
        self.0.get("system").and_then(Value::as_str)
    }

    /// Whether the identifier is in `system` (compared exactly, as FHIR URIs are).
    pub fn is_in(&self, system: &str) -> bool {
        self.system() == Some(system)
    }

    /// The codes of `type.coding[]` (v2-0203: MR, ACSN, ...), in order.
    pub fn type_codes(&self) -> impl Iterator<Item = &'a str> + use<'a> {
        self.0
            .get("type")
            .and_then(|t| t.get("coding"))
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|coding| coding.get("code").and_then(Value::as_str))
    }

    /// The first code of its type, if it is typed at all.
    pub fn type_code(&self) -> Option<&'a str> {
        self.type_codes().next()
    }

    /// Whether any coding of its type is `code`.
    pub fn has_type(&self, code: &str) -> bool {
        self.type_codes().any(|c| c == code)
    }

    /// The type's `text`, trimmed.
    pub fn type_text(&self) -> Option<&'a str> {
        text(self.0.get("type").and_then(|t| t.get("text")))
    }

    /// Who issued it, for people: the assigner's display name, else the system.
    pub fn issuer(&self) -> Option<&'a str> {
        text(self.0.get("assigner").and_then(|a| a.get("display")))
            .or_else(|| text(self.0.get("system")))
    }
}

/// A resource's own `identifier[]`.
pub fn identifiers(resource: &Value) -> impl Iterator<Item = IdentifierRef<'_>> {
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(IdentifierRef)
}

/// The identifiers of what a resource is based on (`basedOn[].identifier`): how a report
/// names the order, and with it the accession.
pub fn based_on_identifiers(resource: &Value) -> impl Iterator<Item = IdentifierRef<'_>> {
    resource
        .get("basedOn")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|reference| reference.get("identifier"))
        .map(IdentifierRef)
}

/// The first identifier whose type is `code`.
pub fn identifier_of_type<'a>(resource: &'a Value, code: &str) -> Option<IdentifierRef<'a>> {
    identifiers(resource).find(|i| i.has_type(code))
}

/// A study's Study Instance UID, without its `urn:oid:` prefix.
pub fn study_uid(study: &Value) -> Option<&str> {
    identifiers(study)
        .find(|i| i.is_in(DICOM_UID_SYSTEM))
        .and_then(|i| i.value())
        .map(|uid| uid.trim_start_matches("urn:oid:"))
        .filter(|uid| !uid.is_empty())
}

fn text(value: Option<&Value>) -> Option<&str> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_value_system_type_and_issuer() {
        let patient = json!({"identifier": [
            {"type": {"coding": [{"system": "x"}, {"code": "MR"}], "text": " Medical record "},
             "system": "urn:oid:1.2.3", "value": " 12345 ", "assigner": {"display": "GENHOSP"}},
            {"system": "urn:oid:9.9", "value": "   "},
            {"value": 7}
        ]});
        let ids: Vec<_> = identifiers(&patient).collect();
        assert_eq!(ids.len(), 3);
        assert_eq!(ids[0].value(), Some("12345"));
        assert_eq!(ids[0].type_code(), Some("MR"));
        assert!(ids[0].has_type("MR") && !ids[0].has_type("ACSN"));
        assert_eq!(ids[0].type_text(), Some("Medical record"));
        assert_eq!(ids[0].issuer(), Some("GENHOSP"));
        assert_eq!(ids[1].value(), None, "blank is no value");
        assert_eq!(ids[1].issuer(), Some("urn:oid:9.9"), "the system stands in");
        assert_eq!(ids[2].value(), None, "a number is not an identifier value");
        assert_eq!(ids[2].type_code(), None);
    }

    #[test]
    fn a_resource_without_identifiers_has_none() {
        assert_eq!(identifiers(&json!({})).count(), 0);
        assert_eq!(identifiers(&json!({"identifier": "12345"})).count(), 0);
        assert_eq!(based_on_identifiers(&json!({"basedOn": [{}]})).count(), 0);
    }

    #[test]
    fn a_report_names_its_order_by_based_on() {
        let report = json!({"basedOn": [
            {"reference": "ServiceRequest/1"},
            {"identifier": {"type": {"coding": [{"code": "ACSN"}]}, "value": "A77"}}
        ]});
        let ids: Vec<_> = based_on_identifiers(&report).collect();
        assert_eq!(ids.len(), 1);
        assert_eq!(ids[0].value(), Some("A77"));
        assert!(ids[0].has_type("ACSN"));
    }

    #[test]
    fn the_study_uid_loses_its_oid_prefix() {
        let study = json!({"identifier": [
            {"type": {"coding": [{"code": "ACSN"}]}, "value": "A77"},
            {"system": DICOM_UID_SYSTEM, "value": "urn:oid:1.2.840.1"}
        ]});
        assert_eq!(study_uid(&study), Some("1.2.840.1"));
        assert_eq!(
            identifier_of_type(&study, "ACSN").and_then(|i| i.value()),
            Some("A77")
        );
        let bare = json!({"identifier": [{"system": DICOM_UID_SYSTEM, "value": "urn:oid:"}]});
        assert_eq!(study_uid(&bare), None);
    }
}
