//! The pending file: history rows answered and not yet in the database, appended beside it.
//!
//! An answered context change must survive a crash or kill of Lockstep. Committing its row to
//! SQLite before the answer made that promise at the price of a transaction per change: six
//! or so 4 KiB pages written to the WAL (the row, its four indexes, the event), most of the
//! agent's work per change (`docs/performance.md`). Appending the row as one line to this file
//! keeps the same promise with one `write(2)`: once the call returns, the line is the
//! operating system's, as a commit at `synchronous = NORMAL` is. The writer's thread then
//! commits the rows to the database in batches, within [`crate::LINGER`], syncs the WAL and
//! cuts the lines it holds from the front of this file.
//!
//! Whoever writes the store holds an exclusive lock on this file. Whoever opens the store and
//! can take the lock (no writer is running: the last one stopped or was killed) first commits
//! the lines the database lacks ([`recover`]). Each line has a sequence number, and every
//! commit of filed records moves the database's watermark (`pending_watermark`) to the last of
//! them in the same transaction, so a line committed before the kill is not committed twice.
//!
//! One line per record: JSON, which escapes every newline inside the strings. A line cut short
//! (a power cut, not a kill: a kill never interrupts a `write(2)` to a file) does not parse,
//! and is skipped with a warning; it had never reached the disk, which is the loss a power cut
//! may cause within [`crate::SYNC_WITHIN`].

use crate::clock;
use crate::error::StoreError;
use crate::history::{self, HistoryRecord};
use crate::problem::WriteProblem;
use lockstep_fhircast::summary::ContextSummary;
use rusqlite::{Connection, TransactionBehavior};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Once the lines already in the database take this much of the file and it cannot simply be
/// emptied (newer lines follow them), the rest is copied to a fresh file.
const CUT_AT_BYTES: u64 = 1024 * 1024;

/// The pending file of the database at `db`.
pub(crate) fn path_of(db: &Path) -> PathBuf {
    let mut path = db.as_os_str().to_owned();
    path.push("-pending");
    PathBuf::from(path)
}

/// One record, as a line of the file.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    seq: u64,
    at_ms: i64,
    topic: std::borrow::Cow<'a, str>,
    event: std::borrow::Cow<'a, str>,
    event_id: std::borrow::Cow<'a, str>,
    app: std::borrow::Cow<'a, str>,
    summary: Option<std::borrow::Cow<'a, ContextSummary>>,
    event_json: std::borrow::Cow<'a, str>,
}

impl<'a> Line<'a> {
    fn of(seq: u64, record: &'a HistoryRecord) -> Line<'a> {
        Line {
            seq,
            at_ms: clock::unix_millis(record.at),
            topic: record.topic.as_str().into(),
            event: record.event.as_str().into(),
            event_id: record.event_id.as_str().into(),
            app: record.app.as_str().into(),
            summary: record.summary.as_ref().map(std::borrow::Cow::Borrowed),
            event_json: record.event_json.as_str().into(),
        }
    }

    fn record(self) -> HistoryRecord {
        let at =
            time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_ms) * 1_000_000)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
        HistoryRecord {
            at,
            topic: self.topic.into_owned(),
            event: self.event.into_owned(),
            event_id: self.event_id.into_owned(),
            app: self.app.into_owned(),
            summary: self.summary.map(std::borrow::Cow::into_owned),
            event_json: self.event_json.into_owned(),
        }
    }
}

/// The writer's pending file, locked for as long as the writer runs.
pub(crate) struct Journal {
    file: File,
    path: PathBuf,
    /// Bytes in the file.
    len: u64,
    /// Bytes at the front of the file whose records are committed to the database.
    committed: u64,
    /// The length and sequence number of each line written and not yet committed, oldest
    /// first.
    lines: VecDeque<(u64, u64)>,
    /// The sequence number of the next line.
    next_seq: u64,
    /// Lines encoded and not yet written, reused so that a flush allocates nothing in the
    /// common case; and the length of each.
    scratch: Vec<u8>,
    encoded: Vec<(u64, u64)>,
    /// A commit is under way with history records that are not in this file: a flush must
    /// wait for it (it holds the connection) rather than answer from the file.
    pub(crate) unfiled_in_flight: bool,
}

