//! The Windows Group Policy templates: `lockstep.admx` (the policies and where each writes
//! under `HKLM\Software\Policies\Lockstep`) and `en-US/lockstep.adml` (their words). Every
//! setting site policy may set appears twice: under "Lockstep" (enforced) and under
//! "Lockstep (recommended)", which writes below `...\Lockstep\Recommended`.

use super::super::registry::{POLICY_ROOT, RECOMMENDED};
use super::super::{Setting, SettingType, settings};
use std::fmt::Write;

/// A setting as a pair of policies.
struct Policy {
    setting: &'static Setting,
    table: &'static str,
    value_name: &'static str,
}

/// Every setting the registry can carry: lockable, not inside a list of tables, and not a
/// list of tables itself (those go in the machine file).
fn policies() -> Vec<Policy> {
    settings()
        .iter()
        .filter(|s| s.kind != SettingType::TableList)
        .filter_map(|setting| {
            let (table, value_name) = setting.registry_place()?;
            Some(Policy {
                setting,
                table,
                value_name,
            })
        })
        .collect()
}

#[derive(Clone, Copy)]
enum Level {
    Enforced,
    Recommended,
}

impl Level {
    const BOTH: [Level; 2] = [Level::Enforced, Level::Recommended];

    fn suffix(self) -> &'static str {
        match self {
            Level::Enforced => "",
            Level::Recommended => "_recommended",
        }
    }

    fn root(self) -> String {
        match self {
            Level::Enforced => POLICY_ROOT.to_owned(),
            Level::Recommended => format!("{POLICY_ROOT}\\{RECOMMENDED}"),
        }
    }
}

fn id(text: &str) -> String {
    text.replace(['.', '-'], "_")
}

fn registry_key(level: Level, table: &str) -> String {
    format!("{}\\{}", level.root(), table.replace('.', "\\"))
}

fn tables(policies: &[Policy]) -> Vec<&'static str> {
    let mut tables: Vec<&str> = Vec::new();
    for policy in policies {
        if !tables.contains(&policy.table) {
            tables.push(policy.table);
        }
    }
    tables
}

pub(super) fn admx() -> String {
    let policies = policies();
    let mut out = String::new();
    out.push_str(concat!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n",
        "<!-- Generated from crates/agent/src/policy/schema.toml by `make policy`. -->\n",
        "<policyDefinitions xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" ",
        "xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" schemaVersion=\"1.0\" ",
        "xmlns=\"http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions\">\n",
        "  <policyNamespaces>\n",
        "    <target prefix=\"lockstep\" namespace=\"Lockstep.Policies.Lockstep\" />\n",
        "    <using prefix=\"windows\" namespace=\"Microsoft.Policies.Windows\" />\n",
        "  </policyNamespaces>\n",
        "  <resources minRequiredRevision=\"1.0\" />\n",
        "  <supportedOn>\n",
        "    <definitions>\n",
        "      <definition name=\"SUPPORTED_LOCKSTEP\" displayName=\"$(string.SUPPORTED_LOCKSTEP)\" />\n",
        "    </definitions>\n",
        "  </supportedOn>\n",
        "  <categories>\n",
        "    <category name=\"lockstep\" displayName=\"$(string.lockstep)\" />\n",
        "    <category name=\"lockstep_recommended\" displayName=\"$(string.lockstep_recommended)\" />\n",
    ));
    for table in tables(&policies) {
        for level in Level::BOTH {
            let _ = writeln!(
                out,
                "    <category name=\"cat_{t}{s}\" displayName=\"$(string.cat_{t})\">\
                 <parentCategory ref=\"lockstep{s}\" /></category>",
                t = id(table),
                s = level.suffix()
            );
        }
    }
    out.push_str("  </categories>\n  <policies>\n");
    for policy in &policies {
        for level in Level::BOTH {
            policy_element(&mut out, policy, level);
        }
    }
    out.push_str("  </policies>\n</policyDefinitions>\n");
    out
}

