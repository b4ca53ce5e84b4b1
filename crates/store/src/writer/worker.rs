//! The writer's thread: commits what lingered, syncs the WAL, prunes, and answers the
//! flushes a caller could not commit itself.

use super::*;

/// What the thread was woken for.
#[derive(Default)]
pub(super) struct Work {
    pub(super) commit: bool,
    pub(super) sync: bool,
    pub(super) prunes: Vec<Reply<Result<PruneReport, StoreError>>>,
    pub(super) shutdown: bool,
}

/// The writer's thread: commits what lingered, syncs the WAL, prunes, and answers the flushes
/// a caller could not commit itself.
pub(super) struct Worker {
    pub(super) shared: Arc<Shared>,
    pub(super) policy: Policy,
    pub(super) prune_interval: Duration,
    pub(super) prune: Option<retention::Run>,
    pub(super) prune_waiters: Vec<Reply<Result<PruneReport, StoreError>>>,
    pub(super) next_prune: Option<Instant>,
    pub(super) disk: Disk,
}

/// What brings commits to the disk, used by the thread alone and never under the connection's
/// lock, so that a flush never waits for an fsync.
pub(super) struct Disk {
    /// The database file; `None` for an in-memory database, which has no disk to reach.
    pub(super) path: Option<PathBuf>,
    /// The WAL, opened on first sync: fsync on any handle of a file flushes all of it.
    pub(super) wal: Option<std::fs::File>,
    /// A connection for checkpoints: a passive checkpoint copies the WAL into the database
    /// while commits go on.
    pub(super) checkpointer: Option<Connection>,
}

impl Disk {
    /// Syncs the WAL, and with it every commit so far, to the disk; folds it into the database
    /// once it has grown past [`crate::schema::WAL_LIMIT_BYTES`].
    pub(super) fn sync(&mut self, shared: &Shared) {
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
        // What is committed before the sync is on the disk after it: those lines of the
        // pending file have served.
        let served = shared.journal.as_ref().map(|j| j.lock().committed_bytes());
        match self.wal.as_ref().map(std::fs::File::sync_data) {
            Some(Ok(())) => {
                shared.counters.synced();
                if let (Some(journal), Some(served)) = (&shared.journal, served) {
                    journal.lock().cut(served);
                }
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
    pub(super) fn new(shared: Arc<Shared>, config: Config, disk: Disk) -> Self {
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

    pub(super) fn run(mut self) {
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
    pub(super) fn commit_in_batches(&self) {
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
    pub(super) fn next_work(&self) -> Work {
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
    pub(super) fn stop(&mut self, connection: &mut Committer) {
        self.shared.closed.store(true, Ordering::Release);
        let mut lost = 0;
        if let Committed::Kept(problem) =
            connection.commit_queued(&self.shared, Take::All, Attempt::Patiently)
        {
            let mut queue = self.shared.queue();
            // Those in the pending file are not lost: the next open commits them.
            lost = (queue.len() - queue.journaled) as u64;
            queue.history.clear();
            queue.journaled = 0;
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
        self.disk.sync(&self.shared);
        // Folds the WAL back into the main file so a clean stop leaves one file behind.
        self.disk.checkpointer = None;
        let conn = &connection.conn;
        let tidy = retention::run_to_end(conn, "PRAGMA optimize")
            .and_then(|()| retention::run_to_end(conn, "PRAGMA wal_checkpoint(TRUNCATE)"));
        if let Err(e) = tidy {
            tracing::warn!(error = %e, "store checkpoint on shutdown failed");
        }
        if let Some(journal) = &self.shared.journal {
            journal.lock().close();
        }
    }

    pub(super) fn prune_step(&mut self, connection: &mut Committer) {
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
                    let _ = connection.commit(
                        &self.shared,
                        Batch::audit(std::slice::from_ref(&record)),
                        Attempt::Patiently,
                    );
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

pub(super) fn pruned_record(report: &PruneReport, policy: &Policy) -> AuditRecord {
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
