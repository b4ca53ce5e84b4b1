//! The current-context window: the context, the connected apps and the tray's state, and
//! pausing (the same as the tray's Pause following / Resume).

use lockstep_agent::{AgentHandle, AppReport};
use serde::Serialize;
use tauri::State;

use super::{CommandError, ErrorKind};
use crate::present::Presented;
use crate::view::{AppLink, CurrentContext, StatusView};

/// Everything the window shows, in one answer; later changes come as events.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CurrentView {
    pub context: CurrentContext,
    pub links: Vec<AppLink>,
    pub status: StatusView,
}

#[tauri::command]
pub fn current_view(
    agent: State<'_, AgentHandle>,
    presented: State<'_, Presented>,
) -> Result<CurrentView, CommandError> {
    let status = agent.watch_status();
    // A closed channel means the agent is gone; its last value would be stale, and showing a
    // stale patient as current is the one thing this window must never do.
    if status.has_changed().is_err() {
        return Err(CommandError::new(
            ErrorKind::AgentStopped,
            "The agent has stopped; the context is no longer kept in step.",
        ));
    }
    let links = agent
        .watch_links()
        .borrow()
        .iter()
        .map(AppLink::from)
        .collect();
    Ok(CurrentView {
        context: presented.context(),
        links,
        status: StatusView::new(*status.borrow(), agent.history_notice()),
    })
}

/// What the agent observed of each app: the report cards the app detail shows.
#[tauri::command]
pub fn app_reports(agent: State<'_, AgentHandle>) -> Vec<AppReport> {
    agent.app_reports()
}

/// Pauses following (the hub refuses every context change until resumed) or resumes it.
#[tauri::command]
pub fn set_paused(agent: State<'_, AgentHandle>, paused: bool) {
    tracing::info!(
        "{} from the current-context window",
        if paused { "pause" } else { "resume" }
    );
    agent.set_paused(paused);
}
