//! Migrations: every earlier file opens and is brought up to date; bad files are refused.

mod common;

use common::{accession, db_path, record, study_uid};
use lockstep_store::{
    AuditKind, AuditRecord, HistoryQuery, SCHEMA_VERSION, Store, StoreError, StoreOptions,
};
use rusqlite::Connection;
use sha2::{Digest, Sha256};
use std::fs;
use tempfile::TempDir;

/// The version 1 schema exactly as it shipped. Frozen here on purpose: if the migration code
/// changes what "version 1" means, this test still builds the file users actually have.
const V1_SCHEMA: &str = r#"
CREATE TABLE history (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, at TEXT NOT NULL, topic TEXT NOT NULL,
    event TEXT NOT NULL, event_id TEXT NOT NULL, app TEXT NOT NULL, patient_name TEXT,
    patient_birth_date TEXT, patient_sex TEXT, patient_mrn TEXT, patient_mrn_issuer TEXT,
    study_accession TEXT, study_uid TEXT, study_modality TEXT, study_description TEXT,
    report_status TEXT, search TEXT NOT NULL
);
CREATE INDEX history_at ON history(at_ms);
CREATE INDEX history_patient ON history(patient_mrn);
CREATE INDEX history_accession ON history(study_accession);
CREATE TABLE history_event (history_id INTEGER PRIMARY KEY, json TEXT NOT NULL);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY, at_ms INTEGER NOT NULL, at TEXT NOT NULL, kind TEXT NOT NULL,
    actor TEXT NOT NULL, topic TEXT, subject TEXT, detail TEXT NOT NULL, hash BLOB NOT NULL
);
CREATE INDEX audit_at ON audit(at_ms);
CREATE TABLE audit_checkpoint (
    only INTEGER PRIMARY KEY CHECK (only = 1), last_id INTEGER NOT NULL,
    last_hash BLOB NOT NULL, at_ms INTEGER NOT NULL
);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit trail is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
WHEN old.id > coalesce((SELECT last_id FROM audit_checkpoint), 0)
BEGIN SELECT RAISE(ABORT, 'audit rows are removed only by pruning, behind the checkpoint'); END;
CREATE TRIGGER audit_checkpoint_forward BEFORE UPDATE ON audit_checkpoint
WHEN new.last_id < old.last_id
BEGIN SELECT RAISE(ABORT, 'the audit checkpoint only moves forward'); END;
PRAGMA application_id = 1280004944;
PRAGMA user_version = 1;
"#;

fn open(dir: &TempDir) -> Result<Store, StoreError> {
    Store::open(db_path(dir), StoreOptions::default())
}

fn pragma(conn: &Connection, name: &str) -> String {
    conn.query_row(&format!("PRAGMA {name}"), [], |r| {
        r.get::<_, rusqlite::types::Value>(0)
    })
    .map(|v| match v {
        rusqlite::types::Value::Integer(i) => i.to_string(),
        rusqlite::types::Value::Text(t) => t,
        other => format!("{other:?}"),
    })
    .unwrap()
}

fn objects(conn: &Connection) -> Vec<String> {
    let mut stmt = conn
        .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
        .unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

fn assert_latest(dir: &TempDir) {
    let conn = Connection::open(db_path(dir)).unwrap();
    assert_eq!(pragma(&conn, "user_version"), SCHEMA_VERSION.to_string());
    assert_eq!(pragma(&conn, "application_id"), "1280004944");
    assert_eq!(pragma(&conn, "journal_mode"), "wal");
    assert!(objects(&conn).contains(&"history_study_uid".to_owned()));
}

/// The chain hash as the audit module documents it, written out independently.
fn chain_hash(prev: &[u8], id: i64, at_ms: i64, fields: [Option<&str>; 6]) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(id.to_be_bytes());
    h.update(at_ms.to_be_bytes());
    for field in fields {
        match field {
            Some(s) => {
                h.update((s.len() as u64).to_be_bytes());
                h.update(s.as_bytes());
            }
            None => h.update(u64::MAX.to_be_bytes()),
        }
    }
    h.finalize().to_vec()
}

