//! `[bridges]` in the agent's configuration: the types, their defaults and their validation.
//!
//! The agent embeds [`BridgesConfig`] as `bridges`; everything a bridge needs to start is
//! checked here first, so a bad template or an unmapped placeholder is a configuration error at
//! load time rather than a surprise on the first patient.

pub use crate::message::FileFormat;
pub use crate::problem::ConfigProblem;
pub use crate::text::{LineEndings, TextEncoding};

use crate::mapping::IdentifierMapping;
use crate::template::{Escape, Template};
use lockstep_fhircast::{EventKind, EventSpec};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// `[bridges]`: every legacy bridge, by kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BridgesConfig {
    /// `[[bridges.launch]]`: apps opened by URL or command line.
    pub launch: Vec<LaunchConfig>,
    /// `[[bridges.folder]]`: apps that exchange small files in a folder.
    pub folder: Vec<FolderConfig>,
}

/// One bridge of either kind, as the supervisor starts it.
#[derive(Debug, Clone, PartialEq)]
pub enum BridgeConfig {
    Launch(LaunchConfig),
    Folder(FolderConfig),
}

impl BridgeConfig {
    pub fn name(&self) -> &str {
        match self {
            BridgeConfig::Launch(c) => &c.name,
            BridgeConfig::Folder(c) => &c.name,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            BridgeConfig::Launch(_) => "launch",
            BridgeConfig::Folder(_) => "folder",
        }
    }

    pub fn enabled(&self) -> bool {
        match self {
            BridgeConfig::Launch(c) => c.enabled,
            BridgeConfig::Folder(c) => c.enabled,
        }
    }
}

impl BridgesConfig {
    /// Every configured bridge, launch bridges first, in file order.
    pub fn all(&self) -> Vec<BridgeConfig> {
        self.launch
            .iter()
            .cloned()
            .map(BridgeConfig::Launch)
            .chain(self.folder.iter().cloned().map(BridgeConfig::Folder))
            .collect()
    }

    /// Checks what types alone cannot. The error names the key as the agent's config errors
    /// do (`bridges.launch[0].url`).
    pub fn validate(&self) -> Result<(), ConfigProblem> {
        let mut names: Vec<&str> = Vec::new();
        for (i, launch) in self.launch.iter().enumerate() {
            let at = |field: &str| format!("bridges.launch[{i}].{field}");
            check_name(&launch.name, &mut names).map_err(|r| problem(at("name"), r))?;
            launch.validate(&at)?;
        }
        for (i, folder) in self.folder.iter().enumerate() {
            let at = |field: &str| format!("bridges.folder[{i}].{field}");
            check_name(&folder.name, &mut names).map_err(|r| problem(at("name"), r))?;
            folder.validate(&at)?;
        }
        Ok(())
    }
}

fn problem(key: String, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem::new(key, reason)
}

fn check_name<'a>(name: &'a str, seen: &mut Vec<&'a str>) -> Result<(), String> {
    if name.trim().is_empty() {
        return Err("must not be empty (it names the bridge in SyncErrors and the audit)".into());
    }
    if seen.contains(&name) {
        return Err(format!("two bridges are named `{name}`"));
    }
    seen.push(name);
    Ok(())
}

fn yes() -> bool {
    true
}

