//! What the writer counts: the figures [`WriterStats`] reports, and the dropped records the
//! audit trail is still to be told of.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

/// The counts behind [`WriterStats`], kept as they happen.
#[derive(Default)]
pub(super) struct Counters {
    accepted: AtomicU64,
    /// Every record not taken: a full queue, or the writer stopped.
    dropped: AtomicU64,
    /// Records offered after the writer stopped.
    refused: AtomicU64,
    committed: AtomicU64,
    batches: AtomicU64,
    lost: AtomicU64,
    synced: AtomicU64,
}

impl Counters {
    pub(super) fn accepted(&self) {
        self.accepted.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn dropped(&self) {
        self.dropped.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a record offered after the writer stopped; returns how many came before it.
    pub(super) fn refused(&self) -> u64 {
        self.dropped();
        self.refused.fetch_add(1, Ordering::AcqRel)
    }

    /// One transaction committed `records`.
    pub(super) fn committed(&self, records: u64) {
        self.committed.fetch_add(records, Ordering::Relaxed);
        self.batches.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn lost(&self, records: u64) {
        self.lost.fetch_add(records, Ordering::Relaxed);
    }

    pub(super) fn synced(&self) {
        self.synced.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn snapshot(&self) -> WriterStats {
        WriterStats {
            accepted: self.accepted.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            committed: self.committed.load(Ordering::Relaxed),
            batches: self.batches.load(Ordering::Relaxed),
            lost: self.lost.load(Ordering::Relaxed),
            synced: self.synced.load(Ordering::Relaxed),
        }
    }
}

/// Which queue a dropped record was meant for.
#[derive(Clone, Copy)]
pub(super) enum RecordKind {
    History,
    Audit,
}

/// Records dropped for a full queue and not yet told in the audit trail, by kind. An episode of
/// drops runs from the first to the report that tells them.
#[derive(Default)]
pub(super) struct Overflow {
    history: AtomicU64,
    audit: AtomicU64,
    /// Set while drops go unreported, so the error is logged once per episode.
    episode: AtomicBool,
}

impl Overflow {
    /// Counts a dropped record; `true` for the first of an episode.
    pub(super) fn dropped(&self, kind: RecordKind) -> bool {
        let count = match kind {
            RecordKind::History => &self.history,
            RecordKind::Audit => &self.audit,
        };
        count.fetch_add(1, Ordering::AcqRel);
        !self.episode.swap(true, Ordering::AcqRel)
    }

    /// Takes the counts to report, `(history, audit)`, ending the episode; `None` when nothing
    /// was dropped since the last report.
    pub(super) fn take(&self) -> Option<(u64, u64)> {
        let history = self.history.swap(0, Ordering::AcqRel);
        let audit = self.audit.swap(0, Ordering::AcqRel);
        if history + audit == 0 {
            return None;
        }
        self.episode.store(false, Ordering::Release);
        Some((history, audit))
    }

    /// Puts back counts whose report could not be written, for the next attempt.
    pub(super) fn put_back(&self, history: u64, audit: u64) {
        self.history.fetch_add(history, Ordering::AcqRel);
        self.audit.fetch_add(audit, Ordering::AcqRel);
    }
}
