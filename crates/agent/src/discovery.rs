//! The per-user discovery files, owner-only, in `$XDG_RUNTIME_DIR/org.lockstep.agent/` (the data
//! folder where there is no runtime folder), removed when the agent stops:
//! - `hub.json`: where this user's hub listens, for `lockstepd` verbs and launched apps, when it
//!   is not the configured port (another user's agent holds that one on a multi-session host);
//! - `links.json`: the apps and bridges in the session and their states, for `lockstepd doctor`.
//!   Names, kinds, states and times only: never a SyncError's words, which may name a patient.

use crate::links::{LinkKind, LinkView};
use crate::paths::{IDENTIFIER, Paths};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    #[serde(rename = "hub.url")]
    pub hub_url: String,
    pub port: u16,
    pub pid: u32,
}

/// The apps and bridges in the running agent's session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedLinks {
    pub pid: u32,
    pub links: Vec<PublishedLink>,
}

/// One link, without its detail (a SyncError's words may name a patient).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedLink {
    pub name: String,
    pub kind: LinkKind,
    /// The state's name, as the window's rows and the audit trail name it (`following`).
    pub state: String,
    pub since: String,
    pub problem: bool,
}

impl From<&LinkView> for PublishedLink {
    fn from(link: &LinkView) -> Self {
        PublishedLink {
            name: link.name.clone(),
            kind: link.kind,
            state: link.state.name().to_owned(),
            since: link.since.clone(),
            problem: link.problem,
        }
    }
}

const HUB_FILE: &str = "hub.json";
const LINKS_FILE: &str = "links.json";

/// The folder of this user's discovery files.
fn folder() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(IDENTIFIER))
        .or_else(|| Paths::discover().data_dir())
}

/// The hub file's place for this user.
pub fn path() -> Option<PathBuf> {
    folder().map(|dir| dir.join(HUB_FILE))
}

/// Writes the file for the hub at `hub_url`; a failure is logged, not fatal.
pub fn publish(hub_url: &str, port: u16) {
    let published = Published {
        hub_url: hub_url.to_owned(),
        port,
        pid: std::process::id(),
    };
    write(HUB_FILE, &published);
}

/// Writes the links file; a failure is logged, not fatal.
pub fn publish_links(links: &[LinkView]) {
    let published = PublishedLinks {
        pid: std::process::id(),
        links: links.iter().map(PublishedLink::from).collect(),
    };
    write(LINKS_FILE, &published);
}

/// Writes one file owner-only, all at once (a reader never sees half of it).
fn write(name: &str, value: &impl Serialize) {
    let Some(path) = folder().map(|dir| dir.join(name)) else {
        return;
    };
    let written = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(value).unwrap_or_default())?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&partial, std::fs::Permissions::from_mode(0o600))?;
        }
        std::fs::rename(partial, &path)
    })();
    if let Err(e) = written {
        tracing::warn!("cannot write the discovery file {}: {e}", path.display());
    }
}

/// Removes the files if they are this process's.
pub fn withdraw() {
    let Some(dir) = folder() else { return };
    if read().is_some_and(|p| p.pid == std::process::id()) {
        let _ = std::fs::remove_file(dir.join(HUB_FILE));
    }
    if read_links().is_some_and(|p| p.pid == std::process::id()) {
        let _ = std::fs::remove_file(dir.join(LINKS_FILE));
    }
}

/// This user's running hub as published, if its process still runs.
pub fn read() -> Option<Published> {
    read_file(HUB_FILE, |p: &Published| p.pid)
}

/// The running agent's links as published, if its process still runs.
pub fn read_links() -> Option<PublishedLinks> {
    read_file(LINKS_FILE, |p: &PublishedLinks| p.pid)
}

fn read_file<T: for<'de> Deserialize<'de>>(name: &str, pid: impl Fn(&T) -> u32) -> Option<T> {
    let text = std::fs::read(folder()?.join(name)).ok()?;
    let published: T = serde_json::from_slice(&text).ok()?;
    let alive =
        !cfg!(target_os = "linux") || Path::new(&format!("/proc/{}", pid(&published))).exists();
    alive.then_some(published)
}
