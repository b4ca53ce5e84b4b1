//! Fuzz bodies: each feeds arbitrary bytes through a parser that reads outside input, the way
//! the hub runs it, and panics only on a bug (a crash, or a broken invariant asserted here).
//!
//! The cargo-fuzz targets under `fuzz/` call these, and so do the corpus regression tests
//! (`tests/fuzz_corpus.rs`), so every input a fuzzer ever found is replayed by CI on stable
//! Rust. Not an API: hidden from the docs and free to change.

use crate::auth::TokenGrant;
use crate::contexts::TopicContexts;
use crate::engine::Engine;
use crate::settings::HubSettings;
use axum::http::{HeaderMap, HeaderValue, header};
use lockstep_fhircast::notification::{SubscriberReply, Versions};
use lockstep_fhircast::subscription::{join_events, parse_events};
use lockstep_fhircast::{ContextChange, Mode, ScopeSet, SubscriptionRequest};
use serde_json::Value;
use std::io::{Cursor, Read, Write};
use std::sync::OnceLock;
use std::time::{Duration, Instant};
use tungstenite::protocol::{Role, WebSocket, WebSocketConfig};

/// Bytes that never occur in UTF-8 text: where a fuzz input splits into several documents.
const SEPARATOR: u8 = 0xff;

/// A subscription request as `POST hub.url` reads it: the first byte picks the content type
/// (form or JSON), the rest is the body.
pub fn subscription_request(data: &[u8]) {
    let Some((&kind, body)) = data.split_first() else {
        return;
    };
    let content_type = if kind % 2 == 0 {
        "application/x-www-form-urlencoded"
    } else {
        "application/json"
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    let _ = crate::server::classify(&headers, body);
    for parsed in [
        SubscriptionRequest::from_form(body),
        SubscriptionRequest::from_json(body),
    ] {
        let Ok(request) = parsed else { continue };
        match request.mode {
            Mode::Subscribe => {
                // What the hub confirms must read back as the same events.
                assert!(!request.events.is_empty(), "a subscribe names events");
                let joined = join_events(&request.events);
                let (again, _) = parse_events(&joined).expect("confirmed events parse again");
                assert_eq!(join_events(&again), joined);
            }
            Mode::Unsubscribe => assert!(request.channel_endpoint.is_some()),
        }
        assert!(request.lease_seconds != Some(0), "a lease of 0 is refused");
    }
}

/// Requests for context changes, separated by 0xff, validated and then applied in order to one
/// topic's contexts, as the engine does (opens, closes, content updates, selections).
pub fn event_json(data: &[u8]) {
    let mut contexts = TopicContexts::new();
    for body in data.split(|b| *b == SEPARATOR) {
        let Ok(mut change) = ContextChange::parse(body) else {
            continue;
        };
        // Versions are random; a fuzzer cannot guess one. `CURRENT` stands for whatever the
        // current version is, so that content updates get past the version check.
        if change.version_id.as_deref() == Some("CURRENT") {
            change.version_id = Some(contexts.current().version_id);
        }
        // The context is relayed as received: the frame around it must still be JSON.
        let frame = change.frame(Versions {
            version_id: Some("v\"1"),
            prior_version_id: None,
        });
        let parsed: Value = serde_json::from_str(&frame).expect("a notification frame is JSON");
        assert_eq!(parsed["id"].as_str(), Some(change.id.as_str()));
        let Ok(applied) = contexts.apply(&change) else {
            continue;
        };
        for (_, implied) in &applied.implied {
            serde_json::from_str::<Value>(implied.as_str()).expect("an implied frame is JSON");
        }
        let current = contexts.current().to_json();
        serde_json::from_str::<Value>(&current).expect("Get Current Context answers JSON");
        for open in contexts.replay(|_| true) {
            serde_json::from_str::<Value>(open.frame.as_str()).expect("a replayed frame is JSON");
        }
    }
}

/// Bytes a subscriber sends on its WebSocket, read by the same frame parser (and limits) as
/// the hub's sockets, each text message then handled by the engine as a reply to a
/// notification it is waiting on.
pub fn websocket_frames(data: &[u8]) {
    let runtime = runtime();
    let _entered = runtime.enter();
    let settings = HubSettings::default();
    let engine = Engine::new(settings.clone());
    let topic = engine.create_topic();
    let grant = TokenGrant {
        client_id: "fuzz".into(),
        client_name: "fuzz".into(),
        topic: topic.clone(),
        scopes: ScopeSet::parse("fhircast/*.*").expect("a valid scope"),
        expires_at: Instant::now() + Duration::from_secs(3600),
        acknowledges: true,
    };
    let subscribe = format!(
        "hub.channel.type=websocket&hub.mode=subscribe&hub.topic={topic}&hub.events=Patient-open,SyncError"
    );
    let request = SubscriptionRequest::from_form(subscribe.as_bytes()).expect("a valid request");
    let endpoint = engine
        .subscribe(&grant, request)
        .expect("subscribed")
        .endpoint;
    let mut connection = engine.connect(&endpoint).expect("connected");
    let open = format!(
        r#"{{"timestamp":"t","id":"e1","event":{{"hub.topic":"{topic}","hub.event":"Patient-open","context":[{{"key":"patient","resource":{{"resourceType":"Patient","id":"p1","identifier":[{{"value":"1"}}]}}}}]}}}}"#
    );
    let change = ContextChange::parse(open.as_bytes()).expect("a valid event");
    engine.publish(&grant, change).expect("published");

    let config = WebSocketConfig::default()
        .max_message_size(Some(settings.max_body_bytes))
        .max_frame_size(Some(settings.max_body_bytes))
        .read_buffer_size(crate::socket::WEBSOCKET_READ_BUFFER_BYTES);
    let mut socket = WebSocket::from_raw_socket(
        Peer {
            input: Cursor::new(data),
        },
        Role::Server,
        Some(config),
    );
    while let Ok(message) = socket.read() {
        if let tungstenite::Message::Text(text) = message {
            let _ = SubscriberReply::parse(text.as_str());
            engine.reply(&endpoint, text.as_str());
        }
    }
    // Whatever was sent, the hub's queue for this socket holds only its own frames.
    while let Ok(frame) = connection.frames.try_recv() {
        serde_json::from_str::<Value>(frame.as_str()).expect("the hub only queues JSON");
    }
    engine.socket_closed(&endpoint, crate::engine::SocketEnd::Closed(1000));
}

/// A token request: the first line is the `Authorization` header, the rest the form body.
pub fn token_request(data: &[u8]) {
    let (authorization, body) = match data.iter().position(|b| *b == b'\n') {
        Some(at) => (&data[..at], &data[at + 1..]),
        None => (&data[..0], data),
    };
    let _ = crate::server::serde_urlencoded_form(body);
    if let Ok(value) = std::str::from_utf8(authorization)
        && let Some(encoded) = value.strip_prefix("Basic ")
    {
        let _ = crate::server::decode_basic(encoded);
    }
}

/// The socket's peer: what it sends is the fuzz input; what the hub writes back is dropped.
struct Peer<'a> {
    input: Cursor<&'a [u8]>,
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One runtime for every run: the engine's sweeper needs one, and building one per input
/// would be most of the work.
fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_time()
            .build()
            .expect("a tokio runtime")
    })
}
