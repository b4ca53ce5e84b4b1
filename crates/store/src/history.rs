//! Context history: every context change the hub accepted, searchable and paged newest first.

use crate::clock;
use crate::sql::Filtered;
use lockstep_fhircast::summary::ContextSummary;
use rusqlite::types::Value;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};
use serde::Serialize;
use time::OffsetDateTime;

/// A context change to remember.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryRecord {
    pub at: OffsetDateTime,
    pub topic: String,
    /// The canonical event name (`Patient-open`, `ImagingStudy-close`, `UserLogout`, ...).
    pub event: String,
    /// The notification's `id`.
    pub event_id: String,
    /// The requesting app's registered name.
    pub app: String,
    /// What the anchor showed; `None` for events without context (logout, hibernate).
    /// Its own `event` field is ignored in favour of [`HistoryRecord::event`].
    pub summary: Option<ContextSummary>,
    /// The notification exactly as the hub sent it.
    pub event_json: String,
}

impl HistoryRecord {
    /// A record stamped now, without a summary.
    pub fn new(
        topic: impl Into<String>,
        event: impl Into<String>,
        event_id: impl Into<String>,
        app: impl Into<String>,
        event_json: impl Into<String>,
    ) -> Self {
        HistoryRecord {
            at: OffsetDateTime::now_utc(),
            topic: topic.into(),
            event: event.into(),
            event_id: event_id.into(),
            app: app.into(),
            summary: None,
            event_json: event_json.into(),
        }
    }

    pub fn with_summary(mut self, summary: ContextSummary) -> Self {
        self.summary = Some(summary);
        self
    }

    pub fn at(mut self, at: OffsetDateTime) -> Self {
        self.at = at;
        self
    }
}

/// A stored context change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// Row id: increases with every record, so it orders entries and pages queries.
    pub id: i64,
    /// RFC 3339 UTC, millisecond precision.
    pub at: String,
    pub at_ms: i64,
    pub topic: String,
    pub event: String,
    pub event_id: String,
    pub app: String,
    /// The stored display fields; `summary.event` repeats [`HistoryEntry::event`].
    pub summary: ContextSummary,
    pub event_json: String,
}

/// Which history entries to return, newest first.
///
/// Every filter that is `Some` (and not blank) must match. Page with `before_id`: pass the
/// smallest `id` of the previous page, or use [`HistoryQuery::next_page`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryQuery {
    /// Inclusive.
    pub from: Option<OffsetDateTime>,
    /// Exclusive.
    pub to: Option<OffsetDateTime>,
    /// The patient's identifier value (the MRN), exactly.
    pub patient_identifier: Option<String>,
    /// The study's accession number, exactly.
    pub accession: Option<String>,
    /// The study instance UID, exactly (without `urn:oid:`).
    pub study_uid: Option<String>,
    /// The event name, ignoring case as FHIRcast does.
    pub event: Option<String>,
    /// The requesting app's name, exactly.
    pub app: Option<String>,
    /// Words that must all appear (any case) in the patient name, MRN, accession, study UID or
    /// study description.
    pub text: Option<String>,
    /// Page size; 1..=[`HistoryQuery::MAX_LIMIT`], default 50.
    pub limit: usize,
    /// Only entries older than this row id.
    pub before_id: Option<i64>,
}

impl Default for HistoryQuery {
    fn default() -> Self {
        HistoryQuery {
            from: None,
            to: None,
            patient_identifier: None,
            accession: None,
            study_uid: None,
            event: None,
            app: None,
            text: None,
            limit: HistoryQuery::DEFAULT_LIMIT,
            before_id: None,
        }
    }
}

impl HistoryQuery {
    pub const DEFAULT_LIMIT: usize = 50;
    pub const MAX_LIMIT: usize = 1000;

    /// The query for the page after `page`, or `None` when `page` was the last one.
    pub fn next_page(&self, page: &[HistoryEntry]) -> Option<HistoryQuery> {
        if page.len() < self.effective_limit() {
            return None;
        }
        let last = page.last()?;
        Some(HistoryQuery {
            before_id: Some(last.id),
            ..self.clone()
        })
    }

    fn effective_limit(&self) -> usize {
        self.limit.clamp(1, HistoryQuery::MAX_LIMIT)
    }
}

