//! The folder bridge: files out to an app on each context change, written atomically (a
//! temporary file, then a rename); files in from an app, each turned into a FHIRcast request.
//!
//! In: the folder is watched with OS notifications, or polled for network shares; when a file
//! is ready to read is [`ready`]'s decision (never while its writer may still be writing it).
//! Every file ends up handled (archived or deleted) or rejected (moved to the error folder
//! with a `.reason.txt`, a log line and an audit row); nothing in a file can crash the bridge.
//! A file cut short (a partial write) is the exception: it stays where it is, a copy and the
//! reason go to the error folder, and it is read again once its writer finishes it. A file naming another patient than the current context raises a
//! SyncError and changes nothing, unless its rule explicitly allows a patient change.

mod ready;

use crate::config::{AfterRead, FolderConfig, FolderIn, FolderOut, InRule};
use crate::mapping::{IdKind, IdentifierMapping, Mapped, study_uid_identifier, study_uid_of};
use crate::message::{FieldError, Message, ParseError};
use crate::session::Session;
use crate::template::{ContextData, Escape, Template};
use crate::text::{self, DecodeError, Decoder, Encoder, Pattern};
use crate::{BridgeError, LinkState};
use lockstep_fhircast::{EventKind, EventSpec};
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind as FsKind, RecursiveMode, Watcher};
use parking_lot::Mutex;
use ready::{FsChange, Look, Readiness};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, watch};

/// How many of its own requests a bridge remembers, to not write them back to their author.
const OWN_EVENTS: usize = 64;
/// How long message ids are remembered for duplicate detection.
const MESSAGE_ID_MEMORY: Duration = Duration::from_secs(24 * 3600);
const MAX_REMEMBERED: usize = 4096;

/// Why a file out could not be written.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    #[error("cannot render the file: {0}")]
    Render(#[from] crate::template::RenderError),
    #[error("cannot encode the file: {0}")]
    Encode(String),
    #[error("cannot write into the folder: {0}")]
    Io(#[from] std::io::Error),
}

/// The out side: renders and writes one file per context change.
pub struct Writer {
    dir: PathBuf,
    file_name: Template,
    content: Template,
    encoder: Encoder,
    out: FolderOut,
    mapping: IdentifierMapping,
}

impl Writer {
    pub fn new(out: &FolderOut, mapping: &IdentifierMapping) -> Result<Self, BridgeError> {
        let setup = |e: String| BridgeError::Setup(e);
        let template_text = match (&out.template, &out.template_file) {
            (Some(text), _) => text.clone(),
            (None, Some(file)) => std::fs::read_to_string(file)
                .map_err(|e| setup(format!("cannot read {}: {e}", file.display())))?,
            (None, None) => return Err(setup("no template".into())),
        };
        let content = Template::parse(&template_text, out.format.escape())
            .map_err(|e| setup(e.to_string()))?;
        content.check_mapped(mapping).map_err(setup)?;
        Ok(Writer {
            dir: out.dir.clone(),
            file_name: Template::parse(&out.file_name, Escape::FileName)
                .map_err(|e| setup(e.to_string()))?,
            content,
            encoder: text::encoder(&out.encoding.0).map_err(setup)?,
            out: out.clone(),
            mapping: mapping.clone(),
        })
    }

    /// Writes the file for a context: a temporary file in the same folder, then a rename, so
    /// the app never reads half a file. Returns the file's path.
    pub fn write(&self, data: &ContextData) -> Result<PathBuf, WriteError> {
        let now = time::OffsetDateTime::now_utc();
        let name = self.file_name.render(data, &self.mapping, now)?;
        let text = self.content.render(data, &self.mapping, now)?;
        let bytes =
            text::encode(&text, self.encoder, self.out.line_endings).map_err(WriteError::Encode)?;
        let target = self.dir.join(&name);
        let temp = self
            .dir
            .join(format!(".{name}.{}.tmp", uuid::Uuid::new_v4().simple()));
        let written = std::fs::write(&temp, &bytes).and_then(|()| std::fs::rename(&temp, &target));
        if let Err(e) = written {
            let _ = std::fs::remove_file(&temp);
            return Err(e.into());
        }
        Ok(target)
    }
}

/// Why a file in was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    TooLarge {
        bytes: u64,
        limit: u64,
    },
    Stale {
        age_seconds: u64,
        limit: u64,
    },
    Partial(String),
    Malformed(String),
    Duplicate(String),
    UnknownType(String),
    Field(String),
    /// An identifier whose system or issuer is not mapped.
    Unmapped(String),
    /// The file names another patient than the current context.
    OtherPatient(String),
    /// The file does not say enough to build the request.
    Unresolvable(String),
    /// The hub refused the request.
    Refused(String),
}

