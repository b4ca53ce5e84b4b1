//! Participant mode: a context manager already runs on the workstation (or in an enterprise
//! vault), and Lockstep joins it as the application `Lockstep`, with a callback server on
//! loopback. It answers the manager's survey on behalf of the FHIRcast session, follows the
//! changes the manager commits, and instigates the session's changes through it.

use super::bridge::{CcowBridge, events};
use super::client::ManagerClient;
use super::follow::{self, Follow};
use super::items::Subjects;
use super::wire::{Call, CcowError, Interface, Method, Reply};
use crate::error::BridgeError;
use crate::legacy::Current;
use crate::session::{RecentIds, Session, stopped};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::response::IntoResponse;
use lockstep_hub::LinkState;
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// The name Lockstep joins under.
const APPLICATION: &str = "Lockstep";

struct Follower {
    session: Session,
    bridge: Arc<CcowBridge>,
    manager: ManagerClient,
    /// Lockstep's participant coupon, once joined.
    coupon: Mutex<String>,
    published: Mutex<RecentIds>,
    /// Rung when the manager ends the common context.
    terminated: Notify,
}

impl Follower {
    fn current(&self) -> Current {
        self.session
            .engine()
            .current_context_of(self.session.topic())
            .map(|c| Current::from_context(&c.context))
            .unwrap_or_default()
    }

    /// What the manager's context `coupon` asks of the session.
    async fn request_for(&self, coupon: &str) -> Result<Follow, String> {
        let participant = self.coupon.lock().clone();
        let items = self
            .manager
            .item_values(&participant, coupon)
            .await
            .map_err(|e| format!("the proposed context could not be read: {e}"))?;
        let subjects = Subjects::read(
            items.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            &self.bridge.accession_item,
        )
        .map_err(|e| e.message)?;
        follow::request_for(&subjects, &self.bridge.identifiers, &self.current())
    }

    async fn callback(&self, call: Call) -> Result<Reply, CcowError> {
        if call.interface != Interface::ContextParticipant {
            return Ok(Reply::empty());
        }
        match call.method {
            Method::ContextChangesPending => {
                let coupon = call.args.require("contextCoupon")?;
                let refusal = match self.request_for(coupon).await {
                    Ok(Follow::Request { event, .. }) => self
                        .session
                        .engine()
                        .refusal_now(self.session.topic(), event)
                        .map(|refused| refused.to_string()),
                    Ok(Follow::Nothing) => None,
                    Err(why) => Some(why),
                };
                Ok(match refusal {
                    None => Reply::empty().with("decision", "accept").with("reason", ""),
                    Some(why) => Reply::empty()
                        .with("decision", "conditionally_accept")
                        .with(
                            "reason",
                            format!("the FHIRcast session cannot follow: {why}"),
                        ),
                })
            }
            Method::ContextChangesAccepted => {
                let coupon = call.args.require("contextCoupon")?.to_owned();
                self.follow(&coupon).await;
                Ok(Reply::empty())
            }
            Method::CommonContextTerminated => {
                self.terminated.notify_one();
                Ok(Reply::empty())
            }
            _ => Ok(Reply::empty()),
        }
    }

    /// Publishes what the manager committed.
    async fn follow(&self, coupon: &str) {
        let request = match self.request_for(coupon).await {
            Ok(Follow::Request { event, context }) => (event, context),
            Ok(Follow::Nothing) => return,
            Err(why) => {
                self.session.rejected(
                    "a change the context manager committed was not followed",
                    why.clone(),
                );
                self.session.sync_error(
                    "",
                    "",
                    &format!("the CCOW context changed, and the session did not follow: {why}"),
                );
                return;
            }
        };
        let (event, context) = request;
        let (id, request) = self.session.request(event.name, context);
        self.published.lock().first_time(&id);
        if let Err(error) = self.session.publish(&request).await {
            self.session.sync_error(
                &id,
                event.name,
                &format!("the CCOW context changed, and the session did not follow: {error}"),
            );
        }
    }

    /// Carries a change on the topic to the manager as a transaction of Lockstep's.
    async fn instigate(&self, change: &lockstep_fhircast::ContextChange) {
        let event = change.event;
        let context =
            serde_json::Value::Array(change.entries.iter().map(|e| e.value.clone()).collect());
        let items = follow::items_for(
            event,
            &context,
            &self.bridge.identifiers,
            &self.bridge.accession_item,
        );
        let outcome = match items {
            Ok(items) => self.transaction(&items).await,
            Err(why) => Err(why),
        };
        match outcome {
            Ok(responses) if responses.is_empty() => {
                self.session
                    .acted(format!("{} carried to the context manager", event.name));
            }
            Ok(responses) => {
                for response in responses {
                    self.session.sync_error(
                        &change.id,
                        event.name,
                        &format!("{response}; the CCOW applications stay where they were"),
                    );
                }
            }
            Err(why) => self.session.sync_error(
                &change.id,
                event.name,
                &format!(
                    "{} was not carried to the CCOW applications: {why}",
                    event.name
                ),
            ),
        }
    }

