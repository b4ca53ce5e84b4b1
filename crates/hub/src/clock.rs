//! Wall-clock time as FHIRcast writes it: ISO 8601 in UTC.

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Now, as FHIRcast timestamps, history and link states write it.
pub fn now_iso() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}
