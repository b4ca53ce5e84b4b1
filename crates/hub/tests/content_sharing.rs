//! Content sharing on DiagnosticReport anchors (spec 2-10; checklist 89–103).

mod common;
use common::{Hub, observation, put, report_context, update};
use serde_json::{Value, json};

/// Opens report r1 and returns the version the hub minted, as every subscriber saw it.
async fn open_report(hub: &Hub, token: &str, sub: &mut common::Subscriber) -> String {
    let open = hub.event("DiagnosticReport-open", report_context("r1", "p1"));
    assert_eq!(hub.publish(token, &open).await.status(), 202);
    let frame = sub.next().await;
    assert_eq!(frame["event"]["hub.event"], "DiagnosticReport-open");
    frame["event"]["context.versionId"]
        .as_str()
        .expect("the hub mints a version on open")
        .to_owned()
}

async fn current(hub: &Hub, token: &str) -> Value {
    hub.current(token).await.json().await.unwrap()
}

fn content_of(body: &Value) -> Value {
    body["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "content")
        .unwrap()["resource"]
        .clone()
}

const EVENTS: &str =
    "DiagnosticReport-open,DiagnosticReport-close,DiagnosticReport-update,DiagnosticReport-select";

#[tokio::test]
async fn update_with_the_current_version_is_applied_and_broadcast_with_new_versions() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    assert_eq!(current(&hub, &token).await["context.versionId"], v1);

    let request = update(
        &hub,
        "r1",
        &v1,
        "bundle-1",
        json!([put(observation("o1", "nodule"))]),
    );
    assert_eq!(hub.publish(&token, &request).await.status(), 202);
    let frame = sub.next().await;
    let v2 = frame["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_ne!(v2, v1);
    assert_eq!(frame["event"]["context.priorVersionId"], v1);
    assert_eq!(frame["id"], request["id"]);
    assert_eq!(frame["event"]["context"][1]["resource"]["id"], "bundle-1");
    insta::assert_json_snapshot!(
        "update_notification",
        common::redacted(
            &frame,
            &[
                ("hub.topic", "[topic]"),
                ("context.versionId", "[v2]"),
                ("context.priorVersionId", "[v1]"),
                ("id", "[id]")
            ]
        )
    );

    let body = current(&hub, &token).await;
    assert_eq!(body["context.versionId"], v2);
    let content = content_of(&body);
    assert_eq!(content["type"], "collection");
    assert_eq!(content["entry"][0]["resource"]["id"], "o1");
    assert!(content["entry"][0].get("request").is_none());
}

#[tokio::test]
async fn stale_or_missing_version_is_refused_and_changes_nothing() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    let first = update(&hub, "r1", &v1, "b1", json!([put(observation("o1", "a"))]));
    hub.publish(&token, &first).await;
    sub.next().await;
    let before = current(&hub, &token).await;

    let stale = update(&hub, "r1", &v1, "b2", json!([put(observation("o2", "b"))]));
    let response = hub.publish(&token, &stale).await;
    assert_eq!(response.status(), 409);
    assert!(response.text().await.unwrap().contains("stale"));

    let mut missing = update(&hub, "r1", "x", "b3", json!([put(observation("o3", "c"))]));
    missing["event"]
        .as_object_mut()
        .unwrap()
        .remove("context.versionId");
    assert_eq!(hub.publish(&token, &missing).await.status(), 409);

    sub.assert_quiet().await;
    assert_eq!(current(&hub, &token).await, before);
}

#[tokio::test]
async fn a_bad_entry_rejects_the_whole_bundle() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    let before = current(&hub, &token).await;
    let good = put(observation("o1", "fine"));
    let cases = [
        (
            json!([good, { "request": { "method": "POST" }, "resource": observation("o2", "x") }]),
            "POST",
        ),
        (
            json!([good, put(observation("o1", "again"))]),
            "more than once",
        ),
        (
            json!([good, { "resource": observation("o2", "x") }]),
            "request.method",
        ),
        (
            json!([good, { "request": { "method": "DELETE" }, "fullUrl": "DiagnosticReport/r1" }]),
            "cannot be removed",
        ),
    ];
    for (entries, needle) in cases {
        let response = hub
            .publish(&token, &update(&hub, "r1", &v1, "b", entries))
            .await;
        assert!(response.status().is_client_error());
        let reason = response.text().await.unwrap();
        assert!(reason.contains(needle), "{reason}");
    }
    let mut not_transaction = update(&hub, "r1", &v1, "b", json!([]));
    not_transaction["event"]["context"][1]["resource"]["type"] = "batch".into();
    assert_eq!(hub.publish(&token, &not_transaction).await.status(), 400);
    sub.assert_quiet().await;
    assert_eq!(current(&hub, &token).await, before);
}

