//! `[[bridges.folder]]`: the keys of a folder bridge, and their validation into a
//! [`FolderBridge`].

use super::common::{default_launch_events, open_events, yes};
use crate::folder::{
    AfterRead, Content, Duplicates, FolderBridge, IdField, Incoming, Outgoing, Rule, Rules, Sides,
    Watch,
};
use crate::mapping::IdentifierMapping;
use crate::message::{FileFormat, check_path};
use crate::problem::ConfigProblem;
use crate::template::{Escape, Template};
use crate::text::{self, LineEndings, Pattern, TextEncoding};
use lockstep_fhircast::EventSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

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
    /// Checks what types alone cannot, and builds the bridge's sides. Keys are the bridge's
    /// own (`out.template`, `in.rules[0].event`).
    pub fn validate(&self) -> Result<FolderBridge, ConfigProblem> {
        self.identifiers
            .validate()
            .map_err(|p| p.under("identifiers"))?;
        let outgoing = self
            .out
            .as_ref()
            .map(|out| out.validate(&self.identifiers).map_err(|p| p.under("out")))
            .transpose()?;
        let incoming = self
            .inbound
            .as_ref()
            .map(|inbound| {
                inbound
                    .validate(&self.identifiers)
                    .map_err(|p| p.under("in"))
            })
            .transpose()?;
        let sides = match (outgoing, incoming) {
            (Some(out), Some(inbound)) => Sides::Both(out, inbound),
            (Some(out), None) => Sides::Out(out),
            (None, Some(inbound)) => Sides::In(inbound),
            (None, None) => {
                return Err(ConfigProblem::new("out", "configure `out`, `in` or both"));
            }
        };
        Ok(FolderBridge {
            identifiers: self.identifiers.clone(),
            sides,
        })
    }
}

impl FolderOut {
    fn validate(&self, mapping: &IdentifierMapping) -> Result<Outgoing, ConfigProblem> {
        let events = open_events(&self.events).map_err(|r| problem("events", r))?;
        if events.is_empty() {
            return Err(problem("events", "name at least one *-open event"));
        }
        let file_name = Template::parse(&self.file_name, Escape::FileName)
            .map_err(|e| problem("file_name", e.to_string()))?;
        file_name
            .check_mapped(mapping)
            .map_err(|e| problem("file_name", e))?;
        let escape = self.format.escape();
        let content = match (&self.template, &self.template_file) {
            (Some(text), None) => {
                let t = Template::parse(text, escape)
                    .map_err(|e| problem("template", e.to_string()))?;
                t.check_mapped(mapping)
                    .map_err(|e| problem("template", e))?;
                Content::Template(t)
            }
            // Read (and checked) when the bridge starts: the file may be edited later.
            (None, Some(path)) => Content::File {
                path: path.clone(),
                escape,
            },
            _ => {
                return Err(problem(
                    "template",
                    "give either `template` or `template_file`",
                ));
            }
        };
        let encoder = text::encoder(&self.encoding.0).map_err(|e| problem("encoding", e))?;
        Ok(Outgoing {
            dir: self.dir.clone(),
            events,
            file_name,
            content,
            encoder,
            line_endings: self.line_endings,
        })
    }
}

