//! A frozen agent (SIGSTOP, a stalled VM, a closed laptop lid) must not blame the apps that
//! answered while it was frozen: their acknowledgements wait in the socket, and are read before
//! any acknowledgement is declared missing.

mod common;
use common::Daemon;
use lockstep_agent::client::{HubClient, Subscription};
use serde_json::{Value, json};
use std::time::Duration;

const CONFIG: &str = r#"
[hub]
port = 0
ack_timeout_seconds = 1

[[apps]]
client_id = "ris"
client_secret = "change-me"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[[apps]]
client_id = "pacs"
client_secret = "change-me"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#;

async fn sign_in(daemon: &Daemon, client_id: &str) -> HubClient {
    HubClient::sign_in(&daemon.origin, client_id, "change-me", None)
        .await
        .unwrap()
}

fn patient(id: &str) -> Value {
    json!([{ "key": "patient", "resource": {
        "resourceType": "Patient", "id": id,
        "identifier": [{ "system": "urn:mrn", "value": format!("MRN-{id}") }],
    }}])
}

/// The next frame within `within`; `None` when nothing came. A close fails the test.
async fn next_frame(socket: &mut Subscription, within: Duration) -> Option<Value> {
    match tokio::time::timeout(within, socket.next_frame()).await {
        Err(_) => None,
        Ok(Ok(Some(frame))) => Some(frame),
        Ok(other) => panic!("the hub closed or broke the socket: {other:?}"),
    }
}

fn signal(daemon: &Daemon, name: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &daemon.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success(), "kill -{name}");
}

#[tokio::test]
async fn an_app_that_answered_while_the_agent_was_frozen_is_not_blamed() {
    let daemon = Daemon::start_with_text(CONFIG);
    let ris = sign_in(&daemon, "ris").await;
    let pacs = sign_in(&daemon, "pacs").await;
    let mut watcher = ris.subscribe("SyncError", None).await.unwrap();
    let mut viewer = pacs.subscribe("Patient-open", None).await.unwrap();

    let first = ris
        .publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    let frame = next_frame(&mut viewer, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(frame["id"], first.as_str());
    // The agent freezes; the viewer answers at once, and its answer waits in the socket for
    // longer than the acknowledgement deadline.
    signal(&daemon, "STOP");
    viewer.acknowledge(&first, 200).await.unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    signal(&daemon, "CONT");

    // No SyncError about the viewer, and it stays subscribed: the next change reaches it.
    let blamed = next_frame(&mut watcher, Duration::from_secs(3)).await;
    assert!(blamed.is_none(), "a SyncError was sent: {blamed:?}");
    let second = ris
        .publish("Patient-open", patient("p2"), None)
        .await
        .unwrap();
    let frame = next_frame(&mut viewer, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(frame["id"], second.as_str());

    // An app that really does not answer is still blamed, after the same deadline.
    let blamed = next_frame(&mut watcher, Duration::from_secs(5)).await;
    let blamed = blamed.expect("a SyncError about the silent viewer");
    assert_eq!(blamed["event"]["hub.event"], "SyncError");
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}");
}
