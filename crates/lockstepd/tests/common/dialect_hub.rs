//! A FHIRcast hub that speaks a deployed hub's dialect, as observed on the wire (the enterprise
//! notes, section 5): one WebSocket endpoint per topic shared by every subscriber and needing no
//! token; a confirmation with empty fields; a `heartbeat` event every second; events sent to
//! every socket of the topic whatever it subscribed to, the publisher's own included, each with
//! a `context.versionId` added; acknowledgements ignored; an unsubscribe answered with a denial
//! to every socket of the topic; a topic that is fixed per user for a while and then changes for
//! tokens issued after; HTTP calls with an expired token refused with 401.

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

#[derive(Clone)]
pub struct DialectHub {
    pub origin: String,
    state: Arc<Shared>,
}

struct Shared {
    origin: String,
    /// How long a topic lasts for tokens issued from its start.
    topic_period: Duration,
    token_lifetime: Duration,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// The user's topic and when it was first issued.
    topic: Option<(String, Instant)>,
    /// token -> expiry
    tokens: HashMap<String, Instant>,
    /// topic -> the frames every socket of it gets
    feeds: HashMap<String, broadcast::Sender<String>>,
    /// topic -> current context (the last open's), for Get Current Context
    current: HashMap<String, Value>,
    /// Every event posted, by id: how many times.
    posted: HashMap<String, usize>,
    /// Token requests served.
    tokens_issued: usize,
}

impl DialectHub {
    pub async fn start(topic_period: Duration, token_lifetime: Duration) -> DialectHub {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Shared {
            origin: origin.clone(),
            topic_period,
            token_lifetime,
            inner: Mutex::new(Inner::default()),
        });
        let app = Router::new()
            .route("/.well-known/smart-configuration", get(smart))
            .route("/oauth2/token", post(token))
            .route("/fhircast/STU3", post(hub))
            .route("/fhircast/STU3/{topic}", get(current))
            .route("/ws/{topic}", get(socket))
            .with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let heartbeat = state.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let feeds: Vec<(String, broadcast::Sender<String>)> = {
                    let inner = heartbeat.inner.lock().unwrap();
                    inner
                        .feeds
                        .iter()
                        .map(|(t, f)| (t.clone(), f.clone()))
                        .collect()
                };
                for (topic, feed) in feeds {
                    let beat = json!({
                        "timestamp": "2026-01-01T00:00:00Z",
                        "id": uuid::Uuid::new_v4().to_string(),
                        "event": { "hub.topic": topic, "hub.event": "heartbeat",
                                   "context": [{ "key": "period", "decimal": "10" }] }
                    });
                    let _ = feed.send(beat.to_string());
                }
            }
        });
        DialectHub { origin, state }
    }

    /// Opens `context` (of `context_type`) on the user's topic without telling any socket: what
    /// a subscriber sees of a hub that lost or skipped an event.
    pub fn change_silently(&self, context_type: &str, context: Value) {
        let mut inner = self.state.inner.lock().unwrap();
        let Some((topic, _)) = inner.topic.clone() else {
            return;
        };
        inner.current.insert(
            topic,
            json!({ "context.type": context_type, "context": context }),
        );
    }

    /// How many times an event with this id was posted to the hub.
    pub fn posted(&self, id: &str) -> usize {
        self.state
            .inner
            .lock()
            .unwrap()
            .posted
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    pub fn tokens_issued(&self) -> usize {
        self.state.inner.lock().unwrap().tokens_issued
    }
}

async fn smart(State(state): State<Arc<Shared>>) -> Json<Value> {
    Json(json!({ "token_endpoint": format!("{}/oauth2/token", state.origin) }))
}

