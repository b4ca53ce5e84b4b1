//! Context history and the audit trail, in one embedded SQLite file.
//!
//! [`Store::open`] opens (creating and migrating) the file and answers reads: history queries,
//! audit queries, export and chain verification. [`Store::writer`] starts the one thread that
//! writes: records go through a bounded queue and are committed in batches, so recording never
//! waits on the disk. Retention (by age and size) runs on that thread between batches.

mod audit;
mod clock;
pub mod csv;
mod error;
mod history;
mod journal;
mod problem;
mod retention;
mod schema;
mod sql;
mod writer;

pub use audit::{
    AuditEntry, AuditFormat, AuditKind, AuditQuery, AuditRecord, BrokenLink, ChainBreak,
    UnknownAuditKind, VerifyReport,
};
pub use error::StoreError;
pub use history::{HistoryEntry, HistoryQuery, HistoryRecord};
pub use problem::WriteProblem;
pub use retention::PruneReport;
pub use schema::SCHEMA_VERSION;
pub use writer::{LINGER, SYNC_WITHIN, StoreWriter, WriterStats};

use rusqlite::Connection;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// How the store keeps and prunes its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreOptions {
    /// Days of history to keep; 0 keeps it forever.
    pub history_retain_days: u32,
    /// Days of audit trail to keep; 0 keeps it forever.
    pub audit_retain_days: u32,
    /// A cap on the bytes the database holds (the main file's used pages; the WAL is extra and
    /// bounded separately). Over it, the oldest rows go first, history or audit, whichever is
    /// older. `None`: no cap.
    pub max_bytes: Option<u64>,
    /// Records the writer's queue holds before new ones are dropped (and counted).
    pub queue_capacity: usize,
    /// How often the writer prunes on its own; the first pass comes this long after start,
    /// or one minute, whichever is sooner.
    pub prune_interval: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            history_retain_days: 30,
            audit_retain_days: 0,
            max_bytes: None,
            queue_capacity: 10_000,
            prune_interval: Duration::from_secs(3600),
        }
    }
}

/// Sizes and counts, for status screens and capacity planning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct StoreStats {
    pub schema_version: i64,
    pub history_rows: u64,
    pub audit_rows: u64,
    /// Bytes in use in the main database file (free pages excluded).
    pub used_bytes: u64,
}

/// An open store: reads, verification, export, and the way to start its writer.
///
/// `Send + Sync`: share it behind an `Arc`. Reads on it are serialised on one connection;
/// export and verification each use a connection of their own, so a long export does not hold
/// up the history window.
pub struct Store {
    path: PathBuf,
    options: StoreOptions,
    reader: Mutex<Connection>,
    /// The writer this store started, whose queued history a read commits first.
    writer: Mutex<writer::WriterLink>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the store at `path`, creating the file if needed and migrating it to
    /// [`SCHEMA_VERSION`].
    ///
    /// A file that is not SQLite, someone else's database, or one written by a newer build is
    /// refused with a [`StoreError`] that says so, and left untouched.
    pub fn open(path: impl AsRef<Path>, options: StoreOptions) -> Result<Store, StoreError> {
        let path = path.as_ref().to_path_buf();
        let mut conn = schema::connect(&path)?;
        schema::check_integrity(&conn, &path)?;
        schema::migrate(&mut conn, &path)?;
        // Answered changes a killed writer left outside the database come in first; while a
        // writer runs they are its own. A failure leaves them for the next writer.
        if let Err(e) = journal::recover(&path, &mut conn) {
            tracing::warn!(error = %e, "history: the answered changes left pending stay pending");
        }
        // This connection only ever reads; make a slip fail loudly instead of racing the writer.
        conn.pragma_update(None, "query_only", true)?;
        Ok(Store {
            path,
            options,
            reader: Mutex::new(conn),
            writer: Mutex::default(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Starts the writer thread (one per process is the intent; each has its own queue).
    pub fn writer(&self) -> Result<StoreWriter, StoreError> {
        let mut conn = schema::connect(&self.path)?;
        // Without its pending file (another writer holds it, or it cannot be written) the
        // writer still works: an answered change then waits for its commit instead.
        let journal = match journal::Journal::open(&self.path, &mut conn) {
            Ok(Some(journal)) => Some(journal),
            Ok(None) => {
                tracing::warn!(
                    "another writer holds {}; answered changes wait for the database",
                    journal::path_of(&self.path).display()
                );
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "history: no pending file; answered changes wait for the database");
                None
            }
        };
        let o = &self.options;
        let writer = StoreWriter::start(
            conn,
            writer::Config {
                capacity: o.queue_capacity,
                policy: retention::Policy {
                    history_retain_days: o.history_retain_days,
                    audit_retain_days: o.audit_retain_days,
                    max_bytes: o.max_bytes,
                },
                prune_interval: o.prune_interval,
                journal,
            },
        )?;
        *self.writer.lock().unwrap_or_else(PoisonError::into_inner) = writer.link();
        Ok(writer)
    }

    /// Commits the history the writer holds queued (see [`writer::WriterLink`]).
    fn settle_history(&self) {
        self.writer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .settle_history();
    }

    /// History entries matching `query`, newest first.
    pub fn history(&self, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
        self.settle_history();
        Ok(history::query(&self.reader(), query)?)
    }

    /// One history entry by row id (to reopen it).
    pub fn history_entry(&self, id: i64) -> Result<Option<HistoryEntry>, StoreError> {
        self.settle_history();
        Ok(history::get(&self.reader(), id)?)
    }

    /// Audit rows matching `query`, newest first.
    pub fn audit(&self, query: &AuditQuery) -> Result<Vec<AuditEntry>, StoreError> {
        Ok(audit::query(&self.reader(), query)?)
    }

    /// Writes the whole audit trail, oldest first, from one consistent snapshot. Returns the
    /// number of rows written.
    pub fn export_audit(
        &self,
        format: AuditFormat,
        mut out: impl Write,
    ) -> Result<u64, StoreError> {
        let conn = self.side_connection()?;
        audit::export(&conn, format, &mut out)
    }

    /// Walks the audit hash chain from the checkpoint (or the start) to the last row.
    pub fn verify_audit(&self) -> Result<VerifyReport, StoreError> {
        let conn = self.side_connection()?;
        Ok(audit::verify(&conn)?)
    }

    pub fn stats(&self) -> Result<StoreStats, StoreError> {
        self.settle_history();
        let conn = self.reader();
        let count = |table: &str| -> rusqlite::Result<u64> {
            conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| {
                r.get::<_, i64>(0)
            })
            .map(|n| n.max(0) as u64)
        };
        Ok(StoreStats {
            schema_version: schema::version(&conn)?,
            history_rows: count("history")?,
            audit_rows: count("audit")?,
            used_bytes: retention::used_bytes(&conn)?,
        })
    }

    fn reader(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a rusqlite connection half-changed.
        self.reader.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn side_connection(&self) -> Result<Connection, StoreError> {
        let conn = schema::connect(&self.path)?;
        conn.pragma_update(None, "query_only", true)?;
        Ok(conn)
    }
}
