//! The in side as validation builds it: which files to read and how, and the rules that turn a
//! message into a request.

use crate::message::FileFormat;
use crate::text::{Decoder, Pattern};
use lockstep_fhircast::EventSpec;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// `after_read`: what to do with a file once it has been handled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterRead {
    #[default]
    Archive,
    Delete,
}

/// The in side of a folder bridge, validated.
#[derive(Debug, Clone)]
pub struct Incoming {
    pub dir: PathBuf,
    pub pattern: Pattern,
    pub format: FileFormat,
    /// For files without a BOM.
    pub decoder: Decoder,
    pub rules: Rules,
    pub duplicates: Duplicates,
    pub after_read: AfterRead,
    /// `None`: `<dir>/archive`, under the folder's real path once the bridge starts.
    pub archive_dir: Option<PathBuf>,
    /// `None`: `<dir>/error`.
    pub error_dir: Option<PathBuf>,
    pub max_file_age_seconds: u64,
    pub max_file_bytes: u64,
    pub watch: Watch,
    /// How long a file must look unchanged before it is read (see `ready`).
    pub settle: Duration,
}

/// Which rule a message is handled by.
#[derive(Debug, Clone)]
pub enum Rules {
    /// No `message_type`: every file is the message of the one rule.
    Single(Rule),
    /// The `message_type` field picks the rule whose `when` matches; `ignore` types are
    /// handled by doing nothing, other types are rejected.
    ByType {
        field: String,
        rules: Vec<Rule>,
        ignore: Vec<String>,
    },
}

impl Rules {
    pub fn all(&self) -> &[Rule] {
        match self {
            Rules::Single(rule) => std::slice::from_ref(rule),
            Rules::ByType { rules, .. } => rules,
        }
    }
}

/// How a file is told to be one handled already.
#[derive(Debug, Clone)]
pub enum Duplicates {
    /// By the message id in this field (remembered for a day).
    ById(String),
    /// By its bytes, within this window.
    ByContent(Duration),
}

/// How changes in the folder are noticed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watch {
    /// OS notifications (polling every second if the OS refuses).
    Notify,
    /// Polling at this interval (network shares).
    Poll(Duration),
}

/// One message type and the request it becomes: where each field is read.
#[derive(Debug, Clone)]
pub struct Rule {
    /// The `message_type` value it handles.
    pub when: String,
    pub event: &'static EventSpec,
    pub mrn: Option<IdField>,
    pub accession: Option<IdField>,
    pub study_uid: Option<String>,
    pub family_name: Option<String>,
    pub given_name: Option<String>,
    pub birth_date: Option<String>,
    /// May this message move the session to another patient?
    pub allow_patient_change: bool,
}

/// Where an identifier and its issuer are read (the issuer only with a value).
#[derive(Debug, Clone)]
pub struct IdField {
    pub value: String,
    pub issuer: Option<String>,
}
