//! The engine: every topic's subscriptions, open contexts and pending acknowledgements, and the
//! one place where a context change is decided and fanned out.
//!
//! Each topic has its own lock; a publish takes it once, applies the change, and hands the one
//! serialised frame (a reference-counted buffer) to each subscriber: written straight to its
//! socket when the socket takes it at once (an [`Outlet`]), else to its bounded queue. Nothing
//! on that path waits on a socket: a subscriber that cannot keep up is dropped with a SyncError
//! rather than slowing the others. Time-based decisions (leases, unconnected endpoints,
//! acknowledgement deadlines) are taken by one sweeper task.

use crate::auth::TokenGrant;
use crate::clock::now_iso;
pub use crate::contexts::CurrentContext;
use crate::contexts::{ContextRefusal, TopicContexts};
use crate::ids::{self, random_token};
pub use crate::link::{LinkEnd, LinkState, SocketEnd};
use crate::settings::HubSettings;
use axum::extract::ws::Utf8Bytes;
use lockstep_fhircast::event::SYNC_ERROR;
use lockstep_fhircast::frames::{self, IssueCode, SyncErrorReport};
use lockstep_fhircast::notification::SubscriberReply;
use lockstep_fhircast::summary::ContextSummary;
use lockstep_fhircast::{Access, ContextChange, EventKind, EventSpec, Mode, SubscriptionRequest};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};

/// A frame ready for the socket; cloning it shares the buffer.
pub type FrameText = Utf8Bytes;

/// Frames a subscriber may have queued before it counts as too slow and is dropped.
pub const SUBSCRIBER_QUEUE: usize = 1024;
/// How long an endpoint waits for its WebSocket before it is withdrawn (or the lease, if shorter).
pub const CONNECT_WINDOW: Duration = Duration::from_secs(120);
/// How often the sweeper looks at leases, connect windows and acknowledgement deadlines.
const SWEEP_EVERY: Duration = Duration::from_millis(200);
/// How long a socket's task has to read what its app already sent before a missing
/// acknowledgement is declared (see [`OverdueCheck`]).
const READ_BEFORE_BLAME: Duration = Duration::from_secs(1);
/// WebSocket close code used when the hub ends a subscription (RFC 6455: normal closure).
pub const CLOSE_NORMAL: u16 = 1000;
/// WebSocket close code when the hub stops (RFC 6455: going away).
pub const CLOSE_GOING_AWAY: u16 = 1001;
/// WebSocket close code for a subscriber dropped for a policy reason (too slow, unresponsive).
pub const CLOSE_POLICY: u16 = 1008;
/// How many of the latest events sent to an app that does not acknowledge are remembered, so a
/// refusal it does send is still matched to its event (and raises its SyncError).
const UNAWAITED_REMEMBERED: usize = 64;
/// WebSocket close code for a frame over `hub.max_body_bytes` (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;

type SubId = u64;

/// Records an event sent to a subscriber, to match its reply. For an app that does not
/// acknowledge, only the latest few are kept: it may never reply to any.
fn remember_sent(awaiting: &mut VecDeque<Awaiting>, acknowledges: bool, sent: Awaiting) {
    if !acknowledges && awaiting.len() >= UNAWAITED_REMEMBERED {
        awaiting.pop_front();
    }
    awaiting.push_back(sent);
}

/// A subscriber as listeners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberInfo {
    pub topic: Arc<str>,
    /// The name used in SyncErrors: `subscriber.name`, else the client's registered name.
    pub name: String,
    pub client_id: String,
    pub events: String,
}

/// What became of one notification to one subscriber.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Answered with a 2xx status (or with none, read as received).
    Acknowledged { status: u16 },
    /// Answered with a non-2xx status.
    Refused { status: u16 },
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
    /// The clinician paused or resumed following.
    Paused { topic: Arc<str>, paused: bool },
    /// The hub sent a SyncError (one it generated, or one a subscriber posted).
    SyncError {
        topic: Arc<str>,
        about: String,
        event_name: String,
        diagnostics: String,
    },
}

/// Why a subscription request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubscribeError {
    /// Unknown topic, or one the token is not bound to: answered alike, so that the hub is no
    /// oracle for which topics exist.
    #[error("unknown topic")]
    UnknownTopic,
    #[error("the token grants no read scope for any of the requested events")]
    NoReadScope,
    #[error("unknown hub.channel.endpoint for this topic")]
    UnknownEndpoint,
    /// `hub.max_subscriptions_per_client` or `hub.max_subscriptions_total` is reached.
    #[error("{0}")]
    TooManySubscriptions(String),
}

