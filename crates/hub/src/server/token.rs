//! The local authorization server's token endpoint: client credentials (RFC 6749 §4.4) under
//! the rate limits, every outcome told to [`HubState::on_token`].

use super::*;

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
}

pub(super) async fn token(
    State(state): State<HubState>,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Response {
    let raw = match read_body(raw, &state) {
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
            tracing::info!(code = error.code(), "token request refused");
            token_refusal(&error)
        }
    }
}

/// Answers a token request and tells [`HubState::on_token`] either way.
pub(super) fn issue_token(
    state: &HubState,
    headers: &HeaderMap,
    raw: &[u8],
) -> Result<String, TokenError> {
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
pub(super) fn grant_token(
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
pub(super) fn authenticate_limited(
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
