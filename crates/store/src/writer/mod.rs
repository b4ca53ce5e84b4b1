//! The writer: a bounded queue of records, committed in batches by whoever gets there first.
//!
//! Callers (the engine's observers, auth) must never wait on the disk, so recording only
//! queues. When the queue is full the record is dropped, counted, logged, and the count is
//! written to the audit trail as soon as the writer catches up: nothing is lost silently.
//!
//! History rows and acknowledgements linger up to [`LINGER`] unless a flush takes them sooner;
//! every other audit record wakes the writer's thread at once. The thread commits a batch at a
//! time. A flush commits in the calling thread when the connection is free
//! (or soon is) and the queue short: waking another thread and being woken again would cost
//! more than the commit, and the caller waits for both. Otherwise the flush is handed to the
//! thread. Whoever commits holds the connection, so a flush that gets it knows every record
//! taken before it is committed. [`StoreWriter::flush_history`], which an answered context
//! change waits for, commits only the history rows: the acknowledgements queued with them (one
//! per subscriber per event) follow within [`LINGER`], off the path of the answer.
//!
//! When the store as a whole cannot write (a full disk, a lock another program holds, a
//! read-only file: a [`WriteProblem`]), nothing is dropped: the records stay queued in order,
//! flushes fail at once with [`StoreError::Unwritable`], [`StoreWriter::watch_problem`] says
//! why, and the thread retries with a growing pause until a commit succeeds. Only a record the
//! database refuses for itself (a constraint) is counted as lost and reported.
//!
//! Durability comes in two steps. A commit hands the records to the operating system, which
//! keeps them through a crash or kill of Lockstep; this is what a flush waits for. What an
//! answered context change promises, the same, is met sooner: [`StoreWriter::flush_history`]
//! appends its row to the pending file beside the database (`crate::journal`), one write, and
//! the thread commits it with the rest within [`LINGER`]. The WAL then reaches the disk, and
//! so survives a power cut, within [`SYNC_WITHIN`] of the commit, synced by the thread while
//! no one waits for it: an fsync in front of every answer would cap the hub at the disk's
//! sync rate (see `docs/performance.md`).

mod committer;
mod queue;
mod stats;
mod worker;

pub use stats::WriterStats;

use crate::audit::{self, AuditKind, AuditRecord};
use crate::error::StoreError;
use crate::history::{self, HistoryRecord};
use crate::journal::Journal;
use crate::problem::WriteProblem;
use crate::retention::{self, Policy, PruneReport};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use committer::*;
use queue::*;
use stats::{Counters, Overflow, RecordKind};
use worker::*;

/// Records per transaction at most: large enough to amortise a commit, small enough (well
/// under a millisecond) that a flush never waits long behind one.
const BATCH_MAX: usize = 250;

/// How long a flush waits for the connection before handing its work to the thread.
const INLINE_WAIT: Duration = Duration::from_millis(2);

/// A flush commits in the calling thread only up to this many queued records (a few hundred
/// microseconds of work); a longer queue is the thread's to commit.
const INLINE_MAX: usize = 256;

/// How long a record no one waits for may stay queued before the thread commits it. As long
/// as [`SYNC_WITHIN`], so that one wake of the thread does both.
pub const LINGER: Duration = Duration::from_millis(100);

/// How soon after a commit the WAL is synced to the disk: the most a power cut can take back.
pub const SYNC_WITHIN: Duration = Duration::from_millis(100);

/// The longest the first prune waits after the writer starts.
const FIRST_PRUNE_AFTER: Duration = Duration::from_secs(60);

/// How long to wait before retrying a commit the database refused for its records (a
/// transient failure gets one more chance before they count as lost).
const RETRY_AFTER: Duration = Duration::from_millis(200);

/// The first pause before retrying while the store cannot write; it doubles up to
/// [`RETRY_AT_MOST`], so that recovery is noticed within seconds without spinning.
const RETRY_FIRST: Duration = Duration::from_millis(250);

