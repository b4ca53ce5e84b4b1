//! Signing in to the site: SMART discovery, a token, and the session (`hub.url`, `hub.topic`)
//! that comes with it. With a client secret, `client_credentials` (a kiosk, a service);
//! without one, the clinician signs in: authorization code with PKCE in the browser, back to
//! the agent's own port, and from then on the refresh token (kept by [`RefreshStore`]).

use super::LinkError;
use super::refresh::RefreshStore;
use crate::config::UpstreamConfig;
use parking_lot::Mutex;
use serde_json::Value;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Where the site sends the clinician back, under the agent's origin.
pub const CALLBACK_PATH: &str = "/lockstep/upstream/callback";

/// How long a sign-in started in the browser may take.
const SIGN_IN_WINDOW: Duration = Duration::from_secs(600);

/// What the link signs in with.
pub(crate) struct Credentials {
    pub issuer: String,
    pub client_id: String,
    /// `client_credentials` with it; without it, the clinician signs in.
    pub secret: Option<String>,
    pub scopes: String,
    pub hub_url: Option<String>,
    pub topic: Option<String>,
    /// The agent's own callback (`{origin}/lockstep/upstream/callback`).
    pub redirect_uri: String,
    pub refresh: Arc<RefreshStore>,
    /// The sign-in under way in the browser: its `state` and PKCE verifier.
    pending: Mutex<Option<(String, String, Instant)>>,
}

impl Credentials {
    pub(crate) fn new(
        config: &UpstreamConfig,
        secret: Option<String>,
        origin: &str,
        refresh: RefreshStore,
    ) -> Option<Self> {
        Some(Credentials {
            issuer: config.issuer.clone()?,
            client_id: config.client_id.clone(),
            secret,
            scopes: config.scopes.clone(),
            hub_url: config.hub_url.clone(),
            topic: config.topic.clone(),
            redirect_uri: format!("{origin}{CALLBACK_PATH}"),
            refresh: Arc::new(refresh),
            pending: Mutex::new(None),
        })
    }

    async fn stored_refresh_token(&self) -> Option<String> {
        let store = self.refresh.clone();
        tokio::task::spawn_blocking(move || store.get())
            .await
            .ok()
            .flatten()
    }

    async fn keep_refresh_token(&self, token: Option<&str>) {
        let (store, token) = (self.refresh.clone(), token.map(str::to_owned));
        let _ = tokio::task::spawn_blocking(move || match token {
            Some(token) => store.set(&token),
            None => store.delete(),
        })
        .await;
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

async fn discover(http: &reqwest::Client, credentials: &Credentials) -> Result<Value, LinkError> {
    let discovery = format!(
        "{}/.well-known/smart-configuration",
        credentials.issuer.trim_end_matches('/')
    );
    get_json(http.get(&discovery)).await
}

fn endpoint(smart: &Value, key: &str) -> Result<String, LinkError> {
    smart
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| {
            LinkError::Protocol(format!("the site's SMART configuration names no {key}"))
        })
}

/// Gets a token: with the secret, or with the clinician's refresh token.
pub(crate) async fn sign_in(
    http: &reqwest::Client,
    credentials: &Credentials,
) -> Result<SiteSession, LinkError> {
    let refresh_token = match &credentials.secret {
        Some(_) => None,
        None => Some(
            credentials
                .stored_refresh_token()
                .await
                .ok_or(LinkError::SignInNeeded)?,
        ),
    };
    let token_endpoint = endpoint(&discover(http, credentials).await?, "token_endpoint")?;
    let started = Instant::now();
    let request = match (&credentials.secret, &refresh_token) {
        (Some(secret), _) => http
            .post(&token_endpoint)
            .basic_auth(&credentials.client_id, Some(secret))
            .form(&[
                ("grant_type", "client_credentials"),
                ("scope", credentials.scopes.as_str()),
            ]),
        (None, Some(refresh)) => http.post(&token_endpoint).form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.as_str()),
            ("client_id", credentials.client_id.as_str()),
        ]),
        (None, None) => return Err(LinkError::SignInNeeded),
    };
    let response = match get_json(request).await {
        // The site no longer takes the refresh token (expired, revoked): sign in again.
        Err(LinkError::Refused {
            status: 400 | 401, ..
        }) if refresh_token.is_some() => {
            credentials.keep_refresh_token(None).await;
            return Err(LinkError::SignInNeeded);
        }
        other => other?,
    };
    if refresh_token.is_some() {
        // Rotated: the new one replaces the old (some sites keep the old one valid).
        if let Some(next) = response.get("refresh_token").and_then(Value::as_str) {
            credentials.keep_refresh_token(Some(next)).await;
        }
    }
    session_from(&response, credentials, started)
}