#[tokio::test]
async fn delete_by_full_url_and_status_change_only_in_content() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    let final_report = common::report("r1", "p1", "final");
    let add = update(
        &hub,
        "r1",
        &v1,
        "b1",
        json!([put(observation("o1", "a")), put(final_report.clone())]),
    );
    hub.publish(&token, &add).await;
    let v2 = sub.next().await["event"]["context.versionId"]
        .as_str()
        .unwrap()
        .to_owned();
    let delete = update(
        &hub,
        "r1",
        &v2,
        "b2",
        json!([{ "request": { "method": "DELETE" }, "fullUrl": "Observation/o1" }]),
    );
    assert_eq!(hub.publish(&token, &delete).await.status(), 202);
    sub.next().await;

    let body = current(&hub, &token).await;
    // The context is the original open's: the report is still preliminary there...
    assert_eq!(body["context"][0]["resource"]["status"], "preliminary");
    // ...and the changed report lives only in the content.
    let content = content_of(&body);
    let entries = content["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["resource"]["status"], "final");
}

#[tokio::test]
async fn close_discards_content_and_reopen_gets_a_new_version() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    hub.publish(
        &token,
        &update(&hub, "r1", &v1, "b1", json!([put(observation("o1", "a"))])),
    )
    .await;
    sub.next().await;
    let close = hub.event("DiagnosticReport-close", report_context("r1", "p1"));
    assert_eq!(hub.publish(&token, &close).await.status(), 202);
    sub.next().await;
    let again = open_report(&hub, &token, &mut sub).await;
    assert_ne!(again, v1);
    assert_eq!(content_of(&current(&hub, &token).await)["entry"], json!([]));
}

#[tokio::test]
async fn update_and_select_must_name_the_current_anchor() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, EVENTS).await;
    let v1 = open_report(&hub, &token, &mut sub).await;
    let other = update(&hub, "r2", &v1, "b", json!([put(observation("o1", "a"))]));
    assert_eq!(hub.publish(&token, &other).await.status(), 409);

    let select = |report: &str| {
        hub.event(
            "DiagnosticReport-select",
            json!([
                { "key": "report", "reference": { "reference": format!("DiagnosticReport/{report}") } },
                { "key": "select", "reference": { "reference": "Observation/o1" } },
            ]),
        )
    };
    assert_eq!(hub.publish(&token, &select("r2")).await.status(), 409);
    assert_eq!(hub.publish(&token, &select("r1")).await.status(), 202);
    let frame = sub.next().await;
    assert_eq!(frame["event"]["hub.event"], "DiagnosticReport-select");
    assert!(frame["event"].get("context.versionId").is_none());
    insta::assert_json_snapshot!(
        "select_notification",
        common::redacted(&frame, &[("hub.topic", "[topic]"), ("id", "[id]")])
    );
    // A select does not change the version.
    assert_eq!(current(&hub, &token).await["context.versionId"], v1);
}

#[tokio::test]
async fn late_joiner_reads_content_and_updates_from_its_version() {
    let hub = Hub::start().await;
    let dictation = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&dictation, EVENTS).await;
    let v1 = open_report(&hub, &dictation, &mut sub).await;
    hub.publish(
        &dictation,
        &update(&hub, "r1", &v1, "b1", json!([put(observation("o1", "a"))])),
    )
    .await;
    sub.next().await;

    let viewer = hub.token("app").await;
    let mut late = hub.subscriber_with_token(&viewer, EVENTS).await;
    let replayed = late.next().await;
    assert_eq!(replayed["event"]["hub.event"], "DiagnosticReport-open");
    let body = current(&hub, &viewer).await;
    let version = body["context.versionId"].as_str().unwrap();
    assert_eq!(content_of(&body)["entry"][0]["resource"]["id"], "o1");
    let from_late = update(
        &hub,
        "r1",
        version,
        "b2",
        json!([put(observation("o2", "b"))]),
    );
    assert_eq!(hub.publish(&viewer, &from_late).await.status(), 202);
}
