//! One task per subscriber socket: it writes what the engine had to queue, reads the app's
//! replies, pings, and ends the socket with the WebSocket closing handshake (RFC 6455 7.1),
//! whoever ends it.

use crate::engine::{CLOSE_TOO_BIG, CloseOrder, ConnectError, Connection, Engine, SocketEnd};
use crate::server::{HubState, Refusal, text};
use axum::body::Bytes;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use futures_util::stream::SplitStream;
use futures_util::{FutureExt, SinkExt, StreamExt};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a socket that has sent its Close waits for the app's. RFC 6455 has the server drop
/// the TCP connection once both Close frames have crossed: dropping it sooner resets it, and a
/// client that is still reading (the denial frame before the Close, say) may lose what it had
/// not read yet. An app that is reading answers within milliseconds.
const CLOSING_HANDSHAKE_WAIT: Duration = Duration::from_secs(2);

/// The read buffer of each hub socket. tungstenite's default (128 KiB) is zero-filled before
/// every read: for `{id, status}` replies of tens of bytes that memset was most of the hub's CPU
/// under load and most of an idle subscriber's memory. Larger frames still grow the buffer.
pub(crate) const WEBSOCKET_READ_BUFFER_BYTES: usize = 4 * 1024;

pub(crate) async fn websocket(
    State(state): State<HubState>,
    Path(endpoint): Path<String>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // The endpoint is checked before the upgrade: an unknown or busy endpoint gets no socket.
    let connection = match state.engine.connect(&endpoint) {
        Ok(connection) => connection,
        Err(error @ ConnectError::UnknownEndpoint) => {
            // Guessing endpoints draws on the allowance for failed credentials.
            if let Err(limited) = state.limits.unauthenticated() {
                return Refusal::from(limited).into_response();
            }
            return text(StatusCode::NOT_FOUND, error.to_string());
        }
        Err(error @ ConnectError::AlreadyConnected) => {
            return text(StatusCode::CONFLICT, error.to_string());
        }
    };
    let engine = state.engine.clone();
    let max = state.engine.settings().max_body_bytes;
    let open = state.sockets.opened();
    upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(WEBSOCKET_READ_BUFFER_BYTES)
        .on_failed_upgrade({
            let engine = engine.clone();
            let endpoint = endpoint.clone();
            move |_| engine.socket_closed(&endpoint, SocketEnd::Closed(1000))
        })
        .on_upgrade(move |socket| async move {
            socket_with_deadline(socket, connection, engine).await;
            drop(open);
        })
}

/// The subscriber sockets still open, so that a stopping hub lets each finish its closing
/// handshake before the process goes.
#[derive(Clone)]
pub(crate) struct OpenSockets(Arc<tokio::sync::watch::Sender<usize>>);

/// One open socket; dropping it counts the socket closed.
pub(crate) struct OpenSocket(OpenSockets);

impl Default for OpenSockets {
    fn default() -> Self {
        OpenSockets(Arc::new(tokio::sync::watch::Sender::new(0)))
    }
}

impl OpenSockets {
    fn opened(&self) -> OpenSocket {
        self.0.send_modify(|open| *open += 1);
        OpenSocket(self.clone())
    }

    /// Waits until every socket has closed, or `within` has passed.
    pub(crate) async fn all_closed(&self, within: Duration) {
        let mut open = self.0.subscribe();
        let closed = open.wait_for(|open| *open == 0);
        if tokio::time::timeout(within, closed).await.is_err() {
            tracing::debug!("some sockets were still closing when the hub stopped");
        }
    }
}

impl Drop for OpenSocket {
    fn drop(&mut self) {
        (self.0).0.send_modify(|open| *open -= 1);
    }
}

/// Runs [`run_socket`], but once the engine has ended the subscription (unsubscribed, lease
/// over, too slow, hub stopping) gives the socket `hub.ack_timeout_seconds` to say goodbye and
/// then drops it. A peer that stops reading would otherwise keep the socket task stuck in a
/// write, holding a connection the subscription caps no longer count.
async fn socket_with_deadline(socket: WebSocket, mut connection: Connection, engine: Engine) {
    let grace = engine.settings().ack_timeout();
    let (forward, order) = tokio::sync::oneshot::channel();
    let from_engine = std::mem::replace(&mut connection.close, order);
    let ended = async move {
        // Whether an order came or the engine dropped its end, the subscription is over.
        if let Ok(close) = from_engine.await {
            let _ = forward.send(close);
        }
    };
    let socket = run_socket(socket, connection, engine);
    tokio::pin!(socket);
    tokio::select! {
        // The engine sends its order before it drops the subscription's queue: forwarding the
        // order first keeps the socket from seeing the queue end before the order (which would
        // skip the denial frame).
        biased;
        () = ended => {
            if tokio::time::timeout(grace, socket).await.is_err() {
                tracing::debug!("dropped a socket whose peer stopped reading");
            }
        }
        () = &mut socket => {}
    }
}

