//! The CCOW bridge in the session: a change a CCOW application commits reaches FHIRcast
//! subscribers under its name; a change on the topic reaches the CCOW applications; a CCOW
//! application that dissents or stays silent becomes a SyncError naming it, and its link state.

mod common;

use common::ccow::{Answers, CcowClient, participant, told};
use common::{Hub, PATIENCE, identifiers, status_of, study_open};
use lockstep_bridges::{Bridges, LinkState};
use serde_json::json;
use std::time::Duration;

async fn start(hub: &Hub) -> (Bridges, CcowClient) {
    let bridges = hub
        .bridges(json!({ "ccow": {
            "port": 0,
            "survey_timeout_seconds": 1,
            "identifiers": identifiers(),
        }}))
        .await;
    hub.wait_for_state("CCOW", LinkState::Following).await;
    let detail = status_of(&bridges, "CCOW").detail;
    let base = detail
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no manager URL in `{detail}`"))
        .to_owned();
    (bridges, CcowClient::new(&base))
}

/// Waits until the bridge lists `app` in state `state`.
async fn app_state(bridges: &Bridges, app: &str, state: LinkState) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let status = status_of(bridges, "CCOW");
        if status
            .apps
            .iter()
            .any(|a| a.name == app && a.state == state)
        {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{app} never became {}: {:?}",
            state.name(),
            status.apps
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_ccow_commit_reaches_fhircast_subscribers_under_the_application_s_name() {
    let hub = Hub::start();
    let mut viewer = hub.subscriber("Viewer", "Patient-open,ImagingStudy-open");
    let (bridges, cm) = start(&hub).await;
    let (ehr_url, _) = participant(Answers::Accept).await;
    let ehr = cm.join("EHR#", &ehr_url).await;
    app_state(&bridges, "EHR", LinkState::Following).await;
    // Breaking the link at the application shows; resuming it too.
    cm.get(
        "ContextManager",
        "SuspendParticipation",
        &[("participantCoupon", &ehr)],
    )
    .await
    .unwrap();
    app_state(&bridges, "EHR", LinkState::Off).await;
    cm.get(
        "ContextManager",
        "ResumeParticipation",
        &[("participantCoupon", &ehr)],
    )
    .await
    .unwrap();
    app_state(&bridges, "EHR", LinkState::Following).await;

    let (tx, no_continue, responses) = cm
        .change(
            &ehr,
            "Patient.Id.MRN.GENHOSP|Patient.Co.PatientName|Patient.Co.DateTimeOfBirth|DICOMStudy.Id.InstanceUID|DICOMStudy.Co.Placer_Order_Number.GENHOSP",
            "185444|O'BRIEN^ZOË^ANN|19610203|1.2.840.99|ACC-7",
        )
        .await;
    assert!(!no_continue && responses.is_empty(), "{responses}");
    cm.decide(&ehr, &tx, "accept").await;
    let open = viewer.next_of("ImagingStudy-open").await;
    let context = &open["event"]["context"];
    assert_eq!(context[0]["resource"]["identifier"][0]["value"], "ACC-7");
    assert_eq!(context[1]["resource"]["identifier"][0]["value"], "185444");
    assert_eq!(context[1]["resource"]["birthDate"], "1961-02-03");
    assert_eq!(hub.current_patient_mrn().as_deref(), Some("185444"));
    let changed = hub
        .wait_for("the change on record", |e| {
            matches!(e, lockstep_hub::EngineEvent::ContextChanged { event, .. } if *event == "ImagingStudy-open")
        })
        .await;
    let lockstep_hub::EngineEvent::ContextChanged { requester, .. } = changed else {
        unreachable!()
    };
    assert_eq!(requester, "EHR (via CCOW)");

    // The survey refuses what the session would refuse: a change while the clinician paused...
    hub.engine.set_paused(&hub.topic, true);
    let (paused, no_continue, responses) =
        cm.change(&ehr, "Patient.Id.MRN.GENHOSP", "200001").await;
    assert!(no_continue, "{responses}");
    assert!(responses.contains("paused"), "{responses}");
    cm.decide(&ehr, &paused, "cancel").await;
    hub.engine.set_paused(&hub.topic, false);
    // ... and another name under the same MRN.
    let (_, no_continue, responses) = cm
        .change(
            &ehr,
            "Patient.Id.MRN.GENHOSP|Patient.Co.PatientName",
            "185444|ROE^RICHARD",
        )
        .await;
    assert!(no_continue, "{responses}");
    assert!(responses.contains("family name"), "{responses}");
    assert!(
        !responses.contains("185444"),
        "no MRN in plain words: {responses}"
    );
}

#[tokio::test]
async fn a_fhircast_change_reaches_every_ccow_application_or_names_who_did_not_follow() {
    let hub = Hub::start();
    let mut watcher = hub.subscriber("Watcher", "SyncError");
    let (bridges, cm) = start(&hub).await;
    let (pacs_url, pacs_heard) = participant(Answers::Accept).await;
    let pacs = cm.join("PACS", &pacs_url).await;

    hub.publish(
        "RIS",
        "ImagingStudy-open",
        study_open("p1", "185444", "ACC-1", "1.2.840.1"),
    );
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !pacs_heard
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "ContextChangesAccepted")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "PACS was never told"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(told(&pacs_heard)[0], "ContextChangesPending");
    let recent = cm
        .get("ContextManager", "GetMostRecentContextCoupon", &[])
        .await
        .unwrap();
    let coupon = recent.get("contextCoupon").unwrap().to_owned();
    let values = cm
        .get(
            "ContextData",
            "GetItemValues",
            &[("participantCoupon", &pacs), ("contextCoupon", &coupon)],
        )
        .await
        .unwrap();
    let values = values.list("itemValues");
    assert!(
        values.contains(&"Patient.Id.MRN.GENHOSP") && values.contains(&"185444"),
        "{values:?}"
    );
    assert!(values.contains(&"1.2.840.1"), "{values:?}");
    app_state(&bridges, "PACS", LinkState::Following).await;

    // A second application that stays silent: nobody moves, and the SyncError names it.
    let (lab_url, _) = participant(Answers::Silent).await;
    cm.join("Lab", &lab_url).await;
    hub.publish(
        "RIS",
        "ImagingStudy-open",
        study_open("p2", "200001", "ACC-2", "1.2.840.2"),
    );
    let error = watcher.next_of("SyncError").await;
    let diagnostics = error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        diagnostics.starts_with("Lab: did not answer in time"),
        "{diagnostics}"
    );
    app_state(&bridges, "Lab", LinkState::Unresponsive).await;
    let still = cm
        .get("ContextManager", "GetMostRecentContextCoupon", &[])
        .await
        .unwrap();
    assert_eq!(
        still.get("contextCoupon"),
        Some(coupon.as_str()),
        "the CCOW applications stay together on the last change"
    );
    // A stopping manager tells every application the common context is over.
    bridges.stop().await;
    assert!(
        pacs_heard
            .lock()
            .unwrap()
            .iter()
            .any(|m| m == "CommonContextTerminated"),
        "{:?}",
        pacs_heard.lock().unwrap()
    );
}
