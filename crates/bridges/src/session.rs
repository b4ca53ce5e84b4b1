//! How a bridge takes part in the clinician's session: in-process, exactly like a WebSocket
//! app but with no socket. It subscribes and acknowledges through the engine, requests changes
//! with its own grant (so its name is in SyncErrors, history and the audit trail), and reports
//! its link state.

use crate::error::BridgeError;
use crate::report::{Board, BridgeReport, Report, Reporter};
use lockstep_fhircast::frames::{IssueCode, SyncErrorReport};
use lockstep_fhircast::{ContextChange, EventSpec, Mode, ScopeSet, SubscriptionRequest};
use lockstep_hub::LinkState;
use lockstep_hub::clock::now_iso;
use lockstep_hub::engine::{CloseOrder, Connection, SocketEnd};
use lockstep_hub::{Engine, TokenGrant};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;
use tokio::sync::watch;

/// The client id prefix of a bridge's seat in the session (`bridge:<name>`), so listeners can
/// tell a bridge's subscription from an app's.
pub const CLIENT_ID_PREFIX: &str = "bridge:";

/// A bridge's grant outlives any lease; leases are renewed well before they end.
const GRANT_LIFETIME: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// What every bridge's seat shares: the session, the link board, the reporter, and the SMART
/// launcher where there is one.
#[derive(Clone)]
pub(crate) struct Services {
    pub engine: Engine,
    pub topic: Arc<str>,
    pub board: Board,
    pub reporter: Reporter,
    pub smart: Option<crate::launch::SmartLauncher>,
}

/// One bridge's seat in the session. Cheap to clone.
#[derive(Clone)]
pub struct Session {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    engine: Engine,
    topic: Arc<str>,
    name: String,
    grant: TokenGrant,
    board: Board,
    reporter: Reporter,
    smart: Option<crate::launch::SmartLauncher>,
}

