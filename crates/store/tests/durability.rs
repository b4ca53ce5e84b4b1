//! When the store cannot write (a full disk, a read-only file, a lock another program holds),
//! nothing it was given is dropped: flushes fail at once with the reason, the writer says why,
//! and everything is written in order once the problem passes. A file with damaged pages is
//! refused at open, and left as it was.
//!
//! The full disk and (as root) the read-only file use real file systems: a small tmpfs, and a
//! read-only bind mount. Where mounting is not allowed (not root), those tests say so and skip.

mod common;
#[path = "common/mount.rs"]
mod mount;

use common::record;
use lockstep_store::{
    AuditKind, AuditQuery, HistoryQuery, Store, StoreError, StoreOptions, StoreWriter, WriteProblem,
};
use mount::{Mount, fill, run, skip};
use rusqlite::Connection;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// Waits until the writer reports `problem`, failing the test after `within`.
fn wait_for_problem(writer: &StoreWriter, problem: Option<WriteProblem>, within: Duration) {
    let deadline = Instant::now() + within;
    while writer.problem() != problem {
        assert!(
            Instant::now() < deadline,
            "the writer still reports {:?}, not {problem:?}",
            writer.problem()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The event ids of every history row, oldest first.
fn event_ids(store: &Store) -> Vec<String> {
    let mut entries = store
        .history(&HistoryQuery {
            limit: 100_000,
            ..Default::default()
        })
        .unwrap();
    entries.sort_by_key(|e| e.id);
    entries.into_iter().map(|e| e.event_id).collect()
}

fn ids(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("evt-{i}")).collect()
}

fn episode_rows(store: &Store) -> Vec<String> {
    store
        .audit(&AuditQuery {
            kind: Some(AuditKind::StoreWriteFailed),
            limit: 100,
            ..Default::default()
        })
        .unwrap()
        .into_iter()
        .map(|e| e.detail)
        .collect()
}

#[test]
fn a_full_disk_keeps_every_record_and_writes_them_in_order_when_space_returns() {
    let mount = match Mount::tmpfs("8m") {
        Ok(mount) => mount,
        Err(why) => return skip("full disk", &why),
    };
    let store = Store::open(mount.at.join("lockstep.db"), StoreOptions::default()).unwrap();
    let writer = store.writer().unwrap();
    for i in 0..10 {
        assert!(writer.record_history(record(i)));
    }
    writer.flush_blocking().unwrap();

    let filler = fill(&mount.at);
    // Far more than any slack the WAL has left: about 1.5 KB each.
    for i in 10..1000 {
        assert!(writer.record_history(record(i)), "accepted, not dropped");
    }
    let refused = writer.flush_blocking().unwrap_err();
    assert!(
        matches!(refused, StoreError::Unwritable(WriteProblem::DiskFull)),
        "{refused}"
    );
    assert!(refused.to_string().contains("free space"), "{refused}");
    wait_for_problem(
        &writer,
        Some(WriteProblem::DiskFull),
        Duration::from_secs(5),
    );
    assert_eq!(writer.stats().lost, 0);
    assert_eq!(writer.stats().dropped, 0);

    // Space comes back: the writer notices by itself, and nothing was dropped or reordered.
    std::fs::remove_file(filler).unwrap();
    wait_for_problem(&writer, None, Duration::from_secs(10));
    writer.flush_blocking().unwrap();
    assert_eq!(event_ids(&store), ids(0..1000));
    let episodes = episode_rows(&store);
    assert_eq!(episodes.len(), 1, "{episodes:?}");
    assert!(episodes[0].contains("disk"), "{episodes:?}");
    writer.shutdown().unwrap();
}

#[test]
fn a_read_only_store_says_so_at_once_and_writes_once_it_is_writable_again() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockstep.db");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let writer = store.writer().unwrap();
        for i in 0..5 {
            writer.record_history(record(i));
        }
        writer.shutdown().unwrap();
    }
    // Root writes through permission bits: a read-only bind mount of the file is what makes
    // it read-only for root, as the bits do for everyone else.
    let bind = make_read_only(&path);

    let store = Store::open(&path, StoreOptions::default()).unwrap();
    assert_eq!(event_ids(&store), ids(0..5), "still readable");
    let writer = store.writer().unwrap();
    assert_eq!(
        writer.problem(),
        Some(WriteProblem::ReadOnly),
        "told at start"
    );
    assert!(writer.record_history(record(5)));
    let refused = writer.flush_blocking().unwrap_err();
    assert!(
        matches!(refused, StoreError::Unwritable(WriteProblem::ReadOnly)),
        "{refused}"
    );

    make_writable(&path, bind);
    wait_for_problem(&writer, None, Duration::from_secs(10));
    writer.flush_blocking().unwrap();
    assert_eq!(event_ids(&store), ids(0..6));
    writer.shutdown().unwrap();
}

