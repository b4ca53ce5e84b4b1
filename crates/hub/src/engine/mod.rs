//! The engine: every topic's subscriptions, open contexts and pending acknowledgements, and the
//! one place where a context change is decided and fanned out.
//!
//! Each topic has its own lock; a publish takes it once, applies the change, and hands the one
//! serialised frame (a reference-counted buffer) to each subscriber: written straight to its
//! socket when the socket takes it at once (an [`Outlet`]), else to its bounded queue. Nothing
//! on that path waits on a socket: a subscriber that cannot keep up is dropped with a SyncError
//! rather than slowing the others. Time-based decisions (leases, unconnected endpoints,
//! acknowledgement deadlines) are taken by one sweeper task, asleep until the next is due.

mod connection;
mod errors;
mod events;
mod fanout;
mod gate;
mod replies;
mod subscriptions;
mod sweeper;
mod topic;

pub use crate::contexts::CurrentContext;
pub use crate::link::{LinkEnd, LinkState, SocketEnd};
pub use connection::{CloseOrder, Connection, FrameText, Outlet, SubscribeOutcome};
pub use errors::{ConnectError, PublishError, SubscribeError};
pub use events::{Delivery, EngineEvent, Observer, SubscriberInfo};
pub use gate::{Gate, GateFuture};

use crate::auth::TokenGrant;
use crate::clock::now_iso;
use crate::contexts::{ContextRefusal, TopicContexts};
use crate::ids::{self, random_token};
use crate::settings::HubSettings;
use lockstep_fhircast::event::SYNC_ERROR;
use lockstep_fhircast::frames::{self, IssueCode, SyncErrorReport};
use lockstep_fhircast::notification::SubscriberReply;
use lockstep_fhircast::{Access, ContextChange, EventKind, EventSpec, Mode, SubscriptionRequest};
use parking_lot::{Mutex, RwLock};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};
use sweeper::{Alarm, READ_SETTLE, sweep};
use tokio::sync::{Notify, broadcast, mpsc, oneshot};
use topic::{Awaiting, Link, OverdueCheck, SubId, Subscription, Topic, TopicState, remember_sent};

/// Frames a subscriber may have queued before it counts as too slow and is dropped.
pub const SUBSCRIBER_QUEUE: usize = 1024;

/// How long an endpoint waits for its WebSocket before it is withdrawn (or the lease, if shorter).
pub const CONNECT_WINDOW: Duration = Duration::from_secs(120);

/// WebSocket close code used when the hub ends a subscription (RFC 6455: normal closure).
pub const CLOSE_NORMAL: u16 = 1000;

/// WebSocket close code when the hub stops (RFC 6455: going away).
pub const CLOSE_GOING_AWAY: u16 = 1001;

/// WebSocket close code for a subscriber dropped for a policy reason (too slow, unresponsive).
pub const CLOSE_POLICY: u16 = 1008;

/// WebSocket close code for a frame over `hub.max_body_bytes` (RFC 6455: message too big).
pub const CLOSE_TOO_BIG: u16 = 1009;

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
    /// When the sweeper next looks (see [`sweeper`]).
    alarm: Arc<Alarm>,
    /// Who decides requested changes, where another hub does (see [`Gate`]).
    gate: RwLock<Option<Arc<dyn Gate>>>,
}

impl Drop for Inner {
    /// The sweeper may be asleep with nothing due: tell it to end.
    fn drop(&mut self) {
        self.alarm.ring();
    }
}

/// The hub engine. Cheap to clone; all clones share the same state.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

/// The first characters of a topic, enough to tell topics apart in logs without leaking one.
fn short(topic: &str) -> &str {
    topic.get(..6).unwrap_or(topic)
}

impl Engine {
    /// Creates the engine and starts its sweeper on the current tokio runtime; the sweeper
    /// ends when the last clone of the engine is dropped.
    pub fn new(settings: HubSettings) -> Self {
        let (listeners, _) = broadcast::channel(1024);
        let (link_listeners, _) = broadcast::channel(1024);
        let alarm = Arc::new(Alarm::new());
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
                alarm: alarm.clone(),
                gate: RwLock::new(None),
            }),
        };
        tokio::spawn(sweep(Arc::downgrade(&engine.inner), alarm));
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
            EngineEvent::Delivery { .. } | EngineEvent::Renewed { .. } => {}
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

    /// Refuses every context change (infrastructure events, a logout above all, still pass)
    /// with `why`, until called with `None`: the agent does so while it cannot keep a record
    /// of what it relays.
    pub fn refuse_changes(&self, why: Option<String>) {
        *self.inner.refusing.write() = why.map(Arc::from);
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
