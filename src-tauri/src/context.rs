//! Pushes every change of the shared context to the tray and to any open window.

use lockstep_agent::AgentHandle;
use lockstep_fhircast::summary::ContextSummary;
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::watch;

use crate::{tray, view::CurrentContext};

/// The event the window listens to; its payload is a [`CurrentContext`].
pub const CHANGED_EVENT: &str = "context-changed";

/// Follows the agent's context for as long as the agent runs.
///
/// A watch channel only keeps the latest value, so a burst of changes while the tray is busy
/// lands as the newest context, never as a queue of stale ones replayed late.
pub fn forward_changes(app: AppHandle, mut context: watch::Receiver<Option<ContextSummary>>) {
    tauri::async_runtime::spawn(async move {
        loop {
            let summary = context.borrow_and_update().clone();
            present(&app, summary.as_ref());
            if context.changed().await.is_err() {
                tracing::debug!("the agent closed its context channel");
                break;
            }
        }
    });
}

fn present(app: &AppHandle, summary: Option<&ContextSummary>) {
    let hub_url = app.state::<AgentHandle>().hub_url();
    let view = CurrentContext::new(hub_url, summary);
    tray::show_context(app, &view);
    if let Err(error) = app.emit(CHANGED_EVENT, &view) {
        tracing::warn!("cannot send the context to the window: {error}");
    }
}
