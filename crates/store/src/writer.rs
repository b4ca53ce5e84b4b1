//! The writer: a bounded queue in front of one thread that commits records in batches.
//!
//! Callers (the engine's listener, auth) must never wait on the disk, so recording is a
//! `try_send`. When the queue is full the record is dropped, counted, logged, and the count is
//! written to the audit trail as soon as the writer catches up: nothing is lost silently.

use crate::audit::{self, AuditKind, AuditRecord};
use crate::error::StoreError;
use crate::history::{self, HistoryRecord};
use crate::retention::{self, Policy, PruneReport};
use rusqlite::{Connection, TransactionBehavior};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Records per transaction at most: large enough to amortise the fsync, small enough that a
/// flush never waits behind a long commit.
const BATCH_MAX: usize = 1000;

/// The longest the first prune waits after the writer starts.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);

/// How long to wait before retrying a failed commit once (a lock held by another process, a
/// transient I/O error).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// Handle to the store's writer thread. Cheap to clone; every clone feeds the same queue.
///
/// Dropping every clone lets the thread drain the queue and stop on its own; call
/// [`StoreWriter::shutdown`] to wait for that.
#[derive(Clone)]
pub struct StoreWriter {
    tx: SyncSender<Msg>,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

/// Counters since the writer started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriterStats {
    /// Records taken into the queue.
    pub accepted: u64,
    /// Records refused because the queue was full or the writer had stopped.
    pub dropped: u64,
    /// Records committed.
    pub committed: u64,
    /// Transactions that committed records.
    pub batches: u64,
    /// Records accepted but not committed because the database refused the write.
    pub lost: u64,
}

enum Msg {
    History(Box<HistoryRecord>),
    Audit(Box<AuditRecord>),
    Flush(Reply<Result<(), u64>>),
    Prune(Reply<Result<PruneReport, StoreError>>),
    Shutdown,
}

/// Where the writer thread sends an answer: a blocked thread or an awaiting task.
enum Reply<T> {
    Blocking(mpsc::SyncSender<T>),
    Async(tokio::sync::oneshot::Sender<T>),
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        // The asker may have given up (timed out, dropped its future); nothing to do then.
        match self {
            Reply::Blocking(tx) => {
                let _ = tx.send(value);
            }
            Reply::Async(tx) => {
                let _ = tx.send(value);
            }
        }
    }
}

#[derive(Default)]
struct Shared {
    dropped_history: AtomicU64,
    dropped_audit: AtomicU64,
    /// Set while drops are going unreported, so the error is logged once per episode.
    overflowing: AtomicBool,
    closed: AtomicBool,
    /// Records offered after the writer stopped.
    refused: AtomicU64,
    accepted: AtomicU64,
    dropped_total: AtomicU64,
    committed: AtomicU64,
    batches: AtomicU64,
    lost: AtomicU64,
    /// Lost records no flush has reported, as the thread left them.
    lost_unflushed: AtomicU64,
    thread: Mutex<Option<JoinHandle<()>>>,
}

pub(crate) struct Config {
    pub capacity: usize,
    pub policy: Policy,
    pub prune_interval: Duration,
}

impl StoreWriter {
    pub(crate) fn start(conn: Connection, config: Config) -> Result<StoreWriter, StoreError> {
        let (tx, rx) = mpsc::sync_channel(config.capacity.max(1));
        let shared = Arc::new(Shared::default());
        let thread = std::thread::Builder::new()
            .name("lockstep-store-writer".into())
            .spawn({
                let shared = shared.clone();
                move || Worker::new(conn, rx, shared, config).run()
            })?;
        *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(StoreWriter { tx, shared })
    }

    /// Queues a context change. Never blocks; `false` when it was dropped (queue full or writer
    /// stopped), which is counted, logged and later written to the audit trail.
    pub fn record_history(&self, record: HistoryRecord) -> bool {
        self.offer(Msg::History(Box::new(record)), &self.shared.dropped_history)
    }

    /// Queues an audit record. Never blocks; `false` when it was dropped, as for
    /// [`StoreWriter::record_history`].
    pub fn record_audit(&self, record: AuditRecord) -> bool {
        self.offer(Msg::Audit(Box::new(record)), &self.shared.dropped_audit)
    }

