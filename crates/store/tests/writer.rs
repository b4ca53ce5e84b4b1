//! The writer: non-blocking recording, batching, overflow accounting, flush and shutdown.

mod common;

use common::{db_path, fresh, open, record};
use lockstep_store::{
    AuditKind, AuditQuery, AuditRecord, HistoryQuery, Store, StoreError, StoreOptions,
};
use rusqlite::Connection;
use std::time::{Duration, Instant};

fn options(queue_capacity: usize) -> StoreOptions {
    StoreOptions {
        queue_capacity,
        ..Default::default()
    }
}

fn history_count(store: &Store) -> u64 {
    store.stats().unwrap().history_rows
}

fn audit_of(store: &Store, kind: AuditKind) -> Vec<lockstep_store::AuditEntry> {
    store
        .audit(&AuditQuery {
            kind: Some(kind),
            limit: 1000,
            ..Default::default()
        })
        .unwrap()
}

/// Holds the database's write lock, as a slow disk or another process would, until dropped.
struct WriteLock(Connection);

impl WriteLock {
    fn take(store: &Store) -> WriteLock {
        let conn = Connection::open(store.path()).unwrap();
        conn.execute_batch("BEGIN IMMEDIATE").unwrap();
        WriteLock(conn)
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        let _ = self.0.execute_batch("ROLLBACK");
    }
}

#[test]
fn flushed_records_are_committed() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    assert!(writer.record_history(record(1)));
    assert!(writer.record_audit(AuditRecord::new(AuditKind::TokenIssued, "ris", "")));
    writer.flush_blocking().unwrap();
    assert_eq!(history_count(&store), 1);
    assert_eq!(store.stats().unwrap().audit_rows, 1);
    let stats = writer.stats();
    assert_eq!((stats.accepted, stats.committed, stats.dropped), (2, 2, 0));
}

#[test]
fn commits_reach_the_disk_soon_after_and_an_idle_writer_does_not_sync() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    std::thread::sleep(lockstep_store::SYNC_WITHIN * 3);
    assert_eq!(
        writer.stats().synced,
        0,
        "nothing was committed, nothing to sync"
    );

    assert!(writer.record_history(record(1)));
    writer.flush_blocking().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while writer.stats().synced == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(writer.stats().synced, 1, "{:?}", writer.stats());
    // One sync covers every commit before it; with nothing new, no more syncs.
    std::thread::sleep(lockstep_store::SYNC_WITHIN * 3);
    assert_eq!(writer.stats().synced, 1);
}

#[tokio::test]
async fn a_history_flush_commits_the_history_and_the_audit_follows() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    assert!(writer.record_audit(AuditRecord::new(AuditKind::TokenIssued, "ris", "")));
    assert!(writer.record_history(record(1)));
    writer.flush_history().await.unwrap();
    assert_eq!(history_count(&store), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while store.stats().unwrap().audit_rows == 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.stats().unwrap().audit_rows, 1);
    assert_eq!(writer.stats().committed, 2);
}

#[test]
fn records_no_one_waits_for_are_committed_on_their_own() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    for i in 0..20 {
        assert!(writer.record_history(record(i)));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while history_count(&store) < 20 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(history_count(&store), 20);
    assert_eq!(writer.stats().committed, 20);
}

#[test]
fn queued_records_are_committed_in_few_transactions() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    let records: Vec<_> = (0..3000).map(record).collect();
    {
        // With the writer held up, everything below queues behind the first record.
        let _lock = WriteLock::take(&store);
        for r in records {
            assert!(writer.record_history(r));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    writer.flush_blocking().unwrap();
    let stats = writer.stats();
    assert_eq!(stats.committed, 3000);
    // One for the record the writer held while blocked, then batches of up to 250 (one
    // transaction per record would be 3,000).
    assert!(stats.batches <= 14, "{stats:?}");
    assert_eq!(history_count(&store), 3000);
}

#[test]
fn a_full_queue_drops_without_blocking_and_the_drop_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, options(8));
    let writer = store.writer().unwrap();
    let (mut history_ok, mut audit_ok) = (0, 0);
    let records: Vec<_> = (0..100).map(record).collect();
    let elapsed = {
        let _lock = WriteLock::take(&store);
        let start = Instant::now();
        for (i, r) in records.into_iter().enumerate() {
            history_ok += usize::from(writer.record_history(r));
            if i % 5 == 0 {
                let audit = AuditRecord::new(AuditKind::DeliveryAcknowledged, "PACS", "200");
                audit_ok += usize::from(writer.record_audit(audit));
            }
        }
        start.elapsed()
    };
    // Blocking would have waited for the lock above (seconds), not microseconds.
    assert!(
        elapsed < Duration::from_secs(1),
        "recording took {elapsed:?}"
    );
    let dropped_history = 100 - history_ok;
    let dropped_audit = 20 - audit_ok;
    assert!(dropped_history > 0, "the queue of 8 must have overflowed");

    writer.flush_blocking().unwrap();
    assert_eq!(history_count(&store), history_ok as u64);
    assert_eq!(
        writer.stats().dropped,
        (dropped_history + dropped_audit) as u64
    );
    let overflow = audit_of(&store, AuditKind::StoreOverflow);
    assert_eq!(overflow.len(), 1, "one row per overflow episode");
    assert_eq!(
        overflow[0].detail,
        format!(
            "the store queue was full: {} records dropped ({dropped_history} history, \
             {dropped_audit} audit)",
            dropped_history + dropped_audit
        )
    );
    assert_eq!(overflow[0].actor, "hub");
    assert!(store.verify_audit().unwrap().is_intact());

    // Once drained, recording works again and no further overflow is reported.
    assert!(writer.record_history(record(100)));
    writer.flush_blocking().unwrap();
    assert_eq!(audit_of(&store, AuditKind::StoreOverflow).len(), 1);
}

