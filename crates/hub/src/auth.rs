//! The local SMART authorization server: registered clients, `client_credentials` tokens bound
//! to a client and a topic, and their verification.
//!
//! Tokens are opaque 256-bit random strings. Only their SHA-256 is kept, so the token table
//! neither holds usable secrets nor offers a timing oracle on lookup; client secrets are
//! compared in constant time.

use lockstep_fhircast::ScopeSet;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use subtle::ConstantTimeEq;

/// An application allowed to join the clinician's session.
#[derive(Debug, Clone)]
pub struct ClientRegistration {
    pub client_id: String,
    pub client_secret: String,
    /// The most this client may be granted.
    pub scopes: ScopeSet,
    /// Shown in the UI and in SyncErrors.
    pub name: String,
}

/// What a valid access token stands for.
#[derive(Debug)]
pub struct TokenGrant {
    pub client_id: String,
    pub client_name: String,
    /// The one topic this token may use.
    pub topic: Arc<str>,
    pub scopes: ScopeSet,
    pub expires_at: Instant,
}

impl TokenGrant {
    pub fn remaining(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }
}

/// A token response's content.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    pub access_token: String,
    pub expires_in: u64,
    pub scope: String,
    pub topic: Arc<str>,
}

/// Why a token request failed, as an OAuth error code and description (RFC 6749 §5.2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("invalid_client: unknown client or wrong secret")]
    InvalidClient,
    #[error("unsupported_grant_type: only client_credentials is supported")]
    UnsupportedGrantType,
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
    #[error("invalid_scope: {0}")]
    InvalidScope(String),
}

impl TokenError {
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::InvalidClient => "invalid_client",
            TokenError::UnsupportedGrantType => "unsupported_grant_type",
            TokenError::InvalidRequest(_) => "invalid_request",
            TokenError::InvalidScope(_) => "invalid_scope",
        }
    }
}

type TokenHash = [u8; 32];

/// Clients and live tokens.
pub struct Authority {
    clients: Vec<ClientRegistration>,
    tokens: Mutex<HashMap<TokenHash, Arc<TokenGrant>>>,
    lifetime: Duration,
}

impl Authority {
    pub fn new(clients: Vec<ClientRegistration>, lifetime: Duration) -> Self {
        Authority {
            clients,
            tokens: Mutex::new(HashMap::new()),
            lifetime,
        }
    }

    pub fn clients(&self) -> &[ClientRegistration] {
        &self.clients
    }

    /// Checks a client's credentials; the secret comparison takes the same time whether the
    /// client exists or not, and wherever the secrets first differ.
    pub fn authenticate(
        &self,
        client_id: &str,
        secret: &str,
    ) -> Result<&ClientRegistration, TokenError> {
        let mut found = None;
        for client in &self.clients {
            let id_ok = client.client_id.as_bytes().ct_eq(client_id.as_bytes());
            let secret_ok = client.client_secret.as_bytes().ct_eq(secret.as_bytes());
            if bool::from(id_ok & secret_ok) {
                found = Some(client);
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
        });
        let scope = grant.scopes.to_string();
        let mut tokens = self.tokens.lock();
        tokens.retain(|_, g| !g.is_expired());
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
    fn expired_tokens_stop_working() {
        let auth = authority(Duration::ZERO);
        let client = auth.authenticate("ris", "s3cret").unwrap().clone();
        let token = auth.issue(&client, None, "T".into()).unwrap();
        assert!(auth.verify(&token.access_token).is_none());
    }
}
