//! Where the clinician's refresh token for the site is kept: the OS keyring, or, where there is
//! none (a server without a Secret Service), an owner-only file in the data folder. Never
//! logged, never in the configuration.

use crate::secrets::SecretStore;
use std::path::PathBuf;
use std::sync::Arc;

pub(crate) struct RefreshStore {
    secrets: Arc<dyn SecretStore>,
    /// The keyring entry's name (one per site).
    name: String,
    /// The fallback file.
    file: Option<PathBuf>,
}

impl RefreshStore {
    pub(crate) fn new(secrets: Arc<dyn SecretStore>, issuer: &str) -> Self {
        let file = crate::paths::Paths::discover()
            .data_dir()
            .map(|dir| dir.join("upstream-refresh-token"));
        RefreshStore {
            secrets,
            name: format!("upstream-refresh:{issuer}"),
            file,
        }
    }

    /// Blocking (the keyring): call from a blocking thread.
    pub(crate) fn get(&self) -> Option<String> {
        match self.secrets.get(&self.name) {
            Ok(Some(token)) => return Some(token),
            Ok(None) => {}
            Err(e) => tracing::debug!("no keyring for the site's refresh token: {e}"),
        }
        let text = std::fs::read_to_string(self.file.as_ref()?).ok()?;
        let (name, token) = text.trim().split_once('\n')?;
        (name == self.name).then(|| token.to_owned())
    }

    pub(crate) fn set(&self, token: &str) {
        if self.secrets.set(&self.name, token).is_ok() {
            self.remove_file();
            return;
        }
        let Some(file) = &self.file else {
            tracing::warn!(
                "the site's refresh token cannot be kept: no keyring and no data folder"
            );
            return;
        };
        if let Err(e) = write_owner_only(file, &format!("{}\n{token}\n", self.name)) {
            tracing::warn!("the site's refresh token cannot be kept: {e}");
        }
    }

    pub(crate) fn delete(&self) {
        let _ = self.secrets.delete(&self.name);
        self.remove_file();
    }

    fn remove_file(&self) {
        if let Some(file) = &self.file {
            let _ = std::fs::remove_file(file);
        }
    }
}

fn write_owner_only(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    std::io::Write::write_all(&mut options.open(path)?, text.as_bytes())
}
