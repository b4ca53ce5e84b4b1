//! Subscriber responses and SyncError (spec 2-5, 4.2–4.3; checklist 58–69).

mod common;
use common::{Arrival, Hub, patient_context};
use lockstep_hub::{EngineEvent, HubSettings, LinkState};
use serde_json::{Value, json};
use std::time::Duration;

fn coding(error: &Value, suffix: &str) -> Value {
    let codings = error["event"]["context"][0]["resource"]["issue"][0]["details"]["coding"]
        .as_array()
        .unwrap()
        .clone();
    codings
        .into_iter()
        .find(|c| c["system"].as_str().unwrap().ends_with(suffix))
        .unwrap()["code"]
        .clone()
}

#[tokio::test]
async fn refusals_and_failures_become_spec_shaped_syncerrors_for_the_others() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut not_subscribed_to_errors = hub.subscriber("app", "Patient-open").await;
    let mut pacs = hub.subscriber("app", "Patient-open,SyncError").await;
    for status in [409u16, 404, 500, 503] {
        let mut open = hub.event("Patient-open", patient_context("p1", "1"));
        open["id"] = format!("event-{status}").into();
        hub.publish(&token, &open).await;
        let frame = pacs.next().await;
        let other = not_subscribed_to_errors.next().await;
        not_subscribed_to_errors.ack(&other, 200).await;
        pacs.ack(&frame, status).await;
        let error = watcher.next().await;
        assert_eq!(error["event"]["hub.event"], "SyncError");
        let issue = &error["event"]["context"][0]["resource"]["issue"][0];
        assert_eq!(error["event"]["context"][0]["key"], "operationoutcome");
        assert_eq!(issue["severity"], "warning");
        assert_eq!(issue["code"], "processing");
        assert!(
            issue["diagnostics"]
                .as_str()
                .unwrap()
                .contains(&status.to_string())
        );
        assert_eq!(coding(&error, "/eventid"), open["id"]);
        assert_eq!(coding(&error, "/eventname"), "Patient-open");
        assert_eq!(coding(&error, "/subscribername"), "app app");
        if status == 409 {
            insta::assert_json_snapshot!(
                "hub_syncerror",
                common::redacted(
                    &error,
                    &[
                        ("hub.topic", "[topic]"),
                        ("id", "[id]"),
                        ("timestamp", "[time]")
                    ]
                )
            );
        }
    }
    // Only SyncError subscribers get them, and never the one that failed.
    not_subscribed_to_errors.assert_quiet().await;
    pacs.assert_quiet().await;
}

#[tokio::test]
async fn success_replies_make_no_syncerror() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut viewer = hub.subscriber("app", "Patient-open").await;
    for status in [200, 202, 204] {
        hub.publish(
            &token,
            &hub.event("Patient-open", patient_context("p1", "1")),
        )
        .await;
        let frame = viewer.next().await;
        viewer.ack(&frame, status).await;
    }
    watcher.assert_quiet().await;
}