/// `[[bridges.launch]]`: on the configured events, open a URL or start a program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchConfig {
    /// Shown in the UI, SyncErrors, history and the audit trail; unique among bridges.
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    /// `*-open` events that launch, e.g. `["ImagingStudy-open"]`.
    #[serde(default = "default_launch_events")]
    pub events: Vec<String>,
    /// URL mode: the URL template (each placeholder percent-encoded as a URL component).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// URL mode: schemes a rendered URL may use.
    #[serde(default = "default_schemes")]
    pub allowed_schemes: Vec<String>,
    /// URL mode: hosts a rendered URL may name (exact, case-insensitive).
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// URL mode, `http`/`https` only: GET the URL from the agent instead of handing it to the
    /// opener (viewers with an HTTP integration endpoint).
    #[serde(default)]
    pub fetch: bool,
    /// URL mode: the program that opens a URL; the URL is appended as one argument.
    #[serde(default = "default_opener")]
    pub opener: Vec<String>,
    /// Exec mode: the program to start (never a shell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub program: Option<String>,
    /// Exec mode: argument templates, one argv element each (placeholders inserted raw).
    #[serde(default)]
    pub args: Vec<String>,
    /// URL mode: a URL to open when the launched context closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_close: Option<String>,
    /// Exec mode: arguments to start `program` with when the launched context closes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_close_args: Option<Vec<String>>,
    /// After a launch, further switches within this window are coalesced into one launch of
    /// the latest, at the window's end. The first switch launches at once.
    #[serde(default = "default_debounce")]
    pub debounce_ms: u64,
    /// The link state after a successful launch: a launch is no proof the app followed.
    #[serde(default)]
    pub link_state_after_launch: AfterLaunch,
    /// How long a fetch may take, in milliseconds.
    #[serde(default = "default_fetch_timeout")]
    pub fetch_timeout_ms: u64,
    #[serde(default)]
    pub identifiers: IdentifierMapping,
}

/// `link_state_after_launch`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterLaunch {
    #[default]
    Unconfirmed,
    Following,
}

fn default_launch_events() -> Vec<String> {
    vec!["ImagingStudy-open".into()]
}
fn default_schemes() -> Vec<String> {
    vec!["https".into()]
}
fn default_opener() -> Vec<String> {
    if cfg!(target_os = "macos") {
        vec!["open".into()]
    } else {
        vec!["xdg-open".into()]
    }
}
fn default_debounce() -> u64 {
    500
}
fn default_fetch_timeout() -> u64 {
    5000
}

/// Programs that would run a command line through a shell: a launch is an argv, never that.
const SHELLS: &[&str] = &[
    "sh",
    "bash",
    "dash",
    "zsh",
    "ksh",
    "csh",
    "tcsh",
    "fish",
    "cmd",
    "powershell",
    "pwsh",
    "wscript",
    "cscript",
];

/// Programs whose job is to start another program named in their arguments: through one, the
/// no-shell rule would be one indirection away (`env sh -c …`).
const LAUNCHERS: &[&str] = &[
    "env",
    "nice",
    "ionice",
    "nohup",
    "timeout",
    "setsid",
    "stdbuf",
    "chroot",
    "xargs",
    "sudo",
    "doas",
    "su",
    "runuser",
    "pkexec",
    "busybox",
    "toybox",
    "flatpak-spawn",
    "rundll32",
    "mshta",
    "start",
];

/// Interpreters, refused when told to run code given as an argument.
const INTERPRETERS: &[&str] = &[
    "python",
    "perl",
    "ruby",
    "node",
    "nodejs",
    "deno",
    "php",
    "lua",
    "tclsh",
    "wish",
    "awk",
    "gawk",
    "osascript",
    "java",
    "jshell",
    "Rscript",
];

/// The flags that make an interpreter run its argument as code.
const CODE_FLAGS: &[&str] = &[
    "-c",
    "-e",
    "-E",
    "-r",
    "--eval",
    "--command",
    "--exec",
    "-x",
];

/// What a launch bridge does, as read from its config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LaunchMode {
    Url,
    Exec,
}

