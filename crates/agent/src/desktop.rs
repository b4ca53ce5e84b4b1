//! What the desktop shell presents and changes: each app's link state, the tray's status, pause,
//! the registered apps and the settings. The shell only shows these; every decision is here.

use crate::audit::AuditTrail;
use crate::config::{
    AppConfig, Config, PolicySetting, WhenUnwritable, read_user_file, set_key, write_user_file,
};
use crate::links::LinkView;
use crate::secrets::SecretStore;
use lockstep_fhircast::ScopeSet;
use lockstep_hub::{Authority, Engine};
use lockstep_store::WriteProblem;
use serde::Serialize;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;

/// What the tray icon says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum TrayStatus {
    Idle,
    Patient,
    /// An app refused or went silent.
    Problem,
    Paused,
    /// History cannot be written, and context changes are refused until it can.
    NoHistory,
    /// History cannot be written, and by site policy context changes go on without it.
    SyncWithoutHistory,
}

/// History that cannot be written, and what the site chose to do then.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct HistoryTrouble {
    pub problem: WriteProblem,
    pub policy: WhenUnwritable,
}

impl HistoryTrouble {
    /// The clinician's and site IT's words for it, in the window and the tray.
    pub fn notice(self) -> String {
        let problem = self.problem;
        match self.policy {
            WhenUnwritable::Refuse => format!(
                "History cannot be written: {problem}. Context changes are refused until it \
                 can be ({}).",
                problem.remedy()
            ),
            WhenUnwritable::SyncWithoutHistory => format!(
                "History cannot be written: {problem}. By site policy, context changes go on \
                 without a record; what waits is written once it can be, or lost if Lockstep \
                 stops first ({}).",
                problem.remedy()
            ),
        }
    }
}

impl TrayStatus {
    fn derive(
        paused: bool,
        links: &[LinkView],
        patient: bool,
        history: Option<HistoryTrouble>,
    ) -> Self {
        if let Some(trouble) = history {
            match trouble.policy {
                WhenUnwritable::Refuse => TrayStatus::NoHistory,
                WhenUnwritable::SyncWithoutHistory => TrayStatus::SyncWithoutHistory,
            }
        } else if paused {
            TrayStatus::Paused
        } else if links.iter().any(|l| l.problem) {
            TrayStatus::Problem
        } else if patient {
            TrayStatus::Patient
        } else {
            TrayStatus::Idle
        }
    }
}

/// A registered app, as the settings window lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AppView {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    /// Whether its secret is in the OS keyring (else in the config file).
    pub secret_in_keyring: bool,
    /// The policy file that fixes the list of apps, if one does.
    pub locked_by: Option<String>,
}

/// A newly registered app's credentials: the secret is shown once and never again.
#[derive(Debug, Clone, Serialize)]
pub struct NewApp {
    pub client_id: String,
    pub client_secret: String,
    /// False when the OS keyring was unavailable and the secret went to the config file
    /// (readable by the user alone).
    pub secret_in_keyring: bool,
}

/// The settings window's view (field names as the page reads them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsView {
    pub hub_port: u16,
    pub hub_url: String,
    pub log_dir: Option<String>,
    pub database: Option<String>,
    pub config_file: Option<String>,
    pub start_at_login: bool,
    pub notifications: bool,
    /// What site policy sets: enforced (locked) and recommended, each with its source.
    pub policy: Vec<PolicySetting>,
}

/// Why a change from the desktop was refused.
#[derive(Debug, thiserror::Error)]
pub enum DesktopError {
    #[error("`{key}` is set by site policy ({policy}) and cannot be changed here")]
    Locked { key: String, policy: String },
    #[error("{0}")]
    Invalid(String),
    #[error("no app `{0}` in {1}")]
    UnknownApp(String, String),
    #[error("there is no user configuration file to write to")]
    NoUserFile,
    #[error("cannot write the configuration: {0}")]
    Write(String),
}

/// Settings the desktop may change, each checked against the config's own types.
const SETTABLE: &[&str] = &[
    "desktop.start_at_login",
    "desktop.notifications",
    "hub.port",
    "log.level",
    "history.retain_days",
    "audit.retain_days",
];

/// The shared state behind the desktop API.
pub(crate) struct Desktop {
    pub(crate) engine: Engine,
    pub(crate) topic: Arc<str>,
    hub_url: String,
    authority: Arc<Authority>,
    secrets: Arc<dyn SecretStore>,
    audit: AuditTrail,
    config: Mutex<Config>,
    paused: watch::Sender<bool>,
    pub(crate) links: watch::Sender<Vec<LinkView>>,
    status: watch::Sender<TrayStatus>,
    /// Whether a patient is in context (kept by the context watcher).
    patient: AtomicBool,
    /// History that cannot be written now, if it cannot.
    history: Mutex<Option<HistoryTrouble>>,
}