#[tokio::test]
async fn silent_subscriber_gets_a_syncerror_and_is_unsubscribed() {
    let settings = HubSettings {
        ack_timeout_seconds: 1,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut silent = hub.subscriber("app", "Patient-open").await;
    let mut events = hub.engine.listen();
    let open = hub.event("Patient-open", patient_context("p1", "1"));
    hub.publish(&token, &open).await;
    assert_eq!(silent.next().await["id"], open["id"]);
    // No reply: within the deadline (plus a sweep) the others hear of it...
    let error = watcher.next().await;
    assert_eq!(coding(&error, "/eventid"), open["id"]);
    assert!(
        error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("did not acknowledge")
    );
    // ...and the silent one is denied and closed.
    let (frames, code) = silent.closed().await;
    assert_eq!(frames.last().unwrap()["hub.mode"], "denied");
    assert_eq!(code, Some(1008));
    // The agent sees the link state.
    let mut saw_unresponsive = false;
    while let Ok(Ok(event)) = tokio::time::timeout(Duration::from_millis(200), events.recv()).await
    {
        if let EngineEvent::Link {
            state: LinkState::Unresponsive,
            ..
        } = event
        {
            saw_unresponsive = true;
        }
    }
    assert!(saw_unresponsive);
}

#[tokio::test]
async fn abnormal_close_makes_a_syncerror_normal_close_does_not() {
    let hub = Hub::start().await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut crashing = hub.subscriber("app", "Patient-open").await;
    crashing.close_with(4000).await;
    let error = watcher.next().await;
    assert!(
        error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("4000")
    );

    // A connection dropped without any close frame counts as abnormal too.
    let dropped = hub.subscriber("app", "Patient-open").await;
    drop(dropped);
    assert!(matches!(
        watcher.arrival(common::WAIT).await,
        Arrival::Frame(_)
    ));

    let mut leaving = hub.subscriber("app", "Patient-open").await;
    leaving.close_with(1001).await;
    watcher.assert_quiet().await;
}

#[tokio::test]
async fn a_posted_syncerror_is_relayed_to_the_other_syncerror_subscribers() {
    let hub = Hub::start().await;
    let dictation = hub.token("app").await;
    let mut own = hub.subscriber_with_token(&dictation, "SyncError").await;
    let mut others = hub.subscriber("reader", "SyncError").await;
    let outcome = json!([{ "key": "operationoutcome", "resource": {
        "resourceType": "OperationOutcome",
        "issue": [{ "severity": "warning", "code": "processing", "diagnostics": "Dictation cannot switch: report unsaved" }]
    }}]);
    let posted = hub.event("SyncError", outcome);
    assert_eq!(hub.publish(&dictation, &posted).await.status(), 202);
    assert_eq!(others.next().await["id"], posted["id"]);
    own.assert_quiet().await;
}

#[tokio::test]
async fn link_states_follow_the_replies() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut viewer = hub.subscriber("app", "Patient-open").await;
    let state = || {
        hub.engine
            .subscribers(&hub.topic)
            .into_iter()
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    assert_eq!(state(), vec![LinkState::Following]);
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    let frame = viewer.next().await;
    viewer.ack(&frame, 409).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(), vec![LinkState::Refused { status: Some(409) }]);
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p2", "2")),
    )
    .await;
    let frame = viewer.next().await;
    viewer.ack(&frame, 200).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(), vec![LinkState::Following]);
}

#[tokio::test]
async fn an_app_registered_as_not_acknowledging_is_not_awaited_but_its_refusals_count() {
    let hub = Hub::start_with(HubSettings {
        ack_timeout_seconds: 1,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut viewer = hub.subscriber("viewer", "Patient-open").await;
    let state = || {
        hub.engine
            .subscribers(&hub.topic)
            .into_iter()
            .filter(|(info, _)| info.client_id == "viewer")
            .map(|(_, s)| s)
            .collect::<Vec<_>>()
    };
    assert_eq!(state(), vec![LinkState::FollowingUnacknowledged]);
    // Silent through several acknowledgement deadlines: no SyncError, no denial, still subscribed.
    for (id, mrn) in [("p1", "1"), ("p2", "2"), ("p3", "3")] {
        let open = hub.event("Patient-open", patient_context(id, mrn));
        assert_eq!(hub.publish(&token, &open).await.status(), 202);
        assert_eq!(viewer.next().await["id"], open["id"]);
    }
    match watcher.arrival(Duration::from_millis(2500)).await {
        Arrival::Nothing => {}
        other => panic!("its silence raised {other:?}"),
    }
    viewer.assert_quiet().await;
    assert_eq!(state(), vec![LinkState::FollowingUnacknowledged]);
    // A refusal it does send is still a refusal the others hear of.
    let open = hub.event("Patient-open", patient_context("p4", "4"));
    hub.publish(&token, &open).await;
    let frame = viewer.next().await;
    viewer.ack(&frame, 409).await;
    let error = watcher.next().await;
    assert_eq!(coding(&error, "/eventid"), open["id"]);
    assert_eq!(state(), vec![LinkState::Refused { status: Some(409) }]);
    // And a success brings it back to following without acknowledgements.
    let open = hub.event("Patient-open", patient_context("p5", "5"));
    hub.publish(&token, &open).await;
    let frame = viewer.next().await;
    viewer.ack(&frame, 200).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(state(), vec![LinkState::FollowingUnacknowledged]);
}
