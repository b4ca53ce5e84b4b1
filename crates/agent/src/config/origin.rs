//! Where each effective setting comes from: `lockstepd config show --origin`.

use super::Config;
use serde::Serialize;
use std::collections::BTreeMap;
use std::fmt;

/// The layer that gave a setting its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "from", rename_all = "kebab-case")]
pub enum SettingOrigin {
    /// Built in.
    Default,
    /// Enforced site policy (the machine file or the registry): locked.
    EnforcedPolicy(String),
    /// Recommended site policy: a default the user may change.
    RecommendedPolicy(String),
    /// The user's file, or the one `--config` names.
    File(String),
    /// A `LOCKSTEP__TABLE__KEY` variable.
    Environment(String),
    /// `--set table.key=value`.
    CommandLine(String),
}

impl fmt::Display for SettingOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SettingOrigin::Default => write!(f, "default"),
            SettingOrigin::EnforcedPolicy(source) => write!(f, "enforced policy ({source})"),
            SettingOrigin::RecommendedPolicy(source) => {
                write!(f, "recommended policy ({source})")
            }
            SettingOrigin::File(file) => write!(f, "file ({file})"),
            SettingOrigin::Environment(name) => write!(f, "environment ({name})"),
            SettingOrigin::CommandLine(item) => write!(f, "command line (--set {item})"),
        }
    }
}

/// Which layer last set each dotted key (tables are recorded by their leaves).
pub(super) type Origins = BTreeMap<String, SettingOrigin>;

/// One effective setting: its dotted key, its value as TOML (secrets redacted), and its origin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EffectiveSetting {
    pub key: String,
    pub value: String,
    pub origin: SettingOrigin,
}

impl Config {
    /// Every effective setting with its origin, in key order.
    pub fn effective_settings(&self) -> Vec<EffectiveSetting> {
        let table: toml::Table = self.to_redacted_toml().parse().unwrap_or_default();
        let mut settings = Vec::new();
        flatten("", &table, &mut |key, value| {
            // A key set as a whole (e.g. `apps`) or through a parent table.
            let origin = self
                .origins
                .get(key)
                .or_else(|| {
                    self.origins
                        .iter()
                        .find(|(set, _)| set.starts_with(&format!("{key}.")))
                        .map(|(_, origin)| origin)
                })
                .cloned()
                .unwrap_or(SettingOrigin::Default);
            settings.push(EffectiveSetting {
                key: key.to_owned(),
                value: value.to_string(),
                origin,
            });
        });
        settings
    }
}

fn flatten(prefix: &str, table: &toml::Table, visit: &mut impl FnMut(&str, &toml::Value)) {
    for (key, value) in table {
        let key = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            toml::Value::Table(inner) => flatten(&key, inner, visit),
            other => visit(&key, other),
        }
    }
}
