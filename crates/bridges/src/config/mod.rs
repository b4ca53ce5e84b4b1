//! `[bridges]` in the agent's configuration: the keys, their defaults, and their validation
//! into bridges ready to run.
//!
//! The agent embeds [`BridgesConfig`] as `bridges`. [`BridgesConfig::validate`] checks
//! everything a bridge needs to start and builds it (templates parsed, modes decided), so a bad
//! template or an unmapped placeholder is a configuration error at load time rather than a
//! surprise on the first patient, and what runs is what was checked.

mod ccow;
mod common;
mod folder;
mod launch;

pub use crate::folder::AfterRead;
pub use crate::launch::AfterLaunch;
pub use crate::message::FileFormat;
pub use crate::problem::ConfigProblem;
pub use crate::text::{LineEndings, TextEncoding};
pub use ccow::{CcowConfig, CcowMode};
pub use folder::{FolderConfig, FolderIn, FolderOut, InRule, SUPPORTED_IN_EVENTS};
pub use launch::LaunchConfig;

use crate::ccow::CcowBridge;
use crate::folder::FolderBridge;
use crate::launch::Launcher;
use crate::report::BridgeKind;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// `[bridges]`: every legacy bridge, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgesConfig {
    /// `[[bridges.launch]]`: apps opened by URL or command line.
    pub launch: Vec<LaunchConfig>,
    /// `[[bridges.folder]]`: apps that exchange small files in a folder.
    pub folder: Vec<FolderConfig>,
    /// `[bridges.ccow]`: the CCOW applications on the workstation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ccow: Option<CcowConfig>,
}

/// One bridge's configuration, of either kind.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeConfig {
    Launch(LaunchConfig),
    Folder(FolderConfig),
    Ccow(CcowConfig),
}

impl BridgeConfig {
    pub fn name(&self) -> &str {
        match self {
            BridgeConfig::Launch(c) => &c.name,
            BridgeConfig::Folder(c) => &c.name,
            BridgeConfig::Ccow(c) => &c.name,
        }
    }

    pub fn kind(&self) -> BridgeKind {
        match self {
            BridgeConfig::Launch(_) => BridgeKind::Launch,
            BridgeConfig::Folder(_) => BridgeKind::Folder,
            BridgeConfig::Ccow(_) => BridgeKind::Ccow,
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            BridgeConfig::Launch(c) => c.enabled,
            BridgeConfig::Folder(c) => c.enabled,
            BridgeConfig::Ccow(c) => c.enabled,
        }
    }
}

/// `[bridges]`, validated: every bridge ready to run, launch bridges first, in file order.
#[derive(Debug, Clone, Default)]
pub struct ValidBridges(Vec<ValidBridge>);

impl ValidBridges {
    pub fn iter(&self) -> impl Iterator<Item = &ValidBridge> {
        self.0.iter()
    }
}

/// One bridge, validated: its configuration (what a reload compares) and what runs.
#[derive(Debug, Clone)]
pub struct ValidBridge {
    config: BridgeConfig,
    ready: Ready,
}

/// What runs for a bridge.
#[derive(Debug, Clone)]
pub enum Ready {
    Launch(Arc<Launcher>),
    Folder(Arc<FolderBridge>),
    Ccow(Arc<CcowBridge>),
}

impl ValidBridge {
    pub fn config(&self) -> &BridgeConfig {
        &self.config
    }

    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    pub fn name(&self) -> &str {
        self.config.name()
    }

    pub fn kind(&self) -> BridgeKind {
        self.config.kind()
    }

    pub fn enabled(&self) -> bool {
        self.config.enabled()
    }
}

