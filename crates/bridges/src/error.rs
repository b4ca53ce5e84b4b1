//! Why a bridge stopped running.

/// Why a bridge stopped running (the supervisor restarts it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot join the session: {0}")]
    Join(String),
    #[error("the hub refused the request: {0}")]
    Publish(String),
    #[error("{0}")]
    Setup(String),
}