impl Rejection {
    /// Plain words, no identifiers: for the log, the reason file and the tray.
    pub fn summary(&self) -> String {
        match self {
            Rejection::TooLarge { bytes, limit } => {
                format!("too large ({bytes} bytes, limit {limit})")
            }
            Rejection::Stale { age_seconds, limit } => {
                format!("stale (last written {age_seconds} s ago, limit {limit} s)")
            }
            Rejection::Partial(why) => format!("partial write: {why}"),
            Rejection::Malformed(why) => format!("malformed: {why}"),
            Rejection::Duplicate(why) => format!("duplicate: {why}"),
            Rejection::UnknownType(t) => format!("no rule for message type `{t}`"),
            Rejection::Field(why) => why.clone(),
            Rejection::Unmapped(why) => why.clone(),
            Rejection::OtherPatient(_) => {
                "names another patient than the current context; the session was not switched"
                    .into()
            }
            Rejection::Unresolvable(why) => why.clone(),
            Rejection::Refused(why) => format!("the hub refused the request: {why}"),
        }
    }

    /// The audit's fuller reason (may name the patient).
    fn audit(&self) -> String {
        match self {
            Rejection::OtherPatient(detail) => format!("{}: {detail}", self.summary()),
            _ => self.summary(),
        }
    }
}

/// What became of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Handled {
    /// Turned into this request (event name, event id).
    Requested {
        event: &'static str,
        id: String,
    },
    /// Its message type is in `ignore_types`.
    Ignored(String),
    Rejected(Rejection),
}

/// What a message says, with its identifiers already mapped.
#[derive(Debug, Default)]
struct Said {
    mrn: Option<Mapped>,
    accession: Option<Mapped>,
    uid: Option<String>,
    family: Option<String>,
    given: Option<String>,
    birth_date: Option<String>,
}

/// The current context's resources.
#[derive(Debug, Default)]
struct Current {
    patient: Option<Value>,
    study: Option<Value>,
    report: Option<Value>,
}

impl Current {
    fn read(session: &Session) -> Current {
        let Some(current) = session.engine().current_context_of(session.topic()) else {
            return Current::default();
        };
        let entries: Vec<Value> = serde_json::from_str(&current.context).unwrap_or_default();
        let resource = |key: &str| {
            entries
                .iter()
                .find(|e| e.get("key").and_then(Value::as_str) == Some(key))
                .and_then(|e| e.get("resource"))
                .cloned()
        };
        Current {
            patient: resource("patient"),
            study: resource("study"),
            report: resource("report"),
        }
    }
}

/// The in side: everything needed to handle one file, and what it remembers between files.
pub struct Inbox {
    config: FolderIn,
    mapping: IdentifierMapping,
    session: Session,
    decoder: Decoder,
    pattern: Pattern,
    archive_dir: PathBuf,
    error_dir: PathBuf,
    seen: VecDeque<(String, Instant)>,
    own_events: Arc<Mutex<VecDeque<String>>>,
    /// Files left in place (cut short, or neither archivable nor movable aside): not read
    /// again while they look as they did (never deleted), until they go stale.
    stuck: HashMap<PathBuf, Look>,
}

impl Inbox {
    fn new(
        config: &FolderIn,
        mapping: &IdentifierMapping,
        session: Session,
        own_events: Arc<Mutex<VecDeque<String>>>,
    ) -> Result<Self, BridgeError> {
        let setup = BridgeError::Setup;
        Ok(Inbox {
            decoder: text::decoder(&config.encoding.0).map_err(setup)?,
            pattern: Pattern::parse(&config.pattern).map_err(setup)?,
            archive_dir: config
                .archive_dir
                .clone()
                .unwrap_or_else(|| config.dir.join("archive")),
            error_dir: config
                .error_dir
                .clone()
                .unwrap_or_else(|| config.dir.join("error")),
            config: config.clone(),
            mapping: mapping.clone(),
            session,
            seen: VecDeque::new(),
            own_events,
            stuck: HashMap::new(),
        })
    }

    /// Whether a path in the folder is one to read.
    fn wants(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        path.parent() == Some(self.config.dir.as_path())
            && !text::is_in_progress(name)
            && !name.ends_with(".reason.txt")
            && self.pattern.matches(name)
    }

    /// Files waiting in the folder, oldest first (by modification time, then name).
    fn backlog(&self) -> Vec<PathBuf> {
        let Ok(entries) = std::fs::read_dir(&self.config.dir) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = entries
            .filter_map(Result::ok)
            .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
            .map(|e| e.path())
            .filter(|p| self.wants(p))
            .map(|p| {
                let mtime = std::fs::metadata(&p)
                    .and_then(|m| m.modified())
                    .unwrap_or(SystemTime::UNIX_EPOCH);
                (mtime, p)
            })
            .collect();
        files.sort();
        files.into_iter().map(|(_, p)| p).collect()
    }