impl BridgesConfig {
    /// Checks what types alone cannot, and builds every bridge (enabled or not). The error
    /// names the key as the agent's config errors do (`bridges.launch[0].url`).
    pub fn validate(&self) -> Result<ValidBridges, ConfigProblem> {
        let mut names: Vec<&str> = Vec::new();
        let mut bridges = Vec::with_capacity(self.launch.len() + self.folder.len());
        for (i, launch) in self.launch.iter().enumerate() {
            let at = format!("bridges.launch[{i}]");
            check_name(&launch.name, &mut names).map_err(|p| p.under(&at))?;
            let launcher = launch.validate().map_err(|p| p.under(&at))?;
            bridges.push(ValidBridge {
                config: BridgeConfig::Launch(launch.clone()),
                ready: Ready::Launch(Arc::new(launcher)),
            });
        }
        for (i, folder) in self.folder.iter().enumerate() {
            let at = format!("bridges.folder[{i}]");
            check_name(&folder.name, &mut names).map_err(|p| p.under(&at))?;
            let bridge = folder.validate().map_err(|p| p.under(&at))?;
            bridges.push(ValidBridge {
                config: BridgeConfig::Folder(folder.clone()),
                ready: Ready::Folder(Arc::new(bridge)),
            });
        }
        if let Some(ccow) = &self.ccow {
            let at = "bridges.ccow";
            check_name(&ccow.name, &mut names).map_err(|p| p.under(at))?;
            let bridge = ccow.validate().map_err(|p| p.under(at))?;
            bridges.push(ValidBridge {
                config: BridgeConfig::Ccow(ccow.clone()),
                ready: Ready::Ccow(Arc::new(bridge)),
            });
        }
        Ok(ValidBridges(bridges))
    }
}

