//! The context-history window: pages of history (newest first, paged by row id so any page of
//! 100,000 rows is as fast as the first), one entry in full with each app's outcome, reopening
//! a past context, and the current view as CSV.

use std::path::Path;

use lockstep_agent::AgentHandle;
use lockstep_agent::history::query_from_params;
use lockstep_agent::history::{self, History, HistoryEntry, HistoryQuery, Outcome, ReopenError};
use lockstep_fhircast::EventSpec;
use lockstep_fhircast::event::SYNC_ERROR;
use serde::{Deserialize, Serialize};
use tauri::{AppHandle, Manager, State};

use super::{CommandError, ErrorKind};

/// The filters as the page holds them; blank fields filter nothing.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HistoryFilter {
    /// Words to find in the patient's name, identifier, accession or study description.
    pub text: Option<String>,
    pub app: Option<String>,
    pub event: Option<String>,
    /// RFC 3339, inclusive (the page sends local midnight).
    pub from: Option<String>,
    /// RFC 3339, exclusive.
    pub to: Option<String>,
    /// The next page: rows older than this row id.
    pub before: Option<i64>,
    pub limit: Option<usize>,
}

impl HistoryFilter {
    /// The agent's own reading of history filters, shared with the HTTP API and `lockstepd`.
    fn query(&self) -> Result<HistoryQuery, CommandError> {
        let before = self.before.map(|id| id.to_string());
        let limit = self.limit.map(|n| n.to_string());
        let params = [
            ("text", self.text.as_deref()),
            ("app", self.app.as_deref()),
            ("event", self.event.as_deref()),
            ("from", self.from.as_deref()),
            ("to", self.to.as_deref()),
            ("before", before.as_deref()),
            ("limit", limit.as_deref()),
        ];
        query_from_params(
            params
                .into_iter()
                .filter_map(|(key, value)| Some((key, value?)))
                .filter(|(_, value)| !value.trim().is_empty()),
        )
        .map_err(|message| CommandError::new(ErrorKind::Invalid, message))
    }
}

/// One history row as the list shows it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryRow {
    pub id: i64,
    /// RFC 3339 UTC; the page groups and shows it in local time.
    pub at: String,
    pub at_ms: i64,
    pub event: String,
    pub app: String,
    pub patient_name: Option<String>,
    pub patient_mrn: Option<String>,
    pub birth_date: Option<String>,
    pub accession: Option<String>,
    pub modality: Option<String>,
    pub description: Option<String>,
    pub report_status: Option<String>,
}