/// Why a context change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("unknown topic")]
    UnknownTopic,
    #[error("the token has no fhircast/{0}.write scope")]
    Forbidden(&'static str),
    /// The change conflicts with the topic's state (stale version, not the current anchor).
    #[error("{0}")]
    Conflict(String),
    /// The change breaks a rule only the hub can check (an update bundle's rules).
    #[error("{0}")]
    Invalid(String),
    /// The hub takes no context changes for now (see [`Engine::refuse_changes`]).
    #[error("{0}")]
    Unavailable(Arc<str>),
}

/// Why a WebSocket could not attach to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("unknown or expired channel endpoint")]
    UnknownEndpoint,
    #[error("this channel endpoint already has a connected socket")]
    AlreadyConnected,
}

/// What the socket task is told to do when the engine ends a subscription.
#[derive(Debug)]
pub struct CloseOrder {
    /// The denial frame to send first, if any.
    pub denial: Option<FrameText>,
    pub code: u16,
    pub reason: &'static str,
}

/// A way to put a frame on a subscriber's wire at once, from the publishing thread.
///
/// Handing each frame to the subscriber's own task costs a task wake-up, often a thread
/// wake-up, per subscriber per event, and the frame leaves only once the publishing request has
/// been answered; writing it straight away is what a minimal broadcast server does. The queue
/// stays the way in whenever this cannot be done at once, and the engine never writes past a
/// frame still queued, so order is kept.
pub trait Outlet: Send + Sync {
    /// Writes `frame` now if that needs no waiting; false leaves it to the queue.
    fn try_write(&self, frame: &FrameText) -> bool;
}

/// A WebSocket attached to a subscription: the queue to drain and the order to stop.
pub struct Connection {
    pub endpoint: String,
    pub frames: mpsc::Receiver<FrameText>,
    pub close: oneshot::Receiver<CloseOrder>,
    /// Signalled when an acknowledgement is overdue: the socket's task reads everything the
    /// app has already sent, then tells [`Engine::read_everything_sent`].
    pub read_now: Arc<Notify>,
}

/// An accepted subscribe or unsubscribe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeOutcome {
    /// The endpoint token (the last path segment of `hub.channel.endpoint`).
    pub endpoint: String,
}

struct Awaiting {
    event_id: Arc<str>,
    event_name: &'static str,
    sent: Instant,
}

/// An acknowledgement past its deadline, not yet declared missing. Its reply may be waiting
/// unread in the socket: after the agent was frozen (SIGSTOP, a stalled VM) every deadline
/// passes at once, before any socket task has run. The app is blamed only once its socket's
/// task has read what was sent, or failed to within [`READ_BEFORE_BLAME`].
struct OverdueCheck {
    asked: Instant,
    read: bool,
}

enum Link {
    Pending {
        deadline: Instant,
    },
    Connected {
        frames: mpsc::Sender<FrameText>,
        /// The socket's direct path, once its task has offered one.
        outlet: Option<Arc<dyn Outlet>>,
        close: Option<oneshot::Sender<CloseOrder>>,
        lease_deadline: Instant,
        awaiting: VecDeque<Awaiting>,
        read_now: Arc<Notify>,
        overdue: Option<OverdueCheck>,
    },
}

struct Subscription {
    endpoint: String,
    /// Shared with every event about this subscriber: a reply costs a reference count.
    info: Arc<SubscriberInfo>,
    events: Vec<&'static EventSpec>,
    lease: Duration,
    link: Link,
    state: LinkState,
    /// Whether its replies are awaited (from the client's registration).
    acknowledges: bool,
}

impl Subscription {
    /// The state of a connected subscription that is keeping up.
    fn following(&self) -> LinkState {
        if self.acknowledges {
            LinkState::Following
        } else {
            LinkState::FollowingUnacknowledged
        }
    }

    fn wants(&self, event: &'static EventSpec) -> bool {
        self.events.iter().any(|e| std::ptr::eq(*e, event))
    }
}

struct TopicState {
    subs: HashMap<SubId, Subscription>,
    contexts: TopicContexts,
    /// The clinician paused following: context changes are refused until resumed.
    paused: bool,
}

struct Topic {
    id: Arc<str>,
    state: Mutex<TopicState>,
}

struct Inner {
    settings: HubSettings,
    topics: RwLock<HashMap<Arc<str>, Arc<Topic>>>,
    /// endpoint token → (topic, subscription)
    endpoints: Mutex<HashMap<String, (Arc<Topic>, SubId)>>,
    listeners: broadcast::Sender<EngineEvent>,
    /// Every event but context changes and deliveries (see [`Engine::listen_links`]).
    link_listeners: broadcast::Sender<EngineEvent>,
    observers: RwLock<Vec<Observer>>,
    next_sub: AtomicU64,
    /// Why context changes are refused on every topic, while they are.
    refusing: RwLock<Option<Arc<str>>>,
}