async fn token(State(state): State<Arc<Shared>>) -> Json<Value> {
    let mut inner = state.inner.lock().unwrap();
    let now = Instant::now();
    let topic = match &inner.topic {
        Some((topic, since)) if now.duration_since(*since) < state.topic_period => topic.clone(),
        _ => {
            let topic = uuid::Uuid::new_v4().to_string();
            inner.topic = Some((topic.clone(), now));
            topic
        }
    };
    let access_token = uuid::Uuid::new_v4().to_string();
    inner
        .tokens
        .insert(access_token.clone(), now + state.token_lifetime);
    inner.tokens_issued += 1;
    Json(json!({
        "token_type": "Bearer",
        "access_token": access_token,
        "expires_in": state.token_lifetime.as_secs(),
        "scope": "openid fhircast/*.*",
        "id_token": "eyJhbGciOiJub25lIn0.e30.",
        "project": { "reference": "Project/1" },
        "profile": { "reference": "Practitioner/1" },
        "hub.url": format!("{}/fhircast/STU3", state.origin),
        "hub.topic": topic,
    }))
}

fn authorised(state: &Shared, headers: &HeaderMap) -> bool {
    let Some(token) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return false;
    };
    let inner = state.inner.lock().unwrap();
    inner
        .tokens
        .get(token)
        .is_some_and(|expiry| *expiry > Instant::now())
}

fn feed(inner: &mut Inner, topic: &str) -> broadcast::Sender<String> {
    inner
        .feeds
        .entry(topic.to_owned())
        .or_insert_with(|| broadcast::channel(256).0)
        .clone()
}

async fn hub(State(state): State<Arc<Shared>>, headers: HeaderMap, body: String) -> Response {
    if !authorised(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let form_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form_type {
        let form: HashMap<String, String> = form_urlencoded::parse(body.as_bytes())
            .into_owned()
            .collect();
        let topic = form.get("hub.topic").cloned().unwrap_or_default();
        let mut inner = state.inner.lock().unwrap();
        let feed = feed(&mut inner, &topic);
        if form.get("hub.mode").map(String::as_str) == Some("unsubscribe") {
            // To every socket of the topic, not only the one leaving.
            let denial = json!({ "hub.mode": "denied", "hub.topic": topic, "hub.events": "", "hub.reason": "unsubscribed" });
            let _ = feed.send(denial.to_string());
        }
        let endpoint = format!("{}/ws/{topic}", state.origin.replace("http", "ws"));
        return (
            StatusCode::ACCEPTED,
            Json(json!({ "hub.channel.endpoint": endpoint })),
        )
            .into_response();
    }
    let Ok(mut event) = serde_json::from_str::<Value>(&body) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let topic = event["event"]["hub.topic"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let id = event["id"].as_str().unwrap_or_default().to_owned();
    event["event"]["context.versionId"] = uuid::Uuid::new_v4().to_string().into();
    let mut inner = state.inner.lock().unwrap();
    *inner.posted.entry(id).or_default() += 1;
    let name = event["event"]["hub.event"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.ends_with("-open") {
        let anchor = name.trim_end_matches("-open").to_owned();
        inner.current.insert(
            topic.clone(),
            json!({ "context.type": anchor, "context": event["event"]["context"].clone() }),
        );
    }
    let _ = feed(&mut inner, &topic).send(event.to_string());
    (StatusCode::ACCEPTED, Json(json!({ "success": true }))).into_response()
}

async fn current(
    State(state): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(topic): Path<String>,
) -> Response {
    if !authorised(&state, &headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let inner = state.inner.lock().unwrap();
    let current = inner
        .current
        .get(&topic)
        .cloned()
        .unwrap_or_else(|| json!({ "context.type": "", "context": [] }));
    Json(current).into_response()
}

async fn socket(
    State(state): State<Arc<Shared>>,
    Path(topic): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let frames = feed(&mut state.inner.lock().unwrap(), &topic).subscribe();
    upgrade.on_upgrade(move |socket| serve_socket(socket, topic, frames))
}

async fn serve_socket(socket: WebSocket, topic: String, mut frames: broadcast::Receiver<String>) {
    let (mut sink, mut stream) = socket.split();
    let confirmation = json!({ "hub.mode": "subscribe", "hub.topic": topic, "hub.events": "", "hub.lease_seconds": "" });
    if sink
        .send(Message::text(confirmation.to_string()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.recv() => match frame {
                Ok(frame) => {
                    if sink.send(Message::text(frame)).await.is_err() {
                        return;
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return,
            },
            // Acknowledgements are read and ignored.
            incoming = stream.next() => match incoming {
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}