    /// Handles one file (blocking: call from a blocking thread). `None` when there was no file
    /// to handle (already handled, or not one to read).
    pub fn handle(&mut self, path: &Path) -> Option<Handled> {
        if !self.wants(path) {
            return None;
        }
        let meta = std::fs::metadata(path).ok().filter(|m| m.is_file())?;
        // Not a message yet: its writer created it and has not written (it comes back when
        // written).
        if meta.len() == 0 {
            return None;
        }
        if self.stuck.get(path) == Some(&look_of_meta(&meta, false)) && !self.is_stale(&meta) {
            return None;
        }
        self.stuck.remove(path);
        let name = path.file_name()?.to_string_lossy().into_owned();
        let outcome = self.examine(path, &meta);
        match &outcome {
            Ok(handled) => {
                self.after_read(path, &name);
                if let Handled::Ignored(t) = handled {
                    tracing::debug!(bridge = %self.session.name(), "ignored a `{t}` message");
                }
            }
            Err(rejection) => self.reject(path, &name, rejection),
        }
        Some(outcome.unwrap_or_else(Handled::Rejected))
    }

    fn age(meta: &std::fs::Metadata) -> Duration {
        meta.modified()
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .unwrap_or_default()
    }

    fn is_stale(&self, meta: &std::fs::Metadata) -> bool {
        Self::age(meta).as_secs() > self.config.max_file_age_seconds
    }

