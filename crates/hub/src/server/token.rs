//! The local authorization server's token endpoint: client credentials (RFC 6749 §4.4), the
//! authorization code with PKCE (§4.1.3, RFC 7636) and refresh tokens (§6), under the rate
//! limits, every outcome told to [`HubState::on_token`].

use super::*;

#[derive(Deserialize)]
pub(crate) struct TokenForm {
    grant_type: Option<String>,
    scope: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    code: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
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
    let public_allowed = match form.grant_type.as_deref() {
        Some("client_credentials") => false,
        Some("authorization_code" | "refresh_token") => true,
        Some(_) => return Err(TokenError::UnsupportedGrantType),
        None => return Err(TokenError::InvalidRequest("missing grant_type".into())),
    };
    let client = authenticated_client(state, headers, &form, claimed, public_allowed)?;
    let grants = state.authority.grants();
    let (granted, scope, code) = match form.grant_type.as_deref() {
        Some("authorization_code") => {
            let required = |value: &Option<String>, name: &str| {
                value
                    .clone()
                    .ok_or_else(|| TokenError::InvalidRequest(format!("missing {name}")))
            };
            let code = required(&form.code, "code")?;
            let redirect_uri = required(&form.redirect_uri, "redirect_uri")?;
            let verifier = required(&form.code_verifier, "code_verifier")?;
            let granted = grants
                .redeem(&code, &client.client_id, &redirect_uri, &verifier)
                .map_err(|refused| {
                    let (error, revoke) = *refused;
                    if let Some(issued) = revoke {
                        state.authority.revoke(&issued.access);
                        tracing::warn!(client = %client.client_id, "an authorization code was used twice: its tokens are revoked");
                    }
                    error
                })?;
            let scope = granted.scope.clone();
            (Some(granted), scope, Some(code))
        }
        Some("refresh_token") => {
            let token = form
                .refresh_token
                .as_deref()
                .ok_or_else(|| TokenError::InvalidRequest("missing refresh_token".into()))?;
            let granted = grants.refresh(token, &client.client_id)?;
            // What the sign-in granted, never more (§6).
            let scope = granted.scope.clone();
            (Some(granted), scope, None)
        }
        _ => (None, form.scope.clone(), None),
    };
    let issued = state
        .authority
        .issue(&client, scope.as_deref(), state.session_topic.clone())?;
    tracing::info!(client = %client.client_id, scope = %issued.scope, "token issued");
    let mut body = json!({
        "access_token": issued.access_token,
        "token_type": "Bearer",
        "expires_in": issued.expires_in,
        "scope": issued.scope,
        "hub.url": state.hub_url(),
        "hub.topic": &*issued.topic,
        // OHIF's FHIRcast service reads `topic`; it costs nothing to say it twice.
        "topic": &*issued.topic,
    });
    if let Some(granted) = granted {
        if let Some(launch) = &granted.launch {
            if let Some(patient) = &launch.patient {
                body["patient"] = patient.as_str().into();
            }
            if !launch.fhir_context.is_empty() {
                body["fhirContext"] = launch
                    .fhir_context
                    .iter()
                    .map(|reference| json!({ "reference": reference }))
                    .collect();
            }
        }
        let (refresh, refresh_hash) = grants.new_refresh(granted);
        body["refresh_token"] = refresh.into();
        if let Some(code) = code {
            let access = crate::auth::Authority::token_hash(&issued.access_token);
            grants.redeemed(
                &code,
                crate::grants::Issued {
                    access,
                    refresh: refresh_hash,
                },
            );
        }
    }
    Ok((body.to_string(), issued.scope))
}

/// The client a token request is from: authenticated by its secret (Basic or in the form),
/// or, where the grant allows a public client, named by `client_id` and registered without a
/// secret (it proves itself with PKCE or its refresh token).
fn authenticated_client(
    state: &HubState,
    headers: &HeaderMap,
    form: &TokenForm,
    claimed: &mut Option<String>,
    public_allowed: bool,
) -> Result<crate::ClientRegistration, TokenError> {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .map(decode_basic)
        .transpose()?;
    let (client_id, secret) = match (basic, form.client_secret.clone()) {
        (Some(_), Some(_)) => {
            return Err(TokenError::InvalidRequest(
                "use one client authentication method, not both Basic and client_secret".into(),
            ));
        }
        (Some(pair), None) => pair,
        (None, Some(secret)) => (
            form.client_id.clone().ok_or(TokenError::InvalidClient)?,
            secret,
        ),
        (None, None) => {
            let client_id = form.client_id.clone().ok_or(TokenError::InvalidClient)?;
            *claimed = Some(client_id.clone());
            let public = state
                .authority
                .client(&client_id)
                .filter(|c| c.is_public() && public_allowed);
            let Some(client) = public else {
                state
                    .limits
                    .unauthenticated()
                    .map_err(TokenError::RateLimited)?;
                return Err(TokenError::InvalidClient);
            };
            state
                .limits
                .client(&client.client_id)
                .map_err(TokenError::RateLimited)?;
            return Ok(client);
        }
    };
    *claimed = Some(client_id.clone());
    authenticate_limited(state, &client_id, &secret)
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
        code: None,
        redirect_uri: None,
        code_verifier: None,
        refresh_token: None,
    };
    for (key, value) in form_urlencoded::parse(raw) {
        let slot = match &*key {
            "grant_type" => &mut form.grant_type,
            "scope" => &mut form.scope,
            "client_id" => &mut form.client_id,
            "client_secret" => &mut form.client_secret,
            "code" => &mut form.code,
            "redirect_uri" => &mut form.redirect_uri,
            "code_verifier" => &mut form.code_verifier,
            "refresh_token" => &mut form.refresh_token,
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
