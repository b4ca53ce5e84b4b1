//! A SMART app launched into the session (EHR launch): the launch bridge opens the app's URL
//! with `iss` and `launch`; the app (played by the test, over real HTTP) signs in with the
//! authorization code and PKCE, naming the launch, and its token response carries `hub.url`,
//! `hub.topic` and the launched context.

mod common;
use lockstep_agent::client::HubClient;
use lockstep_agent::{Config, ConfigSources};
use lockstep_hub::grants::s256;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const REDIRECT: &str = "http://127.0.0.1:9/app/callback";
const VERIFIER: &str = "a-verifier-the-app-keeps-0123456789-abcdefghijkl";

/// The app's launch endpoint: records each request's query.
async fn app_server() -> (u16, tokio::sync::mpsc::Receiver<String>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let mut buffer = vec![0u8; 8192];
            let n = socket.read(&mut buffer).await.unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]).to_string();
            let target = request.split_whitespace().nth(1).unwrap_or_default();
            let query = target.split_once('?').map(|(_, q)| q).unwrap_or_default();
            let _ = tx.send(query.to_owned()).await;
            let _ = socket
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        }
    });
    (port, rx)
}

fn config(data: &tempfile::TempDir, app_port: u16) -> Config {
    let text = format!(
        r#"
[hub]
port = 0

[history]
database = "{}"

[[apps]]
client_id = "ris"
client_secret = "ris-secret-123"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[[apps]]
client_id = "viewer-app"
name = "SMART viewer"
redirect_uris = ["{REDIRECT}"]
scopes = ["fhircast/*.read"]

[[bridges.launch]]
name = "SMART viewer"
events = ["ImagingStudy-open"]
url = "http://127.0.0.1:{app_port}/launch?iss={{smart.iss}}&launch={{smart.launch}}"
allowed_schemes = ["http"]
allowed_hosts = ["127.0.0.1"]
fetch = true
debounce_ms = 0
"#,
        data.path().join("lockstep.db").display()
    );
    let file = data.path().join("config.toml");
    std::fs::write(&file, text).unwrap();
    Config::load_from(&ConfigSources {
        files: vec![(file, true)],
        ..Default::default()
    })
    .unwrap()
}

fn query(text: &str) -> std::collections::HashMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

#[tokio::test]
async fn an_ehr_launch_hands_the_app_the_session_and_the_launched_study() {
    let data = tempfile::tempdir().unwrap();
    let (app_port, mut launches) = app_server().await;
    let agent = common::start(config(&data, app_port)).await;
    let origin = common::origin(&agent);

    let ris = HubClient::sign_in(&origin, "ris", "ris-secret-123", None)
        .await
        .unwrap();
    let study = json!([
        { "key": "patient", "resource": { "resourceType": "Patient", "id": "p1",
            "identifier": [{ "system": "urn:mrn", "value": "MRN-1" }] } },
        { "key": "study", "resource": { "resourceType": "ImagingStudy", "id": "s1", "status": "available",
            "subject": { "reference": "Patient/p1" },
            "identifier": [{ "system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4" }] } },
    ]);
    ris.publish("ImagingStudy-open", study, None).await.unwrap();

    // The bridge launches the app with this server as `iss` and a launch id.
    let launched = tokio::time::timeout(Duration::from_secs(10), launches.recv())
        .await
        .expect("the app was launched")
        .unwrap();
    let launched = query(&launched);
    assert_eq!(launched["iss"], origin);
    let launch = launched["launch"].clone();

    // The app discovers the authorization server from `iss` and signs in, naming the launch.
    let smart: Value = reqwest::get(format!("{origin}/.well-known/smart-configuration"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let challenge = s256(VERIFIER);
    let authorized = browser
        .get(smart["authorization_endpoint"].as_str().unwrap())
        .query(&[
            ("response_type", "code"),
            ("client_id", "viewer-app"),
            ("redirect_uri", REDIRECT),
            ("scope", "launch openid fhircast/*.read"),
            ("state", "s"),
            ("aud", origin.as_str()),
            ("launch", launch.as_str()),
            ("code_challenge", challenge.as_str()),
            ("code_challenge_method", "S256"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(authorized.status(), 302);
    let location = authorized.headers()["location"]
        .to_str()
        .unwrap()
        .to_owned();
    let code = query(location.split_once('?').unwrap().1)["code"].clone();
    let token: Value = reqwest::Client::new()
        .post(smart["token_endpoint"].as_str().unwrap())
        .form(&[
            ("grant_type", "authorization_code"),
            ("client_id", "viewer-app"),
            ("code", code.as_str()),
            ("redirect_uri", REDIRECT),
            ("code_verifier", VERIFIER),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["hub.url"], agent.hub_url(), "{token}");
    assert_eq!(token["hub.topic"], agent.topic());
    assert_eq!(token["patient"], "p1");
    assert_eq!(token["fhirContext"][0]["reference"], "ImagingStudy/s1");
    agent.shutdown().await;
}
