//! A frozen agent (SIGSTOP, a stalled VM, a closed laptop lid) must not blame the apps that
//! answered while it was frozen: their acknowledgements wait in the socket, and are read before
//! any acknowledgement is declared missing.

mod common;
use common::Daemon;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

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

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

struct App {
    http: reqwest::Client,
    access: String,
    hub_url: String,
    topic: String,
}

impl App {
    async fn sign_in(daemon: &Daemon, client_id: &str) -> App {
        let http = reqwest::Client::new();
        let token: Value = http
            .post(format!("{}/auth/token", daemon.origin))
            .basic_auth(client_id, Some("change-me"))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let field = |k: &str| token[k].as_str().unwrap().to_owned();
        App {
            access: field("access_token"),
            hub_url: field("hub.url"),
            topic: field("hub.topic"),
            http,
        }
    }

    async fn subscribe(&self, events: &str) -> Socket {
        let subscribed: Value = self
            .http
            .post(&self.hub_url)
            .bearer_auth(&self.access)
            .form(&[
                ("hub.channel.type", "websocket"),
                ("hub.mode", "subscribe"),
                ("hub.topic", self.topic.as_str()),
                ("hub.events", events),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let endpoint = subscribed["hub.channel.endpoint"].as_str().unwrap();
        let (mut socket, _) = tokio_tungstenite::connect_async(endpoint).await.unwrap();
        let confirmation = next_frame(&mut socket, Duration::from_secs(5)).await;
        assert_eq!(confirmation.unwrap()["hub.mode"], "subscribe");
        socket
    }

    async fn open_patient(&self, id: &str, event_id: &str) {
        let context = json!([{ "key": "patient", "resource": {
            "resourceType": "Patient", "id": id,
            "identifier": [{ "system": "urn:mrn", "value": format!("MRN-{id}") }],
        }}]);
        let event = json!({
            "timestamp": "2026-12-01T10:00:00Z", "id": event_id,
            "event": { "hub.topic": self.topic, "hub.event": "Patient-open", "context": context },
        });
        let published = self
            .http
            .post(&self.hub_url)
            .bearer_auth(&self.access)
            .json(&event)
            .send()
            .await
            .unwrap();
        assert_eq!(published.status(), 202);
    }
}

/// The next text frame within `within`; `None` when nothing came. A close fails the test.
async fn next_frame(socket: &mut Socket, within: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, socket.next()).await {
            Err(_) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).unwrap());
            }
            Ok(Some(Ok(Message::Close(frame)))) => panic!("the hub closed the socket: {frame:?}"),
            Ok(Some(Ok(_))) => continue,
            Ok(other) => panic!("the socket broke: {other:?}"),
        }
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
    let ris = App::sign_in(&daemon, "ris").await;
    let pacs = App::sign_in(&daemon, "pacs").await;
    let mut watcher = ris.subscribe("SyncError").await;
    let mut viewer = pacs.subscribe("Patient-open").await;

    ris.open_patient("p1", "freeze-1").await;
    let frame = next_frame(&mut viewer, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(frame["id"], "freeze-1");
    // The agent freezes; the viewer answers at once, and its answer waits in the socket for
    // longer than the acknowledgement deadline.
    signal(&daemon, "STOP");
    viewer
        .send(Message::text(
            json!({ "id": "freeze-1", "status": 200 }).to_string(),
        ))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    signal(&daemon, "CONT");

    // No SyncError about the viewer, and it stays subscribed: the next change reaches it.
    let blamed = next_frame(&mut watcher, Duration::from_secs(3)).await;
    assert!(blamed.is_none(), "a SyncError was sent: {blamed:?}");
    ris.open_patient("p2", "freeze-2").await;
    let frame = next_frame(&mut viewer, Duration::from_secs(5))
        .await
        .unwrap();
    assert_eq!(frame["id"], "freeze-2");

    // An app that really does not answer is still blamed, after the same deadline.
    let blamed = next_frame(&mut watcher, Duration::from_secs(5)).await;
    let blamed = blamed.expect("a SyncError about the silent viewer");
    assert_eq!(blamed["event"]["hub.event"], "SyncError");
    let status = daemon.terminate();
    assert!(status.success(), "exit status {status}");
}
