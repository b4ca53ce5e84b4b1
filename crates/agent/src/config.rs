//! The agent's configuration: typed, TOML, layered.
//!
//! Layers, each overriding the one before: built-in defaults < the machine file (site policy,
//! `/etc/lockstep/config.toml` or `%ProgramData%\Lockstep\config.toml`) < the user file (or the
//! file given with `--config`) < environment variables `LOCKSTEP__<TABLE>__<KEY>` < command-line
//! `--set table.key=value`. Every file is checked on its own first, so an error names the file
//! and the key that is wrong.

mod origin;
pub use origin::{EffectiveSetting, SettingOrigin};

use crate::paths::Paths;
use lockstep_fhircast::ScopeSet;
use lockstep_hub::HubSettings;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub hub: HubSettings,
    /// Applications allowed to join the clinician's session.
    pub apps: Vec<AppConfig>,
    pub log: LogConfig,
    pub history: HistoryConfig,
    pub audit: AuditConfig,
    pub desktop: DesktopConfig,
    /// `[[bridges.launch]]`, `[[bridges.folder]]`: legacy apps bridged into the session.
    pub bridges: lockstep_bridges::BridgesConfig,
    /// Settings the machine file (site policy) sets: later layers cannot change them.
    #[serde(skip)]
    pub locked: Vec<LockedSetting>,
    /// The file the settings window writes to: `--config FILE`, else the user file.
    #[serde(skip)]
    pub user_file: Option<PathBuf>,
    /// Which layer set each key (absent: the default).
    #[serde(skip)]
    pub origins: origin::Origins,
}

/// `[desktop]`: the tray app's preferences.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DesktopConfig {
    /// Start the tray app when the user signs in (off unless policy or the user turns it on).
    pub start_at_login: bool,
    /// OS notifications for sync problems.
    pub notifications: bool,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            start_at_login: false,
            notifications: true,
        }
    }
}

/// A setting site policy fixes, and where the lock comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LockedSetting {
    /// Dotted key, e.g. `hub.port`; `apps` for the whole list of apps.
    pub key: String,
    /// The policy file that sets it.
    pub source: String,
}

/// `[history]`: the context history in the local database.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HistoryConfig {
    /// Days of history kept; 0 keeps it forever.
    pub retain_days: u32,
    /// A cap on the database's size in megabytes (history and audit together, oldest rows
    /// first); 0 is no cap.
    pub max_megabytes: u64,
    /// The database file; by default `lockstep.db` in the data folder.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database: Option<std::path::PathBuf>,
    /// What the hub does while history cannot be written (a full disk, a locked or read-only
    /// database).
    pub when_unwritable: WhenUnwritable,
    /// What the agent does at start when the database has damaged pages.
    pub when_damaged: WhenDamaged,
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retain_days: 30,
            max_megabytes: 0,
            database: None,
            when_unwritable: WhenUnwritable::Refuse,
            when_damaged: WhenDamaged::Refuse,
        }
    }
}

/// `history.when_unwritable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenUnwritable {
    /// Context changes are refused (503, saying why) until history can be written: every
    /// answered change is on record.
    #[default]
    Refuse,
    /// Context changes go on; what cannot be written yet is kept and written once it can, and
    /// is lost if the agent stops first. The tray says so the whole time.
    SyncWithoutHistory,
}

/// `history.when_damaged`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenDamaged {
    /// The agent does not start, and says what to do; the file is left as it is.
    #[default]
    Refuse,
    /// The damaged file is moved aside (`lockstep.db.damaged-<time>`, kept) and the agent
    /// starts on a fresh database.
    StartFresh,
}

/// `[audit]`: the audit trail (in the same database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days of audit trail kept; 0 (the default) keeps it forever.
    pub retain_days: u32,
}