    fn examine(&mut self, path: &Path, meta: &std::fs::Metadata) -> Result<Handled, Rejection> {
        let limit = self.config.max_file_bytes;
        if meta.len() > limit {
            return Err(Rejection::TooLarge {
                bytes: meta.len(),
                limit,
            });
        }
        let age = Self::age(meta);
        if self.is_stale(meta) {
            return Err(Rejection::Stale {
                age_seconds: age.as_secs(),
                limit: self.config.max_file_age_seconds,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| Rejection::Malformed(e.to_string()))?;
        let content = text::decode(&bytes, self.decoder).map_err(|e| match e {
            DecodeError::Truncated => Rejection::Partial(e.to_string()),
            DecodeError::Invalid(_) => Rejection::Malformed(e.to_string()),
        })?;
        let message = Message::parse(self.config.format, &content).map_err(|e| match e {
            ParseError::Partial(why) => Rejection::Partial(why),
            ParseError::Malformed { .. } => Rejection::Malformed(e.to_string()),
        })?;
        let field = |path: &str| {
            message
                .get(path)
                .map_err(|e: FieldError| Rejection::Field(e.to_string()))
        };
        let message_type = if self.config.message_type.is_empty() {
            String::new()
        } else {
            field(&self.config.message_type)?.unwrap_or_default()
        };
        // Exact duplicates by message id when there is one; else by content, briefly.
        let key = match &self.config.message_id {
            Some(path) => match field(path)? {
                Some(id) => format!("id:{id}"),
                None => return Err(Rejection::Malformed("no message id".into())),
            },
            None => format!("sha256:{:x}", Sha256::digest(&bytes)),
        };
        let window = match self.config.message_id {
            Some(_) => MESSAGE_ID_MEMORY,
            None => Duration::from_secs(self.config.duplicate_window_seconds),
        };
        let now = Instant::now();
        self.seen.retain(|(_, at)| now.duration_since(*at) < window);
        if self.seen.iter().any(|(k, _)| *k == key) {
            return Err(Rejection::Duplicate(match self.config.message_id {
                Some(_) => "a message with this id was handled already".into(),
                None => format!(
                    "the same content was handled less than {} s ago",
                    window.as_secs()
                ),
            }));
        }
        let rule = self
            .config
            .rules
            .iter()
            .find(|r| self.config.message_type.is_empty() || r.when == message_type)
            .cloned();
        let handled = match rule {
            Some(rule) => self.request(&rule, &message)?,
            None if self.config.ignore_types.contains(&message_type) => {
                Handled::Ignored(message_type)
            }
            None => return Err(Rejection::UnknownType(message_type)),
        };
        self.seen.push_back((key, now));
        while self.seen.len() > MAX_REMEMBERED {
            self.seen.pop_front();
        }
        Ok(handled)
    }

    /// Reads a rule's fields, checks them against the current context and requests the event.
    fn request(&mut self, rule: &InRule, message: &Message) -> Result<Handled, Rejection> {
        let field = |path: &Option<String>| -> Result<Option<String>, Rejection> {
            match path {
                Some(p) => message.get(p).map_err(|e| Rejection::Field(e.to_string())),
                None => Ok(None),
            }
        };
        let unmapped = |e: crate::mapping::MappingError| Rejection::Unmapped(e.to_string());
        let mut said = Said::default();
        if let Some(mrn) = field(&rule.mrn)? {
            let issuer = field(&rule.mrn_issuer)?;
            said.mrn = Some(
                self.mapping
                    .resolve(IdKind::Mrn, &mrn, issuer.as_deref())
                    .map_err(unmapped)?,
            );
        }
        if let Some(accession) = field(&rule.accession)? {
            let issuer = field(&rule.accession_issuer)?;
            said.accession = Some(
                self.mapping
                    .resolve(IdKind::Accession, &accession, issuer.as_deref())
                    .map_err(unmapped)?,
            );
        }
        said.uid = field(&rule.study_uid)?.map(|u| u.trim_start_matches("urn:oid:").to_owned());
        said.family = field(&rule.family_name)?;
        said.given = field(&rule.given_name)?;
        said.birth_date = field(&rule.birth_date)?
            .map(|d| fhir_date(&d))
            .transpose()?;
        if said.mrn.is_none() && said.accession.is_none() && said.uid.is_none() {
            return Err(Rejection::Unresolvable(
                "the file names no patient or study identifier".into(),
            ));
        }

        let event = EventSpec::lookup(&rule.event)
            .ok_or_else(|| Rejection::Unresolvable(format!("unknown event `{}`", rule.event)))?;
        let current = Current::read(&self.session);
        let context = build(event, &said, &current, rule.allow_patient_change)?;
        let (id, request) = self.session.request(event.name, context);
        {
            // Remembered before publishing: the echo may arrive before publish returns.
            let mut own = self.own_events.lock();
            own.push_back(id.clone());
            while own.len() > OWN_EVENTS {
                own.pop_front();
            }
        }
        self.session
            .publish(&request)
            .map_err(|e| Rejection::Refused(e.to_string()))?;
        Ok(Handled::Requested {
            event: event.name,
            id,
        })
    }

    fn after_read(&mut self, path: &Path, name: &str) {
        let result = match self.config.after_read {
            AfterRead::Delete => std::fs::remove_file(path),
            AfterRead::Archive => move_into(path, &self.archive_dir, name).map(drop),
        };
        if let Err(e) = result {
            tracing::error!(
                bridge = %self.session.name(),
                "cannot archive or delete a handled file: {e}; it is left in place and not read again"
            );
            self.set_stuck(path);
        }
    }

    fn set_stuck(&mut self, path: &Path) {
        if let Ok(meta) = std::fs::metadata(path) {
            self.stuck
                .insert(path.to_owned(), look_of_meta(&meta, false));
        }
    }

    fn reject(&mut self, path: &Path, name: &str, rejection: &Rejection) {
        let summary = rejection.summary();
        // A file cut short may yet be finished by its writer: it stays, and a copy shows
        // what was read.
        let kept = matches!(rejection, Rejection::Partial(_));
        let moved = if kept {
            copy_into(path, &self.error_dir, name)
        } else {
            move_into(path, &self.error_dir, name)
        };
        let where_to = match &moved {
            Ok(dest) => {
                let reason = dest.with_file_name(format!(
                    "{}.reason.txt",
                    dest.file_name().unwrap_or_default().to_string_lossy()
                ));
                let text = if kept {
                    format!(
                        "{summary}\nThis is a copy: the file was left in place and is read \
                         again when its writer finishes it (or rejected as stale after {} s).\n",
                        self.config.max_file_age_seconds
                    )
                } else {
                    format!("{summary}\n")
                };
                let _ = std::fs::write(reason, text);
                if kept {
                    self.set_stuck(path);
                    format!("copied to {}; the file is left in place", dest.display())
                } else {
                    format!("moved to {}", dest.display())
                }
            }
            Err(e) => {
                self.set_stuck(path);
                format!(
                    "could not be moved to the error folder ({e}); left in place, not read again"
                )
            }
        };
        // The file name may carry an accession: it goes to the audit, not the log line.
        self.session.rejected(
            &format!("rejected a file: {summary}; see the error folder and the audit trail"),
            format!("file {name} rejected: {}; {where_to}", rejection.audit()),
        );
    }
}

/// How a file looks, to tell whether it changed (see [`ready`]).
fn look_of_meta(meta: &std::fs::Metadata, held: bool) -> Look {
    Look {
        len: meta.len(),
        modified: meta.modified().ok(),
        held,
    }
}

/// How the file at `path` looks now; `None` when it is gone.
fn look_at(path: &Path) -> Option<Look> {
    let meta = std::fs::metadata(path).ok()?;
    Some(look_of_meta(&meta, held_for_writing(path)))
}

/// Windows tells whether another program holds a file open for writing: opening it while
/// sharing read access only fails with a sharing violation then.
#[cfg(windows)]
fn held_for_writing(path: &Path) -> bool {
    use std::os::windows::fs::OpenOptionsExt;
    const FILE_SHARE_READ: u32 = 0x1;
    const ERROR_SHARING_VIOLATION: i32 = 32;
    matches!(
        std::fs::OpenOptions::new().read(true).share_mode(FILE_SHARE_READ).open(path),
        Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION)
    )
}

/// Other systems do not say; closes (Linux) and settling stand in.
#[cfg(not(windows))]
fn held_for_writing(_path: &Path) -> bool {
    false
}

/// Copies a file into `dir` under a name no other file has, leaving it in place.
fn copy_into(path: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dest = unique_in(dir, name)?;
    std::fs::copy(path, &dest)?;
    Ok(dest)
}

/// A time-stamped name in `dir` that no file has yet.
fn unique_in(dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]T[hour][minute][second].[subsecond digits:3]Z"
        ))
        .unwrap_or_default();
    let mut dest = dir.join(format!("{stamp}-{name}"));
    let mut n = 1;
    while dest.exists() {
        dest = dir.join(format!("{stamp}-{n}-{name}"));
        n += 1;
    }
    Ok(dest)
}

