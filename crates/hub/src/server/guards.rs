//! What every request passes before a handler sees it: its deadline, the Host and Origin
//! checks, CORS, the body limit, and the bearer token.

use super::*;

/// Answers 408 and closes the connection when a request (its body included) is not read and
/// answered in time: a client that trickles its body holds a connection no longer than this.
pub(super) async fn request_deadline(
    State(state): State<HubState>,
    request: Request,
    next: Next,
) -> Response {
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

/// Refuses requests a web page could have sent without the user's apps asking:
/// - a `Host` that is not the hub's own loopback name (a page that rebinds a DNS name to
///   127.0.0.1 still sends its own name);
/// - an `Origin` that is not configured in `hub.allowed_origins` (cross-site requests and
///   WebSocket upgrades; native apps send no Origin).
pub(super) async fn guard_request(
    State(state): State<HubState>,
    request: Request,
    next: Next,
) -> Response {
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
    if let Some(bytes) = declared.filter(|bytes| *bytes > limit as u64) {
        let expects_continue = headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        if !expects_continue && bytes <= lingering_limit(limit) {
            discard(request.into_body()).await;
        }
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

/// The largest refused body the hub still reads (and drops) before answering 413. A client
/// already sending a body it announced would otherwise have its connection reset under it
/// and never read the answer: it would see a broken connection, not "too large". Beyond this
/// (an abuser's gigabyte), the hub answers at once and lets the connection break.
fn lingering_limit(limit: usize) -> u64 {
    (limit as u64).saturating_mul(16).max(16 * 1024 * 1024)
}

/// Reads a body to its end and drops it, a frame at a time (the request deadline bounds it).
async fn discard(body: axum::body::Body) {
    use futures_util::StreamExt;
    let mut frames = body.into_data_stream();
    while let Some(Ok(_)) = frames.next().await {}
}

/// CORS for the configured web origins only; none by default.
pub(super) fn cors(settings: &crate::HubSettings) -> CorsLayer {
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
pub(super) fn read_body(
    body: Result<Bytes, BytesRejection>,
    state: &HubState,
) -> Result<Bytes, Refusal> {
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

pub(super) fn bearer(headers: &HeaderMap, state: &HubState) -> Result<Arc<TokenGrant>, Refusal> {
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
