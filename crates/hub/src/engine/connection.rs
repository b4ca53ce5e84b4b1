//! What a socket task holds of its subscription: the frames to write, the order to stop, and
//! the direct path the engine may write through.

use axum::extract::ws::Utf8Bytes;
use std::sync::Arc;
use tokio::sync::{Notify, mpsc, oneshot};

/// A frame ready for the socket; cloning it shares the buffer.
pub type FrameText = Utf8Bytes;

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
