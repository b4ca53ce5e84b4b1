//! The hub's HTTP + WebSocket server: the local SMART authorization server, discovery, the
//! FHIRcast hub endpoints, and one task per subscriber socket.
//!
//! Every refusal is a 4xx with a plain-text reason a developer can act on; nothing a client
//! sends can panic the process.

use crate::auth::{Authority, TokenError, TokenGrant};
use crate::engine::{
    CloseOrder, ConnectError, Connection, CurrentContext, Engine, EngineEvent, PublishError,
    SubscribeError,
};
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use lockstep_fhircast::{ContextChange, EventSpec, FHIRCAST_VERSION, SubscriptionRequest};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The path of the hub under the server root: `hub.url` is `{origin}/fhircast`.
pub const HUB_PATH: &str = "/fhircast";
/// Where OHIF-style clients expect the hub; serves the same endpoints as [`HUB_PATH`].
pub const ALIAS_PATH: &str = "/api/hub";
/// The local authorization server's token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Everything the handlers share.
#[derive(Clone)]
pub struct HubState {
    pub engine: Engine,
    pub authority: Arc<Authority>,
    /// The signed-in clinician's topic: the one every token is bound to.
    pub session_topic: Arc<str>,
    /// `http://127.0.0.1:<port>`: every URL the hub hands out is built from this, never from
    /// a request's Host header.
    pub origin: String,
    /// `Host` header values accepted (DNS-rebinding guard).
    pub allowed_hosts: Vec<String>,
    /// More routes served behind the same guards (Host, Origin, body limit), e.g. the agent's
    /// history API; handlers authenticate with [`Authenticated`].
    pub extension: Router<HubState>,
    /// Awaited after an accepted change is delivered and before it is answered 2xx: the agent
    /// makes it wait for the change's history row, so what was acknowledged is on record.
    pub on_record: Option<OnRecord>,
}

/// See [`HubState::on_record`].
pub type OnRecord = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

impl HubState {
    pub fn new(
        engine: Engine,
        authority: Arc<Authority>,
        session_topic: Arc<str>,
        port: u16,
    ) -> Self {
        HubState {
            engine,
            authority,
            session_topic,
            origin: format!("http://127.0.0.1:{port}"),
            allowed_hosts: vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
            extension: Router::new(),
            on_record: None,
        }
    }

    pub fn hub_url(&self) -> String {
        format!("{}{HUB_PATH}", self.origin)
    }

    fn ws_base(&self) -> String {
        let ws_origin = self.origin.replacen("http", "ws", 1);
        format!("{ws_origin}{HUB_PATH}/ws/")
    }

    fn endpoint_url(&self, endpoint: &str) -> String {
        format!("{}{endpoint}", self.ws_base())
    }

    /// The endpoint token of a `hub.channel.endpoint` URL this hub issued.
    fn endpoint_token<'a>(&self, url: &'a str) -> Option<&'a str> {
        url.strip_prefix(self.ws_base().as_str())
    }
}

/// The hub's routes, ready to serve.
pub fn router(state: HubState) -> Router {
    let settings = state.engine.settings();
    // OHIF and sandbox.js clients look for the hub at /api/hub; older (STU2-era) ones GET the
    // bare context array there, when the site turns that on.
    let alias_get = if settings.stu2_compat {
        get(topic_get_stu2)
    } else {
        get(topic_get)
    };
    Router::new()
        .route("/.well-known/smart-configuration", get(smart_configuration))
        .route(TOKEN_PATH, post(token))
        .nest(HUB_PATH, hub_routes(get(topic_get)))
        .nest(ALIAS_PATH, hub_routes(alias_get))
        .merge(state.extension.clone())
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint on this hub") })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(cors(settings))
        .layer(middleware::from_fn_with_state(state.clone(), guard_request))
        .with_state(state)
}