/// Why the socket's loop stopped.
enum Ending {
    /// The engine ended the subscription (`None`: it dropped the order's sender).
    Ordered(Option<CloseOrder>),
    /// The subscription's queue is gone: the engine is gone with it.
    Unsubscribed,
    /// The app ended it, or the connection did.
    Socket(SocketEnd),
}

/// Drives one subscriber socket: reads replies, pings, writes what had to wait, and closes when
/// the engine orders it or the peer goes away.
///
/// Frames usually do not pass through this task: the engine writes each one through the
/// socket's [`SocketOutlet`] as it publishes (no task or thread to wake per subscriber, and the
/// frame leaves before the publishing request is answered). The task writes what the engine had
/// to queue instead, and finishes writes the socket could not take at once.
async fn run_socket(socket: WebSocket, mut connection: Connection, engine: Engine) {
    let (sink, mut stream) = socket.split();
    let outlet = Arc::new(SocketOutlet {
        wire: parking_lot::Mutex::new(Wire { sink, busy: false }),
        unfinished: tokio::sync::Notify::new(),
    });
    let ping_every = engine.settings().ping_interval();
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + ping_every, ping_every);
    let mut last_heard = Instant::now();
    let endpoint = connection.endpoint.clone();
    engine.attach_outlet(&endpoint, outlet.clone());
    let read_now = connection.read_now.clone();
    let frames = &mut connection.frames;
    let ending = loop {
        tokio::select! {
            biased;
            order = &mut connection.close => break Ending::Ordered(order.ok()),
            queued = outlet.next_queued(frames) => match queued {
                Some(frame) => {
                    if outlet.write(Some(Message::Text(frame)), Some(frames)).await.is_err() {
                        break Ending::Socket(SocketEnd::Lost);
                    }
                }
                None => break Ending::Unsubscribed,
            },
            () = outlet.unfinished.notified() => {
                if outlet.write(None, Some(frames)).await.is_err() {
                    break Ending::Socket(SocketEnd::Lost);
                }
            }
            () = read_now.notified() => {
                // An acknowledgement is overdue: read what the app already sent before the
                // engine may blame it.
                let mut ended = None;
                while let Some(incoming) = stream.next().now_or_never() {
                    last_heard = Instant::now();
                    if let Heard::Ended(end) = heard(&engine, &endpoint, incoming) {
                        ended = Some(end);
                        break;
                    }
                }
                if let Some(end) = ended {
                    break Ending::Socket(end);
                }
                engine.read_everything_sent(&endpoint);
            }
            incoming = stream.next() => {
                last_heard = Instant::now();
                if let Heard::Ended(end) = heard(&engine, &endpoint, incoming) {
                    break Ending::Socket(end);
                }
            }
            _ = ping.tick() => {
                if last_heard.elapsed() > ping_every * 2 {
                    tracing::info!("a subscriber stopped answering pings; treating it as gone");
                    break Ending::Socket(SocketEnd::Lost);
                }
                if outlet.write(Some(Message::Ping(Bytes::new())), Some(frames)).await.is_err() {
                    break Ending::Socket(SocketEnd::Lost);
                }
            }
        }
    };
    match ending {
        Ending::Ordered(Some(CloseOrder {
            denial,
            code,
            reason,
        })) => {
            // The engine already removed the subscription.
            let close = Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            }));
            let mut sent = true;
            for message in denial.map(Message::Text).into_iter().chain([close]) {
                if outlet.write(Some(message), None).await.is_err() {
                    sent = false;
                    break;
                }
            }
            if sent {
                hear_the_close(&mut stream).await;
            }
        }
        Ending::Ordered(None) | Ending::Unsubscribed => {}
        Ending::Socket(end @ SocketEnd::Closed(_)) => {
            engine.socket_closed(&endpoint, end);
            // tungstenite queued the Close that answers the app's; reading on sends it, then
            // ends the stream.
            hear_the_close(&mut stream).await;
        }
        Ending::Socket(SocketEnd::TooLarge) => {
            engine.socket_closed(&endpoint, SocketEnd::TooLarge);
            let close = Message::Close(Some(CloseFrame {
                code: CLOSE_TOO_BIG,
                reason: "frame larger than the hub accepts (hub.max_body_bytes)".into(),
            }));
            if outlet.write(Some(close), None).await.is_ok() {
                // The rest of the oversized frame stays unread, so the app's answering Close
                // cannot be read either: keep the connection a moment for the app to read ours
                // before the unread bytes make the drop a reset.
                tokio::time::sleep(CLOSING_HANDSHAKE_WAIT).await;
            }
        }
        Ending::Socket(SocketEnd::Lost) => engine.socket_closed(&endpoint, SocketEnd::Lost),
    }
}

/// Reads (and ignores) what the app still sends until its Close has come and the stream ends,
/// for at most [`CLOSING_HANDSHAKE_WAIT`].
async fn hear_the_close(stream: &mut SplitStream<WebSocket>) {
    let until_the_end = async { while let Some(Ok(_)) = stream.next().await {} };
    if tokio::time::timeout(CLOSING_HANDSHAKE_WAIT, until_the_end)
        .await
        .is_err()
    {
        tracing::debug!("a subscriber did not answer the hub's Close; dropped its connection");
    }
}

