//! The hub's HTTP + WebSocket server: the local SMART authorization server, discovery, the
//! FHIRcast hub endpoints, and one task per subscriber socket.
//!
//! Every refusal is a 4xx with a plain-text reason a developer can act on; nothing a client
//! sends can panic the process.

use crate::auth::{Authority, TokenError, TokenGrant};
use crate::connections::{self, ConnectionPolicy};
use crate::engine::{CurrentContext, Engine, PublishError, SubscribeError};
use crate::socket::OpenSockets;
use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use base64::Engine as _;
use lockstep_fhircast::{ContextChange, EventSpec, FHIRCAST_VERSION, SubscriptionRequest};
use serde::Deserialize;
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use crate::limits::{Limits, RateLimited};
pub use crate::tls::{TlsConfig, TlsError};

/// The path of the hub under the server root: `hub.url` is `{origin}/fhircast`.
pub const HUB_PATH: &str = "/fhircast";
/// Where OHIF-style clients expect the hub; serves the same endpoints as [`HUB_PATH`].
pub const ALIAS_PATH: &str = "/api/hub";
/// The local authorization server's token endpoint.
pub const TOKEN_PATH: &str = "/auth/token";

/// Everything the handlers share. Cloned for every extractor and layer of every request, so
/// every field is a handle, never owned text.
#[derive(Clone)]
pub struct HubState {
    pub engine: Engine,
    pub authority: Arc<Authority>,
    /// The signed-in clinician's topic: the one every token is bound to.
    pub session_topic: Arc<str>,
    /// `http://127.0.0.1:<port>` (`https://<hub.host_name>:<port>` with TLS): every URL the hub
    /// hands out is built from this, never from a request's Host header.
    pub origin: Arc<str>,
    /// `Host` header values accepted (DNS-rebinding guard).
    pub allowed_hosts: Arc<[String]>,
    /// More routes served behind the same guards (Host, Origin, body limit), e.g. the agent's
    /// history API; handlers authenticate with [`Authenticated`].
    pub extension: Router<HubState>,
    /// Awaited after an accepted change is delivered and before it is answered 2xx: the agent
    /// makes it wait for the change's history row, so what was acknowledged is on record. An
    /// `Err` (why it is not on record) is answered 503 instead.
    pub on_record: Option<OnRecord>,
    /// Told of every token request's outcome (the agent's audit trail); `None` tells no one.
    pub on_token: Option<OnToken>,
    /// Per-client request rates (`hub.requests_per_second_per_client`).
    pub limits: Arc<Limits>,
    /// The subscriber sockets still open (a stopping hub lets them finish closing).
    pub(crate) sockets: OpenSockets,
    /// The certificate served when TLS is configured; `serve` loads it from the configured
    /// files when this is `None`.
    pub tls: Option<TlsConfig>,
}

/// See [`HubState::on_token`]: the client id the request claimed (empty when it named none),
/// and the granted scopes or why it was refused. Called on the request's task: it must not
/// block.
pub type OnToken = Arc<dyn Fn(&str, Result<&str, &str>) + Send + Sync>;

/// See [`HubState::on_record`].
pub type OnRecord =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