/// An application allowed to join the session (`[[apps]]`).
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub client_id: String,
    /// The secret itself, in the file (protect the file), ...
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// ... or the name of an entry in the OS keyring that holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_secret_key: Option<String>,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Shown in the UI and in SyncErrors; the client id when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// False for an app known never to answer events with `{id, status}` (OHIF's FHIRcast
    /// service): its events are not awaited and its silence raises no SyncError. Otherwise it
    /// is dropped after every `ack_timeout_seconds`, re-subscribes, and is dropped again.
    #[serde(default = "acknowledges_by_default", skip_serializing_if = "is_true")]
    pub acknowledges: bool,
}

fn acknowledges_by_default() -> bool {
    true
}

fn is_true(value: &bool) -> bool {
    *value
}

// Hand-written so that a `{:?}` of the configuration (a log line, a test failure) never
// prints a client secret.
impl fmt::Debug for AppConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppConfig")
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_secret_key", &self.client_secret_key)
            .field("scopes", &self.scopes)
            .field("name", &self.name)
            .field("acknowledges", &self.acknowledges)
            .finish()
    }
}

impl AppConfig {
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.client_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LogConfig {
    /// `error`, `warn`, `info`, `debug` or `trace`, or a tracing filter directive.
    pub level: String,
    /// Also log to a file in the user's log folder (`<data folder>/logs`), which rotates.
    pub file: bool,
    /// A log file is rotated when it would grow past this.
    pub max_file_megabytes: u64,
    /// Rotated files kept beside the current one; the oldest goes.
    pub max_files: u32,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
            file: true,
            max_file_megabytes: 10,
            max_files: 5,
        }
    }
}

impl LogConfig {
    fn validate(&self) -> Result<(), (&'static str, String)> {
        if !(1..=1024).contains(&self.max_file_megabytes) {
            return Err(("max_file_megabytes", "must be 1 to 1024".into()));
        }
        if !(1..=100).contains(&self.max_files) {
            return Err(("max_files", "must be 1 to 100".into()));
        }
        Ok(())
    }
}

/// A configuration error: which source, which key, and why.
#[derive(Debug)]
pub struct ConfigError {
    pub source: String,
    pub key: String,
    pub reason: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.source, self.reason)
        } else {
            write!(f, "{}: key `{}`: {}", self.source, self.key, self.reason)
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<lockstep_bridges::ConfigProblem> for ConfigError {
    fn from(p: lockstep_bridges::ConfigProblem) -> Self {
        error("configuration", &p.key, p.reason)
    }
}

/// Where configuration comes from, in the order applied.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The machine file (site policy), read first; every key it sets is locked.
    pub policy: Option<PathBuf>,
    /// Files to read, in order; a missing file is skipped unless `required`.
    pub files: Vec<(PathBuf, bool)>,
    /// Environment variables (name, value); only those starting with `LOCKSTEP__` are read.
    pub env: Vec<(String, String)>,
    /// `table.key=value` overrides from the command line.
    pub overrides: Vec<String>,
    /// Where changes made in the app are written.
    pub user_file: Option<PathBuf>,
}

impl ConfigSources {
    /// The standard layers: machine file, then `explicit` (required) or the user file, then the
    /// process environment, then `overrides`.
    pub fn standard(explicit: Option<&Path>, overrides: Vec<String>) -> Self {
        let paths = Paths::discover();
        let user_file = match explicit {
            Some(path) => Some(path.to_owned()),
            None => paths.user_config_file(),
        };
        ConfigSources {
            policy: Some(paths.machine_config_file()),
            files: user_file
                .iter()
                .map(|p| (p.clone(), explicit.is_some()))
                .collect(),
            env: std::env::vars().collect(),
            overrides,
            user_file,
        }
    }
}

const ENV_PREFIX: &str = "LOCKSTEP__";

