//! Validation of an event's context against the catalogue's keys and profiles.
//!
//! The hub checks what the spec asks of each open/close profile and one thing more that guards
//! patient identity: every `subject` reference in an event must point at the event's own
//! patient. An event whose resources disagree about the patient is refused, never relayed.

use crate::event::{EventSpec, KeySpec, ValueKind};
use crate::notification::ContextEntry;
use serde_json::Value;

/// Checks `entries` against `spec`; the error is a developer-facing reason naming the field.
pub(crate) fn context(spec: &EventSpec, entries: &[ContextEntry]) -> Result<(), String> {
    for key in spec.keys {
        let found: Vec<&ContextEntry> = entries.iter().filter(|e| e.key == key.key).collect();
        if found.len() < key.min {
            return Err(format!("missing required context key `{}`", key.key));
        }
        if key.max.is_some_and(|max| found.len() > max) {
            return Err(format!(
                "context key `{}` appears {} times",
                key.key,
                found.len()
            ));
        }
        for entry in found {
            check_entry(key, entry)?;
        }
    }
    check_patient_consistency(entries)
}

fn check_entry(key: &KeySpec, entry: &ContextEntry) -> Result<(), String> {
    let member = key.value.member();
    let Some(value) = entry.value.get(member) else {
        // An empty selection clears it (spec §12.12); every other key needs its value.
        if key.key == "select" {
            return Ok(());
        }
        return Err(format!("context `{}` has no `{member}`", key.key));
    };
    match key.value {
        ValueKind::Resource => check_resource(key, value),
        ValueKind::Reference => check_reference(key, value),
    }
}

fn check_resource(key: &KeySpec, resource: &Value) -> Result<(), String> {
    let name = key.key;
    if !resource.is_object() {
        return Err(format!("`{name}.resource` must be a JSON object"));
    }
    match resource.get("resourceType").and_then(Value::as_str) {
        Some(t) if t == key.resource_type => {}
        Some(t) => {
            return Err(format!(
                "`{name}` must be a {}, got resourceType `{t}`",
                key.resource_type
            ));
        }
        None => return Err(format!("`{name}.resource` has no `resourceType`")),
    }
    for field in key.required_fields {
        if !present(resource.get(*field)) {
            return Err(format!(
                "`{name}` ({}) is missing required field `{field}`",
                key.resource_type
            ));
        }
    }
    if !key.one_of.is_empty() && !key.one_of.iter().any(|f| present(resource.get(*f))) {
        return Err(format!(
            "`{name}` ({}) needs at least one of `{}`",
            key.resource_type,
            key.one_of.join("`, `")
        ));
    }
    if let Some(id) = resource.get("id")
        && id.as_str().is_none_or(|s| s.trim().is_empty())
    {
        return Err(format!("`{name}.id` must be a non-empty string"));
    }
    Ok(())
}

fn check_reference(key: &KeySpec, reference: &Value) -> Result<(), String> {
    let name = key.key;
    let target = reference.get("reference").and_then(Value::as_str);
    match target {
        // An empty selection is allowed (spec §12.12).
        None if key.key == "select" => Ok(()),
        None => Err(format!(
            "`{name}.reference` must carry a string `reference`"
        )),
        Some(_) if key.resource_type.is_empty() => Ok(()),
        Some(r) => match reference_parts(r) {
            Some((t, _)) if t == key.resource_type => Ok(()),
            _ => Err(format!(
                "`{name}.reference` must be `{}/<id>`, got `{r}`",
                key.resource_type
            )),
        },
    }
}

/// Refuses an event whose resources name different patients (spec: "The Patient id SHALL equal
/// the id used in every subject reference in the same open event").
fn check_patient_consistency(entries: &[ContextEntry]) -> Result<(), String> {
    let Some(patient_id) = entries
        .iter()
        .find(|e| e.key == "patient")
        .and_then(|e| e.resource())
        .and_then(|r| r.get("id"))
        .and_then(Value::as_str)
    else {
        return Ok(());
    };
    for entry in entries.iter().filter(|e| e.key != "patient") {
        let Some(subject) = entry
            .resource()
            .and_then(|r| r.get("subject"))
            .and_then(|s| s.get("reference"))
            .and_then(Value::as_str)
        else {
            continue;
        };
        if let Some(("Patient", id)) = reference_parts(subject)
            && id != patient_id
        {
            return Err(format!(
                "`{}.subject` refers to Patient/{id} but the event's `patient` is Patient/{patient_id}; \
                 refusing an event that names two patients",
                entry.key
            ));
        }
    }
    Ok(())
}