impl LaunchConfig {
    pub fn mode(&self) -> Option<LaunchMode> {
        match (&self.url, &self.program) {
            (Some(_), None) => Some(LaunchMode::Url),
            (None, Some(_)) => Some(LaunchMode::Exec),
            _ => None,
        }
    }

    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigProblem> {
        self.identifiers
            .validate()
            .map_err(|p| p.under(&at("identifiers")))?;
        let events = open_events(&self.events).map_err(|r| problem(at("events"), r))?;
        if events.is_empty() {
            return Err(problem(at("events"), "name at least one *-open event"));
        }
        let mode = self.mode().ok_or_else(|| {
            problem(
                at("url"),
                "give either `url` (open a URL) or `program` (start a program), not both",
            )
        })?;
        match mode {
            LaunchMode::Url => {
                for (field, text) in [("url", &self.url), ("on_close", &self.on_close)] {
                    let Some(text) = text else { continue };
                    let template = Template::parse(text, Escape::UrlComponent)
                        .map_err(|e| problem(at(field), e.to_string()))?;
                    template
                        .check_mapped(&self.identifiers)
                        .map_err(|e| problem(at(field), e))?;
                    let sample = template.render_sample();
                    crate::launch::check_url(self, &sample)
                        .map_err(|e| problem(at(field), e.to_string()))?;
                }
                if self.fetch && self.allowed_schemes.iter().any(|s| !is_http(s)) {
                    return Err(problem(
                        at("allowed_schemes"),
                        "with `fetch = true` only http and https can be allowed",
                    ));
                }
                if !self.fetch && self.opener.is_empty() {
                    return Err(problem(at("opener"), "name the program that opens URLs"));
                }
                if !self.args.is_empty() || self.on_close_args.is_some() {
                    return Err(problem(at("args"), "`args` belong to `program`, not `url`"));
                }
            }
            LaunchMode::Exec => {
                let program = self.program.as_deref().unwrap_or_default();
                if program.trim().is_empty() {
                    return Err(problem(at("program"), "must not be empty"));
                }
                if let Some(why) = refused_program(program, &self.args) {
                    return Err(problem(at("program"), why));
                }
                for (field, args) in [
                    ("args", Some(&self.args)),
                    ("on_close_args", self.on_close_args.as_ref()),
                ] {
                    for arg in args.into_iter().flatten() {
                        let template = Template::parse(arg, Escape::Argument)
                            .map_err(|e| problem(at(field), e.to_string()))?;
                        template
                            .check_mapped(&self.identifiers)
                            .map_err(|e| problem(at(field), e))?;
                    }
                }
                if self.on_close.is_some() {
                    return Err(problem(at("on_close"), "exec mode uses `on_close_args`"));
                }
            }
        }
        Ok(())
    }
}

fn is_http(scheme: &str) -> bool {
    scheme.eq_ignore_ascii_case("http") || scheme.eq_ignore_ascii_case("https")
}

/// Why `program` may not be a launch's program, if it may not: a shell, a program that starts
/// another one, or an interpreter told to run code from its arguments.
fn refused_program(program: &str, args: &[String]) -> Option<String> {
    let stem = std::path::Path::new(program)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(program)
        .to_ascii_lowercase();
    // `python3.11`, `perl5.36`: the name without its version.
    let name = stem.trim_end_matches(|c: char| c.is_ascii_digit() || c == '.');
    let is = |list: &[&str]| {
        list.iter()
            .any(|p| p.eq_ignore_ascii_case(name) || p.eq_ignore_ascii_case(&stem))
    };
    if is(SHELLS) {
        return Some(
            "a shell is refused: a launch is an argument vector, never a command line".into(),
        );
    }
    if is(LAUNCHERS) {
        return Some(format!(
            "`{stem}` starts the program named in its arguments, which would get around the \
             no-shell rule: name the program itself"
        ));
    }
    if is(INTERPRETERS) && args.iter().any(|a| CODE_FLAGS.contains(&a.as_str())) {
        return Some(format!(
            "`{stem}` with code in its arguments is refused: a launch runs a program, not a \
             script given inline (point `program` at a script file instead)"
        ));
    }
    None
}

/// Reads event names that must all be `*-open`.
fn open_events(names: &[String]) -> Result<Vec<&'static EventSpec>, String> {
    names
        .iter()
        .map(|name| match EventSpec::lookup(name) {
            Some(spec) if spec.kind == EventKind::Open => Ok(spec),
            Some(spec) => Err(format!("`{}` is not an *-open event", spec.name)),
            None => Err(format!("unknown event `{name}`")),
        })
        .collect()
}

/// `[[bridges.folder]]`: files out to the app, files in from it, or both.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderConfig {
    pub name: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub identifiers: IdentifierMapping,
    /// `[bridges.folder.out]`: write a file on each context change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub out: Option<FolderOut>,
    /// `[bridges.folder.in]`: turn files the app drops into context changes.
    #[serde(default, rename = "in", skip_serializing_if = "Option::is_none")]
    pub inbound: Option<FolderIn>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderOut {
    pub dir: PathBuf,
    #[serde(default = "default_launch_events")]
    pub events: Vec<String>,
    /// The file name template, e.g. `study.xml` or `{event.id}.json`.
    pub file_name: String,
    pub format: FileFormat,
    /// The file's content as a template (placeholders escaped for `format`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<String>,
    /// ... or a file holding that template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_file: Option<PathBuf>,
    #[serde(default)]
    pub encoding: TextEncoding,
    #[serde(default)]
    pub line_endings: LineEndings,
}

