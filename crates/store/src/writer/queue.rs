//! What waits to be written, the answers owed to those waiting, and what a commit takes.

use super::*;

/// Where the writer thread sends an answer: a blocked thread or an awaiting task.
pub(super) enum Reply<T> {
    Blocking(mpsc::SyncSender<T>),
    Async(tokio::sync::oneshot::Sender<T>),
}

impl<T> Reply<T> {
    pub(super) fn send(self, value: T) {
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
pub(super) enum Unflushed {
    /// Records the database refused since the last flush; they are gone.
    Lost(u64),
    /// The store cannot write now; the records are kept and written later.
    Unwritable(WriteProblem),
}

pub(super) type FlushReply = Reply<Result<(), Unflushed>>;

/// What waits to be written, and what the thread is asked to do.
#[derive(Default)]
pub(super) struct Queue {
    pub(super) history: Vec<HistoryRecord>,
    /// How many of `history`, from the front, are in the pending file already.
    pub(super) journaled: usize,
    pub(super) audit: Vec<AuditRecord>,
    /// When the oldest record no one has committed yet was queued.
    pub(super) since: Option<Instant>,
    /// A record that must not linger is queued.
    pub(super) prompt: bool,
    pub(super) flushes: Vec<FlushReply>,
    pub(super) prunes: Vec<Reply<Result<PruneReport, StoreError>>>,
    /// While the store cannot write: when the thread tries again.
    pub(super) retry_at: Option<Instant>,
    /// When the oldest commit not yet synced to the disk must be.
    pub(super) sync_due: Option<Instant>,
    /// Until when the thread sleeps (`None`: until woken); `Some` only while it waits.
    pub(super) sleeping_until: Option<Option<Instant>>,
    pub(super) shutdown: bool,
}

impl Queue {
    pub(super) fn len(&self) -> usize {
        self.history.len() + self.audit.len()
    }

    /// Whether the thread must be woken to meet `due`.
    pub(super) fn sleeps_past(&self, due: Instant) -> bool {
        match self.sleeping_until {
            Some(Some(until)) => until > due,
            Some(None) => true,
            None => false,
        }
    }
}

/// What a commit takes from the queue.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Take {
    /// Everything queued, and every flush waiting (a caller's flush, the last commit).
    All,
    /// The history records only (a caller's [`StoreWriter::flush_history`]).
    History,
    /// One batch, oldest first; the flushes waiting too if it empties the queue (the thread,
    /// which lets go of the connection between batches).
    Batch,
}

/// What a commit took from the queue.
pub(super) struct Taken {
    pub(super) history: Vec<HistoryRecord>,
    pub(super) audit: Vec<AuditRecord>,
    /// The flushes answered once these are committed.
    pub(super) flushes: Vec<FlushReply>,
    /// How many of `history`, from the front, are in the pending file.
    pub(super) journaled: usize,
}

impl Take {
    pub(super) fn take_from(self, queue: &mut Queue) -> Taken {
        let history = match self {
            Take::All | Take::History => std::mem::take(&mut queue.history),
            Take::Batch => {
                let n = queue.history.len().min(BATCH_MAX);
                queue.history.drain(..n).collect()
            }
        };
        let journaled = queue.journaled.min(history.len());
        queue.journaled -= journaled;
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
        Taken {
            history,
            audit,
            flushes,
            journaled,
        }
    }
}
