//! Manager mode: Lockstep serves the CCOW registry and context manager on loopback, surveys
//! the participants over their callback URLs, and takes part in every survey itself on behalf
//! of the FHIRcast session.
//!
//! The manager's lock is never held across a call to a participant: a survey or a notice waits
//! on the network, the state does not.

use super::manager::{
    Answer, Context, Coupon, Decided, Items, Manager, Notice, Participant, SurveyResult,
    survey_result,
};
use super::wire::{Call, CcowError, Exception, Interface, Method, Reply, read_reply};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, OriginalUri, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use parking_lot::Mutex;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// The name Lockstep joins under when it instigates a change for the FHIRcast session.
pub const LOCKSTEP_APPLICATION: &str = "Lockstep";

/// The session following a committed change (its request may wait on the site's hub).
pub type Committing<'a> = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'a>>;

/// The FHIRcast session's part in the CCOW context.
pub trait SessionSide: Send + Sync {
    /// Whether the session would take `proposed`; `Err` is its dissent, in words for the user.
    fn survey(&self, proposed: &Items) -> Result<(), String>;
    /// A change a CCOW application committed, for the session to follow.
    fn committed<'a>(&'a self, context: &'a Context, by: &'a str) -> Committing<'a>;
    /// What became of a participant, for its link state: it joined, answered, failed, left.
    fn participant(&self, participant: &Participant, event: ParticipantEvent);
}

/// What a participant did, as its link state shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParticipantEvent {
    Joined,
    Left,
    /// It accepted a change.
    Followed,
    /// It dissented, in its words.
    Refused(String),
    /// It did not answer the survey in time.
    Silent,
    /// It broke the link (`SuspendParticipation`): it follows nothing until it resumes.
    Suspended,
    /// It resumed participation.
    Resumed,
}

/// How the manager serves.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub survey_timeout: Duration,
    pub max_participants: usize,
}

struct Shared {
    manager: Mutex<Manager>,
    http: reqwest::Client,
    session: Arc<dyn SessionSide>,
    settings: ServerSettings,
    origin: String,
    /// Lockstep's own seat, once it has instigated a change for the FHIRcast session.
    own_seat: Mutex<Option<Coupon>>,
}

/// The context manager, served.
#[derive(Clone)]
pub struct ManagerServer {
    shared: Arc<Shared>,
}

impl ManagerServer {
    pub fn new(settings: ServerSettings, session: Arc<dyn SessionSide>, origin: String) -> Self {
        // Coupons start at a random point, so that one from an earlier run reads as unknown.
        let first = u64::from(uuid::Uuid::new_v4().as_u128() as u32) + 1;
        let http = reqwest::Client::new();
        ManagerServer {
            shared: Arc::new(Shared {
                manager: Mutex::new(Manager::new(
                    first,
                    settings.max_participants,
                    settings.survey_timeout,
                )),
                http,
                session,
                settings,
                origin,
                own_seat: Mutex::new(None),
            }),
        }
    }

    /// Serves the registry and the manager on `listener` until `stop` completes. Calls from
    /// another OS user's processes are refused (see [`super::peer`]).
    pub async fn serve(
        self,
        listener: TcpListener,
        stop: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let local = listener.local_addr()?;
        let app = Router::new()
            .fallback(answer)
            .with_state((self, local))
            .into_make_service_with_connect_info::<SocketAddr>();
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
    }

    /// Handles one call and writes its reply.
    pub async fn call(&self, call: Call) -> Reply {
        match self.dispatch(call).await {
            Ok(reply) => reply,
            Err(error) => {
                tracing::info!("CCOW call refused: {error}");
                Reply::exception(&error)
            }
        }
    }

