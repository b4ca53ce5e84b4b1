//! `lockstepd doctor --bundle FILE`: a support archive (a plain tar) of what support needs and
//! nothing of a patient's: the doctor's report, the configuration with secrets redacted, the
//! versions, and the recent logs at info level and above only (the levels that never name a
//! patient; debug lines are left out whatever the configured level). Never the history
//! database.

use super::{Finding, render};
use crate::config::Config;
use crate::paths::Paths;
use std::io::{self, Write};
use std::path::Path;

/// How much of the end of each log file goes in.
const LOG_TAIL_BYTES: u64 = 256 * 1024;

/// Writes the archive to `out`; the names of what went in.
pub fn write_bundle(
    out: impl Write,
    findings: &[Finding],
    config: Option<&Config>,
) -> io::Result<Vec<String>> {
    let mut tar = Tar::new(out);
    tar.add("doctor.txt", render(findings).as_bytes())?;
    if let Some(config) = config {
        tar.add("config.toml", config.to_redacted_toml().as_bytes())?;
    }
    tar.add("versions.txt", versions().as_bytes())?;
    if let Some(folder) = Paths::discover().log_dir() {
        let mut logs: Vec<_> = std::fs::read_dir(&folder)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
            .unwrap_or_default();
        logs.sort();
        for log in logs.iter().filter(|p| is_log_file(p)) {
            let name = format!(
                "logs/{}",
                log.file_name().unwrap_or_default().to_string_lossy()
            );
            tar.add(&name, &without_patient_levels(&tail(log)?))?;
        }
    }
    tar.finish()
}

fn is_log_file(path: &Path) -> bool {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    (name.starts_with("lockstep.log") || name.starts_with("lockstepd.log")) && path.is_file()
}

fn tail(path: &Path) -> io::Result<Vec<u8>> {
    use std::io::{Read, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let length = file.metadata()?.len();
    file.seek(SeekFrom::Start(length.saturating_sub(LOG_TAIL_BYTES)))?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Only the lines logged at INFO, WARN or ERROR (`<timestamp> <LEVEL> <message>`): any other
/// line, a debug line or a line of a multi-line message, may carry what is logged at debug.
fn without_patient_levels(log: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(log);
    let mut kept = String::new();
    for line in text.lines() {
        let level = line.split_whitespace().nth(1).unwrap_or_default();
        if matches!(level, "INFO" | "WARN" | "ERROR") {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    kept.into_bytes()
}

fn versions() -> String {
    let os = std::fs::read_to_string("/etc/os-release")
        .ok()
        .and_then(|t| {
            t.lines().find_map(|l| {
                l.strip_prefix("PRETTY_NAME=")
                    .map(|v| v.trim_matches('"').to_owned())
            })
        })
        .unwrap_or_else(|| std::env::consts::OS.to_owned());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "lockstep {}\nos {os}\nkernel {}\narch {}\n",
        env!("CARGO_PKG_VERSION"),
        kernel.trim(),
        std::env::consts::ARCH
    )
}

/// A minimal ustar writer: regular files only, names under 100 bytes.
struct Tar<W: Write> {
    out: W,
    names: Vec<String>,
}

impl<W: Write> Tar<W> {
    fn new(out: W) -> Self {
        Tar {
            out,
            names: Vec::new(),
        }
    }

    fn add(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let mut header = [0u8; 512];
        let field = |header: &mut [u8; 512], at: usize, value: &[u8]| {
            header[at..at + value.len()].copy_from_slice(value);
        };
        let name = &name.as_bytes()[..name.len().min(99)];
        field(&mut header, 0, name);
        field(&mut header, 100, b"0000600\0");
        field(&mut header, 108, b"0000000\0");
        field(&mut header, 116, b"0000000\0");
        field(
            &mut header,
            124,
            format!("{:011o}\0", data.len()).as_bytes(),
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        field(&mut header, 136, format!("{now:011o}\0").as_bytes());
        field(&mut header, 148, b"        ");
        header[156] = b'0';
        field(&mut header, 257, b"ustar\0");
        field(&mut header, 263, b"00");
        let checksum: u32 = header.iter().map(|b| *b as u32).sum();
        field(&mut header, 148, format!("{checksum:06o}\0 ").as_bytes());
        self.out.write_all(&header)?;
        self.out.write_all(data)?;
        let padding = (512 - data.len() % 512) % 512;
        self.out.write_all(&vec![0u8; padding])?;
        self.names.push(String::from_utf8_lossy(name).into_owned());
        Ok(())
    }

    fn finish(mut self) -> io::Result<Vec<String>> {
        self.out.write_all(&[0u8; 1024])?;
        self.out.flush()?;
        Ok(self.names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_info_and_above_survive() {
        let log = b"2026-12-03T10:00:00Z  INFO hub ready at http://127.0.0.1:4980/fhircast\n\
                    2026-12-03T10:00:01Z DEBUG Patient-open: Zylberstein MRN-99173\n\
                    continuation of a message\n\
                    2026-12-03T10:00:02Z  WARN an app was dropped\n";
        let kept = String::from_utf8(without_patient_levels(log)).unwrap();
        assert_eq!(
            kept,
            "2026-12-03T10:00:00Z  INFO hub ready at http://127.0.0.1:4980/fhircast\n\
             2026-12-03T10:00:02Z  WARN an app was dropped\n"
        );
    }

    #[test]
    fn the_archive_is_a_tar_that_tar_reads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bundle.tar");
        let mut tar = Tar::new(std::fs::File::create(&path).unwrap());
        tar.add("doctor.txt", b"ok\n").unwrap();
        tar.add("logs/lockstepd.log", &vec![b'x'; 1000]).unwrap();
        tar.finish().unwrap();
        let listing = std::process::Command::new("tar")
            .arg("-tvf")
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            listing.status.success(),
            "{}",
            String::from_utf8_lossy(&listing.stderr)
        );
        let listing = String::from_utf8(listing.stdout).unwrap();
        assert!(
            listing.contains("doctor.txt") && listing.contains("logs/lockstepd.log"),
            "{listing}"
        );
        assert!(listing.contains(" 1000 "), "{listing}");
    }
}
