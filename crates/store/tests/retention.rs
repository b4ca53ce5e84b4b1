//! Retention: pruning by age and by size, keeping the audit chain verifiable.

mod common;

use common::{open, record};
use lockstep_store::{
    AuditKind, AuditQuery, AuditRecord, ChainBreak, HistoryQuery, Store, StoreOptions,
};
use rusqlite::Connection;
use std::time::{Duration, Instant};
use tempfile::TempDir;
use time::OffsetDateTime;

fn keep_forever() -> StoreOptions {
    StoreOptions {
        history_retain_days: 0,
        audit_retain_days: 0,
        max_bytes: None,
        ..Default::default()
    }
}

fn days_ago(days: f64) -> OffsetDateTime {
    OffsetDateTime::now_utc() - time::Duration::seconds_f64(days * 86_400.0)
}

fn audit_at(i: usize, at: OffsetDateTime) -> AuditRecord {
    AuditRecord::new(AuditKind::DeliveryAcknowledged, "PACS", "200")
        .subject(format!("evt-{i}"))
        .at(at)
}

/// Writes records with the given ages (in days) through a store that keeps everything.
fn seed(dir: &TempDir, history_ages: &[f64], audit_ages: &[f64]) {
    let store = open(dir, keep_forever());
    let writer = store.writer().unwrap();
    for (i, age) in history_ages.iter().enumerate() {
        assert!(writer.record_history(record(i).at(days_ago(*age))));
    }
    for (i, age) in audit_ages.iter().enumerate() {
        assert!(writer.record_audit(audit_at(i, days_ago(*age))));
    }
    writer.shutdown().unwrap();
}

fn event_ids(store: &Store) -> Vec<String> {
    store
        .history(&HistoryQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.event_id)
        .collect()
}

fn audit_ids(store: &Store) -> Vec<i64> {
    let mut ids: Vec<i64> = store
        .audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .filter(|e| e.kind() == Some(AuditKind::DeliveryAcknowledged))
        .map(|e| e.id)
        .collect();
    ids.sort();
    ids
}

#[test]
fn history_older_than_its_retention_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[40.0, 31.0, 29.0, 1.0, 0.0], &[]);
    let store = open(
        &dir,
        StoreOptions {
            history_retain_days: 30,
            ..keep_forever()
        },
    );
    let writer = store.writer().unwrap();
    let report = writer.prune_now().unwrap();
    assert_eq!(report.history_removed, 2);
    assert_eq!(report.audit_removed, 0);
    assert!(!report.size_capped);
    assert_eq!(event_ids(&store), ["evt-4", "evt-3", "evt-2"]);
    // The event JSON went with its row.
    let conn = Connection::open(store.path()).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT count(*) FROM history_event WHERE history_id NOT IN (SELECT id FROM history)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0);
    // Pruning is itself on the record.
    let pruned = store
        .audit(&AuditQuery {
            kind: Some(AuditKind::StorePruned),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(pruned.len(), 1);
    assert_eq!(
        pruned[0].detail,
        "retention removed 2 history and 0 audit rows (history kept 30 days)"
    );
}

#[test]
fn zero_days_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[3650.0, 400.0], &[3650.0, 400.0]);
    let store = open(&dir, keep_forever());
    let writer = store.writer().unwrap();
    assert!(writer.prune_now().unwrap().is_empty());
    writer.flush_blocking().unwrap();
    let stats = store.stats().unwrap();
    assert_eq!((stats.history_rows, stats.audit_rows), (2, 2));
}

#[test]
fn pruned_audit_rows_leave_a_checkpoint_the_chain_verifies_from() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[], &[100.0, 100.0, 100.0, 95.0, 5.0, 1.0]);
    let store = open(
        &dir,
        StoreOptions {
            audit_retain_days: 90,
            ..keep_forever()
        },
    );
    let writer = store.writer().unwrap();
    assert_eq!(writer.prune_now().unwrap().audit_removed, 4);
    assert_eq!(audit_ids(&store), [5, 6]);
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checkpoint_id, Some(4));
    assert_eq!(
        report.rows_checked, 3,
        "rows 5 and 6, and the prune's own row 7"
    );

    // The chain goes on from there.
    assert!(writer.record_audit(audit_at(9, OffsetDateTime::now_utc())));
    writer.flush_blocking().unwrap();
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact());
    assert_eq!(report.last_id, Some(8));
}

#[test]
fn only_a_prefix_of_the_chain_is_ever_pruned() {
    // A clock that jumped back leaves an old row after a young one; it stays until the young
    // one ages out, so what remains is still one unbroken chain.
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[], &[100.0, 100.0, 1.0, 100.0, 1.0]);
    let store = open(
        &dir,
        StoreOptions {
            audit_retain_days: 90,
            ..keep_forever()
        },
    );
    let writer = store.writer().unwrap();
    assert_eq!(writer.prune_now().unwrap().audit_removed, 2);
    assert_eq!(audit_ids(&store), [3, 4, 5]);
    assert!(store.verify_audit().unwrap().is_intact());
}

