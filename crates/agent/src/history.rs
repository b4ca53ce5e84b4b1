//! The history and audit trail of the running agent: what the engine decides is recorded in the
//! store, read back for the UI and tools, and a past context can be reopened.
//!
//! Recording is an engine observer that only queues (the store's writer never blocks the
//! engine); an accepted context change is answered 2xx only once its history row is committed,
//! so what the hub acknowledged is what history holds, even across a crash.

use crate::config::{Config, WhenDamaged, WhenUnwritable};
use crate::paths::Paths;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use lockstep_fhircast::{ContextChange, EventKind, EventSpec, ScopeSet};
use lockstep_hub::clock::now_iso;
use lockstep_hub::{
    Authenticated, Delivery, Engine, EngineEvent, HubState, LinkEnd, LinkState, Refusal, TokenGrant,
};
use lockstep_store::{AuditRecord, HistoryRecord, Store, StoreError, StoreOptions, StoreWriter};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The store's types the shells use, from the agent (their one door).
pub use lockstep_store::{
    AuditEntry, AuditFormat, AuditKind, AuditQuery, HistoryEntry, HistoryQuery,
};

/// The database file name in the data folder.
pub const DATABASE_FILE: &str = "lockstep.db";
/// How long an accepted change waits for its history row before it is answered 503 (not on
/// record yet; the row stays queued and is written once it can be): delivery has happened
/// already, only the answer waits.
pub const DURABLE_WAIT: Duration = Duration::from_secs(2);

/// The database file the configuration names.
pub fn database_path(config: &Config) -> Result<PathBuf, StoreError> {
    match &config.history.database {
        Some(path) => Ok(path.clone()),
        None => Paths::discover()
            .data_dir()
            .map(|dir| dir.join(DATABASE_FILE))
            .ok_or_else(|| {
                StoreError::Io(std::io::Error::other("no home folder to keep history in"))
            }),
    }
}

/// Opens (creating and migrating) the store the configuration names. A damaged file is
/// refused, or moved aside for a fresh one where `history.when_damaged = "start_fresh"`.
pub fn open_store(config: &Config) -> Result<Store, StoreError> {
    let path = database_path(config)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(StoreError::Io)?;
    }
    let options = StoreOptions {
        history_retain_days: config.history.retain_days,
        audit_retain_days: config.audit.retain_days,
        max_bytes: (config.history.max_megabytes > 0)
            .then(|| config.history.max_megabytes * 1024 * 1024),
        ..StoreOptions::default()
    };
    match Store::open(&path, options.clone()) {
        Err(damage)
            if damage.is_damage() && config.history.when_damaged == WhenDamaged::StartFresh =>
        {
            let aside = set_aside(&path)?;
            tracing::error!(
                "{damage}; it was moved to {} and kept, and history starts on a fresh database \
                 (history.when_damaged = \"start_fresh\")",
                aside.display()
            );
            Store::open(&path, options)
        }
        other => other,
    }
}

/// Every entry `query` asks for, newest first, however many: the store answers at most
/// [`HistoryQuery::MAX_LIMIT`] at a time, so larger asks are paged with `before`.
pub fn query_all(store: &Store, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
    let wanted = query.limit.max(1);
    let mut page = query.clone();
    let mut entries = Vec::new();
    while entries.len() < wanted {
        page.limit = (wanted - entries.len()).min(HistoryQuery::MAX_LIMIT);
        let got = store.history(&page)?;
        let full = got.len() == page.limit;
        page.before_id = got.last().map(|e| e.id);
        entries.extend(got);
        if !full {
            break;
        }
    }
    Ok(entries)
}

/// What a refusal to start on a damaged file tells the site to do.
pub const DAMAGED_REMEDY: &str = "Lockstep did not start, so that no history is lost: keep \
    the file for IT, then move it away (a fresh one is made), or set [history] when_damaged = \
    \"start_fresh\" to have Lockstep move it aside and start fresh by itself";

/// Moves a damaged database (with its WAL and shared-memory files) to `<name>.damaged-<time>`.
fn set_aside(path: &std::path::Path) -> Result<PathBuf, StoreError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".damaged-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = aside.as_os_str().to_owned();
        to.push(suffix);
        // Absent after a clean stop.
        let _ = std::fs::rename(from, to);
    }
    Ok(aside)
}

