//! Discovery (spec 2-7, checklist 1–9) and the SMART configuration of the local authorization server.

mod common;
use common::Hub;
use serde_json::Value;

#[tokio::test]
async fn well_known_fhircast_configuration_is_appended_to_hub_url() {
    let hub = Hub::start().await;
    // hub.url has a path (/fhircast): the document is at {hub.url}/.well-known/..., not at the root.
    assert!(hub.hub_url.ends_with("/fhircast"));
    let response = hub
        .http
        .get(format!(
            "{}/.well-known/fhircast-configuration",
            hub.hub_url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let doc: Value = response.json().await.unwrap();

    let events: Vec<&str> = doc["eventsSupported"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e.as_str().unwrap())
        .collect();
    for required in [
        "Patient-open",
        "Patient-close",
        "ImagingStudy-open",
        "DiagnosticReport-update",
        "SyncError",
        "UserLogout",
        "Home-open",
    ] {
        assert!(
            events.contains(&required),
            "{required} missing from {events:?}"
        );
    }
    assert_eq!(doc["websocketSupport"], true);
    assert_eq!(doc["fhircastVersion"], "3.0.0");
    assert_eq!(doc["getCurrentSupport"], true);
    assert_eq!(doc["capabilities"]["supportsGetCurrentContext"], true);
    assert_eq!(
        doc["capabilities"]["supportsNonCurrentContextUpdates"],
        false
    );
    assert!(
        ["DSTU1", "DSTU2", "STU3", "R4", "R4B", "R5"]
            .contains(&doc["fhirVersion"].as_str().unwrap())
    );
    assert!(doc.get("webhookSupport").is_none());
}

#[tokio::test]
async fn discovery_needs_no_token_but_the_root_has_no_fhircast_document() {
    let hub = Hub::start().await;
    let root = hub
        .http
        .get(format!("{}/.well-known/fhircast-configuration", hub.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(root.status(), 404);
    assert!(!root.text().await.unwrap().is_empty());
}

#[tokio::test]
async fn smart_configuration_names_the_token_endpoint() {
    let hub = Hub::start().await;
    let response = hub
        .http
        .get(format!("{}/.well-known/smart-configuration", hub.origin))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let doc: Value = response.json().await.unwrap();
    assert_eq!(doc["token_endpoint"], format!("{}/auth/token", hub.origin));
    assert_eq!(
        doc["grant_types_supported"],
        serde_json::json!(["client_credentials", "authorization_code", "refresh_token"])
    );
    assert_eq!(
        doc["authorization_endpoint"],
        format!("{}/auth/authorize", hub.origin)
    );
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let methods = doc["token_endpoint_auth_methods_supported"]
        .as_array()
        .unwrap();
    assert!(
        methods.contains(&"client_secret_basic".into())
            && methods.contains(&"client_secret_post".into())
    );
    assert!(
        doc["scopes_supported"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
}