/// Moves a file into `dir` under a name no other file has (time-stamped).
fn move_into(path: &Path, dir: &Path, name: &str) -> std::io::Result<PathBuf> {
    let dest = unique_in(dir, name)?;
    match std::fs::rename(path, &dest) {
        Ok(()) => Ok(dest),
        // Another file system (a share): copy, then remove.
        Err(_) => {
            std::fs::copy(path, &dest)?;
            std::fs::remove_file(path)?;
            Ok(dest)
        }
    }
}

/// `YYYYMMDD` or `YYYY-MM-DD` as a FHIR date.
fn fhir_date(text: &str) -> Result<String, Rejection> {
    let digits: String = text.chars().filter(|c| *c != '-').collect();
    let valid = digits.len() == 8 && digits.chars().all(|c| c.is_ascii_digit());
    if !valid {
        return Err(Rejection::Field(
            "the birth date is not YYYYMMDD or YYYY-MM-DD".into(),
        ));
    }
    Ok(format!(
        "{}-{}-{}",
        &digits[..4],
        &digits[4..6],
        &digits[6..]
    ))
}

/// A stable logical id for a resource first seen in a legacy message: the same identifier
/// always gets the same id, so a later close names what was opened.
fn derived_id(kind: &str, system: &str, value: &str) -> String {
    let hash = Sha256::digest(format!("{kind}|{system}|{value}").as_bytes());
    format!("{kind}-{}", &format!("{hash:x}")[..24])
}

fn has_identifier(resource: &Value, system: &str, value: &str) -> Option<bool> {
    let ids = resource.get("identifier")?.as_array()?;
    let in_system: Vec<&str> = ids
        .iter()
        .filter(|i| i.get("system").and_then(Value::as_str) == Some(system))
        .filter_map(|i| i.get("value").and_then(Value::as_str))
        .collect();
    if in_system.is_empty() {
        None
    } else {
        Some(in_system.iter().any(|v| v.trim() == value))
    }
}

/// Whether a message's study is the current one (same accession in the same system, or the
/// same Study Instance UID).
fn is_current_study(said: &Said, current: &Current) -> bool {
    let mapping_free_accession = |study: &Value, m: &Mapped| {
        has_identifier(study, &m.system, &m.value) == Some(true)
            || study
                .get("basedOn")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|b| b.get("identifier"))
                .any(|i| {
                    i.get("system").and_then(Value::as_str) == Some(m.system.as_str())
                        && i.get("value").and_then(Value::as_str).map(str::trim)
                            == Some(m.value.as_str())
                })
    };
    let by_accession = said.accession.as_ref().is_some_and(|m| {
        current
            .study
            .as_ref()
            .is_some_and(|s| mapping_free_accession(s, m))
            || current
                .report
                .as_ref()
                .is_some_and(|r| mapping_free_accession(r, m))
    });
    let by_uid = said.uid.as_ref().is_some_and(|uid| {
        current
            .study
            .as_ref()
            .and_then(study_uid_of)
            .is_some_and(|c| c == *uid)
    });
    by_accession || by_uid
}

