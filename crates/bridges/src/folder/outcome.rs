//! What became of a file in: handled as a request, ignored, or rejected and why.

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
    pub(super) fn audit(&self) -> String {
        match self {
            Rejection::OtherPatient(detail) => format!("{}: {detail}", self.summary()),
            _ => self.summary(),
        }
    }
}

impl From<crate::legacy::NotBuilt> for Rejection {
    fn from(not_built: crate::legacy::NotBuilt) -> Self {
        match not_built {
            crate::legacy::NotBuilt::OtherPatient(detail) => Rejection::OtherPatient(detail),
            crate::legacy::NotBuilt::Unresolvable(why) => Rejection::Unresolvable(why),
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
