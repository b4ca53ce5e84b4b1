//! The local SMART authorization server: registered clients, `client_credentials` tokens bound
//! to a client and a topic, and their verification.
//!
//! Tokens are opaque 256-bit random strings. Only their SHA-256 is kept, so the token table
//! neither holds usable secrets nor offers a timing oracle on lookup; client secrets are
//! compared in constant time.

use crate::grants::Grants;
use lockstep_fhircast::ScopeSet;
use parking_lot::{Mutex, RwLock};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// An application allowed to join the clinician's session.
#[derive(Clone)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: String,
    /// The most this client may be granted.
    pub scopes: ScopeSet,
    /// Shown in the UI and in SyncErrors.
    pub name: String,
    /// Whether the app answers every event with `{id, status}`. False only for apps known never
    /// to reply (OHIF's FHIRcast service): their events are then not awaited, and their silence
    /// raises no SyncError.
    pub acknowledges: bool,
    /// Where its authorization codes may be sent (exact matches only); none: it cannot use
    /// the authorization code grant.
    pub redirect_uris: Vec<String>,
}

impl ClientRegistration {
    /// A public client (a SMART app in a browser) has no secret: it proves itself with PKCE.
    pub fn is_public(&self) -> bool {
        self.client_secret.is_empty()
    }
}

// Hand-written so that a stray `{:?}` in a log line never prints a secret.
impl std::fmt::Debug for ClientRegistration {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientRegistration")
            .field("client_id", &self.client_id)
            .field("client_secret", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("acknowledges", &self.acknowledges)
            .field("redirect_uris", &self.redirect_uris)
            .finish()
    }
}

/// What a valid access token stands for.
#[derive(Debug, Clone)]
pub struct TokenGrant {
    pub client_id: String,
    pub client_name: String,
    /// The one topic this token may use.
    pub topic: Arc<str>,
    pub scopes: ScopeSet,
    pub expires_at: Instant,
    /// From the client's registration: whether its events are awaited.
    pub acknowledges: bool,
}

impl TokenGrant {
    /// The agent's own grant for one change it makes itself (a reopen from history, what the
    /// OS session says): client `lockstep`, named as `client_name` in history, allowed to
    /// write `event` alone, for a minute.
    pub fn agent(client_name: String, topic: Arc<str>, event: &str) -> Self {
        TokenGrant {
            client_id: "lockstep".into(),
            client_name,
            topic,
            scopes: ScopeSet::parse(&format!("fhircast/{event}.write")).unwrap_or_default(),
            expires_at: Instant::now() + Duration::from_secs(60),
            acknowledges: true,
        }
    }

    pub fn remaining(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }
}

/// A token response's content.
#[derive(Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub topic: Arc<str>,
}

impl std::fmt::Debug for IssuedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedToken")
            .field("access_token", &"<redacted>")
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

/// Why a token request failed, as an OAuth error code and description (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_client: unknown client or wrong secret")]
    InvalidClient,
    #[error(
        "unsupported_grant_type: client_credentials, authorization_code and refresh_token are supported"
    )]
    UnsupportedGrantType,
    /// A code or refresh token that is unknown, expired, used, or not this client's.
    #[error("invalid_grant: {0}")]
    InvalidGrant(String),
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
    /// Too many requests from this client, or too many wrong secrets tried for it.
    #[error("temporarily_unavailable: {0}")]
    RateLimited(crate::limits::RateLimited),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidClient => "invalid_client",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidGrant(_) => "invalid_grant",
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidScope(_) => "invalid_scope",
            TokenError::RateLimited(_) => "temporarily_unavailable",
        }
    }
}

type TokenHash = [u8; 32];

/// Clients and live tokens.
pub struct Authority {
    /// Replaced whole when the registered apps change (the settings window adds and removes).
    clients: RwLock<Vec<ClientRegistration>>,
    tokens: Mutex<HashMap<TokenHash, Arc<TokenGrant>>>,
    lifetime: Duration,
    /// Live tokens one client may hold; the hub sets it from `hub.max_tokens_per_client`.
    max_per_client: AtomicUsize,
    /// Authorization codes and refresh tokens.
    grants: Grants,
}

/// Live tokens per client when nothing else is said (`hub.max_tokens_per_client`).
pub const MAX_TOKENS_PER_CLIENT: usize = 64;

