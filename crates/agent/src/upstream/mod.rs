//! The enterprise link: the workstation's session follows the site's hub (the EHR's, the
//! reporting system's). One link per agent signs in, subscribes upstream to every event the
//! local session carries, and relays both ways (`relay.rs`), so that the local apps, every
//! bridge and the tray follow the site through the one local hub, configured once.

mod frames;
mod link;
mod relay;
mod resync;
mod signin;
mod versions;

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

impl Upstream {
    /// Starts the link for `config` (which has an issuer), with the client secret resolved,
    /// and puts every change requested on `topic` through it.
    pub(crate) fn start(
        config: &UpstreamConfig,
        secret: Option<String>,
        engine: Engine,
        topic: Arc<str>,
    ) -> Option<Self> {
        let credentials = signin::Credentials::new(config, secret)?;
        let site = config.site_name();
        let http = reqwest::Client::new();
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
                credentials,
                http,
                relay,
                engine: engine.clone(),
                local_topic: topic,
                status: status_tx,
                resync: resync.clone(),
            }
            .run(stop_rx),
        );
        Some(Upstream {
            status,
            stop,
            engine,
            resync,
        })
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