/// What to do with a file once it has been handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterRead {
    #[default]
    Archive,
    Delete,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FolderIn {
    pub dir: PathBuf,
    /// Which file names to read (`*` and `?` wildcards); dot files and `*.tmp`/`*.part` never.
    #[serde(default = "default_pattern")]
    pub pattern: String,
    pub format: FileFormat,
    /// The encoding of files without a BOM (a BOM always wins).
    #[serde(default)]
    pub encoding: TextEncoding,
    /// The field that names the message type (JSON pointer, XML path, INI `Section.key`);
    /// empty when every file is the one message of the single rule.
    #[serde(default)]
    pub message_type: String,
    /// The field holding a message id, for exact duplicate detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default)]
    pub rules: Vec<InRule>,
    /// Message types handled by doing nothing (e.g. `Login`); other unknown types are rejected.
    #[serde(default)]
    pub ignore_types: Vec<String>,
    #[serde(default)]
    pub after_read: AfterRead,
    /// Where handled files go; `<dir>/archive` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archive_dir: Option<PathBuf>,
    /// Where rejected files go, each with a `.reason.txt` beside it; `<dir>/error` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_dir: Option<PathBuf>,
    /// Files last modified longer ago than this are stale and rejected.
    #[serde(default = "default_max_age")]
    pub max_file_age_seconds: u64,
    /// Without `message_id`, a file whose bytes equal one handled this recently is a duplicate.
    #[serde(default = "default_duplicate_window")]
    pub duplicate_window_seconds: u64,
    /// Larger files are rejected unread.
    #[serde(default = "default_max_bytes")]
    pub max_file_bytes: u64,
    /// Poll every this many milliseconds instead of OS notifications (network shares, where
    /// change notifications are unreliable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_interval_ms: Option<u64>,
    /// Where the OS reports no "closed after writing" (and when polling, or for files waiting
    /// at start), a file is read once unchanged this long; polled, at least two intervals. On
    /// Linux a file written in place waits for its close instead, with no time limit.
    #[serde(default = "default_settle")]
    pub settle_ms: u64,
}

fn default_pattern() -> String {
    "*".into()
}
fn default_max_age() -> u64 {
    120
}
fn default_duplicate_window() -> u64 {
    10
}
fn default_max_bytes() -> u64 {
    256 * 1024
}
fn default_settle() -> u64 {
    250
}

/// One message type and the FHIRcast request it becomes. Field paths are read per the
/// folder's format; each is optional, but the event must end up with a patient it can name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InRule {
    /// The value of the `message_type` field this rule handles (any, when that is empty).
    #[serde(default)]
    pub when: String,
    /// The request: `Patient-open`, `ImagingStudy-open`, `DiagnosticReport-open` or a close.
    pub event: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrn: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mrn_issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accession_issuer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub study_uid: Option<String>,
    /// Family name and given names, for the Patient resource (identity verification).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    /// `YYYYMMDD` or `YYYY-MM-DD`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<String>,
    /// May this message move the session to another patient? Off by default: a file naming
    /// another patient than the current context then raises a SyncError and changes nothing.
    #[serde(default)]
    pub allow_patient_change: bool,
}

pub const SUPPORTED_IN_EVENTS: &[&str] = &[
    "Patient-open",
    "Patient-close",
    "ImagingStudy-open",
    "ImagingStudy-close",
    "DiagnosticReport-open",
    "DiagnosticReport-close",
];

