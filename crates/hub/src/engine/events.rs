//! What the engine tells: the events observers and listeners receive, and who they are about.

use super::FrameText;
use crate::link::LinkState;
use lockstep_fhircast::summary::ContextSummary;
use std::sync::Arc;
use std::time::Duration;

/// A subscriber as listeners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub topic: Arc<str>,
    /// The name site IT registered the app's client under: how people know the app.
    pub registered_name: String,
    /// The name the app gave itself (`subscriber.name`), when it gave one.
    pub own_name: Option<String>,
    pub client_id: String,
    pub events: String,
}

impl SubscriberInfo {
    /// The name a SyncError codes as `subscribername` (checklist 64): the app's own, else the
    /// registered one.
    pub fn spec_name(&self) -> &str {
        self.own_name.as_deref().unwrap_or(&self.registered_name)
    }

    /// The app's own name where it differs from the registered one, to show beside it.
    pub fn other_name(&self) -> Option<&str> {
        self.own_name
            .as_deref()
            .filter(|own| *own != self.registered_name)
    }

    /// The app as people read it: `PACS viewer`, or `PACS viewer ("lockstepd tail")` where
    /// the app calls itself otherwise.
    pub fn display_name(&self) -> String {
        match self.other_name() {
            Some(own) => format!("{} (\"{own}\")", self.registered_name),
            None => self.registered_name.clone(),
        }
    }
}

/// What became of one notification to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Answered with a 2xx status (or with none, read as received), `after` it was sent.
    Acknowledged { status: u16, after: Duration },
    /// Answered with a non-2xx status, `after` it was sent.
    Refused { status: u16, after: Duration },
    /// No answer within the acknowledgement deadline.
    TimedOut,
}

/// Called with every engine event, synchronously, in the order events happen; an observer
/// must only queue (the history writer's `try_send`), never wait.
pub type Observer = Arc<dyn Fn(&EngineEvent) + Send + Sync>;

/// What listeners (tray, history, bridges, logs) are told.
#[derive(Debug, Clone)]
pub enum EngineEvent {
    /// The hub accepted a context change and sent it out.
    ContextChanged {
        topic: Arc<str>,
        event: &'static str,
        event_id: String,
        /// The registered name of the requesting client.
        requester: String,
        /// The summary of what the event names (the patient a close names, say).
        summary: Option<Box<ContextSummary>>,
        /// The summary of the topic's current context after the change: what a tray shows.
        current: Option<Box<ContextSummary>>,
        /// The notification frame exactly as sent.
        frame: FrameText,
    },
    /// A subscriber's link changed state.
    Link {
        subscriber: Arc<SubscriberInfo>,
        state: LinkState,
        /// Plain words on why, when there is a reason worth showing.
        detail: Option<String>,
    },
    /// A subscriber answered a notification, or failed to in time. One per subscriber per
    /// event, so only observers (the history) are told: listeners would be woken N times per
    /// change for nothing they use.
    Delivery {
        subscriber: Arc<SubscriberInfo>,
        event_id: String,
        event_name: &'static str,
        outcome: Delivery,
    },
    /// A subscriber renewed its subscription (subscribed again on its endpoint), with this
    /// much of its lease left (`None` before its socket opened). Observers only, as deliveries.
    Renewed {
        subscriber: Arc<SubscriberInfo>,
        lease_left: Option<Duration>,
    },
    /// The clinician paused or resumed following.
    Paused { topic: Arc<str>, paused: bool },
    /// The hub sent a SyncError (one it generated, or one a subscriber posted).
    SyncError {
        topic: Arc<str>,
        /// Whom it is about, as people read it: the failing subscriber, or the app that posted it.
        about: String,
        /// The failing subscriber, for a SyncError the hub generated.
        subscriber: Option<Arc<SubscriberInfo>>,
        /// The id of the event that failed (for a posted SyncError, the SyncError's own).
        event_id: String,
        event_name: String,
        diagnostics: String,
    },
}