const RETRY_AT_MOST: Duration = Duration::from_secs(2);

/// Handle to the store's writer. Cheap to clone; every clone feeds the same queue.
///
/// Dropping every clone lets the thread commit the queue and stop on its own; call
/// [`StoreWriter::shutdown`] to wait for that.
pub struct StoreWriter {
    shared: Arc<Shared>,
}

impl Clone for StoreWriter {
    fn clone(&self) -> Self {
        self.shared.handles.fetch_add(1, Ordering::Relaxed);
        StoreWriter {
            shared: self.shared.clone(),
        }
    }
}

impl Drop for StoreWriter {
    fn drop(&mut self) {
        if self.shared.handles.fetch_sub(1, Ordering::AcqRel) == 1 {
            // The last handle: nothing more can be queued, so the thread may finish.
            self.shared.queue().shutdown = true;
            self.shared.wake.notify_one();
        }
    }
}

impl std::fmt::Debug for StoreWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreWriter")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// The connection and what belongs to it; held by whoever commits.
    connection: parking_lot::Mutex<Committer>,
    /// The pending file, where an answered change's row goes first; `None` without one.
    /// Locked after the connection and before the queue, by whoever takes history records
    /// from the queue or writes them to the file, so that whoever holds it knows every
    /// history record out of the queue is in the file or committed.
    journal: Option<parking_lot::Mutex<Journal>>,
    capacity: usize,
    /// The queue length at which the thread is woken to commit at once.
    wake_at: usize,
    /// Live `StoreWriter` handles.
    handles: AtomicU64,
    /// Set once the writer takes no more records.
    closed: AtomicBool,
    overflow: Overflow,
    counters: Counters,
    /// Lost records no flush has reported, as the thread left them.
    lost_unflushed: AtomicU64,
    /// Why the store cannot write now; `None` while it can.
    problem: tokio::sync::watch::Sender<Option<WriteProblem>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Shared {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn connection(&self) -> parking_lot::MutexGuard<'_, Committer> {
        self.connection.lock()
    }

    /// Notes whether the store can write, logging each change once.
    fn set_problem(&self, problem: Option<WriteProblem>) {
        let before = *self.problem.borrow();
        if before == problem {
            return;
        }
        match problem {
            Some(problem) => tracing::error!(
                "history cannot be written: {problem}; {}. Nothing is dropped: what could not \
                 be written is kept in order and written once it can be",
                problem.remedy()
            ),
            None => tracing::info!("history can be written again"),
        }
        self.problem.send_replace(problem);
    }
}

pub(crate) struct Config {
    pub capacity: usize,
    pub policy: Policy,
    pub prune_interval: Duration,
    pub journal: Option<Journal>,
}

