//! The WebSocket closing handshake (RFC 6455 7.1) on every path that ends a socket: the hub
//! sends a Close and waits for the app's before it drops the connection, and answers an app's
//! Close with its own.
//!
//! The client here speaks the wire format itself: a library client answers a Close on its own
//! and hides whether the hub waited for that answer, which is the point under test.

mod common;
use common::{Hub, WAIT, patient_context};
use lockstep_hub::HubSettings;
use serde_json::Value;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A WebSocket client written against the wire, one frame at a time.
struct RawSocket {
    tcp: TcpStream,
    unread: Vec<u8>,
    endpoint: String,
}

/// What the hub sent up to and including its Close.
struct HubClose {
    texts: Vec<Value>,
    code: u16,
    reason: String,
}

impl RawSocket {
    /// Subscribes to `events` and opens the socket; the confirmation is read.
    async fn subscribed(hub: &Hub, token: &str, events: &str, lease: Option<&str>) -> RawSocket {
        let mut form = vec![
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", hub.topic.as_str()),
            ("hub.events", events),
        ];
        if let Some(lease) = lease {
            form.push(("hub.lease_seconds", lease));
        }
        let response = hub.post_form(token, &form).await;
        assert_eq!(response.status(), 202);
        let answer: Value = response.json().await.unwrap();
        let endpoint = answer["hub.channel.endpoint"].as_str().unwrap();
        let mut socket = RawSocket::connect(hub, endpoint).await;
        let confirmation = socket.next_text().await;
        assert_eq!(confirmation["hub.mode"], "subscribe", "{confirmation}");
        socket
    }

    async fn connect(hub: &Hub, endpoint: &str) -> RawSocket {
        let authority_and_path = endpoint.strip_prefix("ws://").expect("a ws:// endpoint");
        let path = &authority_and_path[authority_and_path.find('/').unwrap()..];
        let mut tcp = TcpStream::connect(hub.address()).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
            hub.address()
        );
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut unread = Vec::new();
        let head_end = loop {
            if let Some(at) = unread.windows(4).position(|w| w == b"\r\n\r\n") {
                break at + 4;
            }
            let mut chunk = [0u8; 1024];
            let n = tcp.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the hub closed before answering the upgrade");
            unread.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&unread[..head_end]).into_owned();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        unread.drain(..head_end);
        RawSocket {
            tcp,
            unread,
            endpoint: endpoint.to_owned(),
        }
    }

    /// The next frame (opcode, payload), `None` when the connection ended first.
    async fn next_frame(&mut self, within: Duration) -> Option<(u8, Vec<u8>)> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some((frame, used)) = parse_frame(&self.unread) {
                self.unread.drain(..used);
                return Some(frame);
            }
            let mut chunk = [0u8; 8192];
            match tokio::time::timeout_at(deadline, self.tcp.read(&mut chunk)).await {
                Ok(Ok(0) | Err(_)) => return None,
                Ok(Ok(n)) => self.unread.extend_from_slice(&chunk[..n]),
                Err(_) => panic!("no frame within {within:?}"),
            }
        }
    }

    async fn next_text(&mut self) -> Value {
        loop {
            match self.next_frame(WAIT).await {
                Some((TEXT, payload)) => return serde_json::from_slice(&payload).unwrap(),
                Some((PING | PONG, _)) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Reads up to the hub's Close, failing if the connection ends without one.
    async fn hub_close(&mut self) -> HubClose {
        let mut texts = Vec::new();
        loop {
            match self.next_frame(WAIT).await {
                Some((TEXT, payload)) => texts.push(serde_json::from_slice(&payload).unwrap()),
                Some((CLOSE, payload)) => {
                    assert!(payload.len() >= 2, "a Close without a status code");
                    return HubClose {
                        texts,
                        code: u16::from_be_bytes([payload[0], payload[1]]),
                        reason: String::from_utf8(payload[2..].to_vec()).unwrap(),
                    };
                }
                Some(_) => continue,
                None => panic!("the connection ended without a Close frame; before it: {texts:?}"),
            }
        }
    }

    /// Sends a masked frame, as clients must.
    async fn send(&mut self, opcode: u8, payload: &[u8]) {
        let mask = [0x37, 0xfa, 0x21, 0x3d];
        let mut frame = vec![0x80 | opcode];
        match payload.len() {
            n if n < 126 => frame.push(0x80 | n as u8),
            n if n <= usize::from(u16::MAX) => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.tcp.write_all(&frame).await.unwrap();
    }

    async fn send_close(&mut self, code: u16) {
        self.send(CLOSE, &code.to_be_bytes()).await;
    }

    /// Whether the hub still keeps the connection open after `for_how_long` (it must, while it
    /// waits for the app's Close).
    async fn stays_open(&mut self, for_how_long: Duration) -> bool {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(for_how_long, self.tcp.read(&mut chunk)).await {
            Err(_) => true,
            Ok(Ok(0) | Err(_)) => false,
            Ok(Ok(n)) => panic!("the hub sent more after its Close: {:?}", &chunk[..n]),
        }
    }

    /// Waits for the hub to end the TCP connection; true when it ended it cleanly (FIN, not a
    /// reset) with nothing more sent.
    async fn ends_cleanly(&mut self) -> bool {
        let mut chunk = [0u8; 64];
        match tokio::time::timeout(WAIT, self.tcp.read(&mut chunk)).await {
            Ok(Ok(0)) => self.unread.is_empty(),
            Ok(Ok(_)) | Ok(Err(_)) => false,
            Err(_) => panic!("the hub never ended the connection"),
        }
    }
}

fn parse_frame(bytes: &[u8]) -> Option<((u8, Vec<u8>), usize)> {
    let [first, second, ..] = *bytes else {
        return None;
    };
    assert_eq!(second & 0x80, 0, "a server's frames are never masked");
    let (length, at) = match second & 0x7f {
        126 => (
            usize::from(u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?)),
            4,
        ),
        127 => (
            usize::try_from(u64::from_be_bytes(bytes.get(2..10)?.try_into().ok()?)).ok()?,
            10,
        ),
        n => (usize::from(n), 2),
    };
    let payload = bytes.get(at..at + length)?;
    Some(((first & 0x0f, payload.to_vec()), at + length))
}

/// The hub's side of a handshake it starts: after its Close it keeps the connection until the
/// app answers, then ends it cleanly.
async fn answer_and_see_it_end(socket: &mut RawSocket) {
    assert!(
        socket.stays_open(Duration::from_millis(300)).await,
        "the hub dropped the connection without waiting for the app's Close"
    );
    socket.send_close(1000).await;
    assert!(
        socket.ends_cleanly().await,
        "the connection was reset, or more came after the handshake"
    );
}

#[tokio::test]
async fn unsubscribe_denies_closes_and_waits_for_the_apps_close() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", None).await;
    let endpoint = socket.endpoint.clone();
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", hub.topic.as_str()),
        ("hub.channel.endpoint", endpoint.as_str()),
    ];
    assert_eq!(hub.post_form(&token, &form).await.status(), 202);
    let close = socket.hub_close().await;
    assert_eq!(close.texts.last().unwrap()["hub.mode"], "denied");
    assert_eq!(close.code, 1000);
    answer_and_see_it_end(&mut socket).await;
}

