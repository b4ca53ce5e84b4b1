//! Subscribing (spec 2-4; checklist 12–28).

mod common;
use common::{Arrival, Hub, Subscriber};
use serde_json::Value;
use std::collections::HashSet;

const WS: (&str, &str) = ("hub.channel.type", "websocket");
const SUB: (&str, &str) = ("hub.mode", "subscribe");
const EVENTS: (&str, &str) = ("hub.events", "Patient-open");

#[tokio::test]
async fn subscribe_returns_202_with_a_fresh_unguessable_endpoint() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut endpoints = HashSet::new();
    for _ in 0..20 {
        let response = hub.subscribe(&token, "Patient-open").await;
        assert_eq!(response.status(), 202);
        assert_eq!(response.headers()["content-type"], "application/json");
        let body: Value = response.json().await.unwrap();
        let endpoint = body["hub.channel.endpoint"].as_str().unwrap().to_owned();
        assert_eq!(body.as_object().unwrap().len(), 1, "{body}");
        let secret = endpoint.rsplit('/').next().unwrap();
        // 43 base64url characters = 256 random bits.
        assert!(secret.len() >= 22, "{endpoint}");
        assert!(endpoint.starts_with("ws://127.0.0.1:"), "{endpoint}");
        assert!(
            !endpoint.contains(&hub.topic),
            "the endpoint must not be derived from the topic"
        );
        assert!(endpoints.insert(endpoint));
    }
}

#[tokio::test]
async fn malformed_subscriptions_get_4xx_with_a_reason_and_no_endpoint() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let topic = hub.topic.as_str();
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![SUB, ("hub.topic", topic), EVENTS], "hub.channel.type"),
        (
            vec![
                ("hub.channel.type", "webhook"),
                SUB,
                ("hub.topic", topic),
                EVENTS,
            ],
            "websocket",
        ),
        (vec![WS, ("hub.topic", topic), EVENTS], "hub.mode"),
        (
            vec![WS, ("hub.mode", "publish"), ("hub.topic", topic), EVENTS],
            "hub.mode",
        ),
        (vec![WS, SUB, EVENTS], "hub.topic"),
        (vec![WS, SUB, ("hub.topic", topic)], "hub.events"),
        (
            vec![WS, SUB, ("hub.topic", topic), ("hub.events", "")],
            "hub.events",
        ),
        (
            vec![WS, SUB, ("hub.topic", topic), ("hub.topic", topic), EVENTS],
            "more than once",
        ),
        (
            vec![WS, SUB, ("hub.topic", topic), ("hub.events", "heartbeat")],
            "heartbeat",
        ),
        (
            vec![
                WS,
                SUB,
                ("hub.topic", topic),
                EVENTS,
                ("hub.lease_seconds", "-5"),
            ],
            "lease",
        ),
    ];
    for (form, needle) in cases {
        let response = hub.post_form(&token, &form).await;
        let status = response.status();
        let body = response.text().await.unwrap();
        assert!(status.is_client_error(), "{form:?} got {status}");
        assert!(
            body.contains(needle),
            "{form:?}: `{body}` should mention {needle}"
        );
        assert!(!body.contains("hub.channel.endpoint\":"), "{body}");
    }
    assert!(hub.engine.subscribers(&hub.topic).is_empty());
}

#[tokio::test]
async fn no_or_invalid_token_gets_401_and_no_endpoint() {
    let hub = Hub::start().await;
    let form = [WS, SUB, ("hub.topic", hub.topic.as_str()), EVENTS];
    let without = hub
        .http
        .post(&hub.hub_url)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(without.status(), 401);
    assert_eq!(hub.post_form("not-a-token", &form).await.status(), 401);
    assert!(hub.engine.subscribers(&hub.topic).is_empty());
}

#[tokio::test]
async fn topic_the_token_is_not_bound_to_looks_like_an_unknown_topic() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let other = hub.engine.create_topic();
    for topic in [other.as_ref(), "no-such-topic"] {
        let response = hub
            .post_form(&token, &[WS, SUB, ("hub.topic", topic), EVENTS])
            .await;
        assert_eq!(response.status(), 404);
        assert_eq!(response.text().await.unwrap(), "unknown topic");
    }
}

#[tokio::test]
async fn events_without_read_scope_are_left_out_of_the_grant() {
    let hub = Hub::start().await;
    let mut sub = hub
        .subscriber("patient-only", "Patient-open,ImagingStudy-open")
        .await;
    assert_eq!(sub.confirmation["hub.events"], "Patient-open");
    let token = hub.token("patient-only").await;
    let none = hub.subscribe(&token, "ImagingStudy-open").await;
    assert_eq!(none.status(), 403);
    assert!(none.text().await.unwrap().contains("scope"));
    // The left-out event is never delivered; only the Patient-open it implies is.
    let writer = hub.token("app").await;
    let study = hub.event("ImagingStudy-open", common::study_context("s1", "p1"));
    assert_eq!(hub.publish(&writer, &study).await.status(), 202);
    let implied = sub.next().await;
    assert_eq!(implied["event"]["hub.event"], "Patient-open");
    assert_eq!(implied["event"]["context"].as_array().unwrap().len(), 1);
    sub.assert_quiet().await;
}

#[tokio::test]
async fn duplicates_and_case_are_folded_to_canonical_events() {
    let hub = Hub::start().await;
    let mut sub = hub
        .subscriber("app", "patient-open,Patient-open,PATIENT-OPEN")
        .await;
    assert_eq!(sub.confirmation["hub.events"], "Patient-open");
    let token = hub.token("app").await;
    let open = hub.event("Patient-open", common::patient_context("p1", "1"));
    hub.publish(&token, &open).await;
    let frame = sub.next().await;
    assert_eq!(frame["event"]["hub.event"], "Patient-open");
    sub.assert_quiet().await; // granted once, delivered once
}

