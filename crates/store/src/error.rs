//! The store's error type.

use std::path::PathBuf;

/// Everything that can go wrong opening, reading or writing the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The file exists but is not an SQLite database (or its header is damaged).
    #[error("{} is not a Lockstep store: the file is not an SQLite database", path.display())]
    NotADatabase { path: PathBuf },

    /// An SQLite database, but someone else's: the store will not add its tables to it.
    #[error("{} is an SQLite database but not a Lockstep store", path.display())]
    NotAStore { path: PathBuf },

    /// SQLite found the database damaged.
    #[error("the store at {} is corrupt: {source}", path.display())]
    Corrupt {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The integrity check at open found damaged pages: rows may be missing. The file is
    /// left as it is.
    #[error("the store at {} is corrupt: its integrity check found damaged pages ({detail})", path.display())]
    Damaged { path: PathBuf, detail: String },

    /// The file could not be opened or created (missing folder, permissions, a directory, ...).
    #[error("cannot open the store at {}: {source}", path.display())]
    Open {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },

    /// The file was written by a newer Lockstep; opening it here could damage it.
    #[error(
        "the store at {} has schema version {found}, newer than this build understands \
         ({supported}); upgrade Lockstep or point it at another file",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        supported: i64,
    },

    /// A schema migration step failed; the file stays at the last version that completed.
    #[error("migrating the store at {} to schema version {version} failed: {source}", path.display())]
    Migrate {
        path: PathBuf,
        version: i64,
        #[source]
        source: rusqlite::Error,
    },

    #[error("store database error: {0}")]
    Sqlite(#[from] rusqlite::Error),

    /// Writing an export (or reading back a stored JSON value) failed.
    #[error("audit export failed: {0}")]
    Io(#[from] std::io::Error),

    #[error("audit export failed: {0}")]
    Json(#[from] serde_json::Error),

    /// The writer thread has stopped (after `shutdown`, or it could not start).
    #[error("the store writer has stopped")]
    WriterStopped,

    /// Some records accepted since the previous flush could not be committed.
    #[error("{lost} records could not be written to the store (see the log and the audit trail)")]
    WriteFailed { lost: u64 },

    /// The store cannot write at the moment; what it was given is kept, in order, and written
    /// once the problem passes.
    #[error("{0}: {remedy}", remedy = .0.remedy())]
    Unwritable(crate::WriteProblem),
}

impl StoreError {
    /// Whether the file is damaged (a site may choose to start on a fresh one, keeping it).
    pub fn is_damage(&self) -> bool {
        matches!(
            self,
            StoreError::Corrupt { .. } | StoreError::Damaged { .. }
        )
    }

    /// The file the error is about, where it is about one.
    pub fn path(&self) -> Option<&std::path::Path> {
        match self {
            StoreError::NotADatabase { path }
            | StoreError::NotAStore { path }
            | StoreError::Corrupt { path, .. }
            | StoreError::Damaged { path, .. }
            | StoreError::Open { path, .. }
            | StoreError::TooNew { path, .. }
            | StoreError::Migrate { path, .. } => Some(path),
            _ => None,
        }
    }
}

impl StoreError {
    /// Sorts an error from opening or first reading a file into the kind a person can act on.
    pub(crate) fn on_open(path: &std::path::Path, source: rusqlite::Error) -> StoreError {
        use rusqlite::ErrorCode;
        let path = path.to_path_buf();
        match source.sqlite_error_code() {
            Some(ErrorCode::NotADatabase) => StoreError::NotADatabase { path },
            Some(ErrorCode::DatabaseCorrupt) => StoreError::Corrupt { path, source },
            _ => StoreError::Open { path, source },
        }
    }
}