/// Builds the context of the request, refusing rather than guessing the patient.
fn build(
    event: &'static EventSpec,
    said: &Said,
    current: &Current,
    allow_patient_change: bool,
) -> Result<Value, Rejection> {
    let current_study = is_current_study(said, current);
    // Is the message's patient the current one? `None`: there is no current patient.
    let same_patient = match (&said.mrn, &current.patient) {
        (_, None) => None,
        (Some(m), Some(p)) => Some(has_identifier(p, &m.system, &m.value) == Some(true)),
        // No MRN in the message: only its study can tie it to the current patient.
        (None, Some(_)) => Some(current_study),
    };
    if same_patient == Some(false) {
        let detail = match &said.mrn {
            Some(m) => format!("the file names MRN {} ({})", m.value, m.system),
            None => "the file names a study that is not the current one and no patient".into(),
        };
        // The current study with another patient is a contradiction no rule can allow.
        if !allow_patient_change || current_study || said.mrn.is_none() {
            return Err(Rejection::OtherPatient(detail));
        }
    }
    let patient = match (same_patient, &current.patient, &said.mrn) {
        (Some(true), Some(p), _) => p.clone(),
        (_, _, Some(m)) => {
            let mut patient = json!({
                "resourceType": "Patient",
                "id": derived_id("patient", &m.system, &m.value),
                "identifier": [m.identifier(IdKind::Mrn)],
            });
            if said.family.is_some() || said.given.is_some() {
                let mut name = json!({});
                if let Some(f) = &said.family {
                    name["family"] = f.clone().into();
                }
                if let Some(g) = &said.given {
                    name["given"] = g.split_whitespace().collect::<Vec<_>>().into();
                }
                patient["name"] = json!([name]);
            }
            if let Some(d) = &said.birth_date {
                patient["birthDate"] = d.clone().into();
            }
            patient
        }
        _ => {
            return Err(Rejection::Unresolvable(
                "the file names no patient, and there is no current patient to take it from".into(),
            ));
        }
    };
    let patient_id = patient
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let subject = json!({ "reference": format!("Patient/{patient_id}") });

    let study = || -> Result<Value, Rejection> {
        if current_study && let Some(s) = &current.study {
            return Ok(s.clone());
        }
        let mut identifiers = Vec::new();
        let id = match (&said.accession, &said.uid) {
            (Some(a), _) => derived_id("study", &a.system, &a.value),
            (None, Some(uid)) => derived_id("study", "urn:dicom:uid", uid),
            (None, None) => {
                return Err(Rejection::Unresolvable(
                    "the file names no accession or Study Instance UID".into(),
                ));
            }
        };
        if let Some(a) = &said.accession {
            identifiers.push(a.identifier(IdKind::Accession));
        }
        if let Some(uid) = &said.uid {
            identifiers.push(study_uid_identifier(uid));
        }
        Ok(json!({
            "resourceType": "ImagingStudy",
            "id": id,
            "status": "available",
            "subject": subject,
            "identifier": identifiers,
        }))
    };
    let report = || -> Result<Value, Rejection> {
        if current_study && let Some(r) = &current.report {
            return Ok(r.clone());
        }
        let a = said.accession.as_ref().ok_or_else(|| {
            Rejection::Unresolvable("a report needs the accession of its order".into())
        })?;
        Ok(json!({
            "resourceType": "DiagnosticReport",
            "id": derived_id("report", &a.system, &a.value),
            "status": "preliminary",
            "subject": subject,
            "basedOn": [{ "identifier": a.identifier(IdKind::Accession) }],
        }))
    };
    let only_id = |r: Value, keep: &[&str]| -> Value {
        let mut slim = json!({});
        for key in ["resourceType", "id"].iter().chain(keep) {
            if let Some(v) = r.get(*key) {
                slim[*key] = v.clone();
            }
        }
        slim
    };
    let entry = |key: &str, resource: Value| json!({ "key": key, "resource": resource });
    let closing = event.kind == EventKind::Close;
    let patient_entry = if closing {
        entry("patient", only_id(patient, &[]))
    } else {
        entry("patient", patient)
    };
    let context = match event.anchor {
        Some("Patient") => vec![patient_entry],
        Some("ImagingStudy") if closing => vec![
            entry("study", only_id(study()?, &["status", "subject"])),
            patient_entry,
        ],
        Some("ImagingStudy") => vec![entry("study", study()?), patient_entry],
        Some("DiagnosticReport") => {
            let report = report()?;
            let study = study().ok();
            let mut context = vec![if closing {
                entry("report", only_id(report, &["subject"]))
            } else {
                entry("report", report)
            }];
            if let Some(s) = study {
                context.push(if closing {
                    entry("study", only_id(s, &[]))
                } else {
                    entry("study", s)
                });
            }
            context.push(patient_entry);
            context
        }
        _ => {
            return Err(Rejection::Unresolvable(format!(
                "`{}` cannot be requested from a file",
                event.name
            )));
        }
    };
    Ok(Value::Array(context))
}

