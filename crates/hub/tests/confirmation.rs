//! The confirmation frame and the replay of current context on connect (spec 2-4; checklist 29–38).

mod common;
use common::{Hub, Subscriber, patient_context, study_context};
use serde_json::{Value, json};

#[tokio::test]
async fn first_frame_is_the_spec_confirmation_exactly() {
    let hub = Hub::start().await;
    let sub = hub.subscriber("app", "Patient-open,patient-close").await;
    let confirmation = &sub.confirmation;
    assert_eq!(confirmation["hub.topic"], hub.topic);
    assert!(confirmation["hub.lease_seconds"].is_u64());
    let keys: Vec<&String> = confirmation.as_object().unwrap().keys().collect();
    assert_eq!(keys.len(), 4, "no STU2 or webhook leftovers: {keys:?}");
    insta::assert_json_snapshot!(
        "confirmation",
        common::redacted(
            confirmation,
            &[("hub.topic", "[topic]"), ("hub.lease_seconds", "[lease]")]
        )
    );
}

#[tokio::test]
async fn unknown_endpoint_gets_no_websocket() {
    let hub = Hub::start().await;
    let ws_base = hub.hub_url.replacen("http", "ws", 1);
    for path in ["/ws/not-an-endpoint", "/ws/", "/nowhere"] {
        let result = Subscriber::connect(&format!("{ws_base}{path}")).await;
        assert!(result.is_err(), "{path} upgraded");
    }
}

#[tokio::test]
async fn a_second_connect_to_a_busy_endpoint_is_refused() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let second = Subscriber::connect(&sub.endpoint).await;
    assert!(second.is_err());
    // The first socket is unharmed.
    let token = hub.token("app").await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    assert_eq!(sub.next().await["event"]["hub.event"], "Patient-open");
}

#[tokio::test]
async fn late_joiner_gets_the_latest_unclosed_open_per_anchor_type() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let p1 = hub.event("Patient-open", patient_context("p1", "MRN-1"));
    let p2 = hub.event("Patient-open", patient_context("p2", "MRN-2"));
    let s1 = hub.event("ImagingStudy-open", study_context("s1", "p2"));
    for event in [&p1, &p2, &s1] {
        assert_eq!(hub.publish(&token, event).await.status(), 202);
    }

    let mut late = hub
        .subscriber("app", "Patient-open,ImagingStudy-open")
        .await;
    let mut replayed = [late.next().await, late.next().await];
    replayed.sort_by_key(|f| f["event"]["hub.event"].as_str().unwrap().to_owned());
    assert_eq!(replayed[0]["event"]["hub.event"], "ImagingStudy-open");
    assert_eq!(replayed[1]["event"]["context"][0]["resource"]["id"], "p2");
    // The replay keeps the original id and timestamp.
    assert_eq!(replayed[1]["id"], p2["id"]);
    assert_eq!(replayed[1]["timestamp"], p2["timestamp"]);
    assert_eq!(replayed[0]["id"], s1["id"]);
    late.assert_quiet().await;
}

#[tokio::test]
async fn replay_is_filtered_by_the_subscription() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    hub.publish(
        &token,
        &hub.event("ImagingStudy-open", study_context("s1", "p1")),
    )
    .await;
    let mut only_study = hub.subscriber("app", "ImagingStudy-open").await;
    assert_eq!(
        only_study.next().await["event"]["hub.event"],
        "ImagingStudy-open"
    );
    only_study.assert_quiet().await;
    let mut only_errors = hub.subscriber("app", "SyncError").await;
    only_errors.assert_quiet().await;
}

#[tokio::test]
async fn nothing_is_replayed_for_a_closed_context() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
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
    let close =
        json!([{ "key": "patient", "resource": { "resourceType": "Patient", "id": "p2" } }]);
    assert_eq!(
        hub.publish(&token, &hub.event("Patient-close", close))
            .await
            .status(),
        202
    );
    // P2 was closed and P1 does not come back (multi-tab rule).
    let mut late = hub.subscriber("app", "Patient-open").await;
    late.assert_quiet().await;
}

#[tokio::test]
async fn replayed_frame_is_byte_identical_to_the_original_notification() {
    let hub = Hub::start().await;
    let mut live = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    let original: Value = live.next().await;
    let mut late = hub.subscriber("app", "Patient-open").await;
    assert_eq!(late.next().await, original);
}

/// An open of `anchor` for patient `patient_id`, as `(event, context)`.
fn open_of(anchor: &str, patient_id: &str) -> (String, Value) {
    let context = match anchor {
        "Patient" => patient_context(patient_id, &format!("MRN-{patient_id}")),
        "Encounter" => json!([
            { "key": "encounter", "resource": {
                "resourceType": "Encounter", "id": format!("e-{patient_id}"),
                "identifier": [{ "value": format!("V-{patient_id}") }],
                "status": "in-progress", "class": { "code": "AMB" },
                "subject": { "reference": format!("Patient/{patient_id}") },
            }},
            { "key": "patient", "resource": common::patient(patient_id, &format!("MRN-{patient_id}")) },
        ]),
        "ImagingStudy" => study_context(&format!("s-{patient_id}"), patient_id),
        "DiagnosticReport" => common::report_context(&format!("r-{patient_id}"), patient_id),
        other => panic!("no open for {other}"),
    };
    (format!("{anchor}-open"), context)
}

/// The id of the patient a notification's context belongs to.
fn patient_in(frame: &Value) -> Value {
    frame["event"]["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "patient")
        .map(|e| e["resource"]["id"].clone())
        .unwrap_or_else(|| panic!("no patient in {frame}"))
}

#[tokio::test]
async fn an_open_of_another_patient_supersedes_every_open_context_of_the_previous_one() {
    const ANCHORS: [&str; 4] = ["Patient", "Encounter", "ImagingStudy", "DiagnosticReport"];
    let all_opens = ANCHORS.map(|a| format!("{a}-open")).join(",");
    for first in ANCHORS {
        for second in ANCHORS {
            let case = format!("{first}-open of p1, then {second}-open of p2");
            let hub = Hub::start().await;
            let token = hub.token("app").await;
            for (anchor, patient) in [(first, "p1"), (second, "p2")] {
                let (name, context) = open_of(anchor, patient);
                let response = hub.publish(&token, &hub.event(&name, context)).await;
                assert_eq!(response.status(), 202, "{case}");
            }
            // Get Current Context says p2...
            let current: Value = hub.current(&token).await.json().await.unwrap();
            assert_eq!(current["context.type"], second, "{case}");
            assert_eq!(patient_in(&json!({ "event": current })), "p2", "{case}");
            // ...and so does every replay, to a subscriber of every open and to one that
            // follows only the anchor type p1 was opened with.
            for events in [all_opens.clone(), format!("{first}-open")] {
                let mut late = hub.subscriber("app", &events).await;
                let mut replayed = Vec::new();
                while let common::Arrival::Frame(frame) =
                    late.arrival(std::time::Duration::from_millis(200)).await
                {
                    replayed.push(frame);
                }
                for frame in &replayed {
                    assert_eq!(patient_in(frame), "p2", "{case}, {events}: {frame}");
                }
                // p2's own open reaches a subscriber of every open.
                if events == all_opens {
                    assert!(
                        replayed
                            .iter()
                            .any(|f| f["event"]["hub.event"] == format!("{second}-open")),
                        "{case}: {replayed:?}"
                    );
                }
            }
            hub.stop().await;
        }
    }
}
