//! Why the store cannot write: the failures of the store as a whole, which pass once a person
//! (or time) fixes the cause, as opposed to a record the database refuses.

use rusqlite::ErrorCode;

/// What keeps every record from being written. While one lasts, the writer keeps what it
/// could not write, in order, and retries; the agent refuses context changes (a 2xx means
/// recorded).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteProblem {
    /// The file system holding the database is full.
    DiskFull,
    /// Another program holds the database's write lock.
    Locked,
    /// The database, or its folder, cannot be written (permissions, a read-only file system).
    ReadOnly,
    /// SQLite found the database damaged.
    Damaged,
    /// The operating system failed to read or write the file.
    Io,
}

impl WriteProblem {
    /// The problem an SQLite error is, or `None` when it is about the records themselves (a
    /// constraint, a value too large): those records are refused, the store is fine.
    pub fn of(error: &rusqlite::Error) -> Option<WriteProblem> {
        Some(match error.sqlite_error_code()? {
            ErrorCode::DiskFull => WriteProblem::DiskFull,
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => WriteProblem::Locked,
            ErrorCode::ReadOnly => WriteProblem::ReadOnly,
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => WriteProblem::Damaged,
            ErrorCode::SystemIoFailure
            | ErrorCode::CannotOpen
            | ErrorCode::FileLockingProtocolFailed => WriteProblem::Io,
            _ => return None,
        })
    }

    /// What the site must do about it, in plain words.
    pub fn remedy(self) -> &'static str {
        match self {
            WriteProblem::DiskFull => "free space on the disk that holds it",
            WriteProblem::Locked => "close the program that holds it open (a backup, a viewer)",
            WriteProblem::ReadOnly => "make the file and its folder writable",
            WriteProblem::Damaged => "restart Lockstep, which checks the file (see the README)",
            WriteProblem::Io => "check the disk that holds it",
        }
    }
}

impl std::fmt::Display for WriteProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            WriteProblem::DiskFull => "the disk that holds the history is full",
            WriteProblem::Locked => "another program has locked the history database",
            WriteProblem::ReadOnly => "the history database is read-only",
            WriteProblem::Damaged => "the history database is damaged",
            WriteProblem::Io => "the history database cannot be read or written (I/O error)",
        })
    }
}
