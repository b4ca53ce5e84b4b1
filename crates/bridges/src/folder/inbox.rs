//! The in side: one file at a time, read, checked, turned into a FHIRcast request, and then
//! archived, deleted or rejected (moved to the error folder with a `.reason.txt`, a log line and
//! an audit row). Nothing in a file can crash the bridge.

use super::files::{copy_into, look_of_meta, move_into};
use super::incoming::{AfterRead, Duplicates, IdField, Incoming, Rule, Rules};
use super::outcome::{Handled, Rejection};
use super::ready::Look;
use crate::legacy::{Current, Said, build};
use crate::mapping::{IdKind, IdentifierMapping};
use crate::message::{FieldError, Message, ParseError};
use crate::session::Session;
use crate::text::{self, DecodeError};
use parking_lot::Mutex;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// How many of its own requests a bridge remembers, to not write them back to their author.
const OWN_EVENTS: usize = 64;
/// How long message ids are remembered for duplicate detection.
const MESSAGE_ID_MEMORY: Duration = Duration::from_secs(24 * 3600);
const MAX_REMEMBERED: usize = 4096;

/// The in side: everything needed to handle one file, and what it remembers between files.
pub struct Inbox {
    pub(super) config: Incoming,
    mapping: IdentifierMapping,
    session: Session,
    archive_dir: PathBuf,
    error_dir: PathBuf,
    seen: VecDeque<(String, Instant)>,
    own_events: Arc<Mutex<VecDeque<String>>>,
    /// Files left in place (cut short, or neither archivable nor movable aside): not read
    /// again while they look as they did (never deleted), until they go stale.
    stuck: HashMap<PathBuf, Look>,
}

impl Inbox {
    pub(super) fn new(
        config: &Incoming,
        mapping: &IdentifierMapping,
        session: Session,
        own_events: Arc<Mutex<VecDeque<String>>>,
    ) -> Self {
        Inbox {
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
        }
    }

    /// Whether a path in the folder is one to read.
    fn wants(&self, path: &Path) -> bool {
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            return false;
        };
        path.parent() == Some(self.config.dir.as_path())
            && !text::is_in_progress(name)
            && !name.ends_with(".reason.txt")
            && self.config.pattern.matches(name)
    }

    /// Files waiting in the folder, oldest first (by modification time, then name).
    pub(super) fn backlog(&self) -> Vec<PathBuf> {
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
        let content = text::decode(&bytes, self.config.decoder).map_err(|e| match e {
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
        let message_type = match &self.config.rules {
            Rules::Single(_) => String::new(),
            Rules::ByType { field: path, .. } => field(path)?.unwrap_or_default(),
        };
        // Exact duplicates by message id when there is one; else by content, briefly.
        let (key, window) = match &self.config.duplicates {
            Duplicates::ById(path) => match field(path)? {
                Some(id) => (format!("id:{id}"), MESSAGE_ID_MEMORY),
                None => return Err(Rejection::Malformed("no message id".into())),
            },
            Duplicates::ByContent(window) => {
                (format!("sha256:{:x}", Sha256::digest(&bytes)), *window)
            }
        };
        let now = Instant::now();
        self.seen.retain(|(_, at)| now.duration_since(*at) < window);
        if self.seen.iter().any(|(k, _)| *k == key) {
            return Err(Rejection::Duplicate(match self.config.duplicates {
                Duplicates::ById(_) => "a message with this id was handled already".into(),
                Duplicates::ByContent(_) => format!(
                    "the same content was handled less than {} s ago",
                    window.as_secs()
                ),
            }));
        }
        let rule = match &self.config.rules {
            Rules::Single(rule) => Some(rule),
            Rules::ByType { rules, .. } => rules.iter().find(|r| r.when == message_type),
        }
        .cloned();
        let handled = match (rule, &self.config.rules) {
            (Some(rule), _) => self.request(&rule, &message)?,
            (None, Rules::ByType { ignore, .. }) if ignore.contains(&message_type) => {
                Handled::Ignored(message_type)
            }
            (None, _) => return Err(Rejection::UnknownType(message_type)),
        };
        self.seen.push_back((key, now));
        while self.seen.len() > MAX_REMEMBERED {
            self.seen.pop_front();
        }
        Ok(handled)
    }

    /// Reads a rule's fields, checks them against the current context and requests the event.
    fn request(&mut self, rule: &Rule, message: &Message) -> Result<Handled, Rejection> {
        let field = |path: Option<&str>| -> Result<Option<String>, Rejection> {
            match path {
                Some(p) => message.get(p).map_err(|e| Rejection::Field(e.to_string())),
                None => Ok(None),
            }
        };
        let unmapped = |e: crate::mapping::MappingError| Rejection::Unmapped(e.to_string());
        let identifier = |kind: IdKind, at: &Option<IdField>| match at {
            Some(at) => match field(Some(&at.value))? {
                Some(value) => {
                    let issuer = field(at.issuer.as_deref())?;
                    self.mapping
                        .resolve(kind, &value, issuer.as_deref())
                        .map(Some)
                        .map_err(unmapped)
                }
                None => Ok(None),
            },
            None => Ok(None),
        };
        let mut said = Said {
            mrn: identifier(IdKind::Mrn, &rule.mrn)?,
            accession: identifier(IdKind::Accession, &rule.accession)?,
            ..Said::default()
        };
        said.uid =
            field(rule.study_uid.as_deref())?.map(|u| u.trim_start_matches("urn:oid:").to_owned());
        said.family = field(rule.family_name.as_deref())?;
        said.given = field(rule.given_name.as_deref())?;
        said.birth_date = field(rule.birth_date.as_deref())?
            .map(|d| fhir_date(&d))
            .transpose()?;
        if said.mrn.is_none() && said.accession.is_none() && said.uid.is_none() {
            return Err(Rejection::Unresolvable(
                "the file names no patient or study identifier".into(),
            ));
        }

        let event = rule.event;
        let current = self
            .session
            .engine()
            .current_context_of(self.session.topic())
            .map(|c| Current::from_context(&c.context))
            .unwrap_or_default();
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
            .publish_blocking(&request)
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