const COLUMNS: &str = "h.id, h.at_ms, h.at, h.topic, h.event, h.event_id, h.app, \
     h.patient_name, h.patient_birth_date, h.patient_sex, h.patient_mrn, h.patient_mrn_issuer, \
     h.study_accession, h.study_uid, h.study_modality, h.study_description, h.report_status, \
     e.json";

const FROM: &str = "FROM history AS h CROSS JOIN history_event AS e ON e.history_id = h.id";

pub(crate) fn insert(tx: &Transaction<'_>, record: &HistoryRecord) -> rusqlite::Result<i64> {
    let at_ms = clock::unix_millis(record.at);
    let empty = ContextSummary::default();
    let s = record.summary.as_ref().unwrap_or(&empty);
    let mut stmt = tx.prepare_cached(
        "INSERT INTO history (at_ms, at, topic, event, event_id, app, patient_name, \
         patient_birth_date, patient_sex, patient_mrn, patient_mrn_issuer, study_accession, \
         study_uid, study_modality, study_description, report_status, search) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
    )?;
    stmt.execute(params![
        at_ms,
        clock::rfc3339(at_ms),
        record.topic,
        record.event,
        record.event_id,
        record.app,
        s.patient_name,
        s.patient_birth_date,
        s.patient_sex,
        s.patient_mrn,
        s.patient_mrn_issuer,
        s.study_accession,
        s.study_uid,
        s.study_modality,
        s.study_description,
        s.report_status,
        search_text(s),
    ])?;
    let id = tx.last_insert_rowid();
    let mut stmt =
        tx.prepare_cached("INSERT INTO history_event (history_id, json) VALUES (?1, ?2)")?;
    stmt.execute(params![id, record.event_json])?;
    Ok(id)
}

/// What free-text search looks through, lower-cased once at write time.
fn search_text(s: &ContextSummary) -> String {
    [
        &s.patient_name,
        &s.patient_mrn,
        &s.study_accession,
        &s.study_uid,
        &s.study_description,
    ]
    .into_iter()
    .flatten()
    .map(|field| field.to_lowercase())
    // A separator no search word contains keeps a match from spanning two fields.
    .collect::<Vec<_>>()
    .join("\n")
}

pub(crate) fn query(conn: &Connection, q: &HistoryQuery) -> rusqlite::Result<Vec<HistoryEntry>> {
    // The page's ids are picked first, from the small searchable rows alone; only then are
    // the ~50 chosen rows joined to their (large) event JSON. Joining before the ORDER BY
    // would carry every candidate's JSON through the sort.
    let mut page = Filtered::new("SELECT h.id FROM history AS h");
    let mut filter = |clause: &str, value: Value| page.and(clause, [value]);
    if let Some(before) = q.before_id {
        filter("h.id < ?", Value::Integer(before));
    }
    let from = q.from.map(clock::unix_millis);
    let to = q.to.map(clock::unix_millis);
    if from.is_some() || to.is_some() {
        // A leading `+` keeps SQLite off the time index for this query.
        let column = if time_index_pays(conn, from, to, q)? {
            "h.at_ms"
        } else {
            "+h.at_ms"
        };
        if let Some(from) = from {
            filter(&format!("{column} >= ?"), Value::Integer(from));
        }
        if let Some(to) = to {
            filter(&format!("{column} < ?"), Value::Integer(to));
        }
    }
    if let Some(mrn) = given(&q.patient_identifier) {
        filter("h.patient_mrn = ?", Value::Text(mrn.to_owned()));
    }
    if let Some(accession) = given(&q.accession) {
        filter("h.study_accession = ?", Value::Text(accession.to_owned()));
    }
    if let Some(uid) = given(&q.study_uid) {
        let uid = uid.trim_start_matches("urn:oid:");
        filter("h.study_uid = ?", Value::Text(uid.to_owned()));
    }
    if let Some(event) = given(&q.event) {
        filter("h.event = ? COLLATE NOCASE", Value::Text(event.to_owned()));
    }
    if let Some(app) = given(&q.app) {
        filter("h.app = ?", Value::Text(app.to_owned()));
    }
    if let Some(text) = given(&q.text) {
        for word in text.to_lowercase().split_whitespace() {
            filter(
                "h.search LIKE ? ESCAPE '\\'",
                Value::Text(format!("%{}%", escape_like(word))),
            );
        }
    }
    let (sql, args) = page.newest_first("h.id", q.effective_limit());
    // CROSS JOIN pins the join order: the page drives, each row looked up by primary key.
    let sql = format!(
        "SELECT {COLUMNS} FROM ({sql}) AS page \
         CROSS JOIN history AS h ON h.id = page.id \
         CROSS JOIN history_event AS e ON e.history_id = h.id \
         ORDER BY h.id DESC"
    );

    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(rusqlite::params_from_iter(args), entry_from_row)?;
    rows.collect()
}