#[tokio::test]
async fn lease_is_capped_by_the_token_lifetime_and_the_maximum() {
    let settings = lockstep_hub::HubSettings {
        token_lifetime_seconds: 600,
        lease_seconds_max: 7200,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let token = hub.token("app").await;
    for asked in ["100", "99999999"] {
        let form = [
            WS,
            SUB,
            ("hub.topic", hub.topic.as_str()),
            EVENTS,
            ("hub.lease_seconds", asked),
        ];
        let response = hub.post_form(&token, &form).await;
        let endpoint: Value = response.json().await.unwrap();
        let mut sub = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
            .await
            .unwrap();
        let confirmation = sub.next().await;
        let lease = confirmation["hub.lease_seconds"].as_u64().unwrap();
        assert!(lease <= 600, "lease {lease} outlives the token");
        if asked == "100" {
            assert_eq!(lease, 100);
        }
    }
}

#[tokio::test]
async fn json_subscription_body_is_accepted_too() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let body = serde_json::json!({
        "hub.channel.type": "websocket", "hub.mode": "subscribe", "hub.topic": hub.topic,
        "hub.events": "Patient-open,Patient-close", "subscriber.name": "JSON viewer",
    });
    let response = hub
        .http
        .post(&hub.hub_url)
        .bearer_auth(&token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let endpoint: Value = response.json().await.unwrap();
    let mut sub = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
        .await
        .unwrap();
    assert_eq!(sub.next().await["hub.events"], "Patient-open,Patient-close");

    // The same key spelled with a JSON escape is still a subscription, not a context change.
    let escaped = format!(
        r#"{{"hub.channel.type":"websocket","hub\u002emode":"subscribe","hub.topic":"{}","hub.events":"Patient-open"}}"#,
        hub.topic
    );
    let response = hub.post_raw(&token, "application/json", escaped).await;
    assert_eq!(response.status(), 202);
    let endpoint: Value = response.json().await.unwrap();
    assert!(endpoint["hub.channel.endpoint"].is_string(), "{endpoint}");
}

#[tokio::test]
async fn subscriber_name_is_coded_in_syncerrors_and_named_beside_the_registered_name() {
    let hub = Hub::start().await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let token = hub.token("app").await;
    let form = [
        WS,
        SUB,
        ("hub.topic", hub.topic.as_str()),
        EVENTS,
        ("subscriber.name", "Reading room PACS"),
    ];
    let response = hub.post_form(&token, &form).await;
    let endpoint: Value = response.json().await.unwrap();
    let mut pacs = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
        .await
        .unwrap();
    pacs.next().await;
    hub.publish(
        &token,
        &hub.event("Patient-open", common::patient_context("p1", "1")),
    )
    .await;
    let frame = pacs.next().await;
    pacs.ack(&frame, 409).await;
    let error = watcher.next().await;
    let codings = &error["event"]["context"][0]["resource"]["issue"][0]["details"]["coding"];
    let name = codings
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["system"].as_str().unwrap().ends_with("/subscribername"))
        .unwrap();
    assert_eq!(name["code"], "Reading room PACS");
    // In plain words the app goes by its registered name, with its own beside it.
    assert_eq!(
        error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"],
        "app app (\"Reading room PACS\") refused to follow Patient-open (status 409)"
    );
    assert!(matches!(
        pacs.arrival(common::QUIET).await,
        Arrival::Nothing
    ));
}

/// Subscribes with a JSON body and returns the confirmation frame.
async fn json_subscribe(hub: &Hub, token: &str, body: Value) -> Value {
    let response = hub
        .http
        .post(&hub.hub_url)
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202, "{body}");
    let endpoint: Value = response.json().await.unwrap();
    let mut sub = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
        .await
        .unwrap();
    sub.next().await
}

#[tokio::test]
async fn json_subscriptions_take_a_numeric_lease_and_ignore_unknown_keys_of_any_type() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let base = |extra: Value| {
        let mut body = serde_json::json!({
            "hub.channel.type": "websocket", "hub.mode": "subscribe", "hub.topic": hub.topic,
            "hub.events": "Patient-open",
        });
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    for extra in [
        serde_json::json!({ "hub.lease_seconds": 600 }),
        serde_json::json!({ "hub.lease": 600 }),
    ] {
        let confirmation = json_subscribe(&hub, &token, base(extra.clone())).await;
        assert_eq!(confirmation["hub.lease_seconds"], 600, "{extra}");
    }
    let confirmation = json_subscribe(
        &hub,
        &token,
        base(serde_json::json!({ "x-client": { "version": 3 }, "retries": 2, "debug": true })),
    )
    .await;
    assert_eq!(confirmation["hub.events"], "Patient-open");
}

#[tokio::test]
async fn unknown_events_among_known_ones_are_left_out_of_the_grant() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let sub = hub
        .subscriber_with_token(
            &token,
            "Patient-open,Heartbeat,ImagingStudy-open,Vendor-ping",
        )
        .await;
    assert_eq!(
        sub.confirmation["hub.events"],
        "Patient-open,ImagingStudy-open"
    );
    // None supported at all is still refused, naming one.
    let response = hub.subscribe(&token, "Heartbeat,Vendor-ping").await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("Heartbeat"));
}