impl HubState {
    pub fn new(
        engine: Engine,
        authority: Arc<Authority>,
        session_topic: Arc<str>,
        port: u16,
    ) -> Self {
        let settings = engine.settings();
        let scheme = if settings.tls_enabled() {
            "https"
        } else {
            "http"
        };
        let mut allowed_hosts = vec![
            format!("127.0.0.1:{port}"),
            format!("localhost:{port}"),
            format!("[::1]:{port}"),
        ];
        if let Some(host) = &settings.host_name {
            allowed_hosts.push(format!("{host}:{port}"));
        }
        authority.set_max_tokens_per_client(settings.max_tokens_per_client);
        let limits = Arc::new(Limits::new(
            settings.requests_per_second_per_client,
            settings.request_burst_per_client,
        ));
        HubState {
            origin: format!("{scheme}://{}:{port}", settings.host()).into(),
            allowed_hosts: allowed_hosts.into(),
            extension: Router::new(),
            on_record: None,
            on_token: None,
            limits,
            sockets: OpenSockets::default(),
            tls: None,
            engine,
            authority,
            session_topic,
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
        // `hub.url/` (sandbox.js's default) answers as `hub.url` does.
        .route(&format!("{HUB_PATH}/"), post(hub_post))
        .route(&format!("{ALIAS_PATH}/"), post(hub_post))
        .merge(state.extension.clone())
        .fallback(|| async { text(StatusCode::NOT_FOUND, "no such endpoint on this hub") })
        .layer(DefaultBodyLimit::max(settings.max_body_bytes))
        .layer(cors(settings))
        .layer(middleware::from_fn_with_state(state.clone(), guard_request))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            request_deadline,
        ))
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
        .route("/ws/{endpoint}", get(crate::socket::websocket))
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
    let settings = state.engine.settings();
    let tls = match &state.tls {
        Some(tls) => Some(tls.clone()),
        None if settings.tls_enabled() => {
            Some(TlsConfig::load(settings).map_err(std::io::Error::other)?)
        }
        None => None,
    };
    let policy = Arc::new(ConnectionPolicy::new(
        settings.header_read_timeout(),
        settings.max_connections,
        tls,
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut servers = Vec::new();
    for listener in listeners {
        servers.push(tokio::spawn(connections::serve_listener(
            listener,
            app.clone(),
            policy.clone(),
            stop_rx.clone(),
        )));
    }
    shutdown.await;
    state.engine.close_all();
    let _ = stop_tx.send(true);
    for server in servers {
        server.await.map_err(std::io::Error::other)??;
    }
    policy.drained().await;
    // Each socket sends its denial and Close and waits (bounded) for the app's Close.
    state.sockets.all_closed(settings.ack_timeout()).await;
    Ok(())
}

pub(crate) fn text(status: StatusCode, message: impl Into<String>) -> Response {
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
    /// Seconds for `Retry-After` (429).
    retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Refusal {
            status,
            message: message.into(),
            retry_after: None,
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
        if let Some(seconds) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

impl From<RateLimited> for Refusal {
    fn from(limited: RateLimited) -> Self {
        Refusal {
            status: StatusCode::TOO_MANY_REQUESTS,
            retry_after: Some(limited.retry_after.as_secs()),
            message: limited.to_string(),
        }
    }
}

/// Answers 408 and closes the connection when a request (its body included) is not read and
/// answered in time: a client that trickles its body holds a connection no longer than this.
async fn request_deadline(State(state): State<HubState>, request: Request, next: Next) -> Response {
    let limit = state.engine.settings().request_timeout();
    match tokio::time::timeout(limit, next.run(request)).await {
        Ok(response) => response,
        Err(_) => {
            let mut response = text(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not received within {} s (hub.request_timeout_seconds)",
                    limit.as_secs()
                ),
            );
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            response
        }
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
    let allowed = |host: &str| {
        state
            .allowed_hosts
            .iter()
            .any(|h| h.eq_ignore_ascii_case(host))
    };
    // A second Host, or an absolute request target naming another authority, would let one
    // value be checked and another one used.
    let single_host = headers.get_all(header::HOST).iter().count() == 1;
    let target_ok = request
        .uri()
        .authority()
        .is_none_or(|authority| allowed(authority.as_str()));
    if !(single_host && target_ok && host.is_some_and(allowed)) {
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "unexpected Host header: this hub answers only on its loopback address",
        );
    }
    // Refused on its headers, before the body is read: a client that sent `Expect:
    // 100-continue` is told 413 at once instead of being invited to send it.
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let limit = state.engine.settings().max_body_bytes;
    if declared.is_some_and(|bytes| bytes > limit as u64) {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("the request body is larger than this hub accepts ({limit} bytes)"),
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
    // A valid token is charged to its client; a wrong one to the allowance shared by every
    // failed attempt, so guessing is slow and never eats into an honest client's rate.
    match state.authority.verify(token.trim()) {
        Some(grant) => {
            state.limits.client(&grant.client_id)?;
            Ok(grant)
        }
        None => {
            state.limits.unauthenticated()?;
            Err(unauthorized("invalid or expired access token"))
        }
    }
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
        "issuer": &*state.origin,
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
pub(crate) struct TokenForm {
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
                TokenError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::BAD_REQUEST,
            };
            tracing::info!(code = error.code(), "token request refused");
            let body = json!({ "error": error.code(), "error_description": error.to_string() });
            let mut response = json_response(status, body.to_string());
            if let TokenError::RateLimited(limited) = &error {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(limited.retry_after.as_secs()),
                );
            }
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

/// Answers a token request and tells [`HubState::on_token`] either way.
fn issue_token(state: &HubState, headers: &HeaderMap, raw: &[u8]) -> Result<String, TokenError> {
    let mut claimed = None;
    let result = grant_token(state, headers, raw, &mut claimed);
    if let Some(on_token) = &state.on_token {
        let client_id = claimed.as_deref().unwrap_or_default();
        match &result {
            Ok((_, scope)) => on_token(client_id, Ok(scope)),
            Err(e) => on_token(client_id, Err(&e.to_string())),
        }
    }
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
    let client = authenticate_limited(state, &client_id, &secret)?;
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
        // OHIF's FHIRcast service reads `topic`; it costs nothing to say it twice.
        "topic": &*issued.topic,
    })
    .to_string();
    Ok((body, issued.scope))
}

/// Checks a client's secret under the rate limits: wrong secrets for a registered client are
/// counted against it (after a few, its secret is not even checked for a while), wrong ones
/// for unknown clients against the shared allowance, and a success against the client's rate.
fn authenticate_limited(
    state: &HubState,
    client_id: &str,
    secret: &str,
) -> Result<crate::ClientRegistration, TokenError> {
    let limits = &state.limits;
    let registered = state.authority.is_registered(client_id);
    if registered {
        limits
            .may_try_secret(client_id)
            .map_err(TokenError::RateLimited)?;
    }
    match state.authority.authenticate(client_id, secret) {
        Ok(client) => {
            limits
                .client(&client.client_id)
                .map_err(TokenError::RateLimited)?;
            Ok(client.clone())
        }
        Err(error) => {
            if registered {
                limits.secret_failed(client_id);
                tracing::warn!(client = %client_id, "wrong client secret");
            } else {
                limits.unauthenticated().map_err(TokenError::RateLimited)?;
            }
            Err(error)
        }
    }
}

/// Reads the token form, refusing repeated parameters (RFC 6749 §3.2).
pub(crate) fn serde_urlencoded_form(raw: &[u8]) -> Result<TokenForm, TokenError> {
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
pub(crate) fn decode_basic(encoded: &str) -> Result<(String, String), TokenError> {
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
pub(crate) enum HubPost {
    Subscription(SubscriptionRequest),
    ContextChange(ContextChange),
}

pub(crate) fn classify(headers: &HeaderMap, raw: &[u8]) -> Result<HubPost, Refusal> {
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
    if !may_name_hub_mode(raw) {
        return ContextChange::parse(raw)
            .map(HubPost::ContextChange)
            .map_err(Refusal::bad_request);
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

/// Whether a JSON body may have a `hub.mode` member. The key is spelled either as the bytes
/// `"hub.mode"` or with a `\u` escape; a body with neither is a context change, and is parsed
/// once instead of being read twice (every publish comes this way).
fn may_name_hub_mode(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"\"hub.mode\"").is_some()
        || memchr::memmem::find(raw, b"\\u").is_some()
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
    if !req.ignored_events.is_empty() {
        tracing::info!(
            client = %grant.client_id,
            ignored = %req.ignored_events.join(","),
            "subscription names events this hub does not support; granted the others"
        );
    }
    let outcome = state.engine.subscribe(grant, req).map_err(|error| {
        let status = match error {
            SubscribeError::UnknownTopic | SubscribeError::UnknownEndpoint => StatusCode::NOT_FOUND,
            SubscribeError::NoReadScope => StatusCode::FORBIDDEN,
            SubscribeError::TooManySubscriptions(_) => StatusCode::TOO_MANY_REQUESTS,
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
            PublishError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        };
        Refusal::new(status, error.to_string())
    })?;
    tracing::info!(client = %grant.client_id, event, "context change accepted");
    // Delivery has happened; the answer waits until the change is on record. A 2xx means
    // recorded: a change delivered but not on record is told so.
    if let Some(on_record) = &state.on_record
        && let Err(why) = on_record().await
    {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{event} was relayed but is not on record: {why}"),
        ));
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
