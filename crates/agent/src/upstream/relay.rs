//! The relay between the two hubs, both ways and exactly once.
//!
//! A change requested here (an app's POST, a bridge, the history's reopen) is the engine's
//! [`Gate`]: it is posted to the site's hub first and applied here only once accepted there,
//! with the requester's own grant, so the local answer is the site's answer. The site's hub
//! sends the event back on the link's socket (every subscriber gets it); whichever comes first,
//! the 202 or that echo, applies it here, under one lock with the socket's other events, so the
//! workstation applies changes in the site's order and each one once. An event first seen on the
//! socket is the site's own and is applied here under the site's name.

use super::LinkError;
use super::UpstreamStatus;
use super::versions::{Versions, localise, minted};
use crate::config::WhenDown;
use lockstep_bridges::RecentIds;
use lockstep_fhircast::frames::{IssueCode, SyncErrorReport};
use lockstep_fhircast::notification::{Frame, Versions as FrameVersions};
use lockstep_fhircast::{ContextChange, EventKind, EventSpec, ScopeSet};
use lockstep_hub::clock::now_iso;
use lockstep_hub::engine::{Gate, GateFuture, PublishError};
use lockstep_hub::{Engine, EngineEvent, TokenGrant};
use parking_lot::{Mutex, RwLock};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::broadcast;
use tokio::sync::watch;

/// The client id the site's events are applied under here (history and the window name the
/// site by its `client_name`).
pub const UPSTREAM_CLIENT_ID: &str = "upstream";

/// How long the site's hub has to answer a posted change.
const POST_DEADLINE: Duration = Duration::from_secs(10);

/// The relay. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Relay {
    inner: Arc<Inner>,
}

struct Inner {
    site: String,
    engine: Engine,
    local_topic: Arc<str>,
    when_down: WhenDown,
    http: reqwest::Client,
    /// The site's session while the link is up.
    up: RwLock<Result<Up, String>>,
    crossing: Mutex<Crossing>,
    /// The grant the site's own events are applied under.
    site_grant: TokenGrant,
    /// Changes kept on this workstation only since the link went down (`when_down`).
    kept_local: AtomicUsize,
    /// The link's row in the window, which says so.
    status: Arc<watch::Sender<UpstreamStatus>>,
    /// Until when the site may still be replaying what is open to the new subscription.
    replay_until: Mutex<Option<Instant>>,
}

/// How long after subscribing the site's frames may be its replay of what is open.
const REPLAY_WINDOW: Duration = Duration::from_secs(2);

/// Where changes go while the link is up.
#[derive(Clone)]
pub(crate) struct Up {
    pub hub_url: String,
    pub topic: String,
    pub token: String,
}

#[derive(Default)]
struct Crossing {
    /// Posted to the site, not applied here yet.
    pending: HashMap<String, (TokenGrant, ContextChange)>,
    /// Applied here on the echo before the post returned: what applying it said.
    applied_on_echo: HashMap<String, Result<(), PublishError>>,
    /// Ids applied here lately, from either side: seen again, they are not applied again.
    crossed: RecentIds,
    /// Which local content version is which of the site's.
    versions: Versions,
}

/// What to answer the site's hub for an event it sent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Inbound {
    /// Applied here (or already was): `{id, status: 200}`.
    Applied,
    /// Refused here: the status, and why (the site's hub tells its apps with a SyncError).
    Refused(u16, String),
}

impl Relay {
    pub(crate) fn new(
        site: &str,
        engine: Engine,
        local_topic: Arc<str>,
        when_down: WhenDown,
        http: reqwest::Client,
        status: Arc<watch::Sender<UpstreamStatus>>,
    ) -> Self {
        let site_grant = TokenGrant {
            client_id: UPSTREAM_CLIENT_ID.into(),
            client_name: format!("{site} (site hub)"),
            topic: local_topic.clone(),
            scopes: ScopeSet::parse("fhircast/*.write").unwrap_or_default(),
            // The link's grant outlives any of the site's tokens; the link ends it by stopping.
            expires_at: Instant::now() + Duration::from_secs(10 * 365 * 24 * 3600),
            acknowledges: true,
        };
        Relay {
            inner: Arc::new(Inner {
                site: site.to_owned(),
                engine,
                local_topic,
                when_down,
                http,
                up: RwLock::new(Err("not connected yet".into())),
                crossing: Mutex::new(Crossing::default()),
                site_grant,
                kept_local: AtomicUsize::new(0),
                status,
                replay_until: Mutex::new(None),
            }),
        }
    }