/// The hub engine. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

impl Engine {
    /// Creates the engine and starts its sweeper on the current tokio runtime; the sweeper
    /// ends when the last clone of the engine is dropped.
    pub fn new(settings: HubSettings) -> Self {
        let (listeners, _) = broadcast::channel(1024);
        let (link_listeners, _) = broadcast::channel(1024);
        let engine = Engine {
            inner: Arc::new(Inner {
                settings,
                topics: RwLock::new(HashMap::new()),
                endpoints: Mutex::new(HashMap::new()),
                listeners,
                link_listeners,
                observers: RwLock::new(Vec::new()),
                next_sub: AtomicU64::new(1),
                refusing: RwLock::new(None),
            }),
        };
        tokio::spawn(sweep(Arc::downgrade(&engine.inner)));
        engine
    }

    pub fn settings(&self) -> &HubSettings {
        &self.inner.settings
    }

    /// Listens to what the engine decides (context changes, link states, SyncErrors).
    pub fn listen(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.listeners.subscribe()
    }

    /// As [`Engine::listen`], without context changes: for listeners that follow links and
    /// problems only, which a context change should not wake.
    pub fn listen_links(&self) -> broadcast::Receiver<EngineEvent> {
        self.inner.link_listeners.subscribe()
    }

    /// Creates a new session topic with an unguessable id.
    pub fn create_topic(&self) -> Arc<str> {
        let id: Arc<str> = random_token().into();
        let topic = Arc::new(Topic {
            id: id.clone(),
            state: Mutex::new(TopicState {
                subs: HashMap::new(),
                contexts: TopicContexts::new(),
                paused: false,
            }),
        });
        self.inner.topics.write().insert(id.clone(), topic);
        id
    }

    fn topic_for(&self, grant: &TokenGrant, topic: &str) -> Option<Arc<Topic>> {
        if *grant.topic != *topic {
            return None;
        }
        self.inner.topics.read().get(topic).cloned()
    }

    /// Tells observers (synchronously) and listeners (through the broadcast channel).
    fn emit(&self, event: EngineEvent) {
        for observer in self.inner.observers.read().iter() {
            observer(&event);
        }
        match event {
            EngineEvent::Delivery { .. } => {}
            // No listener is not an error: the headless agent may run without one.
            EngineEvent::ContextChanged { .. } => {
                let _ = self.inner.listeners.send(event);
            }
            _ => {
                if self.inner.link_listeners.receiver_count() > 0 {
                    let _ = self.inner.link_listeners.send(event.clone());
                }
                let _ = self.inner.listeners.send(event);
            }
        }
    }

    /// Adds an observer that sees every event without loss (a broadcast listener that lags
    /// misses events; the history must not).
    pub fn observe(&self, observer: Observer) {
        self.inner.observers.write().push(observer);
    }

    /// Subscribes, re-subscribes or unsubscribes (spec 2-4).
    pub fn subscribe(
        &self,
        grant: &TokenGrant,
        req: SubscriptionRequest,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        let topic = self
            .topic_for(grant, &req.topic)
            .ok_or(SubscribeError::UnknownTopic)?;
        match req.mode {
            Mode::Subscribe => self.add_subscription(grant, &topic, req),
            Mode::Unsubscribe => {
                let endpoint = req.channel_endpoint.unwrap_or_default();
                let mut state = topic.state.lock();
                // Another client's endpoint is answered like an unknown one.
                let id = self
                    .lookup_endpoint(&topic, &endpoint)
                    .filter(|id| {
                        state
                            .subs
                            .get(id)
                            .is_some_and(|sub| sub.info.client_id == grant.client_id)
                    })
                    .ok_or(SubscribeError::UnknownEndpoint)?;
                self.end_link(&topic, &mut state, id, LinkEnd::Unsubscribed, CLOSE_NORMAL);
                Ok(SubscribeOutcome { endpoint })
            }
        }
    }

    fn lookup_endpoint(&self, topic: &Arc<Topic>, endpoint: &str) -> Option<SubId> {
        let endpoints = self.inner.endpoints.lock();
        let (owner, id) = endpoints.get(endpoint)?;
        Arc::ptr_eq(owner, topic).then_some(*id)
    }