fn check_name<'a>(name: &'a str, seen: &mut Vec<&'a str>) -> Result<(), ConfigProblem> {
    let problem = |reason: String| ConfigProblem::new("name", reason);
    if name.trim().is_empty() {
        return Err(problem(
            "must not be empty (it names the bridge in SyncErrors and the audit)".into(),
        ));
    }
    if seen.contains(&name) {
        return Err(problem(format!("two bridges are named `{name}`")));
    }
    seen.push(name);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(toml_text: &str) -> Result<(), ConfigProblem> {
        let config: BridgesConfig = toml_from(toml_text);
        config.validate().map(drop)
    }

    fn toml_from(text: &str) -> BridgesConfig {
        #[derive(Deserialize)]
        struct Root {
            bridges: BridgesConfig,
        }
        let root: Root = serde_json::from_value(json_of(text)).unwrap();
        root.bridges
    }

    // The agent parses TOML; here a tiny JSON form keeps this crate free of a TOML dependency.
    fn json_of(text: &str) -> serde_json::Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn shells_and_ambiguous_modes_are_refused() {
        let shell = r#"{"bridges":{"launch":[{"name":"v","program":"/bin/sh","args":["-c","viewer {study.uid}"]}]}}"#;
        let err = launch(shell).unwrap_err();
        assert_eq!(err.key, "bridges.launch[0].program");
        assert!(err.reason.contains("shell"), "{err}");

        // The common ways around the rule are refused too.
        for (program, args) in [
            ("/usr/bin/env", r#"["sh","-c","viewer {study.uid}"]"#),
            ("nice", r#"["-n","5","/bin/bash","-c","x"]"#),
            ("/usr/bin/timeout", r#"["5","sh","-c","x"]"#),
            ("sudo", r#"["/opt/viewer"]"#),
            ("busybox", r#"["sh","-c","x"]"#),
            ("/usr/bin/python3.11", r#"["-c","import os"]"#),
            ("perl", r#"["-e","system 1"]"#),
            ("rundll32.exe", r#"["url.dll,FileProtocolHandler"]"#),
        ] {
            let config = format!(
                r#"{{"bridges":{{"launch":[{{"name":"v","program":"{program}","args":{args}}}]}}}}"#
            );
            let err = launch(&config).unwrap_err();
            assert_eq!(err.key, "bridges.launch[0].program", "{program}");
        }
        // An interpreter running a script file is a program like another.
        let script = r#"{"bridges":{"launch":[{"name":"v","program":"python3","args":["/opt/open-study.py","{study.uid}"]}]}}"#;
        assert!(launch(script).is_ok());

        let both =
            r#"{"bridges":{"launch":[{"name":"v","program":"/opt/v","url":"https://h/x"}]}}"#;
        assert_eq!(launch(both).unwrap_err().key, "bridges.launch[0].url");
    }

    #[test]
    fn a_url_outside_the_allow_lists_is_a_config_error() {
        let host = r#"{"bridges":{"launch":[{"name":"v","url":"https://evil.example/x?a={study.uid}","allowed_hosts":["pacs.example"]}]}}"#;
        let err = launch(host).unwrap_err();
        assert!(err.reason.contains("evil.example"), "{err}");
        let scheme = r#"{"bridges":{"launch":[{"name":"v","url":"http://pacs.example/x?a={study.uid}","allowed_hosts":["pacs.example"]}]}}"#;
        assert!(launch(scheme).unwrap_err().reason.contains("scheme"));
        let ok = r#"{"bridges":{"launch":[{"name":"v","url":"https://PACS.example/x?a={study.uid}","allowed_hosts":["pacs.example"]}]}}"#;
        launch(ok).unwrap();
    }

    #[test]
    fn placeholders_need_a_mapped_system_and_names_are_unique() {
        let unmapped =
            r#"{"bridges":{"launch":[{"name":"v","program":"/opt/v","args":["{patient.mrn}"]}]}}"#;
        let err = launch(unmapped).unwrap_err();
        assert_eq!(err.key, "bridges.launch[0].args");
        assert!(err.reason.contains("identifiers.mrn"), "{err}");

        let twice = r#"{"bridges":{"launch":[{"name":"v","program":"/opt/v"}],
            "folder":[{"name":"v","out":{"dir":"/tmp","file_name":"a.txt","format":"text","template":"x"}}]}}"#;
        assert!(launch(twice).unwrap_err().reason.contains("two bridges"));
    }

    #[test]
    fn folder_rules_are_checked() {
        let no_rules =
            r#"{"bridges":{"folder":[{"name":"ris","in":{"dir":"/tmp","format":"json"}}]}}"#;
        assert_eq!(
            launch(no_rules).unwrap_err().key,
            "bridges.folder[0].in.rules"
        );
        let bad_event = r#"{"bridges":{"folder":[{"name":"ris","in":{"dir":"/tmp","format":"json",
            "rules":[{"event":"UserLogout","study_uid":"/uid"}]}}]}}"#;
        assert_eq!(
            launch(bad_event).unwrap_err().key,
            "bridges.folder[0].in.rules[0].event"
        );
        let bad_path = r#"{"bridges":{"folder":[{"name":"ris","in":{"dir":"/tmp","format":"json",
            "rules":[{"event":"ImagingStudy-open","study_uid":"uid"}]}}]}}"#;
        assert!(
            launch(bad_path)
                .unwrap_err()
                .reason
                .contains("JSON pointer")
        );
        // A bad field path is reported under its own key.
        let bad_birth_date = r#"{"bridges":{"folder":[{"name":"ris",
            "identifiers":{"mrn":[{"system":"urn:oid:1.2.3"}]},"in":{"dir":"/tmp","format":"json",
            "rules":[{"event":"Patient-open","mrn":"/mrn","birth_date":"birthDate"}]}}]}}"#;
        let err = launch(bad_birth_date).unwrap_err();
        assert_eq!(err.key, "bridges.folder[0].in.rules[0].birth_date");
        assert!(err.reason.contains("`birthDate`"), "{err}");
        let bad_mapping = r#"{"bridges":{"folder":[{"name":"ris",
            "identifiers":{"mrn":[{"system":" "}]},"in":{"dir":"/tmp","format":"json",
            "rules":[{"event":"Patient-open","mrn":"/mrn"}]}}]}}"#;
        assert_eq!(
            launch(bad_mapping).unwrap_err().key,
            "bridges.folder[0].identifiers.mrn[0].system"
        );
    }
}