impl From<&HistoryEntry> for HistoryRow {
    fn from(entry: &HistoryEntry) -> Self {
        let s = &entry.summary;
        Self {
            id: entry.id,
            at: entry.at.clone(),
            at_ms: entry.at_ms,
            event: entry.event.clone(),
            app: entry.app.clone(),
            patient_name: s.patient_name.clone(),
            patient_mrn: s.patient_mrn.clone(),
            birth_date: s.patient_birth_date.clone(),
            accession: s.study_accession.clone(),
            modality: s.study_modality.clone(),
            description: s.study_description.clone(),
            report_status: s.report_status.clone(),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryPage {
    pub rows: Vec<HistoryRow>,
    /// Pass as `before` for the next (older) page; `None` on the last page.
    pub next_before: Option<i64>,
}

#[tauri::command]
pub async fn history_page(
    agent: State<'_, AgentHandle>,
    filter: HistoryFilter,
) -> Result<HistoryPage, CommandError> {
    let query = filter.query()?;
    let history = agent.history().clone();
    blocking(move || {
        let entries = history.query(&query).map_err(CommandError::failed)?;
        let next_before = query.next_page(&entries).and_then(|next| next.before_id);
        Ok(HistoryPage {
            rows: entries.iter().map(HistoryRow::from).collect(),
            next_before,
        })
    })
    .await
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryDetail {
    pub row: HistoryRow,
    pub event_id: String,
    /// The notification as the hub sent it, indented for reading.
    pub event_json: String,
    pub outcomes: Vec<Outcome>,
    /// Only an open can be reopened.
    pub can_reopen: bool,
}

#[tauri::command]
pub async fn history_detail(
    agent: State<'_, AgentHandle>,
    id: i64,
) -> Result<HistoryDetail, CommandError> {
    let history = agent.history().clone();
    blocking(move || {
        let detail = history::detail(history.store(), id)
            .map_err(CommandError::failed)?
            .ok_or_else(|| {
                CommandError::new(ErrorKind::NotFound, format!("no history entry {id}"))
            })?;
        Ok(HistoryDetail {
            row: HistoryRow::from(&detail.entry),
            event_id: detail.entry.event_id,
            event_json: detail.event_pretty,
            outcomes: detail.outcomes,
            can_reopen: detail.can_reopen,
        })
    })
    .await
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reopened {
    pub event_id: String,
}

/// Publishes a past open again (the page has asked the user to confirm); audited with who.
#[tauri::command]
pub async fn history_reopen(
    agent: State<'_, AgentHandle>,
    id: i64,
) -> Result<Reopened, CommandError> {
    let history = agent.history().clone();
    let by = desktop_user();
    tracing::info!("history entry {id} reopened from the history window");
    let recorder = history.clone();
    let reopened = blocking(move || {
        history
            .reopen(id, &by)
            .map(|event_id| Reopened { event_id })
            .map_err(|error| {
                let kind = match &error {
                    ReopenError::NotFound(_) => ErrorKind::NotFound,
                    ReopenError::NotAnOpen { .. } | ReopenError::Invalid(_) => ErrorKind::Invalid,
                    ReopenError::Refused(_) => ErrorKind::Refused,
                    ReopenError::Store(_) => ErrorKind::Failed,
                };
                CommandError::new(kind, error.to_string())
            })
    })
    .await?;
    // The page lists history right after: let the new row be there.
    recorder
        .on_record(&reopened.event_id)
        .await
        .map_err(|why| {
            CommandError::new(
                ErrorKind::Failed,
                format!("The context was reopened, but it is not on record: {why}"),
            )
        })?;
    Ok(reopened)
}

/// Who is at the desktop, as the audit trail records it.
fn desktop_user() -> String {
    let user = ["USER", "USERNAME", "LOGNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
        .unwrap_or_else(|| "unknown user".to_owned());
    format!("{user} (desktop)")
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Exported {
    pub path: String,
    pub rows: usize,
}

/// Writes every row the filters match (not only the page on screen) to a CSV file in the
/// user's Downloads folder (else the home folder), and says where.
#[tauri::command]
pub async fn history_export(
    app: AppHandle,
    agent: State<'_, AgentHandle>,
    filter: HistoryFilter,
) -> Result<Exported, CommandError> {
    let query = HistoryFilter {
        before: None,
        ..filter
    }
    .query()?;
    let folder = app
        .path()
        .download_dir()
        .or_else(|_| app.path().home_dir())
        .map_err(CommandError::failed)?;
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!(
            "[year][month][day]-[hour][minute][second]"
        ))
        .unwrap_or_default();
    let path = folder.join(format!("lockstep-history-{stamp}.csv"));
    let history = agent.history().clone();
    blocking(move || {
        let rows = export_to(&history, &query, &path).map_err(CommandError::failed)?;
        tracing::info!("history exported: {rows} rows to {}", path.display());
        Ok(Exported {
            path: path.display().to_string(),
            rows,
        })
    })
    .await
}

fn export_to(history: &History, query: &HistoryQuery, path: &Path) -> anyhow::Result<usize> {
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder)?;
    }
    let file = std::io::BufWriter::new(std::fs::File::create(path)?);
    Ok(history::export_csv(history.store(), query, file)?)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Choices {
    /// The registered apps' names (history names the app that asked for each change).
    pub apps: Vec<String>,
    pub events: Vec<&'static str>,
}

/// What the app and event filters offer.
#[tauri::command]
pub fn history_choices(agent: State<'_, AgentHandle>) -> Choices {
    let mut apps: Vec<String> = agent.apps().into_iter().map(|app| app.name).collect();
    apps.sort();
    apps.dedup();
    let events = EventSpec::all()
        .iter()
        // A SyncError changes no context, so history has none.
        .filter(|spec| spec.name != SYNC_ERROR)
        .map(|spec| spec.name)
        .collect();
    Choices { apps, events }
}

/// Runs SQLite work off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, CommandError> + Send + 'static,
) -> Result<T, CommandError> {
    tauri::async_runtime::spawn_blocking(work)
        .await
        .map_err(CommandError::failed)?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_filters_filter_nothing() {
        let filter = HistoryFilter {
            text: Some("  ".into()),
            app: Some(String::new()),
            before: Some(120),
            limit: Some(100),
            ..HistoryFilter::default()
        };
        let query = filter.query().unwrap();
        assert_eq!(query.text, None);
        assert_eq!(query.app, None);
        assert_eq!(query.before_id, Some(120));
        assert_eq!(query.limit, 100);
    }

    #[test]
    fn a_bad_date_is_an_invalid_filter() {
        let filter = HistoryFilter {
            from: Some("yesterday".into()),
            ..HistoryFilter::default()
        };
        assert_eq!(filter.query().unwrap_err().kind, ErrorKind::Invalid);
    }
}