/// Records every engine event worth keeping; called synchronously by the engine.
pub fn record(writer: &StoreWriter, event: &EngineEvent) {
    match event {
        EngineEvent::ContextChanged {
            topic,
            event,
            event_id,
            requester,
            summary,
            frame,
            ..
        } => {
            let mut record =
                HistoryRecord::new(&**topic, *event, event_id, requester, frame.as_str());
            if let Some(summary) = summary {
                record = record.with_summary((**summary).clone());
            }
            writer.record_history(record);
        }
        EngineEvent::Delivery {
            subscriber,
            event_id,
            event_name,
            outcome,
        } => {
            let (kind, detail) = match outcome {
                Delivery::Acknowledged { status } => (
                    AuditKind::DeliveryAcknowledged,
                    format!("{event_name}: {status}"),
                ),
                Delivery::Refused { status } => (
                    AuditKind::DeliveryRefused,
                    format!("{event_name}: {status}"),
                ),
                Delivery::TimedOut => (
                    AuditKind::DeliveryTimedOut,
                    format!("{event_name}: no answer in time"),
                ),
            };
            writer.record_audit(
                AuditRecord::new(kind, &subscriber.name, detail)
                    .topic(&*subscriber.topic)
                    .subject(event_id),
            );
        }
        EngineEvent::Link {
            subscriber,
            state,
            detail,
        } => {
            let (kind, why) = match state {
                LinkState::Pending => (AuditKind::SubscriptionGranted, "subscribed"),
                LinkState::Gone(end @ LinkEnd::LeaseExpired) => {
                    (AuditKind::SubscriptionExpired, end.describe())
                }
                LinkState::Gone(end) => (AuditKind::Unsubscribed, end.describe()),
                LinkState::Unresponsive => (AuditKind::Unsubscribed, "unresponsive"),
                // Refusals and recoveries are in the delivery rows; the other states are the
                // bridges' own, recorded from their reports.
                LinkState::Following
                | LinkState::FollowingUnacknowledged
                | LinkState::Refused { .. }
                | LinkState::Unconfirmed
                | LinkState::Broken
                | LinkState::Off => return,
            };
            let why = detail.as_deref().unwrap_or(why);
            writer.record_audit(
                AuditRecord::new(
                    kind,
                    &subscriber.client_id,
                    format!("{} ({}): {why}", subscriber.name, subscriber.events),
                )
                .topic(&*subscriber.topic)
                .subject(&subscriber.name),
            );
        }
        EngineEvent::SyncError {
            topic,
            about,
            event_name,
            diagnostics,
        } => {
            writer.record_audit(
                AuditRecord::new(
                    AuditKind::SyncError,
                    about,
                    format!("{event_name}: {diagnostics}"),
                )
                .topic(&**topic),
            );
        }
        EngineEvent::Paused { topic, paused } => {
            let detail = if *paused {
                "following paused: context changes are refused until resumed"
            } else {
                "following resumed"
            };
            writer.record_audit(
                AuditRecord::new(AuditKind::ConfigChanged, "user", detail).topic(&**topic),
            );
        }
    }
}

