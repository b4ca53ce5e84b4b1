//! The report in the three forms an integration engineer needs: a table to read, JSON to
//! process, JUnit XML for a CI server.

mod junit;
mod table;

pub use junit::junit;
pub use table::table;

use crate::runner::Report;

/// The report as pretty JSON.
pub fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).unwrap_or_default()
}
