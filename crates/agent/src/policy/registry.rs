//! Windows registry policy: `HKLM\Software\Policies\Lockstep` (enforced) and its `Recommended`
//! subkey, as the ADMX templates and the MSI write them. Reading the registry is a few lines
//! behind [`PolicyStore`]; turning its values into configuration layers is plain code, typed by
//! the schema (the registry carries strings and numbers, not the setting's type).
//!
//! Layout: each table is a subkey (`hub`, `bridges\ccow`), each setting a value in it (`port`).
//! A list is a subkey named after the setting with values `1`, `2`, ... (the ADMX list
//! element). An empty string is no policy: the MSI writes every public property, set or not.

use super::{SettingType, setting};
use crate::config::ConfigError;
use std::collections::BTreeMap;

/// Where the policies live, below `HKEY_LOCAL_MACHINE`.
pub const POLICY_ROOT: &str = r"Software\Policies\Lockstep";
/// The subkey of [`POLICY_ROOT`] holding recommended policy.
pub const RECOMMENDED: &str = "Recommended";

/// One registry value below [`POLICY_ROOT`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryValue {
    /// The subkeys below the root, e.g. `["hub"]` or `["Recommended", "desktop"]`.
    pub path: Vec<String>,
    /// The value's name, e.g. `port`.
    pub name: String,
    pub data: RegistryData,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryData {
    String(String),
    Dword(u32),
    Qword(u64),
    MultiString(Vec<String>),
    /// Any other type (binary, ...): refused.
    Other(u32),
}

/// Reads every value below [`POLICY_ROOT`]; none (not an error) when the key does not exist.
pub trait PolicyStore {
    fn read(&self) -> std::io::Result<Vec<RegistryValue>>;
}

/// The two layers the registry gives.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RegistryPolicy {
    pub enforced: toml::Table,
    pub recommended: toml::Table,
}

/// The name a layer from the registry is reported under.
pub fn source_name(recommended: bool) -> String {
    if recommended {
        format!(r"HKLM\{POLICY_ROOT}\{RECOMMENDED}")
    } else {
        format!(r"HKLM\{POLICY_ROOT}")
    }
}

/// Turns registry values into the enforced and recommended layers. A value the schema does not
/// know, one site policy may not set, or one that does not read as its setting's type is an
/// error naming the value.
pub fn policy_layers(values: &[RegistryValue]) -> Result<RegistryPolicy, ConfigError> {
    let mut policy = RegistryPolicy::default();
    // Lists gather their numbered values first, in number order.
    let mut lists: BTreeMap<(bool, String), BTreeMap<u64, String>> = BTreeMap::new();
    for value in values {
        // The MSI writes every public property, given or not: an empty one is no policy.
        if matches!(&value.data, RegistryData::String(text) if text.trim().is_empty()) {
            continue;
        }
        let (recommended, path) = match value.path.split_first() {
            Some((first, rest)) if first.eq_ignore_ascii_case(RECOMMENDED) => (true, rest),
            _ => (false, value.path.as_slice()),
        };
        let source = source_name(recommended);
        let place = path.join(".");
        let fail = |key: &str, reason: String| ConfigError {
            source: source.clone(),
            key: key.to_owned(),
            reason,
        };
        // A numbered value in a list's subkey.
        if let Some(list) = setting(&place).filter(|s| s.kind == SettingType::List) {
            if !list.lockable {
                return Err(fail(&place, "site policy cannot set this".into()));
            }
            let index = value.name.parse::<u64>().map_err(|_| {
                fail(
                    &place,
                    format!("list values are named 1, 2, ...; not `{}`", value.name),
                )
            })?;
            match &value.data {
                RegistryData::String(text) => {
                    lists
                        .entry((recommended, place.clone()))
                        .or_default()
                        .insert(index, text.clone());
                }
                other => return Err(fail(&place, format!("a list holds strings, not {other:?}"))),
            }
            continue;
        }
        let key = if place.is_empty() {
            value.name.clone()
        } else {
            format!("{place}.{}", value.name)
        };
        let Some(known) = setting(&key).filter(|s| s.registry_place().is_some()) else {
            return Err(fail(
                &key,
                match setting(&key) {
                    Some(_) => "site policy cannot set this in the registry".into(),
                    None => "no such setting".into(),
                },
            ));
        };
        let toml_value = to_toml(&known.kind, &value.data).map_err(|r| fail(&key, r))?;
        let layer = if recommended {
            &mut policy.recommended
        } else {
            &mut policy.enforced
        };
        crate::config::set_key(layer, &key, toml_value).map_err(|r| fail(&key, r))?;
    }
    for ((recommended, key), items) in lists {
        let layer = if recommended {
            &mut policy.recommended
        } else {
            &mut policy.enforced
        };
        let list = toml::Value::Array(items.into_values().map(toml::Value::String).collect());
        crate::config::set_key(layer, &key, list).map_err(|reason| ConfigError {
            source: source_name(recommended),
            key: key.clone(),
            reason,
        })?;
    }
    Ok(policy)
}