impl Desktop {
    pub(crate) fn start(
        engine: Engine,
        topic: Arc<str>,
        hub_url: String,
        authority: Arc<Authority>,
        secrets: Arc<dyn SecretStore>,
        audit: AuditTrail,
        config: Config,
    ) -> Arc<Desktop> {
        Arc::new(Desktop {
            engine,
            topic,
            hub_url,
            authority,
            secrets,
            audit,
            config: Mutex::new(config),
            paused: watch::channel(false).0,
            links: watch::channel(Vec::new()).0,
            status: watch::channel(TrayStatus::Idle).0,
            patient: AtomicBool::new(false),
            history: Mutex::new(None),
        })
    }

    /// Whether a patient is in context now (told by the agent's context watcher).
    pub(crate) fn show_patient(&self, patient: bool) {
        self.patient.store(patient, Ordering::Relaxed);
        self.refresh_status();
    }

    fn config(&self) -> std::sync::MutexGuard<'_, Config> {
        self.config.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether history can be written now (told by the agent's store watcher).
    pub(crate) fn show_history(&self, trouble: Option<HistoryTrouble>) {
        *self.history.lock().unwrap_or_else(PoisonError::into_inner) = trouble;
        self.refresh_status();
    }

    /// What the window and tray say about history that cannot be written, while it cannot.
    pub(crate) fn history_notice(&self) -> Option<String> {
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .map(HistoryTrouble::notice)
    }

    pub(crate) fn refresh_status(&self) {
        let history = *self.history.lock().unwrap_or_else(PoisonError::into_inner);
        let status = TrayStatus::derive(
            *self.paused.borrow(),
            &self.links.borrow(),
            self.patient.load(Ordering::Relaxed),
            history,
        );
        self.status
            .send_if_modified(|s| std::mem::replace(s, status) != status);
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.engine.set_paused(&self.topic, paused);
        self.paused.send_replace(paused);
        self.refresh_status();
    }

    pub(crate) fn watch_paused(&self) -> watch::Receiver<bool> {
        self.paused.subscribe()
    }

    pub(crate) fn watch_links(&self) -> watch::Receiver<Vec<LinkView>> {
        self.links.subscribe()
    }

    pub(crate) fn watch_status(&self) -> watch::Receiver<TrayStatus> {
        self.status.subscribe()
    }

    pub(crate) fn apps(&self) -> Vec<AppView> {
        let config = self.config();
        let locked_by = config.lock_on("apps").map(|l| l.source.clone());
        config
            .apps
            .iter()
            .map(|app| AppView {
                client_id: app.client_id.clone(),
                name: app.display_name().to_owned(),
                scopes: app.scopes.clone(),
                secret_in_keyring: app.client_secret_key.is_some(),
                locked_by: locked_by.clone(),
            })
            .collect()
    }

    pub(crate) fn settings(&self) -> SettingsView {
        let config = self.config();
        SettingsView {
            hub_port: config.hub.port,
            hub_url: self.hub_url.clone(),
            log_dir: crate::paths::Paths::discover()
                .log_dir()
                .map(|d| d.display().to_string()),
            database: crate::history::database_path(&config)
                .ok()
                .map(|p| p.display().to_string()),
            config_file: config.user_file.as_ref().map(|p| p.display().to_string()),
            start_at_login: config.desktop.start_at_login,
            notifications: config.desktop.notifications,
            policy: config.policy.clone(),
        }
    }

    /// Registers a new app: a fresh client id and secret, the secret in the OS keyring (or, if
    /// there is none, in the owner-only config file), the config file updated, and the app
    /// able to get a token at once. Blocking (keyring, file).
    pub(crate) fn add_app(&self, name: &str, scopes: Vec<String>) -> Result<NewApp, DesktopError> {
        let name = name.trim();
        if name.is_empty() {
            return Err(DesktopError::Invalid("an app needs a name".into()));
        }
        if scopes.is_empty() {
            return Err(DesktopError::Invalid("grant at least one scope".into()));
        }
        ScopeSet::from_iter_checked(scopes.iter().map(String::as_str))
            .map_err(|e| DesktopError::Invalid(e.to_string()))?;
        let client_id = format!("{}-{}", slug(name), &random_hex()[..6]);
        let client_secret = random_hex();
        let key = format!("app.{client_id}");
        let in_keyring = match self.secrets.set(&key, &client_secret) {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "the OS keyring is unavailable ({e}); the new app's secret goes to the config file"
                );
                false
            }
        };
        let app = AppConfig {
            client_id: client_id.clone(),
            client_secret: (!in_keyring).then(|| client_secret.clone()),
            client_secret_key: in_keyring.then(|| key.clone()),
            scopes,
            name: Some(name.to_owned()),
            acknowledges: true,
            redirect_uris: Vec::new(),
        };
        let result = self.edit_apps(|apps| {
            apps.push(app.clone());
            Ok(())
        });
        if let Err(e) = result {
            if in_keyring {
                let _ = self.secrets.delete(&key);
            }
            return Err(e);
        }
        self.audit(format!(
            "app `{client_id}` ({name}) registered from the settings window"
        ));
        Ok(NewApp {
            client_id,
            client_secret,
            secret_in_keyring: in_keyring,
        })
    }

    /// Unregisters an app: its tokens stop working at once, its keyring secret is deleted.
    pub(crate) fn remove_app(&self, client_id: &str) -> Result<(), DesktopError> {
        let mut removed = None;
        self.edit_apps(|apps| {
            let at = apps
                .iter()
                .position(|a| a.client_id == client_id)
                .ok_or_else(|| {
                    DesktopError::UnknownApp(client_id.to_owned(), "the configuration file".into())
                })?;
            removed = Some(apps.remove(at));
            Ok(())
        })?;
        if let Some(key) = removed.and_then(|a| a.client_secret_key)
            && let Err(e) = self.secrets.delete(&key)
        {
            tracing::warn!("could not delete the keyring entry of `{client_id}`: {e}");
        }
        self.audit(format!(
            "app `{client_id}` removed from the settings window"
        ));
        Ok(())
    }

    /// Changes the user file's `apps` list, then the live registry.
    fn edit_apps(
        &self,
        change: impl FnOnce(&mut Vec<AppConfig>) -> Result<(), DesktopError>,
    ) -> Result<(), DesktopError> {
        let mut config = self.config();
        if let Some(lock) = config.lock_on("apps") {
            return Err(DesktopError::Locked {
                key: "apps".into(),
                policy: lock.source.clone(),
            });
        }
        let path = config.user_file.clone().ok_or(DesktopError::NoUserFile)?;
        let mut table = read_user_file(&path).map_err(|e| DesktopError::Write(e.to_string()))?;
        let mut apps: Vec<AppConfig> = match table.remove("apps") {
            Some(value) => value
                .try_into()
                .map_err(|e: toml::de::Error| DesktopError::Write(e.to_string()))?,
            None => Vec::new(),
        };
        change(&mut apps)?;
        let mut candidate = config.clone();
        // Apps from the user file replace the list; the file is the only writable layer.
        candidate.apps = apps.clone();
        candidate
            .validate()
            .map_err(|e| DesktopError::Invalid(e.to_string()))?;
        let clients = crate::resolve_clients(&candidate.apps, self.secrets.as_ref())
            .map_err(|e| DesktopError::Invalid(e.to_string()))?;
        let value = toml::Value::try_from(&apps).map_err(|e| DesktopError::Write(e.to_string()))?;
        table.insert("apps".into(), value);
        write_user_file(&path, &table).map_err(|e| DesktopError::Write(e.to_string()))?;
        self.authority.set_clients(clients);
        *config = candidate;
        Ok(())
    }

    /// Changes one setting in the user file. Settings that the running hub cannot take on
    /// the fly (the port) apply at the next start.
    pub(crate) fn set_setting(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), DesktopError> {
        if !SETTABLE.contains(&key) {
            return Err(DesktopError::Invalid(format!(
                "`{key}` cannot be changed from the desktop"
            )));
        }
        let mut config = self.config();
        if let Some(lock) = config.lock_on(key) {
            return Err(DesktopError::Locked {
                key: key.to_owned(),
                policy: lock.source.clone(),
            });
        }
        let value: toml::Value = serde_json::from_value(value)
            .map_err(|e| DesktopError::Invalid(format!("`{key}`: {e}")))?;
        // Checked against the config's own types and rules before anything is written.
        let mut whole =
            toml::Table::try_from(&*config).map_err(|e| DesktopError::Write(e.to_string()))?;
        set_key(&mut whole, key, value.clone()).map_err(DesktopError::Invalid)?;
        let mut candidate: Config =
            toml::Value::Table(whole)
                .try_into()
                .map_err(|e: toml::de::Error| {
                    DesktopError::Invalid(format!("`{key}`: {}", e.message()))
                })?;
        candidate
            .validate()
            .map_err(|e| DesktopError::Invalid(e.to_string()))?;
        candidate.policy = config.policy.clone();
        candidate.user_file = config.user_file.clone();
        let path = config.user_file.clone().ok_or(DesktopError::NoUserFile)?;
        let mut table = read_user_file(&path).map_err(|e| DesktopError::Write(e.to_string()))?;
        set_key(&mut table, key, value).map_err(DesktopError::Invalid)?;
        write_user_file(&path, &table).map_err(|e| DesktopError::Write(e.to_string()))?;
        *config = candidate;
        drop(config);
        self.audit(format!("setting `{key}` changed from the settings window"));
        Ok(())
    }

    fn audit(&self, detail: String) {
        self.audit.desktop_change(detail);
    }
}

/// 244 random bits as hex, from the OS generator (through two UUID v4s).
fn random_hex() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// `Reading Room PACS` → `reading-room-pacs`.
fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') && !out.is_empty() {
            out.push('-');
        }
    }
    let out = out.trim_end_matches('-');
    if out.is_empty() {
        "app".to_owned()
    } else {
        out.chars().take(24).collect()
    }
}
