//! Start at login, as the `desktop.start_at_login` setting says (off unless site policy or the
//! user turns it on): an XDG autostart entry on Linux, the Run key on Windows, a login item on
//! macOS.

use tauri::{AppHandle, Builder, Runtime};

/// Makes the OS entry match the setting; called at start and whenever the setting changes.
pub fn apply(app: &AppHandle, enabled: bool) {
    match set(app, enabled) {
        Ok(()) => tracing::debug!("start at login: {enabled}"),
        Err(error) => tracing::warn!("cannot set start at login to {enabled}: {error}"),
    }
}

/// Adds what start at login needs to the app: nothing on Linux, where the entry is a file
/// (see `xdg`).
#[cfg(target_os = "linux")]
pub fn register<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder
}

#[cfg(target_os = "linux")]
fn set(_app: &AppHandle, enabled: bool) -> std::io::Result<()> {
    let entry = xdg::entry_path()
        .ok_or_else(|| std::io::Error::other("no home folder for the autostart entry"))?;
    if enabled {
        // An AppImage moves its binary on every start; the image itself is what to run.
        let program = match std::env::var_os("APPIMAGE") {
            Some(image) => std::path::PathBuf::from(image),
            None => std::env::current_exe()?,
        };
        xdg::write_entry(&entry, &program)
    } else {
        match std::fs::remove_file(&entry) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error),
            _ => Ok(()),
        }
    }
}

#[cfg(not(target_os = "linux"))]
pub fn register<R: Runtime>(builder: Builder<R>) -> Builder<R> {
    builder.plugin(
        tauri_plugin_autostart::Builder::new()
            .app_name("Lockstep")
            .build(),
    )
}

#[cfg(not(target_os = "linux"))]
fn set(app: &AppHandle, enabled: bool) -> Result<(), tauri_plugin_autostart::Error> {
    use tauri_plugin_autostart::ManagerExt;
    let launcher = app.autolaunch();
    match (enabled, launcher.is_enabled()) {
        (true, Ok(true)) | (false, Ok(false)) => Ok(()),
        (true, _) => launcher.enable(),
        (false, _) => launcher.disable(),
    }
}

/// The freedesktop.org autostart entry: `$XDG_CONFIG_HOME/autostart/org.lockstep.agent.desktop`.
/// The Debian package installs a machine entry of the same name in `/etc/xdg/autostart` that
/// runs `lockstep --at-login` (which exits unless the setting is on); a user's entry of the same
/// name takes its place, as the XDG autostart specification says.
#[cfg(target_os = "linux")]
mod xdg {
    use std::path::{Path, PathBuf};

    const FILE: &str = "org.lockstep.agent.desktop";

    pub fn entry_path() -> Option<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .map(PathBuf::from)
            .filter(|path| path.is_absolute())
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(config.join("autostart").join(FILE))
    }

    pub fn write_entry(entry: &Path, program: &Path) -> std::io::Result<()> {
        if let Some(folder) = entry.parent() {
            std::fs::create_dir_all(folder)?;
        }
        // Written whole, then renamed: a session that starts mid-write never reads half.
        let partial = entry.with_extension("desktop.partial");
        std::fs::write(&partial, contents(program))?;
        std::fs::rename(partial, entry)
    }

    pub fn contents(program: &Path) -> String {
        format!(
            "[Desktop Entry]\n\
             Type=Application\n\
             Name=Lockstep\n\
             Comment=Keeps this desktop's applications on the same patient (FHIRcast)\n\
             Exec={}\n\
             Icon=lockstep\n\
             Terminal=false\n\
             NoDisplay=true\n\
             X-GNOME-Autostart-enabled=true\n",
            quote_exec(&program.to_string_lossy())
        )
    }

    /// The Exec key's quoting (Desktop Entry Specification, "The Exec key"): the program in
    /// double quotes, with `"`, `` ` ``, `$` and `\` escaped, and `%` doubled (field codes).
    fn quote_exec(program: &str) -> String {
        let mut quoted = String::from("\"");
        for c in program.chars() {
            match c {
                '"' | '`' | '$' | '\\' => {
                    quoted.push('\\');
                    quoted.push(c);
                }
                '%' => quoted.push_str("%%"),
                c => quoted.push(c),
            }
        }
        quoted.push('"');
        // The entry format escapes backslashes once more.
        quoted.replace('\\', "\\\\")
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_program_is_quoted_as_the_spec_asks() {
            assert_eq!(quote_exec("/usr/bin/lockstep"), "\"/usr/bin/lockstep\"");
            assert_eq!(
                quote_exec("/opt/Lock step/$bin%"),
                "\"/opt/Lock step/\\\\$bin%%\""
            );
        }

        #[test]
        fn the_entry_starts_the_program() {
            let entry = contents(Path::new("/usr/bin/lockstep"));
            assert!(entry.starts_with("[Desktop Entry]\n"));
            assert!(entry.contains("\nExec=\"/usr/bin/lockstep\"\n"));
        }
    }
}
