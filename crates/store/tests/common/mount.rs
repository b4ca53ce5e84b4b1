//! Real file systems for tests of what happens when the disk misbehaves: a small tmpfs to
//! fill, read-only mounts. Mounting needs root; where it is refused, tests skip and say why.
//! Shared by the store's and the agent's tests.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A real file system mounted for one test, unmounted when dropped.
pub struct Mount {
    pub at: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    /// A tmpfs of `size` (as `mount -o size=` takes it), or why there cannot be one here.
    pub fn tmpfs(size: &str) -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let at = dir.path().to_owned();
        run(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at))?;
        Ok(Mount { at, _dir: dir })
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.at).status();
    }
}

pub fn run(command: &mut Command) -> Result<(), String> {
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_owned())
    }
}

pub fn skip(test: &str, why: &str) {
    eprintln!("SKIPPED {test}: {why} (this test mounts file systems, which needs root)");
}

/// Fills the file system holding `dir` to the last byte; returns the filler to delete.
pub fn fill(dir: &Path) -> PathBuf {
    let filler = dir.join("filler");
    let mut file = std::fs::File::create(&filler).unwrap();
    let chunk = vec![0u8; 16 * 1024];
    while file.write_all(&chunk).is_ok() {}
    // The last partial chunk, byte by byte.
    while file.write_all(&[0]).is_ok() {}
    let _ = file.sync_all();
    filler
}