    async fn dispatch(&self, call: Call) -> Result<Reply, CcowError> {
        let args = &call.args;
        let shared = &self.shared;
        match (call.interface, call.method) {
            (Interface::ContextManagementRegistry, Method::Locate) => Ok(Reply::empty()
                .with("componentUrl", format!("{}/", shared.origin))
                .with("componentParameters", "")
                .with("site", "lockstep")),
            (_, Method::Ping) | (Interface::Admin, Method::LogMessage) => Ok(Reply::empty()),
            (Interface::ContextManager, Method::JoinCommonContext) => {
                let application = args.require("applicationName")?;
                let url = args.get("contextParticipant");
                let survey = args.flag("survey", true)?;
                let wait = args.flag("wait", true)?;
                let coupon = shared.manager.lock().join(application, url, survey, wait)?;
                let joined = shared.manager.lock().participant(coupon).cloned()?;
                tracing::info!("CCOW: {} joined", joined.application);
                shared
                    .session
                    .participant(&joined, ParticipantEvent::Joined);
                self.ping(joined);
                Ok(Reply::empty().with("participantCoupon", coupon.to_string()))
            }
            (Interface::ContextManager, Method::LeaveCommonContext) => {
                let coupon = args.coupon("participantCoupon")?;
                let left = {
                    let mut manager = shared.manager.lock();
                    let left = manager.participant(coupon).cloned()?;
                    manager.leave(coupon)?;
                    left
                };
                shared.session.participant(&left, ParticipantEvent::Left);
                Ok(Reply::empty())
            }
            (
                Interface::ContextManager,
                Method::SuspendParticipation | Method::ResumeParticipation,
            ) => {
                let coupon = args.coupon("participantCoupon")?;
                let suspend = call.method == Method::SuspendParticipation;
                let participant = {
                    let mut manager = shared.manager.lock();
                    manager.set_suspended(coupon, suspend)?;
                    manager.participant(coupon).cloned()?
                };
                let event = if suspend {
                    ParticipantEvent::Suspended
                } else {
                    ParticipantEvent::Resumed
                };
                shared.session.participant(&participant, event);
                Ok(Reply::empty())
            }
            (Interface::ContextManager, Method::StartContextChanges) => {
                let coupon = args.coupon("participantCoupon")?;
                let context = shared.manager.lock().start(coupon, Instant::now())?;
                Ok(Reply::empty().with("contextCoupon", context.to_string()))
            }
            (Interface::ContextManager, Method::GetMostRecentContextCoupon) => Ok(Reply::empty()
                .with(
                    "contextCoupon",
                    shared.manager.lock().current().coupon.to_string(),
                )),
            (Interface::ContextManager, Method::UndoContextChanges) => {
                let (participant, context) = coupons(args)?;
                shared.manager.lock().undo(participant, context)?;
                Ok(Reply::empty())
            }
            (Interface::ContextManager, Method::EndContextChanges) => {
                let (participant, context) = coupons(args)?;
                let result = self.end(participant, context, true).await?;
                Ok(Reply::empty()
                    .with("noContinue", result.no_continue.to_string())
                    .with_list("responses", result.responses.iter().map(String::as_str)))
            }
            (Interface::ContextManager, Method::PublishChangesDecision) => {
                let (participant, context) = coupons(args)?;
                let accept = match args
                    .require("decision")?
                    .trim()
                    .to_ascii_lowercase()
                    .as_str()
                {
                    "accept" => true,
                    "cancel" => false,
                    other => {
                        return Err(CcowError::new(
                            Exception::GeneralFailure,
                            format!("`decision` must be accept or cancel, got `{other}`"),
                        ));
                    }
                };
                self.decide(participant, context, accept).await?;
                Ok(Reply::empty().with("listenerURLs", ""))
            }
            (Interface::ContextData, Method::SetItemValues) => {
                let (participant, context) = coupons(args)?;
                let names = args.list("itemNames");
                let values = args.list("itemValues");
                if names.len() != values.len() {
                    return Err(CcowError::new(
                        Exception::GeneralFailure,
                        format!("{} item names but {} values", names.len(), values.len()),
                    ));
                }
                let items: Vec<(String, String)> = names
                    .iter()
                    .zip(&values)
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect();
                shared
                    .manager
                    .lock()
                    .set_items(participant, context, &items)?;
                Ok(Reply::empty())
            }
            (Interface::ContextData, Method::DeleteItems) => {
                let (participant, context) = coupons(args)?;
                let names = args.list("itemNames");
                shared
                    .manager
                    .lock()
                    .delete_items(participant, context, &names)?;
                Ok(Reply::empty())
            }
            (Interface::ContextData, Method::GetItemNames) => {
                let context = args.coupon("contextCoupon")?;
                let manager = shared.manager.lock();
                let items = manager.items(context)?;
                Ok(Reply::empty().with_list("names", items.names()))
            }
            (Interface::ContextData, Method::GetItemValues) => {
                let context = args.coupon("contextCoupon")?;
                let wanted = args.list("itemNames");
                let manager = shared.manager.lock();
                let items = manager.items(context)?;
                let mut pairs = Vec::new();
                for (name, value) in items.iter() {
                    if wanted.is_empty() || wanted.iter().any(|w| matches_item(w, name)) {
                        pairs.push(name);
                        pairs.push(value);
                    }
                }
                Ok(Reply::empty().with_list("itemValues", pairs))
            }
            (interface, method) => Err(CcowError::new(
                Exception::NotImplemented,
                format!("{}.{} is not served here", interface.name(), method.name()),
            )),
        }
    }

