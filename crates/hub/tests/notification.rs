//! Event notification to subscribers (spec 2-5; checklist 48–57).

mod common;
use common::{Hub, patient_context};
use serde_json::{Value, json};

#[tokio::test]
async fn notification_frame_shape_and_pass_through() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    let mut context = patient_context("p1", "MRN-1");
    // Other value members (reference, data for extensions) pass through intact.
    context
        .as_array_mut()
        .unwrap()
        .push(json!({ "key": "extension", "data": { "com.example.priority": "STAT", "n": 1.50 } }));
    let request = hub.event("Patient-open", context.clone());
    assert_eq!(hub.publish(&token, &request).await.status(), 202);

    let frame = sub.next().await;
    assert_eq!(frame.as_object().unwrap().len(), 3, "{frame}");
    assert_eq!(frame["id"], request["id"]);
    assert_eq!(frame["timestamp"], request["timestamp"]);
    assert_eq!(frame["event"]["hub.topic"], hub.topic);
    assert_eq!(frame["event"]["hub.event"], "Patient-open");
    assert_eq!(frame["event"]["context"], context);
    insta::assert_json_snapshot!(
        "patient_open_notification",
        common::redacted(&frame, &[("hub.topic", "[topic]"), ("id", "[id]")])
    );
}

#[tokio::test]
async fn context_bytes_are_relayed_verbatim() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    // Odd spacing, key order and number spelling must survive: the hub relays, it does not re-serialise.
    let raw = format!(
        r#"{{"timestamp":"2026-11-26T10:00:00Z","id":"raw-1","event":{{"hub.topic":"{}","hub.event":"Patient-open","context":[ {{"key":"patient","resource":{{"resourceType":"Patient","id":"p1","identifier":[{{"value":"1"}}],"z":1.50,"a":true}}}} ]}}}}"#,
        hub.topic
    );
    let response = hub.post_raw(&token, "application/fhir+json", raw).await;
    assert_eq!(response.status(), 202);
    let frame = sub.socket_text().await;
    assert!(frame.contains(r#""context":[ {"key":"patient","resource":{"resourceType":"Patient","id":"p1","identifier":[{"value":"1"}],"z":1.50,"a":true}} ]"#), "{frame}");
}

#[tokio::test]
async fn delivered_to_every_subscriber_of_the_event_including_the_sender() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sender = hub.subscriber_with_token(&token, "Patient-open").await;
    let mut others = Vec::new();
    for _ in 0..5 {
        others.push(
            hub.subscriber("reader", "Patient-open,ImagingStudy-open")
                .await,
        );
    }
    let mut not_interested = hub.subscriber("reader", "ImagingStudy-open").await;
    let request = hub.event("Patient-open", patient_context("p1", "1"));
    hub.publish(&token, &request).await;
    assert_eq!(sender.next().await["id"], request["id"]);
    for other in &mut others {
        assert_eq!(other.next().await["id"], request["id"]);
    }
    not_interested.assert_quiet().await;
}

#[tokio::test]
async fn events_never_cross_topics() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    // Another session on the same engine: publishing there reaches nobody here.
    let other = hub.engine.create_topic();
    let grant = lockstep_hub::TokenGrant {
        client_id: "app".into(),
        client_name: "app".into(),
        topic: other.clone(),
        scopes: lockstep_fhircast::ScopeSet::parse("fhircast/*.*").unwrap(),
        expires_at: std::time::Instant::now() + std::time::Duration::from_secs(60),
        acknowledges: true,
    };
    let body = common::event_on(&other, "Patient-open", patient_context("p9", "9")).to_string();
    let change = lockstep_fhircast::ContextChange::parse(body.as_bytes()).unwrap();
    hub.engine.publish(&grant, change).unwrap();
    sub.assert_quiet().await;
}

#[tokio::test]
async fn replies_are_accepted_as_number_string_or_without_status() {
    let hub = Hub::start().await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    for reply in [json!(200), json!("200"), json!("202"), Value::Null] {
        hub.publish(
            &token,
            &hub.event("Patient-open", patient_context("p1", "1")),
        )
        .await;
        let frame = sub.next().await;
        let mut answer = json!({ "id": frame["id"] });
        if !reply.is_null() {
            answer["status"] = reply;
        }
        sub.reply(answer).await;
    }
    // Garbage on the socket is ignored, not fatal.
    sub.reply(json!("not a reply")).await;
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p2", "2")),
    )
    .await;
    let frame = sub.next().await;
    assert_eq!(frame["event"]["context"][0]["resource"]["id"], "p2");
    sub.ack(&frame, 200).await;
    watcher.assert_quiet().await;
}