/// One value as its setting's type.
fn to_toml(kind: &SettingType, data: &RegistryData) -> Result<toml::Value, String> {
    let text = match data {
        RegistryData::String(text) => Some(text.trim()),
        _ => None,
    };
    let number = match data {
        RegistryData::Dword(n) => Some(u64::from(*n)),
        RegistryData::Qword(n) => Some(*n),
        _ => None,
    };
    let value = match (kind, text, number) {
        (SettingType::Bool, Some("1" | "true"), _) | (SettingType::Bool, _, Some(1)) => {
            toml::Value::Boolean(true)
        }
        (SettingType::Bool, Some("0" | "false"), _) | (SettingType::Bool, _, Some(0)) => {
            toml::Value::Boolean(false)
        }
        (SettingType::Integer, Some(text), _) => text
            .parse::<i64>()
            .map(toml::Value::Integer)
            .map_err(|_| format!("`{text}` is not a whole number"))?,
        (SettingType::Integer, _, Some(n)) => i64::try_from(n)
            .map(toml::Value::Integer)
            .map_err(|_| format!("{n} is too large"))?,
        (SettingType::Number, Some(text), _) => text
            .parse::<f64>()
            .map(toml::Value::Float)
            .map_err(|_| format!("`{text}` is not a number"))?,
        (SettingType::String | SettingType::Path | SettingType::Enum(_), Some(text), _) => {
            toml::Value::String(text.to_owned())
        }
        (SettingType::List, _, _) => match data {
            RegistryData::MultiString(items) => toml::Value::Array(
                items
                    .iter()
                    .filter(|i| !i.is_empty())
                    .cloned()
                    .map(toml::Value::String)
                    .collect(),
            ),
            _ => return Err("a list is a subkey of values 1, 2, ... or a multi-string".into()),
        },
        (kind, _, _) => return Err(format!("{data:?} does not read as {kind:?}")),
    };
    Ok(value)
}

/// The registry itself (Windows): verified only by review here, see docs/site-it.md.
#[cfg(windows)]
pub struct WindowsRegistry;

