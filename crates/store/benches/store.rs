//! Store figures: writer throughput, bytes per 10,000 events, and paged queries at 100,000 rows.
//!
//! `cargo bench -p lockstep-store` prints a table. Timings are medians of several runs on a
//! temporary database on the machine's normal disk, with the shipped settings (WAL,
//! `synchronous = NORMAL`, the WAL synced by the writer within 100 ms). `LOCKSTEP_BENCH_ROWS` overrides the 100,000 rows (2,000 when run by
//! `cargo test` rather than `cargo bench`).

#[path = "../tests/common/mod.rs"]
mod common;

use lockstep_store::{
    AuditKind, AuditRecord, HistoryQuery, HistoryRecord, Store, StoreOptions, StoreWriter,
};
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const RUNS: usize = 3;
const QUERY_REPEATS: usize = 31;

fn main() {
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this too, without it, and
    // then a small smoke run keeps the code exercised without taking minutes.
    let measuring = std::env::args().any(|a| a == "--bench");
    let rows: usize = std::env::var("LOCKSTEP_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if measuring { 100_000 } else { 2_000 });
    print_machine();

    let base = OffsetDateTime::now_utc() - time::Duration::days(7);
    let history: Vec<HistoryRecord> = (0..rows)
        .map(|i| common::record(i).at(base + time::Duration::seconds(i as i64 * 6)))
        .collect();
    let mean_json =
        history.iter().map(|r| r.event_json.len()).sum::<usize>() / history.len().max(1);
    println!("event JSON: {mean_json} bytes on average\n");

    println!("## write throughput ({rows} records, one writer, batches of up to 1000)\n");
    println!("| records | median s | records/s | batches | records/batch |");
    println!("|---|---|---|---|---|");
    let mut kept = None;
    let mut samples = Vec::new();
    for run in 0..RUNS {
        let (dir, store) = scratch();
        let writer = store.writer().expect("writer");
        let elapsed = timed(|| {
            for r in &history {
                assert!(
                    writer.record_history(r.clone()),
                    "queue sized to hold the burst"
                );
            }
            writer.flush_blocking().expect("flush");
        });
        samples.push((elapsed, writer.stats()));
        writer.shutdown().expect("shutdown");
        if run == 0 {
            kept = Some((dir, store));
        }
    }
    throughput_row("history", rows, &mut samples);

    let audit: Vec<AuditRecord> = (0..rows)
        .map(|i| {
            AuditRecord::new(AuditKind::DeliveryAcknowledged, "PACS", "200")
                .topic("DrXRay")
                .subject(format!("evt-{i}"))
        })
        .collect();
    let mut samples = Vec::new();
    for _ in 0..RUNS {
        let (_dir, store) = scratch();
        let writer = store.writer().expect("writer");
        let elapsed = timed(|| {
            for r in &audit {
                assert!(writer.record_audit(r.clone()));
            }
            writer.flush_blocking().expect("flush");
        });
        samples.push((elapsed, writer.stats()));
        writer.shutdown().expect("shutdown");
    }
    throughput_row("audit (hash-chained)", rows, &mut samples);

    println!("\n## size\n");
    println!("| what | used bytes | bytes per 10,000 |");
    println!("|---|---|---|");
    let (_dir, store) = scratch();
    let writer = store.writer().expect("writer");
    write_all(&writer, history.iter().take(10_000).cloned());
    writer.shutdown().expect("shutdown");
    let history_bytes = store.stats().expect("stats").used_bytes;
    let history_n = rows.min(10_000) as u64;
    println!(
        "| {history_n} history events (+ indexes) | {history_bytes} | {} |",
        history_bytes * 10_000 / history_n
    );
    let (_dir, store) = scratch();
    let writer = store.writer().expect("writer");
    for r in audit.iter().take(10_000) {
        writer.record_audit(r.clone());
    }
    writer.shutdown().expect("shutdown");
    let audit_bytes = store.stats().expect("stats").used_bytes;
    println!(
        "| {history_n} audit rows | {audit_bytes} | {} |",
        audit_bytes * 10_000 / history_n
    );
    let (_, store) = kept.as_ref().expect("first run kept");
    println!(
        "| {rows} history events | {} | {} |",
        store.stats().expect("stats").used_bytes,
        store.stats().expect("stats").used_bytes * 10_000 / rows as u64
    );

    println!("\n## queries at {rows} history rows (limit 50, newest first)\n");
    println!("| query | rows returned | median ms | p90 ms |");
    println!("|---|---|---|---|");
    let q = |f: &dyn Fn(&mut HistoryQuery)| {
        let mut q = HistoryQuery::default();
        f(&mut q);
        q
    };
    let middle = rows as i64 / 2;
    let cases: Vec<(&str, HistoryQuery)> = vec![
        ("first page, no filter", q(&|_| {})),
        (
            "deep page (before_id = middle)",
            q(&|q| q.before_id = Some(middle)),
        ),
        (
            "patient identifier (200 visits)",
            q(&|q| q.patient_identifier = Some(common::mrn(rows / 3))),
        ),
        (
            "accession (one study)",
            q(&|q| q.accession = Some(common::accession(rows / 3))),
        ),
        (
            "study UID (one study)",
            q(&|q| q.study_uid = Some(common::study_uid(rows / 3))),
        ),
        (
            "time window (1 hour, mid-range)",
            q(&|q| {
                q.from = Some(base + time::Duration::seconds(middle * 6));
                q.to = Some(base + time::Duration::seconds(middle * 6 + 3600));
            }),
        ),
        (
            "time window (from a week ago: every row)",
            q(&|q| q.from = Some(base)),
        ),
        (
            "time window (from and to around every row)",
            q(&|q| {
                q.from = Some(base);
                q.to = Some(OffsetDateTime::now_utc() + time::Duration::days(1));
            }),
        ),
        (
            "time window (last day) + text 'brain'",
            q(&|q| {
                q.from = Some(base + time::Duration::days(6));
                q.text = Some("brain".into());
            }),
        ),
        (
            "text, common word ('brain')",
            q(&|q| q.text = Some("brain".into())),
        ),
        (
            "text, two words ('müller brain')",
            q(&|q| q.text = Some("müller brain".into())),
        ),
        (
            "text, an old accession (scans to it)",
            q(&|q| q.text = Some(common::accession(5))),
        ),
        (
            "text, no match (full scan)",
            q(&|q| q.text = Some("zzzz".into())),
        ),
        (
            "event name, no match (full scan)",
            q(&|q| q.event = Some("Patient-close".into())),
        ),
    ];
    for (name, query) in &cases {
        let mut returned = 0;
        let mut times: Vec<Duration> = (0..QUERY_REPEATS)
            .map(|_| {
                timed(|| {
                    returned = store.history(query).expect("query").len();
                })
            })
            .collect();
        times.sort();
        println!(
            "| {name} | {returned} | {:.3} | {:.3} |",
            ms(times[times.len() / 2]),
            ms(times[times.len() * 9 / 10])
        );
    }
    let mut times: Vec<Duration> = (0..QUERY_REPEATS)
        .map(|_| {
            timed(|| {
                let mut query = HistoryQuery::default();
                for _ in 0..20 {
                    let page = store.history(&query).expect("query");
                    match query.next_page(&page) {
                        Some(next) => query = next,
                        None => break,
                    }
                }
            })
        })
        .collect();
    times.sort();
    println!(
        "| 20 pages in a row, per page | 50 | {:.3} | {:.3} |",
        ms(times[times.len() / 2]) / 20.0,
        ms(times[times.len() * 9 / 10]) / 20.0
    );

    let (_dir, store) = scratch();
    let writer = store.writer().expect("writer");
    for r in &audit {
        writer.record_audit(r.clone());
    }
    writer.shutdown().expect("shutdown");
    let took = timed(|| assert!(store.verify_audit().expect("verify").is_intact()));
    println!("\nverify_audit over {rows} audit rows: {:.0} ms", ms(took));
}

fn scratch() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(
        dir.path().join("bench.db"),
        StoreOptions {
            history_retain_days: 0,
            audit_retain_days: 0,
            max_bytes: None,
            // Large enough that the burst is never dropped: this measures the writer.
            queue_capacity: 1_000_000,
            ..Default::default()
        },
    )
    .expect("open");
    (dir, store)
}

fn write_all(writer: &StoreWriter, records: impl Iterator<Item = HistoryRecord>) {
    for r in records {
        assert!(writer.record_history(r));
    }
    writer.flush_blocking().expect("flush");
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn throughput_row(
    name: &str,
    rows: usize,
    samples: &mut [(Duration, lockstep_store::WriterStats)],
) {
    samples.sort_by_key(|(d, _)| *d);
    let (elapsed, stats) = samples[samples.len() / 2];
    println!(
        "| {name}: {rows} | {:.2} | {:.0} | {} | {:.0} |",
        elapsed.as_secs_f64(),
        rows as f64 / elapsed.as_secs_f64(),
        stats.batches,
        stats.committed as f64 / stats.batches.max(1) as f64
    );
}

fn print_machine() {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "machine: {cpu}, {cores} cores; SQLite {}; temp dir {}\n",
        rusqlite::version(),
        std::env::temp_dir().display()
    );
}