fn policy_element(out: &mut String, policy: &Policy, level: Level) {
    let name = format!("{}{}", id(&policy.setting.key), level.suffix());
    let key = registry_key(level, policy.table);
    let string = id(&policy.setting.key);
    let value_name = policy.value_name;
    let presentation = match policy.setting.kind {
        SettingType::Bool => String::new(),
        _ => format!(" presentation=\"$(presentation.{string})\""),
    };
    let _ = writeln!(
        out,
        "    <policy name=\"{name}\" class=\"Machine\" displayName=\"$(string.{string})\" \
         explainText=\"$(string.{string}_explain)\"{presentation} key=\"{key}\"{}>",
        match policy.setting.kind {
            SettingType::Bool => format!(" valueName=\"{value_name}\""),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "      <parentCategory ref=\"cat_{}{}\" />\n      <supportedOn ref=\"SUPPORTED_LOCKSTEP\" />",
        id(policy.table),
        level.suffix()
    );
    match &policy.setting.kind {
        SettingType::Bool => out.push_str(
            "      <enabledValue><decimal value=\"1\" /></enabledValue>\n\
             \x20     <disabledValue><decimal value=\"0\" /></disabledValue>\n",
        ),
        SettingType::Integer => {
            let (low, high) = policy.setting.range.unwrap_or((0, u64::from(u32::MAX)));
            let _ = writeln!(
                out,
                "      <elements><decimal id=\"{string}\" valueName=\"{value_name}\" \
                 minValue=\"{low}\" maxValue=\"{high}\" /></elements>"
            );
        }
        SettingType::Enum(values) => {
            let _ = writeln!(
                out,
                "      <elements>\n        <enum id=\"{string}\" valueName=\"{value_name}\">"
            );
            for value in values {
                let _ = writeln!(
                    out,
                    "          <item displayName=\"$(string.{string}_{})\"><value><string>{}</string></value></item>",
                    id(value),
                    escape(value)
                );
            }
            out.push_str("        </enum>\n      </elements>\n");
        }
        SettingType::List => {
            let _ = writeln!(
                out,
                "      <elements><list id=\"{string}\" key=\"{key}\\{value_name}\" valuePrefix=\"\" /></elements>"
            );
        }
        SettingType::String | SettingType::Path | SettingType::Number => {
            let _ = writeln!(
                out,
                "      <elements><text id=\"{string}\" valueName=\"{value_name}\" /></elements>"
            );
        }
        SettingType::TableList | SettingType::Table => {}
    }
    out.push_str("    </policy>\n");
}

pub(super) fn adml() -> String {
    let policies = policies();
    let mut strings = String::new();
    let mut presentations = String::new();
    let mut string = |id: &str, text: &str| {
        let _ = writeln!(
            strings,
            "      <string id=\"{id}\">{}</string>",
            escape(text)
        );
    };
    string("SUPPORTED_LOCKSTEP", "Lockstep 0.1 and later");
    string("lockstep", "Lockstep");
    string(
        "lockstep_recommended",
        "Lockstep (recommended: the user may change)",
    );
    for table in tables(&policies) {
        string(&format!("cat_{}", id(table)), &format!("[{table}]"));
    }
    for policy in &policies {
        let setting = policy.setting;
        let name = id(&setting.key);
        string(&name, &setting.key);
        let default = match &setting.default {
            Some(value) => format!("Default: {value}."),
            None => "Default: unset.".to_owned(),
        };
        string(
            &format!("{name}_explain"),
            &format!(
                "{}\n\n{default}\n\nUnder \"Lockstep\" the setting is enforced: the user cannot \
                 change it. Under \"Lockstep (recommended)\" it is a default the user may change.",
                setting.description
            ),
        );
        if let SettingType::Enum(values) = &setting.kind {
            for value in values {
                string(&format!("{name}_{}", id(value)), value);
            }
        }
        presentation(&mut presentations, setting, &name);
    }
    format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?>\n\
         <!-- Generated from crates/agent/src/policy/schema.toml by `make policy`. -->\n\
         <policyDefinitionResources xmlns:xsd=\"http://www.w3.org/2001/XMLSchema\" \
         xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\" revision=\"1.0\" \
         schemaVersion=\"1.0\" xmlns=\"http://schemas.microsoft.com/GroupPolicy/2006/07/PolicyDefinitions\">\n\
         \x20 <displayName>Lockstep</displayName>\n\
         \x20 <description>Lockstep context synchronisation: site policy</description>\n\
         \x20 <resources>\n\
         \x20   <stringTable>\n{strings}    </stringTable>\n\
         \x20   <presentationTable>\n{presentations}    </presentationTable>\n\
         \x20 </resources>\n\
         </policyDefinitionResources>\n"
    )
}

fn presentation(out: &mut String, setting: &Setting, name: &str) {
    let label = escape(&setting.key);
    let element = match &setting.kind {
        SettingType::Bool | SettingType::TableList | SettingType::Table => return,
        SettingType::Integer => {
            let default = setting
                .default
                .as_ref()
                .and_then(toml::Value::as_integer)
                .map(|d| format!(" defaultValue=\"{d}\""))
                .unwrap_or_default();
            format!("<decimalTextBox refId=\"{name}\"{default}>{label}</decimalTextBox>")
        }
        SettingType::Enum(values) => {
            let default = setting
                .default
                .as_ref()
                .and_then(toml::Value::as_str)
                .and_then(|d| values.iter().position(|v| v == d))
                .map(|i| format!(" defaultItem=\"{i}\""))
                .unwrap_or_default();
            format!(
                "<dropdownList refId=\"{name}\" noSort=\"true\"{default}>{label}</dropdownList>"
            )
        }
        SettingType::List => format!("<listBox refId=\"{name}\">{label}</listBox>"),
        SettingType::String | SettingType::Path | SettingType::Number => {
            let default = setting
                .default
                .as_ref()
                .and_then(toml::Value::as_str)
                .map(|d| format!("<defaultValue>{}</defaultValue>", escape(d)))
                .unwrap_or_default();
            format!("<textBox refId=\"{name}\"><label>{label}</label>{default}</textBox>")
        }
    };
    let _ = writeln!(
        out,
        "      <presentation id=\"{name}\">{element}</presentation>"
    );
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