#[tokio::test]
async fn lease_end_denies_closes_and_waits_for_the_apps_close() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", Some("1")).await;
    let close = socket.hub_close().await;
    assert_eq!(close.texts.last().unwrap()["hub.reason"], "lease expired");
    assert_eq!(close.code, 1000);
    answer_and_see_it_end(&mut socket).await;
}

#[tokio::test]
async fn eviction_of_a_silent_app_closes_with_1008_and_waits_for_its_close() {
    let hub = Hub::start_with(HubSettings {
        ack_timeout_seconds: 1,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", None).await;
    let open = hub.event("Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&token, &open).await.status(), 202);
    let close = socket.hub_close().await;
    assert_eq!(close.texts[0]["id"], open["id"]);
    assert_eq!(close.texts.last().unwrap()["hub.mode"], "denied");
    assert_eq!(close.code, 1008);
    answer_and_see_it_end(&mut socket).await;
}

#[tokio::test]
async fn shutdown_closes_with_1001_and_waits_for_the_apps_close() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", None).await;
    let stopping = tokio::spawn(hub.stop());
    let close = socket.hub_close().await;
    assert_eq!(
        close.texts.last().unwrap()["hub.reason"],
        "hub shutting down"
    );
    assert_eq!(close.code, 1001);
    answer_and_see_it_end(&mut socket).await;
    // The hub had waited for the handshake: it stops only now.
    tokio::time::timeout(WAIT, stopping)
        .await
        .expect("the hub stops once its sockets closed")
        .unwrap();
}

#[tokio::test]
async fn an_apps_close_is_answered_with_the_hubs_close() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    for code in [1000, 1001, 4000] {
        let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", None).await;
        socket.send_close(code).await;
        let close = socket.hub_close().await;
        assert!(close.texts.is_empty(), "{:?}", close.texts);
        // RFC 6455 5.5.1: the answering Close echoes the status code it received.
        assert_eq!(close.code, code);
        assert!(socket.ends_cleanly().await, "after code {code}");
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(hub.engine.subscribers(&hub.topic).is_empty());
}

#[tokio::test]
async fn a_frame_over_the_limit_gets_close_1009() {
    let hub = Hub::start_with(HubSettings {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut socket = RawSocket::subscribed(&hub, &token, "Patient-open", None).await;
    socket.send(TEXT, &vec![b'x'; 5000]).await;
    let close = socket.hub_close().await;
    assert_eq!(close.code, 1009);
    assert!(
        close.reason.contains("hub.max_body_bytes"),
        "{}",
        close.reason
    );
}
