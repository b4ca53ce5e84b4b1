//! A topic's state under its one lock: the subscriptions with their links and the events each
//! still owes an answer to, and the open contexts.

use super::{CloseOrder, FrameText, Outlet, SubscriberInfo};
use crate::contexts::TopicContexts;
use crate::link::LinkState;
use lockstep_fhircast::EventSpec;
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{Notify, mpsc, oneshot};

pub(super) type SubId = u64;

/// How many of the latest events sent to an app that does not acknowledge are remembered, so a
/// refusal it does send is still matched to its event (and raises its SyncError).
pub(super) const UNAWAITED_REMEMBERED: usize = 64;

/// Records an event sent to a subscriber, to match its reply. For an app that does not
/// acknowledge, only the latest few are kept: it may never reply to any.
pub(super) fn remember_sent(awaiting: &mut VecDeque<Awaiting>, acknowledges: bool, sent: Awaiting) {
    if !acknowledges && awaiting.len() >= UNAWAITED_REMEMBERED {
        awaiting.pop_front();
    }
    awaiting.push_back(sent);
}

pub(super) struct Awaiting {
    pub(super) event_id: Arc<str>,
    pub(super) event_name: &'static str,
    pub(super) sent: Instant,
}

/// An acknowledgement past its deadline, not yet declared missing. Its reply may be waiting
/// unread in the socket: after the agent was frozen (SIGSTOP, a stalled VM) every deadline
/// passes at once, before any socket task has run. The app is blamed only once its socket's
/// task has read what was sent (and [`READ_SETTLE`] has passed), or failed to within
/// [`READ_BEFORE_BLAME`].
pub(super) struct OverdueCheck {
    pub(super) asked: Instant,
    /// When the socket's task said it had read what was sent.
    pub(super) read_at: Option<Instant>,
}

pub(super) enum Link {
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

pub(super) struct Subscription {
    pub(super) endpoint: String,
    /// Shared with every event about this subscriber: a reply costs a reference count.
    pub(super) info: Arc<SubscriberInfo>,
    pub(super) events: Vec<&'static EventSpec>,
    pub(super) lease: Duration,
    pub(super) link: Link,
    pub(super) state: LinkState,
    /// Whether its replies are awaited (from the client's registration).
    pub(super) acknowledges: bool,
}

impl Subscription {
    /// The state of a connected subscription that is keeping up.
    pub(super) fn following(&self) -> LinkState {
        if self.acknowledges {
            LinkState::Following
        } else {
            LinkState::FollowingUnacknowledged
        }
    }

    pub(super) fn wants(&self, event: &'static EventSpec) -> bool {
        self.events.iter().any(|e| std::ptr::eq(*e, event))
    }
}

pub(super) struct TopicState {
    pub(super) subs: HashMap<SubId, Subscription>,
    pub(super) contexts: TopicContexts,
    /// The clinician paused following: context changes are refused until resumed.
    pub(super) paused: bool,
}

pub(super) struct Topic {
    pub(super) id: Arc<str>,
    pub(super) state: Mutex<TopicState>,
}
