//! What parsing and validating a context change costs, and what one pass over the body costs
//! (the duplicate-key check is one such pass). Prints medians of 7 rounds:
//! `cargo bench -p lockstep-fhircast --bench parse`.

use lockstep_fhircast::ContextChange;
use std::time::Instant;

const ROUNDS: usize = 7;
const PER_ROUND: usize = 20_000;

/// An ImagingStudy-open of about 1.5 KB, shaped like a RIS sends it.
fn event() -> String {
    let patient = r#"{"resourceType":"Patient","id":"pat-1","identifier":[{"use":"official","type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"MR"}]},"system":"urn:oid:1.2.36.146.595.217.0.1","value":"MRN0000001"}],"name":[{"family":"Doe","given":["Jane","Q"]}],"gender":"female","birthDate":"1970-01-02","address":[{"line":["1 Main Street"],"city":"Springfield","postalCode":"01234","country":"US"}]}"#;
    let study = r#"{"resourceType":"ImagingStudy","id":"study-1","status":"available","subject":{"reference":"Patient/pat-1"},"started":"2025-05-06T06:30:00Z","identifier":[{"system":"urn:dicom:uid","value":"urn:oid:1.2.840.113619.2.55.3.1"},{"type":{"coding":[{"system":"http://terminology.hl7.org/CodeSystem/v2-0203","code":"ACSN"}]},"value":"ACC00000001"}],"modality":[{"system":"http://dicom.nema.org/resources/ontology/DCM","code":"CT"}],"description":"CT chest with contrast","numberOfSeries":4,"numberOfInstances":300,"procedureCode":[{"coding":[{"system":"http://loinc.org","code":"24627-2","display":"CT chest"}]}]}"#;
    format!(
        r#"{{"timestamp":"2025-05-06T07:08:09.000Z","id":"evt-1","event":{{"hub.topic":"T","hub.event":"ImagingStudy-open","context":[{{"key":"patient","resource":{patient}}},{{"key":"study","resource":{study}}}]}}}}"#
    )
}

fn median_ns(mut f: impl FnMut()) -> f64 {
    let mut rounds: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..PER_ROUND {
                f();
            }
            start.elapsed().as_nanos() as f64 / PER_ROUND as f64
        })
        .collect();
    rounds.sort_by(f64::total_cmp);
    rounds[ROUNDS / 2]
}

fn main() {
    let body = event();
    let parse = median_ns(|| {
        std::hint::black_box(ContextChange::parse(std::hint::black_box(body.as_bytes())).is_ok());
    });
    let one_pass = median_ns(|| {
        let pass: Result<serde::de::IgnoredAny, _> =
            serde_json::from_slice(std::hint::black_box(body.as_bytes()));
        std::hint::black_box(pass.is_ok());
    });
    println!(
        "event of {} bytes, medians of {ROUNDS} rounds of {PER_ROUND}",
        body.len()
    );
    println!("ContextChange::parse (with the duplicate-key pass): {parse:>8.0} ns");
    println!("one bare pass over the body (serde IgnoredAny):     {one_pass:>8.0} ns");
}
