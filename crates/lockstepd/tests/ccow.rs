//! CCOW through `lockstepd`: the daemon started on a config with `[bridges.ccow]` serves the
//! CCOW registry and context manager; a CCOW application (a test program with a real callback
//! server) and a FHIRcast app over WebSocket follow each other both ways.

#[path = "../../bridges/tests/common/ccow.rs"]
mod ccow;
mod common;
use ccow::{Answers, CcowClient, participant, told};
use common::Daemon;
use lockstep_agent::client::HubClient;
use serde_json::{Value, json};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

fn config(ccow_port: u16) -> String {
    format!(
        r#"
[hub]
port = 0

[[apps]]
client_id = "ris"
client_secret = "ris-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "RIS"

[bridges.ccow]
port = {ccow_port}
survey_timeout_seconds = 2
identifiers.mrn = [{{ system = "urn:oid:1.2.36.1.2001.1003.0", issuer = "GENHOSP" }}]
identifiers.accession = [{{ system = "urn:oid:1.2.36.1.2001.1005.52", issuer = "GENHOSP" }}]
"#
    )
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn located(base: &str) {
    for _ in 0..300 {
        if reqwest::get(format!(
            "{base}?interface=ContextManagementRegistry&method=Locate"
        ))
        .await
        .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the CCOW registry never answered at {base}");
}

fn patient_open() -> Value {
    json!([{ "key": "patient", "resource": {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{ "type": { "coding": [{ "code": "MR" }] },
            "system": "urn:oid:1.2.36.1.2001.1003.0", "value": "185444" }],
        "name": [{ "family": "Doe", "given": ["Jane"] }], "birthDate": "1970-01-02",
    }}])
}

#[tokio::test]
async fn a_ccow_application_and_a_fhircast_app_follow_each_other_through_lockstepd() {
    let port = free_port();
    let daemon = Daemon::start_with_text(&config(port));
    let base = format!("http://127.0.0.1:{port}/");
    located(&base).await;
    let ris = HubClient::sign_in(&daemon.origin, "ris", "ris-secret", None)
        .await
        .unwrap();
    let mut ris_feed = ris.subscribe("Patient-open", None).await.unwrap();

    // Located like any CCOW application locates its manager, then joined.
    let registry = CcowClient::new(&base);
    let locate = registry
        .get(
            "ContextManagementRegistry",
            "Locate",
            &[("componentName", "CCOW.ContextManager"), ("version", "1.5")],
        )
        .await
        .unwrap();
    let cm = CcowClient::new(locate.require("componentUrl").unwrap());
    let (callback, heard) = participant(Answers::Accept).await;
    let ehr = cm.join("EHR", &callback).await;

    // FHIRcast to CCOW: the RIS opens a patient; the EHR is surveyed, told, and reads it.
    ris.publish("Patient-open", patient_open(), None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !told(&heard).iter().any(|m| m == "ContextChangesAccepted") {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the EHR was never told: {:?}",
            told(&heard)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recent = cm
        .get("ContextManager", "GetMostRecentContextCoupon", &[])
        .await
        .unwrap();
    let coupon = recent.require("contextCoupon").unwrap().to_owned();
    let values = cm
        .get(
            "ContextData",
            "GetItemValues",
            &[("participantCoupon", &ehr), ("contextCoupon", &coupon)],
        )
        .await
        .unwrap();
    let values = values.get("itemValues").unwrap_or_default().to_owned();
    assert!(values.contains("Patient.Id.MRN.GENHOSP|185444"), "{values}");
    assert!(
        values.contains("Patient.Co.PatientName|Doe^Jane"),
        "{values}"
    );

    // CCOW to FHIRcast: the EHR opens another patient; the RIS receives it.
    let (tx, no_continue, responses) = cm.change(&ehr, "Patient.Id.MRN.GENHOSP", "200001").await;
    assert!(!no_continue, "{responses}");
    cm.decide(&ehr, &tx, "accept").await;
    let frame = loop {
        let frame = tokio::time::timeout(PATIENCE, ris_feed.next_frame())
            .await
            .expect("the EHR's patient reached the RIS")
            .unwrap()
            .unwrap();
        let id = frame["id"].as_str().unwrap_or_default().to_owned();
        ris_feed.acknowledge(&id, 200).await.unwrap();
        if frame["event"]["context"][0]["resource"]["identifier"][0]["value"] == "200001" {
            break frame;
        }
    };
    assert_eq!(frame["event"]["hub.event"], "Patient-open");
    let current = ris.current_context().await.unwrap();
    assert_eq!(
        current["context"][0]["resource"]["identifier"][0]["value"],
        "200001"
    );
    ris_feed.close().await.unwrap();
    // Stopped off the test's runtime, which keeps serving the EHR's callback (it is told the
    // common context ended).
    let status = tokio::task::spawn_blocking(move || daemon.terminate())
        .await
        .unwrap();
    assert!(status.success());
}
