//! Crash safety: a writer process killed with SIGKILL leaves a file that opens, verifies, and
//! holds every record it had flushed.
//!
//! The parent test re-runs this test binary with an environment variable naming the database;
//! the `child_*` tests (ignored in normal runs) then write until killed, printing
//! `flushed N` after each flush.

mod common;

use common::{open, record};
use lockstep_store::{AuditKind, AuditRecord, HistoryQuery, StoreOptions};
use rusqlite::Connection;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_DB: &str = "LOCKSTEP_STORE_CRASH_CHILD_DB";
/// A child that lost its parent stops by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(30);

fn keep_forever() -> StoreOptions {
    StoreOptions {
        history_retain_days: 0,
        audit_retain_days: 0,
        ..Default::default()
    }
}

fn audit(i: usize) -> AuditRecord {
    AuditRecord::new(AuditKind::DeliveryAcknowledged, "PACS", "200").subject(format!("evt-{i}"))
}

fn child_db() -> Option<PathBuf> {
    std::env::var_os(CHILD_DB).map(PathBuf::from)
}

/// Child: bursts of history and audit records, each followed by a flush and a report line.
#[test]
#[ignore = "child process of sigkill_mid_burst_keeps_every_flushed_record"]
fn child_burst() {
    let Some(path) = child_db() else { return };
    let store = lockstep_store::Store::open(&path, keep_forever()).unwrap();
    let writer = store.writer().unwrap();
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < CHILD_LIFETIME {
        for _ in 0..250 {
            assert!(writer.record_history(record(n)));
            assert!(writer.record_audit(audit(n)));
            n += 1;
        }
        writer.flush_blocking().unwrap();
        println!("flushed {n}");
    }
}

/// Child: a large prune, reporting when it starts.
#[test]
#[ignore = "child process of sigkill_mid_prune_keeps_the_chain_verifiable"]
fn child_prune() {
    let Some(path) = child_db() else { return };
    let store = lockstep_store::Store::open(
        &path,
        StoreOptions {
            history_retain_days: 1,
            audit_retain_days: 1,
            ..Default::default()
        },
    )
    .unwrap();
    let writer = store.writer().unwrap();
    println!("pruning");
    let report = writer.prune_now().unwrap();
    println!("pruned {report:?}");
    // Stay alive (and writing) until killed.
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < CHILD_LIFETIME {
        assert!(writer.record_audit(audit(n)));
        writer.flush_blocking().unwrap();
        n += 1;
    }
}

/// Runs one of the child tests against `db`.
fn spawn_child(name: &str, db: &Path) -> Child {
    let exe = std::env::current_exe().unwrap();
    Command::new(exe)
        .args([
            name,
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DB, db)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap()
}

/// Reads the child's lines until `stop` says so, then SIGKILLs it. Returns the lines read.
fn kill_when(mut child: Child, delay: Duration, stop: impl Fn(&[String]) -> bool) -> Vec<String> {
    let stdout = child.stdout.take().unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(stdout).lines() {
        lines.push(line.unwrap());
        if stop(&lines) {
            break;
        }
    }
    // A little later, so the kill lands inside the next burst or prune step, not between.
    std::thread::sleep(delay);
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the child must have been killed: {status:?}"
    );
    lines
}

/// What follows `tag` on a child's line. The harness may have started the line already
/// (`test child_burst ... flushed 250`), so the tag is looked for anywhere in it.
fn reported<'a>(line: &'a str, tag: &str) -> Option<&'a str> {
    line.find(tag).map(|at| &line[at + tag.len()..])
}

fn integrity_check(db: &Path) -> String {
    Connection::open(db)
        .unwrap()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap()
}

#[test]
fn sigkill_mid_burst_keeps_every_flushed_record() {
    for (round, delay_ms) in [0u64, 2, 7].into_iter().enumerate() {
        let dir = tempfile::tempdir().unwrap();
        let db = common::db_path(&dir);
        let child = spawn_child("child_burst", &db);
        let wanted = 3 + round * 2;
        let lines = kill_when(child, Duration::from_millis(delay_ms), |lines| {
            lines.iter().filter_map(|l| reported(l, "flushed ")).count() >= wanted
        });
        let flushed: u64 = lines
            .iter()
            .filter_map(|l| reported(l, "flushed "))
            .next_back()
            .unwrap()
            .parse()
            .unwrap();

        assert_eq!(integrity_check(&db), "ok");
        let store = open(&dir, keep_forever());
        let report = store.verify_audit().unwrap();
        assert!(report.is_intact(), "round {round}: {report:?}");
        let stats = store.stats().unwrap();
        assert!(
            stats.history_rows >= flushed && stats.audit_rows >= flushed,
            "round {round}: flushed {flushed}, found {stats:?}"
        );
        // Batches commit whole and in order: what survived is exactly events 0..count.
        let newest = store.history(&HistoryQuery::default()).unwrap();
        assert_eq!(
            newest[0].event_id,
            format!("evt-{}", stats.history_rows - 1),
            "round {round}"
        );
        let conn = Connection::open(&db).unwrap();
        let distinct: i64 = conn
            .query_row(
                "SELECT count(DISTINCT event_id) FROM history \
                 WHERE CAST(substr(event_id, 5) AS INTEGER) < ?1",
                [flushed as i64],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(
            distinct, flushed as i64,
            "round {round}: every flushed record is there"
        );
    }
}

#[test]
fn sigkill_mid_prune_keeps_the_chain_verifiable() {
    let dir = tempfile::tempdir().unwrap();
    let db = common::db_path(&dir);
    {
        let store = open(&dir, keep_forever());
        let writer = store.writer().unwrap();
        let old = time::OffsetDateTime::now_utc() - time::Duration::days(3);
        for i in 0..8000 {
            assert!(writer.record_history(record(i).at(old)));
            assert!(writer.record_audit(audit(i).at(old)));
        }
        writer.shutdown().unwrap();
    }
    let child = spawn_child("child_prune", &db);
    let lines = kill_when(child, Duration::from_millis(15), |lines| {
        lines.iter().any(|l| reported(l, "pruning").is_some())
    });
    assert!(lines.iter().any(|l| reported(l, "pruning").is_some()));

    assert_eq!(integrity_check(&db), "ok");
    let store = open(&dir, keep_forever());
    let report = store.verify_audit().unwrap();
    assert!(report.is_intact(), "{report:?}");
    let stats = store.stats().unwrap();
    // Whatever the kill interrupted, the checkpoint and the deletions went together.
    let pruned_audit = report.checkpoint_id.unwrap_or(0) as u64;
    assert!(stats.audit_rows >= 8000 - pruned_audit);
    let conn = Connection::open(&db).unwrap();
    let orphans: i64 = conn
        .query_row(
            "SELECT (SELECT count(*) FROM history_event WHERE history_id NOT IN \
             (SELECT id FROM history)) + (SELECT count(*) FROM history WHERE id NOT IN \
             (SELECT history_id FROM history_event))",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(orphans, 0, "a history row and its event JSON go together");
}
