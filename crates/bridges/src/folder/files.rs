//! The inbox's file-system side: how a file looks (to tell whether it changed), and moving or
//! copying it aside under a name no other file has.

use super::ready::Look;
use std::path::{Path, PathBuf};

/// How a file looks, to tell whether it changed (see [`ready`]).
pub(super) fn look_of_meta(meta: &std::fs::Metadata, held: bool) -> Look {
    Look {
        len: meta.len(),
        modified: meta.modified().ok(),
        held,
    }
}

/// How the file at `path` looks now; `None` when it is gone.
pub(super) fn look_at(path: &Path) -> Option<Look> {
    let meta = std::fs::metadata(path).ok()?;
    Some(look_of_meta(&meta, held_for_writing(path)))
}

/// Windows tells whether another program holds a file open for writing: opening it while
/// sharing read access only fails with a sharing violation then.
#[cfg(windows)]
fn held_for_writing(path: &Path) -> bool {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_SHARE_READ: u32 = 0x1;
    const ERROR_SHARING_VIOLATION: i32 = 32;
    matches!(
        std::fs::OpenOptions::new().read(true).share_mode(FILE_SHARE_READ).open(path),
        Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION)
    )
}

/// Other systems do not say; closes (Linux) and settling stand in.
#[cfg(not(windows))]
fn held_for_writing(_path: &Path) -> bool {
    false
}

/// Copies a file into `dir` under a name no other file has, leaving it in place.
pub(super) fn copy_into(path: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dest = unique_in(dir, name)?;
    std::fs::copy(path, &dest)?;
    Ok(dest)
}

/// A time-stamped name in `dir` that no file has yet.
fn unique_in(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    let mut dest = dir.join(format!("{stamp}-{name}"));
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("{stamp}-{n}-{name}"));
        n += 1;
    }
    Ok(dest)
}

/// Moves a file into `dir` under a name no other file has (time-stamped).
pub(super) fn move_into(path: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dest = unique_in(dir, name)?;
    match std::fs::rename(path, &dest) {
        Ok(()) => Ok(dest),
        // Another file system (a share): copy, then remove.
        Err(_) => {
            std::fs::copy(path, &dest)?;
            std::fs::remove_file(path)?;
            Ok(dest)
        }
    }
}
