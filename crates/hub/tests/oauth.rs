//! The local authorization server's authorization code grant with PKCE and its refresh
//! tokens, over real HTTP: what a SMART app (or a Lockstep following this hub) meets.

mod common;
use common::{Hub, SMART_REDIRECT};
use lockstep_hub::grants::{LaunchContext, s256};
use serde_json::Value;

const VERIFIER: &str = "the-app-s-own-verifier-0123456789-abcdefghijklmnop";

/// A client that does not follow redirects: the test reads the Location itself.
fn browser() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn authorize(hub: &Hub, params: &[(&str, &str)]) -> reqwest::Response {
    browser()
        .get(format!("{}/auth/authorize", hub.origin))
        .query(params)
        .send()
        .await
        .unwrap()
}

/// The redirect's query, as the app's callback would read it.
fn redirected(response: &reqwest::Response) -> std::collections::HashMap<String, String> {
    assert_eq!(response.status(), 302);
    let location = response.headers()["location"].to_str().unwrap();
    assert!(location.starts_with(SMART_REDIRECT), "{location}");
    let url = reqwest::Url::parse(location).unwrap();
    url.query_pairs().into_owned().collect()
}

fn sign_in_params<'a>(challenge: &'a str, launch: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut params = vec![
        ("response_type", "code"),
        ("client_id", "smart-viewer"),
        ("redirect_uri", SMART_REDIRECT),
        ("scope", "openid launch fhircast/*.read"),
        ("state", "xyz-state"),
        ("code_challenge", challenge),
        ("code_challenge_method", "S256"),
    ];
    if let Some(launch) = launch {
        params.push(("launch", launch));
    }
    params
}

async fn exchange(hub: &Hub, form: &[(&str, &str)]) -> (u16, Value) {
    let response = hub
        .http
        .post(format!("{}/auth/token", hub.origin))
        .form(form)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

async fn code_for(hub: &Hub, launch: Option<&str>) -> String {
    let challenge = s256(VERIFIER);
    let answer = redirected(&authorize(hub, &sign_in_params(&challenge, launch)).await);
    assert_eq!(answer["state"], "xyz-state");
    answer["code"].clone()
}

fn code_form<'a>(code: &'a str, verifier: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("grant_type", "authorization_code"),
        ("client_id", "smart-viewer"),
        ("code", code),
        ("redirect_uri", SMART_REDIRECT),
        ("code_verifier", verifier),
    ]
}

#[tokio::test]
async fn a_public_app_signs_in_with_pkce_and_refreshes() {
    let hub = Hub::start().await;
    let code = code_for(&hub, None).await;
    let (status, token) = exchange(&hub, &code_form(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["hub.url"], hub.hub_url.as_str());
    assert_eq!(token["hub.topic"], hub.topic.as_str());
    assert_eq!(token["scope"], "fhircast/*.read");
    let access = token["access_token"].as_str().unwrap().to_owned();
    assert_eq!(hub.current(&access).await.status(), 200);

    // The refresh token gives a new access token, once; the old refresh token is spent.
    let refresh = token["refresh_token"].as_str().unwrap().to_owned();
    let refresh_form = [
        ("grant_type", "refresh_token"),
        ("client_id", "smart-viewer"),
        ("refresh_token", refresh.as_str()),
    ];
    let (status, renewed) = exchange(&hub, &refresh_form).await;
    assert_eq!(status, 200, "{renewed}");
    assert_ne!(renewed["access_token"], token["access_token"]);
    assert_eq!(renewed["scope"], "fhircast/*.read");
    let (status, spent) = exchange(&hub, &refresh_form).await;
    assert_eq!(
        (status, spent["error"].as_str()),
        (400, Some("invalid_grant"))
    );
}

#[tokio::test]
async fn a_code_needs_its_verifier_and_a_second_use_revokes_the_first() {
    let hub = Hub::start().await;
    let code = code_for(&hub, None).await;
    let (status, wrong) = exchange(
        &hub,
        &code_form(&code, "another-verifier-0123456789-abcdefghijklmnopq"),
    )
    .await;
    assert_eq!(
        (status, wrong["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    let (status, token) = exchange(&hub, &code_form(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{token}");
    let access = token["access_token"].as_str().unwrap().to_owned();
    // Replayed (someone else had the code): refused, and the first exchange's token dies.
    let (status, replay) = exchange(&hub, &code_form(&code, VERIFIER)).await;
    assert_eq!(
        (status, replay["error"].as_str()),
        (400, Some("invalid_grant"))
    );
    assert_eq!(hub.current(&access).await.status(), 401);
}

#[tokio::test]
async fn redirects_go_only_where_the_app_registered_and_refusals_say_why() {
    let hub = Hub::start().await;
    let challenge = s256(VERIFIER);
    // An unregistered redirect URI is answered here, never redirected to.
    let mut params = sign_in_params(&challenge, None);
    params[2] = ("redirect_uri", "http://127.0.0.1:9/elsewhere");
    let response = authorize(&hub, &params).await;
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    // An unknown client likewise.
    let mut params = sign_in_params(&challenge, None);
    params[1] = ("client_id", "nobody");
    assert_eq!(authorize(&hub, &params).await.status(), 400);
    // Without PKCE, or with `plain`: back to the app with the error and its state.
    let mut params = sign_in_params(&challenge, None);
    params[6] = ("code_challenge_method", "plain");
    let answer = redirected(&authorize(&hub, &params).await);
    assert_eq!(answer["error"], "invalid_request");
    assert_eq!(answer["state"], "xyz-state");
    assert!(!answer.contains_key("code"));
    // A public client cannot use client_credentials with an empty secret.
    let (status, refused) = exchange(
        &hub,
        &[
            ("grant_type", "client_credentials"),
            ("client_id", "smart-viewer"),
            ("client_secret", ""),
        ],
    )
    .await;
    assert_eq!(
        (status, refused["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

#[tokio::test]
async fn an_ehr_launch_hands_the_app_its_context() {
    let hub = Hub::start().await;
    let launch = hub.authority().grants().new_launch(LaunchContext {
        patient: Some("p1".into()),
        fhir_context: vec!["ImagingStudy/s1".into()],
    });
    let code = code_for(&hub, Some(&launch)).await;
    let (status, token) = exchange(&hub, &code_form(&code, VERIFIER)).await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["patient"], "p1");
    assert_eq!(token["fhirContext"][0]["reference"], "ImagingStudy/s1");
    // An unknown launch is refused back to the app.
    let challenge = s256(VERIFIER);
    let answer = redirected(&authorize(&hub, &sign_in_params(&challenge, Some("forged"))).await);
    assert_eq!(answer["error"], "invalid_request");
}