#[test]
fn tampering_after_a_prune_still_shows() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[], &[100.0, 100.0, 100.0, 1.0, 1.0, 1.0]);
    let store = open(
        &dir,
        StoreOptions {
            audit_retain_days: 90,
            ..keep_forever()
        },
    );
    store.writer().unwrap().prune_now().unwrap();
    let conn = Connection::open(store.path()).unwrap();
    // The guard lets nothing past the checkpoint go...
    assert!(conn.execute("DELETE FROM audit WHERE id = 4", []).is_err());
    // ...and moving the checkpoint back is refused too.
    assert!(
        conn.execute("UPDATE audit_checkpoint SET last_id = 1", [])
            .is_err()
    );

    // Someone who drops the guards and removes the first kept row is caught.
    conn.execute_batch("DROP TRIGGER audit_no_delete;").unwrap();
    conn.execute("DELETE FROM audit WHERE id = 4", []).unwrap();
    let broken = store.verify_audit().unwrap().broken.unwrap();
    assert_eq!(broken.id, 4);
    assert_eq!(broken.reason, ChainBreak::OutOfSequence { found: 5 });

    // So is someone who removes the checkpoint to hide that rows were pruned.
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[], &[100.0, 1.0, 1.0]);
    let store = open(
        &dir,
        StoreOptions {
            audit_retain_days: 90,
            ..keep_forever()
        },
    );
    store.writer().unwrap().prune_now().unwrap();
    Connection::open(store.path())
        .unwrap()
        .execute("DELETE FROM audit_checkpoint", [])
        .unwrap();
    let broken = store.verify_audit().unwrap().broken.unwrap();
    assert_eq!(broken.id, 1);
    assert_eq!(broken.reason, ChainBreak::OutOfSequence { found: 2 });
}

#[test]
fn the_size_cap_removes_the_oldest_rows_first_whichever_table() {
    let dir = tempfile::tempdir().unwrap();
    // Audit older than every history entry: it goes first.
    let history_ages: Vec<f64> = (0..3000).map(|i| 2.0 - i as f64 / 3000.0).collect();
    seed(&dir, &history_ages, &[3.0; 100]);
    let cap = 1024 * 1024;
    let store = open(
        &dir,
        StoreOptions {
            max_bytes: Some(cap),
            ..keep_forever()
        },
    );
    let before = store.stats().unwrap();
    assert!(before.used_bytes > 4 * cap, "{before:?}");
    let writer = store.writer().unwrap();
    let report = writer.prune_now().unwrap();
    writer.flush_blocking().unwrap();
    assert!(report.size_capped);
    assert_eq!(report.audit_removed, 100);
    assert!(report.history_removed > 2000, "{report:?}");
    let after = store.stats().unwrap();
    assert!(after.used_bytes <= cap, "{after:?}");
    // The newest entries stayed.
    assert_eq!(event_ids(&store)[0], "evt-2999");
    assert_eq!(
        after.history_rows,
        3000 - report.history_removed,
        "{report:?}"
    );
    assert!(store.verify_audit().unwrap().is_intact());
    // Freed pages went back to the file system (auto_vacuum = INCREMENTAL).
    let conn = Connection::open(store.path()).unwrap();
    conn.execute_batch("PRAGMA wal_checkpoint(TRUNCATE)")
        .unwrap();
    let file = std::fs::metadata(store.path()).unwrap().len();
    assert!(file < 2 * cap, "file is {file} bytes");
}

#[test]
fn the_size_cap_keeps_audit_that_is_newer_than_history() {
    let dir = tempfile::tempdir().unwrap();
    let history_ages: Vec<f64> = (0..2000).map(|i| 10.0 - i as f64 / 1000.0).collect();
    seed(&dir, &history_ages, &[0.5; 50]);
    let store = open(
        &dir,
        StoreOptions {
            max_bytes: Some(1024 * 1024),
            ..keep_forever()
        },
    );
    let report = store.writer().unwrap().prune_now().unwrap();
    assert!(report.history_removed > 0);
    assert_eq!(report.audit_removed, 0);
    assert_eq!(audit_ids(&store).len(), 50);
}

#[test]
fn the_writer_prunes_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[10.0, 10.0, 0.0], &[]);
    let store = open(
        &dir,
        StoreOptions {
            history_retain_days: 7,
            prune_interval: Duration::from_millis(50),
            ..keep_forever()
        },
    );
    let _writer = store.writer().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().unwrap().history_rows > 1 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(event_ids(&store), ["evt-2"]);
}

#[test]
fn records_written_during_a_long_prune_all_land() {
    let dir = tempfile::tempdir().unwrap();
    seed(&dir, &[40.0; 6000], &[40.0; 3000]);
    let store = open(
        &dir,
        StoreOptions {
            history_retain_days: 30,
            audit_retain_days: 30,
            ..keep_forever()
        },
    );
    let writer = store.writer().unwrap();
    let report = std::thread::scope(|scope| {
        let pruning = scope.spawn(|| writer.prune_now());
        for i in 0..2000 {
            assert!(writer.record_history(record(10_000 + i)));
            assert!(writer.record_audit(audit_at(i, OffsetDateTime::now_utc())));
            if i % 100 == 0 {
                writer.flush_blocking().unwrap();
            }
        }
        pruning.join().unwrap().unwrap()
    });
    writer.flush_blocking().unwrap();
    assert_eq!(report.history_removed, 6000);
    assert_eq!(report.audit_removed, 3000);
    let stats = store.stats().unwrap();
    assert_eq!(stats.history_rows, 2000);
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    assert_eq!(report.checkpoint_id, Some(3000));
}