/// The endpoints under a hub path; `get_context` answers `GET {hub}/{topic}`.
fn hub_routes(get_context: MethodRouter<HubState>) -> Router<HubState> {
    Router::new()
        .route("/", post(hub_post))
        .route(
            "/.well-known/fhircast-configuration",
            get(fhircast_configuration),
        )
        .route("/ws/{endpoint}", get(websocket))
        .route("/{topic}", get_context.post(topic_post))
}

/// Serves `router` on each listener until `shutdown` completes, then ends every subscription
/// with a denial and a close so that apps know the hub went away.
pub async fn serve(
    listeners: Vec<TcpListener>,
    state: HubState,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let app = router(state.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        let mut stop = stop_rx.clone();
        let app = app.clone();
        servers.push(tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop.wait_for(|s| *s).await;
                })
                .await
        }));
    }
    shutdown.await;
    state.engine.close_all("hub shutting down");
    let _ = stop_tx.send(true);
    for server in servers {
        server.await.map_err(std::io::Error::other)??;
    }
    Ok(())
}

fn text(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        message.into(),
    )
        .into_response()
}

/// A refused request: its status and the plain-text reason for the developer.
#[derive(Debug)]
pub struct Refusal {
    status: StatusCode,
    message: String,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
        }
    }

    fn bad_request(message: impl std::fmt::Display) -> Self {
        Refusal::new(StatusCode::BAD_REQUEST, message.to_string())
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let mut response = text(self.status, self.message);
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn json_response(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

/// Refuses requests a web page could have sent without the user's apps asking:
/// - a `Host` that is not the hub's own loopback name (a page that rebinds a DNS name to
///   127.0.0.1 still sends its own name);
/// - an `Origin` that is not configured in `hub.allowed_origins` (cross-site requests and
///   WebSocket upgrades; native apps send no Origin).
async fn guard_request(State(state): State<HubState>, request: Request, next: Next) -> Response {
    let headers = request.headers();
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    if !host.is_some_and(|host| {
        state
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    }) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "unexpected Host header: this hub answers only on its loopback address",
        );
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|origin| {
            state
                .engine
                .settings()
                .allowed_origins
                .iter()
                .any(|o| o.eq_ignore_ascii_case(origin))
        });
        if !allowed {
            return text(
                StatusCode::FORBIDDEN,
                "cross-origin request refused: add this web app's origin to hub.allowed_origins",
            );
        }
    }
    next.run(request).await
}

/// CORS for the configured web origins only; none by default.
fn cors(settings: &crate::HubSettings) -> CorsLayer {
    let origins: Vec<HeaderValue> = settings
        .allowed_origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_methods([Method::GET, Method::POST])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
}

/// The body, or the refusal for one that is too large or unreadable.
fn body(body: Result<Bytes, BytesRejection>, state: &HubState) -> Result<Bytes, Refusal> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "request body exceeds this hub's limit of {} bytes",
                    state.engine.settings().max_body_bytes
                ),
            )
        } else {
            Refusal::new(
                rejection.status(),
                format!("could not read the request body: {rejection}"),
            )
        }
    })
}

fn bearer(headers: &HeaderMap, state: &HubState) -> Result<Arc<TokenGrant>, Refusal> {
    let unauthorized = |message: &str| Refusal::new(StatusCode::UNAUTHORIZED, message);
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| unauthorized("missing bearer token: get one from the token endpoint"))?;
    let token = value
        .strip_prefix("Bearer ")
        .or_else(|| value.strip_prefix("bearer "))
        .ok_or_else(|| unauthorized("the Authorization header must be `Bearer <token>`"))?;
    state
        .authority
        .verify(token.trim())
        .ok_or_else(|| unauthorized("invalid or expired access token"))
}

/// The grant behind the request's bearer token: handlers that take it are authenticated.
/// Extension routes (see [`HubState::extension`]) use it too.
pub struct Authenticated(pub Arc<TokenGrant>);

impl FromRequestParts<HubState> for Authenticated {
    type Rejection = Refusal;

    async fn from_request_parts(parts: &mut Parts, state: &HubState) -> Result<Self, Refusal> {
        bearer(&parts.headers, state).map(Authenticated)
    }
}