impl Config {
    /// Loads the standard layers (see the module docs) with `path` as the user file.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        Self::load_from(&ConfigSources::standard(path, Vec::new()))
    }

    pub fn load_from(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let mut merged = toml::Table::new();
        let mut locked = Vec::new();
        let mut origins = origin::Origins::new();
        let mut record = |layer: &toml::Table, origin: SettingOrigin| {
            for key in leaf_keys(layer) {
                origins.insert(key, origin.clone());
            }
        };
        if let Some(policy) = &sources.policy
            && let Some(table) = read_layer(policy, false)?
        {
            let source = policy.display().to_string();
            locked = leaf_keys(&table)
                .into_iter()
                .map(|key| LockedSetting {
                    key,
                    source: source.clone(),
                })
                .collect();
            record(&table, SettingOrigin::EnforcedPolicy(source));
            merge(&mut merged, table);
        }
        for (path, required) in &sources.files {
            let Some(mut table) = read_layer(path, *required)? else {
                continue;
            };
            strip_locked(&mut table, &locked, &path.display().to_string());
            record(&table, SettingOrigin::File(path.display().to_string()));
            merge(&mut merged, table);
        }
        let mut env: Vec<&(String, String)> = sources
            .env
            .iter()
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        env.sort();
        for (name, value) in env {
            let key = name[ENV_PREFIX.len()..]
                .to_ascii_lowercase()
                .replace("__", ".");
            let source = format!("environment {name}");
            let mut layer =
                single_key(&key, value).map_err(|reason| error(&source, &key, reason))?;
            check_layer(&source, &layer)?;
            strip_locked(&mut layer, &locked, &source);
            record(&layer, SettingOrigin::Environment(name.clone()));
            merge(&mut merged, layer);
        }
        for item in &sources.overrides {
            let source = format!("--set {item}");
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| error(&source, "", "expected table.key=value".into()))?;
            let mut layer = single_key(key.trim(), value.trim())
                .map_err(|reason| error(&source, key, reason))?;
            check_layer(&source, &layer)?;
            strip_locked(&mut layer, &locked, &source);
            record(&layer, SettingOrigin::CommandLine(item.clone()));
            merge(&mut merged, layer);
        }
        let mut config = deserialize("the merged configuration", merged)?;
        config.validate()?;
        config.locked = locked;
        config.origins = origins;
        config.user_file = sources.user_file.clone();
        Ok(config)
    }

    /// The lock on `key` (or on a table above it), if site policy sets it.
    pub fn lock_on(&self, key: &str) -> Option<&LockedSetting> {
        self.locked.iter().find(|l| {
            key == l.key
                || key.starts_with(&format!("{}.", l.key))
                || l.key.starts_with(&format!("{key}."))
        })
    }

    /// Checks what types alone cannot: values in range, apps well formed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validated().map(drop)
    }

    /// Checks the configuration as [`validate`](Self::validate) does, and returns its bridges
    /// ready to run.
    pub fn validated(&self) -> Result<lockstep_bridges::ValidBridges, ConfigError> {
        const SOURCE: &str = "configuration";
        self.hub
            .validate()
            .map_err(|(key, reason)| error(SOURCE, &format!("hub.{key}"), reason))?;
        self.log
            .validate()
            .map_err(|(key, reason)| error(SOURCE, &format!("log.{key}"), reason))?;
        for (i, app) in self.apps.iter().enumerate() {
            let key = |field: &str| format!("apps[{i}].{field}");
            if app.client_id.trim().is_empty() {
                return Err(error(SOURCE, &key("client_id"), "must not be empty".into()));
            }
            if self.apps[..i]
                .iter()
                .any(|other| other.client_id == app.client_id)
            {
                return Err(error(
                    SOURCE,
                    &key("client_id"),
                    format!("`{}` is registered twice", app.client_id),
                ));
            }
            match (&app.client_secret, &app.client_secret_key) {
                (Some(_), Some(_)) => {
                    return Err(error(
                        SOURCE,
                        &key("client_secret"),
                        "give client_secret or client_secret_key, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(error(
                        SOURCE,
                        &key("client_secret"),
                        "missing: give client_secret or client_secret_key".into(),
                    ));
                }
                (Some(secret), None) if secret.len() < 8 => {
                    return Err(error(
                        SOURCE,
                        &key("client_secret"),
                        "must be at least 8 characters".into(),
                    ));
                }
                _ => {}
            }
            if app.scopes.is_empty() {
                return Err(error(
                    SOURCE,
                    &key("scopes"),
                    "grant at least one scope, e.g. \"fhircast/*.read\"".into(),
                ));
            }
            ScopeSet::from_iter_checked(app.scopes.iter().map(String::as_str))
                .map_err(|e| error(SOURCE, &key("scopes"), e.to_string()))?;
        }
        Ok(self.bridges.validate()?)
    }

    /// The configuration as TOML, with every secret replaced by `"<redacted>"`.
    pub fn to_redacted_toml(&self) -> String {
        let mut copy = self.clone();
        for app in &mut copy.apps {
            if app.client_secret.is_some() {
                app.client_secret = Some("<redacted>".into());
            }
        }
        toml::to_string_pretty(&copy).unwrap_or_default()
    }
}