/// A file as version 1 wrote it: three history entries and a three-row audit chain.
fn write_v1_file(dir: &TempDir) {
    let conn = Connection::open(db_path(dir)).unwrap();
    conn.execute_batch("PRAGMA journal_mode = WAL;").unwrap();
    conn.execute_batch(V1_SCHEMA).unwrap();
    for i in 0..3usize {
        let r = record(i);
        let s = r.summary.clone().unwrap();
        let search = format!(
            "{}\n{}",
            s.patient_name.as_deref().unwrap().to_lowercase(),
            accession(i).to_lowercase()
        );
        conn.execute(
            "INSERT INTO history (at_ms, at, topic, event, event_id, app, patient_name, \
             patient_mrn, study_accession, study_uid, search) \
             VALUES (?1, '2025-01-01T00:00:00.000Z', ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            rusqlite::params![
                1_735_689_600_000i64 + i as i64,
                r.topic,
                r.event,
                r.event_id,
                r.app,
                s.patient_name,
                s.patient_mrn,
                s.study_accession,
                s.study_uid,
                search,
            ],
        )
        .unwrap();
        conn.execute(
            "INSERT INTO history_event (history_id, json) VALUES (last_insert_rowid(), ?1)",
            [&r.event_json],
        )
        .unwrap();
    }
    let mut prev = vec![0u8; 32];
    for id in 1..=3i64 {
        let at = "2025-01-01T00:00:00.000Z";
        let subject = format!("evt-{id}");
        let hash = chain_hash(
            &prev,
            id,
            1_735_689_600_000,
            [
                Some(at),
                Some("delivery.acknowledged"),
                Some("PACS"),
                Some("DrXRay"),
                Some(&subject),
                Some("200"),
            ],
        );
        conn.execute(
            "INSERT INTO audit (id, at_ms, at, kind, actor, topic, subject, detail, hash) \
             VALUES (?1, 1735689600000, ?2, 'delivery.acknowledged', 'PACS', 'DrXRay', ?3, '200', ?4)",
            rusqlite::params![id, at, subject, hash],
        )
        .unwrap();
        prev = hash;
    }
}

#[test]
fn a_new_file_is_created_at_the_latest_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).unwrap();
    assert_eq!(store.stats().unwrap().schema_version, SCHEMA_VERSION);
    drop(store);
    assert_latest(&dir);
    let conn = Connection::open(db_path(&dir)).unwrap();
    assert_eq!(
        pragma(&conn, "auto_vacuum"),
        "2",
        "incremental, so pruning can shrink the file"
    );
    for table in ["history", "history_event", "audit", "audit_checkpoint"] {
        assert!(objects(&conn).contains(&table.to_owned()), "{table}");
    }
}

#[test]
fn an_empty_file_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(db_path(&dir), b"").unwrap();
    open(&dir).unwrap();
    assert_latest(&dir);
}

#[test]
fn a_version_0_database_is_initialised() {
    let dir = tempfile::tempdir().unwrap();
    let conn = Connection::open(db_path(&dir)).unwrap();
    // A real SQLite file with pages but no tables, in the default rollback-journal mode.
    conn.execute_batch("CREATE TABLE scratch (x); DROP TABLE scratch;")
        .unwrap();
    assert_eq!(pragma(&conn, "user_version"), "0");
    assert_ne!(pragma(&conn, "page_count"), "0");
    drop(conn);
    open(&dir).unwrap();
    assert_latest(&dir);
}

#[test]
fn a_version_1_file_migrates_and_keeps_its_rows_and_chain() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_file(&dir);
    let store = open(&dir).unwrap();
    assert_latest(&dir);

    let entries = store.history(&HistoryQuery::default()).unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[0].event_json, record(2).event_json);
    let by_uid = store
        .history(&HistoryQuery {
            study_uid: Some(study_uid(1)),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(by_uid.len(), 1, "the v2 index serves the new filter");
    assert_eq!(by_uid[0].event_id, "evt-1");

    let report = store.verify_audit().unwrap();
    assert!(
        report.is_intact(),
        "a v1 chain verifies after migration: {report:?}"
    );
    assert_eq!(report.rows_checked, 3);

    let writer = store.writer().unwrap();
    assert!(writer.record_audit(AuditRecord::new(AuditKind::ConfigChanged, "user", "x")));
    assert!(writer.record_history(record(3)));
    writer.shutdown().unwrap();
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact());
    assert_eq!(report.rows_checked, 4);
    assert_eq!(store.history(&HistoryQuery::default()).unwrap().len(), 4);
}

