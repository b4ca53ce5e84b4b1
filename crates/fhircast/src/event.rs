//! The STU3 event catalogue: every event the hub supports, its context keys and their profiles.

use std::fmt;

/// What an event does to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// `*-open`: sets the current context (and, for anchors, starts a content session).
    Open,
    /// `*-close`: ends a context opened before.
    Close,
    /// `*-update`: changes the content of an anchor context (content sharing).
    Update,
    /// `*-select`: selects content inside the current anchor context.
    Select,
    /// `SyncError`, `UserLogout`, `UserHibernate`: not about a context.
    Infrastructure,
}

/// How a context entry carries its value: `{"key": .., "resource": {..}}` or `{"key": .., "reference": {..}}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    Resource,
    Reference,
}

impl ValueKind {
    /// The member name that holds the value in a context entry.
    pub fn member(self) -> &'static str {
        match self {
            ValueKind::Resource => "resource",
            ValueKind::Reference => "reference",
        }
    }
}

/// One context key of an event, with the fields its profile requires.
#[derive(Debug, PartialEq, Eq)]
pub struct KeySpec {
    pub key: &'static str,
    pub resource_type: &'static str,
    pub value: ValueKind,
    /// Minimum occurrences (0 or 1).
    pub min: usize,
    /// Maximum occurrences; `None` is unbounded.
    pub max: Option<usize>,
    /// Top-level fields the profile requires (1..1 or 1..*) on the resource.
    pub required_fields: &'static [&'static str],
    /// Alternatives of which at least one must be present (profile invariants such as
    /// `business-identifier`: `identifier.exists() or basedOn.exists()`).
    pub one_of: &'static [&'static str],
}

/// One event of the catalogue.
#[derive(Debug, PartialEq, Eq)]
pub struct EventSpec {
    /// The canonical (Upper-Camel) spelling, used on every frame the hub sends.
    pub name: &'static str,
    pub kind: EventKind,
    /// The resource type whose context this event opens, closes, updates or selects in.
    pub anchor: Option<&'static str>,
    pub keys: &'static [KeySpec],
}

impl EventSpec {
    /// Looks an event up by name, case-insensitively (spec 2-4, 2-6).
    pub fn lookup(name: &str) -> Option<&'static EventSpec> {
        CATALOGUE
            .iter()
            .find(|spec| spec.name.eq_ignore_ascii_case(name))
    }

    /// Every supported event, in catalogue order (what `eventsSupported` lists).
    pub fn all() -> &'static [EventSpec] {
        CATALOGUE
    }

    pub fn key(&self, key: &str) -> Option<&'static KeySpec> {
        self.keys.iter().find(|k| k.key == key)
    }

    /// The `*-open` event for this event's anchor (e.g. `Patient-open` for `Patient-close`).
    pub fn matching_open(&self) -> Option<&'static EventSpec> {
        let anchor = self.anchor?;
        CATALOGUE
            .iter()
            .find(|spec| spec.kind == EventKind::Open && spec.anchor == Some(anchor))
    }

    /// The context key that holds this event's anchor resource (`patient`, `study`, `report`, ...).
    pub fn anchor_key(&self) -> Option<&'static str> {
        let anchor = self.anchor?;
        self.keys
            .iter()
            .find(|k| k.resource_type == anchor)
            .map(|k| k.key)
    }
}

impl fmt::Display for EventSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name)
    }
}

const fn key(
    key: &'static str,
    resource_type: &'static str,
    min: usize,
    max: Option<usize>,
    required_fields: &'static [&'static str],
) -> KeySpec {
    KeySpec {
        key,
        resource_type,
        value: ValueKind::Resource,
        min,
        max,
        required_fields,
        one_of: &[],
    }
}

const fn reference(
    key: &'static str,
    resource_type: &'static str,
    min: usize,
    max: Option<usize>,
) -> KeySpec {
    KeySpec {
        key,
        resource_type,
        value: ValueKind::Reference,
        min,
        max,
        required_fields: &[],
        one_of: &[],
    }
}

// Profiles (input/fsh of the spec): open profiles ask for identifiers, close profiles only for
// what is needed to find the context again. A patient always needs an identifier when a
// context is opened: it is what every app checks the patient's identity against.
const PATIENT_OPEN: &[&str] = &["id", "identifier"];
const PATIENT_CLOSE: &[&str] = &["id"];
const ENCOUNTER_OPEN: &[&str] = &["id", "identifier", "status", "class", "subject"];
const ENCOUNTER_CLOSE: &[&str] = &["id", "status", "class", "subject"];
const STUDY_OPEN: &[&str] = &["id", "identifier", "status", "subject"];
const STUDY_CLOSE: &[&str] = &["id", "status", "subject"];
const REPORT_OPEN: &[&str] = &["id", "status", "subject"];
const REPORT_CLOSE: &[&str] = &["id", "subject"];
const ID_ONLY: &[&str] = &["id"];
const ONE: Option<usize> = Some(1);

