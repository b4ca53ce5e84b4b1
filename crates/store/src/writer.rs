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
//! keeps them through a crash or kill of Lockstep; this is what a flush waits for, and what an
//! answered context change promises. The WAL then reaches the disk, and so survives a power
//! cut, within [`SYNC_WITHIN`] of the commit, synced by the thread while no one waits for it:
//! an fsync in front of every answer would cap the hub at the disk's sync rate (see
//! `docs/performance.md`).

use crate::audit::{self, AuditKind, AuditRecord};
use crate::error::StoreError;
use crate::history::{self, HistoryRecord};
use crate::problem::WriteProblem;
use crate::retention::{self, Policy, PruneReport};
use rusqlite::{Connection, ErrorCode, TransactionBehavior};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

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
    /// Syncs of the WAL to the disk (each covers every commit before it).
    pub synced: u64,
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

/// Why a flush could not report everything committed.
#[derive(Debug, Clone, Copy)]
enum Unflushed {
    /// Records the database refused since the last flush; they are gone.
    Lost(u64),
    /// The store cannot write now; the records are kept and written later.
    Unwritable(WriteProblem),
}

type FlushReply = Reply<Result<(), Unflushed>>;

/// What waits to be written, and what the thread is asked to do.
#[derive(Default)]
struct Queue {
    history: Vec<HistoryRecord>,
    audit: Vec<AuditRecord>,
    /// When the oldest record no one has committed yet was queued.
    since: Option<Instant>,
    /// A record that must not linger is queued.
    prompt: bool,
    flushes: Vec<FlushReply>,
    prunes: Vec<Reply<Result<PruneReport, StoreError>>>,
    /// While the store cannot write: when the thread tries again.
    retry_at: Option<Instant>,
    /// When the oldest commit not yet synced to the disk must be.
    sync_due: Option<Instant>,
    /// Until when the thread sleeps (`None`: until woken); `Some` only while it waits.
    sleeping_until: Option<Option<Instant>>,
    shutdown: bool,
}

impl Queue {
    fn len(&self) -> usize {
        self.history.len() + self.audit.len()
    }