impl Authority {
    pub fn new(clients: Vec<ClientRegistration>, lifetime: Duration) -> Self {
        Authority {
            clients: RwLock::new(clients),
            tokens: Mutex::new(HashMap::new()),
            lifetime,
            max_per_client: AtomicUsize::new(MAX_TOKENS_PER_CLIENT),
            grants: Grants::default(),
        }
    }

    /// Authorization codes, refresh tokens and EHR launches.
    pub fn grants(&self) -> &Grants {
        &self.grants
    }

    /// Ends an access token at once (a code used twice revokes what it got).
    pub fn revoke(&self, token_hash: &[u8; 32]) {
        self.tokens.lock().remove(token_hash);
    }

    /// The key an access token is kept under, for [`Authority::revoke`].
    pub fn token_hash(token: &str) -> [u8; 32] {
        hash(token)
    }

    /// Bounds the live tokens of each client, so a client that asks for token after token
    /// cannot grow the table without end.
    pub fn set_max_tokens_per_client(&self, max: usize) {
        self.max_per_client.store(max.max(1), Ordering::Relaxed);
    }

    /// Whether `client_id` names a registered client (no secret involved).
    pub fn is_registered(&self, client_id: &str) -> bool {
        self.clients.read().iter().any(|c| c.client_id == client_id)
    }

    pub fn clients(&self) -> Vec<ClientRegistration> {
        self.clients.read().clone()
    }

    /// The registration of `client_id`, if it is registered (no secret involved).
    pub fn client(&self, client_id: &str) -> Option<ClientRegistration> {
        self.clients
            .read()
            .iter()
            .find(|c| c.client_id == client_id)
            .cloned()
    }

    /// Replaces the registered clients. Tokens of a client that is gone, or whose secret or
    /// scopes changed, stop working at once.
    pub fn set_clients(&self, clients: Vec<ClientRegistration>) {
        let mut current = self.clients.write();
        let unchanged = |id: &str| {
            let before = current.iter().find(|c| c.client_id == id);
            let after = clients.iter().find(|c| c.client_id == id);
            matches!((before, after), (Some(b), Some(a)) if b.client_secret == a.client_secret && b.scopes == a.scopes)
        };
        self.tokens
            .lock()
            .retain(|_, grant| unchanged(&grant.client_id));
        for client in current.iter().filter(|c| !unchanged(&c.client_id)) {
            self.grants.forget_client(&client.client_id);
        }
        *current = clients;
    }

    /// Checks a client's credentials; the secret comparison takes the same time whether the
    /// client exists or not, and wherever the secrets first differ.
    pub fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<ClientRegistration, TokenError> {
        let mut found = None;
        for client in self.clients.read().iter() {
            let id_ok = client.client_id.as_bytes().ct_eq(client_id.as_bytes());
            let secret_ok = client.client_secret.as_bytes().ct_eq(secret.as_bytes());
            // A public client has no secret to match: it never authenticates so.
            if bool::from(id_ok & secret_ok) && !client.is_public() {
                found = Some(client.clone());
            }
        }
        found.ok_or(TokenError::InvalidClient)
    }