impl Journal {
    /// Opens (creating) the pending file of the database at `db` and takes its lock, after
    /// committing what an earlier writer left in it. `Ok(None)` when another writer holds it.
    pub(crate) fn open(db: &Path, conn: &mut Connection) -> Result<Option<Journal>, StoreError> {
        let path = path_of(db);
        let mut file =
            owner_only(OpenOptions::new().read(true).append(true).create(true)).open(&path)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(None),
            Err(TryLockError::Error(e)) => return Err(e.into()),
        }
        let watermark = replay(conn, &mut file, &path)?;
        Ok(Some(Journal {
            file,
            path,
            len: 0,
            committed: 0,
            lines: VecDeque::new(),
            next_seq: watermark + 1,
            scratch: Vec::new(),
            encoded: Vec::new(),
            unfiled_in_flight: false,
        }))
    }

    /// Appends `records` as one write. On failure nothing of them stays in the file, and the
    /// problem says why.
    #[cfg(test)]
    pub(crate) fn append(&mut self, records: &[HistoryRecord]) -> Result<(), WriteProblem> {
        self.encode(records)?;
        self.write_encoded()
    }

    /// Encodes `records` for [`Journal::write_encoded`], replacing what was encoded before.
    pub(crate) fn encode(&mut self, records: &[HistoryRecord]) -> Result<(), WriteProblem> {
        self.scratch.clear();
        self.encoded.clear();
        for (seq, record) in (self.next_seq..).zip(records) {
            let start = self.scratch.len();
            // Strings and numbers only: serializing them into memory cannot fail.
            serde_json::to_writer(&mut self.scratch, &Line::of(seq, record))
                .map_err(|_| WriteProblem::Io)?;
            self.scratch.push(b'\n');
            self.encoded
                .push(((self.scratch.len() - start) as u64, seq));
        }
        Ok(())
    }

    /// Writes what [`Journal::encode`] encoded, as one write.
    pub(crate) fn write_encoded(&mut self) -> Result<(), WriteProblem> {
        if self.scratch.is_empty() {
            return Ok(());
        }
        if let Err(error) = self.file.write_all(&self.scratch) {
            // A write cut short would leave half a line: take it back.
            let _ = self.file.set_len(self.len);
            tracing::debug!(%error, "could not append to the history's pending file");
            return Err(problem_of(&error));
        }
        self.len += self.scratch.len() as u64;
        self.next_seq += self.encoded.len() as u64;
        self.lines.extend(self.encoded.drain(..));
        self.scratch.clear();
        if self.scratch.capacity() > 64 * 1024 {
            self.scratch = Vec::new();
        }
        Ok(())
    }

    /// The sequence number of the `count`th oldest line not yet committed: the watermark a
    /// commit of that many filed records moves the database to.
    pub(crate) fn watermark_after(&self, count: usize) -> Option<u64> {
        let last = count.checked_sub(1)?;
        self.lines.get(last).map(|&(_, seq)| seq)
    }

    /// The oldest `count` lines are committed to the database (or refused by it for good).
    pub(crate) fn committed(&mut self, count: usize) {
        for _ in 0..count {
            match self.lines.pop_front() {
                Some((bytes, _)) => self.committed += bytes,
                None => break,
            }
        }
    }

    /// The bytes committed so far: after the WAL is synced, what [`Journal::cut`] may drop.
    pub(crate) fn committed_bytes(&self) -> u64 {
        self.committed
    }

    /// Drops the first `synced` bytes (committed and synced to the disk) from the file.
    pub(crate) fn cut(&mut self, synced: u64) {
        let synced = synced.min(self.committed);
        if synced == 0 {
            return;
        }
        let outcome = if synced == self.len {
            self.file.set_len(0).map(|()| 0)
        } else if synced >= CUT_AT_BYTES {
            self.keep_tail(synced)
        } else {
            return;
        };
        match outcome {
            Ok(len) => {
                self.committed -= synced;
                self.len = len;
            }
            // Harmless: the lines stay, and are recognised as committed if replayed.
            Err(error) => tracing::warn!(%error, "could not trim the history's pending file"),
        }
    }

    /// Copies the lines after `from` to a fresh file, locked, that takes this one's place.
    fn keep_tail(&mut self, from: u64) -> std::io::Result<u64> {
        let mut tail = Vec::with_capacity((self.len - from) as usize);
        // Through the locked handle: on Windows the lock keeps any other handle from reading.
        let mut reader = &self.file;
        std::io::Seek::seek(&mut reader, std::io::SeekFrom::Start(from))?;
        reader.read_to_end(&mut tail)?;
        let mut fresh_path = self.path.clone().into_os_string();
        fresh_path.push(".new");
        let fresh_path = PathBuf::from(fresh_path);
        let mut fresh = owner_only(
            OpenOptions::new()
                .read(true)
                .append(true)
                .create(true)
                .truncate(false),
        )
        .open(&fresh_path)?;
        fresh.try_lock().map_err(std::io::Error::other)?;
        fresh.set_len(0)?;
        fresh.write_all(&tail)?;
        std::fs::rename(&fresh_path, &self.path)?;
        self.file = fresh;
        Ok(tail.len() as u64)
    }

    /// At a clean stop, with every line committed and the database synced: no file is left.
    /// Lines not committed stay for the next open.
    pub(crate) fn close(&mut self) {
        if self.lines.is_empty() && std::fs::remove_file(&self.path).is_err() {
            let _ = self.file.set_len(0);
        }
    }
}