    fn offer(&self, msg: Msg, dropped: &AtomicU64) -> bool {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            self.refused();
            return false;
        }
        match self.tx.try_send(msg) {
            Ok(()) => {
                shared.accepted.fetch_add(1, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Full(_)) => {
                dropped.fetch_add(1, Ordering::AcqRel);
                shared.dropped_total.fetch_add(1, Ordering::Relaxed);
                if !shared.overflowing.swap(true, Ordering::AcqRel) {
                    tracing::error!(
                        "store queue is full; dropping records until the writer catches up \
                         (the count goes to the audit trail)"
                    );
                }
                false
            }
            Err(TrySendError::Disconnected(_)) => {
                self.refused();
                false
            }
        }
    }

    /// A record offered after the writer stopped: nowhere to write it but the log.
    fn refused(&self) {
        let shared = &self.shared;
        let before = shared.refused.fetch_add(1, Ordering::AcqRel);
        shared.dropped_total.fetch_add(1, Ordering::Relaxed);
        // First, then every thousandth: visible without flooding the log during shutdown.
        if before % 1000 == 0 {
            tracing::error!(
                refused = before + 1,
                "store writer has stopped; records offered to it are dropped"
            );
        }
    }

    /// Waits until every record queued before this call is committed (durable on disk).
    ///
    /// Fails with [`StoreError::WriteFailed`] if any record accepted since the previous flush
    /// could not be committed. Waits for queue space if the queue is full.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.send_waiting(Msg::Flush(Reply::Async(reply))).await?;
        flush_outcome(answer.await.map_err(|_| StoreError::WriterStopped)?)
    }

    /// [`StoreWriter::flush`] for synchronous code (tests, shutdown paths, CLI verbs).
    /// Blocks the calling thread: not for use on an async executor.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Flush(Reply::Blocking(reply)))
            .map_err(|_| StoreError::WriterStopped)?;
        flush_outcome(answer.recv().map_err(|_| StoreError::WriterStopped)?)
    }

    /// Runs a full retention pass now, between batches, and waits for it. Blocking, like
    /// [`StoreWriter::flush_blocking`]. The writer also prunes on its own every
    /// `StoreOptions::prune_interval`.
    pub fn prune_now(&self) -> Result<PruneReport, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        self.tx
            .send(Msg::Prune(Reply::Blocking(reply)))
            .map_err(|_| StoreError::WriterStopped)?;
        answer.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// Stops taking records, commits everything already queued, and waits for the thread.
    /// Blocking. Records offered by other clones afterwards are refused (and logged).
    ///
    /// Fails with [`StoreError::WriteFailed`] if records accepted since the last flush could
    /// not be committed.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.shared.closed.store(true, Ordering::Release);
        // Ignored: a closed channel means the thread is already gone, which is the goal.
        let _ = self.tx.send(Msg::Shutdown);
        let thread = self
            .shared
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(thread) = thread {
            thread.join().map_err(|_| StoreError::WriterStopped)?;
        }
        match self.shared.lost_unflushed.load(Ordering::Acquire) {
            0 => Ok(()),
            lost => Err(StoreError::WriteFailed { lost }),
        }
    }

    pub fn stats(&self) -> WriterStats {
        let s = &self.shared;
        WriterStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            dropped: s.dropped_total.load(Ordering::Relaxed),
            committed: s.committed.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
        }
    }

    /// Sends a control message, waiting for queue space without blocking the executor.
    async fn send_waiting(&self, msg: Msg) -> Result<(), StoreError> {
        match self.tx.try_send(msg) {
            Ok(()) => Ok(()),
            Err(TrySendError::Disconnected(_)) => Err(StoreError::WriterStopped),
            Err(TrySendError::Full(msg)) => {
                let tx = self.tx.clone();
                tokio::task::spawn_blocking(move || tx.send(msg))
                    .await
                    .map_err(|_| StoreError::WriterStopped)?
                    .map_err(|_| StoreError::WriterStopped)
            }
        }
    }
}

fn flush_outcome(outcome: Result<(), u64>) -> Result<(), StoreError> {
    outcome.map_err(|lost| StoreError::WriteFailed { lost })
}

/// The writer thread's state.
struct Worker {
    conn: Connection,
    rx: Receiver<Msg>,
    shared: Arc<Shared>,
    config: Config,
    history: Vec<HistoryRecord>,
    audit: Vec<AuditRecord>,
    /// Records that failed to commit since the last flush answered.
    lost_since_flush: u64,
    /// Records that failed to commit and are not yet in the audit trail.
    lost_unreported: u64,
    prune: Option<retention::Run>,
    prune_waiters: Vec<Reply<Result<PruneReport, StoreError>>>,
    flush_waiters: Vec<Reply<Result<(), u64>>>,
    next_prune: Option<Instant>,
}

