//! Committing: the writer's connection, whoever holds it, and what it failed to write.

use super::*;

/// How hard a commit tries when the database is locked by another process.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Attempt {
    /// Not at all: give the records back and let the thread commit them (a caller's flush,
    /// which must not wait on another process).
    Once,
    /// Wait out the busy timeout, and retry once after a failure (the thread).
    Patiently,
}

impl Attempt {
    /// Whether this failure hands the records back rather than losing them: nothing was
    /// written, and an [`Attempt::Once`] does not wait for another process's lock.
    pub(super) fn gives_back(self, error: &rusqlite::Error) -> bool {
        self == Attempt::Once && error.sqlite_error_code() == Some(ErrorCode::DatabaseBusy)
    }
}

/// The writer's connection and the bookkeeping of what it failed to write: whoever commits
/// holds it.
pub(super) struct Committer {
    pub(super) conn: Connection,
    /// The database file, to reconnect after it was read-only; `None` in memory.
    pub(super) path: Option<PathBuf>,
    /// Records that failed to commit since a flush last reported it.
    pub(super) lost_since_flush: u64,
    /// Records that failed to commit and are not yet in the audit trail.
    pub(super) lost_unreported: u64,
    /// The pause before the thread's next retry while the store cannot write.
    pub(super) backoff: Duration,
    /// Since when the store cannot write, if it cannot.
    pub(super) unwritable: Option<Unwritable>,
}

/// An episode of the store being unable to write, told in the audit trail when it ends.
pub(super) struct Unwritable {
    pub(super) problem: WriteProblem,
    pub(super) since_millis: i64,
}

impl Unwritable {
    pub(super) fn since_now(problem: WriteProblem) -> Self {
        Unwritable {
            problem,
            since_millis: crate::clock::now_millis(),
        }
    }
}

/// What became of the records a commit took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Committed {
    Done,
    /// An [`Attempt::Once`] found the database locked: records and flushes are back in the
    /// queue, for the thread.
    GivenBack,
    /// The store cannot write: the records are back at the front of the queue, in order, and
    /// the flushes taken with them answered.
    Kept(WriteProblem),
}

/// Why a batch was not written, with nothing of it lost.
pub(super) enum Kept {
    /// Locked by another process, and an [`Attempt::Once`] does not wait.
    Busy,
    Unwritable(WriteProblem),
}

impl Committer {
    /// Commits what `take` names, in batches, and answers the flushes taken with it.
    pub(super) fn commit_queued(
        &mut self,
        shared: &Shared,
        take: Take,
        attempt: Attempt,
    ) -> Committed {
        // Taken under the pending file's lock: a flush that holds it next knows whether
        // history records outside the file are on their way to the database (and then waits
        // for this commit instead of writing the file).
        let Some(journal) = &shared.journal else {
            let taken = take.take_from(&mut shared.queue());
            return self.commit_taken(shared, taken, attempt);
        };
        let taken = {
            let mut file = journal.lock();
            let taken = take.take_from(&mut shared.queue());
            file.unfiled_in_flight = taken.journaled < taken.history.len();
            taken
        };
        let committed = self.commit_taken(shared, taken, attempt);
        journal.lock().unfiled_in_flight = false;
        committed
    }

