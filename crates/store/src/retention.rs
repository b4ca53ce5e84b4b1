//! Retention: removing history and audit rows by age and under a size cap, in small steps.
//!
//! Each step is one short transaction touching at most [`CHUNK`] rows per table, so the writer
//! can commit queued records between steps and a prune of a year's rows never stalls them.

use crate::audit;
use crate::clock;
use rusqlite::{Connection, TransactionBehavior};
use serde::Serialize;

/// Rows per table per step: a few milliseconds of work.
const CHUNK: usize = 1000;

/// Once over the cap, trim to this share of it, so the next few records don't trigger another
/// round at once.
const SIZE_TARGET_PERCENT: u64 = 90;

const DAY_MS: i64 = 86_400_000;

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    pub history_removed: u64,
    pub audit_removed: u64,
    /// Whether the size cap (rather than age alone) removed rows.
    pub size_capped: bool,
}

impl PruneReport {
    pub fn is_empty(&self) -> bool {
        self.history_removed == 0 && self.audit_removed == 0
    }
}

/// The retention settings, taken from [`crate::StoreOptions`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Policy {
    pub history_retain_days: u32,
    pub audit_retain_days: u32,
    pub max_bytes: Option<u64>,
}

impl Policy {
    /// Whether there is anything to prune for at all.
    pub fn is_active(&self) -> bool {
        self.history_retain_days > 0 || self.audit_retain_days > 0 || self.max_bytes.is_some()
    }
}

/// One prune run, carried across steps.
#[derive(Debug, Default)]
pub(crate) struct Run {
    pub report: PruneReport,
    /// Set once the cap was exceeded: keep trimming until under the target, not just the cap.
    trimming: bool,
}

impl Run {
    /// Does one step. Returns whether there is more to do.
    pub fn step(&mut self, conn: &mut Connection, policy: &Policy) -> rusqlite::Result<bool> {
        let now = clock::now_millis();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut more = false;
        if policy.history_retain_days > 0 {
            let cutoff = now.saturating_sub(i64::from(policy.history_retain_days) * DAY_MS);
            let removed = delete_history(
                &tx,
                "SELECT id FROM history WHERE at_ms < ?1 LIMIT ?2",
                rusqlite::params![cutoff, CHUNK as i64],
            )?;
            self.report.history_removed += removed;
            more |= removed as usize >= CHUNK;
        }
        if policy.audit_retain_days > 0 {
            let cutoff = now.saturating_sub(i64::from(policy.audit_retain_days) * DAY_MS);
            let removed = audit::prune_before(&tx, cutoff, CHUNK)?;
            self.report.audit_removed += removed;
            more |= removed as usize >= CHUNK;
        }
        // Age first: only trim by size what age alone would not have removed.
        if let (false, Some(max)) = (more, policy.max_bytes) {
            let used = used_bytes(&tx)?;
            let target = max / 100 * SIZE_TARGET_PERCENT;
            if used > max || (self.trimming && used > target) {
                self.trimming = true;
                // Rows in proportion to the excess, so a cap smaller than a chunk of rows is
                // approached rather than overshot to nothing.
                let rows = row_count(&tx)?;
                let excess = u128::from(used - target.min(used));
                let estimate = (excess * u128::from(rows)).div_ceil(u128::from(used.max(1)));
                let limit = usize::try_from(estimate).unwrap_or(CHUNK).clamp(1, CHUNK);
                let removed = trim_oldest(&tx, limit, &mut self.report)?;
                // Nothing left to remove: the schema alone is over the cap.
                more = removed > 0;
            } else {
                self.trimming = false;
            }
        }
        tx.commit()?;
        // Hands freed pages back to the file system (auto_vacuum = INCREMENTAL); a bounded
        // number per step keeps each step short.
        run_to_end(conn, "PRAGMA incremental_vacuum(2000)")?;
        Ok(more)
    }
}

/// Deletes the history rows (and their event JSON) whose ids `select` returns.
fn delete_history(
    tx: &rusqlite::Transaction<'_>,
    select: &str,
    params: impl rusqlite::Params,
) -> rusqlite::Result<u64> {
    let ids = tx
        .prepare_cached(select)?
        .query_map(params, |r| r.get::<_, i64>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let mut event = tx.prepare_cached("DELETE FROM history_event WHERE history_id = ?1")?;
    let mut history = tx.prepare_cached("DELETE FROM history WHERE id = ?1")?;
    let mut removed = 0;
    for id in ids {
        event.execute([id])?;
        removed += history.execute([id])? as u64;
    }
    Ok(removed)
}

/// Removes a chunk of whichever is older, the oldest history or the oldest audit rows.
fn trim_oldest(
    tx: &rusqlite::Transaction<'_>,
    limit: usize,
    report: &mut PruneReport,
) -> rusqlite::Result<u64> {
    use rusqlite::OptionalExtension;
    let history_oldest: Option<i64> = tx
        .query_row("SELECT at_ms FROM history ORDER BY id LIMIT 1", [], |r| {
            r.get(0)
        })
        .optional()?;
    let audit_oldest = audit::oldest_at(tx)?;
    let removed = match (history_oldest, audit_oldest) {
        (Some(h), Some(a)) if a < h => {
            let n = audit::prune_oldest(tx, limit)?;
            report.audit_removed += n;
            n
        }
        (Some(_), _) => {
            let n = delete_history(
                tx,
                "SELECT id FROM history ORDER BY id LIMIT ?1",
                [limit as i64],
            )?;
            report.history_removed += n;
            n
        }
        (None, Some(_)) => {
            let n = audit::prune_oldest(tx, limit)?;
            report.audit_removed += n;
            n
        }
        (None, None) => 0,
    };
    if removed > 0 {
        report.size_capped = true;
    }
    Ok(removed)
}

/// Steps a statement until it is done: some pragmas (`incremental_vacuum`, `optimize`) do
/// their work a little per step, and `execute_batch` steps only once.
pub(crate) fn run_to_end(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare(sql)?;
    let mut rows = stmt.query([])?;
    while rows.next()?.is_some() {}
    Ok(())
}

fn row_count(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row(
        "SELECT (SELECT count(*) FROM history) + (SELECT count(*) FROM audit)",
        [],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n.max(0) as u64)
}

/// Bytes of the main database file holding data (free pages excluded; the WAL not counted).
pub(crate) fn used_bytes(conn: &Connection) -> rusqlite::Result<u64> {
    let pages: i64 = conn.pragma_query_value(None, "page_count", |r| r.get(0))?;
    let free: i64 = conn.pragma_query_value(None, "freelist_count", |r| r.get(0))?;
    let size: i64 = conn.pragma_query_value(None, "page_size", |r| r.get(0))?;
    Ok(u64::try_from((pages - free).max(0) * size).unwrap_or(0))
}
