//! Where Lockstep keeps its files. Every per-user folder is derived from the bundle identifier,
//! as Tauri derives its own, so that the tray app and `lockstepd` share the same files.

use directories::BaseDirs;
use std::path::PathBuf;

/// The bundle identifier (`tauri.conf.json`), and the name of every per-user folder.
pub const IDENTIFIER: &str = "org.lockstep.agent";
/// The file name of the configuration in each folder.
pub const CONFIG_FILE: &str = "config.toml";
/// The machine's file of recommended settings, beside the machine configuration.
pub const RECOMMENDED_FILE: &str = "recommended.toml";

#[derive(Debug, Clone)]
pub struct Paths {
    base: Option<BaseDirs>,
}

impl Paths {
    pub fn discover() -> Self {
        Paths {
            base: BaseDirs::new(),
        }
    }

    /// The machine-wide file that site IT manages (policy).
    pub fn machine_config_file(&self) -> PathBuf {
        machine_config_dir().join(CONFIG_FILE)
    }

    /// The machine-wide file of recommended settings: defaults the user may change.
    pub fn machine_recommended_file(&self) -> PathBuf {
        machine_config_dir().join(RECOMMENDED_FILE)
    }

    /// The signed-in user's file: `~/.config/org.lockstep.agent/config.toml` on Linux,
    /// `%APPDATA%\org.lockstep.agent\config.toml` on Windows.
    pub fn user_config_file(&self) -> Option<PathBuf> {
        Some(
            self.base
                .as_ref()?
                .config_dir()
                .join(IDENTIFIER)
                .join(CONFIG_FILE),
        )
    }

    /// History, audit and other state: `~/.local/share/org.lockstep.agent` on Linux.
    pub fn data_dir(&self) -> Option<PathBuf> {
        Some(self.base.as_ref()?.data_local_dir().join(IDENTIFIER))
    }

    /// Rolling log files.
    pub fn log_dir(&self) -> Option<PathBuf> {
        self.data_dir().map(|d| d.join("logs"))
    }
}

#[cfg(windows)]
fn machine_config_dir() -> PathBuf {
    let program_data = std::env::var_os("ProgramData").unwrap_or_else(|| "C:\\ProgramData".into());
    PathBuf::from(program_data).join("Lockstep")
}

#[cfg(not(windows))]
fn machine_config_dir() -> PathBuf {
    PathBuf::from("/etc/lockstep")
}