/// Starts a sign-in in the browser: the site's authorization URL, with a fresh `state` and
/// PKCE challenge kept for [`complete`].
pub(crate) async fn begin(
    http: &reqwest::Client,
    credentials: &Credentials,
) -> Result<String, LinkError> {
    let authorize = endpoint(
        &discover(http, credentials).await?,
        "authorization_endpoint",
    )?;
    let state = uuid::Uuid::new_v4().simple().to_string();
    // 64 characters of two random UUIDs: within PKCE's 43 to 128, about 244 bits.
    let verifier = format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let challenge = lockstep_hub::grants::s256(&verifier);
    let mut url = reqwest::Url::parse(&authorize)
        .map_err(|e| LinkError::Protocol(format!("authorization_endpoint: {e}")))?;
    url.query_pairs_mut()
        .append_pair("response_type", "code")
        .append_pair("client_id", &credentials.client_id)
        .append_pair("redirect_uri", &credentials.redirect_uri)
        .append_pair("scope", &credentials.scopes)
        .append_pair("state", &state)
        .append_pair("code_challenge", &challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("aud", &credentials.issuer);
    *credentials.pending.lock() = Some((state, verifier, Instant::now()));
    Ok(url.to_string())
}

/// Finishes a sign-in: the `state` must be the one [`begin`] made (once, and in time), and the
/// code is exchanged with its verifier; the refresh token is kept.
pub(crate) async fn complete(
    http: &reqwest::Client,
    credentials: &Credentials,
    code: &str,
    state: &str,
) -> Result<(), LinkError> {
    let pending = credentials.pending.lock().take();
    let verifier = match pending {
        Some((expected, verifier, at)) if expected == state && at.elapsed() < SIGN_IN_WINDOW => {
            verifier
        }
        _ => {
            return Err(LinkError::Protocol(
                "this sign-in was not started here, or took too long: start it again".into(),
            ));
        }
    };
    let token_endpoint = endpoint(&discover(http, credentials).await?, "token_endpoint")?;
    let response = get_json(http.post(&token_endpoint).form(&[
        ("grant_type", "authorization_code"),
        ("code", code),
        ("redirect_uri", credentials.redirect_uri.as_str()),
        ("code_verifier", verifier.as_str()),
        ("client_id", credentials.client_id.as_str()),
    ]))
    .await?;
    let refresh = response
        .get("refresh_token")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            LinkError::Protocol(
                "the site gave no refresh token: ask its administrators to allow offline access for Lockstep".into(),
            )
        })?;
    credentials.keep_refresh_token(Some(refresh)).await;
    Ok(())
}

/// Forgets the clinician's sign-in.
pub(crate) async fn sign_out(credentials: &Credentials) {
    credentials.keep_refresh_token(None).await;
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
    let body = super::answer_of(request).await?;
    serde_json::from_str(&body)
        .map_err(|e| LinkError::Protocol(format!("an answer that is not JSON: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn credentials() -> Credentials {
        let config = UpstreamConfig {
            issuer: Some("https://ehr.example.org".into()),
            scopes: "openid fhircast/*.read".into(),
            ..UpstreamConfig::default()
        };
        let store = RefreshStore::new(
            Arc::new(crate::secrets::MemoryStore::default()),
            "https://ehr.example.org",
        );
        Credentials::new(
            &config,
            Some("a-long-secret".into()),
            "http://127.0.0.1:9",
            store,
        )
        .unwrap()
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
        assert_eq!(
            configured.redirect_uri,
            "http://127.0.0.1:9/lockstep/upstream/callback"
        );
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
