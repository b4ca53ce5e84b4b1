//! Why the engine refused a request.

use std::sync::Arc;

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
    /// The hub that decides the session (the site's, through the enterprise link) refused it
    /// with this status; the requester gets the same answer.
    #[error("the site's hub refused the change ({status}): {message}")]
    Upstream { status: u16, message: String },
}

/// Why a WebSocket could not attach to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    #[error("unknown or expired channel endpoint")]
    UnknownEndpoint,
    #[error("this channel endpoint already has a connected socket")]
    AlreadyConnected,
}