/// Reads and checks one file; `None` when it is missing and not required.
fn read_layer(path: &Path, required: bool) -> Result<Option<toml::Table>, ConfigError> {
    let name = path.display().to_string();
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => return Ok(None),
        Err(e) => return Err(error(&name, "", format!("cannot read the file: {e}"))),
    };
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| syntax_error(&name, &text, &e))?;
    check_layer(&name, &table)?;
    Ok(Some(table))
}

/// Dotted keys of every value in `table` (an array, such as `apps`, counts as one value).
fn leaf_keys(table: &toml::Table) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                keys.extend(leaf_keys(inner).into_iter().map(|k| format!("{key}.{k}")))
            }
            _ => keys.push(key.clone()),
        }
    }
    keys
}

/// Removes from a later layer every key site policy locks; policy wins, and says so.
fn strip_locked(table: &mut toml::Table, locked: &[LockedSetting], source: &str) {
    for lock in locked {
        let mut parts = lock.key.split('.').peekable();
        let mut cursor = &mut *table;
        while let Some(part) = parts.next() {
            if parts.peek().is_none() {
                if cursor.remove(part).is_some() {
                    tracing::warn!(
                        "{source}: `{}` is set by site policy ({}); ignored",
                        lock.key,
                        lock.source
                    );
                }
                break;
            }
            match cursor.get_mut(part).and_then(toml::Value::as_table_mut) {
                Some(inner) => cursor = inner,
                None => break,
            }
        }
    }
}

/// Sets one dotted key in a TOML table, creating the tables above it.
pub fn set_key(table: &mut toml::Table, key: &str, value: toml::Value) -> Result<(), String> {
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(format!("`{key}` is not a dotted key"));
    }
    let mut cursor = table;
    for part in &parts[..parts.len() - 1] {
        cursor = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| format!("`{part}` is not a table"))?;
    }
    cursor.insert(parts[parts.len() - 1].to_owned(), value);
    Ok(())
}

/// Reads a config file as a TOML table to edit (empty when the file does not exist yet).
pub fn read_user_file(path: &Path) -> Result<toml::Table, ConfigError> {
    Ok(read_layer(path, false)?.unwrap_or_default())
}

/// Writes a config file readable and writable by its owner alone (it may hold client
/// secrets): to a temporary file created 0600 beside it, then renamed over it.
pub fn write_user_file(path: &Path, table: &toml::Table) -> std::io::Result<()> {
    use std::io::Write;
    let text = toml::to_string_pretty(table).map_err(std::io::Error::other)?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let temp = dir.join(format!(
        ".{}.tmp",
        path.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("config.toml")
    ));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&temp)?;
    #[cfg(unix)]
    std::fs::set_permissions(&temp, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)
}

/// Fuzz body (not an API): one file's text through everything a configuration file goes
/// through (syntax and its error location, types and unknown keys, site-policy keys,
/// validation, the redacted print-out), and each `key=value` line as a `--set` override.
/// Panics only on a bug. The cargo-fuzz target and the corpus regression test call it.
#[doc(hidden)]
pub fn fuzz_config_file(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    for line in text.lines().take(16) {
        if let Some((key, value)) = line.split_once('=')
            && let Ok(layer) = single_key(key.trim(), value.trim())
        {
            let _ = check_layer("fuzz --set", &layer);
        }
    }
    let table = match text.parse::<toml::Table>() {
        Ok(table) => table,
        Err(e) => {
            let _ = syntax_error("fuzz", text, &e).to_string();
            return;
        }
    };
    if check_layer("fuzz", &table).is_err() {
        return;
    }
    let _ = leaf_keys(&table);
    let Ok(config) = deserialize("fuzz", table) else {
        return;
    };
    if config.validate().is_err() {
        return;
    }
    // What `check-config` prints must itself be a configuration that loads.
    let printed = config.to_redacted_toml();
    let reread: toml::Table = printed
        .parse()
        .unwrap_or_else(|e| panic!("the printed configuration does not parse: {e}\n{printed}"));
    deserialize("printed", reread)
        .unwrap_or_else(|e| panic!("the printed configuration does not load: {e}\n{printed}"));
}

