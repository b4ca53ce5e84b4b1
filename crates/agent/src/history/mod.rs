//! The history and audit trail of the running agent: what the engine decides is recorded in the
//! store, read back for the UI and tools, and a past context can be reopened.
//!
//! Recording is an engine observer that only queues (the store's writer never blocks the
//! engine); an accepted context change is answered 2xx only once its history row is committed,
//! so what the hub acknowledged is what history holds, even across a crash.

mod database;
mod detail;
mod export;
mod record;
mod routes;

pub use database::{DAMAGED_REMEDY, database_path, open_store, query_all};
pub use detail::{HistoryDetail, Outcome, OutcomeKind, detail};
pub use export::{EXPORT_COLUMNS, export_csv};
pub use record::{Unqueued, record};
pub use routes::query_from_params;
pub(crate) use routes::require;

use crate::config::{Config, WhenUnwritable};
use lockstep_fhircast::{ContextChange, EventKind, EventSpec};
use lockstep_hub::clock::now_iso;
use lockstep_hub::{Engine, TokenGrant};
use lockstep_store::{AuditRecord, Store, StoreError, StoreWriter};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

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
    /// Changes whose history rows the writer's full queue refused.
    unqueued: Arc<Unqueued>,
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
        let unqueued = Arc::new(Unqueued::default());
        let observer_unqueued = unqueued.clone();
        engine.observe(Arc::new(move |event| {
            record(&observer_writer, &observer_unqueued, event)
        }));
        tracing::info!("history at {}", store.path().display());
        Ok(Arc::new(History {
            store,
            writer,
            engine: engine.clone(),
            topic,
            when_unwritable: config.history.when_unwritable,
            unqueued,
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

    /// Waits until the history rows recorded so far are safe from a crash or kill, or
    /// [`DURABLE_WAIT`] passes; `event_id` names the change about to be answered. The
    /// acknowledgements recorded with them follow within [`lockstep_store::LINGER`].
    /// `Err` says why the change is not on record (its row stays queued and is written once
    /// the store can write, or the full queue refused it); under
    /// `history.when_unwritable = "sync_without_history"` that is logged and the change
    /// counts as answered.
    pub async fn on_record(&self, event_id: &str) -> Result<(), String> {
        let flushed = tokio::time::timeout(DURABLE_WAIT, self.writer.flush_history()).await;
        let why = match flushed {
            _ if self.unqueued.take(event_id) => {
                "its history row was dropped: the store's queue is full".to_owned()
            }
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
    /// user's explicit act, recorded in the audit trail with who asked. Blocking (SQLite, and the
    /// site's hub where it decides): call from a blocking thread.
    pub fn reopen(&self, id: i64, by: &str) -> Result<String, ReopenError> {
        let entry: HistoryEntry = self
            .store
            .history_entry(id)?
            .ok_or(ReopenError::NotFound(id))?;
        let spec = reopenable(&entry.event).ok_or_else(|| ReopenError::NotAnOpen {
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
        let grant = TokenGrant::agent(
            format!("Lockstep history (reopened by {by})"),
            self.topic.clone(),
            spec.name,
        );
        // Through the gate like any requested change (the site's hub may decide it); this is
        // a blocking thread, so it may wait here.
        tokio::runtime::Handle::current()
            .block_on(self.engine.request(&grant, change))
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
}

/// The reopen rule: only an open can be published again (a close or an update replayed out of
/// its session would change what the apps show without the user opening anything).
fn reopenable(event: &str) -> Option<&'static EventSpec> {
    EventSpec::lookup(event).filter(|spec| spec.kind == EventKind::Open)
}