    /// Whether the thread must be woken to meet `due`.
    fn sleeps_past(&self, due: Instant) -> bool {
        match self.sleeping_until {
            Some(Some(until)) => until > due,
            Some(None) => true,
            None => false,
        }
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
    /// The connection and what belongs to it; held by whoever commits.
    connection: parking_lot::Mutex<Committer>,
    capacity: usize,
    /// The queue length at which the thread is woken to commit at once.
    wake_at: usize,
    /// Live `StoreWriter` handles.
    handles: AtomicU64,
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
    synced: AtomicU64,
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
}

impl StoreWriter {
    pub(crate) fn start(conn: Connection, config: Config) -> Result<StoreWriter, StoreError> {
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
            capacity: config.capacity.max(1),
            wake_at: (config.capacity / 4).max(1),
            handles: AtomicU64::new(1),
            dropped_history: AtomicU64::new(0),
            dropped_audit: AtomicU64::new(0),
            overflowing: AtomicBool::new(false),
            closed: AtomicBool::new(false),
            refused: AtomicU64::new(0),
            accepted: AtomicU64::new(0),
            dropped_total: AtomicU64::new(0),
            committed: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            lost: AtomicU64::new(0),
            synced: AtomicU64::new(0),
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
        self.offer(&self.shared.dropped_history, true, |queue| {
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
        self.offer(&self.shared.dropped_audit, lingers, |queue| {
            queue.audit.push(record)
        })
    }

    fn offer(&self, dropped: &AtomicU64, lingers: bool, push: impl FnOnce(&mut Queue)) -> bool {
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
            dropped.fetch_add(1, Ordering::AcqRel);
            shared.dropped_total.fetch_add(1, Ordering::Relaxed);
            if !shared.overflowing.swap(true, Ordering::AcqRel) {
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
        shared.accepted.fetch_add(1, Ordering::Relaxed);
        if wake {
            shared.wake.notify_one();
        }
        true
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
        match self.flush_here(Take::All) {
            Some(outcome) => outcome,
            None => self.flush_by_thread().await,
        }
    }

    /// Hands a flush to the writer's thread and waits for its answer.
    async fn flush_by_thread(&self) -> Result<(), StoreError> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.ask(|queue| queue.flushes.push(Reply::Async(reply)))?;
        flush_outcome(answer.await.map_err(|_| StoreError::WriterStopped)?)
    }

    /// [`StoreWriter::flush`] for synchronous code (tests, shutdown paths, CLI verbs).
    /// Blocks the calling thread: not for use on an async executor.
    pub fn flush_blocking(&self) -> Result<(), StoreError> {
        if let Some(outcome) = self.flush_here(Take::All) {
            return outcome;
        }
        let (reply, answer) = mpsc::sync_channel(1);
        self.ask(|queue| queue.flushes.push(Reply::Blocking(reply)))?;
        flush_outcome(answer.recv().map_err(|_| StoreError::WriterStopped)?)
    }

    /// Waits until every history record queued before this call is committed, as
    /// [`StoreWriter::flush`] does for every record; audit records queued before it are
    /// committed by the thread within [`LINGER`]. This is what an answered context change
    /// waits for.
    pub async fn flush_history(&self) -> Result<(), StoreError> {
        match self.flush_here(Take::History) {
            Some(outcome) => outcome,
            None => self.flush_by_thread().await,
        }
    }

    /// Commits `take` in the calling thread if the connection is free within [`INLINE_WAIT`],
    /// the queue short and the database not locked by another process; `None` leaves the
    /// flush to the thread.
    fn flush_here(&self, take: Take) -> Option<Result<(), StoreError>> {
        let shared = &self.shared;
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
        self.ask(|queue| queue.prunes.push(Reply::Blocking(reply)))?;
        answer.recv().map_err(|_| StoreError::WriterStopped)?
    }

    /// Hands the thread a request and wakes it.
    fn ask(&self, request: impl FnOnce(&mut Queue)) -> Result<(), StoreError> {
        let mut queue = self.shared.queue();
        if queue.shutdown || self.shared.closed.load(Ordering::Acquire) {
            return Err(StoreError::WriterStopped);
        }
        request(&mut queue);
        drop(queue);
        self.shared.wake.notify_one();
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
        let s = &self.shared;
        WriterStats {
            accepted: s.accepted.load(Ordering::Relaxed),
            dropped: s.dropped_total.load(Ordering::Relaxed),
            committed: s.committed.load(Ordering::Relaxed),
            batches: s.batches.load(Ordering::Relaxed),
            lost: s.lost.load(Ordering::Relaxed),
            synced: s.synced.load(Ordering::Relaxed),
        }
    }
}

fn flush_outcome(outcome: Result<(), Unflushed>) -> Result<(), StoreError> {
    outcome.map_err(|why| match why {
        Unflushed::Lost(lost) => StoreError::WriteFailed { lost },
        Unflushed::Unwritable(problem) => StoreError::Unwritable(problem),
    })
}

/// What a commit takes from the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Take {
    /// Everything queued, and every flush waiting (a caller's flush, the last commit).
    All,
    /// The history records only (a caller's [`StoreWriter::flush_history`]).
    History,
    /// One batch, oldest first; the flushes waiting too if it empties the queue (the thread,
    /// which lets go of the connection between batches).
    Batch,
}

type Taken = (Vec<HistoryRecord>, Vec<AuditRecord>, Vec<FlushReply>);

impl Take {
    fn take_from(self, queue: &mut Queue) -> Taken {
        let history = match self {
            Take::All | Take::History => std::mem::take(&mut queue.history),
            Take::Batch => {
                let n = queue.history.len().min(BATCH_MAX);
                queue.history.drain(..n).collect()
            }
        };
        let audit = match self {
            Take::All => std::mem::take(&mut queue.audit),
            Take::History => Vec::new(),
            Take::Batch => {
                let n = queue.audit.len().min(BATCH_MAX - history.len());
                queue.audit.drain(..n).collect()
            }
        };
        let emptied = queue.len() == 0;
        if emptied {
            queue.since = None;
            queue.prompt = false;
        }
        // A flush waits for every record queued before it: it goes with the last of them.
        let flushes = match self {
            Take::All => std::mem::take(&mut queue.flushes),
            Take::Batch if emptied => std::mem::take(&mut queue.flushes),
            _ => Vec::new(),
        };
        (history, audit, flushes)
    }
}

/// How hard a commit tries when the database is locked by another process.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Attempt {
    /// Not at all: give the records back and let the thread commit them (a caller's flush,
    /// which must not wait on another process).
    Once,
    /// Wait out the busy timeout, and retry once after a failure (the thread).
    Patiently,
}

impl Attempt {
    /// Whether this failure hands the records back rather than losing them: nothing was
    /// written, and an [`Attempt::Once`] does not wait for another process's lock.
    fn gives_back(self, error: &rusqlite::Error) -> bool {
        self == Attempt::Once && error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
    }
}

/// The writer's connection and the bookkeeping of what it failed to write: whoever commits
/// holds it.
struct Committer {
    conn: Connection,
    /// The database file, to reconnect after it was read-only; `None` in memory.
    path: Option<PathBuf>,
    /// Records that failed to commit since a flush last reported it.
    lost_since_flush: u64,
    /// Records that failed to commit and are not yet in the audit trail.
    lost_unreported: u64,
    /// The pause before the thread's next retry while the store cannot write.
    backoff: Duration,
    /// Since when the store cannot write, if it cannot.
    unwritable: Option<Unwritable>,
}

/// An episode of the store being unable to write, told in the audit trail when it ends.
struct Unwritable {
    problem: WriteProblem,
    since_millis: i64,
}

impl Unwritable {
    fn since_now(problem: WriteProblem) -> Self {
        Unwritable {
            problem,
            since_millis: crate::clock::now_millis(),
        }
    }
}

/// What became of the records a commit took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Committed {
    Done,
    /// An [`Attempt::Once`] found the database locked: records and flushes are back in the
    /// queue, for the thread.
    GivenBack,
    /// The store cannot write: the records are back at the front of the queue, in order, and
    /// the flushes taken with them answered.
    Kept(WriteProblem),
}

