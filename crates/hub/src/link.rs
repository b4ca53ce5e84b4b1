//! How each app and each bridge keeps up with the session: one type from the engine's decision
//! to the window's row, so that a new state is a compile error everywhere it must be handled.

use serde::{Serialize, Serializer};

/// The state of one link: an app's subscription, or a bridge and the app behind it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkState {
    /// Subscribed; its socket is not connected yet.
    Pending,
    /// Connected, and every notification so far acknowledged with 2xx (or not yet due); for a
    /// bridge: in the session and, as far as it can tell, showing the current context.
    Following,
    /// Connected and sent every notification, but not expected to acknowledge any: the site
    /// registered the app as one that never replies (`acknowledges = false`).
    FollowingUnacknowledged,
    /// A bridge acted (launched, wrote a file) but its app gave no proof it followed.
    Unconfirmed,
    /// An app answered a notification with this non-2xx status; a bridge (no status) refused a
    /// change it could not pass on safely (unmapped identifier, missing value, another patient).
    Refused { status: Option<u16> },
    /// Did not answer within the acknowledgement deadline, or could not keep up; unsubscribed.
    Unresponsive,
    /// A bridge or its app failed; it is being restarted or needs attention.
    Broken,
    /// A bridge disabled in the configuration, or stopped.
    Off,
    /// The subscription is over, and why.
    Gone(LinkEnd),
}

/// Why a subscription ended (other than for being unresponsive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkEnd {
    /// The app unsubscribed.
    Unsubscribed,
    /// Its lease ran out before it subscribed again.
    LeaseExpired,
    /// It never connected the socket of its subscription.
    NeverConnected,
    /// The hub is stopping.
    HubStopping,
    /// Its socket ended, and how.
    Socket(SocketEnd),
}

/// How a subscriber's socket ended, as its task saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketEnd {
    /// The app sent a Close frame with this code (1000 when it gave none).
    Closed(u16),
    /// The connection broke, or went silent, without a Close frame.
    Lost,
    /// The app sent a frame over `hub.max_body_bytes`; the hub closed with 1009.
    TooLarge,
}

impl SocketEnd {
    /// Whether this is how an app says goodbye (1000 normal, 1001 going away).
    pub fn is_goodbye(self) -> bool {
        matches!(self, SocketEnd::Closed(1000 | 1001))
    }
}

impl LinkEnd {
    /// Whether the clinician must see it: the app stopped following without meaning to.
    pub fn is_problem(self) -> bool {
        match self {
            LinkEnd::Unsubscribed | LinkEnd::NeverConnected | LinkEnd::HubStopping => false,
            LinkEnd::LeaseExpired => true,
            LinkEnd::Socket(end) => !end.is_goodbye(),
        }
    }

    /// In plain words, for the audit trail and the window.
    pub fn describe(self) -> &'static str {
        match self {
            LinkEnd::Unsubscribed => "unsubscribed",
            LinkEnd::LeaseExpired => "lease expired",
            LinkEnd::NeverConnected => "never connected its socket",
            LinkEnd::HubStopping => "hub shutting down",
            LinkEnd::Socket(end) if end.is_goodbye() => "socket closed",
            LinkEnd::Socket(SocketEnd::Closed(_)) => "socket closed abnormally",
            LinkEnd::Socket(SocketEnd::Lost) => "connection lost",
            LinkEnd::Socket(SocketEnd::TooLarge) => "sent a frame over the limit",
        }
    }

    /// The `hub.reason` of the denial the app is sent, when it is sent one.
    pub fn denial_reason(self) -> Option<&'static str> {
        match self {
            LinkEnd::Unsubscribed | LinkEnd::LeaseExpired | LinkEnd::HubStopping => {
                Some(self.describe())
            }
            LinkEnd::NeverConnected | LinkEnd::Socket(_) => None,
        }
    }
}

impl LinkState {
    /// The state's name on the page (`data-state`) and in the audit trail.
    pub fn name(self) -> &'static str {
        match self {
            LinkState::Pending => "pending",
            LinkState::Following => "following",
            LinkState::FollowingUnacknowledged => "following-unacknowledged",
            LinkState::Unconfirmed => "unconfirmed",
            LinkState::Refused { .. } => "refused",
            LinkState::Unresponsive => "unresponsive",
            LinkState::Broken => "broken",
            LinkState::Off => "off",
            LinkState::Gone(_) => "gone",
        }
    }

    /// Whether the app receives every change as far as the hub knows.
    pub fn is_following(self) -> bool {
        matches!(
            self,
            LinkState::Following | LinkState::FollowingUnacknowledged
        )
    }

    /// Whether this state is a sync problem the clinician must see.
    pub fn is_problem(self) -> bool {
        match self {
            LinkState::Refused { .. } | LinkState::Unresponsive | LinkState::Broken => true,
            LinkState::Gone(end) => end.is_problem(),
            LinkState::Pending
            | LinkState::Following
            | LinkState::FollowingUnacknowledged
            | LinkState::Unconfirmed
            | LinkState::Off => false,
        }
    }
}

impl Serialize for LinkState {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_an_unintended_end_is_a_problem() {
        let problems: Vec<LinkEnd> = [
            LinkEnd::Unsubscribed,
            LinkEnd::LeaseExpired,
            LinkEnd::NeverConnected,
            LinkEnd::HubStopping,
            LinkEnd::Socket(SocketEnd::Closed(1000)),
            LinkEnd::Socket(SocketEnd::Closed(1001)),
            LinkEnd::Socket(SocketEnd::Closed(4000)),
            LinkEnd::Socket(SocketEnd::Lost),
            LinkEnd::Socket(SocketEnd::TooLarge),
        ]
        .into_iter()
        .filter(|end| end.is_problem())
        .collect();
        assert_eq!(
            problems,
            [
                LinkEnd::LeaseExpired,
                LinkEnd::Socket(SocketEnd::Closed(4000)),
                LinkEnd::Socket(SocketEnd::Lost),
                LinkEnd::Socket(SocketEnd::TooLarge),
            ]
        );
    }

    #[test]
    fn the_page_sees_the_states_name() {
        let refused = serde_json::to_value(LinkState::Refused { status: Some(409) }).unwrap();
        assert_eq!(refused, "refused");
        assert_eq!(
            serde_json::to_value(LinkState::Gone(LinkEnd::LeaseExpired)).unwrap(),
            "gone"
        );
    }
}
