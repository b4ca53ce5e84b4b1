//! Reading the layers: where configuration comes from, how each file is read and checked,
//! how the layers are merged (with policy locks and origins), and the user file the settings
//! window writes.

use super::*;

/// A layer of site policy: a machine file, or values read from the registry.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyLayer {
    /// A TOML file; a missing one is no policy.
    File(PathBuf),
    /// A table already read, and the name it is reported under.
    Table { source: String, table: toml::Table },
    /// A source that could not be read: the agent refuses to start rather than run without
    /// the site's policy.
    Unreadable { source: String, reason: String },
}

/// Where configuration comes from, in the order applied.
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// Enforced site policy, read first, in order (a later one wins); every key set is locked.
    pub enforced: Vec<PolicyLayer>,
    /// Recommended site policy: defaults below the user's own settings.
    pub recommended: Vec<PolicyLayer>,
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
        let (registry_enforced, registry_recommended) = registry_layers();
        ConfigSources {
            enforced: std::iter::once(PolicyLayer::File(paths.machine_config_file()))
                .chain(registry_enforced)
                .collect(),
            recommended: std::iter::once(PolicyLayer::File(paths.machine_recommended_file()))
                .chain(registry_recommended)
                .collect(),
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

/// The registry's enforced and recommended layers (Windows; none elsewhere).
fn registry_layers() -> (Option<PolicyLayer>, Option<PolicyLayer>) {
    #[cfg(windows)]
    {
        registry_policy(&crate::policy::registry::WindowsRegistry)
    }
    #[cfg(not(windows))]
    {
        (None, None)
    }
}

/// The layers a policy store gives: values mapped through the schema, or why they cannot be.
pub fn registry_policy(
    store: &dyn crate::policy::registry::PolicyStore,
) -> (Option<PolicyLayer>, Option<PolicyLayer>) {
    use crate::policy::registry::{policy_layers, source_name};
    let mapped = store
        .read()
        .map_err(|e| (source_name(false), format!("cannot read the registry: {e}")))
        .and_then(|values| {
            policy_layers(&values)
                .map_err(|e| (e.source.clone(), format!("{}: {}", e.key, e.reason)))
        });
    match mapped {
        Ok(policy) => {
            let layer = |recommended: bool, table: toml::Table| {
                (!table.is_empty()).then(|| PolicyLayer::Table {
                    source: source_name(recommended),
                    table,
                })
            };
            (
                layer(false, policy.enforced),
                layer(true, policy.recommended),
            )
        }
        Err((source, reason)) => (Some(PolicyLayer::Unreadable { source, reason }), None),
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
        let mut policy: Vec<PolicySetting> = Vec::new();
        let mut origins = origin::Origins::new();
        let mut record = |layer: &toml::Table, origin: SettingOrigin| {
            for key in leaf_keys(layer) {
                origins.insert(key, origin.clone());
            }
        };
        for layer in &sources.enforced {
            let Some((source, table)) = read_policy_layer(layer)? else {
                continue;
            };
            let keys = leaf_keys(&table);
            policy.retain(|p| !keys.contains(&p.key));
            policy.extend(keys.into_iter().map(|key| PolicySetting {
                key,
                source: source.clone(),
                level: PolicyLevel::Enforced,
            }));
            record(&table, SettingOrigin::EnforcedPolicy(source));
            merge(&mut merged, table);
        }
        let locked: Vec<PolicySetting> = policy.clone();
        for layer in &sources.recommended {
            let Some((source, mut table)) = read_policy_layer(layer)? else {
                continue;
            };
            strip_locked(&mut table, &locked, &source);
            let keys = leaf_keys(&table);
            policy.retain(|p| p.level == PolicyLevel::Enforced || !keys.contains(&p.key));
            policy.extend(keys.into_iter().map(|key| PolicySetting {
                key,
                source: source.clone(),
                level: PolicyLevel::Recommended,
            }));
            record(&table, SettingOrigin::RecommendedPolicy(source));
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
        config.policy = policy;
        config.origins = origins;
        config.user_file = sources.user_file.clone();
        Ok(config)
    }
}

/// Reads and checks one layer of site policy, and refuses a key site policy may not set;
/// `None` when there is none (a missing file).
fn read_policy_layer(layer: &PolicyLayer) -> Result<Option<(String, toml::Table)>, ConfigError> {
    let (source, table) = match layer {
        PolicyLayer::File(path) => match read_layer(path, false)? {
            Some(table) => (path.display().to_string(), table),
            None => return Ok(None),
        },
        PolicyLayer::Table { source, table } => {
            check_layer(source, table)?;
            (source.clone(), table.clone())
        }
        PolicyLayer::Unreadable { source, reason } => {
            return Err(error(source, "", reason.clone()));
        }
    };
    for key in leaf_keys(&table) {
        if let Some(setting) = crate::policy::setting(&key)
            && !setting.lockable
        {
            return Err(error(
                &source,
                &key,
                "site policy cannot set this (it is per user)".into(),
            ));
        }
    }
    Ok(Some((source, table)))
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
fn strip_locked(table: &mut toml::Table, locked: &[PolicySetting], source: &str) {
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
