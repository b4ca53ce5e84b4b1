//! The enterprise link: the workstation's session follows the site's hub (the EHR's, the
//! reporting system's). One link per agent signs in, subscribes upstream to every event the
//! local session carries, and relays both ways (`relay.rs`), so that the local apps, every
//! bridge and the tray follow the site through the one local hub, configured once.

mod frames;
mod link;
mod refresh;
mod relay;
mod resync;
mod routes;
mod signin;
mod versions;

pub(crate) use routes::routes;
pub use routes::{LOGIN_PATH, LOGOUT_PATH};
pub use signin::CALLBACK_PATH;

pub use relay::UPSTREAM_CLIENT_ID;

use crate::config::UpstreamConfig;
use lockstep_hub::clock::now_iso;
use lockstep_hub::{Engine, LinkState};
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

/// Why the link is not up, in words for the tray and the log.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LinkError {
    #[error("the site's hub cannot be reached: {0}")]
    Unreachable(String),
    #[error("the site answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("the site's answer was not understood: {0}")]
    Protocol(String),
    #[error("the clinician has not signed in to the site")]
    SignInNeeded,
    #[error("the site's hub ended the link: {0}")]
    Ended(String),
}

impl Default for UpstreamStatus {
    fn default() -> Self {
        UpstreamStatus {
            site: String::new(),
            state: LinkState::Off,
            detail: String::new(),
            since: now_iso(),
        }
    }
}

impl LinkError {
    pub(crate) fn unreachable(error: reqwest::Error) -> Self {
        // reqwest's own text names the URL; its source says why (refused, timed out).
        let error = error.without_url();
        let mut why = error.to_string();
        let mut source = std::error::Error::source(&error);
        while let Some(cause) = source {
            why = format!("{why}: {cause}");
            source = cause.source();
        }
        LinkError::Unreachable(why)
    }
}

/// Sends a request to the site and returns the body of its 2xx answer; any other status is
/// [`LinkError::Refused`] with the body's start.
pub(crate) async fn answer_of(request: reqwest::RequestBuilder) -> Result<String, LinkError> {
    let response = request.send().await.map_err(LinkError::unreachable)?;
    let status = response.status();
    let body = response.text().await.map_err(LinkError::unreachable)?;
    if !status.is_success() {
        return Err(LinkError::Refused {
            status: status.as_u16(),
            body: excerpt(&body),
        });
    }
    Ok(body)
}

/// The first few hundred characters of a body, for a message.
pub(crate) fn excerpt(body: &str) -> String {
    const KEEP: usize = 300;
    match body.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}…", &body[..cut]),
        None => body.to_owned(),
    }
}

/// The link as the tray and the window show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UpstreamStatus {
    /// The site, by its issuer's host.
    pub site: String,
    pub state: LinkState,
    /// Why it is in this state, in plain words.
    pub detail: String,
    /// Since when (RFC 3339).
    pub since: String,
}

/// A running link. Dropping it leaves it running; [`Upstream::stop`] ends it.
pub struct Upstream {
    status: watch::Receiver<UpstreamStatus>,
    stop: watch::Sender<bool>,
    engine: Engine,
    resync: Arc<tokio::sync::Notify>,
}

/// The clinician's sign-in to the site, shared by the link and the agent's sign-in pages
/// (`routes.rs`). Cheap to clone.
#[derive(Clone)]
pub struct SignIn {
    inner: Arc<SignInInner>,
}

struct SignInInner {
    site: String,
    credentials: signin::Credentials,
    http: reqwest::Client,
    /// Told when the clinician has signed in (the link may start) or out (it must end).
    signed_in: tokio::sync::Notify,
    signed_out: tokio::sync::Notify,
}

impl SignIn {
    /// For `config` (which has an issuer): with the client secret, `client_credentials`;
    /// without, the clinician signs in, sent back to `origin` (the agent's own).
    pub(crate) fn new(
        config: &UpstreamConfig,
        secret: Option<String>,
        origin: &str,
        secrets: Arc<dyn crate::secrets::SecretStore>,
    ) -> Option<Self> {
        let issuer = config.issuer.as_deref()?;
        let refresh = refresh::RefreshStore::new(secrets, issuer);
        Some(SignIn {
            inner: Arc::new(SignInInner {
                site: config.site_name(),
                credentials: signin::Credentials::new(config, secret, origin, refresh)?,
                http: reqwest::Client::new(),
                signed_in: tokio::sync::Notify::new(),
                signed_out: tokio::sync::Notify::new(),
            }),
        })
    }

    pub fn site(&self) -> &str {
        &self.inner.site
    }

    /// Whether the clinician signs in (no client secret): the tray offers Sign in / Sign out.
    pub fn in_the_browser(&self) -> bool {
        self.inner.credentials.secret.is_none()
    }

    /// The site's authorization URL to open in the browser.
    pub async fn begin(&self) -> Result<String, LinkError> {
        signin::begin(&self.inner.http, &self.inner.credentials).await
    }

    /// The browser came back with `code` for `state`: the link signs in with it.
    pub async fn complete(&self, code: &str, state: &str) -> Result<(), LinkError> {
        signin::complete(&self.inner.http, &self.inner.credentials, code, state).await?;
        tracing::info!(site = %self.inner.site, "signed in to the site");
        self.inner.signed_in.notify_one();
        Ok(())
    }

    /// Forgets the sign-in and ends the link until the next one.
    pub async fn sign_out(&self) {
        signin::sign_out(&self.inner.credentials).await;
        tracing::info!(site = %self.inner.site, "signed out of the site");
        self.inner.signed_out.notify_one();
    }
}

impl Upstream {
    /// Starts the link with `sign_in`, and puts every change requested on `topic` through it.
    pub(crate) fn start(
        config: &UpstreamConfig,
        sign_in: SignIn,
        engine: Engine,
        topic: Arc<str>,
    ) -> Self {
        let site = sign_in.site().to_owned();
        let http = sign_in.inner.http.clone();
        let (status_tx, status) = watch::channel(UpstreamStatus {
            site: site.clone(),
            state: LinkState::Pending,
            detail: format!("signing in to {site}"),
            since: now_iso(),
        });
        let status_tx = Arc::new(status_tx);
        let relay = relay::Relay::new(
            &site,
            engine.clone(),
            topic.clone(),
            config.when_down,
            http.clone(),
            status_tx.clone(),
        );
        engine.set_gate(Some(Arc::new(relay.clone())));
        tokio::spawn(relay.clone().tell_the_site(engine.listen_links()));
        let (stop, stop_rx) = watch::channel(false);
        let resync = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(
            link::Link {
                site,
                sign_in,
                http,
                relay,
                engine: engine.clone(),
                local_topic: topic,
                status: status_tx,
                resync: resync.clone(),
            }
            .run(stop_rx),
        );
        Upstream {
            status,
            stop,
            engine,
            resync,
        }
    }

    pub fn watch(&self) -> watch::Receiver<UpstreamStatus> {
        self.status.clone()
    }

    /// Notified, the link re-syncs the local session from the site's current context.
    pub(crate) fn resync_trigger(&self) -> Arc<tokio::sync::Notify> {
        self.resync.clone()
    }

    /// Ends the link (the agent is stopping): local changes are no longer gated.
    pub fn stop(&self) {
        let _ = self.stop.send(true);
        self.engine.set_gate(None);
    }
}
