//! The files generated from the schema: the configuration reference (a section of
//! `docs/site-it.md`), the Linux machine files and the Windows ADMX/ADML pair.

mod admx;

use super::{Setting, SettingType, settings};
use std::fmt::Write;

/// One generated file, its path relative to the repository root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    pub path: &'static str,
    pub content: Content,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Content {
    /// The whole file.
    Whole(String),
    /// The lines between `BEGIN_MARK` and `END_MARK` in a hand-written file.
    Section(String),
}

const BEGIN_MARK: &str =
    "<!-- BEGIN settings: generated from crates/agent/src/policy/schema.toml by `make policy` -->";
const END_MARK: &str = "<!-- END settings -->";

impl GeneratedFile {
    /// What the file should hold, given what it holds now (needed for a section).
    pub fn expected(&self, current: &str) -> Result<String, String> {
        match &self.content {
            Content::Whole(text) => Ok(text.clone()),
            Content::Section(text) => {
                let (before, rest) = current
                    .split_once(BEGIN_MARK)
                    .ok_or_else(|| format!("{}: no `{BEGIN_MARK}` line", self.path))?;
                let (_, after) = rest
                    .split_once(END_MARK)
                    .ok_or_else(|| format!("{}: no `{END_MARK}` line", self.path))?;
                Ok(format!("{before}{BEGIN_MARK}\n{text}{END_MARK}{after}"))
            }
        }
    }
}

/// Every file generated from the schema.
pub fn generated_files() -> Vec<GeneratedFile> {
    vec![
        GeneratedFile {
            path: "docs/site-it.md",
            content: Content::Section(reference()),
        },
        GeneratedFile {
            path: "packaging/linux/config.toml",
            content: Content::Whole(machine_file(MachineFile::Enforced)),
        },
        GeneratedFile {
            path: "packaging/linux/recommended.toml",
            content: Content::Whole(machine_file(MachineFile::Recommended)),
        },
        GeneratedFile {
            path: "packaging/windows/policy/lockstep.admx",
            content: Content::Whole(admx::admx()),
        },
        GeneratedFile {
            path: "packaging/windows/policy/en-US/lockstep.adml",
            content: Content::Whole(admx::adml()),
        },
    ]
}

/// The table a key is documented under: `hub`, `apps`, `bridges.folder`.
fn section(setting: &Setting) -> &str {
    if let Some(list) = setting.list() {
        return list;
    }
    match setting.key.rsplit_once('.') {
        Some((table, _)) if setting.kind != SettingType::TableList => table,
        _ => &setting.key,
    }
}

/// Settings grouped by their section, in schema order.
fn sections() -> Vec<(String, Vec<&'static Setting>)> {
    let mut groups: Vec<(String, Vec<&Setting>)> = Vec::new();
    for setting in settings() {
        let name = section(setting);
        match groups.iter_mut().find(|(n, _)| n == name) {
            Some((_, members)) => members.push(setting),
            None => groups.push((name.to_owned(), vec![setting])),
        }
    }
    groups
}

fn type_name(kind: &SettingType) -> String {
    match kind {
        SettingType::Bool => "bool".into(),
        SettingType::Integer => "integer".into(),
        SettingType::Number => "number".into(),
        SettingType::String => "string".into(),
        SettingType::Path => "path".into(),
        SettingType::Enum(values) => values
            .iter()
            .map(|v| format!("`{v}`"))
            .collect::<Vec<_>>()
            .join(" / "),
        SettingType::List => "list of strings".into(),
        SettingType::TableList => "list of tables".into(),
        SettingType::Table => "table".into(),
    }
}

fn default_text(setting: &Setting) -> String {
    match (&setting.default, setting.required) {
        (_, true) => "required".into(),
        (Some(value), _) => format!("`{value}`"),
        (None, _) => "unset".into(),
    }
}