    /// Issues a token for `client` on `topic`, narrowed to `requested` scopes when given.
    pub fn issue(
        &self,
        client: &ClientRegistration,
        requested: Option<&str>,
        topic: Arc<str>,
    ) -> Result<IssuedToken, TokenError> {
        let scopes = match requested.map(str::trim).filter(|s| !s.is_empty()) {
            None => client.scopes.clone(),
            Some(requested) => {
                let requested = ScopeSet::parse(requested)
                    .map_err(|e| TokenError::InvalidScope(e.to_string()))?;
                let granted = client.scopes.narrow(&requested);
                if granted.is_empty() {
                    return Err(TokenError::InvalidScope(format!(
                        "none of the requested scopes is allowed for client `{}`",
                        client.client_id
                    )));
                }
                granted
            }
        };
        let access_token = crate::ids::random_token();
        let grant = Arc::new(TokenGrant {
            client_id: client.client_id.clone(),
            client_name: client.name.clone(),
            topic: topic.clone(),
            scopes,
            expires_at: Instant::now() + self.lifetime,
            acknowledges: client.acknowledges,
        });
        let scope = grant.scopes.to_string();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, g| !g.is_expired());
        // At the cap, the client's oldest token is retired: a client that restarts and asks
        // again keeps working, and the table stays bounded.
        let max = self.max_per_client.load(Ordering::Relaxed);
        loop {
            let mine = tokens
                .iter()
                .filter(|(_, g)| g.client_id == client.client_id);
            let (count, oldest) = mine.fold((0, None), |(n, oldest), (key, g)| {
                let older = match oldest {
                    Some((_, at)) if at <= g.expires_at => oldest,
                    _ => Some((*key, g.expires_at)),
                };
                (n + 1, older)
            });
            match oldest {
                Some((key, _)) if count >= max => {
                    tokens.remove(&key);
                }
                _ => break,
            }
        }
        tokens.insert(hash(&access_token), grant);
        Ok(IssuedToken {
            access_token,
            expires_in: self.lifetime.as_secs(),
            scope,
            topic,
        })
    }

    /// The grant behind a bearer token, if the token is known and not expired.
    pub fn verify(&self, token: &str) -> Option<Arc<TokenGrant>> {
        let key = hash(token);
        let mut tokens = self.tokens.lock();
        match tokens.get(&key) {
            Some(grant) if grant.is_expired() => {
                tokens.remove(&key);
                None
            }
            Some(grant) => Some(grant.clone()),
            None => None,
        }
    }
}

fn hash(token: &str) -> TokenHash {
    Sha256::digest(token.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn authority(lifetime: Duration) -> Authority {
        Authority::new(
            vec![ClientRegistration {
                client_id: "ris".into(),
                client_secret: "s3cret".into(),
                scopes: ScopeSet::parse("fhircast/*.read fhircast/Patient-open.write").unwrap(),
                name: "Radiology worklist".into(),
                acknowledges: true,
                redirect_uris: Vec::new(),
            }],
            lifetime,
        )
    }

    #[test]
    fn issue_and_verify() {
        let auth = authority(Duration::from_secs(60));
        assert_eq!(
            auth.authenticate("ris", "wrong").unwrap_err(),
            TokenError::InvalidClient
        );
        assert_eq!(
            auth.authenticate("pacs", "s3cret").unwrap_err(),
            TokenError::InvalidClient
        );
        let client = auth.authenticate("ris", "s3cret").unwrap().clone();
        let token = auth
            .issue(&client, Some("fhircast/Patient-open.read"), "T".into())
            .unwrap();
        assert_eq!(token.scope, "fhircast/Patient-open.read");
        let grant = auth.verify(&token.access_token).unwrap();
        assert_eq!(&*grant.topic, "T");
        assert!(auth.verify("not-a-token").is_none());
        let err = auth
            .issue(&client, Some("fhircast/Patient-close.write"), "T".into())
            .unwrap_err();
        assert_eq!(err.code(), "invalid_scope");
    }

    #[test]
    fn a_client_holds_a_bounded_number_of_tokens_oldest_retired_first() {
        let auth = authority(Duration::from_secs(60));
        auth.set_max_tokens_per_client(3);
        let client = auth.authenticate("ris", "s3cret").unwrap().clone();
        let tokens: Vec<String> = (0..4)
            .map(|_| {
                std::thread::sleep(Duration::from_millis(2));
                auth.issue(&client, None, "T".into()).unwrap().access_token
            })
            .collect();
        assert!(auth.verify(&tokens[0]).is_none(), "the oldest is retired");
        for token in &tokens[1..] {
            assert!(auth.verify(token).is_some());
        }
        assert_eq!(auth.tokens.lock().len(), 3);
    }

    #[test]
    fn debug_output_never_shows_secrets_or_tokens() {
        let auth = authority(Duration::from_secs(60));
        let client = auth.authenticate("ris", "s3cret").unwrap().clone();
        assert!(!format!("{client:?}").contains("s3cret"));
        let token = auth.issue(&client, None, "T".into()).unwrap();
        assert!(!format!("{token:?}").contains(&token.access_token));
    }

    #[test]
    fn expired_tokens_stop_working() {
        let auth = authority(Duration::ZERO);
        let client = auth.authenticate("ris", "s3cret").unwrap().clone();
        let token = auth.issue(&client, None, "T".into()).unwrap();
        assert!(auth.verify(&token.access_token).is_none());
    }
}
