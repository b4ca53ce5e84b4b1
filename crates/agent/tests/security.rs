//! The agent's share of the hub's security: secrets kept out of the config file, the config
//! file written owner-only, and where the hub listens (loopback, or TLS beyond it). Each test
//! shows the refusal and then an agent that serves an honest app.

use lockstep_agent::secrets::{MemoryStore, SecretStore};
use lockstep_agent::{Agent, AgentError, AppConfig, Config};
use serde_json::Value;
use std::sync::Arc;

const SECRET: &str = "a-secret-kept-in-the-keyring";

fn config(data: &tempfile::TempDir) -> Config {
    let mut config = Config::default();
    config.hub.port = 0;
    config.history.database = Some(data.path().join("lockstep.db"));
    config.apps = vec![AppConfig {
        client_id: "ris".into(),
        client_secret: None,
        client_secret_key: Some("lockstep-ris".into()),
        scopes: vec!["fhircast/*.read".into()],
        name: None,
        acknowledges: true,
        redirect_uris: Vec::new(),
    }];
    config
}

/// A token from the agent's hub, as an app gets one.
async fn token(http: &reqwest::Client, origin: &str, secret: &str) -> reqwest::Response {
    http.post(format!("{origin}/auth/token"))
        .basic_auth("ris", Some(secret))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn client_secrets_can_live_in_the_keyring_instead_of_the_file() {
    let data = tempfile::tempdir().unwrap();
    let config = config(&data);
    // The config names the secret; it does not hold it.
    assert!(!config.to_redacted_toml().contains(SECRET));

    // No such entry in the keyring: the agent refuses to start rather than run without it.
    let empty = Arc::new(MemoryStore::default());
    match Agent::start_with(config.clone(), empty).await {
        Err(AgentError::MissingSecret { client_id, key }) => {
            assert_eq!((client_id.as_str(), key.as_str()), ("ris", "lockstep-ris"));
        }
        other => panic!("expected a missing secret, got {:?}", other.map(|_| ())),
    }

    let store = Arc::new(MemoryStore::default());
    store.set("lockstep-ris", SECRET).unwrap();
    let agent = Agent::start_with(config, store).await.unwrap();
    let origin = format!("http://127.0.0.1:{}", agent.port());
    let http = reqwest::Client::new();
    assert_eq!(token(&http, &origin, "not-the-secret").await.status(), 401);
    let response = token(&http, &origin, SECRET).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["hub.url"], agent.hub_url());
    agent.shutdown().await;
}

#[cfg(unix)]
#[test]
fn the_config_file_is_written_owner_only_even_over_a_readable_one() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.toml");
    std::fs::write(&path, "[hub]\nport = 4980\n").unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut table = lockstep_agent::config::read_user_file(&path).unwrap();
    let app: toml::Table = toml::from_str(
        "client_id = \"ris\"\nclient_secret = \"change-me-now\"\nscopes = [\"fhircast/*.read\"]",
    )
    .unwrap();
    table.insert("apps".into(), toml::Value::Array(vec![app.into()]));
    lockstep_agent::config::write_user_file(&path, &table).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "a file holding client secrets is {mode:o}");
    // No readable temporary file is left beside it.
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o077;
        assert_eq!(mode, 0, "{} is readable by others", entry.path().display());
    }
    // And it is still a configuration that loads.
    let reread = lockstep_agent::config::read_user_file(&path).unwrap();
    assert_eq!(reread["apps"][0]["client_id"].as_str(), Some("ris"));
}

#[tokio::test]
async fn the_agent_refuses_to_listen_beyond_loopback_without_tls() {
    let data = tempfile::tempdir().unwrap();
    let store = Arc::new(MemoryStore::default());
    store.set("lockstep-ris", SECRET).unwrap();
    for address in ["0.0.0.0", "::"] {
        let mut open = config(&data);
        open.hub.bind_addresses = vec![address.parse().unwrap()];
        // Agent::start_with takes a Config that may never have been validated: it checks again.
        let err = match Agent::start_with(open, store.clone()).await {
            Err(err) => err,
            Ok(_) => panic!("the agent listened on {address} without TLS"),
        };
        assert!(err.to_string().contains("requires TLS"), "{err}");
    }
    // On loopback (the default) it starts and serves.
    let agent = Agent::start_with(config(&data), store).await.unwrap();
    let origin = format!("http://127.0.0.1:{}", agent.port());
    let response = token(&reqwest::Client::new(), &origin, SECRET).await;
    assert_eq!(response.status(), 200);
    agent.shutdown().await;
}

#[tokio::test]
async fn with_a_certificate_the_agent_serves_https_and_hands_out_https_urls() {
    let data = tempfile::tempdir().unwrap();
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (data.path().join("hub.pem"), data.path().join("hub.key"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();

    let store = Arc::new(MemoryStore::default());
    store.set("lockstep-ris", SECRET).unwrap();
    // A certificate path that does not exist stops the start, naming the setting.
    let mut broken = config(&data);
    broken.hub.tls_cert_file = Some(data.path().join("missing.pem"));
    broken.hub.tls_key_file = Some(key.clone());
    let err = match Agent::start_with(broken, store.clone()).await {
        Err(err) => err,
        Ok(_) => panic!("the agent started without its certificate"),
    };
    assert!(err.to_string().contains("hub.tls_cert_file"), "{err}");

    let mut config = config(&data);
    config.hub.tls_cert_file = Some(cert);
    config.hub.tls_key_file = Some(key);
    let agent = Agent::start_with(config, store).await.unwrap();
    assert!(
        agent.hub_url().starts_with("https://127.0.0.1:"),
        "{}",
        agent.hub_url()
    );
    let http = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(certified.cert.pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let origin = format!("https://127.0.0.1:{}", agent.port());
    let response = token(&http, &origin, SECRET).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["hub.url"], agent.hub_url());
    // Plain http on the same port is not served.
    let plain = format!("http://127.0.0.1:{}", agent.port());
    assert!(
        reqwest::Client::new()
            .get(format!("{plain}/.well-known/smart-configuration"))
            .send()
            .await
            .is_err()
    );
    agent.shutdown().await;
}