impl FolderConfig {
    fn validate(&self, at: &dyn Fn(&str) -> String) -> Result<(), ConfigProblem> {
        self.identifiers
            .validate()
            .map_err(|p| p.under(&at("identifiers")))?;
        if self.out.is_none() && self.inbound.is_none() {
            return Err(problem(at("out"), "configure `out`, `in` or both"));
        }
        if let Some(out) = &self.out {
            let at = |f: &str| at(&format!("out.{f}"));
            let events = open_events(&out.events).map_err(|r| problem(at("events"), r))?;
            if events.is_empty() {
                return Err(problem(at("events"), "name at least one *-open event"));
            }
            let name = Template::parse(&out.file_name, Escape::FileName)
                .map_err(|e| problem(at("file_name"), e.to_string()))?;
            name.check_mapped(&self.identifiers)
                .map_err(|e| problem(at("file_name"), e))?;
            match (&out.template, &out.template_file) {
                (Some(text), None) => {
                    let t = Template::parse(text, out.format.escape())
                        .map_err(|e| problem(at("template"), e.to_string()))?;
                    t.check_mapped(&self.identifiers)
                        .map_err(|e| problem(at("template"), e))?;
                }
                // Read (and checked) when the bridge starts: the file may be edited later.
                (None, Some(_)) => {}
                _ => {
                    return Err(problem(
                        at("template"),
                        "give either `template` or `template_file`",
                    ));
                }
            }
            crate::text::encoder(&out.encoding.0).map_err(|e| problem(at("encoding"), e))?;
        }
        if let Some(inbound) = &self.inbound {
            let at = |f: &str| at(&format!("in.{f}"));
            crate::text::decoder(&inbound.encoding.0).map_err(|e| problem(at("encoding"), e))?;
            crate::text::Pattern::parse(&inbound.pattern).map_err(|e| problem(at("pattern"), e))?;
            if inbound.rules.is_empty() {
                return Err(problem(at("rules"), "add at least one rule"));
            }
            if inbound.message_type.is_empty() && inbound.rules.len() > 1 {
                return Err(problem(
                    at("message_type"),
                    "several rules need a `message_type` field to choose between them",
                ));
            }
            if inbound.max_file_age_seconds == 0 {
                return Err(problem(at("max_file_age_seconds"), "must be at least 1"));
            }
            if inbound.poll_interval_ms == Some(0) {
                return Err(problem(at("poll_interval_ms"), "must be at least 1"));
            }
            for (i, rule) in inbound.rules.iter().enumerate() {
                let at = |f: &str| at(&format!("rules[{i}].{f}"));
                if !SUPPORTED_IN_EVENTS
                    .iter()
                    .any(|e| e.eq_ignore_ascii_case(&rule.event))
                {
                    return Err(problem(
                        at("event"),
                        format!(
                            "`{}` is not one of {}",
                            rule.event,
                            SUPPORTED_IN_EVENTS.join(", ")
                        ),
                    ));
                }
                if rule.mrn.is_some() && self.identifiers.mrn.is_empty() {
                    return Err(problem(
                        at("mrn"),
                        "map the MRN's system first: add [[…identifiers.mrn]] with its `system`",
                    ));
                }
                if rule.accession.is_some() && self.identifiers.accession.is_empty() {
                    return Err(problem(
                        at("accession"),
                        "map the accession's system first: add [[…identifiers.accession]] with its `system`",
                    ));
                }
                if rule.mrn.is_none() && rule.accession.is_none() && rule.study_uid.is_none() {
                    return Err(problem(
                        at("mrn"),
                        "read at least one identifier (mrn, accession or study_uid)",
                    ));
                }
                for (key, path) in [
                    ("mrn", &rule.mrn),
                    ("mrn_issuer", &rule.mrn_issuer),
                    ("accession", &rule.accession),
                    ("accession_issuer", &rule.accession_issuer),
                    ("study_uid", &rule.study_uid),
                    ("family_name", &rule.family_name),
                    ("given_name", &rule.given_name),
                    ("birth_date", &rule.birth_date),
                ] {
                    let Some(path) = path else { continue };
                    crate::message::check_path(inbound.format, path)
                        .map_err(|e| problem(at(key), format!("field `{path}`: {e}")))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn launch(toml_text: &str) -> Result<(), ConfigProblem> {
        let config: BridgesConfig = toml_from(toml_text);
        config.validate()
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
