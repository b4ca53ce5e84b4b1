//! A validated `[bridges.ccow]`, and the events the bridge carries.

use lockstep_fhircast::EventSpec;
use std::time::Duration;

use crate::config::CcowMode;
use crate::mapping::IdentifierMapping;

/// The events the bridge follows and requests.
pub(crate) const EVENTS: &[&str] = &[
    "Patient-open",
    "Patient-close",
    "ImagingStudy-open",
    "ImagingStudy-close",
];

/// [`EVENTS`], from the catalogue.
pub(crate) fn events() -> Vec<&'static EventSpec> {
    EVENTS
        .iter()
        .filter_map(|name| EventSpec::lookup(name))
        .collect()
}

/// A validated `[bridges.ccow]`, ready to run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcowBridge {
    pub mode: CcowMode,
    pub port: u16,
    pub survey_timeout: Duration,
    pub identifiers: IdentifierMapping,
    pub accession_item: String,
}