impl FolderIn {
    fn validate(&self, mapping: &IdentifierMapping) -> Result<Incoming, ConfigProblem> {
        let decoder = text::decoder(&self.encoding.0).map_err(|e| problem("encoding", e))?;
        let pattern = Pattern::parse(&self.pattern).map_err(|e| problem("pattern", e))?;
        if self.rules.is_empty() {
            return Err(problem("rules", "add at least one rule"));
        }
        if self.message_type.is_empty() && self.rules.len() > 1 {
            return Err(problem(
                "message_type",
                "several rules need a `message_type` field to choose between them",
            ));
        }
        if self.max_file_age_seconds == 0 {
            return Err(problem("max_file_age_seconds", "must be at least 1"));
        }
        if self.poll_interval_ms == Some(0) {
            return Err(problem("poll_interval_ms", "must be at least 1"));
        }
        let mut rules = Vec::with_capacity(self.rules.len());
        for (i, rule) in self.rules.iter().enumerate() {
            let rule = rule
                .validate(self.format, mapping)
                .map_err(|p| p.under(&format!("rules[{i}]")))?;
            rules.push(rule);
        }
        let rules = if self.message_type.is_empty() {
            // One rule (checked above).
            Rules::Single(rules.swap_remove(0))
        } else {
            Rules::ByType {
                field: self.message_type.clone(),
                rules,
                ignore: self.ignore_types.clone(),
            }
        };
        Ok(Incoming {
            dir: self.dir.clone(),
            pattern,
            format: self.format,
            decoder,
            rules,
            duplicates: match &self.message_id {
                Some(field) => Duplicates::ById(field.clone()),
                None => Duplicates::ByContent(Duration::from_secs(self.duplicate_window_seconds)),
            },
            after_read: self.after_read,
            archive_dir: self.archive_dir.clone(),
            error_dir: self.error_dir.clone(),
            max_file_age_seconds: self.max_file_age_seconds,
            max_file_bytes: self.max_file_bytes,
            watch: match self.poll_interval_ms {
                Some(ms) => Watch::Poll(Duration::from_millis(ms)),
                None => Watch::Notify,
            },
            settle: Duration::from_millis(self.settle_ms),
        })
    }
}

impl InRule {
    fn validate(
        &self,
        format: FileFormat,
        mapping: &IdentifierMapping,
    ) -> Result<Rule, ConfigProblem> {
        let event = EventSpec::lookup(&self.event)
            .filter(|e| {
                SUPPORTED_IN_EVENTS
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(e.name))
            })
            .ok_or_else(|| {
                problem(
                    "event",
                    format!(
                        "`{}` is not one of {}",
                        self.event,
                        SUPPORTED_IN_EVENTS.join(", ")
                    ),
                )
            })?;
        if self.mrn.is_some() && mapping.mrn.is_empty() {
            return Err(problem(
                "mrn",
                "map the MRN's system first: add [[…identifiers.mrn]] with its `system`",
            ));
        }
        if self.accession.is_some() && mapping.accession.is_empty() {
            return Err(problem(
                "accession",
                "map the accession's system first: add [[…identifiers.accession]] with its `system`",
            ));
        }
        if self.mrn.is_none() && self.accession.is_none() && self.study_uid.is_none() {
            return Err(problem(
                "mrn",
                "read at least one identifier (mrn, accession or study_uid)",
            ));
        }
        for (key, path) in [
            ("mrn", &self.mrn),
            ("mrn_issuer", &self.mrn_issuer),
            ("accession", &self.accession),
            ("accession_issuer", &self.accession_issuer),
            ("study_uid", &self.study_uid),
            ("family_name", &self.family_name),
            ("given_name", &self.given_name),
            ("birth_date", &self.birth_date),
        ] {
            let Some(path) = path else { continue };
            check_path(format, path).map_err(|e| problem(key, format!("field `{path}`: {e}")))?;
        }
        let id_field = |value: &Option<String>, issuer: &Option<String>| {
            value.as_ref().map(|value| IdField {
                value: value.clone(),
                issuer: issuer.clone(),
            })
        };
        Ok(Rule {
            when: self.when.clone(),
            event,
            mrn: id_field(&self.mrn, &self.mrn_issuer),
            accession: id_field(&self.accession, &self.accession_issuer),
            study_uid: self.study_uid.clone(),
            family_name: self.family_name.clone(),
            given_name: self.given_name.clone(),
            birth_date: self.birth_date.clone(),
            allow_patient_change: self.allow_patient_change,
        })
    }
}

fn problem(key: &str, reason: impl Into<String>) -> ConfigProblem {
    ConfigProblem::new(key, reason)
}
