//! Signing in to the site: SMART discovery, a token, and the session (`hub.url`, `hub.topic`)
//! that comes with it.

use super::LinkError;
use crate::config::UpstreamConfig;
use serde_json::Value;
use std::time::{Duration, Instant};

/// What the link signs in with.
pub(crate) struct Credentials {
    pub issuer: String,
    pub client_id: String,
    /// `client_credentials` with it; without it, the clinician signs in (a later step).
    pub secret: Option<String>,
    pub scopes: String,
    pub hub_url: Option<String>,
    pub topic: Option<String>,
}

impl Credentials {
    pub(crate) fn new(config: &UpstreamConfig, secret: Option<String>) -> Option<Self> {
        Some(Credentials {
            issuer: config.issuer.clone()?,
            client_id: config.client_id.clone(),
            secret,
            scopes: config.scopes.clone(),
            hub_url: config.hub_url.clone(),
            topic: config.topic.clone(),
        })
    }
}

/// A signed-in session with the site's hub.
#[derive(Clone)]
pub(crate) struct SiteSession {
    pub token: String,
    pub hub_url: String,
    pub topic: String,
    /// When the token ends (as the token response said; an hour when it did not).
    pub expires_at: Instant,
}

/// When a token response names no lifetime.
const ASSUMED_LIFETIME: Duration = Duration::from_secs(3600);

/// Discovers the token endpoint and gets a token.
pub(crate) async fn sign_in(
    http: &reqwest::Client,
    credentials: &Credentials,
) -> Result<SiteSession, LinkError> {
    let Some(secret) = &credentials.secret else {
        return Err(LinkError::SignInNeeded);
    };
    let discovery = format!(
        "{}/.well-known/smart-configuration",
        credentials.issuer.trim_end_matches('/')
    );
    let smart = get_json(http.get(&discovery)).await?;
    let token_endpoint = smart
        .get("token_endpoint")
        .and_then(Value::as_str)
        .ok_or_else(|| LinkError::Protocol(format!("{discovery} names no token_endpoint")))?;
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", credentials.scopes.as_str()),
    ];
    let started = Instant::now();
    let response = get_json(
        http.post(token_endpoint)
            .basic_auth(&credentials.client_id, Some(secret))
            .form(&form),
    )
    .await?;
    session_from(&response, credentials, started)
}

/// The session a token response describes, with the configured `hub_url`/`topic` where it
/// names none.
pub(crate) fn session_from(
    response: &Value,
    credentials: &Credentials,
    requested_at: Instant,
) -> Result<SiteSession, LinkError> {
    let text = |key: &str| {
        response
            .get(key)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    };
    let token = text("access_token")
        .ok_or_else(|| LinkError::Protocol("the token response has no access_token".into()))?;
    let hub_url = text("hub.url")
        .or_else(|| credentials.hub_url.clone())
        .ok_or_else(|| {
            LinkError::Protocol(
                "the token response has no hub.url, and upstream.hub_url is not set".into(),
            )
        })?;
    let topic = text("hub.topic")
        .or_else(|| credentials.topic.clone())
        .ok_or_else(|| {
            LinkError::Protocol(
                "the token response has no hub.topic, and upstream.topic is not set".into(),
            )
        })?;
    // Numbers or strings, as deployed servers send them.
    let lifetime = match response.get("expires_in") {
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .map(Duration::from_secs)
    .unwrap_or(ASSUMED_LIFETIME);
    Ok(SiteSession {
        token,
        hub_url,
        topic,
        expires_at: requested_at + lifetime,
    })
}

async fn get_json(request: reqwest::RequestBuilder) -> Result<Value, LinkError> {
    let response = request.send().await.map_err(LinkError::unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(LinkError::unreachable)?;
    if !status.is_success() {
        return Err(LinkError::Refused {
            status: status.as_u16(),
            body: super::excerpt(&body),
        });
    }
    serde_json::from_str(&body)
        .map_err(|e| LinkError::Protocol(format!("an answer that is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credentials() -> Credentials {
        Credentials {
            issuer: "https://ehr.example.org".into(),
            client_id: "lockstep".into(),
            secret: Some("a-long-secret".into()),
            scopes: "openid fhircast/*.read".into(),
            hub_url: None,
            topic: None,
        }
    }

    #[test]
    fn the_session_comes_from_the_token_response() {
        let now = Instant::now();
        let session = session_from(
            &json!({ "access_token": "t", "hub.url": "https://ehr/hub", "hub.topic": "abc", "expires_in": "120" }),
            &credentials(),
            now,
        )
        .unwrap();
        assert_eq!(
            (
                session.token.as_str(),
                session.hub_url.as_str(),
                session.topic.as_str()
            ),
            ("t", "https://ehr/hub", "abc")
        );
        assert_eq!(session.expires_at, now + Duration::from_secs(120));
    }

    #[test]
    fn the_configuration_fills_in_what_the_response_lacks_and_nothing_else() {
        let configured = Credentials {
            hub_url: Some("https://ehr/configured".into()),
            topic: Some("configured-topic".into()),
            ..credentials()
        };
        let now = Instant::now();
        let from_config = session_from(
            &json!({ "access_token": "t", "hub.topic": "" }),
            &configured,
            now,
        )
        .unwrap();
        assert_eq!(from_config.hub_url, "https://ehr/configured");
        assert_eq!(from_config.topic, "configured-topic");
        assert_eq!(from_config.expires_at, now + ASSUMED_LIFETIME);
        let from_response = session_from(
            &json!({ "access_token": "t", "hub.url": "https://ehr/hub", "hub.topic": "given" }),
            &configured,
            now,
        )
        .unwrap();
        assert_eq!(from_response.topic, "given");
        let missing = session_from(&json!({ "access_token": "t" }), &credentials(), now);
        assert!(matches!(missing, Err(LinkError::Protocol(why)) if why.contains("hub.url")));
    }
}