    /// Pings a participant that just joined: one whose callback does not answer is shown as not
    /// answering at once, not at the first change it misses.
    fn ping(&self, participant: Participant) {
        let current = self.shared.manager.lock().current().coupon;
        let Some(notice) = participant.notice(current) else {
            return;
        };
        let shared = self.shared.clone();
        tokio::spawn(async move {
            let limit = shared.settings.survey_timeout;
            let answered = callback(&shared.http, &notice, Method::Ping, limit).await;
            if let Err(why) = answered {
                tracing::warn!(
                    "CCOW: {} does not answer its callback: {why}",
                    participant.application
                );
                shared
                    .session
                    .participant(&participant, ParticipantEvent::Silent);
            }
        });
    }

    /// The manager is stopping: every participant is told `CommonContextTerminated` (each
    /// within the survey timeout, all at once) and leaves.
    pub async fn terminate_all(&self) {
        let participants: Vec<Participant> =
            self.shared.manager.lock().participants().cloned().collect();
        let current = self.shared.manager.lock().current().coupon;
        let mut calls = JoinSet::new();
        for participant in participants {
            let _ = self.shared.manager.lock().leave(participant.coupon);
            let Some(notice) = participant.notice(current) else {
                self.shared
                    .session
                    .participant(&participant, ParticipantEvent::Left);
                continue;
            };
            let shared = self.shared.clone();
            calls.spawn(async move {
                let limit = shared.settings.survey_timeout;
                let _ = callback(
                    &shared.http,
                    &notice,
                    Method::CommonContextTerminated,
                    limit,
                )
                .await;
                shared
                    .session
                    .participant(&participant, ParticipantEvent::Left);
            });
        }
        while calls.join_next().await.is_some() {}
    }

    /// A change the FHIRcast session made, carried to the CCOW applications: a transaction
    /// under Lockstep's own seat, surveyed; accepted when nobody dissents, else cancelled, so
    /// the CCOW applications never disagree among themselves. The survey's result says who
    /// dissented and why.
    pub async fn instigate(&self, items: &[(String, String)]) -> Result<SurveyResult, CcowError> {
        let seat = self.own_seat()?;
        let context = self.shared.manager.lock().start(seat, Instant::now())?;
        let set = self.shared.manager.lock().set_items(seat, context, items);
        if let Err(error) = set {
            let _ = self.shared.manager.lock().undo(seat, context);
            return Err(error);
        }
        let result = self.end(seat, context, false).await?;
        let accept = result.responses.is_empty();
        self.decide(seat, context, accept).await?;
        Ok(result)
    }

    fn own_seat(&self) -> Result<Coupon, CcowError> {
        let mut seat = self.shared.own_seat.lock();
        if let Some(coupon) = *seat
            && self.shared.manager.lock().participant(coupon).is_ok()
        {
            return Ok(coupon);
        }
        let coupon = self.shared.manager.lock().join(
            &format!("{LOCKSTEP_APPLICATION}#"),
            None,
            false,
            false,
        )?;
        *seat = Some(coupon);
        Ok(coupon)
    }

    fn is_own_seat(&self, coupon: Coupon) -> bool {
        *self.shared.own_seat.lock() == Some(coupon)
    }

    /// `EndContextChanges`: every surveyed participant is asked at once, each within the survey
    /// timeout, and the session too unless the change is its own.
    async fn end(
        &self,
        participant: Coupon,
        context: Coupon,
        ask_session: bool,
    ) -> Result<SurveyResult, CcowError> {
        let shared = &self.shared;
        let (survey, proposed) = {
            let mut manager = shared.manager.lock();
            let survey = manager.end(participant, context)?;
            (survey, manager.items(context)?.clone())
        };
        let mut calls = JoinSet::new();
        for notice in survey.asked {
            let http = shared.http.clone();
            let limit = shared.settings.survey_timeout;
            calls.spawn(async move {
                let answer = ask_pending(&http, &notice, limit).await;
                (notice, answer)
            });
        }
        // The session answers as a participant would; it cannot follow at all, so its dissent
        // stops the change.
        let session_dissent = match ask_session.then(|| shared.session.survey(&proposed)) {
            Some(Err(why)) => Some((
                Participant {
                    coupon: 0,
                    application: "FHIRcast session".into(),
                    url: None,
                    survey: true,
                    wait: true,
                    suspended: false,
                },
                Answer::Failed(why),
            )),
            _ => None,
        };
        let mut answers: Vec<(Participant, Answer)> = Vec::new();
        while let Some(done) = calls.join_next().await {
            let Ok((notice, answer)) = done else { continue };
            let Ok(p) = shared
                .manager
                .lock()
                .participant(notice.participant)
                .cloned()
            else {
                continue;
            };
            answers.push((p, answer));
        }
        for (p, answer) in &answers {
            let event = match answer {
                Answer::Accept => continue,
                Answer::Conditional(why) => ParticipantEvent::Refused(why.clone()),
                Answer::Silent => ParticipantEvent::Silent,
                Answer::Failed(why) => ParticipantEvent::Refused(why.clone()),
            };
            shared.session.participant(p, event);
        }
        let result = survey_result(session_dissent.iter().chain(&answers).map(|(p, a)| (p, a)));
        if !result.responses.is_empty() {
            tracing::info!(
                "CCOW survey of context {context}: {}",
                result.responses.join("; ")
            );
        }
        Ok(result)
    }

