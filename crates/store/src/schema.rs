//! Opening a connection the one way the store needs it, and schema migrations on `user_version`.
//!
//! A migration is one step in [`MIGRATIONS`]; step N brings a file from version N-1 to N, each
//! in its own transaction together with the `user_version` bump, so a crash mid-upgrade leaves
//! the file at the last complete version. Never edit a shipped step: add the next one.

use crate::error::StoreError;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use std::path::Path;
use std::time::Duration;

/// Marks the file as ours in the SQLite header (`PRAGMA application_id`): "LKSP".
pub(crate) const APPLICATION_ID: i32 = 0x4C4B_5350;

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// How long a connection waits for another one's write lock (a CLI export, the writer)
/// before giving up; long enough to ride out a prune step, short enough to surface a stuck lock.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Step `i` brings the file from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1_INITIAL, V2_STUDY_UID_INDEX, V3_PENDING_WATERMARK];

const V1_INITIAL: &str = r#"
-- Searchable columns only; the event JSON lives in history_event so that scans and index
-- lookups over history touch small rows.
CREATE TABLE history (
    id                 INTEGER PRIMARY KEY,
    at_ms              INTEGER NOT NULL,
    at                 TEXT NOT NULL,
    topic              TEXT NOT NULL,
    event              TEXT NOT NULL,
    event_id           TEXT NOT NULL,
    app                TEXT NOT NULL,
    patient_name       TEXT,
    patient_birth_date TEXT,
    patient_sex        TEXT,
    patient_mrn        TEXT,
    patient_mrn_issuer TEXT,
    study_accession    TEXT,
    study_uid          TEXT,
    study_modality     TEXT,
    study_description  TEXT,
    report_status      TEXT,
    -- lower-cased name, identifiers and description, for free-text search
    search             TEXT NOT NULL
);
CREATE INDEX history_at ON history(at_ms);
CREATE INDEX history_patient ON history(patient_mrn);
CREATE INDEX history_accession ON history(study_accession);

CREATE TABLE history_event (
    history_id INTEGER PRIMARY KEY,
    json       TEXT NOT NULL
);

-- id is the row's place in the hash chain, assigned by the writer (never reused).
CREATE TABLE audit (
    id      INTEGER PRIMARY KEY,
    at_ms   INTEGER NOT NULL,
    at      TEXT NOT NULL,
    kind    TEXT NOT NULL,
    actor   TEXT NOT NULL,
    topic   TEXT,
    subject TEXT,
    detail  TEXT NOT NULL,
    hash    BLOB NOT NULL
);
CREATE INDEX audit_at ON audit(at_ms);

-- The last pruned audit row: verification starts from its hash.
CREATE TABLE audit_checkpoint (
    only      INTEGER PRIMARY KEY CHECK (only = 1),
    last_id   INTEGER NOT NULL,
    last_hash BLOB NOT NULL,
    at_ms     INTEGER NOT NULL
);

-- Guard rails against accidents (an admin in a SQL shell); deliberate tampering that drops
-- them is still caught by the hash chain.
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'the audit trail is append-only');
END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN old.id > coalesce((SELECT last_id FROM audit_checkpoint), 0)
BEGIN
    SELECT RAISE(ABORT, 'audit rows are removed only by pruning, behind the checkpoint');
END;
CREATE TRIGGER audit_checkpoint_forward BEFORE UPDATE ON audit_checkpoint
WHEN new.last_id < old.last_id
BEGIN
    SELECT RAISE(ABORT, 'the audit checkpoint only moves forward');
END;
"#;

/// Viewers reopen by study instance UID more often than by accession.
const V2_STUDY_UID_INDEX: &str = r#"
CREATE INDEX history_study_uid ON history(study_uid);
"#;

