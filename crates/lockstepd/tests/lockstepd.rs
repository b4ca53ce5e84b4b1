//! `lockstepd` as a new user runs it: a real process, a config file, a real client end to end,
//! and a clean stop on SIGTERM.

mod common;
use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::io::Write;
use std::process::Command;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

const CONFIG: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "ris"
client_secret = "change-me"
scopes = ["fhircast/*.read", "fhircast/Patient-open.write"]
name = "Radiology worklist"
"#;

#[tokio::test]
async fn token_subscribe_publish_receive_and_get_context_end_to_end() {
    let daemon = Daemon::start_with_text(CONFIG);
    let http = reqwest::Client::new();

    let smart: Value = http
        .get(format!("{}/.well-known/smart-configuration", daemon.origin))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token: Value = http
        .post(smart["token_endpoint"].as_str().unwrap())
        .basic_auth("ris", Some("change-me"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let access = token["access_token"].as_str().unwrap();
    let hub_url = token["hub.url"].as_str().unwrap();
    let topic = token["hub.topic"].as_str().unwrap();

    let subscribed: Value = http
        .post(hub_url)
        .bearer_auth(access)
        .form(&[
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.events", "Patient-open"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (mut socket, _) =
        tokio_tungstenite::connect_async(subscribed["hub.channel.endpoint"].as_str().unwrap())
            .await
            .unwrap();
    let confirmation = next_json(&mut socket).await;
    assert_eq!(confirmation["hub.mode"], "subscribe");

    let context = json!([{ "key": "patient", "resource": {
        "resourceType": "Patient", "id": "p1", "identifier": [{ "system": "urn:mrn", "value": "12345" }],
        "name": [{ "family": "Doe", "given": ["Jane"] }]
    }}]);
    let event = json!({ "timestamp": "2026-11-26T10:00:00Z", "id": "e2e-1", "event": { "hub.topic": topic, "hub.event": "Patient-open", "context": context } });
    let published = http
        .post(hub_url)
        .bearer_auth(access)
        .json(&event)
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 202);

    let frame = next_json(&mut socket).await;
    assert_eq!(frame["id"], "e2e-1");
    assert_eq!(frame["event"]["context"], context);
    socket
        .send(Message::text(
            json!({ "id": "e2e-1", "status": 200 }).to_string(),
        ))
        .await
        .unwrap();

    let current: Value = http
        .get(format!("{hub_url}/{topic}"))
        .bearer_auth(access)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(current["context.type"], "Patient");
    // The open's context, then the (empty) content Bundle the hub adds.
    assert_eq!(current["context"][0], context[0]);
    assert_eq!(current["context"][1]["key"], "content");

    // The site-IT verbs against the same running hub.
    let verb = |args: &[&str]| daemon.verb("ris", "change-me", args);
    let context_out = verb(&["context"]);
    assert!(
        context_out.status.success(),
        "{}",
        String::from_utf8_lossy(&context_out.stderr)
    );
    let printed: Value = serde_json::from_slice(&context_out.stdout).unwrap();
    assert_eq!(printed["context.type"], "Patient");
    let refused = verb(&["send", "Patient-close", "--context", "[]"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("patient"));

    socket.close(None).await.unwrap();
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}");
}

async fn next_json<S>(socket: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        let message = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("a frame in time")
            .unwrap()
            .unwrap();
        if let Message::Text(text) = message {
            return serde_json::from_str(text.as_str()).unwrap();
        }
    }
}

#[test]
fn config_error_names_file_key_and_reason_and_exits_nonzero() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(b"[hub]\nport = \"high\"\n").unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .arg("--config")
        .arg(file.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&file.path().display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("hub.port"), "{stderr}");

    let missing = Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .args(["--config", "/nonexistent/lockstep.toml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

#[test]
fn check_config_prints_the_effective_config_without_secrets() {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(CONFIG.as_bytes()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .arg("--config")
        .arg(file.path())
        .args(["--set", "hub.ack_timeout_seconds=5", "check-config"])
        .output()
        .unwrap();
    assert!(output.status.success());
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ack_timeout_seconds = 5"), "{stdout}");
    assert!(!stdout.contains("change-me"));
}

#[test]
fn config_show_names_each_setting_s_origin() {
    let out = common::cli(
        "[hub]\nport = 5100\n",
        &[
            "--set",
            "history.retain_days=7",
            "config",
            "show",
            "--origin",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let line = |key: &str| {
        text.lines()
            .find(|l| l.starts_with(&format!("{key} = ")))
            .unwrap_or_else(|| panic!("no {key} in {text}"))
            .to_owned()
    };
    assert!(line("hub.port").contains("= 5100") && line("hub.port").contains("# file ("));
    assert!(line("history.retain_days").ends_with("# command line (--set history.retain_days=7)"));
    assert!(line("hub.ack_timeout_seconds").ends_with("# default"));
}

#[test]
fn port_in_use_is_a_clear_startup_error() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let config = CONFIG.replace("port = 0", &format!("port = {port}"));
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(config.as_bytes()).unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .arg("--config")
        .arg(file.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains(&format!("127.0.0.1:{port}")));
}
