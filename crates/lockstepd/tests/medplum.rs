//! A third-party FHIRcast client, unmodified: `@medplum/core` from npm (pinned in
//! `tests/clients/medplum`), run by Node against `lockstepd` through token, subscribe, receive,
//! publish, get current context, content sharing and unsubscribe, while a second app follows.

mod common;
use common::Daemon;
use lockstep_agent::client::HubClient;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const CONFIG: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "medplum"
client_secret = "medplum-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "Medplum client"

[[apps]]
client_id = "observer"
client_secret = "observer-secret"
scopes = ["fhircast/*.read"]
name = "Observer"
"#;

const STEPS: [&str; 7] = [
    "token",
    "subscribe",
    "publish",
    "receive",
    "current context",
    "content sharing",
    "unsubscribe",
];

fn client_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/clients/medplum")
}

/// `node` with what this version needs for the client's WebSocket (global from Node 22 on).
fn node() -> Command {
    let version = Command::new("node")
        .arg("--version")
        .output()
        .expect("node is installed (scripts/install-deps)");
    let version = String::from_utf8_lossy(&version.stdout);
    let major: u32 = version
        .trim()
        .trim_start_matches('v')
        .split('.')
        .next()
        .and_then(|m| m.parse().ok())
        .unwrap_or_else(|| panic!("unexpected `node --version`: {version}"));
    let mut node = Command::new("node");
    if major < 22 {
        node.arg("--experimental-websocket");
    }
    node
}

#[tokio::test]
async fn medplum_core_runs_every_step_against_lockstepd() {
    assert!(
        client_dir().join("node_modules/@medplum/core").is_dir(),
        "@medplum/core is not installed: run scripts/install-deps"
    );
    let daemon = Daemon::start_with_text(CONFIG);
    let observer = HubClient::sign_in(&daemon.origin, "observer", "observer-secret", None)
        .await
        .unwrap();
    let mut following = observer
        .subscribe("Patient-open,DiagnosticReport-update", Some("Observer"))
        .await
        .unwrap();
    let seen = tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Ok(Some(frame)) = following.next_frame().await {
            let id = frame["id"].as_str().unwrap_or_default().to_owned();
            following.acknowledge(&id, 200).await.unwrap();
            let done = frame["event"]["hub.event"] == "DiagnosticReport-update";
            seen.push(frame);
            if done {
                break;
            }
        }
        seen
    });

    let mut client = node();
    client
        .current_dir(client_dir())
        .arg("client.mjs")
        .env("LOCKSTEP_ORIGIN", &daemon.origin)
        .env("LOCKSTEP_TOPIC", &observer.topic)
        .env("LOCKSTEP_CLIENT_ID", "medplum")
        .env("LOCKSTEP_CLIENT_SECRET", "medplum-secret");
    let output = tokio::task::spawn_blocking(move || client.output().unwrap())
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "the client failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let passed: Vec<String> = stdout
        .lines()
        .map(|line| serde_json::from_str::<Value>(line).unwrap()["step"].to_string())
        .map(|step| step.trim_matches('"').to_owned())
        .collect();
    assert_eq!(passed, STEPS);

    // What the Medplum client published reached the other app, as it sent it.
    let seen = tokio::time::timeout(std::time::Duration::from_secs(5), seen)
        .await
        .expect("the observer saw the update")
        .unwrap();
    let events: Vec<&Value> = seen.iter().map(|f| &f["event"]["hub.event"]).collect();
    // The second Patient-open is the one the report's open implies (the observer does not
    // follow DiagnosticReport-open itself).
    assert_eq!(
        events,
        ["Patient-open", "Patient-open", "DiagnosticReport-update"]
    );
    assert_eq!(
        seen[0]["event"]["context"][0]["resource"]["id"],
        "medplum-patient"
    );
    let updates = seen[2]["event"]["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["key"] == "updates")
        .unwrap();
    assert_eq!(
        updates["resource"]["entry"][0]["resource"]["id"],
        "medplum-finding"
    );
    daemon.terminate();
}