/// Makes the database file read-only; `true` when by a bind mount (to undo by unmounting).
fn make_read_only(path: &Path) -> bool {
    let bound = run(Command::new("mount").arg("--bind").arg(path).arg(path)).is_ok();
    if bound {
        run(Command::new("mount")
            .args(["-o", "remount,ro,bind"])
            .arg(path)
            .arg(path))
        .unwrap();
    } else {
        let mut permissions = std::fs::metadata(path).unwrap().permissions();
        permissions.set_readonly(true);
        std::fs::set_permissions(path, permissions).unwrap();
    }
    bound
}

fn make_writable(path: &Path, bound: bool) {
    if bound {
        // Lazily: the writer's connection keeps the read-only mount open until it reconnects.
        run(Command::new("umount").arg("-l").arg(path)).unwrap();
    } else {
        let mut permissions = std::fs::metadata(path).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        permissions.set_readonly(false);
        std::fs::set_permissions(path, permissions).unwrap();
    }
}

#[test]
fn a_lock_held_longer_than_the_busy_timeout_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path().join("lockstep.db"), StoreOptions::default()).unwrap();
    let writer = store.writer().unwrap();
    // Another program (a backup, a database browser) takes the write lock and keeps it.
    let other = Connection::open(store.path()).unwrap();
    other.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = Instant::now();
    for i in 0..20 {
        assert!(writer.record_history(record(i)));
    }
    // The thread waits out the busy timeout, then says why it cannot write.
    wait_for_problem(&writer, Some(WriteProblem::Locked), Duration::from_secs(15));
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited the lock out first"
    );
    for i in 20..40 {
        assert!(writer.record_history(record(i)));
    }
    let refused = writer.flush_blocking().unwrap_err();
    assert!(
        matches!(refused, StoreError::Unwritable(WriteProblem::Locked)),
        "{refused}"
    );
    std::thread::sleep(Duration::from_secs(2));
    other.execute_batch("ROLLBACK").unwrap();

    wait_for_problem(&writer, None, Duration::from_secs(10));
    writer.flush_blocking().unwrap();
    assert_eq!(event_ids(&store), ids(0..40));
    assert_eq!(writer.stats().lost, 0);
    let episodes = episode_rows(&store);
    assert!(
        episodes.len() == 1 && episodes[0].contains("locked"),
        "{episodes:?}"
    );
    writer.shutdown().unwrap();
}

#[test]
fn damaged_pages_are_found_at_open_and_the_file_is_left_as_it_was() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("lockstep.db");
    {
        let store = Store::open(&path, StoreOptions::default()).unwrap();
        let writer = store.writer().unwrap();
        for i in 0..2000 {
            writer.record_history(record(i));
        }
        writer.shutdown().unwrap();
    }
    // One page in the middle of the file, zeroed, as a failing sector leaves it: SQLite alone
    // would open the file and read around it, rows missing.
    let mut bytes = std::fs::read(&path).unwrap();
    let page = 4096;
    let pages = bytes.len() / page;
    assert!(pages > 100, "{pages} pages");
    let middle = pages / 2 * page;
    bytes[middle..middle + page].fill(0);
    std::fs::write(&path, &bytes).unwrap();

    let refused = Store::open(&path, StoreOptions::default()).unwrap_err();
    assert!(refused.is_damage(), "{refused}");
    assert!(matches!(refused, StoreError::Damaged { .. }), "{refused}");
    assert!(refused.to_string().contains("damaged pages"), "{refused}");
    assert_eq!(
        std::fs::read(&path).unwrap(),
        bytes,
        "the file is untouched"
    );
}
