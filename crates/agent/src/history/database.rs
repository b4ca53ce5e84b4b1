//! Where history is kept: the database file the configuration names, opened (and migrated), a
//! damaged one refused or set aside, and read back whole.

use super::{DATABASE_FILE, HistoryEntry, HistoryQuery};
use crate::config::{Config, WhenDamaged};
use crate::paths::Paths;
use lockstep_store::{Store, StoreError, StoreOptions};
use std::path::PathBuf;

/// The database file the configuration names.
pub fn database_path(config: &Config) -> Result<PathBuf, StoreError> {
    match &config.history.database {
        Some(path) => Ok(path.clone()),
        None => Paths::discover()
            .data_dir()
            .map(|dir| dir.join(DATABASE_FILE))
            .ok_or_else(|| {
                StoreError::Io(std::io::Error::other("no home folder to keep history in"))
            }),
    }
}

/// Opens (creating and migrating) the store the configuration names. A damaged file is
/// refused, or moved aside for a fresh one where `history.when_damaged = "start_fresh"`.
pub fn open_store(config: &Config) -> Result<Store, StoreError> {
    let path = database_path(config)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(StoreError::Io)?;
    }
    let options = StoreOptions {
        history_retain_days: config.history.retain_days,
        audit_retain_days: config.audit.retain_days,
        max_bytes: (config.history.max_megabytes > 0)
            .then(|| config.history.max_megabytes * 1024 * 1024),
        ..StoreOptions::default()
    };
    match Store::open(&path, options.clone()) {
        Err(damage)
            if damage.is_damage() && config.history.when_damaged == WhenDamaged::StartFresh =>
        {
            let aside = set_aside(&path)?;
            tracing::error!(
                "{damage}; it was moved to {} and kept, and history starts on a fresh database \
                 (history.when_damaged = \"start_fresh\")",
                aside.display()
            );
            Store::open(&path, options)
        }
        other => other,
    }
}

/// Every entry `query` asks for, newest first, however many: the store answers at most
/// [`HistoryQuery::MAX_LIMIT`] at a time, so larger asks are paged with `before`.
pub fn query_all(store: &Store, query: &HistoryQuery) -> Result<Vec<HistoryEntry>, StoreError> {
    let wanted = query.limit.max(1);
    let mut page = query.clone();
    let mut entries = Vec::new();
    while entries.len() < wanted {
        page.limit = (wanted - entries.len()).min(HistoryQuery::MAX_LIMIT);
        let got = store.history(&page)?;
        let full = got.len() == page.limit;
        page.before_id = got.last().map(|e| e.id);
        entries.extend(got);
        if !full {
            break;
        }
    }
    Ok(entries)
}

/// What a refusal to start on a damaged file tells the site to do.
pub const DAMAGED_REMEDY: &str = "Lockstep did not start, so that no history is lost: keep \
    the file for IT, then move it away (a fresh one is made), or set [history] when_damaged = \
    \"start_fresh\" to have Lockstep move it aside and start fresh by itself";

/// Moves a damaged database (with its WAL and shared-memory files) to `<name>.damaged-<time>`.
fn set_aside(path: &std::path::Path) -> Result<PathBuf, StoreError> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second]Z"
        ))
        .unwrap_or_default();
    let mut aside = path.as_os_str().to_owned();
    aside.push(format!(".damaged-{stamp}"));
    let aside = PathBuf::from(aside);
    std::fs::rename(path, &aside)?;
    for suffix in ["-wal", "-shm"] {
        let mut from = path.as_os_str().to_owned();
        from.push(suffix);
        let mut to = aside.as_os_str().to_owned();
        to.push(suffix);
        // Absent after a clean stop.
        let _ = std::fs::rename(from, to);
    }
    Ok(aside)
}