/// Why a batch was not written, with nothing of it lost.
enum Kept {
    /// Locked by another process, and an [`Attempt::Once`] does not wait.
    Busy,
    Unwritable(WriteProblem),
}

impl Committer {
    /// Commits what `take` names, in batches, and answers the flushes taken with it.
    fn commit_queued(&mut self, shared: &Shared, take: Take, attempt: Attempt) -> Committed {
        let (mut history, mut audit, flushes) = take.take_from(&mut shared.queue());
        // Also with nothing queued, so that an earlier failure is reported: while the store
        // cannot write, that report is the write that finds out whether it can again.
        while !history.is_empty()
            || !audit.is_empty()
            || self.lost_unreported > 0
            || self.unwritable.is_some()
        {
            let h = history.len().min(BATCH_MAX);
            let a = audit.len().min(BATCH_MAX - h);
            if let Err(kept) = self.commit(shared, &history[..h], &audit[..a], attempt) {
                // Nothing of this batch was written: back to the front of the queue, in order.
                let mut queue = shared.queue();
                history.append(&mut queue.history);
                audit.append(&mut queue.audit);
                queue.history = history;
                queue.audit = audit;
                queue.since.get_or_insert_with(Instant::now);
                return match kept {
                    Kept::Busy => {
                        queue.flushes.extend(flushes);
                        drop(queue);
                        shared.wake.notify_one();
                        Committed::GivenBack
                    }
                    Kept::Unwritable(problem) => {
                        let wake = attempt == Attempt::Once && queue.retry_at.is_none();
                        if attempt == Attempt::Patiently {
                            queue.retry_at = Some(Instant::now() + self.backoff);
                            self.backoff = (self.backoff * 2).min(RETRY_AT_MOST);
                        }
                        // Every flush waiting is answered now, also those a batch did not
                        // take: none can be met until the store writes again.
                        let waiting = std::mem::take(&mut queue.flushes);
                        drop(queue);
                        for waiter in flushes.into_iter().chain(waiting) {
                            waiter.send(Err(Unflushed::Unwritable(problem)));
                        }
                        if wake {
                            // The thread takes over the retrying.
                            shared.wake.notify_one();
                        }
                        Committed::Kept(problem)
                    }
                };
            }
            history.drain(..h);
            audit.drain(..a);
            if history.is_empty() && audit.is_empty() {
                // Done; had this commit failed, the next one reports it.
                break;
            }
        }
        self.report_overflow(shared, attempt);
        if !flushes.is_empty() {
            let lost = self.take_lost();
            for waiter in flushes {
                waiter.send(lost);
            }
        }
        Committed::Done
    }