/// The last line of the pending file (see `crate::journal`) whose record is in the database,
/// moved in the same transaction as the rows: what a replay after a kill must skip.
const V3_PENDING_WATERMARK: &str = r#"
CREATE TABLE pending_watermark (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT INTO pending_watermark (id, seq) VALUES (1, 0);
"#;

/// The WAL's size once reset after a checkpoint, and the size past which the writer folds it
/// into the database (SQLite's own default is 1,000 pages): a checkpoint copies pages and
/// syncs the database, so it runs rarely.
pub(crate) const WAL_LIMIT_BYTES: u64 = 4 * 1024 * 1024;

/// Opens (creating if needed) a connection with the store's pragmas.
///
/// WAL lets the tray read while the writer commits. `synchronous = NORMAL`: a commit is in the
/// operating system's hands at once, so it survives Lockstep crashing or being killed, and the
/// writer syncs the WAL to the disk within [`crate::SYNC_WITHIN`] of a commit, off the
/// path of anyone waiting (see the writer). `FULL` would put an fsync inside every commit, and
/// so in front of every answered context change.
pub(crate) fn connect(path: &Path) -> Result<Connection, StoreError> {
    let flags = OpenFlags::SQLITE_OPEN_READ_WRITE
        | OpenFlags::SQLITE_OPEN_CREATE
        | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let conn =
        Connection::open_with_flags(path, flags).map_err(|e| StoreError::on_open(path, e))?;
    configure(&conn).map_err(|e| StoreError::on_open(path, e))?;
    Ok(conn)
}

fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // The first statement that reads the header: a non-SQLite file fails here, untouched.
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    if pages == 0 {
        // Only possible on a brand-new file (before WAL writes the first page): lets pruning
        // hand freed pages back to the disk.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")?;
    }
    let mode: String = conn.query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        tracing::warn!(
            mode,
            "the store could not switch to WAL; writes will block readers"
        );
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    // Keeps the -wal file from staying at its high-water mark after a burst: the writer
    // checkpoints once it grows past this size (see the writer).
    conn.pragma_update(None, "journal_size_limit", WAL_LIMIT_BYTES as i64)?;
    Ok(())
}

/// Refuses a file with damaged pages, which SQLite would otherwise open and read around
/// (rows silently missing from history). `quick_check` reads every page but skips the index
/// cross-checks of `integrity_check`: see `docs/performance.md` for what it costs at start.
pub(crate) fn check_integrity(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    let damaged = |detail: String| StoreError::Damaged {
        path: path.to_path_buf(),
        detail,
    };
    let mut statement = conn
        .prepare("PRAGMA quick_check(3)")
        .map_err(|e| StoreError::on_open(path, e))?;
    let found: Vec<String> = statement
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .map_err(|e| match StoreError::on_open(path, e) {
            StoreError::Corrupt { source, .. } => damaged(source.to_string()),
            other => other,
        })?;
    match found.as_slice() {
        [ok] if ok == "ok" => Ok(()),
        problems => Err(damaged(
            problems
                .iter()
                .flat_map(|p| p.lines())
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with("***"))
                .collect::<Vec<_>>()
                .join("; "),
        )),
    }
}

/// Brings the file to [`SCHEMA_VERSION`], refusing files that are not ours or are too new.
pub(crate) fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let on_open = |e| StoreError::on_open(path, e);
    let found: i64 = conn
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(on_open)?;
    let app_id: i32 = conn
        .pragma_query_value(None, "application_id", |r| r.get(0))
        .map_err(on_open)?;
    if app_id != 0 && app_id != APPLICATION_ID {
        return Err(StoreError::NotAStore {
            path: path.to_path_buf(),
        });
    }
    if found > SCHEMA_VERSION {
        return Err(StoreError::TooNew {
            path: path.to_path_buf(),
            found,
            supported: SCHEMA_VERSION,
        });
    }
    if found == 0 {
        let tables: i64 = conn
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .map_err(on_open)?;
        if tables > 0 {
            // Someone else's database: adding our tables to it would be a surprise to both.
            return Err(StoreError::NotAStore {
                path: path.to_path_buf(),
            });
        }
    }
    for (index, sql) in MIGRATIONS.iter().enumerate() {
        let version = index as i64 + 1;
        if version <= found {
            continue;
        }
        let failed = |source| StoreError::Migrate {
            path: path.to_path_buf(),
            version,
            source,
        };
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(failed)?;
        // Another process may have migrated while we waited for the lock.
        let current: i64 = tx
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(failed)?;
        if current >= version {
            continue;
        }
        tx.execute_batch(sql).map_err(failed)?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(failed)?;
        tx.pragma_update(None, "user_version", version)
            .map_err(failed)?;
        tx.commit().map_err(failed)?;
        tracing::info!(version, "store schema migrated");
    }
    Ok(())
}

/// The schema version recorded in the file.
pub(crate) fn version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}
