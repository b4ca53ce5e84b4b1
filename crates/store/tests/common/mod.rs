//! Helpers shared by the store's tests and bench: realistic events and a store in a temp dir.

// Each test binary uses a different subset of these helpers.
#![allow(dead_code)]

use lockstep_fhircast::ContextChange;
use lockstep_fhircast::summary::ContextSummary;
use lockstep_store::{HistoryRecord, Store, StoreOptions};
use std::path::PathBuf;
use tempfile::TempDir;

const FAMILIES: &[&str] = &[
    "Doe", "Müller", "Nakamura", "O'Brien", "Okafor", "Silva", "Kowalski", "Nguyen", "Haddad",
    "Larsen",
];
const GIVEN: &[&str] = &[
    "Jane", "Ana", "Kenji", "Siobhan", "Chidi", "Rui", "Piotr", "Linh",
];
const STUDIES: &[(&str, &str)] = &[
    ("CT", "CT chest with contrast"),
    ("MR", "MR brain without contrast"),
    ("CR", "XR chest 2 views"),
    ("US", "US abdomen complete"),
    ("MG", "Screening mammogram bilateral"),
];

/// The MRN of event `i`'s patient: 500 patients, so patients recur as they do in practice.
pub fn mrn(i: usize) -> String {
    format!("MRN{:07}", i % 500)
}

pub fn accession(i: usize) -> String {
    format!("ACC{i:08}")
}

pub fn study_uid(i: usize) -> String {
    format!("1.2.840.113619.2.55.3.604688119.{i}")
}

pub fn family(i: usize) -> &'static str {
    FAMILIES[(i % 500) % FAMILIES.len()]
}

/// An `ImagingStudy-open` notification of about 1.5 KB, shaped like a RIS would send it.
pub fn event_json(i: usize) -> String {
    let p = i % 500;
    let (modality, description) = STUDIES[i % STUDIES.len()];
    format!(
        r#"{{"timestamp":"2025-05-06T07:08:09.{ms:03}Z","id":"evt-{i}","event":{{"hub.topic":"DrXRay","hub.event":"ImagingStudy-open","context":[{{"key":"patient","resource":{{"resourceType":"Patient","id":"pat-{p}","identifier":[{{"use":"official","type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR","display":"Medical record number"}}]}},"system":"urn:oid:1.2.36.146.595.217.0.1","value":"{mrn}","assigner":{{"display":"General Hospital"}}}},{{"use":"secondary","system":"urn:oid:2.16.840.1.113883.4.1","value":"999-{p:02}-{p:04}"}}],"active":true,"name":[{{"use":"official","family":"{family}","given":["{given}","Q"]}}],"telecom":[{{"system":"phone","value":"+1 555 0100 {p:04}","use":"home"}}],"gender":"{sex}","birthDate":"19{yy:02}-0{mm}-1{dd}","address":[{{"use":"home","line":["{p} Main Street"],"city":"Springfield","postalCode":"0{p:04}","country":"US"}}]}}}},{{"key":"study","resource":{{"resourceType":"ImagingStudy","id":"study-{i}","status":"available","subject":{{"reference":"Patient/pat-{p}"}},"started":"2025-05-06T06:30:00Z","identifier":[{{"system":"urn:dicom:uid","value":"urn:oid:{uid}"}},{{"type":{{"coding":[{{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}}]}},"system":"urn:oid:1.2.36.146.595.217.0.2","value":"{accession}"}}],"modality":[{{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"{modality}"}}],"description":"{description}","numberOfSeries":4,"numberOfInstances":{instances},"referrer":{{"display":"Dr. Referring Physician"}},"procedureCode":[{{"coding":[{{"system":"http://loinc.org","code":"24627-2","display":"{description}"}}]}}],"reasonCode":[{{"text":"Follow-up of prior finding"}}]}}}}]}}}}"#,
        ms = i % 1000,
        mrn = mrn(i),
        family = family(i),
        given = GIVEN[p % GIVEN.len()],
        sex = if p.is_multiple_of(2) {
            "female"
        } else {
            "male"
        },
        yy = 30 + p % 60,
        mm = 1 + p % 9,
        dd = p % 10,
        uid = study_uid(i),
        accession = accession(i),
        instances = 100 + i % 400,
    )
}

/// A history record of event `i`, summarised the way the hub summarises it.
pub fn record(i: usize) -> HistoryRecord {
    let json = event_json(i);
    let summary = summarise(&json);
    HistoryRecord::new(
        "DrXRay",
        "ImagingStudy-open",
        format!("evt-{i}"),
        "RIS",
        json,
    )
    .with_summary(summary)
}

pub fn summarise(json: &str) -> ContextSummary {
    match ContextChange::parse(json.as_bytes()) {
        Ok(change) => ContextSummary::from_entries(change.event.name, &change.entries),
        Err(e) => panic!("test event does not parse: {e:?}"),
    }
}

pub fn db_path(dir: &TempDir) -> PathBuf {
    dir.path().join("lockstep.db")
}

pub fn open(dir: &TempDir, options: StoreOptions) -> Store {
    match Store::open(db_path(dir), options) {
        Ok(store) => store,
        Err(e) => panic!("store should open: {e}"),
    }
}

/// A store in a fresh temp dir, with default options.
pub fn fresh() -> (TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = open(&dir, StoreOptions::default());
    (dir, store)
}
