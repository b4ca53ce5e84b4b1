//! The policy schema: every setting once, with its type, default, description and whether site
//! policy may lock it (`schema.toml`). The configuration reference in `docs/site-it.md`, the
//! Windows ADMX/ADML pair and the Linux `/etc/lockstep/config.toml` are generated from it
//! (`make policy`), and a test fails when one of them, or the configuration types, drift from it.
//! The Windows registry policy is read through it too, since the registry carries no types.

#[cfg(test)]
mod drift;
#[cfg(test)]
mod probe;
pub mod registry;
mod render;

pub use render::{GeneratedFile, generated_files};

use serde::Deserialize;
use std::sync::OnceLock;

/// The schema's text, compiled in.
const SCHEMA: &str = include_str!("schema.toml");

/// What kind of value a setting holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingType {
    Bool,
    Integer,
    Number,
    String,
    /// A file or folder; a string in the file.
    Path,
    /// One of the listed words.
    Enum(Vec<String>),
    /// A list of strings.
    List,
    /// A list of tables (`[[apps]]`): locked or recommended only as a whole.
    TableList,
    /// A table of settings (only the probe reports these; the schema lists their keys).
    Table,
}

/// One setting, as the schema describes it.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Dotted key; `apps[].client_id` is a key of each `[[apps]]` table.
    pub key: String,
    pub kind: SettingType,
    /// The built-in value, if there is one.
    pub default: Option<toml::Value>,
    pub description: String,
    /// Whether site policy may set it. Keys inside a list of tables follow their list.
    pub lockable: bool,
    /// Whether each table of its list must give it.
    pub required: bool,
    /// For an integer: the smallest and largest value allowed (for the ADMX editor).
    pub range: Option<(u64, u64)>,
}

impl Setting {
    /// `[apps]` for `apps[].client_id`: the list the key belongs to, if any.
    pub fn list(&self) -> Option<&str> {
        self.key.split_once("[]").map(|(list, _)| list)
    }

    /// The table (`hub`) and the name (`port`) a registry policy value is stored under.
    pub fn registry_place(&self) -> Option<(&str, &str)> {
        if self.list().is_some() || !self.lockable {
            return None;
        }
        self.key.rsplit_once('.')
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    setting: Vec<SettingEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SettingEntry {
    key: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    values: Vec<String>,
    default: Option<toml::Value>,
    description: String,
    #[serde(default)]
    lockable: Option<bool>,
    #[serde(default)]
    required: bool,
    #[serde(default)]
    range: Option<[u64; 2]>,
}

/// Every setting, in the schema's order.
pub fn settings() -> &'static [Setting] {
    static SETTINGS: OnceLock<Vec<Setting>> = OnceLock::new();
    // The schema is compiled in and checked by the tests; a broken one is a build defect.
    SETTINGS.get_or_init(|| parse(SCHEMA).unwrap_or_else(|e| panic!("schema.toml: {e}")))
}

/// The setting with this dotted key.
pub fn setting(key: &str) -> Option<&'static Setting> {
    settings().iter().find(|s| s.key == key)
}

fn parse(text: &str) -> Result<Vec<Setting>, String> {
    let file: SchemaFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut settings: Vec<Setting> = Vec::new();
    for entry in file.setting {
        let key = entry.key;
        if settings.iter().any(|s| s.key == key) {
            return Err(format!("`{key}` is listed twice"));
        }
        let kind = match (entry.kind.as_str(), entry.values.is_empty()) {
            ("bool", true) => SettingType::Bool,
            ("integer", true) => SettingType::Integer,
            ("number", true) => SettingType::Number,
            ("string", true) => SettingType::String,
            ("path", true) => SettingType::Path,
            ("enum", false) => SettingType::Enum(entry.values),
            ("list", true) => SettingType::List,
            ("table-list", true) => SettingType::TableList,
            (other, _) => {
                return Err(format!(
                    "`{key}`: type `{other}` (values are given for `enum` alone)"
                ));
            }
        };
        let in_list = key.contains("[]");
        if entry.required && (!in_list || entry.default.is_some()) {
            return Err(format!(
                "`{key}`: only a key inside a list of tables, with no default, is required"
            ));
        }
        let lockable = match (in_list, entry.lockable) {
            (false, Some(lockable)) => lockable,
            (true, None) => false,
            (false, None) => return Err(format!("`{key}`: say whether it is lockable")),
            (true, Some(_)) => {
                return Err(format!(
                    "`{key}`: a key inside a list of tables follows its list; no `lockable`"
                ));
            }
        };
        settings.push(Setting {
            key,
            kind,
            default: entry.default,
            description: entry.description.trim().to_owned(),
            lockable,
            required: entry.required,
            range: entry.range.map(|[low, high]| (low, high)),
        });
    }
    Ok(settings)
}
