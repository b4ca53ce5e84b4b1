//! Dialects of real clients: the /api/hub alias, CORS for configured origins only, the STU2
//! shape of Get Current Context on request.

mod common;
use common::{Hub, Subscriber, patient_context};
use lockstep_hub::HubSettings;
use serde_json::Value;

#[tokio::test]
async fn api_hub_alias_serves_subscribe_publish_discovery_and_context() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let alias = format!("{}/api/hub", hub.origin);
    let config = hub
        .http
        .get(format!("{alias}/.well-known/fhircast-configuration"))
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    // OHIF subscribes form-encoded at /api/hub.
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", hub.topic.as_str()),
        ("hub.events", "Patient-open"),
    ];
    let response = hub
        .http
        .post(&alias)
        .bearer_auth(&token)
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let endpoint: Value = response.json().await.unwrap();
    let mut sub = Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
        .await
        .unwrap();
    sub.next().await;
    // sandbox.js-style clients post JSON there.
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    let response = hub
        .http
        .post(&alias)
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(sub.next().await["id"], event["id"]);
    let current: Value = hub
        .http
        .get(format!("{alias}/{}", hub.topic))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["context.type"], "Patient");
}

#[tokio::test]
async fn cors_and_origins_only_for_configured_web_apps() {
    let settings = HubSettings {
        allowed_origins: vec!["http://localhost:3000".into()],
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let token = hub.token("app").await;
    let preflight = |origin: &'static str| {
        hub.http
            .request(reqwest::Method::OPTIONS, &hub.hub_url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let allowed = preflight("http://localhost:3000").await.unwrap();
    assert!(allowed.status().is_success());
    assert_eq!(
        allowed.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );

    let foreign = preflight("https://evil.example").await.unwrap();
    assert_eq!(foreign.status(), 403);
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    let event = hub.event("Patient-open", patient_context("p1", "1"));
    let cross_site = hub
        .http
        .post(&hub.hub_url)
        .header("origin", "https://evil.example")
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(cross_site.status(), 403);
    let from_app = hub
        .http
        .post(&hub.hub_url)
        .header("origin", "http://localhost:3000")
        .bearer_auth(&token)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(from_app.status(), 202);
    assert_eq!(
        from_app.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

#[tokio::test]
async fn websocket_upgrade_from_a_foreign_origin_is_refused() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let response = hub.subscribe(&token, "Patient-open").await;
    let endpoint: Value = response.json().await.unwrap();
    let mut request = endpoint["hub.channel.endpoint"]
        .as_str()
        .unwrap()
        .into_client_request()
        .unwrap();
    request
        .headers_mut()
        .insert("origin", "https://evil.example".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(request).await.is_err());
    // The endpoint was not consumed by the refused attempt.
    assert!(
        Subscriber::connect(endpoint["hub.channel.endpoint"].as_str().unwrap())
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn stu2_bare_array_only_when_enabled() {
    let off = Hub::start().await;
    let token = off.token("app").await;
    let body: Value = off
        .http
        .get(format!("{}/api/hub/{}", off.origin, off.topic))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.is_object(), "STU3 shape by default");

    let on = Hub::start_with(HubSettings {
        stu2_compat: true,
        ..Default::default()
    })
    .await;
    let token = on.token("app").await;
    on.publish(
        &token,
        &on.event("Patient-open", patient_context("p1", "1")),
    )
    .await;
    let body: Value = on
        .http
        .get(format!("{}/api/hub/{}", on.origin, on.topic))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(body.is_array());
    assert_eq!(body[0]["resource"]["id"], "p1");
    // The STU3 path keeps the STU3 shape.
    let stu3: Value = on.current(&token).await.json().await.unwrap();
    assert_eq!(stu3["context.type"], "Patient");
}

#[tokio::test]
async fn a_trailing_slash_on_the_hub_url_and_the_alias_answers_the_same() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    for url in [
        format!("{}/", hub.hub_url),
        format!("{}/api/hub/", hub.origin),
    ] {
        let response = hub
            .http
            .post(&url)
            .bearer_auth(&token)
            .form(&[
                ("hub.channel.type", "websocket"),
                ("hub.mode", "subscribe"),
                ("hub.topic", hub.topic.as_str()),
                ("hub.events", "Patient-open"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{url}");
        let event = hub.event("Patient-open", patient_context("p1", "1"));
        let response = hub
            .http
            .post(&url)
            .bearer_auth(&token)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 202, "{url}");
    }
}