    fn add_subscription(
        &self,
        grant: &TokenGrant,
        topic: &Arc<Topic>,
        req: SubscriptionRequest,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        // Events the token may not read are left out of the grant (checklist 23).
        let events: Vec<&'static EventSpec> = req
            .events
            .iter()
            .copied()
            .filter(|e| grant.scopes.allows(e.name, Access::Read))
            .collect();
        if events.is_empty() {
            return Err(SubscribeError::NoReadScope);
        }
        let settings = &self.inner.settings;
        let asked = req.lease_seconds.unwrap_or(settings.lease_seconds_default);
        // A lease never outlives the token that asked for it (spec 2-4).
        let lease =
            Duration::from_secs(asked.min(settings.lease_seconds_max)).min(grant.remaining());
        let name = req
            .subscriber_name
            .clone()
            .unwrap_or_else(|| grant.client_name.clone());
        let mut state = topic.state.lock();

        if let Some(endpoint) = req.channel_endpoint {
            // Re-subscription replaces the event set and lease of the (topic, endpoint) pair.
            let id = self
                .lookup_endpoint(topic, &endpoint)
                .ok_or(SubscribeError::UnknownEndpoint)?;
            let sub = state
                .subs
                .get_mut(&id)
                // Another client's endpoint is answered like an unknown one.
                .filter(|sub| sub.info.client_id == grant.client_id)
                .ok_or(SubscribeError::UnknownEndpoint)?;
            sub.events = events;
            sub.lease = lease;
            let info = Arc::make_mut(&mut sub.info);
            info.name = name;
            info.events = frames_events(&sub.events);
            match &mut sub.link {
                Link::Pending { .. } => {}
                Link::Connected {
                    frames,
                    lease_deadline,
                    ..
                } => {
                    *lease_deadline = Instant::now() + lease;
                    let confirmation =
                        frames::confirmation(&topic.id, &sub.events, lease.as_secs());
                    let _ = frames.try_send(confirmation.into());
                }
            }
            return Ok(SubscribeOutcome { endpoint });
        }

        // Caps on what one client, and all of them, may hold: each subscription can carry one
        // socket, so these bound sockets too.
        let held = state
            .subs
            .values()
            .filter(|sub| sub.info.client_id == grant.client_id)
            .count();
        if held >= settings.max_subscriptions_per_client {
            return Err(SubscribeError::TooManySubscriptions(format!(
                "client `{}` already holds {held} subscriptions (hub.max_subscriptions_per_client); \
                 unsubscribe one first",
                grant.client_id
            )));
        }
        if self.inner.endpoints.lock().len() >= settings.max_subscriptions_total {
            return Err(SubscribeError::TooManySubscriptions(
                "the hub holds as many subscriptions as it allows (hub.max_subscriptions_total)"
                    .into(),
            ));
        }
        let endpoint = random_token();
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(SubscriberInfo {
            topic: topic.id.clone(),
            name,
            client_id: grant.client_id.clone(),
            events: frames_events(&events),
        });
        state.subs.insert(
            id,
            Subscription {
                endpoint: endpoint.clone(),
                info: info.clone(),
                events,
                lease,
                link: Link::Pending {
                    deadline: Instant::now() + CONNECT_WINDOW.min(lease),
                },
                state: LinkState::Pending,
                acknowledges: grant.acknowledges,
            },
        );
        self.inner
            .endpoints
            .lock()
            .insert(endpoint.clone(), (topic.clone(), id));
        drop(state);
        self.emit(EngineEvent::Link {
            subscriber: info,
            state: LinkState::Pending,
            detail: None,
        });
        Ok(SubscribeOutcome { endpoint })
    }

