//! A log file bounded in size and number: `NAME.log` is written until the next line would take
//! it past the limit, then `NAME.log.1` … `NAME.log.N` move up one (the oldest is dropped) and
//! a new `NAME.log` begins. Logging never fails the program: a rotation that cannot happen
//! keeps writing to the current file.

use crate::config::LogConfig;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written: u64,
    max_bytes: u64,
    keep: u32,
}

impl RotatingFile {
    /// Opens (appending to) `FOLDER/NAME.log`, creating the folder owner-only.
    pub fn open(folder: &Path, name: &str, config: &LogConfig) -> io::Result<RotatingFile> {
        create_private_dir(folder)?;
        let path = folder.join(format!("{name}.log"));
        let file = open_append(&path)?;
        let written = file.metadata()?.len();
        Ok(RotatingFile {
            path,
            file,
            written,
            max_bytes: config.max_file_megabytes.saturating_mul(1024 * 1024),
            keep: config.max_files,
        })
    }

    /// The current file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn numbered(&self, n: u32) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> io::Result<()> {
        let _ = std::fs::remove_file(self.numbered(self.keep));
        for n in (1..self.keep).rev() {
            let from = self.numbered(n);
            if from.exists() {
                std::fs::rename(&from, self.numbered(n + 1))?;
            }
        }
        std::fs::rename(&self.path, self.numbered(1))?;
        self.file = open_append(&self.path)?;
        self.written = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if self.written > 0 && self.written + buf.len() as u64 > self.max_bytes {
            // A failed rotation (a file held open elsewhere on Windows, say) keeps this file.
            let _ = self.rotate();
        }
        let n = self.file.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

fn open_append(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options.open(path)
}

fn create_private_dir(folder: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::DirBuilderExt;
        builder.mode(0o700);
    }
    builder.create(folder)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(max_files: u32) -> LogConfig {
        LogConfig {
            max_file_megabytes: 1,
            max_files,
            ..LogConfig::default()
        }
    }

    #[test]
    fn files_rotate_at_the_size_limit_and_the_oldest_goes() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path(), "lockstepd", &config(2)).unwrap();
        let line = vec![b'x'; 1000];
        // 4.5 MiB of 1000-byte lines through a 1 MiB file keeping 2 rotated ones.
        for i in 0..4700 {
            log.write_all(&line).unwrap();
            if i == 0 {
                log.write_all(b"first\n").unwrap();
            }
        }
        let names: Vec<String> = {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        assert_eq!(
            names,
            ["lockstepd.log", "lockstepd.log.1", "lockstepd.log.2"]
        );
        for name in &names {
            let size = std::fs::metadata(dir.path().join(name)).unwrap().len();
            assert!(size <= 1024 * 1024, "{name}: {size} bytes");
        }
        // The very first lines were in the file that was dropped.
        for name in &names {
            let text = std::fs::read(dir.path().join(name)).unwrap();
            assert!(!text.windows(5).any(|w| w == b"first"), "{name}");
        }
    }

    #[test]
    fn a_restart_appends_and_counts_what_is_there() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = RotatingFile::open(dir.path(), "lockstep", &config(1)).unwrap();
        log.write_all(&vec![b'a'; 1024 * 1024 - 10]).unwrap();
        drop(log);
        let mut log = RotatingFile::open(dir.path(), "lockstep", &config(1)).unwrap();
        log.write_all(b"this line does not fit\n").unwrap();
        assert!(dir.path().join("lockstep.log.1").exists());
        let current = std::fs::read_to_string(log.path()).unwrap();
        assert_eq!(current, "this line does not fit\n");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(log.path()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
