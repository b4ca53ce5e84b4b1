//! The agent's configuration: typed, TOML, layered.
//!
//! Layers, each overriding the one before: built-in defaults < the machine file (site policy,
//! `/etc/lockstep/config.toml` or `%ProgramData%\Lockstep\config.toml`) < the user file (or the
//! file given with `--config`) < environment variables `LOCKSTEP__<TABLE>__<KEY>` < command-line
//! `--set table.key=value`. Every file is checked on its own first, so an error names the file
//! and the key that is wrong.

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
}

impl Default for HistoryConfig {
    fn default() -> Self {
        HistoryConfig {
            retain_days: 30,
            max_megabytes: 0,
            database: None,
        }
    }
}

/// `[audit]`: the audit trail (in the same database).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuditConfig {
    /// Days of audit trail kept; 0 (the default) keeps it forever.
    pub retain_days: u32,
}

/// An application allowed to join the session (`[[apps]]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
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
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".into(),
        }
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

/// Where configuration comes from, in the order applied.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// Files to read, in order; a missing file is skipped unless `required`.
    pub files: Vec<(PathBuf, bool)>,
    /// Environment variables (name, value); only those starting with `LOCKSTEP__` are read.
    pub env: Vec<(String, String)>,
    /// `table.key=value` overrides from the command line.
    pub overrides: Vec<String>,
}

impl ConfigSources {
    /// The standard layers: machine file, then `explicit` (required) or the user file, then the
    /// process environment, then `overrides`.
    pub fn standard(explicit: Option<&Path>, overrides: Vec<String>) -> Self {
        let paths = Paths::discover();
        let mut files = vec![(paths.machine_config_file(), false)];
        match explicit {
            Some(path) => files.push((path.to_owned(), true)),
            None => files.extend(paths.user_config_file().map(|p| (p, false))),
        }
        ConfigSources {
            files,
            env: std::env::vars().collect(),
            overrides,
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
        for (path, required) in &sources.files {
            let name = path.display().to_string();
            let text = match std::fs::read_to_string(path) {
                Ok(text) => text,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => continue,
                Err(e) => return Err(error(&name, "", format!("cannot read the file: {e}"))),
            };
            let table: toml::Table = text
                .parse()
                .map_err(|e: toml::de::Error| syntax_error(&name, &text, &e))?;
            check_layer(&name, &table)?;
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
            let layer = single_key(&key, value)
                .map_err(|reason| error(&format!("environment {name}"), &key, reason))?;
            check_layer(&format!("environment {name}"), &layer)?;
            merge(&mut merged, layer);
        }
        for item in &sources.overrides {
            let source = format!("--set {item}");
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| error(&source, "", "expected table.key=value".into()))?;
            let layer = single_key(key.trim(), value.trim())
                .map_err(|reason| error(&source, key, reason))?;
            check_layer(&source, &layer)?;
            merge(&mut merged, layer);
        }
        let config = deserialize("the merged configuration", merged)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks what types alone cannot: values in range, apps well formed.
    pub fn validate(&self) -> Result<(), ConfigError> {
        const SOURCE: &str = "configuration";
        self.hub
            .validate()
            .map_err(|(key, reason)| error(SOURCE, &format!("hub.{key}"), reason))?;
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
        Ok(())
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
    let parts: Vec<&str> = key.split('.').collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err("expected a dotted key such as hub.port".into());
    }
    let parsed = format!("v = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    let mut table = toml::Table::new();
    let mut cursor = &mut table;
    for part in &parts[..parts.len() - 1] {
        cursor = cursor
            .entry(part.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or("not a table")?;
    }
    cursor.insert(parts[parts.len() - 1].to_owned(), parsed);
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
    fn redaction_hides_secrets() {
        let f = file(APP);
        let text = load(&[&f], &[], &[]).unwrap().to_redacted_toml();
        assert!(!text.contains("change-me-now"));
        assert!(text.contains("<redacted>"));
    }
}
