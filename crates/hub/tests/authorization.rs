//! The local SMART authorization server: client_credentials tokens carrying `hub.url` and
//! `hub.topic` (spec 2-1), and bearer tokens on every hub request.

mod common;
use common::{Hub, SECRET};
use serde_json::Value;

#[tokio::test]
async fn client_secret_basic_returns_token_with_launch_parameters() {
    let hub = Hub::start().await;
    let response = hub.token_response("app", None).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let body: Value = response.json().await.unwrap();
    assert!(body["access_token"].as_str().unwrap().len() >= 43);
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["scope"], "fhircast/*.read fhircast/*.write");
    assert_eq!(body["hub.url"], hub.hub_url);
    assert_eq!(body["hub.topic"], hub.topic);
    // OHIF reads `topic`.
    assert_eq!(body["topic"], hub.topic);
}

#[tokio::test]
async fn client_secret_post_and_scope_narrowing() {
    let hub = Hub::start().await;
    let response = hub
        .http
        .post(format!("{}/auth/token", hub.origin))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", SECRET),
            ("scope", "fhircast/Patient-open.read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["scope"], "fhircast/Patient-open.read");

    // A scope the client is not registered for is never granted.
    let refused = hub
        .token_response("reader", Some("fhircast/Patient-open.write"))
        .await;
    assert_eq!(refused.status(), 400);
    assert_eq!(
        refused.json::<Value>().await.unwrap()["error"],
        "invalid_scope"
    );
}

#[tokio::test]
async fn wrong_credentials_get_401_with_an_oauth_error() {
    let hub = Hub::start().await;
    for (id, secret) in [("app", "wrong-secret"), ("nobody", SECRET), ("", "")] {
        let response = hub
            .http
            .post(format!("{}/auth/token", hub.origin))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 401, "{id}");
        assert!(response.headers().contains_key("www-authenticate"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "invalid_client");
    }
    // The hub still serves an honest client afterwards.
    hub.token("app").await;
}

#[tokio::test]
async fn malformed_token_requests_are_refused() {
    let hub = Hub::start().await;
    let post = |form: Vec<(&'static str, &'static str)>| {
        hub.http
            .post(format!("{}/auth/token", hub.origin))
            .basic_auth("app", Some(SECRET))
            .form(&form)
            .send()
    };
    let wrong_grant = post(vec![("grant_type", "password")]).await.unwrap();
    assert_eq!(wrong_grant.status(), 400);
    assert_eq!(
        wrong_grant.json::<Value>().await.unwrap()["error"],
        "unsupported_grant_type"
    );
    let missing = post(vec![]).await.unwrap();
    assert_eq!(
        missing.json::<Value>().await.unwrap()["error"],
        "invalid_request"
    );
    let repeated = post(vec![
        ("grant_type", "client_credentials"),
        ("grant_type", "client_credentials"),
    ])
    .await
    .unwrap();
    assert_eq!(repeated.status(), 400);
    // Two client authentication methods at once (RFC 6749 §2.3).
    let both = post(vec![
        ("grant_type", "client_credentials"),
        ("client_secret", SECRET),
    ])
    .await
    .unwrap();
    assert_eq!(both.status(), 400);
}

#[tokio::test]
async fn every_hub_request_needs_a_valid_bearer_token() {
    let hub = Hub::start().await;
    let event = hub.event("Patient-open", common::patient_context("p1", "1"));
    let requests = [
        hub.http.post(&hub.hub_url).json(&event),
        hub.http
            .post(&hub.hub_url)
            .bearer_auth("forged")
            .json(&event),
        hub.http
            .post(&hub.hub_url)
            .header("authorization", "Basic abc")
            .json(&event),
        hub.http.get(format!("{}/{}", hub.hub_url, hub.topic)),
        hub.http
            .get(format!("{}/{}", hub.hub_url, hub.topic))
            .bearer_auth("forged"),
        hub.http
            .post(&hub.hub_url)
            .form(&[("hub.mode", "subscribe")]),
    ];
    for request in requests {
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 401);
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        assert!(!response.text().await.unwrap().is_empty());
    }
    let token = hub.token("app").await;
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
}
