//! `current_context`: the shared context as the window shows it.

use lockstep_agent::AgentHandle;
use tauri::State;

use super::{CommandError, ErrorKind};
use crate::view::CurrentContext;

#[tauri::command]
pub fn current_context(agent: State<'_, AgentHandle>) -> Result<CurrentContext, CommandError> {
    let context = agent.watch_context();
    // A closed channel means the agent is gone; its last value would be stale, and showing a
    // stale patient as current is the one thing this window must never do.
    if context.has_changed().is_err() {
        return Err(CommandError {
            kind: ErrorKind::AgentStopped,
            message: "The agent has stopped; the context is no longer kept in step.".to_owned(),
        });
    }
    let summary = context.borrow();
    Ok(CurrentContext::new(agent.hub_url(), summary.as_ref()))
}
