//! Accepting connections: the cap on open connections, TLS handshakes, and the header and idle
//! timeouts that close a connection whose client trickles bytes (slowloris).
//!
//! The hub runs its own accept loop rather than `axum::serve` because that is what gives it
//! hyper's `header_read_timeout` (the timer runs from the moment a connection waits for a
//! request head, so it also ends idle keep-alive connections), a bound on header size, a
//! handshake deadline for TLS, and one code path for http and https alike.

use crate::tls::TlsConfig;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};

/// Largest request head (request line and headers) a connection may send: far above any
/// honest FHIRcast request, far below what would let a few connections use much memory.
const MAX_HEADER_BYTES: usize = 32 * 1024;
const MAX_HEADERS: usize = 64;
/// How long requests in flight may take to finish once the hub stops.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// At most one warning per this interval about refused connections, so a flood cannot fill
/// the log either.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// How every connection of one server is treated.
pub(crate) struct ConnectionPolicy {
    pub header_read_timeout: Duration,
    pub tls: Option<TlsConfig>,
    /// Shared by every listener: the cap is on the hub, not on each address.
    pub permits: Arc<Semaphore>,
    pub max_connections: usize,
    last_warning: Mutex<Option<Instant>>,
}

impl ConnectionPolicy {
    pub fn new(
        header_read_timeout: Duration,
        max_connections: usize,
        tls: Option<TlsConfig>,
    ) -> Self {
        ConnectionPolicy {
            header_read_timeout,
            tls,
            permits: Arc::new(Semaphore::new(max_connections)),
            max_connections,
            last_warning: Mutex::new(None),
        }
    }

    fn warn_throttled(&self, message: impl FnOnce() -> String) {
        let mut last = self.last_warning.lock();
        if last.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *last = Some(Instant::now());
            tracing::warn!("{}", message());
        }
    }

    /// Waits (a bounded time) for every connection to finish once the listeners stopped.
    pub async fn drained(&self) {
        let all = u32::try_from(self.max_connections).unwrap_or(u32::MAX);
        if tokio::time::timeout(SHUTDOWN_GRACE, self.permits.acquire_many(all))
            .await
            .is_err()
        {
            tracing::debug!("some requests were still in flight when the hub stopped");
        }
    }
}

/// Serves `app` on `listener` until `stop` becomes true; each connection then finishes the
/// request it is on and closes. Upgraded WebSockets are not waited for: the engine closes them.
pub(crate) async fn serve_listener(
    listener: TcpListener,
    app: Router,
    policy: Arc<ConnectionPolicy>,
    mut stop: watch::Receiver<bool>,
) -> std::io::Result<()> {
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    if let Some(uid) = other_user(&stream, peer) {
                        policy.warn_throttled(|| {
                            format!("refused a connection from another user's process (uid {uid}): each user's apps join their own hub")
                        });
                        continue;
                    }
                    stream
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin, and keep
                    // the listener.
                    policy.warn_throttled(|| format!("could not accept a connection: {e}"));
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = stopped(&mut stop) => break,
        };
        let Ok(permit) = policy.permits.clone().try_acquire_owned() else {
            // Closing at once: the client learns immediately, and a flood of connections
            // holds no more than the cap.
            policy.warn_throttled(|| {
                format!(
                    "refusing connections: {} are open (hub.max_connections)",
                    policy.max_connections
                )
            });
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let policy = policy.clone();
        let watcher = stop.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match &policy.tls {
                None => serve_connection(stream, app, &policy, watcher).await,
                Some(tls) => {
                    let handshake = tls.acceptor().accept(stream);
                    match tokio::time::timeout(policy.header_read_timeout, handshake).await {
                        Ok(Ok(stream)) => serve_connection(stream, app, &policy, watcher).await,
                        Ok(Err(e)) => tracing::debug!("TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                }
            }
        });
    }
    Ok(())
}

/// The uid of the process at the other end of a loopback connection when it is another OS
/// user's (on a multi-session host); `None` for Lockstep's own user, a remote peer (TLS and a
/// token guard those) or where the owner cannot be known.
fn other_user(stream: &tokio::net::TcpStream, peer: std::net::SocketAddr) -> Option<u32> {
    if !peer.ip().is_loopback() && !peer.ip().to_canonical().is_loopback() {
        return None;
    }
    let local = stream.local_addr().ok()?;
    match crate::peer::same_user(peer, local) {
        crate::peer::Peer::OtherUser(uid) => Some(uid),
        _ => None,
    }
}

async fn serve_connection<S>(
    stream: S,
    app: Router,
    policy: &ConnectionPolicy,
    mut stop: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(policy.header_read_timeout)
        .max_headers(MAX_HEADERS)
        .max_header_size(MAX_HEADER_BYTES)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .with_upgrades();
    let mut connection = std::pin::pin!(connection);
    let result = tokio::select! {
        result = connection.as_mut() => result,
        () = stopped(&mut stop) => {
            // Finish the request in flight (if any), then close; idle connections close now.
            connection.as_mut().graceful_shutdown();
            match tokio::time::timeout(SHUTDOWN_GRACE, connection).await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
    };
    if let Err(e) = result {
        // Timeouts, resets and malformed requests end up here; none is the hub's fault.
        tracing::debug!("connection ended: {e}");
    }
}

/// Resolves once the server is told to stop (or its stop signal is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is not Send: drop it before anything else awaits.
    let _ = stop.wait_for(|s| *s).await.map(drop);
}