impl Worker {
    fn new(conn: Connection, rx: Receiver<Msg>, shared: Arc<Shared>, config: Config) -> Self {
        // The first pass catches up on whatever expired while the agent was off; shortly after
        // start rather than at once, so it does not compete with start-up.
        let first = config.prune_interval.min(FIRST_PRUNE_AFTER);
        let next_prune = config.policy.is_active().then(|| Instant::now() + first);
        Worker {
            conn,
            rx,
            shared,
            config,
            history: Vec::new(),
            audit: Vec::new(),
            lost_since_flush: 0,
            lost_unreported: 0,
            prune: None,
            prune_waiters: Vec::new(),
            flush_waiters: Vec::new(),
            next_prune,
        }
    }

    fn run(mut self) {
        loop {
            let wait = if self.prune.is_some() {
                Duration::ZERO
            } else {
                self.next_prune.map_or(Duration::from_secs(3600), |at| {
                    at.saturating_duration_since(Instant::now())
                })
            };
            let stop = match self.rx.recv_timeout(wait) {
                Ok(first) => self.take_batch(first),
                Err(RecvTimeoutError::Timeout) => false,
                // Every handle is gone and the queue is empty.
                Err(RecvTimeoutError::Disconnected) => true,
            };
            self.commit_pending();
            self.report_overflow();
            self.answer_flushes();
            if stop {
                break;
            }
            self.prune_step();
        }
        // Whatever slipped in between `shutdown` closing the door and the marker arriving.
        while let Ok(msg) = self.rx.try_recv() {
            self.handle(msg);
        }
        self.commit_pending();
        self.report_overflow();
        self.answer_flushes();
        for waiter in self.prune_waiters.drain(..) {
            waiter.send(Err(StoreError::WriterStopped));
        }
        self.shared
            .lost_unflushed
            .store(self.lost_since_flush, Ordering::Release);
        // Folds the WAL back into the main file so a clean stop leaves one file behind.
        let tidy = retention::run_to_end(&self.conn, "PRAGMA optimize")
            .and_then(|()| retention::run_to_end(&self.conn, "PRAGMA wal_checkpoint(TRUNCATE)"));
        if let Err(e) = tidy {
            tracing::warn!(error = %e, "store checkpoint on shutdown failed");
        }
    }

    /// Takes `first` and whatever else is queued, up to a batch. Returns whether to stop.
    fn take_batch(&mut self, first: Msg) -> bool {
        let mut stop = self.handle(first);
        let mut taken = 1;
        while !stop && taken < BATCH_MAX {
            match self.rx.try_recv() {
                Ok(msg) => stop = self.handle(msg),
                Err(_) => break,
            }
            taken += 1;
        }
        stop
    }

    fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::History(record) => self.history.push(*record),
            Msg::Audit(record) => self.audit.push(*record),
            // Answered after the batch commits: concurrent flushes share one commit (group
            // commit), so a caller that waits for durability costs one fsync per batch.
            Msg::Flush(reply) => self.flush_waiters.push(reply),
            Msg::Prune(reply) => {
                self.prune_waiters.push(reply);
                self.prune.get_or_insert_with(retention::Run::default);
            }
            Msg::Shutdown => return true,
        }
        false
    }

    /// Tells every waiting flush whether records were lost since the last answer.
    fn answer_flushes(&mut self) {
        if self.flush_waiters.is_empty() {
            return;
        }
        let lost = std::mem::take(&mut self.lost_since_flush);
        for waiter in self.flush_waiters.drain(..) {
            waiter.send(if lost == 0 { Ok(()) } else { Err(lost) });
        }
    }

    fn commit_pending(&mut self) {
        if self.history.is_empty() && self.audit.is_empty() && self.lost_unreported == 0 {
            return;
        }
        let mut audit = std::mem::take(&mut self.audit);
        let history = std::mem::take(&mut self.history);
        if self.lost_unreported > 0 {
            audit.push(AuditRecord::new(
                AuditKind::StoreWriteFailed,
                "hub",
                format!(
                    "{} records could not be written to the store (see the log for why)",
                    self.lost_unreported
                ),
            ));
        }
        // The report row is ours, not a caller's record: it is neither committed nor lost work.
        let reporting = u64::from(self.lost_unreported > 0);
        let count = (history.len() + audit.len()) as u64 - reporting;
        let mut outcome = commit(&mut self.conn, &history, &audit);
        if let Err(e) = &outcome {
            tracing::warn!(error = %e, records = count, "store commit failed; retrying once");
            std::thread::sleep(RETRY_AFTER);
            outcome = commit(&mut self.conn, &history, &audit);
        }
        match outcome {
            Ok(()) => {
                self.lost_unreported = 0;
                self.shared.committed.fetch_add(count, Ordering::Relaxed);
                self.shared.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                let lost = count;
                tracing::error!(error = %e, records = lost, "store commit failed; records lost");
                self.lost_unreported += lost;
                self.lost_since_flush += lost;
                self.shared.lost.fetch_add(lost, Ordering::Relaxed);
            }
        }
    }

    /// Writes one `StoreOverflow` row for the records dropped since the last one.
    fn report_overflow(&mut self) {
        let history = self.shared.dropped_history.swap(0, Ordering::AcqRel);
        let audit = self.shared.dropped_audit.swap(0, Ordering::AcqRel);
        if history + audit == 0 {
            return;
        }
        self.shared.overflowing.store(false, Ordering::Release);
        let dropped = history + audit;
        tracing::error!(
            dropped,
            history,
            audit,
            "store queue overflowed; records were dropped"
        );
        let record = AuditRecord::new(
            AuditKind::StoreOverflow,
            "hub",
            format!(
                "the store queue was full: {dropped} records dropped \
                 ({history} history, {audit} audit)"
            ),
        );
        if let Err(e) = commit(&mut self.conn, &[], std::slice::from_ref(&record)) {
            // Put the counts back so the next attempt reports them.
            tracing::error!(error = %e, "could not record the store overflow; will retry");
            self.shared
                .dropped_history
                .fetch_add(history, Ordering::AcqRel);
            self.shared.dropped_audit.fetch_add(audit, Ordering::AcqRel);
        }
    }

    fn prune_step(&mut self) {
        if self.prune.is_none() && self.next_prune.is_some_and(|at| Instant::now() >= at) {
            self.prune = Some(retention::Run::default());
        }
        let Some(run) = self.prune.as_mut() else {
            return;
        };
        let outcome = run.step(&mut self.conn, &self.config.policy);
        let finished = match outcome {
            Ok(true) => return,
            Ok(false) => Ok(std::mem::take(&mut run.report)),
            Err(e) => Err(e),
        };
        self.prune = None;
        if self.config.policy.is_active() {
            self.next_prune = Some(Instant::now() + self.config.prune_interval);
        }
        match finished {
            Ok(report) => {
                if !report.is_empty() {
                    tracing::info!(
                        history = report.history_removed,
                        audit = report.audit_removed,
                        size_capped = report.size_capped,
                        "store pruned"
                    );
                    self.audit.push(pruned_record(&report, &self.config.policy));
                    self.commit_pending();
                }
                for waiter in self.prune_waiters.drain(..) {
                    waiter.send(Ok(report.clone()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "store prune failed; will try again later");
                let mut waiters = self.prune_waiters.drain(..);
                if let Some(first) = waiters.next() {
                    first.send(Err(StoreError::Sqlite(e)));
                }
                for waiter in waiters {
                    waiter.send(Err(StoreError::WriterStopped));
                }
            }
        }
    }
}

fn pruned_record(report: &PruneReport, policy: &Policy) -> AuditRecord {
    let mut why = Vec::new();
    if policy.history_retain_days > 0 {
        why.push(format!("history kept {} days", policy.history_retain_days));
    }
    if policy.audit_retain_days > 0 {
        why.push(format!("audit kept {} days", policy.audit_retain_days));
    }
    if let (true, Some(max)) = (report.size_capped, policy.max_bytes) {
        why.push(format!("size cap {max} bytes reached"));
    }
    AuditRecord::new(
        AuditKind::StorePruned,
        "hub",
        format!(
            "retention removed {} history and {} audit rows ({})",
            report.history_removed,
            report.audit_removed,
            why.join(", ")
        ),
    )
}

/// One transaction for the whole batch: one fsync, and all of it or none of it.
fn commit(
    conn: &mut Connection,
    history: &[HistoryRecord],
    audit: &[AuditRecord],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in history {
        history::insert(&tx, record)?;
    }
    if !audit.is_empty() {
        audit::append(&tx, audit)?;
    }
    tx.commit()
}