/// What a frame from the app (or the end of its stream) means for the socket.
enum Heard {
    More,
    Ended(SocketEnd),
}

fn heard(engine: &Engine, endpoint: &str, incoming: Option<Result<Message, axum::Error>>) -> Heard {
    match incoming {
        Some(Ok(Message::Text(text))) => engine.reply(endpoint, text.as_str()),
        // A close frame without a status is still an orderly goodbye, like 1000.
        Some(Ok(Message::Close(frame))) => {
            return Heard::Ended(SocketEnd::Closed(frame.map_or(1000, |f| f.code)));
        }
        Some(Ok(_)) => {}
        Some(Err(error)) if is_too_large(&error) => return Heard::Ended(SocketEnd::TooLarge),
        Some(Err(_)) | None => return Heard::Ended(SocketEnd::Lost),
    }
    Heard::More
}

/// Whether a read failed because the app's frame or message was over the hub's limit.
fn is_too_large(error: &axum::Error) -> bool {
    std::error::Error::source(error)
        .and_then(|source| source.downcast_ref::<tungstenite::Error>())
        .is_some_and(|e| matches!(e, tungstenite::Error::Capacity(_)))
}

/// The write half of a subscriber socket, shared by its task and the engine's direct path.
struct SocketOutlet {
    wire: parking_lot::Mutex<Wire>,
    /// Signalled when the direct path left a frame in the sink for the task to finish.
    unfinished: tokio::sync::Notify,
}

struct Wire {
    sink: futures_util::stream::SplitSink<WebSocket, Message>,
    /// The task owns the sink (it is writing, or waiting for the socket to drain): the direct
    /// path must queue behind it. Waiting is left to the task alone because only its waker
    /// will be woken when the socket drains.
    busy: bool,
}

impl crate::engine::Outlet for SocketOutlet {
    fn try_write(&self, frame: &crate::engine::FrameText) -> bool {
        use std::task::{Context, Poll, Waker};
        // The task holds the wire only for a poll, never across a wait: contention means it
        // is writing, and the frame belongs behind what it writes.
        let Some(mut wire) = self.wire.try_lock() else {
            return false;
        };
        if wire.busy {
            return false;
        }
        let mut cx = Context::from_waker(Waker::noop());
        if !matches!(wire.sink.poll_ready_unpin(&mut cx), Poll::Ready(Ok(()))) {
            return false;
        }
        // From here on the frame is the sink's: a failed write means the socket is gone,
        // which its task learns from the read side.
        if wire
            .sink
            .start_send_unpin(Message::Text(frame.clone()))
            .is_ok()
            && wire.sink.poll_flush_unpin(&mut cx).is_pending()
        {
            wire.busy = true;
            drop(wire);
            self.unfinished.notify_one();
        }
        true
    }
}

impl SocketOutlet {
    /// The next queued frame; taken under the wire's lock and marking it busy, so the direct
    /// path cannot overtake a frame between the queue and the socket.
    fn next_queued<'a>(
        &'a self,
        frames: &'a mut tokio::sync::mpsc::Receiver<crate::engine::FrameText>,
    ) -> impl Future<Output = Option<crate::engine::FrameText>> + 'a {
        use std::task::Poll;
        std::future::poll_fn(move |cx| {
            let mut wire = self.wire.lock();
            let polled = frames.poll_recv(cx);
            if let Poll::Ready(Some(_)) = polled {
                wire.busy = true;
            }
            polled
        })
    }

    /// Writes `first`, then everything queued behind it, and flushes; the wire goes back to the
    /// direct path only once nothing is left queued.
    async fn write(
        &self,
        first: Option<Message>,
        mut frames: Option<&mut tokio::sync::mpsc::Receiver<crate::engine::FrameText>>,
    ) -> Result<(), axum::Error> {
        use std::task::Poll;
        let mut next = first;
        std::future::poll_fn(|cx| {
            let mut wire = self.wire.lock();
            wire.busy = true;
            loop {
                if next.is_none() {
                    next = frames
                        .as_deref_mut()
                        .and_then(|f| f.try_recv().ok())
                        .map(Message::Text);
                }
                if let Some(message) = next.take() {
                    match wire.sink.poll_ready_unpin(cx) {
                        Poll::Ready(Ok(())) => wire.sink.start_send_unpin(message)?,
                        Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                        Poll::Pending => {
                            next = Some(message);
                            return Poll::Pending;
                        }
                    }
                    continue;
                }
                match wire.sink.poll_flush_unpin(cx) {
                    Poll::Ready(Ok(())) => {}
                    other => return other,
                }
                // Frames queued while this flush waited go out before the direct path resumes.
                if frames.as_deref().is_some_and(|f| !f.is_empty()) {
                    continue;
                }
                wire.busy = false;
                return Poll::Ready(Ok(()));
            }
        })
        .await
    }
}
