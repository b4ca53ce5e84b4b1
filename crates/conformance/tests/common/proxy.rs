//! A hub with one defect: a proxy in front of a real Lockstep hub that passes everything
//! through (HTTP and WebSocket) except the one thing its [`Defect`] breaks. Endpoint URLs are
//! rewritten both ways, so the checker talks to the proxy alone.

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{self, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio_tungstenite::tungstenite::Message;

/// What the proxy breaks, one at a time; each is named for the check that must catch it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Defect {
    /// Nothing: the proxy is faithful.
    None,
    /// 4: discovery says `websocketSupport: false`.
    NoWebsocketSupport,
    /// 12: a subscription is answered 200 instead of 202.
    SubscribeAnswered200,
    /// 21: refusals come with an empty body.
    SilentRefusals,
    /// 29: the confirmation frame is never sent.
    NoConfirmation,
    /// 34: the replay of the current context to a new subscriber is dropped.
    NoReplay,
    /// 48: notifications lose their `id`.
    NotificationWithoutId,
    /// 49: every notification gets the same id.
    RepeatedIds,
    /// 50: the hub delivers Patient-open and Patient-close whatever was subscribed.
    UnsubscribedEvents,
    /// 52: the sender of a change is not sent its own event.
    NoEchoToTheSender,
    /// 53: the broadcast gets an id of the hub's instead of the request's.
    NewIdOnBroadcast,
    /// 54: the context is not relayed byte for byte (the patient's name is dropped).
    ContextRewritten,
    /// 58: SyncErrors are never delivered.
    NoSyncError,
    /// 84: Get Current Context keeps showing the last context after it was closed.
    StaleCurrentContext,
}

struct Shared {
    upstream: String,
    origin: String,
    defect: Defect,
    http: reqwest::Client,
    /// Proxy endpoint token → (upstream endpoint URL, bearer token of the subscriber).
    endpoints: Mutex<HashMap<String, (String, String)>>,
    /// Context change requests passed upstream so far.
    publishes: AtomicU64,
    /// Event id → bearer token of its requester.
    publishers: Mutex<HashMap<String, String>>,
    last_context: Mutex<Option<String>>,
}

pub struct Proxy {
    pub origin: String,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl Proxy {
    /// A proxy for the hub at `upstream` (`http://127.0.0.1:<port>`) with `defect`.
    pub async fn start(upstream: String, defect: Defect) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        let shared = Arc::new(Shared {
            upstream,
            origin: origin.clone(),
            defect,
            http: reqwest::Client::new(),
            endpoints: Mutex::default(),
            publishes: AtomicU64::new(0),
            publishers: Mutex::default(),
            last_context: Mutex::default(),
        });
        let app = Router::new()
            .route("/proxy-ws/{endpoint}", get(socket))
            .fallback(forward)
            .with_state(shared);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Proxy { origin, server }
    }
}

