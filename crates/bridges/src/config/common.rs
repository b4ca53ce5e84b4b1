//! What the launch and folder keys share: defaults and the reading of `*-open` event names.

use lockstep_fhircast::{EventKind, EventSpec};

pub(super) fn yes() -> bool {
    true
}

pub(super) fn default_launch_events() -> Vec<String> {
    vec!["ImagingStudy-open".into()]
}

/// Reads event names that must all be `*-open`.
pub(super) fn open_events(names: &[String]) -> Result<Vec<&'static EventSpec>, String> {
    names
        .iter()
        .map(|name| match EventSpec::lookup(name) {
            Some(spec) if spec.kind == EventKind::Open => Ok(spec),
            Some(spec) => Err(format!("`{}` is not an *-open event", spec.name)),
            None => Err(format!("unknown event `{name}`")),
        })
        .collect()
}
