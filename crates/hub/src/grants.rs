//! The authorization code grant with PKCE (RFC 6749 §4.1, RFC 7636; S256 only) and refresh
//! tokens (§6): for SMART apps launched into the session, and for another Lockstep that follows
//! this hub as its site.
//!
//! The clinician approves by being the signed-in user: the hub answers a loopback connection
//! only from its own OS user (`peer.rs`), so an authorization request it answers is the
//! clinician's own. What is checked is everything OAuth asks: the client, its registered
//! redirect URI exactly, the S256 challenge against the verifier, a code used once and soon
//! (a second use revokes what the first one got), refresh tokens bound to their client and
//! rotated on use.

use crate::auth::{ClientRegistration, TokenError};
use base64::Engine as _;
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a code may wait for its exchange.
pub const CODE_LIFETIME: Duration = Duration::from_secs(60);
/// How long a refresh token lasts unused: a reading shift.
pub const REFRESH_LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// How long an EHR launch may wait for its app to ask for a token.
pub const LAUNCH_LIFETIME: Duration = Duration::from_secs(300);
/// Codes, refresh tokens or launches waiting at once, at most: beyond, the oldest go.
const MAX_PENDING: usize = 1024;

type Hash = [u8; 32];

fn hash(secret: &str) -> Hash {
    Sha256::digest(secret.as_bytes()).into()
}

/// The context an EHR launch hands its app (SMART's `patient` and `fhirContext`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchContext {
    /// The patient's resource id.
    pub patient: Option<String>,
    /// References to the other resources in context (`ImagingStudy/…`, `DiagnosticReport/…`).
    pub fhir_context: Vec<String>,
}

/// An authorization request, as `/authorize` received it.
#[derive(Debug, Clone)]
pub struct AuthorizeRequest {
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: Option<String>,
    /// The `launch` parameter of an EHR launch.
    pub launch: Option<String>,
}

/// What a redeemed code or refresh token grants.
#[derive(Debug, Clone)]
pub struct Granted {
    pub client_id: String,
    pub scope: Option<String>,
    pub launch: Option<LaunchContext>,
}

struct Code {
    client_id: String,
    redirect_uri: String,
    challenge: String,
    granted: Granted,
    expires_at: Instant,
    /// Set once redeemed: what it got, revoked if it is tried again.
    redeemed: Option<Issued>,
}

/// The tokens a code (or a refresh) produced, by hash.
#[derive(Debug, Clone, Copy)]
pub struct Issued {
    pub access: Hash,
    pub refresh: Hash,
}

struct Refresh {
    granted: Granted,
    expires_at: Instant,
}

/// Why a code was not redeemed, and what to revoke when it was tried a second time.
pub type Unredeemed = (TokenError, Option<Issued>);

/// Why `/authorize` refused, as the redirect's `error` (RFC 6749 §4.1.2.1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizeError {
    #[error("unsupported_response_type: only `code`")]
    UnsupportedResponseType,
    #[error("invalid_request: {0}")]
    InvalidRequest(String),
}

impl AuthorizeError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthorizeError::UnsupportedResponseType => "unsupported_response_type",
            AuthorizeError::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// Codes, refresh tokens and launches waiting to be used.
#[derive(Default)]
pub struct Grants {
    codes: Mutex<HashMap<Hash, Code>>,
    refresh: Mutex<HashMap<Hash, Refresh>>,
    launches: Mutex<HashMap<String, (LaunchContext, Instant)>>,
}

impl Grants {
    /// Registers an EHR launch of `context`; its id goes in the app's launch URL.
    pub fn new_launch(&self, context: LaunchContext) -> String {
        let id = crate::ids::random_token();
        let mut launches = self.launches.lock();
        prune(&mut launches, |(_, at)| *at);
        launches.insert(id.clone(), (context, Instant::now() + LAUNCH_LIFETIME));
        id
    }

    /// Whether `redirect_uri` is one `client` registered, exactly (RFC 6749 §3.1.2.3): only
    /// then may a refusal be sent there.
    pub fn redirect_allowed(client: &ClientRegistration, redirect_uri: &str) -> bool {
        client.redirect_uris.iter().any(|uri| uri == redirect_uri)
    }