/// Commits what the pending file at `db` holds and the database lacks, if no writer holds
/// it; called when the store is opened.
pub(crate) fn recover(db: &Path, conn: &mut Connection) -> Result<(), StoreError> {
    let path = path_of(db);
    let mut file = match OpenOptions::new().read(true).write(true).open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            tracing::warn!(error = %e, "cannot open {} to recover history from it", path.display());
            return Ok(());
        }
    };
    match file.try_lock() {
        Ok(()) => replay(conn, &mut file, &path).map(drop),
        // A writer is running: the lines are its own.
        Err(TryLockError::WouldBlock) => Ok(()),
        Err(TryLockError::Error(e)) => Err(e.into()),
    }
}

/// Commits the lines of a locked pending file that the database lacks, then empties it.
/// Returns the database's watermark afterwards.
fn replay(conn: &mut Connection, file: &mut File, path: &Path) -> Result<u64, StoreError> {
    let watermark = watermark(conn)?;
    let mut text = Vec::new();
    std::io::Seek::seek(file, std::io::SeekFrom::Start(0))?;
    file.read_to_end(&mut text)?;
    if text.is_empty() {
        return Ok(watermark);
    }
    let mut missing = Vec::new();
    let mut last = watermark;
    for (n, line) in text.split(|b| *b == b'\n').enumerate() {
        if line.is_empty() {
            continue;
        }
        match serde_json::from_slice::<Line>(line) {
            Ok(line) if line.seq <= watermark => {}
            Ok(line) => {
                last = last.max(line.seq);
                missing.push(line.record());
            }
            Err(e) => tracing::warn!(
                line = n + 1,
                error = %e,
                "skipped a damaged line of {} (written as power was lost)",
                path.display()
            ),
        }
    }
    if !missing.is_empty() {
        // This commit empties the file: it must reach the disk first.
        conn.pragma_update(None, "synchronous", "FULL")?;
        let committed = commit_missing(conn, &missing, last);
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        committed?;
        tracing::warn!(
            records = missing.len(),
            "history: committed the answered changes an unclean stop left in {}",
            path.display()
        );
    }
    file.set_len(0)?;
    Ok(last)
}

fn commit_missing(
    conn: &mut Connection,
    missing: &[HistoryRecord],
    watermark: u64,
) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for record in missing {
        history::insert(&tx, record)?;
    }
    set_watermark(&tx, watermark)?;
    tx.commit()
}

/// The last line whose record the database holds.
fn watermark(conn: &Connection) -> rusqlite::Result<u64> {
    conn.query_row("SELECT seq FROM pending_watermark WHERE id = 1", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|seq| seq.max(0) as u64)
}

/// Moves the watermark to `seq`, in the transaction that commits the records up to it.
pub(crate) fn set_watermark(tx: &rusqlite::Transaction<'_>, seq: u64) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE pending_watermark SET seq = ?1 WHERE id = 1")?
        .execute([seq as i64])
        .map(drop)
}

/// What keeps the file from being written.
fn problem_of(error: &std::io::Error) -> WriteProblem {
    match error.kind() {
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded => {
            WriteProblem::DiskFull
        }
        std::io::ErrorKind::ReadOnlyFilesystem | std::io::ErrorKind::PermissionDenied => {
            WriteProblem::ReadOnly
        }
        _ => WriteProblem::Io,
    }
}