    /// Attaches a WebSocket to a subscribed endpoint: queues the confirmation, then the replay
    /// of the latest unclosed open of each anchor type the subscriber wants (spec 2-4).
    pub fn connect(&self, endpoint: &str) -> Result<Connection, ConnectError> {
        let (topic, id) = self
            .inner
            .endpoints
            .lock()
            .get(endpoint)
            .cloned()
            .ok_or(ConnectError::UnknownEndpoint)?;
        let mut state = topic.state.lock();
        let TopicState { subs, contexts, .. } = &mut *state;
        let sub = subs.get_mut(&id).ok_or(ConnectError::UnknownEndpoint)?;
        if matches!(sub.link, Link::Connected { .. }) {
            return Err(ConnectError::AlreadyConnected);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let (close_tx, close_rx) = oneshot::channel();
        // The queue is fresh and far larger than one confirmation plus a handful of replays.
        let _ =
            tx.try_send(frames::confirmation(&topic.id, &sub.events, sub.lease.as_secs()).into());
        let mut awaiting = VecDeque::new();
        let events = sub.events.clone();
        for open in contexts.replay(move |e| events.iter().any(|w| std::ptr::eq(*w, e))) {
            let _ = tx.try_send(open.frame.clone());
            remember_sent(
                &mut awaiting,
                sub.acknowledges,
                Awaiting {
                    event_id: open.event_id.clone(),
                    event_name: open.event.name,
                    sent: Instant::now(),
                },
            );
        }
        let read_now = Arc::new(Notify::new());
        sub.link = Link::Connected {
            frames: tx,
            outlet: None,
            close: Some(close_tx),
            lease_deadline: Instant::now() + sub.lease,
            awaiting,
            read_now: read_now.clone(),
            overdue: None,
        };
        sub.state = sub.following();
        let (info, following) = (sub.info.clone(), sub.state);
        drop(state);
        self.emit(EngineEvent::Link {
            subscriber: info,
            state: following,
            detail: None,
        });
        Ok(Connection {
            endpoint: endpoint.to_owned(),
            frames: rx,
            close: close_rx,
            read_now,
        })
    }

    /// Applies a validated context change and fans it out (spec 2-6).
    pub fn publish(&self, grant: &TokenGrant, change: ContextChange) -> Result<(), PublishError> {
        let topic = self
            .topic_for(grant, &change.topic)
            .ok_or(PublishError::UnknownTopic)?;
        if !grant.scopes.allows(change.event.name, Access::Write) {
            return Err(PublishError::Forbidden(change.event.name));
        }
        let event = change.event;
        let mut state = topic.state.lock();
        // Refused, not queued: the requesting app learns at once that nobody followed.
        if event.kind != EventKind::Infrastructure
            && let Some(why) = self.inner.refusing.read().clone()
        {
            return Err(PublishError::Unavailable(why));
        }
        if state.paused && event.kind != EventKind::Infrastructure {
            return Err(PublishError::Conflict(format!(
                "context sharing is paused at this workstation; {} was not relayed",
                event.name
            )));
        }
        let applied = state
            .contexts
            .apply(&change)
            .map_err(|refusal| match refusal {
                ContextRefusal::Conflict(m) => PublishError::Conflict(m),
                ContextRefusal::Invalid(m) => PublishError::Invalid(m),
            })?;
        let event_id: Arc<str> = change.id.as_str().into();
        // A posted SyncError goes to the *other* SyncError subscribers (spec 2-5).
        let exclude_client = (event.name == SYNC_ERROR).then_some(grant.client_id.as_str());
        let now = Instant::now();
        let mut overflowed = Vec::new();
        for (id, sub) in state.subs.iter_mut() {
            if exclude_client == Some(sub.info.client_id.as_str()) {
                continue;
            }
            let acknowledges = sub.acknowledges;
            let Link::Connected {
                frames,
                outlet,
                awaiting,
                ..
            } = &mut sub.link
            else {
                continue;
            };
            // The event itself to those who want it; otherwise the opens it implies, so a
            // subscriber of Patient-open alone still follows the patient (spec 2-5).
            let wanted = sub.events.iter().any(|e| std::ptr::eq(*e, event));
            let to_send = std::iter::once((event, &applied.frame))
                .filter(|_| wanted)
                .chain(
                    applied
                        .implied
                        .iter()
                        .filter(|(spec, _)| {
                            !wanted && sub.events.iter().any(|e| std::ptr::eq(*e, *spec))
                        })
                        .map(|(spec, frame)| (*spec, frame)),
                );
            for (spec, frame) in to_send {
                match offer(frames, outlet.as_deref(), frame) {
                    Ok(()) => remember_sent(
                        awaiting,
                        acknowledges,
                        Awaiting {
                            event_id: event_id.clone(),
                            event_name: spec.name,
                            sent: now,
                        },
                    ),
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflowed.push(*id);
                        break;
                    }
                    // The socket task is gone; its own close report removes the subscription.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        // Told under the topic's lock, so listeners (history) see changes in the order they
        // were applied; observers only queue, they never wait.
        if event.name == SYNC_ERROR {
            self.emit(EngineEvent::SyncError {
                topic: topic.id.clone(),
                about: grant.client_name.clone(),
                event_name: event.name.to_owned(),
                diagnostics: sync_error_diagnostics(&change).unwrap_or_default(),
            });
        }
        self.emit(EngineEvent::ContextChanged {
            topic: topic.id.clone(),
            event: event.name,
            event_id: change.id.clone(),
            requester: grant.client_name.clone(),
            summary: applied.summary.map(Box::new),
            current: state.contexts.current_summary().map(Box::new),
            frame: applied.frame,
        });
        for id in overflowed {
            self.fail_subscriber(
                &topic,
                &mut state,
                id,
                &change.id,
                event.name,
                "did not keep up with notifications (its queue is full) and was unsubscribed",
            );
        }
        Ok(())
    }

    /// The current context of a topic, for a token bound to it.
    pub fn current_context(&self, grant: &TokenGrant, topic: &str) -> Option<CurrentContext> {
        let topic = self.topic_for(grant, topic)?;
        Some(topic.state.lock().contexts.current())
    }

    /// The current context of a topic, for the agent itself (tray, history).
    pub fn current_context_of(&self, topic: &str) -> Option<CurrentContext> {
        let topic = self.inner.topics.read().get(topic).cloned()?;
        Some(topic.state.lock().contexts.current())
    }

    /// Gives the engine a direct path to an endpoint's socket (see [`Outlet`]).
    pub fn attach_outlet(&self, endpoint: &str, outlet: Arc<dyn Outlet>) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        if let Some(Subscription {
            link: Link::Connected { outlet: slot, .. },
            ..
        }) = state.subs.get_mut(&id)
        {
            *slot = Some(outlet);
        }
    }

    /// Handles a text frame a subscriber sent: its `{id, status}` reply to a notification.
    pub fn reply(&self, endpoint: &str, text: &str) {
        let Some(reply) = SubscriberReply::parse(text) else {
            tracing::debug!("ignoring a subscriber frame that is not an {{id, status}} reply");
            return;
        };
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        let Some(sub) = state.subs.get_mut(&id) else {
            return;
        };
        let Link::Connected {
            awaiting, overdue, ..
        } = &mut sub.link
        else {
            return;
        };
        let Some(pos) = awaiting.iter().position(|a| *a.event_id == *reply.id) else {
            return;
        };
        // The oldest, which a check may be about, is answered: the next gets its own check.
        if pos == 0 {
            *overdue = None;
        }
        let answered = awaiting.remove(pos).map(|a| a.event_name).unwrap_or("");
        let delivery = EngineEvent::Delivery {
            subscriber: sub.info.clone(),
            event_id: reply.id.clone(),
            event_name: answered,
            outcome: match reply.status {
                None | Some(200..=299) => Delivery::Acknowledged {
                    status: reply.status.unwrap_or(200),
                },
                Some(status) => Delivery::Refused { status },
            },
        };
        match reply.status {
            // No status (`@medplum/core`) means received; any 2xx is success (spec 2-5).
            None | Some(200..=299) => {
                let recovered = (sub.state != sub.following()).then(|| {
                    sub.state = sub.following();
                    EngineEvent::Link {
                        subscriber: sub.info.clone(),
                        state: sub.state,
                        detail: None,
                    }
                });
                // Told once the topic is free again: with a thousand subscribers answering,
                // the observers' work must not hold up the next change's fan-out.
                drop(state);
                self.emit(delivery);
                if let Some(recovered) = recovered {
                    self.emit(recovered);
                }
            }
            Some(status) => {
                // Before the SyncError it causes.
                self.emit(delivery);
                sub.state = LinkState::Refused {
                    status: Some(status),
                };
                let info = sub.info.clone();
                let diagnostics = match status {
                    409 => format!("{} refused to follow {answered} (status 409)", info.name),
                    400..=499 => format!("{} refused {answered} (status {status})", info.name),
                    _ => format!(
                        "{answered} was not delivered to {}: status {status}",
                        info.name
                    ),
                };
                self.send_sync_error(
                    &topic,
                    &mut state,
                    Some(id),
                    &reply.id,
                    answered,
                    &info.name,
                    &diagnostics,
                );
                drop(state);
                self.emit(EngineEvent::Link {
                    subscriber: info,
                    state: LinkState::Refused {
                        status: Some(status),
                    },
                    detail: Some(diagnostics),
                });
            }
        }
    }

    /// The socket of an endpoint closed, and how.
    pub fn socket_closed(&self, endpoint: &str, end: SocketEnd) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        let Some(sub) = state.subs.get(&id) else {
            return;
        };
        // Closing with 1000/1001 is a normal goodbye; anything else is worth a SyncError (spec 2-5).
        let how = match end {
            SocketEnd::Closed(_) if end.is_goodbye() => None,
            SocketEnd::Closed(code) => {
                Some(format!("closed its connection abnormally (code {code})"))
            }
            SocketEnd::Lost => Some("lost its connection without closing it".to_owned()),
            SocketEnd::TooLarge => Some(format!(
                "sent a WebSocket frame over the hub's limit of {} bytes (hub.max_body_bytes); \
                 the hub closed its connection with code {CLOSE_TOO_BIG}",
                self.settings().max_body_bytes
            )),
        };
        if let Some(how) = how {
            let name = sub.info.name.clone();
            let diagnostics = format!("{name} {how}");
            self.send_sync_error(&topic, &mut state, Some(id), "", "", &name, &diagnostics);
        }
        self.end_link(&topic, &mut state, id, LinkEnd::Socket(end), CLOSE_NORMAL);
    }

    /// Ends a subscription that is not being dropped as unresponsive: `end` says why, and
    /// whether the app is sent a denial.
    fn end_link(&self, topic: &Topic, state: &mut TopicState, id: SubId, end: LinkEnd, code: u16) {
        let reason = end.denial_reason();
        self.end_subscription(topic, state, id, LinkState::Gone(end), reason, code);
    }

    /// Removes a subscription: burns its endpoint, tells its socket to send a denial (when a
    /// reason is given) and close, and tells listeners.
    fn end_subscription(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        id: SubId,
        final_state: LinkState,
        denial_reason: Option<&'static str>,
        code: u16,
    ) {
        let Some(mut sub) = state.subs.remove(&id) else {
            return;
        };
        self.inner.endpoints.lock().remove(&sub.endpoint);
        if let Link::Connected { close, .. } = &mut sub.link
            && let Some(close) = close.take()
        {
            let denial =
                denial_reason.map(|r| frames::denial(&topic.id, &sub.events, Some(r)).into());
            let _ = close.send(CloseOrder {
                denial,
                code,
                reason: denial_reason.unwrap_or(""),
            });
        }
        self.emit(EngineEvent::Link {
            subscriber: sub.info,
            state: final_state,
            detail: denial_reason.map(str::to_owned),
        });
    }

    /// A subscriber failed in a way that ends its subscription: SyncError to the others, then
    /// unsubscribe it (spec 2-5: an unresponsive subscriber SHALL be unsubscribed).
    fn fail_subscriber(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        id: SubId,
        event_id: &str,
        event_name: &str,
        why: &'static str,
    ) {
        let Some(name) = state.subs.get(&id).map(|s| s.info.name.clone()) else {
            return;
        };
        let diagnostics = format!("{name} {why}");
        self.send_sync_error(
            topic,
            state,
            Some(id),
            event_id,
            event_name,
            &name,
            &diagnostics,
        );
        self.end_subscription(
            topic,
            state,
            id,
            LinkState::Unresponsive,
            Some(why),
            CLOSE_POLICY,
        );
    }

    /// Sends a hub-generated SyncError to every SyncError subscriber of the topic except the
    /// subscriber it is about.
    #[allow(clippy::too_many_arguments)]
    fn send_sync_error(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        about: Option<SubId>,
        event_id: &str,
        event_name: &str,
        subscriber_name: &str,
        diagnostics: &str,
    ) {
        let report = SyncErrorReport {
            event_id,
            event_name,
            subscriber_name,
            diagnostics,
            code: IssueCode::Processing,
        };
        let frame: FrameText = report
            .notification(&topic.id, &ids::event_id(), &now_iso())
            .into();
        let sync_error = EventSpec::lookup(SYNC_ERROR);
        for (id, sub) in state.subs.iter_mut() {
            if Some(*id) == about || !sync_error.is_some_and(|e| sub.wants(e)) {
                continue;
            }
            if let Link::Connected { frames, outlet, .. } = &sub.link {
                // A SyncError about a full queue must not recurse into another one.
                let _ = offer(frames, outlet.as_deref(), &frame);
            }
        }
        tracing::warn!(topic = %short(&topic.id), "SyncError: {diagnostics}");
        self.emit(EngineEvent::SyncError {
            topic: topic.id.clone(),
            about: subscriber_name.to_owned(),
            event_name: event_name.to_owned(),
            diagnostics: diagnostics.to_owned(),
        });
    }

    /// One pass of the sweeper over every topic.
    fn sweep_once(&self) {
        let now = Instant::now();
        let ack_timeout = self.inner.settings.ack_timeout();
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        for topic in topics {
            let mut state = topic.state.lock();
            let mut expired = Vec::new();
            let mut unresponsive = Vec::new();
            let mut never_connected = Vec::new();
            for (id, sub) in state.subs.iter_mut() {
                match &mut sub.link {
                    Link::Pending { deadline } if now >= *deadline => never_connected.push(*id),
                    Link::Pending { .. } => {}
                    Link::Connected {
                        lease_deadline,
                        awaiting,
                        read_now,
                        overdue,
                        ..
                    } => {
                        if now >= *lease_deadline {
                            expired.push(*id);
                        } else if sub.acknowledges
                            && let Some(oldest) = awaiting.front()
                            && now.duration_since(oldest.sent) >= ack_timeout
                        {
                            match overdue {
                                None => {
                                    *overdue = Some(OverdueCheck {
                                        asked: now,
                                        read: false,
                                    });
                                    read_now.notify_one();
                                }
                                Some(check)
                                    if check.read
                                        || now.duration_since(check.asked) >= READ_BEFORE_BLAME =>
                                {
                                    unresponsive.push((
                                        *id,
                                        oldest.event_id.clone(),
                                        oldest.event_name,
                                    ));
                                }
                                Some(_) => {}
                            }
                        }
                    }
                }
            }
            for id in never_connected {
                let never = LinkEnd::NeverConnected;
                self.end_link(&topic, &mut state, id, never, CLOSE_NORMAL);
            }
            for id in expired {
                self.end_link(&topic, &mut state, id, LinkEnd::LeaseExpired, CLOSE_NORMAL);
            }
            for (id, event_id, event_name) in unresponsive {
                if let Some(sub) = state.subs.get(&id) {
                    self.emit(EngineEvent::Delivery {
                        subscriber: sub.info.clone(),
                        event_id: event_id.to_string(),
                        event_name,
                        outcome: Delivery::TimedOut,
                    });
                }
                self.fail_subscriber(
                    &topic,
                    &mut state,
                    id,
                    &event_id,
                    event_name,
                    "did not acknowledge a notification in time and was unsubscribed",
                );
            }
        }
    }

    /// Refuses every context change (infrastructure events, a logout above all, still pass)
    /// with `why`, until called with `None`: the agent does so while it cannot keep a record
    /// of what it relays.
    pub fn refuse_changes(&self, why: Option<String>) {
        *self.inner.refusing.write() = why.map(Arc::from);
    }

    /// The socket's task has read everything its app sent before it was asked to (see
    /// [`Connection::read_now`]): an acknowledgement still missing now is missing.
    pub fn read_everything_sent(&self, endpoint: &str) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        if let Some(Subscription {
            link:
                Link::Connected {
                    overdue: Some(check),
                    ..
                },
            ..
        }) = state.subs.get_mut(&id)
        {
            check.read = true;
        }
    }