    /// Issues a code for `client`, whose redirect URI has been checked.
    pub fn authorize(
        &self,
        client: &ClientRegistration,
        request: AuthorizeRequest,
    ) -> Result<String, AuthorizeError> {
        let challenge = request.code_challenge;
        // 43 characters: the base64url of a SHA-256 (RFC 7636 §4.2).
        if challenge.len() != 43
            || !challenge
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthorizeError::InvalidRequest(
                "code_challenge must be the S256 challenge (43 base64url characters)".into(),
            ));
        }
        let launch = match request.launch {
            None => None,
            Some(id) => {
                let launches = self.launches.lock();
                match launches.get(&id) {
                    Some((context, until)) if *until > Instant::now() => Some(context.clone()),
                    _ => {
                        return Err(AuthorizeError::InvalidRequest(
                            "unknown or expired launch".into(),
                        ));
                    }
                }
            }
        };
        let code = crate::ids::random_token();
        let mut codes = self.codes.lock();
        prune(&mut codes, |c| c.expires_at);
        codes.insert(
            hash(&code),
            Code {
                client_id: client.client_id.clone(),
                redirect_uri: request.redirect_uri,
                challenge,
                granted: Granted {
                    client_id: client.client_id.clone(),
                    scope: request.scope,
                    launch,
                },
                expires_at: Instant::now() + CODE_LIFETIME,
                redeemed: None,
            },
        );
        Ok(code)
    }

    /// Exchanges a code. A code tried again is refused and what it got revoked: the
    /// returned [`Issued`] (in the error's place) tells the caller which tokens to revoke.
    pub fn redeem(
        &self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        verifier: &str,
    ) -> Result<Granted, Box<Unredeemed>> {
        let invalid = |why: &str| Box::new((TokenError::InvalidGrant(why.to_owned()), None));
        let mut codes = self.codes.lock();
        let key = hash(code);
        let entry = codes.get(&key).ok_or_else(|| invalid("unknown code"))?;
        if let Some(issued) = entry.redeemed {
            codes.remove(&key);
            self.refresh.lock().remove(&issued.refresh);
            return Err(Box::new((
                TokenError::InvalidGrant(
                    "this code was used before: what it got is revoked".into(),
                ),
                Some(issued),
            )));
        }
        if entry.expires_at <= Instant::now() {
            codes.remove(&key);
            return Err(invalid("the code expired"));
        }
        if entry.client_id != client_id {
            return Err(invalid("the code was issued to another client"));
        }
        if entry.redirect_uri != redirect_uri {
            return Err(invalid(
                "redirect_uri differs from the authorization request's",
            ));
        }
        if s256(verifier) != entry.challenge {
            return Err(invalid("code_verifier does not match the code_challenge"));
        }
        Ok(entry.granted.clone())
    }

    /// Notes what a redeemed code got, so that a second use revokes it.
    pub fn redeemed(&self, code: &str, issued: Issued) {
        if let Some(entry) = self.codes.lock().get_mut(&hash(code)) {
            entry.redeemed = Some(issued);
        }
    }

    /// A new refresh token for what `granted` grants.
    pub fn new_refresh(&self, granted: Granted) -> (String, Hash) {
        let token = crate::ids::random_token();
        let key = hash(&token);
        let mut refresh = self.refresh.lock();
        prune(&mut refresh, |r| r.expires_at);
        refresh.insert(
            key,
            Refresh {
                granted,
                expires_at: Instant::now() + REFRESH_LIFETIME,
            },
        );
        (token, key)
    }

    /// Uses a refresh token (once: the caller issues its successor).
    pub fn refresh(&self, token: &str, client_id: &str) -> Result<Granted, TokenError> {
        let mut refresh = self.refresh.lock();
        let key = hash(token);
        let entry = refresh
            .get(&key)
            .ok_or_else(|| TokenError::InvalidGrant("unknown refresh token".into()))?;
        if entry.granted.client_id != client_id {
            return Err(TokenError::InvalidGrant(
                "the refresh token was issued to another client".into(),
            ));
        }
        let entry = refresh.remove(&key).map(|r| (r.granted, r.expires_at));
        match entry {
            Some((granted, until)) if until > Instant::now() => Ok(granted),
            _ => Err(TokenError::InvalidGrant("the refresh token expired".into())),
        }
    }

    /// Forgets every refresh token of a client no longer registered as it was.
    pub fn forget_client(&self, client_id: &str) {
        self.refresh
            .lock()
            .retain(|_, r| r.granted.client_id != client_id);
        self.codes.lock().retain(|_, c| c.client_id != client_id);
    }
}