/// The pending file holds what apps showed: readable by its owner only.
fn owner_only(options: &mut OpenOptions) -> &mut OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(n: usize) -> HistoryRecord {
        HistoryRecord::new(
            "topic",
            "Patient-open",
            format!("e{n}"),
            "RIS",
            format!(r#"{{"id":"e{n}","text":"line\nbreak"}}"#),
        )
    }

    fn store(dir: &Path) -> (PathBuf, Connection) {
        let db = dir.join("lockstep.db");
        let mut conn = crate::schema::connect(&db).unwrap();
        crate::schema::migrate(&mut conn, &db).unwrap();
        (db, conn)
    }

    fn event_ids(conn: &Connection) -> Vec<String> {
        let mut stmt = conn
            .prepare("SELECT event_id FROM history ORDER BY id")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn lines_left_by_a_killed_writer_are_committed_once_at_the_next_open() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = store(dir.path());
        let records: Vec<HistoryRecord> = (0..5).map(record).collect();
        {
            let mut journal = Journal::open(&db, &mut conn).unwrap().unwrap();
            journal.append(&records[..3]).unwrap();
            journal.append(&records[3..]).unwrap();
            // The first two made it into the database before the kill, with a record that
            // was never filed after them; the watermark moved with them.
            let watermark = journal.watermark_after(2).unwrap();
            let tx = conn.transaction().unwrap();
            for r in records[..2].iter().chain([&record(99)]) {
                history::insert(&tx, r).unwrap();
            }
            set_watermark(&tx, watermark).unwrap();
            tx.commit().unwrap();
            journal.committed(2);
            // Dropped without close: the lock goes with the process, the file stays.
        }
        recover(&db, &mut conn).unwrap();
        assert_eq!(event_ids(&conn), ["e0", "e1", "e99", "e2", "e3", "e4"]);
        assert_eq!(std::fs::metadata(path_of(&db)).unwrap().len(), 0);
        // Opening again adds nothing, and the next writer numbers its lines after these.
        recover(&db, &mut conn).unwrap();
        assert_eq!(event_ids(&conn).len(), 6);
        let journal = Journal::open(&db, &mut conn).unwrap().unwrap();
        assert_eq!(journal.next_seq, 6);
        let entry = crate::history::get(&conn, 4).unwrap().unwrap();
        assert_eq!(entry.event_json, records[2].event_json);
        assert_eq!(entry.at_ms, clock::unix_millis(records[2].at));
    }

    #[test]
    fn a_running_writers_lines_are_left_to_it_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = store(dir.path());
        let mut journal = Journal::open(&db, &mut conn).unwrap().unwrap();
        journal.append(&[record(0), record(1)]).unwrap();
        assert!(Journal::open(&db, &mut conn).unwrap().is_none());
        recover(&db, &mut conn).unwrap();
        assert!(
            event_ids(&conn).is_empty(),
            "the writer's lines are its own"
        );
        drop(journal);
        // Power was cut in the middle of the last line.
        let mut file = OpenOptions::new().append(true).open(path_of(&db)).unwrap();
        file.write_all(br#"{"at_ms":1,"topic":"#).unwrap();
        recover(&db, &mut conn).unwrap();
        assert_eq!(event_ids(&conn), ["e0", "e1"]);
    }

    #[test]
    fn committed_lines_are_cut_from_the_front() {
        let dir = tempfile::tempdir().unwrap();
        let (db, mut conn) = store(dir.path());
        let mut journal = Journal::open(&db, &mut conn).unwrap().unwrap();
        journal.append(&[record(0), record(1)]).unwrap();
        journal.committed(1);
        let synced = journal.committed_bytes();
        journal.cut(synced);
        // Newer lines follow and the committed part is small: left for a later cut.
        assert_eq!(journal.len, std::fs::metadata(path_of(&db)).unwrap().len());
        assert!(journal.len > synced);
        journal.committed(1);
        journal.cut(journal.committed_bytes());
        assert_eq!(std::fs::metadata(path_of(&db)).unwrap().len(), 0);
        // A large committed front with a line after it: the tail moves to a fresh file.
        let many: Vec<HistoryRecord> = (0..2000)
            .map(|n| {
                let mut r = record(n);
                r.event_json = "x".repeat(600);
                r
            })
            .collect();
        journal.append(&many).unwrap();
        journal.append(&[record(9999)]).unwrap();
        journal.committed(2000);
        journal.cut(journal.committed_bytes());
        let text = std::fs::read_to_string(path_of(&db)).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert!(text.contains("e9999"));
        assert!(
            Journal::open(&db, &mut conn).unwrap().is_none(),
            "still locked"
        );
        journal.committed(1);
        journal.close();
        assert!(!path_of(&db).exists());
    }
}
