//! When a file in the inbox may be read: never while its writer may still be writing it.
//!
//! Where the OS reports that a writer closed a file (Linux: inotify's "closed after writing"),
//! a file written in place is read at that report and at no other time, however long the
//! writer pauses; a file renamed into place is complete at once. Elsewhere, and for files the
//! OS said nothing about (polled shares, files waiting at start, a hard link), a file is read
//! once it has looked the same (size and modification time) for a settling time: the best a
//! reader can do, which is why the README asks writers of formats with no end marker to write
//! under another name and rename. Pure: no I/O, time passed in.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use tokio::time::Instant;

/// What a file looks like from outside, to tell whether it is still changing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Look {
    pub len: u64,
    pub modified: Option<SystemTime>,
    /// Another program holds it open for writing, where the OS can tell (Windows).
    pub held: bool,
}

/// What the OS reported about a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FsChange {
    /// A writer closed it after writing.
    Closed,
    /// Renamed (or moved) into the folder: its writer is done with it.
    Renamed,
    Created,
    /// Data written.
    Written,
    /// Attributes changed (a `touch`, a hard link made elsewhere).
    Touched,
}

struct Tracked {
    /// How it looked when last checked; read once it looks the same a settling time later.
    look: Option<Look>,
    /// When to look at it again; `None` while waiting for its writer to close it.
    due: Option<Instant>,
    /// Written in place where closes are reported: only its close makes it ready.
    awaiting_close: bool,
    /// Polling: since when it has looked like `look`.
    since: Option<Instant>,
}

pub(crate) struct Readiness {
    settle: Duration,
    /// Whether the OS reports closes (then a file written in place waits for one).
    closes_reported: bool,
    files: HashMap<PathBuf, Tracked>,
}

impl Readiness {
    pub fn new(settle: Duration, closes_reported: bool) -> Self {
        Readiness {
            settle,
            closes_reported,
            files: HashMap::new(),
        }
    }

    /// Takes an OS report; `true` when the file is ready to read now.
    pub fn changed(&mut self, path: &Path, change: FsChange, now: Instant) -> bool {
        let settle_at = Some(now + self.settle);
        match change {
            FsChange::Closed | FsChange::Renamed => {
                self.files.remove(path);
                return true;
            }
            // With closes reported, a file being written waits for its close, with no timer:
            // a writer may pause for as long as it likes.
            FsChange::Written if self.closes_reported => {
                let tracked = self.track(path);
                tracked.due = None;
                tracked.awaiting_close = true;
            }
            FsChange::Touched if self.closes_reported => {}
            // A file that appears without being written (a hard link) gets no close: it is
            // read once it settles, unless writes follow, which then wait for their close.
            FsChange::Created => {
                let tracked = self.track(path);
                if !tracked.awaiting_close {
                    tracked.due = settle_at;
                }
            }
            FsChange::Written | FsChange::Touched => self.track(path).due = settle_at,
        }
        false
    }

    /// Looks at `path` once it has settled (a file waiting at start, or one to check again).
    pub fn check_later(&mut self, path: &Path, at: Instant) {
        self.track(path).due = Some(at);
    }

    fn track(&mut self, path: &Path) -> &mut Tracked {
        self.files.entry(path.to_owned()).or_insert(Tracked {
            look: None,
            due: None,
            awaiting_close: false,
            since: None,
        })
    }

    /// When the next file is due a look.
    pub fn next_due(&self) -> Option<Instant> {
        self.files.values().filter_map(|t| t.due).min()
    }

    /// The files due a look by `now` (to look at, then hand to [`Readiness::due`]).
    pub fn due_paths(&self, now: Instant) -> Vec<PathBuf> {
        self.files
            .iter()
            .filter(|(_, t)| t.due.is_some_and(|at| at <= now))
            .map(|(p, _)| p.clone())
            .collect()
    }

    /// The files due a look by `now` that are ready: they look as they did a settling time
    /// ago and no one holds them open for writing. The others are looked at again later; a
    /// file that is gone (`look_of` gives `None`) is forgotten.
    pub fn due(&mut self, now: Instant, look_of: impl Fn(&Path) -> Option<Look>) -> Vec<PathBuf> {
        let due = self.due_paths(now);
        let mut ready = Vec::new();
        for path in due {
            let look = look_of(&path);
            let Some(tracked) = self.files.get_mut(&path) else {
                continue;
            };
            match look {
                None => {
                    self.files.remove(&path);
                }
                Some(look) if !look.held && tracked.look == Some(look) => {
                    self.files.remove(&path);
                    ready.push((look.modified, path));
                }
                Some(look) => {
                    tracked.look = Some(look);
                    tracked.due = Some(now + self.settle);
                }
            }
        }
        // Oldest first, as the writers made them.
        ready.sort();
        ready.into_iter().map(|(_, p)| p).collect()
    }

