//! Follows what the agent pushes (context changes, link states, the tray status) and shows each
//! change in the tray, in every open window and, for sync problems, as an OS notification.
//! Nothing polls: each channel wakes this on a change.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use lockstep_agent::{AgentHandle, LastChange};
use tauri::{AppHandle, Emitter, Manager};
use tokio::sync::Notify;

use crate::view::{AppLink, CurrentContext, StatusView};
use crate::{notify, tray};

/// Events the pages listen to; payloads are the view types of the same name.
pub const CONTEXT_CHANGED: &str = "context-changed";
pub const LINKS_CHANGED: &str = "links-changed";
pub const STATUS_CHANGED: &str = "status-changed";
/// A context change was recorded: the history window reloads its newest page.
pub const HISTORY_CHANGED: &str = "history-changed";

/// Set once the event loop has ended: what the agent does while it shuts down (every app
/// told goodbye) is not news to show or notify.
static QUITTING: AtomicBool = AtomicBool::new(false);

/// Stops presenting; called when the app is quitting, before the agent shuts down.
pub fn stop() {
    QUITTING.store(true, Ordering::SeqCst);
}

fn quitting() -> bool {
    QUITTING.load(Ordering::SeqCst)
}

/// The latest context view, for windows opened after the change.
pub struct Presented {
    context: Mutex<CurrentContext>,
}

impl Presented {
    pub fn context(&self) -> CurrentContext {
        self.context
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

pub fn start(app: &AppHandle, agent: &AgentHandle) {
    let first = context_view(agent, agent.watch_context().borrow().change.clone());
    tray::show_context(app, &first);
    app.manage(Presented {
        context: Mutex::new(first),
    });
    app.manage(notify::Notifier::default());
    let recorded = Arc::new(Notify::new());
    tauri::async_runtime::spawn(follow_context(app.clone(), agent.clone(), recorded.clone()));
    tauri::async_runtime::spawn(follow_history(app.clone(), agent.clone(), recorded));
    tauri::async_runtime::spawn(follow_links(app.clone(), agent.clone()));
    tauri::async_runtime::spawn(follow_status(app.clone(), agent.clone()));
}

/// Every accepted change, with who made it. The agent's watch says who and what; the context
/// itself is read from the agent at that moment, so a burst lands as its newest state.
async fn follow_context(app: AppHandle, agent: AgentHandle, recorded: Arc<Notify>) {
    let mut changes = agent.watch_context();
    changes.borrow_and_update();
    while changes.changed().await.is_ok() {
        if quitting() {
            return;
        }
        let change = changes.borrow_and_update().change.clone();
        let view = context_view(&agent, change);
        tray::show_context(&app, &view);
        *app.state::<Presented>()
            .context
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = view.clone();
        emit(&app, CONTEXT_CHANGED, &view);
        recorded.notify_one();
    }
    tracing::debug!("the agent stopped telling context changes");
}

/// Tells the history window once a change is in the database (not when the engine decides,
/// which is a moment earlier), so its reload finds the row. A burst is told once.
async fn follow_history(app: AppHandle, agent: AgentHandle, recorded: Arc<Notify>) {
    loop {
        recorded.notified().await;
        // Told also when the change is not on record: the window shows what history holds
        // (its read commits what is queued).
        let _ = agent.history().writer().flush_history().await;
        if quitting() {
            return;
        }
        emit(&app, HISTORY_CHANGED, ());
    }
}

fn context_view(agent: &AgentHandle, change: Option<LastChange>) -> CurrentContext {
    let current = agent.current_context();
    CurrentContext::new(
        agent.hub_url(),
        current.as_ref().and_then(|c| c.summary.as_ref()),
        current.as_ref().map(|c| c.context.as_str()),
        change,
    )
}

async fn follow_links(app: AppHandle, agent: AgentHandle) {
    let mut links = agent.watch_links();
    while !quitting() {
        let current = links.borrow_and_update().clone();
        notify::sync_problems(&app, &agent, &current);
        let view: Vec<AppLink> = current.iter().map(AppLink::from).collect();
        emit(&app, LINKS_CHANGED, &view);
        if links.changed().await.is_err() {
            return;
        }
    }
}

async fn follow_status(app: AppHandle, agent: AgentHandle) {
    let mut status = agent.watch_status();
    while !quitting() {
        let current = *status.borrow_and_update();
        tray::show_status(&app, current);
        emit(
            &app,
            STATUS_CHANGED,
            StatusView::new(current, agent.history_notice()),
        );
        if status.changed().await.is_err() {
            return;
        }
    }
}

fn emit(app: &AppHandle, event: &str, payload: impl serde::Serialize + Clone) {
    if let Err(error) = app.emit(event, payload) {
        tracing::warn!("cannot send {event} to the windows: {error}");
    }
}