/// Whether walking the time index (then sorting its rows by id) beats walking the ids down
/// from the top and skipping rows newer than the range.
///
/// SQLite cannot tell without statistics: it takes a two-sided range for a narrow one, and
/// for "this week" sorts the whole table. Three index probes give the answer instead: the
/// first and last row ids inside the range (ids follow time closely), so roughly how many
/// rows the index walk would sort and how many the id walk would skip.
fn time_index_pays(
    conn: &Connection,
    from: Option<i64>,
    to: Option<i64>,
    q: &HistoryQuery,
) -> rusqlite::Result<bool> {
    let probe = |sql: &str, at: i64| -> rusqlite::Result<Option<i64>> {
        conn.prepare_cached(sql)?
            .query_row([at], |r| r.get(0))
            .optional()
    };
    let first = probe(
        "SELECT id FROM history WHERE at_ms >= ?1 ORDER BY at_ms LIMIT 1",
        from.unwrap_or(i64::MIN),
    )?;
    let last = probe(
        "SELECT id FROM history WHERE at_ms < ?1 ORDER BY at_ms DESC LIMIT 1",
        to.unwrap_or(i64::MAX),
    )?;
    let (Some(first), Some(last)) = (first, last) else {
        // Nothing in the range: the index says so at once.
        return Ok(true);
    };
    let newest: i64 = conn
        .prepare_cached("SELECT coalesce(max(id), 0) FROM history")?
        .query_row([], |r| r.get(0))?;
    let top = q.before_id.map_or(newest, |before| before.min(newest));
    let sorted = last.min(top).saturating_sub(first).max(0);
    let skipped = top.saturating_sub(last).max(0);
    Ok(sorted <= skipped.saturating_add(q.effective_limit() as i64))
}

pub(crate) fn get(conn: &Connection, id: i64) -> rusqlite::Result<Option<HistoryEntry>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} {FROM} WHERE h.id = ?1"))?
        .query_row([id], entry_from_row)
        .optional()
}

fn given(filter: &Option<String>) -> Option<&str> {
    filter.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// So that `%` and `_` typed by a person match themselves.
fn escape_like(word: &str) -> String {
    let mut out = String::with_capacity(word.len());
    for c in word.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn entry_from_row(row: &Row<'_>) -> rusqlite::Result<HistoryEntry> {
    let event: String = row.get(4)?;
    Ok(HistoryEntry {
        id: row.get(0)?,
        at_ms: row.get(1)?,
        at: row.get(2)?,
        topic: row.get(3)?,
        event_id: row.get(5)?,
        app: row.get(6)?,
        summary: ContextSummary {
            event: event.clone(),
            patient_name: row.get(7)?,
            patient_birth_date: row.get(8)?,
            patient_sex: row.get(9)?,
            patient_mrn: row.get(10)?,
            patient_mrn_issuer: row.get(11)?,
            study_accession: row.get(12)?,
            study_uid: row.get(13)?,
            study_modality: row.get(14)?,
            study_description: row.get(15)?,
            report_status: row.get(16)?,
        },
        event,
        event_json: row.get(17)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn like_wildcards_are_escaped() {
        assert_eq!(escape_like(r"50%_a\b"), r"50\%\_a\\b");
    }

    #[test]
    fn search_text_skips_absent_fields_and_lowercases() {
        let s = ContextSummary {
            patient_name: Some("MÜLLER, Anna".into()),
            study_accession: Some("A77".into()),
            ..Default::default()
        };
        assert_eq!(search_text(&s), "müller, anna\na77");
    }
}