async fn smart_configuration(State(state): State<HubState>) -> Response {
    let body = json!({
        "issuer": state.origin,
        "token_endpoint": format!("{}{TOKEN_PATH}", state.origin),
        "grant_types_supported": ["client_credentials"],
        "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
        "scopes_supported": ["fhircast/*.read", "fhircast/*.write", "fhircast/*.*"],
        "response_types_supported": ["token"],
        "capabilities": ["client-confidential-symmetric"],
    });
    json_response(StatusCode::OK, body.to_string())
}

async fn fhircast_configuration() -> Response {
    let events: Vec<&str> = EventSpec::all().iter().map(|e| e.name).collect();
    let body = json!({
        "eventsSupported": events,
        "websocketSupport": true,
        "fhircastVersion": FHIRCAST_VERSION,
        "getCurrentSupport": true,
        "capabilities": {
            "supportsGetCurrentContext": true,
            "supportsNonCurrentContextUpdates": false,
        },
        "fhirVersion": "R4",
    });
    json_response(StatusCode::OK, body.to_string())
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

async fn token(
    State(state): State<HubState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let raw = match body(raw, &state) {
        Ok(raw) => raw,
        Err(refusal) => return refusal.into_response(),
    };
    match issue_token(&state, &headers, &raw) {
        Ok(body) => {
            let mut response = json_response(StatusCode::OK, body);
            response
                .headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            response
        }
        Err(error) => {
            let status = match error {
                TokenError::InvalidClient => StatusCode::UNAUTHORIZED,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(code = error.code(), "token request refused");
            let body = json!({ "error": error.code(), "error_description": error.to_string() });
            let mut response = json_response(status, body.to_string());
            if status == StatusCode::UNAUTHORIZED {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"lockstep\""),
                );
            }
            response
        }
    }
}

/// Answers a token request and tells the engine's observers (the audit trail) either way.
fn issue_token(state: &HubState, headers: &HeaderMap, raw: &[u8]) -> Result<String, TokenError> {
    let mut claimed = None;
    let result = grant_token(state, headers, raw, &mut claimed);
    state.engine.emit(EngineEvent::Token {
        client_id: claimed.unwrap_or_default(),
        outcome: match &result {
            Ok((_, scope)) => Ok(scope.clone()),
            Err(e) => Err(e.to_string()),
        },
    });
    result.map(|(body, _)| body)
}

/// The token response body and the granted scope; `claimed` learns the client id as soon as
/// the request names one.
fn grant_token(
    state: &HubState,
    headers: &HeaderMap,
    raw: &[u8],
    claimed: &mut Option<String>,
) -> Result<(String, String), TokenError> {
    let form: TokenForm = serde_urlencoded_form(raw)?;
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(match form.grant_type {
            None => TokenError::InvalidRequest("missing grant_type".into()),
            Some(_) => TokenError::UnsupportedGrantType,
        });
    }
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(decode_basic)
        .transpose()?;
    let (client_id, secret) = match (basic, form.client_secret) {
        (Some(_), Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "use one client authentication method, not both Basic and client_secret".into(),
            ));
        }
        (Some(pair), None) => pair,
        (None, Some(secret)) => (form.client_id.ok_or(TokenError::InvalidClient)?, secret),
        (None, None) => return Err(TokenError::InvalidClient),
    };
    *claimed = Some(client_id.clone());
    let client = state.authority.authenticate(&client_id, &secret)?.clone();
    let issued =
        state
            .authority
            .issue(&client, form.scope.as_deref(), state.session_topic.clone())?;
    tracing::info!(client = %client.client_id, scope = %issued.scope, "token issued");
    let body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "hub.url": state.hub_url(),
        "hub.topic": &*issued.topic,
    })
    .to_string();
    Ok((body, issued.scope))
}