fn error(source: &str, key: &str, reason: String) -> ConfigError {
    ConfigError {
        source: source.to_owned(),
        key: key.to_owned(),
        reason,
    }
}

fn syntax_error(name: &str, text: &str, e: &toml::de::Error) -> ConfigError {
    let location = e.span().map(|span| {
        let before = &text[..span.start.min(text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!("line {line}, column {column}: ")
    });
    error(
        name,
        "",
        format!(
            "TOML syntax error at {}{}",
            location.unwrap_or_default(),
            e.message()
        ),
    )
}

/// Deserialises one layer alone so that an unknown key or a wrong type is reported against
/// the layer that has it.
fn check_layer(source: &str, table: &toml::Table) -> Result<(), ConfigError> {
    deserialize(source, table.clone()).map(drop)
}

fn deserialize(source: &str, table: toml::Table) -> Result<Config, ConfigError> {
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let key = e.path().to_string();
        let key = if key == "." { String::new() } else { key };
        error(source, &key, e.into_inner().message().to_owned())
    })
}

/// `hub.port` + `"0"` → `{hub = {port = 0}}`; the value is read as TOML, else as a string.
fn single_key(key: &str, value: &str) -> Result<toml::Table, String> {
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut table = toml::Table::new();
    set_key(&mut table, key, parsed)?;
    Ok(table)
}

