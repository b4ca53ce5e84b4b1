//! Get Current Context (spec 2-9; checklist 80–88).

mod common;
use common::{Hub, patient_context, study_context};
use serde_json::{Value, json};

async fn current(hub: &Hub, token: &str) -> Value {
    let response = hub.current(token).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.unwrap()
}

/// The context of the open that set the current context, and the `content` Bundle beside it.
pub fn split_content(body: &Value) -> (Value, Value) {
    let mut entries = body["context"].as_array().unwrap().clone();
    let at = entries
        .iter()
        .position(|e| e["key"] == "content")
        .expect("a content Bundle");
    let content = entries.remove(at)["resource"].clone();
    (Value::Array(entries), content)
}

fn close_of(id: &str) -> Value {
    json!([{ "key": "patient", "resource": { "resourceType": "Patient", "id": id } }])
}

#[tokio::test]
async fn fresh_topic_has_the_empty_context() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let body = current(&hub, &token).await;
    assert_eq!(body["context.type"], "");
    assert_eq!(body["context"], json!([]));
    assert!(body["context.versionId"].is_string());
}

#[tokio::test]
async fn open_sets_it_and_closing_it_empties_it() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let empty = current(&hub, &token).await;
    let context = patient_context("p1", "1");
    hub.publish(&token, &hub.event("Patient-open", context.clone()))
        .await;
    let opened = current(&hub, &token).await;
    assert_eq!(opened["context.type"], "Patient");
    let (open_context, content) = split_content(&opened);
    assert_eq!(open_context, context);
    assert_eq!(content["type"], "collection");
    assert_eq!(content["entry"], json!([]));
    assert_ne!(opened["context.versionId"], empty["context.versionId"]);
    insta::assert_json_snapshot!(
        "current_context_patient",
        common::redacted(
            &opened,
            &[("context.versionId", "[version]"), ("id", "[id]")]
        )
    );

    hub.publish(&token, &hub.event("Patient-close", close_of("p1")))
        .await;
    let closed = current(&hub, &token).await;
    assert_eq!(closed["context.type"], "");
    assert_eq!(closed["context"], json!([]));
    assert_ne!(closed["context.versionId"], opened["context.versionId"]);
}

#[tokio::test]
async fn multi_tab_rule_open_p1_open_p2_close_p2_leaves_no_context() {
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
    let body = current(&hub, &token).await;
    assert_eq!(body["context"][0]["resource"]["id"], "p2");
    hub.publish(&token, &hub.event("Patient-close", close_of("p2")))
        .await;
    let body = current(&hub, &token).await;
    assert_eq!(body["context.type"], "", "P1 must not come back silently");
}

#[tokio::test]
async fn closing_a_context_that_is_not_current_leaves_the_current_one() {
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
    let before = current(&hub, &token).await;
    assert_eq!(
        hub.publish(&token, &hub.event("Patient-close", close_of("p1")))
            .await
            .status(),
        202
    );
    let after = current(&hub, &token).await;
    assert_eq!(after, before);
}

#[tokio::test]
async fn diagnostic_report_and_study_anchors() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    hub.publish(
        &token,
        &hub.event("ImagingStudy-open", study_context("s1", "p1")),
    )
    .await;
    assert_eq!(current(&hub, &token).await["context.type"], "ImagingStudy");
    let report = json!([
        { "key": "report", "resource": {
            "resourceType": "DiagnosticReport", "id": "r1", "status": "preliminary",
            "subject": { "reference": "Patient/p1" },
            "basedOn": [{ "identifier": { "value": "ACC-1" } }],
        }},
        { "key": "patient", "resource": common::patient("p1", "MRN-1") },
    ]);
    assert_eq!(
        hub.publish(&token, &hub.event("DiagnosticReport-open", report))
            .await
            .status(),
        202
    );
    assert_eq!(
        current(&hub, &token).await["context.type"],
        "DiagnosticReport"
    );
}

#[tokio::test]
async fn unknown_or_foreign_topic_is_404_and_no_token_is_401() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let other = hub.engine.create_topic();
    for topic in ["no-such-topic", other.as_ref()] {
        let response = hub.get(&token, topic).await;
        assert_eq!(response.status(), 404);
    }
    let response = hub
        .http
        .get(format!("{}/{}", hub.hub_url, hub.topic))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
}