/// Reads the token form, refusing repeated parameters (RFC 6749 §3.2).
fn serde_urlencoded_form(raw: &[u8]) -> Result<TokenForm, TokenError> {
    let mut form = TokenForm {
        grant_type: None,
        scope: None,
        client_id: None,
        client_secret: None,
    };
    for (key, value) in form_urlencoded::parse(raw) {
        let slot = match &*key {
            "grant_type" => &mut form.grant_type,
            "scope" => &mut form.scope,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            _ => continue,
        };
        if slot.replace(value.into_owned()).is_some() {
            return Err(TokenError::InvalidRequest(format!(
                "parameter `{key}` appears more than once"
            )));
        }
    }
    Ok(form)
}

/// `Basic base64(urlencode(id):urlencode(secret))` (RFC 6749 §2.3.1).
fn decode_basic(encoded: &str) -> Result<(String, String), TokenError> {
    let bad = || TokenError::InvalidRequest("malformed Basic authorization".into());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad())?;
    let pair = String::from_utf8(bytes).map_err(|_| bad())?;
    let (id, secret) = pair.split_once(':').ok_or_else(bad)?;
    let decode = |s: &str| {
        form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Ok((decode(id).ok_or_else(bad)?, decode(secret).ok_or_else(bad)?))
}

/// What a POST to `hub.url` carries: a subscription (form, or JSON with `hub.mode`) or a
/// request for a context change (JSON with `event`).
enum HubPost {
    Subscription(SubscriptionRequest),
    ContextChange(ContextChange),
}

fn classify(headers: &HeaderMap, raw: &[u8]) -> Result<HubPost, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return SubscriptionRequest::from_form(raw)
            .map(HubPost::Subscription)
            .map_err(Refusal::bad_request);
    }
    let is_json = content_type.is_empty()
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/fhir+json");
    if !is_json {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "use application/x-www-form-urlencoded to subscribe, application/json or application/fhir+json to publish",
        ));
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "hub.mode")]
        mode: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(raw) {
        Ok(Probe { mode: Some(_) }) => SubscriptionRequest::from_json(raw)
            .map(HubPost::Subscription)
            .map_err(Refusal::bad_request),
        Ok(Probe { mode: None }) => ContextChange::parse(raw)
            .map(HubPost::ContextChange)
            .map_err(Refusal::bad_request),
        Err(e) => Err(Refusal::bad_request(format!("malformed JSON: {e}"))),
    }
}

async fn hub_post(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let raw = body(raw, &state)?;
    match classify(&headers, &raw)? {
        HubPost::Subscription(req) => subscribe(&state, &grant, req),
        HubPost::ContextChange(change) => publish(&state, &grant, change).await,
    }
}

async fn topic_post(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let raw = body(raw, &state)?;
    let change = ContextChange::parse(&raw).map_err(Refusal::bad_request)?;
    if change.topic != topic {
        return Err(Refusal::bad_request(
            "the topic in the URL differs from event.hub.topic",
        ));
    }
    publish(&state, &grant, change).await
}

fn subscribe(
    state: &HubState,
    grant: &TokenGrant,
    mut req: SubscriptionRequest,
) -> Result<Response, Refusal> {
    if let Some(url) = req.channel_endpoint.take() {
        let token = state.endpoint_token(&url).ok_or_else(|| {
            Refusal::bad_request("hub.channel.endpoint is not an endpoint this hub issued")
        })?;
        req.channel_endpoint = Some(token.to_owned());
    }
    let mode = req.mode;
    let outcome = state.engine.subscribe(grant, req).map_err(|error| {
        let status = match error {
            SubscribeError::UnknownTopic | SubscribeError::UnknownEndpoint => StatusCode::NOT_FOUND,
            SubscribeError::NoReadScope => StatusCode::FORBIDDEN,
        };
        Refusal::new(status, error.to_string())
    })?;
    tracing::info!(client = %grant.client_id, ?mode, "subscription accepted");
    let body = json!({ "hub.channel.endpoint": state.endpoint_url(&outcome.endpoint) });
    Ok(json_response(StatusCode::ACCEPTED, body.to_string()))
}