impl StoreWriter {
    pub(crate) fn start(conn: Connection, mut config: Config) -> Result<StoreWriter, StoreError> {
        // Checkpoints are the thread's, on a connection of its own (see `Disk`): SQLite would
        // otherwise run one inside whichever commit crosses a thousand WAL pages, a flush
        // included, and hold the connection through it.
        conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let path = conn.path().filter(|p| !p.is_empty()).map(PathBuf::from);
        // SQLite opens a file it may not write read-only, without a word: say so at once
        // rather than at the first record.
        let read_only = conn.is_readonly(rusqlite::MAIN_DB)?;
        let disk = Disk {
            path: path.clone(),
            wal: None,
            checkpointer: None,
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
            connection: parking_lot::Mutex::new(Committer {
                conn,
                path,
                lost_since_flush: 0,
                lost_unreported: 0,
                backoff: RETRY_FIRST,
                unwritable: None,
            }),
            journal: config.journal.take().map(parking_lot::Mutex::new),
            capacity: config.capacity.max(1),
            wake_at: (config.capacity / 4).max(1),
            handles: AtomicU64::new(1),
            closed: AtomicBool::new(false),
            overflow: Overflow::default(),
            counters: Counters::default(),
            lost_unflushed: AtomicU64::new(0),
            problem: tokio::sync::watch::channel(None).0,
            thread: Mutex::new(None),
        });
        if read_only {
            shared.set_problem(Some(WriteProblem::ReadOnly));
            shared.connection().unwritable = Some(Unwritable::since_now(WriteProblem::ReadOnly));
            shared.queue().retry_at = Some(Instant::now() + RETRY_FIRST);
        }
        let thread = std::thread::Builder::new()
            .name("lockstep-store-writer".into())
            .spawn({
                let shared = shared.clone();
                move || Worker::new(shared, config, disk).run()
            })?;
        *shared.thread.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread);
        Ok(StoreWriter { shared })
    }

    /// Queues a context change. Never blocks; `false` when it was dropped (queue full or writer
    /// stopped), which is counted, logged and later written to the audit trail.
    ///
    /// It lingers up to [`LINGER`] unless a flush commits it sooner: whoever needs it on record
    /// (an answered context change) flushes.
    pub fn record_history(&self, record: HistoryRecord) -> bool {
        self.offer(RecordKind::History, true, |queue| {
            queue.history.push(record)
        })
    }

    /// Queues an audit record. Never blocks; `false` when it was dropped, as for
    /// [`StoreWriter::record_history`].
    ///
    /// Acknowledgements (one per subscriber per event) linger up to [`LINGER`], to be written
    /// many at a time; every other record is committed at once, as a security record should.
    pub fn record_audit(&self, record: AuditRecord) -> bool {
        let lingers = record.kind == AuditKind::DeliveryAcknowledged;
        self.offer(RecordKind::Audit, lingers, |queue| queue.audit.push(record))
    }

    fn offer(&self, kind: RecordKind, lingers: bool, push: impl FnOnce(&mut Queue)) -> bool {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            self.refused();
            return false;
        }
        let mut queue = shared.queue();
        if queue.shutdown {
            drop(queue);
            self.refused();
            return false;
        }
        if queue.len() >= shared.capacity {
            drop(queue);
            shared.counters.dropped();
            if shared.overflow.dropped(kind) {
                tracing::error!(
                    "store queue is full; dropping records until the writer catches up \
                     (the count goes to the audit trail)"
                );
            }
            return false;
        }
        push(&mut queue);
        let now = Instant::now();
        let mut due = *queue.since.get_or_insert(now) + LINGER;
        if !lingers {
            queue.prompt = true;
            due = now;
        }
        // Wake the thread only if it would otherwise sleep past this record's turn, or the queue
        // is a quarter full: most records ride along with a flush or the next wake, and a burst
        // of acknowledgements does not wake it while the hub is still sending.
        let wake = queue.sleeps_past(due) || queue.len() == shared.wake_at;
        drop(queue);
        shared.counters.accepted();
        if wake {
            shared.wake.notify_one();
        }
        true
    }

    /// A record offered after the writer stopped: nowhere to write it but the log.
    fn refused(&self) {
        let shared = &self.shared;
        let before = shared.counters.refused();
        // First, then every thousandth: visible without flooding the log during shutdown.
        if before.is_multiple_of(1000) {
            tracing::error!(
                refused = before + 1,
                "store writer has stopped; records offered to it are dropped"
            );
        }
    }

    /// Why the store cannot write now (`None` while it can).
    pub fn problem(&self) -> Option<WriteProblem> {
        *self.shared.problem.borrow()
    }

    /// Told each time the store stops or starts being able to write.
    pub fn watch_problem(&self) -> tokio::sync::watch::Receiver<Option<WriteProblem>> {
        self.shared.problem.subscribe()
    }

    /// Waits until every record queued before this call is committed: safe from a crash of
    /// this process at once, and on the disk within [`SYNC_WITHIN`].
    ///
    /// Fails with [`StoreError::WriteFailed`] if any record accepted since the previous flush
    /// could not be committed, and at once with [`StoreError::Unwritable`] when the store
    /// cannot write (the records stay queued and are written once it can). Commits in the calling thread when the connection is free (or
    /// soon is) and the queue short (a few hundred microseconds of work); otherwise waits for
    /// the writer's thread without blocking the executor.
    pub async fn flush(&self) -> Result<(), StoreError> {
        match Self::flush_here(&self.shared, Take::All) {
            Some(outcome) => outcome,
            None => self.flush_by_thread().await,
        }
    }

    /// Hands a flush to the writer's thread and waits for its answer.
    async fn flush_by_thread(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        Self::ask(&self.shared, |queue| {
            queue.flushes.push(Reply::Async(reply))
        })?;
        flush_outcome(answer.await.map_err(|_| StoreError::WriterStopped)?)
    }

    /// [`StoreWriter::flush`] for synchronous code (tests, shutdown paths, CLI verbs).
    /// Blocks the calling thread: not for use on an async executor.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        Self::flush_blocking_on(&self.shared, Take::All)
    }

    fn flush_blocking_on(shared: &Shared, take: Take) -> Result<(), StoreError> {
        if let Some(outcome) = Self::flush_here(shared, take) {
            return outcome;
        }
        let (reply, answer) = mpsc::sync_channel(1);
        Self::ask(shared, |queue| queue.flushes.push(Reply::Blocking(reply)))?;
        flush_outcome(answer.recv().map_err(|_| StoreError::WriterStopped)?)
    }

    /// A tie from the store's reader to this writer (see [`WriterLink`]).
    pub(crate) fn link(&self) -> WriterLink {
        WriterLink(Arc::downgrade(&self.shared))
    }

    /// Waits until every history record queued before this call is safe from a crash or kill
    /// of this process: appended to the pending file (one write; the thread commits them
    /// within [`LINGER`]), or without one committed, as [`StoreWriter::flush`] does. Audit
    /// records queued before it are committed by the thread within [`LINGER`]. This is what
    /// an answered context change waits for.
    pub async fn flush_history(&self) -> Result<(), StoreError> {
        if let Some(journal) = &self.shared.journal
            && let Some(filed) = self.to_journal(journal)
        {
            return filed;
        }
        match Self::flush_here(&self.shared, Take::History) {
            Some(outcome) => outcome,
            None => self.flush_by_thread().await,
        }
    }

    /// Appends the history records not yet in the pending file to it. `None` while a commit
    /// of history records outside the file is under way, or when the file cannot be written
    /// (the database may still take them): the flush must commit instead.
    fn to_journal(&self, journal: &parking_lot::Mutex<Journal>) -> Option<Result<(), StoreError>> {
        let shared = &self.shared;
        if shared.closed.load(Ordering::Acquire) {
            return Some(Err(StoreError::WriterStopped));
        }
        // While the store cannot write, no change is answered as recorded, file or not: the
        // site is told at once, and the records wait in the queue as they would without it.
        if let Some(problem) = self.problem() {
            return Some(Err(StoreError::Unwritable(problem)));
        }
        let mut journal = journal.lock();
        if journal.unfiled_in_flight {
            return None;
        }
        // Encoded under the queue's lock, written outside it: recording never waits for the
        // write. Only holders of the file's lock move `journaled` or take history records.
        let upto = {
            let queue = shared.queue();
            journal.encode(&queue.history[queue.journaled..]).ok()?;
            queue.history.len()
        };
        match journal.write_encoded() {
            Ok(()) => {
                shared.queue().journaled = upto;
                Some(Ok(()))
            }
            Err(problem) => {
                tracing::warn!(
                    "the history's pending file cannot be written ({problem}); answers wait for the database"
                );
                None
            }
        }
    }

    /// Commits `take` in the calling thread if the connection is free within [`INLINE_WAIT`],
    /// the queue short and the database not locked by another process; `None` leaves the
    /// flush to the thread.
    fn flush_here(shared: &Shared, take: Take) -> Option<Result<(), StoreError>> {
        Self::flush_inline(shared, take, true)
    }

    /// [`StoreWriter::flush_here`] without reporting (and so clearing) records lost earlier.
    fn flush_here_keeping_lost(shared: &Shared, take: Take) -> Option<Result<(), StoreError>> {
        Self::flush_inline(shared, take, false)
    }

    fn flush_inline(
        shared: &Shared,
        take: Take,
        report_lost: bool,
    ) -> Option<Result<(), StoreError>> {
        if shared.closed.load(Ordering::Acquire) {
            return Some(Err(StoreError::WriterStopped));
        }
        let mut connection = shared.connection.try_lock_for(INLINE_WAIT)?;
        let queued = {
            let queue = shared.queue();
            match take {
                Take::History => queue.history.len(),
                _ => queue.len(),
            }
        };
        if queued > INLINE_MAX {
            return None;
        }
        match connection.commit_queued(shared, take, Attempt::Once) {
            Committed::Done if !report_lost => Some(Ok(())),
            Committed::Done => Some(flush_outcome(connection.take_lost())),
            Committed::GivenBack => None,
            Committed::Kept(problem) => Some(Err(StoreError::Unwritable(problem))),
        }
    }

    /// Runs a full retention pass now, between batches, and waits for it. Blocking, like
    /// [`StoreWriter::flush_blocking`]. The writer also prunes on its own every
    /// `StoreOptions::prune_interval`.
    pub fn prune_now(&self) -> Result<PruneReport, StoreError> {
        let (reply, answer) = mpsc::sync_channel(1);
        Self::ask(&self.shared, |queue| {
            queue.prunes.push(Reply::Blocking(reply))
        })?;
        answer.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// Hands the thread a request and wakes it.
    fn ask(shared: &Shared, request: impl FnOnce(&mut Queue)) -> Result<(), StoreError> {
        let mut queue = shared.queue();
        if queue.shutdown || shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::WriterStopped);
        }
        request(&mut queue);
        drop(queue);
        shared.wake.notify_one();
        Ok(())
    }

    /// Stops taking records, commits everything already queued, and waits for the thread.
    /// Blocking. Records offered by other clones afterwards are refused (and logged).
    ///
    /// Fails with [`StoreError::WriteFailed`] if records accepted since the last flush could
    /// not be committed.
    pub fn shutdown(self) -> Result<(), StoreError> {
        self.shared.closed.store(true, Ordering::Release);
        self.shared.queue().shutdown = true;
        self.shared.wake.notify_one();
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
        self.shared.counters.snapshot()
    }
}

/// A reader's tie to the writer of the same store, in the same process: an answered change
/// may be in the pending file only, and a read first commits what is queued, so that it sees
/// every change answered before it.
#[derive(Default)]
pub(crate) struct WriterLink(std::sync::Weak<Shared>);

impl WriterLink {
    /// Commits the history records queued, if this store's writer runs and has a pending
    /// file; blocking. A failure is the writer's to report: the read goes on without them.
    pub(crate) fn settle_history(&self) {
        let Some(shared) = self.0.upgrade() else {
            return;
        };
        if shared.journal.is_none() || shared.closed.load(Ordering::Acquire) {
            return;
        }
        // Only where the connection is free now: the thread's answer would take the count of
        // lost records a caller's flush must report.
        let _ = StoreWriter::flush_here_keeping_lost(&shared, Take::History);
    }
}

fn flush_outcome(outcome: Result<(), Unflushed>) -> Result<(), StoreError> {
    outcome.map_err(|why| match why {
        Unflushed::Lost(lost) => StoreError::WriteFailed { lost },
        Unflushed::Unwritable(problem) => StoreError::Unwritable(problem),
    })
}
