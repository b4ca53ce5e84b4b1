//! Re-subscription, denial, unsubscribe and lease expiry (spec 2-4; checklist 39–47).

mod common;
use common::{Hub, Subscriber, patient_context, study_context};
use serde_json::Value;
use std::time::Duration;

#[tokio::test]
async fn resubscribing_replaces_the_event_set() {
    let hub = Hub::start().await;
    // Observers are told of each renewal, with the lease the app had left.
    let renewals = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = renewals.clone();
    hub.engine.observe(std::sync::Arc::new(move |event| {
        if let lockstep_hub::EngineEvent::Renewed { lease_left, .. } = event {
            seen.lock().unwrap().push(*lease_left);
        }
    }));
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", hub.topic.as_str()),
        ("hub.events", "ImagingStudy-open"),
        ("hub.channel.endpoint", sub.endpoint.as_str()),
    ];
    let response = hub.post_form(&token, &form).await;
    assert_eq!(response.status(), 202);
    assert_eq!(
        response.json::<Value>().await.unwrap()["hub.channel.endpoint"],
        sub.endpoint
    );
    // The live socket is told the new grant.
    assert_eq!(sub.next().await["hub.events"], "ImagingStudy-open");
    let renewed = renewals.lock().unwrap().clone();
    assert_eq!(renewed.len(), 1, "{renewed:?}");
    assert!(
        renewed[0].is_some_and(|left| left > Duration::from_secs(60)),
        "{renewed:?}"
    );

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
    assert_eq!(sub.next().await["event"]["hub.event"], "ImagingStudy-open");
    sub.assert_quiet().await;
}

#[tokio::test]
async fn unsubscribe_answers_202_then_denies_and_closes() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub
        .subscriber_with_token(&token, "Patient-open,Patient-close")
        .await;
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", hub.topic.as_str()),
        ("hub.channel.endpoint", sub.endpoint.as_str()),
    ];
    let response = hub.post_form(&token, &form).await;
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["content-type"], "application/json");
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        serde_json::json!({ "hub.channel.endpoint": sub.endpoint })
    );

    let (frames, code) = sub.closed().await;
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["hub.mode"], "denied");
    assert_eq!(frames[0]["hub.topic"], hub.topic);
    assert_eq!(frames[0]["hub.events"], "Patient-open,Patient-close");
    assert_eq!(code, Some(1000));
    insta::assert_json_snapshot!(
        "denial_unsubscribed",
        common::redacted(&frames[0], &[("hub.topic", "[topic]")])
    );

    // No more events, the endpoint is gone for good, and a new subscription gets a new one.
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    assert!(Subscriber::connect(&sub.endpoint).await.is_err());
    let again = hub.subscriber_with_token(&token, "Patient-open").await;
    assert_ne!(again.endpoint, sub.endpoint);
}

#[tokio::test]
async fn unsubscribe_refusals() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let sub = hub.subscriber_with_token(&token, "Patient-open").await;
    let topic = hub.topic.as_str();
    let missing = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", topic),
    ];
    let response = hub.post_form(&token, &missing).await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("hub.channel.endpoint")
    );

    let unknown_endpoint = format!("{}x", sub.endpoint);
    let unknown = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", topic),
        ("hub.channel.endpoint", unknown_endpoint.as_str()),
    ];
    assert_eq!(hub.post_form(&token, &unknown).await.status(), 404);

    let foreign = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", topic),
        ("hub.channel.endpoint", "ws://evil.example/fhircast/ws/abc"),
    ];
    assert_eq!(hub.post_form(&token, &foreign).await.status(), 400);
    assert_eq!(hub.engine.subscribers(&hub.topic).len(), 1);
}

#[tokio::test]
async fn lease_expiry_denies_and_closes() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", hub.topic.as_str()),
        ("hub.events", "Patient-open"),
        ("hub.lease_seconds", "1"),
    ];
    let endpoint: Value = hub.post_form(&token, &form).await.json().await.unwrap();
    let mut sub = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(sub.next().await["hub.lease_seconds"], 1);
    let (frames, _) = sub.closed().await;
    assert_eq!(frames.last().unwrap()["hub.mode"], "denied");
    assert_eq!(frames.last().unwrap()["hub.reason"], "lease expired");
    // After expiry nothing is delivered and the endpoint is gone.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hub.engine.subscribers(&hub.topic).is_empty());
    assert!(
        Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_clean_goodbye_ends_the_subscription_without_syncerror() {
    let hub = Hub::start().await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut leaving = hub.subscriber("app", "Patient-open").await;
    leaving.close_with(1000).await;
    let mut going_away = hub.subscriber("app", "Patient-open").await;
    going_away.close_with(1001).await;
    watcher.assert_quiet().await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(hub.engine.subscribers(&hub.topic).len(), 1);
}