    /// The link is up: changes go to `up` (and none is kept here only any more).
    pub(crate) fn set_up(&self, up: Up) {
        *self.inner.up.write() = Ok(up);
        self.inner.kept_local.store(0, Ordering::Relaxed);
    }

    /// The link has just subscribed: the site may replay what is open (a hub sends a new
    /// subscriber the current opens), which the re-sync has already applied here.
    pub(crate) fn expect_replay(&self) {
        *self.inner.replay_until.lock() = Some(Instant::now() + REPLAY_WINDOW);
    }

    /// Whether `change` is the site's replay of the open that is already current here: applied
    /// again it would start the report's content over.
    fn is_replay_of_current(&self, change: &ContextChange) -> bool {
        let inner = &self.inner;
        let replaying = inner
            .replay_until
            .lock()
            .is_some_and(|until| Instant::now() < until);
        if !replaying || change.event.kind != EventKind::Open {
            return false;
        }
        let anchor = change
            .event
            .anchor
            .zip(change.anchor_id())
            .map(|(kind, id)| (kind.to_owned(), id.to_owned()));
        anchor.is_some() && anchor == super::resync::local_anchor(&inner.engine, &inner.local_topic)
    }

    /// What the link's row adds while changes are kept here only.
    pub(crate) fn kept_local_note(&self) -> String {
        match self.inner.kept_local.load(Ordering::Relaxed) {
            0 => String::new(),
            1 => "; 1 change is kept on this workstation only".into(),
            n => format!("; {n} changes are kept on this workstation only"),
        }
    }

    /// The link is down, and why: changes are refused, or kept here (`when_down`).
    pub(crate) fn set_down(&self, why: &str) {
        *self.inner.up.write() = Err(why.to_owned());
    }

    /// An event the site's hub sent: applied here unless it is one already applied.
    pub(crate) fn inbound(&self, id: &str, frame: &Value) -> Inbound {
        let inner = &self.inner;
        let mut crossing = inner.crossing.lock();
        if let Some((grant, change)) = crossing.pending.remove(id) {
            // A change requested here, echoed before the site's 202 came back.
            let result = self.apply(&mut crossing, &grant, change, minted(frame));
            let answer = inbound_answer(&result);
            crossing.applied_on_echo.insert(id.to_owned(), result);
            return answer;
        }
        if !crossing.crossed.first_time(id) {
            // Applied here already: its echo says what version the site minted for it.
            if let Some(site) = minted(frame) {
                crossing.versions.site_told(id, site);
            }
            return Inbound::Applied;
        }
        let change = match local_change(frame, &inner.local_topic, &crossing.versions) {
            Ok(change) => change,
            Err(why) => {
                tracing::warn!(site = %inner.site, "an event from the site's hub was not applied: {why}");
                return Inbound::Refused(400, why);
            }
        };
        if self.is_replay_of_current(&change) {
            tracing::debug!(site = %inner.site, "the site replayed what is open here already");
            return Inbound::Applied;
        }
        let result = self.apply(&mut crossing, &inner.site_grant, change, minted(frame));
        inbound_answer(&result)
    }

    /// Applies a change here (under the crossing lock, so in the site's order), remembering it
    /// crossed and which version it minted here beside the site's (when it is known).
    fn apply(
        &self,
        crossing: &mut Crossing,
        grant: &TokenGrant,
        change: ContextChange,
        site_version: Option<&str>,
    ) -> Result<(), PublishError> {
        let inner = &self.inner;
        let id = change.id.clone();
        crossing.crossed.first_time(&id);
        inner.engine.publish(grant, change)?;
        if let Some(local) = inner.engine.current_context_of(&inner.local_topic) {
            crossing
                .versions
                .applied_here(&id, local.version_id, site_version);
        }
        Ok(())
    }