    /// Ends every subscription (the hub is stopping): each socket gets a denial and a close.
    pub fn close_all(&self) {
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        for topic in topics {
            let mut state = topic.state.lock();
            let ids: Vec<SubId> = state.subs.keys().copied().collect();
            for id in ids {
                self.end_link(
                    &topic,
                    &mut state,
                    id,
                    LinkEnd::HubStopping,
                    CLOSE_GOING_AWAY,
                );
            }
        }
    }

    /// Pauses or resumes following on a topic; returns whether it changed.
    pub fn set_paused(&self, topic: &str, paused: bool) -> bool {
        let Some(topic) = self.inner.topics.read().get(topic).cloned() else {
            return false;
        };
        let mut state = topic.state.lock();
        if state.paused == paused {
            return false;
        }
        state.paused = paused;
        self.emit(EngineEvent::Paused {
            topic: topic.id.clone(),
            paused,
        });
        true
    }

    /// Link states of a topic's subscribers, for the UI.
    pub fn subscribers(&self, topic: &str) -> Vec<(Arc<SubscriberInfo>, LinkState)> {
        let Some(topic) = self.inner.topics.read().get(topic).cloned() else {
            return Vec::new();
        };
        let state = topic.state.lock();
        state
            .subs
            .values()
            .map(|s| (s.info.clone(), s.state))
            .collect()
    }
}