/// Deep-merges `layer` into `base`: tables merge key by key, anything else (arrays included)
/// replaces what was there.
fn merge(base: &mut toml::Table, layer: toml::Table) {
    for (key, value) in layer {
        match (base.get_mut(&key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge(existing, incoming)
            }
            (_, value) => {
                base.insert(key, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    fn load(
        files: &[&tempfile::NamedTempFile],
        env: &[(&str, &str)],
        overrides: &[&str],
    ) -> Result<Config, ConfigError> {
        Config::load_from(&ConfigSources {
            files: files.iter().map(|f| (f.path().to_owned(), true)).collect(),
            env: env
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            overrides: overrides.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        })
    }

    const APP: &str = "[[apps]]\nclient_id = \"ris\"\nclient_secret = \"change-me-now\"\nscopes = [\"fhircast/*.read\"]\n";

    #[test]
    fn layers_override_in_order() {
        let machine = file("[hub]\nport = 5000\nack_timeout_seconds = 5\n");
        let user = file(&format!("[hub]\nport = 5001\n{APP}"));
        let config = load(
            &[&machine, &user],
            &[("LOCKSTEP__HUB__LEASE_SECONDS_MAX", "7200"), ("OTHER", "x")],
            &["hub.port=0"],
        )
        .unwrap();
        assert_eq!(config.hub.port, 0);
        assert_eq!(config.hub.ack_timeout_seconds, 5);
        assert_eq!(config.hub.lease_seconds_max, 7200);
        assert_eq!(config.apps[0].display_name(), "ris");
    }

    #[test]
    fn errors_name_file_key_and_reason() {
        let typo = file("[hub]\nprot = 1\n");
        let err = load(&[&typo], &[], &[]).unwrap_err();
        assert_eq!(err.source, typo.path().display().to_string());
        assert_eq!(err.key, "hub.prot");
        assert!(err.reason.contains("unknown field"), "{err}");

        let wrong_type = file("[hub]\nport = \"high\"\n");
        let err = load(&[&wrong_type], &[], &[]).unwrap_err();
        assert_eq!(err.key, "hub.port");

        let syntax = file("[hub\nport = 1\n");
        let err = load(&[&syntax], &[], &[]).unwrap_err();
        assert!(err.reason.contains("line 1"), "{err}");

        let out_of_range = file("[hub]\nport = 70000\n");
        assert_eq!(
            load(&[&out_of_range], &[], &[]).unwrap_err().key,
            "hub.port"
        );

        let no_secret = file("[[apps]]\nclient_id = \"ris\"\nscopes = [\"fhircast/*.read\"]\n");
        assert_eq!(
            load(&[&no_secret], &[], &[]).unwrap_err().key,
            "apps[0].client_secret"
        );

        let bad_scope = file(&APP.replace("fhircast/*.read", "fhircast/Patient-open"));
        assert_eq!(
            load(&[&bad_scope], &[], &[]).unwrap_err().key,
            "apps[0].scopes"
        );

        let err = load(&[], &[], &["hub.ack_timeout_seconds=0"]).unwrap_err();
        assert_eq!(err.key, "hub.ack_timeout_seconds");
    }

    #[test]
    fn missing_optional_file_is_skipped_but_required_is_not() {
        let sources = ConfigSources {
            files: vec![(PathBuf::from("/nonexistent/lockstep.toml"), false)],
            ..Default::default()
        };
        assert_eq!(Config::load_from(&sources).unwrap(), Config::default());
        let sources = ConfigSources {
            files: vec![(PathBuf::from("/nonexistent/lockstep.toml"), true)],
            ..Default::default()
        };
        assert!(
            Config::load_from(&sources)
                .unwrap_err()
                .reason
                .contains("cannot read")
        );
    }

    #[test]
    fn site_policy_locks_what_it_sets() {
        let policy = file("[hub]\nport = 5000\n[desktop]\nstart_at_login = true\n");
        let user = file(&format!(
            "[hub]\nport = 6000\nack_timeout_seconds = 4\n{APP}"
        ));
        let config = Config::load_from(&ConfigSources {
            policy: Some(policy.path().to_owned()),
            files: vec![(user.path().to_owned(), true)],
            env: vec![("LOCKSTEP__HUB__PORT".into(), "7000".into())],
            overrides: vec!["desktop.start_at_login=false".into()],
            user_file: Some(user.path().to_owned()),
        })
        .unwrap();
        assert_eq!(
            config.hub.port, 5000,
            "policy wins over the user file, env and --set"
        );
        assert!(config.desktop.start_at_login);
        assert_eq!(
            config.hub.ack_timeout_seconds, 4,
            "unlocked keys still come from the user"
        );
        let lock = config.lock_on("hub.port").unwrap();
        assert_eq!(lock.source, policy.path().display().to_string());
        assert!(config.lock_on("hub.ack_timeout_seconds").is_none());
        assert!(
            config.lock_on("desktop").is_some(),
            "a table with a locked key is partly locked"
        );
        assert_eq!(config.user_file.as_deref(), Some(user.path()));
    }

    #[test]
    fn user_file_is_written_owner_only_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");
        let mut table = read_user_file(&path).unwrap();
        set_key(
            &mut table,
            "desktop.notifications",
            toml::Value::Boolean(false),
        )
        .unwrap();
        write_user_file(&path, &table).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
        }
        let back = Config::load_from(&ConfigSources {
            files: vec![(path.clone(), true)],
            ..Default::default()
        })
        .unwrap();
        assert!(!back.desktop.notifications);
        assert!(set_key(&mut table, "desktop..x", toml::Value::Boolean(true)).is_err());
    }

    #[test]
    fn debug_output_hides_secrets() {
        let f = file(APP);
        let config = load(&[&f], &[], &[]).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("change-me-now"), "{debug}");
        assert!(debug.contains("<redacted>"));
    }

    #[test]
    fn redaction_hides_secrets() {
        let f = file(APP);
        let text = load(&[&f], &[], &[]).unwrap().to_redacted_toml();
        assert!(!text.contains("change-me-now"));
        assert!(text.contains("<redacted>"));
    }
}
