//! The schema against the configuration types, and the generated files against the schema.
//! `LOCKSTEP_WRITE_GENERATED=1` (what `make policy` sets) rewrites the files instead.

use super::probe;
use super::{SettingType, generated_files, settings};
use crate::Config;
use std::path::Path;

fn same_shape(schema: &SettingType, types: &SettingType) -> bool {
    match (schema, types) {
        (SettingType::Path, SettingType::String) => true,
        (a, b) => a == b,
    }
}

#[test]
fn every_key_the_configuration_reads_is_in_the_schema_with_its_type() {
    let shapes = probe::shapes::<Config>().unwrap();
    let mut problems = Vec::new();
    for (key, shape) in &shapes {
        if *shape == SettingType::Table {
            continue;
        }
        match super::setting(key) {
            None => problems.push(format!("`{key}` ({shape:?}) is missing from schema.toml")),
            Some(setting) if !same_shape(&setting.kind, shape) => problems.push(format!(
                "`{key}`: the schema says {:?}, the configuration reads {shape:?}",
                setting.kind
            )),
            Some(_) => {}
        }
    }
    for setting in settings() {
        if !shapes.contains_key(&setting.key) {
            problems.push(format!(
                "`{}` is in schema.toml but the configuration has no such key",
                setting.key
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_schema_s_defaults_and_required_keys_are_the_configuration_s() {
    let (required, defaults) = probe::defaults::<Config>().unwrap();
    let mut problems = Vec::new();
    for setting in settings() {
        if setting.required != required.contains(&setting.key) {
            problems.push(format!(
                "`{}`: schema says required = {}, the configuration disagrees",
                setting.key, setting.required
            ));
        }
        if setting.required || setting.kind == SettingType::TableList {
            continue;
        }
        // A key the configuration leaves out when it holds its default (`acknowledges`) can
        // only be checked where it is written.
        if let Some(actual) = lookup(&defaults, &setting.key)
            && setting.default.as_ref() != Some(&actual)
        {
            problems.push(format!(
                "`{}`: schema default {:?}, the configuration's {actual}",
                setting.key, setting.default
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The value at a dotted key, `[]` taking a list's first table.
fn lookup(table: &toml::Table, key: &str) -> Option<toml::Value> {
    let mut cursor = toml::Value::Table(table.clone());
    for part in key.split('.') {
        let (name, first) = match part.strip_suffix("[]") {
            Some(name) => (name, true),
            None => (part, false),
        };
        cursor = cursor.as_table()?.get(name)?.clone();
        if first {
            cursor = cursor.as_array()?.first()?.clone();
        }
    }
    Some(cursor)
}

#[test]
fn the_generated_files_match_the_schema() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let write = std::env::var_os("LOCKSTEP_WRITE_GENERATED").is_some();
    let mut stale = Vec::new();
    for file in generated_files() {
        let path = root.join(file.path);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        let expected = file.expected(&current).unwrap();
        if current != expected {
            if write {
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(&path, &expected).unwrap();
            } else {
                stale.push(file.path);
            }
        }
    }
    assert!(
        stale.is_empty(),
        "generated from the schema and out of date: {stale:?}; run `make policy`"
    );
}

#[test]
fn a_broken_schema_is_refused_with_the_key_named() {
    for (text, expected) in [
        (
            "[[setting]]\nkey = \"a.b\"\ntype = \"bool\"\ndescription = \"\"\n",
            "lockable",
        ),
        (
            "[[setting]]\nkey = \"a\"\ntype = \"bool\"\nlockable = true\ndescription = \"\"\n\
             [[setting]]\nkey = \"a\"\ntype = \"bool\"\nlockable = true\ndescription = \"\"\n",
            "twice",
        ),
        (
            "[[setting]]\nkey = \"a\"\ntype = \"colour\"\nlockable = true\ndescription = \"\"\n",
            "colour",
        ),
        (
            "[[setting]]\nkey = \"l[].x\"\ntype = \"bool\"\nlockable = true\ndescription = \"\"\n",
            "follows its list",
        ),
    ] {
        let err = super::parse(text).unwrap_err();
        assert!(err.contains(expected), "{err}");
    }
}

#[test]
fn every_registry_policy_maps_back_to_its_setting() {
    use super::registry::{RegistryData, RegistryValue, policy_layers};
    // One value per setting the ADMX offers, written as Group Policy writes it.
    for setting in settings() {
        let Some((table, name)) = setting.registry_place() else {
            continue;
        };
        let path: Vec<String> = table.split('.').map(str::to_owned).collect();
        let (path, name, data) = match &setting.kind {
            SettingType::Bool => (path, name.to_owned(), RegistryData::Dword(1)),
            SettingType::Integer => (path, name.to_owned(), RegistryData::Dword(7)),
            SettingType::Enum(values) => (
                path,
                name.to_owned(),
                RegistryData::String(values[values.len() - 1].clone()),
            ),
            SettingType::List => {
                let mut path = path;
                path.push(name.to_owned());
                (path, "1".to_owned(), RegistryData::String("x".into()))
            }
            SettingType::TableList => continue,
            _ => (path, name.to_owned(), RegistryData::String("x".into())),
        };
        let layers = policy_layers(&[RegistryValue { path, name, data }])
            .unwrap_or_else(|e| panic!("{}: {e}", setting.key));
        assert!(
            lookup(&layers.enforced, &setting.key).is_some(),
            "{}: {:?}",
            setting.key,
            layers.enforced
        );
    }
}
