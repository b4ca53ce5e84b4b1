//! Requests for a context change (spec 2-6; checklist 70–79).

mod common;
use common::{Hub, patient_context};
use serde_json::json;

#[tokio::test]
async fn accepted_with_202_on_hub_url_and_on_hub_url_slash_topic() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    let first = hub.event("Patient-open", patient_context("p1", "1"));
    let response = hub.publish(&token, &first).await;
    assert_eq!(response.status(), 202);
    assert!(response.text().await.unwrap().is_empty());
    assert_eq!(sub.next().await["id"], first["id"]);

    let second = hub.event("Patient-open", patient_context("p2", "2"));
    let response = hub
        .http
        .post(format!("{}/{}", hub.hub_url, hub.topic))
        .bearer_auth(&token)
        .json(&second)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(sub.next().await["id"], second["id"]);
}

#[tokio::test]
async fn path_topic_must_match_the_event_topic() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    let response = hub
        .http
        .post(format!("{}/other-topic", hub.hub_url))
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("differs"));
    sub.assert_quiet().await;
}

#[tokio::test]
async fn json_and_fhir_json_content_types_are_accepted() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    for content_type in [
        "application/json",
        "application/fhir+json",
        "application/fhir+json; charset=utf-8",
        "application/json;charset=UTF-8",
    ] {
        let event = hub.event("Patient-open", patient_context("p1", "1"));
        let response = hub.post_raw(&token, content_type, event.to_string()).await;
        assert_eq!(response.status(), 202, "{content_type}");
    }
    let wrong = hub.post_raw(&token, "text/xml", "<x/>").await;
    assert_eq!(wrong.status(), 415);
}

#[tokio::test]
async fn missing_envelope_fields_get_4xx_naming_the_field() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    let full = hub.event("Patient-open", patient_context("p1", "1"));
    for (path, field) in [
        ("", "timestamp"),
        ("", "id"),
        ("", "event"),
        ("event", "hub.topic"),
        ("event", "hub.event"),
        ("event", "context"),
    ] {
        let mut body = full.clone();
        let target = if path.is_empty() {
            &mut body
        } else {
            &mut body[path]
        };
        target.as_object_mut().unwrap().remove(field);
        let response = hub.publish(&token, &body).await;
        assert_eq!(response.status(), 400, "without {field}");
        assert!(
            response.text().await.unwrap().contains(field),
            "reason should name {field}"
        );
    }
    sub.assert_quiet().await;
    assert_eq!(
        hub.current(&token)
            .await
            .json::<serde_json::Value>()
            .await
            .unwrap()["context.type"],
        ""
    );
}

#[tokio::test]
async fn profile_violations_are_refused_with_the_missing_field() {
    let hub = Hub::start().await;
    let mut sub = hub
        .subscriber("app", "Patient-open,ImagingStudy-open")
        .await;
    let token = hub.token("app").await;
    let no_identifier =
        json!([{ "key": "patient", "resource": { "resourceType": "Patient", "id": "p1" } }]);
    let response = hub
        .publish(&token, &hub.event("Patient-open", no_identifier))
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("identifier"));

    let mut study = common::study_context("s1", "p1");
    study[0]["resource"]
        .as_object_mut()
        .unwrap()
        .remove("status");
    let response = hub
        .publish(&token, &hub.event("ImagingStudy-open", study))
        .await;
    assert!(response.text().await.unwrap().contains("`status`"));

    // A study whose subject is another patient than the event's patient: refused, never relayed.
    let mismatched = common::study_context("s1", "p1");
    let mut mismatched = mismatched;
    mismatched[0]["resource"]["subject"]["reference"] = "Patient/p2".into();
    let response = hub
        .publish(&token, &hub.event("ImagingStudy-open", mismatched))
        .await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("two patients"));
    sub.assert_quiet().await;
}

#[tokio::test]
async fn unknown_topic_unknown_event_and_missing_write_scope_change_nothing() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;

    let foreign = common::event_on("no-such-topic", "Patient-open", patient_context("p1", "1"));
    let response = hub.publish(&token, &foreign).await;
    assert_eq!(response.status(), 404);

    let unknown = hub.event("heartbeat", json!([]));
    let response = hub.publish(&token, &unknown).await;
    assert_eq!(response.status(), 400);
    assert!(response.text().await.unwrap().contains("heartbeat"));

    let reader = hub.token("reader").await;
    let response = hub
        .publish(
            &reader,
            &hub.event("Patient-open", patient_context("p1", "1")),
        )
        .await;
    assert_eq!(response.status(), 403);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("fhircast/Patient-open.write")
    );

    sub.assert_quiet().await;
    let current: serde_json::Value = hub.current(&token).await.json().await.unwrap();
    assert_eq!(current["context.type"], "");
}

#[tokio::test]
async fn event_names_match_case_insensitively_and_go_out_canonical() {
    let hub = Hub::start().await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let token = hub.token("app").await;
    let response = hub
        .publish(
            &token,
            &hub.event("patient-OPEN", patient_context("p1", "1")),
        )
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(sub.next().await["event"]["hub.event"], "Patient-open");
}

#[tokio::test]
async fn home_open_logout_and_hibernate_are_relayed() {
    let hub = Hub::start().await;
    let mut sub = hub
        .subscriber("app", "Home-open,UserLogout,UserHibernate,Patient-open")
        .await;
    let token = hub.token("app").await;
    let reason = |code: &str| {
        json!([{ "key": "parameters", "resource": { "resourceType": "Parameters", "parameter": [{
            "name": "code",
            "valueCoding": { "system": "http://fhircast.hl7.org/CodeSystem/fhircast-codesystem", "code": code }
        }]}}])
    };
    hub.publish(
        &token,
        &hub.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    assert_eq!(sub.next().await["event"]["hub.event"], "Patient-open");
    for (event, context) in [
        ("Home-open", json!([])),
        ("UserHibernate", reason("system-timeout")),
        ("userLogout", reason("user-initiated")),
    ] {
        assert_eq!(
            hub.publish(&token, &hub.event(event, context.clone()))
                .await
                .status(),
            202,
            "{event}"
        );
        let frame = sub.next().await;
        assert!(
            frame["event"]["hub.event"]
                .as_str()
                .unwrap()
                .eq_ignore_ascii_case(event)
        );
        assert_eq!(frame["event"]["context"], context);
    }
    // After a logout the session's last patient is not handed to the next app that joins.
    let mut late = hub.subscriber("app", "Patient-open").await;
    late.assert_quiet().await;
}