#[cfg(windows)]
impl PolicyStore for WindowsRegistry {
    fn read(&self) -> std::io::Result<Vec<RegistryValue>> {
        use winreg::{RegKey, enums::*};
        fn walk(key: &RegKey, path: &mut Vec<String>, out: &mut Vec<RegistryValue>) {
            for (name, value) in key.enum_values().flatten() {
                let data = match value.vtype {
                    REG_SZ | REG_EXPAND_SZ => {
                        RegistryData::String(String::from_reg_value(&value).unwrap_or_default())
                    }
                    REG_DWORD => {
                        RegistryData::Dword(u32::from_reg_value(&value).unwrap_or_default())
                    }
                    REG_QWORD => {
                        RegistryData::Qword(u64::from_reg_value(&value).unwrap_or_default())
                    }
                    REG_MULTI_SZ => RegistryData::MultiString(
                        Vec::<String>::from_reg_value(&value).unwrap_or_default(),
                    ),
                    other => RegistryData::Other(other as u32),
                };
                out.push(RegistryValue {
                    path: path.clone(),
                    name,
                    data,
                });
            }
            for sub in key.enum_keys().flatten() {
                if let Ok(child) = key.open_subkey(&sub) {
                    path.push(sub);
                    walk(&child, path, out);
                    path.pop();
                }
            }
        }
        use winreg::types::FromRegValue;
        let mut out = Vec::new();
        match RegKey::predef(HKEY_LOCAL_MACHINE).open_subkey(POLICY_ROOT) {
            Ok(root) => walk(&root, &mut Vec::new(), &mut out),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(path: &[&str], name: &str, data: RegistryData) -> RegistryValue {
        RegistryValue {
            path: path.iter().map(|p| p.to_string()).collect(),
            name: name.into(),
            data,
        }
    }

    #[test]
    fn strings_and_numbers_read_as_the_schema_s_types() {
        let layers = policy_layers(&[
            value(&["hub"], "port", RegistryData::String(" 5100 ".into())),
            value(&["hub"], "stu2_compat", RegistryData::String("true".into())),
            value(&["desktop"], "notifications", RegistryData::Dword(0)),
            value(&["log"], "max_files", RegistryData::Qword(9)),
            value(
                &["history"],
                "when_unwritable",
                RegistryData::String("refuse".into()),
            ),
            value(
                &["hub", "allowed_origins"],
                "2",
                RegistryData::String("http://b".into()),
            ),
            value(
                &["hub", "allowed_origins"],
                "1",
                RegistryData::String("http://a".into()),
            ),
            value(
                &["recommended", "log"],
                "level",
                RegistryData::String("debug".into()),
            ),
            value(&["log"], "file", RegistryData::String(String::new())),
            // Not a setting yet, but empty: no policy, so no error.
            value(&["upstream"], "issuer", RegistryData::String(String::new())),
        ])
        .unwrap();
        let expected: toml::Table = toml::from_str(
            "[hub]\nport = 5100\nstu2_compat = true\nallowed_origins = [\"http://a\", \"http://b\"]\n\
             [desktop]\nnotifications = false\n[log]\nmax_files = 9\n\
             [history]\nwhen_unwritable = \"refuse\"\n",
        )
        .unwrap();
        assert_eq!(layers.enforced, expected);
        assert_eq!(
            layers.recommended,
            toml::from_str::<toml::Table>("[log]\nlevel = \"debug\"\n").unwrap()
        );
    }

    #[test]
    fn a_value_that_is_not_its_setting_is_refused_and_named() {
        for (value, key, reason) in [
            (
                value(&["hub"], "prot", RegistryData::Dword(1)),
                "hub.prot",
                "no such setting",
            ),
            (
                value(&["hub"], "port", RegistryData::String("high".into())),
                "hub.port",
                "not a whole number",
            ),
            (
                value(
                    &["desktop"],
                    "notifications",
                    RegistryData::String("yes".into()),
                ),
                "desktop.notifications",
                "does not read",
            ),
            (
                value(
                    &["history"],
                    "database",
                    RegistryData::String("C:\\all.db".into()),
                ),
                "history.database",
                "cannot set",
            ),
            (
                value(&[], "apps", RegistryData::String("x".into())),
                "apps",
                "cannot set",
            ),
            (
                value(
                    &["hub", "allowed_origins"],
                    "first",
                    RegistryData::String("x".into()),
                ),
                "hub.allowed_origins",
                "named 1, 2",
            ),
            (
                value(&["hub"], "port", RegistryData::Other(3)),
                "hub.port",
                "does not read",
            ),
        ] {
            let err = policy_layers(&[value]).unwrap_err();
            assert_eq!(err.key, key);
            assert!(err.reason.contains(reason), "{key}: {}", err.reason);
        }
    }
}