#[test]
fn shutdown_commits_everything_queued() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir, StoreOptions::default());
        let writer = store.writer().unwrap();
        for i in 0..2000 {
            assert!(writer.record_history(record(i)));
        }
        writer.shutdown().unwrap();
    }
    let store = open(&dir, StoreOptions::default());
    assert_eq!(history_count(&store), 2000);
    // A clean stop folds the WAL back into the main file.
    let wal = db_path(&dir).with_extension("db-wal");
    assert!(std::fs::metadata(&wal).map_or(0, |m| m.len()) == 0);
}

#[test]
fn dropping_every_handle_still_drains_the_queue() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    for i in 0..500 {
        assert!(writer.record_history(record(i)));
    }
    drop(writer);
    let deadline = Instant::now() + Duration::from_secs(10);
    while history_count(&store) < 500 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(history_count(&store), 500);
}

#[test]
fn after_shutdown_records_are_refused_not_lost_silently() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    let other = writer.clone();
    writer.shutdown().unwrap();
    assert!(!other.record_history(record(1)));
    assert!(!other.record_audit(AuditRecord::new(AuditKind::TokenIssued, "a", "")));
    assert_eq!(other.stats().dropped, 2);
    assert!(matches!(
        other.flush_blocking(),
        Err(StoreError::WriterStopped)
    ));
    assert!(matches!(other.prune_now(), Err(StoreError::WriterStopped)));
    assert_eq!(history_count(&store), 0);
}

#[test]
fn records_from_many_threads_all_land_and_chain() {
    let (_dir, store) = fresh();
    let writer = store.writer().unwrap();
    std::thread::scope(|scope| {
        for t in 0..4 {
            let writer = writer.clone();
            scope.spawn(move || {
                for i in 0..1000 {
                    assert!(writer.record_history(record(t * 1000 + i)));
                    let detail = format!("thread {t} record {i}");
                    assert!(writer.record_audit(AuditRecord::new(
                        AuditKind::SyncError,
                        "hub",
                        detail
                    )));
                }
            });
        }
    });
    writer.flush_blocking().unwrap();
    assert_eq!(history_count(&store), 4000);
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact());
    assert_eq!(report.rows_checked, 4000);
}

#[test]
fn a_failed_commit_is_reported_by_flush_and_in_the_audit_trail() {
    let (_dir, store) = fresh();
    // Stands in for a write the database refuses (disk full, I/O error).
    Connection::open(store.path())
        .unwrap()
        .execute_batch(
            "CREATE TRIGGER refuse BEFORE INSERT ON history WHEN new.event_id = 'poison' \
             BEGIN SELECT RAISE(ABORT, 'disk on fire'); END;",
        )
        .unwrap();
    let writer = store.writer().unwrap();
    let mut poison = record(1);
    poison.event_id = "poison".into();
    assert!(
        writer.record_history(poison),
        "accepted: the failure comes later"
    );
    let err = writer.flush_blocking().unwrap_err();
    assert!(matches!(err, StoreError::WriteFailed { lost: 1 }), "{err}");
    assert_eq!(writer.stats().lost, 1);

    assert!(writer.record_history(record(2)));
    writer.flush_blocking().unwrap();
    let failed = audit_of(&store, AuditKind::StoreWriteFailed);
    assert_eq!(failed.len(), 1);
    assert!(
        failed[0]
            .detail
            .starts_with("1 records could not be written")
    );
    assert_eq!(history_count(&store), 1);
    writer.shutdown().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_flush_waits_out_a_locked_database_without_blocking_the_runtime() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, options(2));
    let writer = store.writer().unwrap();
    let lock = WriteLock::take(&store);
    for i in 0..10 {
        writer.record_history(record(i));
    }
    let flushing = tokio::spawn({
        let writer = writer.clone();
        async move { writer.flush().await }
    });
    // The runtime stays responsive while the flush waits for queue space.
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!flushing.is_finished());
    drop(lock);
    tokio::time::timeout(Duration::from_secs(10), flushing)
        .await
        .expect("flush finishes once the writer can write")
        .unwrap()
        .unwrap();
    let accepted = writer.stats().accepted;
    assert_eq!(history_count(&store), accepted);
    assert_eq!(
        store.history(&HistoryQuery::default()).unwrap().len() as u64,
        accepted
    );
}
