//! The per-user discovery file: where this user's hub listens, for `lockstepd` verbs and
//! launched apps, when it is not the configured port (another user's agent holds that one on a
//! multi-session host). `$XDG_RUNTIME_DIR/org.lockstep.agent/hub.json` (the data folder where
//! there is no runtime folder), owner-only, removed when the agent stops.

use crate::paths::{IDENTIFIER, Paths};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    #[serde(rename = "hub.url")]
    pub hub_url: String,
    pub port: u16,
    pub pid: u32,
}

/// The file's place for this user.
pub fn path() -> Option<PathBuf> {
    std::env::var_os("XDG_RUNTIME_DIR")
        .map(PathBuf::from)
        .filter(|dir| dir.is_absolute())
        .map(|dir| dir.join(IDENTIFIER))
        .or_else(|| Paths::discover().data_dir())
        .map(|dir| dir.join("hub.json"))
}

/// Writes the file for the hub at `hub_url`; a failure is logged, not fatal.
pub fn publish(hub_url: &str, port: u16) {
    let Some(path) = path() else { return };
    let published = Published {
        hub_url: hub_url.to_owned(),
        port,
        pid: std::process::id(),
    };
    let written = (|| -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partial = path.with_extension("json.partial");
        std::fs::write(&partial, serde_json::to_vec(&published).unwrap_or_default())?;
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

/// Removes the file if it is this process's.
pub fn withdraw() {
    if let Some(path) = path()
        && read().is_some_and(|p| p.pid == std::process::id())
    {
        let _ = std::fs::remove_file(path);
    }
}

/// This user's running hub as published, if its process still runs.
pub fn read() -> Option<Published> {
    let text = std::fs::read(path()?).ok()?;
    let published: Published = serde_json::from_slice(&text).ok()?;
    let alive = !cfg!(target_os = "linux")
        || std::path::Path::new(&format!("/proc/{}", published.pid)).exists();
    alive.then_some(published)
}