#[test]
fn a_failed_step_leaves_the_file_at_the_last_complete_version() {
    let dir = tempfile::tempdir().unwrap();
    write_v1_file(&dir);
    // Something squatting on the name version 2 needs makes that step fail.
    Connection::open(db_path(&dir))
        .unwrap()
        .execute_batch("CREATE TABLE history_study_uid (x);")
        .unwrap();
    let err = open(&dir).expect_err("the step must fail");
    assert!(
        matches!(err, StoreError::Migrate { version: 2, .. }),
        "{err}"
    );
    let conn = Connection::open(db_path(&dir)).unwrap();
    assert_eq!(pragma(&conn, "user_version"), "1");
    assert_eq!(
        conn.query_row("SELECT count(*) FROM history", [], |r| r.get::<_, i64>(0))
            .unwrap(),
        3
    );
}

#[test]
fn reopening_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir).unwrap();
    let writer = store.writer().unwrap();
    assert!(writer.record_history(record(1)));
    writer.shutdown().unwrap();
    drop(store);
    let store = open(&dir).unwrap();
    assert_eq!(store.stats().unwrap().history_rows, 1);
    assert_latest(&dir);
}

#[test]
fn a_file_from_a_newer_build_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    open(&dir).unwrap();
    Connection::open(db_path(&dir))
        .unwrap()
        .execute_batch("PRAGMA user_version = 99;")
        .unwrap();
    let before = fs::read(db_path(&dir)).unwrap();
    let err = open(&dir).expect_err("must refuse");
    assert!(
        matches!(err, StoreError::TooNew { found: 99, supported, .. } if supported == SCHEMA_VERSION),
        "{err}"
    );
    assert!(err.to_string().contains("newer than this build"));
    assert_eq!(fs::read(db_path(&dir)).unwrap(), before);
}

#[test]
fn a_file_that_is_not_sqlite_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let junk = b"these are not the pages you are looking for ".repeat(200);
    fs::write(db_path(&dir), &junk).unwrap();
    let err = open(&dir).expect_err("must refuse");
    assert!(matches!(err, StoreError::NotADatabase { .. }), "{err}");
    assert!(err.to_string().contains("not an SQLite database"), "{err}");
    assert_eq!(fs::read(db_path(&dir)).unwrap(), junk);
}

#[test]
fn someone_elses_database_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    Connection::open(db_path(&dir))
        .unwrap()
        .execute_batch("CREATE TABLE invoices (id INTEGER PRIMARY KEY);")
        .unwrap();
    let err = open(&dir).expect_err("must refuse");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");

    let other = tempfile::tempdir().unwrap();
    Connection::open(db_path(&other))
        .unwrap()
        .execute_batch("PRAGMA application_id = 42;")
        .unwrap();
    let err = open(&other).expect_err("must refuse");
    assert!(matches!(err, StoreError::NotAStore { .. }), "{err}");
}

#[test]
fn a_path_that_cannot_be_a_file_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let err =
        Store::open(dir.path(), StoreOptions::default()).expect_err("a directory is not a store");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
    assert!(err.to_string().contains(&dir.path().display().to_string()));

    let missing = dir.path().join("no/such/folder/lockstep.db");
    let err = Store::open(&missing, StoreOptions::default())
        .expect_err("a missing folder is not created");
    assert!(matches!(err, StoreError::Open { .. }), "{err}");
}

#[test]
fn a_damaged_store_gives_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir).unwrap();
        let writer = store.writer().unwrap();
        for i in 0..200 {
            assert!(writer.record_history(record(i)));
            assert!(writer.record_audit(AuditRecord::new(AuditKind::SyncError, "hub", "x")));
        }
        writer.shutdown().unwrap();
    }
    // Keep the header (page 1) and scribble over every later page.
    let mut bytes = fs::read(db_path(&dir)).unwrap();
    assert!(bytes.len() > 3 * 4096);
    for (i, b) in bytes.iter_mut().enumerate().skip(4096) {
        *b = (i * 31 % 251) as u8;
    }
    fs::write(db_path(&dir), &bytes).unwrap();

    let outcome = open(&dir).and_then(|store| {
        store.history(&HistoryQuery::default())?;
        store.verify_audit()
    });
    let err = outcome.expect_err("damage must surface as an error");
    let text = err.to_string();
    assert!(
        text.contains("malformed") || text.contains("corrupt"),
        "{text}"
    );
}