    /// `PublishChangesDecision`: the others are told; an accepted change goes to the session.
    async fn decide(
        &self,
        participant: Coupon,
        context: Coupon,
        accept: bool,
    ) -> Result<Decided, CcowError> {
        let shared = &self.shared;
        let (decided, by) = {
            let mut manager = shared.manager.lock();
            let by = manager.participant(participant)?.app_name().to_owned();
            (manager.decide(participant, context, accept)?, by)
        };
        if let Some(committed) = &decided.context
            && !self.is_own_seat(participant)
        {
            shared.session.committed(committed, &by).await;
        }
        let method = if accept {
            Method::ContextChangesAccepted
        } else {
            Method::ContextChangesCancelled
        };
        for notice in decided.notify.clone() {
            let Ok(told) = shared
                .manager
                .lock()
                .participant(notice.participant)
                .cloned()
            else {
                continue;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let limit = shared.settings.survey_timeout;
                match callback(&shared.http, &notice, method, limit).await {
                    Ok(_) if accept => shared
                        .session
                        .participant(&told, ParticipantEvent::Followed),
                    Ok(_) => {}
                    Err(why) => {
                        tracing::warn!("CCOW: {} to {} failed: {why}", method.name(), notice.url);
                        shared
                            .session
                            .participant(&told, ParticipantEvent::Refused(why.to_string()));
                    }
                }
            });
        }
        Ok(decided)
    }
}

fn coupons(args: &super::wire::Args) -> Result<(Coupon, Coupon), CcowError> {
    Ok((
        args.coupon("participantCoupon")?,
        args.coupon("contextCoupon")?,
    ))
}

/// An item name asked for: exact (case-insensitive), or a subject's every item as `Subject.*`.
fn matches_item(wanted: &str, name: &str) -> bool {
    match wanted.strip_suffix('*') {
        Some(prefix) => name
            .get(..prefix.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(prefix)),
        None => wanted.eq_ignore_ascii_case(name),
    }
}

/// Why a participant's callback gave no reply.
#[derive(Debug)]
enum Unanswered {
    /// Nothing within the survey timeout.
    Late,
    Failed(String),
}

impl std::fmt::Display for Unanswered {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unanswered::Late => f.write_str("did not answer in time"),
            Unanswered::Failed(why) => f.write_str(why),
        }
    }
}

/// Calls `method` on a participant's callback URL, waiting at most `limit` (the survey
/// timeout bounds every call to a participant); its reply's fields, or why not.
async fn callback(
    http: &reqwest::Client,
    notice: &Notice,
    method: Method,
    limit: Duration,
) -> Result<super::wire::Args, Unanswered> {
    tokio::time::timeout(limit, call_participant(http, notice, method))
        .await
        .map_err(|_| Unanswered::Late)?
        .map_err(Unanswered::Failed)
}

async fn call_participant(
    http: &reqwest::Client,
    notice: &Notice,
    method: Method,
) -> Result<super::wire::Args, String> {
    let separator = if notice.url.contains('?') { '&' } else { '?' };
    let url = format!(
        "{}{separator}interface=ContextParticipant&method={}&contextCoupon={}",
        notice.url,
        method.name(),
        notice.context
    );
    let response = http.get(&url).send().await.map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response.bytes().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("answered HTTP {status}"));
    }
    read_reply(&body).map_err(|e| e.to_string())
}

async fn ask_pending(http: &reqwest::Client, notice: &Notice, limit: Duration) -> Answer {
    match callback(http, notice, Method::ContextChangesPending, limit).await {
        Err(Unanswered::Late) => Answer::Silent,
        Err(Unanswered::Failed(why)) => Answer::Failed(why),
        Ok(fields) => Answer::from_decision(fields.get("decision"), fields.get("reason")),
    }
}

async fn answer(
    State((server, local)): State<(ManagerServer, SocketAddr)>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    OriginalUri(uri): OriginalUri,
    body: Bytes,
) -> Response {
    let call = super::peer::refuse_other_user(peer, local)
        .and_then(|()| Call::parse(uri.path(), uri.query(), &body));
    let reply = match call {
        Ok(call) => server.call(call).await,
        Err(error) => Reply::exception(&error),
    };
    let mut response = reply.encode().into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    response
}
