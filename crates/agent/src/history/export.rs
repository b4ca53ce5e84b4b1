//! History as CSV, for a spreadsheet: every row a query matches (not one page), paged through
//! the store so that a large export holds one page in memory at a time.

use super::HistoryQuery;
use lockstep_store::csv::{Cells, CsvWriter};
use lockstep_store::{Store, StoreError};
use std::io::Write;

/// The export's columns, in order.
pub const EXPORT_COLUMNS: [&str; 12] = [
    "time (UTC)",
    "event",
    "patient",
    "birth date",
    "MRN",
    "accession",
    "modality",
    "study",
    "report status",
    "app",
    "event id",
    "history id",
];

/// Writes every entry `query` matches, newest first, from `query.before_id` on (its `limit` is
/// only the page size). Returns the number of rows written. Blocking (SQLite).
pub fn export_csv(
    store: &Store,
    query: &HistoryQuery,
    out: impl Write,
) -> Result<usize, StoreError> {
    let mut csv = CsvWriter::new(out, Cells::ForSpreadsheets);
    csv.row(EXPORT_COLUMNS)?;
    let mut rows = 0;
    let mut next = Some(HistoryQuery {
        limit: HistoryQuery::MAX_LIMIT,
        ..query.clone()
    });
    while let Some(query) = next {
        let page = store.history(&query)?;
        for entry in &page {
            let s = &entry.summary;
            let id = entry.id.to_string();
            csv.row([
                entry.at.as_str(),
                entry.event.as_str(),
                s.patient_name.as_deref().unwrap_or_default(),
                s.patient_birth_date.as_deref().unwrap_or_default(),
                s.patient_mrn.as_deref().unwrap_or_default(),
                s.study_accession.as_deref().unwrap_or_default(),
                s.study_modality.as_deref().unwrap_or_default(),
                s.study_description.as_deref().unwrap_or_default(),
                s.report_status.as_deref().unwrap_or_default(),
                entry.app.as_str(),
                entry.event_id.as_str(),
                id.as_str(),
            ])?;
        }
        rows += page.len();
        next = query.next_page(&page);
    }
    csv.flush()?;
    Ok(rows)
}
