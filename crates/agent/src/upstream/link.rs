//! The link's life: sign in, subscribe upstream over WebSocket, re-sync the local session from
//! the site's current context, relay what arrives; renew before the token or the lease ends;
//! after any drop, say so and start again with backoff.

use super::frames::Frame;
use super::relay::{Inbound, Relay, Up};
use super::signin::{self, SiteSession};
use super::{LinkError, SignIn, UpstreamStatus, resync};
use futures_util::{SinkExt, StreamExt};
use lockstep_fhircast::EventSpec;
use lockstep_hub::clock::now_iso;
use lockstep_hub::{Engine, LinkState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The first wait after a drop, and the longest.
const BACKOFF_FIRST: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A link up this long has recovered: the next drop starts the backoff again from the first.
const STABLE: Duration = Duration::from_secs(30);
/// Renew this share of the way through the token's (or lease's) life.
const RENEW_AT: f64 = 0.8;
/// The lease asked for; the site may grant less (and says so in the confirmation).
const LEASE_ASKED: u64 = 3600;

pub(super) struct Link {
    pub site: String,
    pub sign_in: SignIn,
    pub http: reqwest::Client,
    pub relay: Relay,
    pub engine: Engine,
    pub local_topic: Arc<str>,
    pub status: Arc<watch::Sender<UpstreamStatus>>,
    /// Asks for a re-sync from the site's current context (the screen unlocked).
    pub resync: Arc<tokio::sync::Notify>,
}

/// How one connection ended.
enum Ended {
    Stopped,
    /// Dropped, and whether it had been up long enough to count as recovered.
    Dropped(LinkError, bool),
}

impl Link {
    pub(super) async fn run(self, mut stop: watch::Receiver<bool>) {
        let mut backoff = BACKOFF_FIRST;
        loop {
            let ended = tokio::select! {
                ended = self.connect_and_follow() => ended,
                _ = lockstep_bridges::stopped(&mut stop) => Ended::Stopped,
            };
            match ended {
                Ended::Stopped => {
                    self.relay.set_down("the agent is stopping");
                    self.set(LinkState::Off, "stopped".into());
                    return;
                }
                Ended::Dropped(LinkError::SignInNeeded, _) => {
                    // Nothing to retry until the clinician signs in.
                    self.relay.set_down("not signed in to the site");
                    self.set(
                        LinkState::Off,
                        format!(
                            "not signed in to {}: sign in from the tray or with `lockstepd login`",
                            self.site
                        ),
                    );
                    tokio::select! {
                        () = self.sign_in.inner.signed_in.notified() => {}
                        _ = lockstep_bridges::stopped(&mut stop) => {}
                    }
                    backoff = BACKOFF_FIRST;
                    continue;
                }
                Ended::Dropped(why, was_stable) => {
                    if was_stable {
                        backoff = BACKOFF_FIRST;
                    }
                    let reason = why.to_string();
                    tracing::warn!(site = %self.site, "the link to the site's hub is down: {reason}; trying again in {backoff:?}");
                    self.relay.set_down(&reason);
                    let state = match why {
                        LinkError::Refused { status, .. } if status == 401 || status == 403 => {
                            LinkState::Refused {
                                status: Some(status),
                            }
                        }
                        _ => LinkState::Broken,
                    };
                    self.set(state, reason);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff) => {}
                _ = lockstep_bridges::stopped(&mut stop) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    fn set(&self, state: LinkState, detail: String) {
        let detail = format!("{detail}{}", self.relay.kept_local_note());
        self.status.send_if_modified(|status| {
            if status.state == state && status.detail == detail {
                return false;
            }
            *status = UpstreamStatus {
                site: self.site.clone(),
                state,
                detail,
                since: now_iso(),
            };
            true
        });
    }

    /// One connection, from sign-in to its end.
    async fn connect_and_follow(&self) -> Ended {
        let mut session = match signin::sign_in(&self.http, &self.sign_in.inner.credentials).await {
            Ok(session) => session,
            Err(why) => return Ended::Dropped(why, false),
        };
        let (mut socket, endpoint) = match self.subscribe(&session).await {
            Ok(subscribed) => subscribed,
            Err(why) => return Ended::Dropped(why, false),
        };
        let mut renew_at = renewal_time(&session, None);
        let up_since = Instant::now();
        let up = |session: &SiteSession| Up {
            hub_url: session.hub_url.clone(),
            topic: session.topic.clone(),
            token: session.token.clone(),
        };
        self.relay.set_up(up(&session));
        self.relay.expect_replay();
        self.resync_now(&session).await;
        self.set(
            LinkState::Following,
            format!("following {}'s session", self.site),
        );
        tracing::info!(site = %self.site, "the link to the site's hub is up");
        loop {
            let message = tokio::select! {
                message = socket.next() => message,
                () = self.resync.notified() => {
                    self.resync_now(&session).await;
                    continue;
                }
                () = self.sign_in.inner.signed_out.notified() => {
                    return Ended::Dropped(LinkError::SignInNeeded, false);
                }
                _ = tokio::time::sleep_until(renew_at.into()) => {
                    match self.renew(&session, &endpoint).await {
                        Ok(renewed) => {
                            session = renewed;
                            renew_at = renewal_time(&session, None);
                            self.relay.set_up(up(&session));
                            continue;
                        }
                        Err(why) => return Ended::Dropped(why, up_since.elapsed() >= STABLE),
                    }
                }
            };
            let stable = up_since.elapsed() >= STABLE;
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(frame))) => {
                    let why = frame
                        .map(|f| format!("closed ({}) {}", u16::from(f.code), f.reason))
                        .unwrap_or_else(|| "closed".into());
                    return Ended::Dropped(LinkError::Ended(why), stable);
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Ended::Dropped(LinkError::Ended(e.to_string()), stable),
                None => {
                    return Ended::Dropped(LinkError::Ended("the socket closed".into()), stable);
                }
            };
            match Frame::read(text.as_str()) {
                Frame::Event { id, name, frame } => {
                    let status = match self.relay.inbound(&id, &frame) {
                        Inbound::Applied => 200,
                        Inbound::Refused(status, why) => {
                            tracing::warn!(site = %self.site, event = %name, "refused an event from the site's hub: {why}");
                            status
                        }
                    };
                    let reply = json!({ "id": id, "status": status }).to_string();
                    if let Err(e) = socket.send(Message::text(reply)).await {
                        return Ended::Dropped(LinkError::Ended(e.to_string()), stable);
                    }
                }
                Frame::Confirmed { lease_seconds } => {
                    // The lease runs from now; renewing before it ends keeps the endpoint.
                    renew_at = renewal_time(&session, lease_seconds.map(Duration::from_secs));
                }
                Frame::Denied { reason } => {
                    // Some hubs tell every subscriber of any one leaving: subscribe again and
                    // see, rather than trust it or ignore it.
                    tracing::info!(site = %self.site, "the site's hub sent a denial ({reason}); subscribing again");
                    match self.renew(&session, &endpoint).await {
                        Ok(renewed) => {
                            session = renewed;
                            renew_at = renewal_time(&session, None);
                            self.relay.set_up(up(&session));
                        }
                        Err(why) => return Ended::Dropped(why, stable),
                    }
                }
                Frame::Heartbeat { .. } | Frame::Other => {}
            }
        }
    }

    async fn resync_now(&self, session: &SiteSession) {
        let synced = resync::resync(
            &self.http,
            session,
            &self.relay,
            &self.engine,
            &self.local_topic,
        )
        .await;
        if let Err(why) = synced {
            tracing::warn!(site = %self.site, "could not re-sync from the site's current context: {why}");
        }
    }

    /// Subscribes to every event the local session carries and opens the socket.
    async fn subscribe(&self, session: &SiteSession) -> Result<(Socket, String), LinkError> {
        let endpoint = self.post_subscription(session, None).await?;
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str())
            .await
            .map_err(|e| LinkError::Ended(format!("the socket did not open: {e}")))?;
        Ok((socket, endpoint))
    }

    /// Posts the subscription (with `endpoint`: renews it) and returns its endpoint.
    async fn post_subscription(
        &self,
        session: &SiteSession,
        endpoint: Option<&str>,
    ) -> Result<String, LinkError> {
        let events = EventSpec::all()
            .iter()
            .map(|e| e.name)
            .collect::<Vec<_>>()
            .join(",");
        let lease = LEASE_ASKED.to_string();
        let mut form = vec![
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", session.topic.as_str()),
            ("hub.events", events.as_str()),
            ("hub.lease_seconds", lease.as_str()),
            ("subscriber.name", "Lockstep"),
        ];
        if let Some(endpoint) = endpoint {
            form.push(("hub.channel.endpoint", endpoint));
        }
        let body = super::answer_of(
            self.http
                .post(&session.hub_url)
                .bearer_auth(&session.token)
                .form(&form),
        )
        .await?;
        let answer: Value = serde_json::from_str(&body).unwrap_or_default();
        match answer.get("hub.channel.endpoint").and_then(Value::as_str) {
            Some(url) if !url.is_empty() => Ok(url.to_owned()),
            _ => endpoint.map(str::to_owned).ok_or_else(|| {
                LinkError::Protocol("the subscription answer names no hub.channel.endpoint".into())
            }),
        }
    }

    /// A new token, then the subscription renewed on the same endpoint. A new topic (some hubs
    /// hand one out after an hour) ends this connection so the next one follows it.
    async fn renew(&self, session: &SiteSession, endpoint: &str) -> Result<SiteSession, LinkError> {
        let renewed = signin::sign_in(&self.http, &self.sign_in.inner.credentials).await?;
        if renewed.topic != session.topic {
            return Err(LinkError::Ended(
                "the site's hub handed out a new topic; following it".into(),
            ));
        }
        self.post_subscription(&renewed, Some(endpoint)).await?;
        Ok(renewed)
    }
}

/// When to renew: most of the way through the token's life or the lease, whichever ends first.
fn renewal_time(session: &SiteSession, lease: Option<Duration>) -> Instant {
    let now = Instant::now();
    let token_left = session.expires_at.saturating_duration_since(now);
    let left = lease.map_or(token_left, |lease| lease.min(token_left));
    now + left.mul_f64(RENEW_AT).max(Duration::from_secs(1))
}