fn bearer(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Maps proxy endpoint URLs in a form body back to the upstream's.
fn upstream_form(shared: &Shared, body: &[u8]) -> (Vec<(String, String)>, Vec<u8>) {
    let mut pairs: Vec<(String, String)> = form_urlencoded::parse(body).into_owned().collect();
    let prefix = format!("{}/proxy-ws/", shared.origin.replacen("http", "ws", 1));
    for (key, value) in pairs.iter_mut() {
        if key == "hub.channel.endpoint"
            && let Some(ours) = value.strip_prefix(&prefix)
            && let Some((upstream, _)) = shared.endpoints.lock().unwrap().get(ours)
        {
            *value = upstream.clone();
        }
        if key == "hub.events" && shared.defect == Defect::UnsubscribedEvents {
            value.push_str(",Patient-open,Patient-close");
        }
    }
    let encoded = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish();
    (pairs, encoded.into_bytes())
}

async fn forward(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/")
        .to_owned();
    let media = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let token = bearer(&headers);
    let mut form = Vec::new();
    let mut body = body.to_vec();
    if media.starts_with("application/x-www-form-urlencoded") && path.starts_with("/fhircast") {
        (form, body) = upstream_form(&shared, &body);
    }
    let is_publish = method == Method::POST && media.contains("json");
    if is_publish {
        shared.publishes.fetch_add(1, Ordering::SeqCst);
        if let Ok(event) = serde_json::from_slice::<Value>(&body)
            && let Some(id) = event["id"].as_str()
        {
            shared
                .publishers
                .lock()
                .unwrap()
                .insert(id.to_owned(), token.clone());
            // What a hub that never forgets a context would keep showing.
            let name = event["event"]["hub.event"].as_str().unwrap_or_default();
            if let Some(kind) = name.strip_suffix("-open") {
                let stale = serde_json::json!({ "context.type": kind, "context.versionId": "stale",
                    "context": event["event"]["context"] });
                *shared.last_context.lock().unwrap() = Some(stale.to_string());
            }
        }
    }
    let mut request = shared
        .http
        .request(method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for name in [header::AUTHORIZATION, header::CONTENT_TYPE] {
        if let Some(value) = headers.get(&name) {
            request = request.header(name, value);
        }
    }
    let Ok(answer) = request.send().await else {
        return StatusCode::BAD_GATEWAY.into_response();
    };
    let mut status = answer.status().as_u16();
    let content_type = answer
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let mut text = answer.text().await.unwrap_or_default();
    let is_subscribe = form
        .iter()
        .any(|(k, v)| k == "hub.mode" && v == "subscribe");
    // The upstream's endpoints become the proxy's.
    if let Ok(mut json) = serde_json::from_str::<Value>(&text)
        && let Some(endpoint) = json["hub.channel.endpoint"].as_str().map(str::to_owned)
    {
        let ours = {
            let mut endpoints = shared.endpoints.lock().unwrap();
            match endpoints.iter().find(|(_, (url, _))| *url == endpoint) {
                Some((ours, _)) => ours.clone(),
                None => {
                    let ours = uuid::Uuid::new_v4().simple().to_string();
                    endpoints.insert(ours.clone(), (endpoint, token.clone()));
                    ours
                }
            }
        };
        json["hub.channel.endpoint"] = format!(
            "{}/proxy-ws/{ours}",
            shared.origin.replacen("http", "ws", 1)
        )
        .into();
        text = json.to_string();
    }
    match shared.defect {
        Defect::NoWebsocketSupport if path.ends_with("/.well-known/fhircast-configuration") => {
            if let Ok(mut json) = serde_json::from_str::<Value>(&text) {
                json["websocketSupport"] = false.into();
                text = json.to_string();
            }
        }
        Defect::SubscribeAnswered200 if is_subscribe && status == 202 => status = 200,
        Defect::SilentRefusals if status >= 400 => text.clear(),
        Defect::StaleCurrentContext if method == Method::GET && path.starts_with("/fhircast/") => {
            let json: Value = serde_json::from_str(&text).unwrap_or_default();
            let empty = json["context"].as_array().is_some_and(|c| c.is_empty());
            if let Some(stale) = shared
                .last_context
                .lock()
                .unwrap()
                .clone()
                .filter(|_| empty)
            {
                text = stale;
            }
        }
        _ => {}
    }
    let mut response = (StatusCode::from_u16(status).unwrap(), text).into_response();
    if let Ok(value) = content_type.parse() {
        response.headers_mut().insert(header::CONTENT_TYPE, value);
    }
    response
}

async fn socket(
    State(shared): State<Arc<Shared>>,
    Path(ours): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    let Some((url, token)) = shared.endpoints.lock().unwrap().get(&ours).cloned() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let Ok((upstream, _)) = tokio_tungstenite::connect_async(url.as_str()).await else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let published_at_connect = shared.publishes.load(Ordering::SeqCst);
    upgrade.on_upgrade(move |client| relay(shared, client, upstream, token, published_at_connect))
}

/// The frame the client gets for `text` from the upstream, or none.
fn to_client(
    shared: &Shared,
    text: String,
    token: &str,
    published_at_connect: u64,
    confirmed: &mut bool,
) -> Option<String> {
    let Ok(mut frame) = serde_json::from_str::<Value>(&text) else {
        return Some(text);
    };
    if frame["hub.mode"] == "subscribe" {
        let first = !*confirmed;
        *confirmed = true;
        return (!(first && shared.defect == Defect::NoConfirmation)).then_some(text);
    }
    if frame.get("event").is_none() {
        return Some(text);
    }
    let id = frame["id"].as_str().unwrap_or_default().to_owned();
    match shared.defect {
        Defect::NoReplay if shared.publishes.load(Ordering::SeqCst) == published_at_connect => {
            return None;
        }
        Defect::NoSyncError if frame["event"]["hub.event"] == "SyncError" => return None,
        Defect::NoEchoToTheSender
            if shared
                .publishers
                .lock()
                .unwrap()
                .get(&id)
                .is_some_and(|t| t == token) =>
        {
            return None;
        }
        Defect::NotificationWithoutId => {
            frame.as_object_mut()?.remove("id");
        }
        Defect::RepeatedIds => frame["id"] = "the-same-id".into(),
        Defect::NewIdOnBroadcast => frame["id"] = uuid::Uuid::new_v4().to_string().into(),
        Defect::ContextRewritten => {
            for entry in frame["event"]["context"].as_array_mut()? {
                if let Some(resource) = entry["resource"].as_object_mut() {
                    resource.remove("name");
                }
            }
        }
        _ => return Some(text),
    }
    Some(frame.to_string())
}

async fn relay(
    shared: Arc<Shared>,
    client: WebSocket,
    upstream: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    token: String,
    published_at_connect: u64,
) {
    let (mut client_tx, mut client_rx) = client.split();
    let (mut upstream_tx, mut upstream_rx) = upstream.split();
    let down = async {
        let mut confirmed = false;
        while let Some(Ok(message)) = upstream_rx.next().await {
            let out = match message {
                Message::Text(text) => {
                    match to_client(
                        &shared,
                        text.to_string(),
                        &token,
                        published_at_connect,
                        &mut confirmed,
                    ) {
                        Some(text) => ws::Message::Text(text.into()),
                        None => continue,
                    }
                }
                Message::Close(frame) => ws::Message::Close(frame.map(|f| ws::CloseFrame {
                    code: f.code.into(),
                    reason: f.reason.as_str().into(),
                })),
                _ => continue,
            };
            if client_tx.send(out).await.is_err() {
                break;
            }
        }
    };
    let up = async {
        while let Some(Ok(message)) = client_rx.next().await {
            let out = match message {
                ws::Message::Text(text) => Message::text(text.as_str()),
                ws::Message::Close(frame) => Message::Close(frame.map(|f| {
                    tokio_tungstenite::tungstenite::protocol::CloseFrame {
                        code: f.code.into(),
                        reason: f.reason.as_str().into(),
                    }
                })),
                _ => continue,
            };
            if upstream_tx.send(out).await.is_err() {
                break;
            }
        }
    };
    tokio::select! {
        _ = down => {}
        _ = up => {}
    }
}
