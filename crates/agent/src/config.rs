//! The agent's configuration: typed, TOML, layered.
//!
//! Layers, each overriding the one before: built-in defaults < recommended site policy
//! (`recommended.toml` beside the machine file, then the registry's `Recommended` key on
//! Windows) < the user file (or the file given with `--config`) < environment variables
//! `LOCKSTEP__<TABLE>__<KEY>` < command-line `--set table.key=value`. Enforced site policy (the
//! machine file `/etc/lockstep/config.toml` or `%ProgramData%\Lockstep\config.toml`, then
//! `HKLM\Software\Policies\Lockstep`) sits above them all: every key it sets is locked. Every
//! layer is checked on its own first, so an error names the file (or registry key) and the key
//! that is wrong.

mod layers;
mod origin;
mod upstream;
pub use layers::{
    ConfigSources, PolicyLayer, fuzz_config_file, read_user_file, registry_policy, set_key,
    write_user_file,
};
pub use origin::{EffectiveSetting, SettingOrigin};
pub use upstream::{DEFAULT_SCOPES, UpstreamConfig, WhenDown};

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
    /// `[upstream]`: the site's hub the session follows, if any.
    pub upstream: UpstreamConfig,
    /// Settings site policy sets: enforced ones later layers cannot change, recommended ones
    /// only defaults.
    #[serde(skip)]
    pub policy: Vec<PolicySetting>,
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
    /// A locked screen sends `UserHibernate` to the session and signing out `UserLogout`
    /// (off for a shared kiosk whose screen lock should not end anyone's reading).
    pub follow_os_session: bool,
}

impl Default for DesktopConfig {
    fn default() -> Self {
        DesktopConfig {
            start_at_login: false,
            notifications: true,
            follow_os_session: true,
        }
    }
}

/// A setting site policy sets, how firmly, and where from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicySetting {
    /// Dotted key, e.g. `hub.port`; `apps` for the whole list of apps.
    pub key: String,
    /// The policy file (or registry key) that sets it.
    pub source: String,
    pub level: PolicyLevel,
}

/// Enforced policy locks a setting; recommended policy only changes its default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyLevel {
    Enforced,
    Recommended,
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
    /// Where a SMART app's authorization codes may be sent (exact URLs). An app with these and
    /// no secret is a public client: it signs in with the authorization code and PKCE only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirect_uris: Vec<String>,
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
            .field("redirect_uris", &self.redirect_uris)
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

impl Config {
    /// The lock on `key` (or on a table above it), if enforced site policy sets it.
    pub fn lock_on(&self, key: &str) -> Option<&PolicySetting> {
        self.policy_on(key, PolicyLevel::Enforced)
    }

    /// The site's recommendation for `key` (or a table above it), if there is one.
    pub fn recommendation_on(&self, key: &str) -> Option<&PolicySetting> {
        self.policy_on(key, PolicyLevel::Recommended)
    }

    fn policy_on(&self, key: &str, level: PolicyLevel) -> Option<&PolicySetting> {
        self.policy.iter().filter(|p| p.level == level).find(|p| {
            key == p.key
                || key.starts_with(&format!("{}.", p.key))
                || p.key.starts_with(&format!("{key}."))
        })
    }

    /// The keys enforced site policy locks.
    pub fn locked(&self) -> impl Iterator<Item = &PolicySetting> {
        self.policy
            .iter()
            .filter(|p| p.level == PolicyLevel::Enforced)
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
        self.upstream
            .validate()
            .map_err(|(key, reason)| error(SOURCE, &format!("upstream.{key}"), reason))?;
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
                (None, None) if app.redirect_uris.is_empty() => {
                    return Err(error(
                        SOURCE,
                        &key("client_secret"),
                        "missing: give client_secret or client_secret_key (or, for a SMART app that signs in with PKCE, redirect_uris)".into(),
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
            for (j, uri) in app.redirect_uris.iter().enumerate() {
                upstream::checked_url(uri)
                    .map_err(|why| error(SOURCE, &key(&format!("redirect_uris[{j}]")), why))?;
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
        if copy.upstream.client_secret.is_some() {
            copy.upstream.client_secret = Some("<redacted>".into());
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
            enforced: vec![PolicyLayer::File(policy.path().to_owned())],
            files: vec![(user.path().to_owned(), true)],
            env: vec![("LOCKSTEP__HUB__PORT".into(), "7000".into())],
            overrides: vec!["desktop.start_at_login=false".into()],
            user_file: Some(user.path().to_owned()),
            ..Default::default()
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
