//! Implied (derived) opens for multi-anchor contexts (spec 2-5; checklist 104–106).

mod common;
use common::{Hub, patient_context, report_context, study_context};
use serde_json::json;

#[tokio::test]
async fn patient_open_subscriber_follows_the_patient_of_a_study_or_report() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut patient_only = hub.subscriber("app", "Patient-open").await;
    let study = hub.event("ImagingStudy-open", study_context("s1", "p1"));
    hub.publish(&token, &study).await;
    let implied = patient_only.next().await;
    assert_eq!(implied["event"]["hub.event"], "Patient-open");
    assert_eq!(implied["id"], study["id"]);
    assert_eq!(implied["timestamp"], study["timestamp"]);
    assert_eq!(
        implied["event"]["context"],
        json!([study["event"]["context"][1]])
    );

    let report = hub.event("DiagnosticReport-open", report_context("r1", "p2"));
    hub.publish(&token, &report).await;
    let implied = patient_only.next().await;
    assert_eq!(implied["event"]["context"][0]["resource"]["id"], "p2");
    patient_only.assert_quiet().await;
}

#[tokio::test]
async fn a_report_implies_its_study_with_the_patient() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut study_only = hub.subscriber("app", "ImagingStudy-open").await;
    hub.publish(
        &token,
        &hub.event("DiagnosticReport-open", report_context("r1", "p1")),
    )
    .await;
    let implied = study_only.next().await;
    assert_eq!(implied["event"]["hub.event"], "ImagingStudy-open");
    let keys: Vec<&str> = implied["event"]["context"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["study", "patient"]);
}

#[tokio::test]
async fn no_duplicate_for_a_subscriber_of_both_events() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut both = hub
        .subscriber("app", "ImagingStudy-open,Patient-open")
        .await;
    hub.publish(
        &token,
        &hub.event("ImagingStudy-open", study_context("s1", "p1")),
    )
    .await;
    assert_eq!(both.next().await["event"]["hub.event"], "ImagingStudy-open");
    both.assert_quiet().await;
}

#[tokio::test]
async fn the_hub_never_fabricates_closes() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut closes = hub
        .subscriber(
            "app",
            "Patient-close,ImagingStudy-close,DiagnosticReport-close",
        )
        .await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p2", "2")),
    )
    .await;
    hub.publish(
        &token,
        &hub.event("ImagingStudy-open", study_context("s1", "p3")),
    )
    .await;
    hub.publish(
        &token,
        &hub.event("DiagnosticReport-open", report_context("r1", "p4")),
    )
    .await;
    closes.assert_quiet().await;
}

#[tokio::test]
async fn late_patient_subscriber_is_replayed_the_implied_patient() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    hub.publish(
        &token,
        &hub.event("ImagingStudy-open", study_context("s9", "p9")),
    )
    .await;
    let mut late = hub.subscriber("app", "Patient-open").await;
    let replayed = late.next().await;
    assert_eq!(
        replayed["event"]["context"][0]["resource"]["id"], "p9",
        "the current patient, not an older one"
    );
    late.assert_quiet().await;
}
