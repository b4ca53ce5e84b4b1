//! The authorization endpoint (RFC 6749 §4.1.1, with PKCE): the clinician, signed in to this
//! workstation as the hub's own OS user, approves by asking. A request naming an unknown client
//! or a redirect URI it did not register is answered here, never redirected; every other
//! refusal goes back to the registered redirect URI with `error` and the `state`.

use super::*;
use crate::grants::{AuthorizeError, AuthorizeRequest, Grants};
use axum::extract::RawQuery;

pub(super) async fn authorize(
    State(state): State<HubState>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = match single_valued(query.as_deref().unwrap_or_default()) {
        Ok(params) => params,
        Err(why) => return text(StatusCode::BAD_REQUEST, why),
    };
    let get = |key: &str| params.get(key).cloned();
    let Some(client) = get("client_id").and_then(|id| state.authority.client(&id)) else {
        return text(StatusCode::BAD_REQUEST, "unknown client_id");
    };
    let Some(redirect_uri) =
        get("redirect_uri").filter(|uri| Grants::redirect_allowed(&client, uri))
    else {
        return text(
            StatusCode::BAD_REQUEST,
            "redirect_uri is not one this client registered (they must match exactly)",
        );
    };
    let state_param = get("state");
    let decided = decide(&state, &client, &params, redirect_uri.clone());
    let mut answer = Vec::new();
    match decided {
        Ok(code) => {
            tracing::info!(client = %client.client_id, "authorization code issued");
            answer.push(("code", code));
        }
        Err(error) => {
            tracing::info!(client = %client.client_id, code = error.code(), "authorization refused");
            answer.push(("error", error.code().to_owned()));
            answer.push(("error_description", error.to_string()));
        }
    }
    if let Some(s) = state_param {
        answer.push(("state", s));
    }
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(answer)
        .finish();
    let separator = if redirect_uri.contains('?') { '&' } else { '?' };
    let location = format!("{redirect_uri}{separator}{query}");
    let mut response = StatusCode::FOUND.into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

fn decide(
    state: &HubState,
    client: &crate::ClientRegistration,
    params: &std::collections::HashMap<String, String>,
    redirect_uri: String,
) -> Result<String, AuthorizeError> {
    if params.get("response_type").map(String::as_str) != Some("code") {
        return Err(AuthorizeError::UnsupportedResponseType);
    }
    if params.get("code_challenge_method").map(String::as_str) != Some("S256") {
        return Err(AuthorizeError::InvalidRequest(
            "code_challenge_method must be S256".into(),
        ));
    }
    let challenge = params.get("code_challenge").cloned().ok_or_else(|| {
        AuthorizeError::InvalidRequest("code_challenge is required (PKCE)".into())
    })?;
    // SMART: `aud` names the server the app means to use; a token for another is refused.
    if let Some(aud) = params.get("aud")
        && aud.trim_end_matches('/') != &*state.origin
        && *aud != state.hub_url()
    {
        return Err(AuthorizeError::InvalidRequest(format!(
            "aud `{aud}` is not this server ({})",
            state.origin
        )));
    }
    state.authority.grants().authorize(
        client,
        AuthorizeRequest {
            redirect_uri,
            code_challenge: challenge,
            scope: params.get("scope").cloned(),
            launch: params.get("launch").cloned(),
        },
    )
}

/// The query's parameters, each given once (RFC 6749 §3.1).
fn single_valued(query: &str) -> Result<std::collections::HashMap<String, String>, String> {
    let mut params = std::collections::HashMap::new();
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        if params
            .insert(key.clone().into_owned(), value.into_owned())
            .is_some()
        {
            return Err(format!("parameter `{key}` appears more than once"));
        }
    }
    Ok(params)
}