    /// A change the site's state implies (a re-sync), applied here under the site's name.
    pub(crate) fn apply_from_site(
        &self,
        event: &'static EventSpec,
        context: Value,
        site_version: Option<&str>,
    ) -> Result<(), PublishError> {
        let inner = &self.inner;
        let id = uuid::Uuid::new_v4().to_string();
        let frame = json!({
            "timestamp": now_iso(),
            "id": id,
            "event": { "hub.topic": &*inner.local_topic, "hub.event": event.name, "context": context },
        });
        let change = ContextChange::parse(frame.to_string().as_bytes())
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        let mut crossing = inner.crossing.lock();
        self.apply(&mut crossing, &inner.site_grant, change, site_version)
    }

    /// The content the site shared on the report just opened here (a re-sync), applied as an
    /// update against the local version.
    pub(crate) fn apply_content_from_site(
        &self,
        context: Value,
        site_version: Option<&str>,
    ) -> Result<(), PublishError> {
        let inner = &self.inner;
        let update = EventSpec::lookup("DiagnosticReport-update")
            .ok_or_else(|| PublishError::Invalid("no DiagnosticReport-update".into()))?;
        let local_version = inner
            .engine
            .current_context_of(&inner.local_topic)
            .map(|c| c.version_id)
            .unwrap_or_default();
        let frame = json!({
            "timestamp": now_iso(),
            "id": uuid::Uuid::new_v4().to_string(),
            "event": {
                "hub.topic": &*inner.local_topic,
                "hub.event": update.name,
                "context": context,
                "context.versionId": local_version,
            },
        });
        let change = ContextChange::parse(frame.to_string().as_bytes())
            .map_err(|e| PublishError::Invalid(e.to_string()))?;
        let mut crossing = inner.crossing.lock();
        self.apply(&mut crossing, &inner.site_grant, change, site_version)
    }

    async fn request(
        self,
        engine: Engine,
        grant: TokenGrant,
        change: ContextChange,
    ) -> Result<(), PublishError> {
        let inner = &self.inner;
        let up = inner.up.read().clone();
        let up = match up {
            Ok(up) => up,
            Err(why) => return self.while_down(&engine, &grant, change, &why),
        };
        let id = change.id.clone();
        let body = {
            let mut crossing = inner.crossing.lock();
            let site_version = change
                .version_id
                .as_deref()
                .map(|local| crossing.versions.to_site(local).unwrap_or(local).to_owned());
            let body = upstream_body(&change, &up.topic, site_version.as_deref());
            crossing.pending.insert(id.clone(), (grant, change));
            body
        };
        let answer = self.post(&up, body).await;
        let mut crossing = inner.crossing.lock();
        let echoed = crossing.applied_on_echo.remove(&id);
        let pending = crossing.pending.remove(&id);
        match (answer, echoed, pending) {
            // The site's own echo applied it: the site accepted it, whatever the post says.
            (_, Some(result), _) => result,
            (Ok(()), None, Some((grant, change))) => {
                self.apply(&mut crossing, &grant, change, None)
            }
            (Err(refused), None, _) => Err(refused),
            (Ok(()), None, None) => Ok(()),
        }
    }

    fn while_down(
        &self,
        engine: &Engine,
        grant: &TokenGrant,
        change: ContextChange,
        why: &str,
    ) -> Result<(), PublishError> {
        let site = &self.inner.site;
        match self.inner.when_down {
            WhenDown::Refuse => Err(PublishError::Unavailable(
                format!(
                    "the link to {site} is down ({why}): {} was not made, so that this workstation never shows what the site's session does not",
                    change.event.name
                )
                .into(),
            )),
            WhenDown::KeepLocal => {
                tracing::warn!(
                    site = %site,
                    event = change.event.name,
                    "the link is down ({why}): the change is kept on this workstation only"
                );
                engine.publish(grant, change)?;
                self.inner.kept_local.fetch_add(1, Ordering::Relaxed);
                let note = self.kept_local_note();
                // The row reads as the link's own: why it is down, then what is kept here.
                self.inner
                    .status
                    .send_modify(|status| status.detail = format!("{why}{note}"));
                Ok(())
            }
        }
    }