/// Splits a FHIR reference (`Type/id`, or an absolute URL ending in it) into type and id.
pub(crate) fn reference_parts(reference: &str) -> Option<(&str, &str)> {
    let reference = reference.split('/').rev().take(4).collect::<Vec<_>>();
    // `.../Type/id` or `.../Type/id/_history/v`
    let (t, id) = match reference.as_slice() {
        [_v, "_history", id, t, ..] => (*t, *id),
        [id, t, ..] => (*t, *id),
        _ => return None,
    };
    (!t.is_empty() && !id.is_empty()).then_some((t, id))
}

fn present(value: Option<&Value>) -> bool {
    match value {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use crate::notification::ContextChange;

    fn event(name: &str, context: &str) -> Result<ContextChange, String> {
        let body = format!(
            r#"{{"timestamp":"t","id":"i","event":{{"hub.topic":"T","hub.event":"{name}","context":{context}}}}}"#
        );
        ContextChange::parse(body.as_bytes()).map_err(|e| e.to_string())
    }

    const PATIENT: &str = r#"{"key":"patient","resource":{"resourceType":"Patient","id":"p1","identifier":[{"value":"1"}]}}"#;

    #[test]
    fn patient_open_requires_identifier() {
        assert!(event("Patient-open", &format!("[{PATIENT}]")).is_ok());
        let err = event(
            "Patient-open",
            r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"p1"}}]"#,
        )
        .unwrap_err();
        assert!(err.contains("identifier"), "{err}");
        let close = event(
            "Patient-close",
            r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"p1"}}]"#,
        );
        assert!(close.is_ok());
    }

    #[test]
    fn missing_key_wrong_type_and_duplicates() {
        assert!(
            event("Patient-open", "[]")
                .unwrap_err()
                .contains("missing required context key `patient`")
        );
        let wrong = r#"[{"key":"patient","resource":{"resourceType":"Practitioner","id":"p1","identifier":[{}]}}]"#;
        assert!(
            event("Patient-open", wrong)
                .unwrap_err()
                .contains("Practitioner")
        );
        assert!(
            event("Patient-open", &format!("[{PATIENT},{PATIENT}]"))
                .unwrap_err()
                .contains("2 times")
        );
        assert!(event("Patient-open", "{}").unwrap_err().contains("array"));
    }

    #[test]
    fn study_naming_another_patient_is_refused() {
        let study = |subject: &str| {
            format!(
                r#"[{{"key":"study","resource":{{"resourceType":"ImagingStudy","id":"s1","status":"available","identifier":[{{"value":"A1"}}],"subject":{{"reference":"{subject}"}}}}}},{PATIENT}]"#
            )
        };
        assert!(event("ImagingStudy-open", &study("Patient/p1")).is_ok());
        assert!(
            event(
                "ImagingStudy-open",
                &study("http://fhir.example/Patient/p1/_history/2")
            )
            .is_ok()
        );
        let err = event("ImagingStudy-open", &study("Patient/p2")).unwrap_err();
        assert!(err.contains("two patients"), "{err}");
    }

    #[test]
    fn report_open_needs_business_identifier() {
        let report = |extra: &str| {
            format!(
                r#"[{{"key":"report","resource":{{"resourceType":"DiagnosticReport","id":"r1","status":"preliminary","subject":{{"reference":"Patient/p1"}}{extra}}}}},{PATIENT}]"#
            )
        };
        assert!(
            event("DiagnosticReport-open", &report(""))
                .unwrap_err()
                .contains("basedOn")
        );
        assert!(
            event(
                "DiagnosticReport-open",
                &report(r#","basedOn":[{"identifier":{"value":"A1"}}]"#)
            )
            .is_ok()
        );
    }

    #[test]
    fn references_and_empty_selection() {
        let select = r#"[{"key":"report","reference":{"reference":"DiagnosticReport/r1"}},{"key":"select","reference":{}}]"#;
        assert!(event("DiagnosticReport-select", select).is_ok());
        let bad = r#"[{"key":"report","reference":{"reference":"Patient/r1"}}]"#;
        assert!(
            event("DiagnosticReport-select", bad)
                .unwrap_err()
                .contains("DiagnosticReport/<id>")
        );
        assert!(event("Home-open", "[]").is_ok());
    }
}