static CATALOGUE: &[EventSpec] = &[
    EventSpec {
        name: "Patient-open",
        kind: EventKind::Open,
        anchor: Some("Patient"),
        keys: &[key("patient", "Patient", 1, ONE, PATIENT_OPEN)],
    },
    EventSpec {
        name: "Patient-close",
        kind: EventKind::Close,
        anchor: Some("Patient"),
        keys: &[key("patient", "Patient", 1, ONE, PATIENT_CLOSE)],
    },
    EventSpec {
        name: "Encounter-open",
        kind: EventKind::Open,
        anchor: Some("Encounter"),
        keys: &[
            key("encounter", "Encounter", 1, ONE, ENCOUNTER_OPEN),
            key("patient", "Patient", 1, ONE, PATIENT_OPEN),
        ],
    },
    EventSpec {
        name: "Encounter-close",
        kind: EventKind::Close,
        anchor: Some("Encounter"),
        keys: &[
            key("encounter", "Encounter", 1, ONE, ENCOUNTER_CLOSE),
            key("patient", "Patient", 1, ONE, PATIENT_CLOSE),
        ],
    },
    EventSpec {
        name: "ImagingStudy-open",
        kind: EventKind::Open,
        anchor: Some("ImagingStudy"),
        keys: &[
            key("study", "ImagingStudy", 1, ONE, STUDY_OPEN),
            key("encounter", "Encounter", 0, ONE, ID_ONLY),
            key("patient", "Patient", 0, ONE, PATIENT_OPEN),
        ],
    },
    EventSpec {
        name: "ImagingStudy-close",
        kind: EventKind::Close,
        anchor: Some("ImagingStudy"),
        keys: &[
            key("study", "ImagingStudy", 1, ONE, STUDY_CLOSE),
            key("encounter", "Encounter", 0, ONE, ID_ONLY),
            key("patient", "Patient", 0, ONE, PATIENT_CLOSE),
        ],
    },
    EventSpec {
        name: "DiagnosticReport-open",
        kind: EventKind::Open,
        anchor: Some("DiagnosticReport"),
        keys: &[
            KeySpec {
                one_of: &["identifier", "basedOn"],
                ..key("report", "DiagnosticReport", 1, ONE, REPORT_OPEN)
            },
            key("encounter", "Encounter", 0, ONE, ID_ONLY),
            key("study", "ImagingStudy", 0, None, ID_ONLY),
            key("patient", "Patient", 1, ONE, PATIENT_OPEN),
        ],
    },
    EventSpec {
        name: "DiagnosticReport-close",
        kind: EventKind::Close,
        anchor: Some("DiagnosticReport"),
        keys: &[
            key("report", "DiagnosticReport", 1, ONE, REPORT_CLOSE),
            key("encounter", "Encounter", 0, ONE, ID_ONLY),
            key("study", "ImagingStudy", 0, None, ID_ONLY),
            key("patient", "Patient", 1, ONE, PATIENT_CLOSE),
        ],
    },
    EventSpec {
        name: "DiagnosticReport-update",
        kind: EventKind::Update,
        anchor: Some("DiagnosticReport"),
        keys: &[
            reference("report", "DiagnosticReport", 1, ONE),
            reference("patient", "Patient", 0, ONE),
            key("updates", "Bundle", 1, ONE, &["type"]),
        ],
    },
    EventSpec {
        name: "DiagnosticReport-select",
        kind: EventKind::Select,
        anchor: Some("DiagnosticReport"),
        keys: &[
            reference("report", "DiagnosticReport", 1, ONE),
            reference("patient", "Patient", 0, ONE),
            // 1..* in the profile, yet an empty selection means "clear" (spec §12.12).
            KeySpec {
                resource_type: "",
                ..reference("select", "", 0, None)
            },
        ],
    },
    EventSpec {
        name: "Home-open",
        kind: EventKind::Infrastructure,
        anchor: None,
        keys: &[],
    },
    EventSpec {
        name: "UserLogout",
        kind: EventKind::Infrastructure,
        anchor: None,
        keys: &[key("parameters", "Parameters", 1, ONE, &["parameter"])],
    },
    EventSpec {
        name: "UserHibernate",
        kind: EventKind::Infrastructure,
        anchor: None,
        keys: &[key("parameters", "Parameters", 1, ONE, &["parameter"])],
    },
    EventSpec {
        name: "SyncError",
        kind: EventKind::Infrastructure,
        anchor: None,
        keys: &[key(
            "operationoutcome",
            "OperationOutcome",
            1,
            ONE,
            &["issue"],
        )],
    },
];

/// The name of the SyncError event, the one event the hub itself generates.
pub const SYNC_ERROR: &str = "SyncError";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_is_case_insensitive_and_canonical() {
        assert_eq!(
            EventSpec::lookup("patient-open").unwrap().name,
            "Patient-open"
        );
        assert_eq!(EventSpec::lookup("SYNCERROR").unwrap().name, "SyncError");
        assert_eq!(EventSpec::lookup("userLogout").unwrap().name, "UserLogout");
        assert!(EventSpec::lookup("heartbeat").is_none());
        assert!(EventSpec::lookup("Patient-*").is_none());
    }

    #[test]
    fn close_finds_its_open_and_anchor_key() {
        let close = EventSpec::lookup("ImagingStudy-close").unwrap();
        assert_eq!(close.matching_open().unwrap().name, "ImagingStudy-open");
        assert_eq!(close.anchor_key(), Some("study"));
        let report = EventSpec::lookup("DiagnosticReport-update").unwrap();
        assert_eq!(report.anchor_key(), Some("report"));
        assert_eq!(EventSpec::lookup("Home-open").unwrap().anchor_key(), None);
    }

    #[test]
    fn every_anchor_event_names_its_anchor_key() {
        for spec in EventSpec::all().iter().filter(|s| s.anchor.is_some()) {
            assert!(
                spec.anchor_key().is_some(),
                "{} has no anchor key",
                spec.name
            );
        }
    }
}