    async fn post(&self, up: &Up, body: String) -> Result<(), PublishError> {
        let sent = self
            .inner
            .http
            .post(&up.hub_url)
            .bearer_auth(&up.token)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .timeout(POST_DEADLINE)
            .body(body)
            .send()
            .await;
        let response = sent.map_err(|e| {
            PublishError::Unavailable(
                format!(
                    "the site's hub ({}) did not answer: {}",
                    self.inner.site,
                    LinkError::unreachable(e)
                )
                .into(),
            )
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let text = response.text().await.unwrap_or_default();
        Err(PublishError::Upstream {
            status: status.as_u16(),
            message: super::excerpt(&text),
        })
    }
}

impl Relay {
    /// Tells the site of the SyncErrors this hub generates (an app here did not follow), under
    /// the event's own id, so the site's apps know the workstation did not follow. SyncErrors
    /// the apps and bridges post are requests, and reach the site through the gate.
    pub(crate) async fn tell_the_site(self, mut events: broadcast::Receiver<EngineEvent>) {
        loop {
            let event = match events.recv().await {
                Ok(event) => event,
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    tracing::warn!(
                        "{missed} SyncErrors were not told to the site's hub (too many at once)"
                    );
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => return,
            };
            let EngineEvent::SyncError {
                topic,
                subscriber: Some(subscriber),
                event_id,
                event_name,
                diagnostics,
                ..
            } = event
            else {
                continue;
            };
            if topic != self.inner.local_topic {
                continue;
            }
            // While the link is down the tray shows the link itself as the problem.
            let Ok(up) = self.inner.up.read().clone() else {
                continue;
            };
            let id = uuid::Uuid::new_v4().to_string();
            let report = SyncErrorReport {
                event_id: &event_id,
                event_name: &event_name,
                subscriber_name: subscriber.spec_name(),
                diagnostics: &diagnostics,
                code: IssueCode::Processing,
            };
            let body = report.notification(&up.topic, &id, &now_iso());
            // Its echo on the link's socket is not applied here again.
            self.inner.crossing.lock().crossed.first_time(&id);
            if let Err(e) = self.post(&up, body).await {
                tracing::warn!(site = %self.inner.site, "a SyncError was not told to the site's hub: {e}");
            }
        }
    }
}

impl Gate for Relay {
    fn request(&self, engine: Engine, grant: TokenGrant, change: ContextChange) -> GateFuture {
        Box::pin(self.clone().request(engine, grant, change))
    }
}

fn inbound_answer(result: &Result<(), PublishError>) -> Inbound {
    match result {
        Ok(()) => Inbound::Applied,
        Err(refused) => {
            let status = lockstep_hub::Refusal::from(refused.clone()).status();
            Inbound::Refused(status.as_u16(), refused.to_string())
        }
    }
}

/// A request for the site's hub: the same event (its context byte for byte), on the site's
/// topic, naming the site's content version.
fn upstream_body(change: &ContextChange, topic: &str, version: Option<&str>) -> String {
    Frame {
        timestamp: &change.timestamp,
        id: &change.id,
        topic,
        event: change.event.name,
        context: change.context.get(),
        versions: FrameVersions {
            version_id: version,
            prior_version_id: None,
        },
    }
    .to_json()
}

/// An event from the site's hub as a change on the local topic.
fn local_change(
    frame: &Value,
    local_topic: &str,
    versions: &Versions,
) -> Result<ContextChange, String> {
    let mut frame = frame.clone();
    let event = frame
        .get_mut("event")
        .and_then(Value::as_object_mut)
        .ok_or("no `event` object")?;
    event.insert("hub.topic".into(), local_topic.into());
    localise(event, versions);
    ContextChange::parse(frame.to_string().as_bytes()).map_err(|e| e.to_string())
}