    /// Start, set, end, decide: accepted when nobody dissents, else cancelled. The dissents.
    async fn transaction(&self, items: &[(String, String)]) -> Result<Vec<String>, String> {
        let participant = self.coupon.lock().clone();
        let m = &self.manager;
        let words = |e: CcowError| e.to_string();
        let started = m
            .call(
                Interface::ContextManager,
                Method::StartContextChanges,
                &[("participantCoupon", &participant)],
            )
            .await
            .map_err(words)?;
        let context = started.require("contextCoupon").map_err(words)?.to_owned();
        let names: Vec<&str> = items.iter().map(|(n, _)| n.as_str()).collect();
        let values: Vec<&str> = items.iter().map(|(_, v)| v.as_str()).collect();
        let (names, values) = (names.join("|"), values.join("|"));
        let base = [
            ("participantCoupon", participant.as_str()),
            ("contextCoupon", context.as_str()),
        ];
        let set = m
            .call(
                Interface::ContextData,
                Method::SetItemValues,
                &[
                    base[0],
                    base[1],
                    ("itemNames", &names),
                    ("itemValues", &values),
                ],
            )
            .await;
        if let Err(error) = set {
            let _ = m
                .call(Interface::ContextManager, Method::UndoContextChanges, &base)
                .await;
            return Err(words(error));
        }
        let ended = m
            .call(Interface::ContextManager, Method::EndContextChanges, &base)
            .await
            .map_err(words)?;
        let responses: Vec<String> = ended
            .list("responses")
            .into_iter()
            .filter(|r| !r.trim().is_empty())
            .map(str::to_owned)
            .collect();
        let no_continue = ended.flag("noContinue", false).unwrap_or(true);
        let decision = if responses.is_empty() && !no_continue {
            "accept"
        } else {
            "cancel"
        };
        m.call(
            Interface::ContextManager,
            Method::PublishChangesDecision,
            &[base[0], base[1], ("decision", decision)],
        )
        .await
        .map_err(words)?;
        if no_continue && responses.is_empty() {
            return Ok(vec![
                "the context manager would not continue the change".into(),
            ]);
        }
        Ok(responses)
    }
}

async fn answer(
    State((follower, local)): State<(Arc<Follower>, SocketAddr)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> axum::response::Response {
    // On a shared machine, only this user's processes may call Lockstep's callbacks.
    let call = super::peer::refuse_other_user(peer, local)
        .and_then(|()| Call::parse(uri.path(), uri.query(), &body));
    let reply = match call {
        Ok(call) => follower
            .callback(call)
            .await
            .unwrap_or_else(|e| Reply::exception(&e)),
        Err(error) => Reply::exception(&error),
    };
    reply.encode().into_response()
}

/// Runs participant mode until told to stop, or until the manager ends the common context
/// (then the supervisor joins again, with backoff).
pub async fn run(
    bridge: Arc<CcowBridge>,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let setup = |why: String| BridgeError::Setup(why);
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| setup(format!("cannot serve the CCOW callbacks: {e}")))?;
    let local = listener.local_addr().map_err(|e| setup(e.to_string()))?;
    let callback = format!("http://{local}/");
    let registry = format!("http://127.0.0.1:{}/", bridge.port);
    let manager = ManagerClient::locate(&registry, &callback, bridge.survey_timeout)
        .await
        .map_err(|e| setup(format!("no CCOW context manager at {registry}: {e}")))?;
    let follower = Arc::new(Follower {
        session: session.clone(),
        bridge: bridge.clone(),
        manager,
        coupon: Mutex::new(String::new()),
        published: Mutex::new(RecentIds::default()),
        terminated: Notify::new(),
    });
    let app = Router::new()
        .fallback(answer)
        .with_state((follower.clone(), local))
        .into_make_service_with_connect_info::<SocketAddr>();
    let serving = tokio::spawn({
        let mut stop = stop.clone();
        async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move { stopped(&mut stop).await })
                .await
        }
    });
    let joined = follower
        .manager
        .call(
            Interface::ContextManager,
            Method::JoinCommonContext,
            &[
                ("applicationName", APPLICATION),
                ("contextParticipant", &callback),
                ("survey", "true"),
                ("wait", "true"),
            ],
        )
        .await
        .map_err(|e| setup(format!("the context manager refused Lockstep: {e}")))?;
    *follower.coupon.lock() = joined
        .require("participantCoupon")
        .map_err(|e| setup(e.to_string()))?
        .to_owned();
    let mut feed = session.join(events()).await?;
    session.set_state(
        LinkState::Following,
        format!("joined the context manager located at {registry}"),
    );
    let ended = loop {
        tokio::select! {
            () = stopped(&mut stop) => break None,
            () = follower.terminated.notified() => {
                break Some("the context manager ended the common context".to_owned());
            }
            change = feed.next() => {
                let change = change?;
                let id = change.id.clone();
                if follower.published.lock().first_time(&id) {
                    follower.instigate(&change).await;
                }
                feed.reply(&id, 200);
            }
        }
    };
    let participant = follower.coupon.lock().clone();
    let _ = follower
        .manager
        .call(
            Interface::ContextManager,
            Method::LeaveCommonContext,
            &[("participantCoupon", &participant)],
        )
        .await;
    serving.abort();
    match ended {
        None => Ok(()),
        Some(why) => Err(BridgeError::Setup(why)),
    }
}