/// The S256 challenge of a verifier: base64url, unpadded, of its SHA-256.
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Drops what has expired, and the soonest to expire while there are too many.
fn prune<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    until: impl Fn(&V) -> Instant,
) {
    let now = Instant::now();
    map.retain(|_, v| until(v) > now);
    while map.len() >= MAX_PENDING {
        let Some(soonest) = map
            .iter()
            .min_by_key(|(_, v)| until(v))
            .map(|(k, _)| k.clone())
        else {
            break;
        };
        map.remove(&soonest);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_fhircast::ScopeSet;

    fn client() -> ClientRegistration {
        ClientRegistration {
            client_id: "viewer".into(),
            client_secret: String::new(),
            scopes: ScopeSet::parse("fhircast/*.read").unwrap(),
            name: "Viewer".into(),
            acknowledges: true,
            redirect_uris: vec!["http://127.0.0.1:9/callback".into()],
        }
    }

    fn request(verifier: &str) -> AuthorizeRequest {
        AuthorizeRequest {
            redirect_uri: "http://127.0.0.1:9/callback".into(),
            code_challenge: s256(verifier),
            scope: Some("fhircast/*.read".into()),
            launch: None,
        }
    }

    const VERIFIER: &str = "a-verifier-of-enough-length-0123456789-abcdefgh";

    #[test]
    fn the_rfc_7636_example_challenge() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn a_code_is_redeemed_once_with_its_verifier_by_its_client_at_its_redirect() {
        let grants = Grants::default();
        let code = grants.authorize(&client(), request(VERIFIER)).unwrap();
        let redirect = "http://127.0.0.1:9/callback";
        let refused = |r: Result<Granted, Box<Unredeemed>>| r.unwrap_err().0.code();
        assert_eq!(
            refused(grants.redeem(&code, "viewer", redirect, "wrong-verifier")),
            "invalid_grant"
        );
        assert_eq!(
            refused(grants.redeem(&code, "other", redirect, VERIFIER)),
            "invalid_grant"
        );
        assert_eq!(
            refused(grants.redeem(&code, "viewer", "http://127.0.0.1:9/x", VERIFIER)),
            "invalid_grant"
        );
        let granted = grants.redeem(&code, "viewer", redirect, VERIFIER).unwrap();
        assert_eq!(granted.scope.as_deref(), Some("fhircast/*.read"));
        let (refresh, refresh_hash) = grants.new_refresh(granted);
        let issued = Issued {
            access: [7; 32],
            refresh: refresh_hash,
        };
        grants.redeemed(&code, issued);
        // Tried again: refused, and the first exchange's tokens are to be revoked.
        let (error, revoke) = *grants
            .redeem(&code, "viewer", redirect, VERIFIER)
            .unwrap_err();
        assert_eq!(error.code(), "invalid_grant");
        assert_eq!(revoke.map(|i| i.access), Some([7; 32]));
        assert!(
            grants.refresh(&refresh, "viewer").is_err(),
            "the refresh token is revoked"
        );
    }

    #[test]
    fn a_challenge_must_be_s256_and_a_launch_known() {
        let grants = Grants::default();
        let plain = AuthorizeRequest {
            code_challenge: "plain".into(),
            ..request(VERIFIER)
        };
        assert!(grants.authorize(&client(), plain).is_err());
        let unknown = AuthorizeRequest {
            launch: Some("nope".into()),
            ..request(VERIFIER)
        };
        assert!(grants.authorize(&client(), unknown).is_err());
        let launch = grants.new_launch(LaunchContext {
            patient: Some("p1".into()),
            fhir_context: vec![],
        });
        let launched = AuthorizeRequest {
            launch: Some(launch),
            ..request(VERIFIER)
        };
        let code = grants.authorize(&client(), launched).unwrap();
        let granted = grants
            .redeem(&code, "viewer", "http://127.0.0.1:9/callback", VERIFIER)
            .unwrap();
        assert_eq!(granted.launch.unwrap().patient.as_deref(), Some("p1"));
    }

    #[test]
    fn a_refresh_token_works_once_and_for_its_client() {
        let grants = Grants::default();
        let granted = Granted {
            client_id: "viewer".into(),
            scope: None,
            launch: None,
        };
        let (token, _) = grants.new_refresh(granted);
        assert!(grants.refresh(&token, "other").is_err());
        assert!(grants.refresh(&token, "viewer").is_ok());
        assert!(
            grants.refresh(&token, "viewer").is_err(),
            "rotated: used once"
        );
    }
}