    /// What the next flush reports: whether records were lost since the last report.
    fn take_lost(&mut self) -> Result<(), Unflushed> {
        match std::mem::take(&mut self.lost_since_flush) {
            0 => Ok(()),
            lost => Err(Unflushed::Lost(lost)),
        }
    }

    /// Commits one batch. `Err` when nothing of it was written and it must be kept: a lock an
    /// [`Attempt::Once`] does not wait for, or a [`WriteProblem`]. A failure of the records
    /// themselves is retried once, then counted as lost, logged and reported.
    fn commit(
        &mut self,
        shared: &Shared,
        history: &[HistoryRecord],
        audit: &[AuditRecord],
        attempt: Attempt,
    ) -> Result<(), Kept> {
        if attempt == Attempt::Patiently {
            self.reconnect_if_read_only()?;
        }
        let mut report = Vec::new();
        if self.lost_unreported > 0 {
            report.push(AuditRecord::new(
                AuditKind::StoreWriteFailed,
                "hub",
                format!(
                    "{} records could not be written to the store (see the log for why)",
                    self.lost_unreported
                ),
            ));
        }
        if let Some(episode) = &self.unwritable {
            report.push(AuditRecord::new(
                AuditKind::StoreWriteFailed,
                "hub",
                format!(
                    "history could not be written from {} ({}); nothing was dropped: \
                     what waited is written now",
                    crate::clock::rfc3339(episode.since_millis),
                    episode.problem
                ),
            ));
        }
        let count = (history.len() + audit.len()) as u64;
        let mut outcome = self.transaction(attempt, |conn| commit(conn, history, audit, &report));
        if let Err(e) = &outcome {
            if attempt.gives_back(e) {
                return Err(Kept::Busy);
            }
            if let Some(problem) = WriteProblem::of(e) {
                tracing::debug!(error = %e, records = count, "store commit failed; kept for later");
                self.unwritable
                    .get_or_insert_with(|| Unwritable::since_now(problem))
                    .problem = problem;
                shared.set_problem(Some(problem));
                return Err(Kept::Unwritable(problem));
            }
            tracing::warn!(error = %e, records = count, "store commit failed; retrying once");
            if attempt == Attempt::Patiently {
                std::thread::sleep(RETRY_AFTER);
            }
            outcome = self.transaction(attempt, |conn| commit(conn, history, audit, &report));
        }
        match outcome {
            Ok(()) => {
                self.committed(shared);
                self.lost_unreported = 0;
                self.recovered(shared);
                shared.committed.fetch_add(count, Ordering::Relaxed);
                shared.batches.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "store commit failed; records lost");
                self.lost_unreported += count;
                self.lost_since_flush += count;
                shared.lost.fetch_add(count, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// A commit went through: whatever kept the store from writing has passed.
    fn recovered(&mut self, shared: &Shared) {
        if self.unwritable.take().is_some() {
            self.backoff = RETRY_FIRST;
            shared.queue().retry_at = None;
            shared.set_problem(None);
        }
    }

    /// A connection SQLite opened read-only stays so: after the file was made writable, only a
    /// new one can write.
    fn reconnect_if_read_only(&mut self) -> Result<(), Kept> {
        if !self
            .unwritable
            .as_ref()
            .is_some_and(|u| u.problem == WriteProblem::ReadOnly)
        {
            return Ok(());
        }
        let Some(path) = &self.path else {
            return Ok(());
        };
        let still = Err(Kept::Unwritable(WriteProblem::ReadOnly));
        let Ok(conn) = crate::schema::connect(path) else {
            return still;
        };
        if conn.is_readonly(rusqlite::MAIN_DB).unwrap_or(true)
            || conn.pragma_update(None, "wal_autocheckpoint", 0).is_err()
        {
            return still;
        }
        self.conn = conn;
        // Writable again once the commit that follows goes through.
        Ok(())
    }

    /// Runs `f` in the way `attempt` allows: an [`Attempt::Once`] with the busy timeout off, so
    /// that a lock held by another process fails at once instead of holding up the caller.
    fn transaction(
        &mut self,
        attempt: Attempt,
        f: impl FnOnce(&mut Connection) -> rusqlite::Result<()>,
    ) -> rusqlite::Result<()> {
        match attempt {
            Attempt::Patiently => f(&mut self.conn),
            Attempt::Once => {
                self.conn.busy_timeout(Duration::ZERO)?;
                let outcome = f(&mut self.conn);
                self.conn.busy_timeout(crate::schema::BUSY_TIMEOUT)?;
                outcome
            }
        }
    }

    /// Notes a commit the disk has not seen yet, and wakes the thread if it would sleep past
    /// the sync.
    fn committed(&mut self, shared: &Shared) {
        let mut queue = shared.queue();
        if queue.sync_due.is_none() {
            let due = Instant::now() + SYNC_WITHIN;
            queue.sync_due = Some(due);
            if queue.sleeps_past(due) {
                drop(queue);
                shared.wake.notify_one();
            }
        }
    }

    /// Writes one `StoreOverflow` row for the records dropped since the last one.
    fn report_overflow(&mut self, shared: &Shared, attempt: Attempt) {
        let history = shared.dropped_history.swap(0, Ordering::AcqRel);
        let audit = shared.dropped_audit.swap(0, Ordering::AcqRel);
        if history + audit == 0 {
            return;
        }
        shared.overflowing.store(false, Ordering::Release);
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
        match self.transaction(attempt, |conn| {
            commit(conn, &[], std::slice::from_ref(&record), &[])
        }) {
            Ok(()) => self.committed(shared),
            Err(e) => {
                // Put the counts back so the next attempt reports them.
                tracing::error!(error = %e, "could not record the store overflow; will retry");
                shared.dropped_history.fetch_add(history, Ordering::AcqRel);
                shared.dropped_audit.fetch_add(audit, Ordering::AcqRel);
            }
        }
    }
}

/// What the thread was woken for.
#[derive(Default)]
struct Work {
    commit: bool,
    sync: bool,
    prunes: Vec<Reply<Result<PruneReport, StoreError>>>,
    shutdown: bool,
}

/// The writer's thread: commits what lingered, syncs the WAL, prunes, and answers the flushes
/// a caller could not commit itself.
struct Worker {
    shared: Arc<Shared>,
    policy: Policy,
    prune_interval: Duration,
    prune: Option<retention::Run>,
    prune_waiters: Vec<Reply<Result<PruneReport, StoreError>>>,
    next_prune: Option<Instant>,
    disk: Disk,
}

/// What brings commits to the disk, used by the thread alone and never under the connection's
/// lock, so that a flush never waits for an fsync.
struct Disk {
    /// The database file; `None` for an in-memory database, which has no disk to reach.
    path: Option<PathBuf>,
    /// The WAL, opened on first sync: fsync on any handle of a file flushes all of it.
    wal: Option<std::fs::File>,
    /// A connection for checkpoints: a passive checkpoint copies the WAL into the database
    /// while commits go on.
    checkpointer: Option<Connection>,
}

impl Disk {
    /// Syncs the WAL, and with it every commit so far, to the disk; folds it into the database
    /// once it has grown past [`crate::schema::WAL_LIMIT_BYTES`].
    fn sync(&mut self, shared: &Shared) {
        let Some(path) = &self.path else {
            return;
        };
        if self.wal.is_none() {
            let mut wal = path.clone().into_os_string();
            wal.push("-wal");
            // Write access: Windows flushes only through a handle that may write.
            self.wal = std::fs::OpenOptions::new().write(true).open(wal).ok();
        }
        let wal_bytes = self
            .wal
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .map(|m| m.len());
        match self.wal.as_ref().map(std::fs::File::sync_data) {
            Some(Ok(())) => {
                shared.synced.fetch_add(1, Ordering::Relaxed);
            }
            Some(Err(error)) => {
                // The commits stay safe from a crash of Lockstep; the checkpoint syncs them.
                tracing::warn!(%error, "could not sync the store's WAL to the disk");
            }
            None => tracing::warn!("could not open the store's WAL to sync it"),
        }
        if wal_bytes.is_some_and(|bytes| bytes <= crate::schema::WAL_LIMIT_BYTES) {
            return;
        }
        if self.checkpointer.is_none() {
            match crate::schema::connect(path) {
                Ok(conn) => self.checkpointer = Some(conn),
                Err(error) => tracing::warn!(%error, "could not open the store for checkpoints"),
            }
        }
        if let Some(conn) = &self.checkpointer
            && let Err(error) = retention::run_to_end(conn, "PRAGMA wal_checkpoint(PASSIVE)")
        {
            tracing::warn!(%error, "store checkpoint failed; the WAL grows until one succeeds");
        }
    }
}

impl Worker {
    fn new(shared: Arc<Shared>, config: Config, disk: Disk) -> Self {
        // The first pass catches up on whatever expired while the agent was off; shortly after
        // start rather than at once, so it does not compete with start-up.
        let first = config.prune_interval.min(FIRST_PRUNE_AFTER);
        let next_prune = config.policy.is_active().then(|| Instant::now() + first);
        Worker {
            shared,
            policy: config.policy,
            prune_interval: config.prune_interval,
            prune: None,
            prune_waiters: Vec::new(),
            next_prune,
            disk,
        }
    }

    fn run(mut self) {
        let shared = self.shared.clone();
        loop {
            let work = self.next_work();
            if !work.prunes.is_empty() {
                self.prune_waiters.extend(work.prunes);
                self.prune.get_or_insert_with(retention::Run::default);
            }
            if work.commit {
                self.commit_in_batches();
            }
            if work.sync {
                self.disk.sync(&shared);
            }
            let mut connection = shared.connection();
            if work.shutdown {
                self.stop(&mut connection);
                return;
            }
            self.prune_step(&mut connection);
        }
    }

    /// Commits the queue a batch at a time, handing the connection to any flush waiting for it
    /// between batches.
    fn commit_in_batches(&self) {
        let shared = &self.shared;
        loop {
            let mut connection = shared.connection();
            // The thread waits out a lock (up to the busy timeout); a store that cannot write
            // keeps the records, and the thread tries again at `retry_at`.
            let committed = connection.commit_queued(shared, Take::Batch, Attempt::Patiently);
            parking_lot::MutexGuard::unlock_fair(connection);
            if committed != Committed::Done {
                return;
            }
            let queue = shared.queue();
            if queue.len() == 0 && queue.flushes.is_empty() {
                return;
            }
        }
    }

    /// Sleeps until something is due: a flush, a prune, lingering records, a sync, shutdown.
    fn next_work(&self) -> Work {
        let mut queue = self.shared.queue();
        loop {
            let now = Instant::now();
            let linger_due = queue.since.map(|since| since + LINGER);
            let prune_due = self.prune.is_some() || self.next_prune.is_some_and(|at| at <= now);
            // While the store cannot write, commits wait for the next retry, whatever is due.
            let holding = queue.retry_at.is_some_and(|at| at > now);
            let work = Work {
                commit: !holding
                    && (queue.retry_at.is_some()
                        || !queue.flushes.is_empty()
                        || queue.prompt
                        || queue.len() >= self.shared.wake_at
                        || linger_due.is_some_and(|at| at <= now)),
                sync: queue.sync_due.is_some_and(|at| at <= now),
                prunes: std::mem::take(&mut queue.prunes),
                shutdown: queue.shutdown,
            };
            if work.commit || work.sync || work.shutdown || prune_due || !work.prunes.is_empty() {
                if work.sync {
                    queue.sync_due = None;
                }
                queue.sleeping_until = None;
                return work;
            }
            let until = [
                linger_due.filter(|_| !holding),
                queue.retry_at,
                queue.sync_due,
                self.next_prune,
            ]
            .into_iter()
            .flatten()
            .min();
            queue.sleeping_until = Some(until);
            queue = match until {
                Some(at) => {
                    let wait = at.saturating_duration_since(now);
                    self.shared
                        .wake
                        .wait_timeout(queue, wait)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0
                }
                None => self
                    .shared
                    .wake
                    .wait(queue)
                    .unwrap_or_else(PoisonError::into_inner),
            };
        }
    }

    /// Commits whatever slipped in, answers what is left, and tidies the files.
    fn stop(&mut self, connection: &mut Committer) {
        self.shared.closed.store(true, Ordering::Release);
        let mut lost = 0;
        if let Committed::Kept(problem) =
            connection.commit_queued(&self.shared, Take::All, Attempt::Patiently)
        {
            let mut queue = self.shared.queue();
            lost = (queue.len()) as u64;
            queue.history.clear();
            queue.audit.clear();
            tracing::error!(
                records = lost,
                "stopping while history cannot be written ({problem}): these records are lost"
            );
        }
        for waiter in self.prune_waiters.drain(..) {
            waiter.send(Err(StoreError::WriterStopped));
        }
        for waiter in std::mem::take(&mut self.shared.queue().prunes) {
            waiter.send(Err(StoreError::WriterStopped));
        }
        self.shared
            .lost_unflushed
            .store(connection.lost_since_flush + lost, Ordering::Release);
        // Folds the WAL back into the main file so a clean stop leaves one file behind.
        self.disk.checkpointer = None;
        let conn = &connection.conn;
        let tidy = retention::run_to_end(conn, "PRAGMA optimize")
            .and_then(|()| retention::run_to_end(conn, "PRAGMA wal_checkpoint(TRUNCATE)"));
        if let Err(e) = tidy {
            tracing::warn!(error = %e, "store checkpoint on shutdown failed");
        }
    }

    fn prune_step(&mut self, connection: &mut Committer) {
        if self.prune.is_none() && self.next_prune.is_some_and(|at| Instant::now() >= at) {
            self.prune = Some(retention::Run::default());
        }
        let Some(run) = self.prune.as_mut() else {
            return;
        };
        let outcome = run.step(&mut connection.conn, &self.policy);
        let finished = match outcome {
            Ok(true) => return,
            Ok(false) => Ok(std::mem::take(&mut run.report)),
            Err(e) => Err(e),
        };
        self.prune = None;
        if self.policy.is_active() {
            self.next_prune = Some(Instant::now() + self.prune_interval);
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
                    let record = pruned_record(&report, &self.policy);
                    // A patient commit never hands the records back.
                    let _ = connection.commit(&self.shared, &[], &[record], Attempt::Patiently);
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

/// One transaction for the whole batch: all of it or none of it. `report` is the writer's own
/// account of earlier failures, appended after the batch's audit rows.
fn commit(
    conn: &mut Connection,
    history: &[HistoryRecord],
    audit: &[AuditRecord],
    report: &[AuditRecord],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in history {
        history::insert(&tx, record)?;
    }
    if !audit.is_empty() {
        audit::append(&tx, audit::coalesce_acknowledgements(audit).iter())?;
    }
    if !report.is_empty() {
        audit::append(&tx, report)?;
    }
    tx.commit()
}
