//! The hub's HTTP + WebSocket server: the local SMART authorization server, discovery, the
//! FHIRcast hub endpoints; the socket task is in [`crate::socket`].
//!
//! Every refusal is a 4xx with a plain-text reason a developer can act on (one mapping from
//! each refusal to its status, in [`refusal`]); nothing a client sends can panic the process.

mod authorize;
mod discovery;
mod guards;
mod hub;
mod refusal;
mod token;

pub use guards::Authenticated;
pub(crate) use hub::classify;
pub use refusal::Refusal;
pub(crate) use refusal::text;
pub(crate) use token::{decode_basic, serde_urlencoded_form};

use discovery::{fhircast_configuration, smart_configuration};
use guards::{cors, guard_request, read_body, request_deadline};
use hub::{hub_post, topic_get, topic_get_stu2, topic_post};
use refusal::{json_response, token_refusal};
use token::token;

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

/// The local authorization server's authorization endpoint (the code grant, with PKCE).
pub const AUTHORIZE_PATH: &str = "/auth/authorize";

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
    /// Told of every authenticated request to the hub endpoints that is refused (a malformed
    /// event, a conflict, a scope it lacks): the agent's report cards.
    pub on_refused: Option<OnRefused>,
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

/// See [`HubState::on_refused`]: the client, the status it was answered, and why. Called on
/// the request's task: it must not block.
pub type OnRefused = Arc<dyn Fn(&TokenGrant, u16, &str) + Send + Sync>;

/// See [`HubState::on_record`]: told the answered change's event id.
pub type OnRecord =
    Arc<dyn Fn(Arc<str>) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

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
            on_refused: None,
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
        .route(AUTHORIZE_PATH, get(authorize::authorize))
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