    /// Takes one polling scan (every file in the folder and how it looks); returns the files
    /// ready to read, oldest first: those that have looked the same for `stable`.
    pub fn scanned(
        &mut self,
        scan: Vec<(PathBuf, Look)>,
        stable: Duration,
        now: Instant,
    ) -> Vec<PathBuf> {
        let mut next = HashMap::with_capacity(scan.len());
        let mut ready = Vec::new();
        for (path, look) in scan {
            let since = match self.files.remove(&path) {
                Some(Tracked {
                    look: Some(seen),
                    since: Some(since),
                    ..
                }) if seen == look => since,
                _ => now,
            };
            if !look.held && now.duration_since(since) >= stable {
                ready.push((look.modified, path));
            } else {
                next.insert(
                    path,
                    Tracked {
                        look: Some(look),
                        due: None,
                        awaiting_close: false,
                        since: Some(since),
                    },
                );
            }
        }
        self.files = next;
        ready.sort();
        ready.into_iter().map(|(_, p)| p).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SETTLE: Duration = Duration::from_millis(100);

    fn look(len: u64) -> Option<Look> {
        Some(Look {
            len,
            modified: Some(SystemTime::UNIX_EPOCH + Duration::from_secs(len)),
            held: false,
        })
    }

    #[test]
    fn with_closes_reported_a_file_written_in_place_waits_for_its_close_however_long() {
        let t0 = Instant::now();
        let mut ready = Readiness::new(SETTLE, true);
        let file = Path::new("/in/a.ini");
        assert!(!ready.changed(file, FsChange::Created, t0));
        assert!(!ready.changed(file, FsChange::Written, t0));
        // Long past every timer, no close yet: never due.
        assert_eq!(ready.next_due(), None);
        assert!(
            ready
                .due(t0 + Duration::from_secs(3600), |_| look(2))
                .is_empty()
        );
        assert!(ready.changed(file, FsChange::Closed, t0 + Duration::from_secs(3600)));
    }

    #[test]
    fn a_file_that_appears_unwritten_is_read_once_it_settles() {
        let t0 = Instant::now();
        let mut ready = Readiness::new(SETTLE, true);
        let file = Path::new("/in/linked.xml");
        ready.changed(file, FsChange::Created, t0);
        // First look records it; it must look the same one settling time later.
        assert!(ready.due(t0 + SETTLE, |_| look(5)).is_empty());
        assert!(
            ready.due(t0 + SETTLE * 2, |_| look(6)).is_empty(),
            "still growing"
        );
        assert_eq!(
            ready.due(t0 + SETTLE * 3, |_| look(6)),
            vec![file.to_owned()]
        );
    }

    #[test]
    fn without_closes_a_file_is_read_once_unchanged_and_not_held_open() {
        let t0 = Instant::now();
        let mut ready = Readiness::new(SETTLE, false);
        let file = Path::new("/in/a.json");
        ready.changed(file, FsChange::Written, t0);
        assert!(ready.due(t0 + SETTLE, |_| look(3)).is_empty());
        let held = |_: &Path| look(3).map(|l| Look { held: true, ..l });
        assert!(
            ready.due(t0 + SETTLE * 2, held).is_empty(),
            "a writer holds it"
        );
        assert!(ready.due(t0 + SETTLE * 3, |_| look(3)).is_empty());
        assert_eq!(ready.due(t0 + SETTLE * 4, |_| look(3)).len(), 1);
        // A file gone before its turn is forgotten.
        ready.changed(file, FsChange::Written, t0);
        assert!(ready.due(t0 + SETTLE * 9, |_| None).is_empty());
        assert_eq!(ready.next_due(), None);
    }

    #[test]
    fn polling_reads_a_file_only_after_it_looked_the_same_for_the_stable_time() {
        let t0 = Instant::now();
        let stable = Duration::from_millis(500);
        let mut ready = Readiness::new(SETTLE, false);
        let file = PathBuf::from("/share/a.txt");
        let scan = |len| vec![(file.clone(), look(len).unwrap())];
        assert!(ready.scanned(scan(2), stable, t0).is_empty());
        // Two scans in a row alike is not enough: the writer may be pausing.
        assert!(
            ready
                .scanned(scan(2), stable, t0 + Duration::from_millis(100))
                .is_empty()
        );
        // It grew: the stable time starts again.
        assert!(
            ready
                .scanned(scan(4), stable, t0 + Duration::from_millis(400))
                .is_empty()
        );
        assert!(
            ready
                .scanned(scan(4), stable, t0 + Duration::from_millis(800))
                .is_empty()
        );
        // Polled files are never due a look of their own: only scans read them.
        assert_eq!(ready.next_due(), None);
        assert_eq!(
            ready.scanned(scan(4), stable, t0 + Duration::from_millis(900)),
            vec![file.clone()]
        );
    }

    #[test]
    fn ready_files_come_oldest_first() {
        let t0 = Instant::now();
        let mut ready = Readiness::new(SETTLE, false);
        for (name, len) in [("/in/new", 9), ("/in/old", 1), ("/in/mid", 5)] {
            ready.check_later(Path::new(name), t0);
            ready.due(t0, |_| look(len));
        }
        let lens: HashMap<&str, u64> = [("/in/new", 9), ("/in/old", 1), ("/in/mid", 5)].into();
        let order = ready.due(t0 + SETTLE, |p| look(lens[p.to_str().unwrap()]));
        assert_eq!(order, ["/in/old", "/in/mid", "/in/new"].map(PathBuf::from));
    }
}
