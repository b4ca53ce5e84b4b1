//! The clinician's OS session: a locked screen hibernates the FHIRcast session (the apps put
//! the patient away), an unlocked one re-syncs it, and signing out ends it (`UserLogout`) and
//! stops the agent. Where the signals come from is a small [`SessionWatcher`] per platform:
//! logind and the session bus on Linux (`linux.rs`), the session-change notifications on
//! Windows (`windows.rs`, the mapping only); what they mean is decided here.

#[cfg(target_os = "linux")]
mod linux;
pub mod windows;

#[cfg(target_os = "linux")]
pub use linux::{DbusWatcher, session_object_path};

use lockstep_fhircast::ContextChange;
use lockstep_hub::clock::now_iso;
use lockstep_hub::{Engine, TokenGrant};
use serde_json::json;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};

/// The code system of a logout's or hibernation's reason (the FHIRcast IG's canonical).
const REASON_SYSTEM: &str = "http://fhircast.hl7.org/CodeSystem/fhircast-codesystem";

/// What the OS said of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionSignal {
    /// The screen locked (the clinician walked away).
    Locked,
    /// The screen unlocked.
    Unlocked,
    /// The clinician signed out.
    SignedOut,
}

/// A source of [`SessionSignal`]s: sends them until the session ends or it cannot go on.
pub trait SessionWatcher: Send + 'static {
    /// Runs until the watcher can say nothing more; each signal goes to `signals`.
    fn watch(
        self: Box<Self>,
        signals: mpsc::Sender<SessionSignal>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;
}

/// What the agent does about each signal.
pub(crate) struct Follower {
    pub engine: Engine,
    pub topic: Arc<str>,
    /// Told on unlock: the enterprise link re-syncs from the site, where there is one.
    pub resync: Option<Arc<tokio::sync::Notify>>,
    /// Set once the clinician signed out: the agent's shells stop.
    pub signed_out: watch::Sender<bool>,
}

impl Follower {
    pub(crate) async fn follow(self, mut signals: mpsc::Receiver<SessionSignal>) {
        while let Some(signal) = signals.recv().await {
            tracing::info!(?signal, "the OS session changed");
            match signal {
                // The OS locked it; whether the clinician asked or it timed out is not said.
                SessionSignal::Locked => self.tell("UserHibernate", "system-initiated"),
                SessionSignal::Unlocked => {
                    if let Some(resync) = &self.resync {
                        resync.notify_one();
                    }
                }
                SessionSignal::SignedOut => {
                    self.tell("UserLogout", "user-initiated");
                    let _ = self.signed_out.send(true);
                    return;
                }
            }
        }
    }

    /// Publishes an infrastructure event on the workstation's session, with its reason code.
    /// Not put to the site's hub: the clinician may still be signed in to it elsewhere.
    fn tell(&self, event: &str, reason: &str) {
        let parameters = json!({
            "resourceType": "Parameters",
            "parameter": [{
                "name": "code",
                "valueCoding": { "system": REASON_SYSTEM, "code": reason },
            }],
        });
        let frame = json!({
            "timestamp": now_iso(),
            "id": uuid::Uuid::new_v4().to_string(),
            "event": {
                "hub.topic": &*self.topic,
                "hub.event": event,
                "context": [{ "key": "parameters", "resource": parameters }],
            },
        });
        let grant = TokenGrant::agent(
            "Lockstep (the OS session)".into(),
            self.topic.clone(),
            event,
        );
        let published = ContextChange::parse(frame.to_string().as_bytes())
            .map_err(|e| e.to_string())
            .and_then(|change| {
                self.engine
                    .publish(&grant, change)
                    .map_err(|e| e.to_string())
            });
        if let Err(e) = published {
            tracing::error!("{event} could not be sent to the session: {e}");
        }
    }
}

/// Starts following the OS session with `watcher`.
pub(crate) fn start(watcher: Box<dyn SessionWatcher>, follower: Follower) {
    let (signals, received) = mpsc::channel(8);
    tokio::spawn(watcher.watch(signals));
    tokio::spawn(follower.follow(received));
}