/// Why a history entry could not be reopened.
#[derive(Debug, thiserror::Error)]
pub enum ReopenError {
    #[error("no history entry {0}")]
    NotFound(i64),
    #[error("history entry {id} is a {event}; only an open can be reopened")]
    NotAnOpen { id: i64, event: String },
    #[error("the stored event cannot be replayed: {0}")]
    Invalid(String),
    #[error("the hub refused the reopened context: {0}")]
    Refused(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The scope an app needs to read history over HTTP.
pub const HISTORY_READ_SCOPE: &str = "lockstep/history.read";
/// The scope an app needs to reopen a history entry over HTTP.
pub const HISTORY_REOPEN_SCOPE: &str = "lockstep/history.reopen";

/// The running agent's history: the store, its writer, and what reopening needs.
pub struct History {
    store: Store,
    writer: StoreWriter,
    engine: Engine,
    topic: Arc<str>,
    when_unwritable: WhenUnwritable,
}

impl History {
    /// Opens the store, starts its writer and records every engine event from now on.
    pub fn start(
        config: &Config,
        engine: &Engine,
        topic: Arc<str>,
    ) -> Result<Arc<History>, StoreError> {
        let store = open_store(config)?;
        let writer = store.writer()?;
        let observer_writer = writer.clone();
        engine.observe(Arc::new(move |event| record(&observer_writer, event)));
        tracing::info!("history at {}", store.path().display());
        Ok(Arc::new(History {
            store,
            writer,
            engine: engine.clone(),
            topic,
            when_unwritable: config.history.when_unwritable,
        }))
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn writer(&self) -> &StoreWriter {
        &self.writer
    }

    /// Newest first; blocking (SQLite): call from a blocking context.
    pub fn query(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
        self.store.history(query)
    }

    /// Waits until the history rows recorded so far are committed, or [`DURABLE_WAIT`] passes.
    /// The acknowledgements recorded with them follow within [`lockstep_store::LINGER`].
    /// `Err` says why the change is not on record (it stays queued, and is written once the
    /// store can write); under `history.when_unwritable = "sync_without_history"` that is
    /// logged and the change counts as answered.
    pub async fn on_record(&self) -> Result<(), String> {
        let why = match tokio::time::timeout(DURABLE_WAIT, self.writer.flush_history()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!(
                "history did not record it within {} s; it is kept and written once it can be",
                DURABLE_WAIT.as_secs()
            ),
        };
        match self.when_unwritable {
            WhenUnwritable::Refuse => Err(why),
            WhenUnwritable::SyncWithoutHistory => {
                tracing::warn!("answered a change not yet on record (site policy): {why}");
                Ok(())
            }
        }
    }

    /// The site's choice for when history cannot be written.
    pub fn when_unwritable(&self) -> WhenUnwritable {
        self.when_unwritable
    }

    /// Re-publishes a past open as a new event: a new id and time, the same context. The
    /// user's explicit act, recorded in the audit trail with who asked. Blocking (SQLite).
    pub fn reopen(&self, id: i64, by: &str) -> Result<String, ReopenError> {
        let entry: HistoryEntry = self
            .store
            .history_entry(id)?
            .ok_or(ReopenError::NotFound(id))?;
        let spec = EventSpec::lookup(&entry.event)
            .filter(|s| s.kind == EventKind::Open)
            .ok_or_else(|| ReopenError::NotAnOpen {
                id,
                event: entry.event.clone(),
            })?;
        let mut frame: Value = serde_json::from_str(&entry.event_json)
            .map_err(|e| ReopenError::Invalid(e.to_string()))?;
        let event_id = uuid::Uuid::new_v4().to_string();
        frame["id"] = event_id.clone().into();
        frame["timestamp"] = now_iso().into();
        let event = frame
            .get_mut("event")
            .and_then(Value::as_object_mut)
            .ok_or_else(|| ReopenError::Invalid("no `event` object".into()))?;
        event.insert("hub.topic".into(), (*self.topic).into());
        // A reopened report starts a new content session: the hub mints its version.
        event.remove("context.versionId");
        event.remove("context.priorVersionId");
        let change = ContextChange::parse(frame.to_string().as_bytes())
            .map_err(|e| ReopenError::Invalid(e.to_string()))?;
        let grant = TokenGrant {
            client_id: "lockstep".into(),
            client_name: format!("Lockstep history (reopened by {by})"),
            topic: self.topic.clone(),
            scopes: ScopeSet::parse(&format!("fhircast/{}.write", spec.name)).unwrap_or_default(),
            expires_at: Instant::now() + Duration::from_secs(60),
            acknowledges: true,
        };
        self.engine
            .publish(&grant, change)
            .map_err(|e| ReopenError::Refused(e.to_string()))?;
        self.writer.record_audit(
            AuditRecord::new(
                AuditKind::HistoryReopened,
                by,
                format!(
                    "history entry {id} ({}) reopened as {event_id}",
                    entry.event
                ),
            )
            .topic(&*self.topic)
            .subject(&entry.event_id),
        );
        Ok(event_id)
    }

    /// Drains the writer and closes the store; blocking.
    pub fn shutdown(&self) {
        if let Err(e) = self.writer.flush_blocking() {
            tracing::error!("history: the last records could not be written: {e}");
        }
    }

    /// `GET /lockstep/history` (scope `lockstep/history.read`) and
    /// `POST /lockstep/history/{id}/reopen` (scope `lockstep/history.reopen`), served by the hub
    /// behind its guards.
    pub fn routes(self: &Arc<Self>) -> Router<HubState> {
        let for_query = self.clone();
        let for_reopen = self.clone();
        Router::new()
            .route(
                "/lockstep/history",
                get(
                    move |Authenticated(grant): Authenticated,
                          Query(params): Query<Vec<(String, String)>>| {
                        let history = for_query.clone();
                        async move {
                            require(&grant, HISTORY_READ_SCOPE)?;
                            let query = query_from_params(
                                params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
                            )
                            .map_err(|e| Refusal::new(StatusCode::BAD_REQUEST, e))?;
                            let entries =
                                tokio::task::spawn_blocking(move || history.query(&query))
                                    .await
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?;
                            Ok::<_, Refusal>(Json(entries))
                        }
                    },
                ),
            )
            .route(
                "/lockstep/history/{id}/reopen",
                post(
                    move |Authenticated(grant): Authenticated, Path(id): Path<i64>| {
                        let history = for_reopen.clone();
                        async move {
                            require(&grant, HISTORY_REOPEN_SCOPE)?;
                            let by = grant.client_name.clone();
                            let reopened =
                                tokio::task::spawn_blocking(move || history.reopen(id, &by))
                                    .await
                                    .map_err(|e| {
                                        Refusal::new(
                                            StatusCode::INTERNAL_SERVER_ERROR,
                                            e.to_string(),
                                        )
                                    })?;
                            match reopened {
                                Ok(event_id) => Ok(Json(serde_json::json!({ "id": event_id }))),
                                Err(e @ ReopenError::NotFound(_)) => {
                                    Err(Refusal::new(StatusCode::NOT_FOUND, e.to_string()))
                                }
                                Err(e @ ReopenError::Store(_)) => Err(Refusal::new(
                                    StatusCode::INTERNAL_SERVER_ERROR,
                                    e.to_string(),
                                )),
                                Err(e) => Err(Refusal::new(StatusCode::CONFLICT, e.to_string())),
                            }
                        }
                    },
                ),
            )
    }
}

fn require(grant: &TokenGrant, scope: &str) -> Result<(), Refusal> {
    if grant.scopes.contains(scope) {
        Ok(())
    } else {
        Err(Refusal::new(
            StatusCode::FORBIDDEN,
            format!("the token has no {scope} scope"),
        ))
    }
}

/// A history query from URL query parameters (`patient`, `accession`, `uid`, `event`, `app`,
/// `text`, `limit`, `before`): the one reading shared by the HTTP API and `lockstepd history`.
pub fn query_from_params<'a>(
    params: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<HistoryQuery, String> {
    let mut query = HistoryQuery::default();
    for (key, value) in params {
        let text = Some(value.to_owned()).filter(|v| !v.trim().is_empty());
        match key {
            "patient" => query.patient_identifier = text,
            "accession" => query.accession = text,
            "uid" => query.study_uid = text,
            "event" => query.event = text,
            "app" => query.app = text,
            "text" => query.text = text,
            "limit" => {
                query.limit = value
                    .parse()
                    .map_err(|_| format!("`limit` must be a number, got `{value}`"))?
            }
            "before" => {
                query.before_id = Some(
                    value
                        .parse()
                        .map_err(|_| format!("`before` must be a row id, got `{value}`"))?,
                )
            }
            "from" | "to" => {
                let at = time::OffsetDateTime::parse(
                    value,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| format!("`{key}` must be an RFC 3339 time, got `{value}`"))?;
                if key == "from" {
                    query.from = Some(at);
                } else {
                    query.to = Some(at);
                }
            }
            other => return Err(format!("unknown history filter `{other}`")),
        }
    }
    Ok(query)
}