/// Puts `frame` on the subscriber's wire directly when nothing is queued ahead of it, else
/// queues it. Called under the topic's lock, so no other frame for this subscriber can be
/// queued between the look at the queue and the write.
fn offer(
    frames: &mpsc::Sender<FrameText>,
    outlet: Option<&dyn Outlet>,
    frame: &FrameText,
) -> Result<(), mpsc::error::TrySendError<FrameText>> {
    if let Some(outlet) = outlet
        && frames.capacity() == frames.max_capacity()
        && outlet.try_write(frame)
    {
        return Ok(());
    }
    frames.try_send(frame.clone())
}

fn frames_events(events: &[&'static EventSpec]) -> String {
    lockstep_fhircast::subscription::join_events(events)
}

fn sync_error_diagnostics(change: &ContextChange) -> Option<String> {
    let outcome = change.entry("operationoutcome")?.resource()?;
    let issue = outcome.get("issue")?.get(0)?;
    issue.get("diagnostics")?.as_str().map(str::to_owned)
}

/// The first characters of a topic, enough to tell topics apart in logs without leaking one.
fn short(topic: &str) -> &str {
    topic.get(..6).unwrap_or(topic)
}

async fn sweep(inner: Weak<Inner>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(inner) = inner.upgrade() else { return };
        Engine { inner }.sweep_once();
    }
}