/// What the OS reported, per file.
fn classify(event: notify::Event) -> Vec<(PathBuf, FsChange)> {
    let mut paths = event.paths;
    let change = match event.kind {
        FsKind::Access(AccessKind::Close(AccessMode::Write)) => FsChange::Closed,
        FsKind::Modify(ModifyKind::Name(RenameMode::To)) => FsChange::Renamed,
        FsKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            return paths
                .pop()
                .map(|p| (p, FsChange::Renamed))
                .into_iter()
                .collect();
        }
        FsKind::Modify(ModifyKind::Name(_)) | FsKind::Remove(_) | FsKind::Access(_) => {
            return Vec::new();
        }
        FsKind::Create(_) => FsChange::Created,
        FsKind::Modify(ModifyKind::Metadata(_)) => FsChange::Touched,
        _ => FsChange::Written,
    };
    paths.into_iter().map(|p| (p, change)).collect()
}

/// Runs a folder bridge until `stop`.
pub async fn run(
    config: FolderConfig,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let own_events: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let writer = config
        .out
        .as_ref()
        .map(|out| Writer::new(out, &config.identifiers))
        .transpose()?
        .map(Arc::new);
    let mut feed = match &config.out {
        Some(out) => {
            std::fs::create_dir_all(&out.dir).map_err(|e| {
                BridgeError::Setup(format!("cannot use {}: {e}", out.dir.display()))
            })?;
            let events = out
                .events
                .iter()
                .filter_map(|n| EventSpec::lookup(n))
                .collect();
            Some(session.join(events).await?)
        }
        None => None,
    };
    let inbox = match &config.inbound {
        Some(inbound) => {
            // Canonical, because the OS reports events under the folder's real path.
            let dir = std::fs::create_dir_all(&inbound.dir)
                .and_then(|()| std::fs::canonicalize(&inbound.dir))
                .map_err(|e| {
                    BridgeError::Setup(format!("cannot use {}: {e}", inbound.dir.display()))
                })?;
            let inbound = FolderIn {
                dir,
                ..inbound.clone()
            };
            let inbox = Inbox::new(
                &inbound,
                &config.identifiers,
                session.clone(),
                own_events.clone(),
            )?;
            Some(Arc::new(Mutex::new(inbox)))
        }
        None => None,
    };

    // OS notifications, or polling when configured (or when the OS refuses to watch).
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut _watcher: Option<notify::RecommendedWatcher> = None;
    let mut poll_every: Option<Duration> = None;
    let watched_dir = inbox.as_ref().map(|i| i.lock().config.dir.clone());
    if let (Some(inbound), Some(dir)) = (&config.inbound, watched_dir) {
        match inbound.poll_interval_ms {
            Some(ms) => poll_every = Some(Duration::from_millis(ms)),
            None => {
                let tx = fs_tx.clone();
                let watched = notify::recommended_watcher(move |event| {
                    let _ = tx.send(event);
                })
                .and_then(|mut w| {
                    w.watch(&dir, RecursiveMode::NonRecursive)?;
                    Ok(w)
                });
                match watched {
                    Ok(w) => _watcher = Some(w),
                    Err(e) => {
                        tracing::warn!(bridge = %session.name(), "cannot watch the folder ({e}); polling it every second instead");
                        poll_every = Some(Duration::from_secs(1));
                    }
                }
            }
        }
    }
    drop(fs_tx);
    let settle = Duration::from_millis(config.inbound.as_ref().map_or(250, |i| i.settle_ms));
    // Linux's watcher reports "closed after writing"; the others do not.
    let closes_reported = cfg!(target_os = "linux") && _watcher.is_some();
    let mut readiness = Readiness::new(settle, closes_reported);
    // Polling: a file must look the same over at least two scans and the settling time.
    let stable = poll_every.map_or(settle, |every| settle.max(every * 2));

    session.set_state(LinkState::Following, "in the session");
    let mut written_ids = crate::RecentIds::default();
    let mut poll = tokio::time::interval(poll_every.unwrap_or(Duration::from_secs(3600)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // What is already in the folder is read first, oldest first, once settled: a writer may
    // be in the middle of one (polling scans it anyway).
    if let Some(inbox) = &inbox
        && poll_every.is_none()
    {
        let now = tokio::time::Instant::now();
        for path in blocking(inbox, |i| i.backlog()).await {
            readiness.check_later(&path, now);
        }
    }

    loop {
        let next_due = readiness.next_due();
        tokio::select! {
            _ = crate::stopped(&mut stop) => return Ok(()),
            change = async {
                match feed.as_mut() {
                    Some(feed) => feed.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let change = change?;
                let Some(feed) = feed.as_ref() else { continue };
                let id = change.id.clone();
                let own = own_events.lock().contains(&id);
                if own || !written_ids.first_time(&id) {
                    // Its own request, or a replay of what was written: nothing to tell the app.
                    feed.reply(&id, 200);
                    continue;
                }
                let Some(writer) = writer.clone() else { continue };
                let data = ContextData::from_change(&change);
                let event = change.event.name;
                let written = tokio::task::spawn_blocking(move || writer.write(&data)).await;
                match written {
                    Ok(Ok(path)) => {
                        feed.reply(&id, 200);
                        session.acted(format!(
                            "wrote {} for {event} {id}",
                            path.file_name().unwrap_or_default().to_string_lossy()
                        ));
                        session.set_state(LinkState::Unconfirmed, format!("file written for {event}"));
                    }
                    Ok(Err(WriteError::Render(e))) => {
                        feed.reply(&id, 409);
                        session.rejected(
                            &format!("refused to write a file for {event}: {e}"),
                            format!("{event} {id}: {e}"),
                        );
                        session.set_state(LinkState::Refused { status: None }, format!("could not follow {event}: {e}"));
                    }
                    Ok(Err(e)) => {
                        feed.reply(&id, 500);
                        session.set_state(LinkState::Broken, format!("could not write a file for {event}: {e}"));
                    }
                    Err(e) => {
                        feed.reply(&id, 500);
                        session.set_state(LinkState::Broken, format!("writing a file failed: {e}"));
                    }
                }
            }
            Some(event) = fs_rx.recv() => {
                let Some(inbox) = &inbox else { continue };
                match event {
                    Ok(event) => {
                        for (path, change) in classify(event) {
                            if readiness.changed(&path, change, tokio::time::Instant::now()) {
                                handle(&session, inbox, path, &mut readiness).await;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(bridge = %session.name(), "folder watch error: {e}"),
                }
            }
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)).await }, if next_due.is_some() => {
                let Some(inbox) = &inbox else { continue };
                let now = tokio::time::Instant::now();
                // Looked at on a blocking thread: a share may stall.
                let paths = readiness.due_paths(now);
                let looks = tokio::task::spawn_blocking(move || {
                    paths
                        .into_iter()
                        .map(|p| {
                            let look = look_at(&p);
                            (p, look)
                        })
                        .collect::<HashMap<_, _>>()
                })
                .await
                .unwrap_or_default();
                let due = readiness.due(now, |p| looks.get(p).copied().flatten());
                for path in due {
                    handle(&session, inbox, path, &mut readiness).await;
                }
            }
            _ = poll.tick(), if poll_every.is_some() => {
                let Some(inbox) = &inbox else { continue };
                let scan = blocking(inbox, |i| {
                    i.backlog()
                        .into_iter()
                        .filter_map(|p| look_at(&p).map(|look| (p, look)))
                        .collect::<Vec<_>>()
                })
                .await;
                for path in readiness.scanned(scan, stable, tokio::time::Instant::now()) {
                    handle(&session, inbox, path, &mut readiness).await;
                }
            }
        }
    }
}

/// Runs `f` on the inbox on a blocking thread: file systems (shares above all) may stall,
/// and must not stall the runtime the hub runs on.
async fn blocking<T: Send + Default + 'static>(
    inbox: &Arc<Mutex<Inbox>>,
    f: impl FnOnce(&mut Inbox) -> T + Send + 'static,
) -> T {
    let inbox = inbox.clone();
    tokio::task::spawn_blocking(move || f(&mut inbox.lock()))
        .await
        .unwrap_or_default()
}

async fn handle(
    session: &Session,
    inbox: &Arc<Mutex<Inbox>>,
    path: PathBuf,
    readiness: &mut Readiness,
) {
    let looked_at = path.clone();
    let (handled, max_age) = blocking(inbox, move |i| {
        (i.handle(&path), i.config.max_file_age_seconds)
    })
    .await;
    if let Some(Handled::Rejected(Rejection::Partial(_))) = &handled {
        // Left in place for its writer to finish; looked at again once it would be stale,
        // so that a file no one finishes is rejected, not kept forever.
        let stale_at = tokio::time::Instant::now() + Duration::from_secs(max_age + 1);
        readiness.check_later(&looked_at, stale_at);
    }
    match handled {
        Some(Handled::Requested { event, .. }) => {
            session.set_state(
                LinkState::Following,
                format!("requested {event} from a file"),
            );
        }
        Some(Handled::Rejected(rejection)) => match &rejection {
            Rejection::OtherPatient(_) => {
                let diagnostics = format!(
                    "{} sent a file that names another patient than the current context; the session was not switched",
                    session.name()
                );
                session.sync_error("", "", &diagnostics);
                session.set_state(
                    LinkState::Broken,
                    "its app shows another patient than the session",
                );
            }
            Rejection::Unmapped(why) | Rejection::Unresolvable(why) | Rejection::Refused(why) => {
                let diagnostics = format!(
                    "{} could not pass on a change from its app: {why}",
                    session.name()
                );
                session.sync_error("", "", &diagnostics);
                session.set_state(
                    LinkState::Refused { status: None },
                    format!("refused a change from its app: {why}"),
                );
            }
            _ => {}
        },
        Some(Handled::Ignored(_)) | None => {}
    }
}