impl Session {
    /// `read`: events the bridge follows; `write`: events it may request (SyncError always).
    pub(crate) fn new(
        services: Services,
        name: &str,
        read: &[&'static EventSpec],
        write: &[&'static EventSpec],
    ) -> Self {
        let Services {
            engine,
            topic,
            board,
            reporter,
            smart,
        } = services;
        let scopes: Vec<String> = read
            .iter()
            .map(|e| format!("fhircast/{}.read", e.name))
            .chain(write.iter().map(|e| format!("fhircast/{}.write", e.name)))
            .chain(std::iter::once("fhircast/SyncError.write".to_owned()))
            .collect();
        let grant = TokenGrant {
            // A client id of its own: a posted SyncError skips only its own sender.
            client_id: format!("{}{name}", CLIENT_ID_PREFIX),
            client_name: name.to_owned(),
            topic: topic.clone(),
            scopes: ScopeSet::from_iter_checked(scopes.iter().map(String::as_str))
                .unwrap_or_default(),
            expires_at: Instant::now() + GRANT_LIFETIME,
            acknowledges: true,
        };
        Session {
            inner: Arc::new(SessionInner {
                engine,
                topic,
                name: name.to_owned(),
                grant,
                board,
                reporter,
                smart,
            }),
        }
    }

    /// Where SMART apps are launched into the session: how their launches are registered.
    pub fn smart(&self) -> Option<&crate::launch::SmartLauncher> {
        self.inner.smart.as_ref()
    }

    pub fn name(&self) -> &str {
        &self.inner.name
    }

    pub fn engine(&self) -> &Engine {
        &self.inner.engine
    }

    pub fn topic(&self) -> &Arc<str> {
        &self.inner.topic
    }

    /// Sets the link state; a change is logged and audited. `detail` must not name a patient:
    /// it is logged at info level and shown in the tray.
    pub fn set_state(&self, state: LinkState, detail: impl Into<String>) {
        let detail = detail.into();
        if self.inner.board.set(&self.inner.name, state, &detail) {
            tracing::info!(bridge = %self.inner.name, "link {}: {detail}", state.name());
            self.emit(BridgeReport::Link(state), detail);
        }
    }

    /// Sets the link state of an application this bridge brings in (a CCOW participant); a
    /// change is logged. `detail` must not name a patient.
    pub fn set_app_state(&self, app: &str, state: LinkState, detail: impl Into<String>) {
        let detail = detail.into();
        tracing::info!(bridge = %self.inner.name, "{app}: link {}: {detail}", state.name());
        self.inner
            .board
            .set_app(&self.inner.name, app, state, &detail);
    }

    /// Takes an application this bridge brought in off its list.
    pub fn remove_app(&self, app: &str) {
        self.inner.board.remove_app(&self.inner.name, app);
    }

    /// Records that the bridge launched its app or wrote its file.
    pub fn acted(&self, detail: impl Into<String>) {
        self.emit(BridgeReport::Acted, detail.into());
    }

    /// Records a refusal. `log` is the line for the log (no patient identifiers); `audit` the
    /// full reason for the audit trail.
    pub fn rejected(&self, log: &str, audit: impl Into<String>) {
        tracing::warn!(bridge = %self.inner.name, "{log}");
        self.emit(BridgeReport::Rejected, audit.into());
    }

    fn emit(&self, kind: BridgeReport, detail: String) {
        (self.inner.reporter)(&Report {
            topic: self.inner.topic.clone(),
            bridge: self.inner.name.clone(),
            kind,
            detail,
        });
    }

    /// A fresh request for `event` with `context`: (its id, the request).
    pub fn request(&self, event: &str, context: Value) -> (String, Value) {
        let id = uuid::Uuid::new_v4().to_string();
        let request = json!({
            "timestamp": now_iso(),
            "id": id,
            "event": { "hub.topic": &*self.inner.topic, "hub.event": event, "context": context },
        });
        (id, request)
    }

    /// Validates and requests a change as this bridge (through the engine's gate: where the
    /// site's hub keeps the session, it decides).
    pub async fn publish(&self, request: &Value) -> Result<(), BridgeError> {
        self.publish_with(request, &self.inner.grant).await
    }

    /// [`Session::publish`], for a bridge's blocking thread (the folder's file handling).
    pub fn publish_blocking(&self, request: &Value) -> Result<(), BridgeError> {
        tokio::runtime::Handle::current().block_on(self.publish(request))
    }

    /// Publishes a request on behalf of an application this bridge brings in: history names
    /// `app` (as `app (via <bridge>)`) as the requester.
    pub async fn publish_for(&self, request: &Value, app: &str) -> Result<(), BridgeError> {
        let grant = TokenGrant {
            client_name: format!("{app} (via {})", self.inner.name),
            ..self.inner.grant.clone()
        };
        self.publish_with(request, &grant).await
    }

    async fn publish_with(&self, request: &Value, grant: &TokenGrant) -> Result<(), BridgeError> {
        let change = ContextChange::parse(request.to_string().as_bytes())
            .map_err(|e| BridgeError::Publish(e.to_string()))?;
        self.inner
            .engine
            .request(grant, change)
            .await
            .map_err(|e| BridgeError::Publish(e.to_string()))
    }

    /// Posts a SyncError about this bridge to the other apps.
    pub fn sync_error(&self, event_id: &str, event_name: &str, diagnostics: &str) {
        let report = SyncErrorReport {
            event_id,
            event_name,
            subscriber_name: &self.inner.name,
            diagnostics,
            code: IssueCode::Processing,
        };
        let frame = report.notification(
            &self.inner.topic,
            &uuid::Uuid::new_v4().to_string(),
            &now_iso(),
        );
        let change = match ContextChange::parse(frame.as_bytes()) {
            Ok(change) => change,
            Err(e) => {
                tracing::error!(bridge = %self.inner.name, "could not post a SyncError: {e}");
                return;
            }
        };
        // Through the gate like the bridge's requests (where the site's hub decides, it hears
        // of the failure too), without holding up the bridge.
        let (engine, grant) = (self.inner.engine.clone(), self.inner.grant.clone());
        tokio::spawn(async move {
            if let Err(e) = engine.request(&grant, change).await {
                tracing::error!(bridge = %grant.client_name, "could not post a SyncError: {e}");
            }
        });
    }

    /// Subscribes to `events` and attaches, as an app's WebSocket would.
    pub async fn join(&self, events: Vec<&'static EventSpec>) -> Result<Feed, BridgeError> {
        let (endpoint, connection) = self.subscribe(&events, None)?;
        let mut feed = Feed {
            session: self.clone(),
            events,
            endpoint,
            connection,
            renew_at: Instant::now() + Duration::from_secs(3600),
        };
        feed.read_confirmation().await?;
        Ok(feed)
    }

    fn subscribe(
        &self,
        events: &[&'static EventSpec],
        endpoint: Option<String>,
    ) -> Result<(String, Option<Connection>), BridgeError> {
        let request = SubscriptionRequest {
            mode: Mode::Subscribe,
            topic: self.inner.topic.to_string(),
            events: events.to_vec(),
            ignored_events: Vec::new(),
            lease_seconds: Some(self.inner.engine.settings().lease_seconds_max),
            channel_endpoint: endpoint.clone(),
            subscriber_name: Some(self.inner.name.clone()),
        };
        let outcome = self
            .inner
            .engine
            .subscribe(&self.inner.grant, request)
            .map_err(|e| BridgeError::Join(e.to_string()))?;
        if endpoint.is_some() {
            return Ok((outcome.endpoint, None));
        }
        let connection = self
            .inner
            .engine
            .connect(&outcome.endpoint)
            .map_err(|e| BridgeError::Join(e.to_string()))?;
        Ok((outcome.endpoint, Some(connection)))
    }
}

/// The notifications a bridge receives, with the lease kept alive underneath.
pub struct Feed {
    session: Session,
    events: Vec<&'static EventSpec>,
    endpoint: String,
    connection: Option<Connection>,
    renew_at: Instant,
}

impl Feed {
    /// The next notification. Confirmations are read here; a subscription the hub ended
    /// (lease, policy) is joined again, and the replay that follows arrives as notifications.
    pub async fn next(&mut self) -> Result<ContextChange, BridgeError> {
        enum Next {
            Frame(Option<lockstep_hub::engine::FrameText>),
            Closed(String),
            Renew,
        }
        loop {
            let Some(connection) = self.connection.as_mut() else {
                self.rejoin("not connected")?;
                continue;
            };
            let renew_at = tokio::time::Instant::from_std(self.renew_at);
            let next = tokio::select! {
                frame = connection.frames.recv() => Next::Frame(frame),
                order = &mut connection.close => Next::Closed(describe(order)),
                _ = tokio::time::sleep_until(renew_at) => Next::Renew,
            };
            match next {
                Next::Frame(Some(text)) => {
                    if let Ok(change) = ContextChange::parse(text.as_bytes()) {
                        return Ok(change);
                    }
                    self.note_confirmation(text.as_str());
                }
                Next::Frame(None) => self.rejoin("the hub ended the subscription")?,
                Next::Closed(reason) => self.rejoin(&reason)?,
                Next::Renew => {
                    self.session
                        .subscribe(&self.events, Some(self.endpoint.clone()))?;
                    // The new confirmation (with the new lease) arrives as a frame; until
                    // then, try again in a minute.
                    self.renew_at = Instant::now() + Duration::from_secs(60);
                }
            }
        }
    }

    /// Answers a notification, as an app answers on its socket.
    pub fn reply(&self, event_id: &str, status: u16) {
        let reply = json!({ "id": event_id, "status": status }).to_string();
        self.session.engine().reply(&self.endpoint, &reply);
    }

    async fn read_confirmation(&mut self) -> Result<(), BridgeError> {
        let Some(connection) = self.connection.as_mut() else {
            return Ok(());
        };
        match connection.frames.recv().await {
            Some(text) => {
                let text = text.as_str().to_owned();
                self.note_confirmation(&text);
                Ok(())
            }
            None => Err(BridgeError::Join(
                "the hub closed the subscription at once".into(),
            )),
        }
    }

    /// Reads `hub.lease_seconds` from a confirmation and plans the renewal at half of it.
    fn note_confirmation(&mut self, text: &str) {
        let Ok(frame) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(lease) = frame.get("hub.lease_seconds").and_then(Value::as_u64) {
            self.renew_at = Instant::now() + Duration::from_secs((lease / 2).max(1));
        }
    }

    fn rejoin(&mut self, why: &str) -> Result<(), BridgeError> {
        tracing::info!(bridge = %self.session.name(), "joining the session again: {why}");
        self.session
            .engine()
            .socket_closed(&self.endpoint, SocketEnd::Closed(1000));
        let (endpoint, connection) = self.session.subscribe(&self.events, None)?;
        self.endpoint = endpoint;
        self.connection = connection;
        Ok(())
    }
}

impl Drop for Feed {
    /// However the bridge ends (stopped, failed, panicked), its subscription goes with it.
    fn drop(&mut self) {
        self.session
            .engine()
            .socket_closed(&self.endpoint, SocketEnd::Closed(1000));
    }
}

fn describe(order: Result<CloseOrder, oneshot::error::RecvError>) -> String {
    match order {
        Ok(order) if !order.reason.is_empty() => order.reason.to_owned(),
        Ok(order) => format!("closed with code {}", order.code),
        Err(_) => "the hub dropped the subscription".to_owned(),
    }
}

/// Event ids a bridge has handled lately: the replay that follows joining again must not
/// launch or write twice.
#[derive(Default)]
pub struct RecentIds(std::collections::VecDeque<String>);

impl RecentIds {
    const KEEP: usize = 32;

    /// True the first time an id is seen (and remembers it).
    pub fn first_time(&mut self, id: &str) -> bool {
        if self.0.iter().any(|seen| seen == id) {
            return false;
        }
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(id.to_owned());
        true
    }
}

/// Resolves once `stop` says so (or its sender is gone). The watch guard is never held across
/// an await, so the futures that use this stay `Send`.
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}