    fn commit_taken(&mut self, shared: &Shared, taken: Taken, attempt: Attempt) -> Committed {
        let Taken {
            mut history,
            mut audit,
            flushes,
            mut journaled,
        } = taken;
        // Also with nothing queued, so that an earlier failure is reported: while the store
        // cannot write, that report is the write that finds out whether it can again.
        while !history.is_empty()
            || !audit.is_empty()
            || self.lost_unreported > 0
            || self.unwritable.is_some()
        {
            let h = history.len().min(BATCH_MAX);
            let a = audit.len().min(BATCH_MAX - h);
            let filed = h.min(journaled);
            let watermark = shared
                .journal
                .as_ref()
                .and_then(|j| j.lock().watermark_after(filed));
            let batch = Batch {
                history: &history[..h],
                audit: &audit[..a],
                watermark,
            };
            if let Err(kept) = self.commit(shared, batch, attempt) {
                // Nothing of this batch was written: back to the front of the queue, in order.
                let left = Taken {
                    history,
                    audit,
                    flushes,
                    journaled,
                };
                return self.give_back(shared, left, kept, attempt);
            }
            if let Some(journal) = &shared.journal {
                journal.lock().committed(filed);
            }
            journaled = journaled.saturating_sub(h);
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

    /// Puts records a commit could not write back at the front of the queue, in order, and
    /// answers or hands on the flushes taken with them.
    fn give_back(
        &mut self,
        shared: &Shared,
        left: Taken,
        kept: Kept,
        attempt: Attempt,
    ) -> Committed {
        let Taken {
            mut history,
            mut audit,
            flushes,
            journaled,
        } = left;
        // Under the pending file's lock, as every change to what leads the queue: a flush
        // that read the queue before this must not set its count past what it saw.
        let file = shared.journal.as_ref().map(|j| j.lock());
        let mut queue = shared.queue();
        history.append(&mut queue.history);
        audit.append(&mut queue.audit);
        queue.history = history;
        queue.audit = audit;
        // The file's records lead: those given back that are in it come first, and either all
        // of them are and the queue's own count follows, or the queue had none in the file.
        queue.journaled += journaled;
        queue.since.get_or_insert_with(Instant::now);
        drop(file);
        match kept {
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
                // Every flush waiting is answered now, also those a batch did not take: none
                // can be met until the store writes again.
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
        }
    }

    /// What the next flush reports: whether records were lost since the last report.
    pub(super) fn take_lost(&mut self) -> Result<(), Unflushed> {
        match std::mem::take(&mut self.lost_since_flush) {
            0 => Ok(()),
            lost => Err(Unflushed::Lost(lost)),
        }
    }

    /// Commits one batch. `Err` when nothing of it was written and it must be kept: a lock an
    /// [`Attempt::Once`] does not wait for, or a [`WriteProblem`]. A failure of the records
    /// themselves is retried once, then counted as lost, logged and reported.
    pub(super) fn commit(
        &mut self,
        shared: &Shared,
        batch: Batch<'_>,
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
        let count = (batch.history.len() + batch.audit.len()) as u64;
        let mut outcome = self.transaction(attempt, |conn| commit(conn, batch, &report));
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
            outcome = self.transaction(attempt, |conn| commit(conn, batch, &report));
        }
        match outcome {
            Ok(()) => {
                self.committed(shared);
                self.lost_unreported = 0;
                self.recovered(shared);
                shared.counters.committed(count);
            }
            Err(e) => {
                tracing::error!(error = %e, records = count, "store commit failed; records lost");
                self.lost_unreported += count;
                self.lost_since_flush += count;
                shared.counters.lost(count);
            }
        }
        Ok(())
    }

    /// A commit went through: whatever kept the store from writing has passed.
    pub(super) fn recovered(&mut self, shared: &Shared) {
        if self.unwritable.take().is_some() {
            self.backoff = RETRY_FIRST;
            shared.queue().retry_at = None;
            shared.set_problem(None);
        }
    }

    /// A connection SQLite opened read-only stays so: after the file was made writable, only a
    /// new one can write.
    pub(super) fn reconnect_if_read_only(&mut self) -> Result<(), Kept> {
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
    pub(super) fn transaction(
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
    pub(super) fn committed(&mut self, shared: &Shared) {
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
    pub(super) fn report_overflow(&mut self, shared: &Shared, attempt: Attempt) {
        let Some((history, audit)) = shared.overflow.take() else {
            return;
        };
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
            commit(conn, Batch::audit(std::slice::from_ref(&record)), &[])
        }) {
            Ok(()) => self.committed(shared),
            Err(e) => {
                // Put the counts back so the next attempt reports them.
                tracing::error!(error = %e, "could not record the store overflow; will retry");
                shared.overflow.put_back(history, audit);
            }
        }
    }
}

/// What one transaction writes.
#[derive(Clone, Copy)]
pub(super) struct Batch<'a> {
    pub(super) history: &'a [HistoryRecord],
    pub(super) audit: &'a [AuditRecord],
    /// The pending file's last line among `history`, if any is filed: the database's
    /// watermark moves to it with the rows.
    pub(super) watermark: Option<u64>,
}

impl<'a> Batch<'a> {
    pub(super) fn audit(audit: &'a [AuditRecord]) -> Self {
        Batch {
            history: &[],
            audit,
            watermark: None,
        }
    }
}

/// One transaction for the whole batch: all of it or none of it. `report` is the writer's own
/// account of earlier failures, appended after the batch's audit rows.
pub(super) fn commit(
    conn: &mut Connection,
    batch: Batch<'_>,
    report: &[AuditRecord],
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in batch.history {
        history::insert(&tx, record)?;
    }
    if let Some(seq) = batch.watermark {
        crate::journal::set_watermark(&tx, seq)?;
    }
    if !batch.audit.is_empty() {
        audit::append(&tx, audit::coalesce_acknowledgements(batch.audit).iter())?;
    }
    if !report.is_empty() {
        audit::append(&tx, report)?;
    }
    tx.commit()
}