fn policy_text(setting: &Setting) -> String {
    match setting.list() {
        Some(list) => format!("with `{list}`"),
        None if setting.lockable => "enforced or recommended".into(),
        None => "per user only".into(),
    }
}

/// The key as written in its table: `port` under `[hub]`, `client_id` under `[[apps]]`.
fn short_key(setting: &Setting, section: &str) -> String {
    let key = setting.key.replace("[]", "");
    key.strip_prefix(&format!("{section}."))
        .unwrap_or(&key)
        .to_owned()
}

/// The configuration reference: one table per section.
fn reference() -> String {
    let mut out = String::new();
    for (name, members) in sections() {
        let is_list = members.iter().any(|s| s.list() == Some(name.as_str()));
        let heading = if is_list {
            format!("[[{name}]]")
        } else {
            format!("[{name}]")
        };
        let _ = writeln!(out, "\n#### `{heading}`\n");
        let _ = writeln!(out, "| key | type | default | site policy | what it does |");
        let _ = writeln!(out, "|---|---|---|---|---|");
        for setting in members {
            let key = if setting.key == name {
                format!("`{name}`")
            } else {
                format!("`{}`", short_key(setting, &name))
            };
            let _ = writeln!(
                out,
                "| {key} | {} | {} | {} | {} |",
                type_name(&setting.kind),
                default_text(setting).replace('|', "\\|"),
                policy_text(setting),
                setting.description.replace('|', "\\|").replace('\n', " ")
            );
        }
    }
    out.push('\n');
    out
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum MachineFile {
    Enforced,
    Recommended,
}

/// `/etc/lockstep/config.toml` or `recommended.toml`: every setting site policy may set, with
/// its description and default, all commented out, so that installing sets nothing.
fn machine_file(kind: MachineFile) -> String {
    let mut out = String::new();
    let header = match kind {
        MachineFile::Enforced => {
            "Lockstep machine configuration: ENFORCED site policy. Every key set here is locked: \
             the user's file, the environment and --set cannot change it, and the settings window \
             shows it as set by site policy. Everything below is commented out: installing \
             Lockstep sets nothing."
        }
        MachineFile::Recommended => {
            "Lockstep machine configuration: RECOMMENDED site policy. Every key set here is only \
             a default: the user may change it in the settings window or their own file, and the \
             window shows where the recommendation comes from. A key the enforced file \
             (config.toml) sets wins over this file. Everything below is commented out."
        }
    };
    comment(&mut out, header);
    comment(
        &mut out,
        "Generated from the policy schema; the full reference is /usr/share/doc/lockstep/site-it.md.",
    );
    for (name, members) in sections() {
        let settable: Vec<_> = members
            .iter()
            .filter(|s| s.lockable && s.list().is_none())
            .collect();
        if settable.is_empty() {
            continue;
        }
        if let Some(list) = settable.iter().find(|s| s.kind == SettingType::TableList) {
            let _ = writeln!(out);
            comment(&mut out, &list.description);
            comment(
                &mut out,
                &format!(
                    "[[{name}]] tables (see the reference for their keys); set here, the whole list \
                     is site policy."
                ),
            );
            continue;
        }
        let _ = writeln!(out, "\n# [{name}]");
        for setting in settable {
            comment(&mut out, &setting.description);
            let key = short_key(setting, &name);
            match &setting.default {
                Some(value) => {
                    let _ = writeln!(out, "# {key} = {value}");
                }
                None => {
                    let _ = writeln!(out, "# {key} = (unset)");
                }
            }
        }
    }
    out
}

/// Writes `text` as `#` comment lines of at most 96 columns.
fn comment(out: &mut String, text: &str) {
    let mut line = String::from("#");
    for word in text.split_whitespace() {
        if line.len() + 1 + word.len() > 96 && line.len() > 1 {
            let _ = writeln!(out, "{line}");
            line = String::from("#");
        }
        line.push(' ');
        line.push_str(word);
    }
    let _ = writeln!(out, "{line}");
}