async fn publish(
    state: &HubState,
    grant: &TokenGrant,
    change: ContextChange,
) -> Result<Response, Refusal> {
    let event = change.event.name;
    state.engine.publish(grant, change).map_err(|error| {
        let status = match error {
            PublishError::UnknownTopic => StatusCode::NOT_FOUND,
            PublishError::Forbidden(_) => StatusCode::FORBIDDEN,
            PublishError::Conflict(_) => StatusCode::CONFLICT,
            PublishError::Invalid(_) => StatusCode::BAD_REQUEST,
        };
        Refusal::new(status, error.to_string())
    })?;
    tracing::info!(client = %grant.client_id, event, "context change accepted");
    // Delivery has happened; the answer waits until the change is on record.
    if let Some(on_record) = &state.on_record {
        on_record().await;
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn topic_get(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
) -> Result<Response, Refusal> {
    let current = current_context(&state, &grant, &topic)?;
    Ok(json_response(StatusCode::OK, current.to_json()))
}

/// The STU2 shape of Get Current Context: the bare context array (opt-in, `hub.stu2_compat`).
async fn topic_get_stu2(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
) -> Result<Response, Refusal> {
    let current = current_context(&state, &grant, &topic)?;
    Ok(json_response(StatusCode::OK, current.context))
}

fn current_context(
    state: &HubState,
    grant: &TokenGrant,
    topic: &str,
) -> Result<CurrentContext, Refusal> {
    state
        .engine
        .current_context(grant, topic)
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "unknown topic"))
}

async fn websocket(
    State(state): State<HubState>,
    Path(endpoint): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The endpoint is checked before the upgrade: an unknown or busy endpoint gets no socket.
    let connection = match state.engine.connect(&endpoint) {
        Ok(connection) => connection,
        Err(error @ ConnectError::UnknownEndpoint) => {
            return text(StatusCode::NOT_FOUND, error.to_string());
        }
        Err(error @ ConnectError::AlreadyConnected) => {
            return text(StatusCode::CONFLICT, error.to_string());
        }
    };
    let engine = state.engine.clone();
    upgrade
        .max_message_size(state.engine.settings().max_body_bytes)
        .on_failed_upgrade({
            let engine = engine.clone();
            let endpoint = endpoint.clone();
            move |_| engine.socket_closed(&endpoint, Some(1000))
        })
        .on_upgrade(move |socket| run_socket(socket, connection, engine))
}

/// Drives one subscriber socket: writes queued frames, reads replies, pings, and closes when
/// the engine orders it or the peer goes away.
async fn run_socket(socket: WebSocket, mut connection: Connection, engine: Engine) {
    let (mut sink, mut stream) = socket.split();
    let ping_every = engine.settings().ping_interval();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let endpoint = connection.endpoint.clone();
    let close_code = loop {
        tokio::select! {
            biased;
            order = &mut connection.close => {
                if let Ok(CloseOrder { denial, code, reason }) = order {
                    if let Some(denial) = denial {
                        let _ = sink.send(Message::Text(denial)).await;
                    }
                    let frame = CloseFrame { code, reason: reason.into() };
                    let _ = sink.send(Message::Close(Some(frame))).await;
                }
                // The engine already removed the subscription.
                return;
            }
            frame = connection.frames.recv() => match frame {
                Some(frame) => {
                    if sink.send(Message::Text(frame)).await.is_err() {
                        break None;
                    }
                }
                None => return,
            },
            incoming = stream.next() => {
                last_heard = Instant::now();
                match incoming {
                    Some(Ok(Message::Text(text))) => engine.reply(&endpoint, text.as_str()),
                    // A close frame without a status is still an orderly goodbye, like 1000.
                    Some(Ok(Message::Close(frame))) => break Some(frame.map_or(1000, |f| f.code)),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => break None,
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::info!("a subscriber stopped answering pings; treating it as gone");
                    break None;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break None;
                }
            }
        }
    };
    engine.socket_closed(&endpoint, close_code);
}
