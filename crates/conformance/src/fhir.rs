//! The checker's own test data: clearly fictitious patients, studies, encounters and reports,
//! fresh ids for every use, and the event envelope.

use serde_json::{Value, json};

/// The identifier system of the checker's test patients: no real MRN can carry it.
pub const TEST_SYSTEM: &str = "urn:lockstep:conformance";

/// A fresh id, unique for the hub.
pub fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "2026-01-01T00:00:00Z".into())
}

/// A context change request (or notification): `{timestamp, id, event}`.
pub fn event(topic: &str, name: &str, context: Value) -> Value {
    json!({
        "timestamp": now(),
        "id": fresh_id(),
        "event": { "hub.topic": topic, "hub.event": name, "context": context },
    })
}

pub fn patient(id: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": TEST_SYSTEM, "value": id }],
        "name": [{ "family": "Conformance", "given": ["Test"] }],
    })
}

pub fn study(id: &str, patient_id: &str) -> Value {
    let uid = format!("2.25.{}", uuid::Uuid::new_v4().as_u128());
    json!({
        "resourceType": "ImagingStudy",
        "id": id,
        "status": "available",
        "identifier": [{ "system": "urn:dicom:uid", "value": format!("urn:oid:{uid}") }],
        "subject": { "reference": format!("Patient/{patient_id}") },
    })
}

pub fn encounter(id: &str, patient_id: &str) -> Value {
    json!({
        "resourceType": "Encounter",
        "id": id,
        "status": "in-progress",
        "class": { "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB" },
        "identifier": [{ "system": TEST_SYSTEM, "value": id }],
        "subject": { "reference": format!("Patient/{patient_id}") },
    })
}

pub fn report(id: &str, patient_id: &str, status: &str) -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "id": id,
        "status": status,
        "code": { "coding": [{ "system": "http://loinc.org", "code": "18748-4" }] },
        "identifier": [{ "system": TEST_SYSTEM, "value": id }],
        "subject": { "reference": format!("Patient/{patient_id}") },
    })
}

pub fn entry(key: &str, resource: Value) -> Value {
    json!({ "key": key, "resource": resource })
}

pub fn reference(key: &str, reference: String) -> Value {
    json!({ "key": key, "reference": { "reference": reference } })
}

/// `Patient-open`'s context for a new test patient, and the patient's id.
pub fn patient_context() -> (Value, String) {
    let id = fresh_id();
    (json!([entry("patient", patient(&id))]), id)
}

/// `ImagingStudy-open`'s context for a new study of a new patient.
pub fn study_context() -> (Value, String) {
    let patient_id = fresh_id();
    (study_context_for(&patient_id), patient_id)
}

/// `ImagingStudy-open`'s context for a new study of this patient.
pub fn study_context_for(patient_id: &str) -> Value {
    json!([
        entry("study", study(&fresh_id(), patient_id)),
        entry("patient", patient(patient_id)),
    ])
}

pub fn encounter_context() -> (Value, String) {
    let (patient_id, encounter_id) = (fresh_id(), fresh_id());
    let context = json!([
        entry("encounter", encounter(&encounter_id, &patient_id)),
        entry("patient", patient(&patient_id)),
    ]);
    (context, patient_id)
}

/// A report being written: its ids and its `DiagnosticReport-open` context.
pub struct Report {
    pub id: String,
    pub patient_id: String,
}

impl Report {
    pub fn new() -> Report {
        Report {
            id: fresh_id(),
            patient_id: fresh_id(),
        }
    }

    pub fn open_context(&self) -> Value {
        json!([
            entry("report", report(&self.id, &self.patient_id, "preliminary")),
            entry("patient", patient(&self.patient_id)),
        ])
    }

    /// A `DiagnosticReport-update` context carrying `updates`.
    pub fn update_context(&self, updates: Value) -> Value {
        json!([
            reference("report", format!("DiagnosticReport/{}", self.id)),
            reference("patient", format!("Patient/{}", self.patient_id)),
            { "key": "updates", "resource": updates },
        ])
    }

    /// A `DiagnosticReport-select` context selecting these references.
    pub fn select_context(&self, selected: &[String]) -> Value {
        let mut context = vec![
            reference("report", format!("DiagnosticReport/{}", self.id)),
            reference("patient", format!("Patient/{}", self.patient_id)),
        ];
        context.extend(selected.iter().map(|r| reference("select", r.clone())));
        Value::Array(context)
    }

    /// The report itself with another status (an update that changes the anchor).
    pub fn with_status(&self, status: &str) -> Value {
        report(&self.id, &self.patient_id, status)
    }
}

/// An update Bundle (`type: transaction`) with these entries and a fresh id.
pub fn bundle(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "id": fresh_id(), "type": "transaction", "entry": entries })
}

/// A PUT entry for `resource`.
pub fn put(resource: Value) -> Value {
    let url = format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    );
    json!({ "fullUrl": format!("urn:uuid:{}", fresh_id()), "resource": resource,
            "request": { "method": "PUT", "url": url } })
}

/// A DELETE entry for the resource at `url` (`Observation/<id>`).
pub fn delete(url: &str) -> Value {
    json!({ "fullUrl": url, "request": { "method": "DELETE", "url": url } })
}

/// A measurement to share as content.
pub fn observation(id: &str, patient_id: &str) -> Value {
    json!({
        "resourceType": "Observation",
        "id": id,
        "status": "preliminary",
        "code": { "text": "conformance check measurement" },
        "subject": { "reference": format!("Patient/{patient_id}") },
        "valueQuantity": { "value": 12.5, "unit": "mm" },
    })
}

/// The anchor resource's id in an event's context (the first entry's resource or reference).
pub fn anchor_id(context: &Value) -> Option<String> {
    let first = context.as_array()?.first()?;
    if let Some(id) = first["resource"]["id"].as_str() {
        return Some(id.to_owned());
    }
    let reference = first["reference"]["reference"].as_str()?;
    reference.rsplit('/').next().map(str::to_owned)
}
