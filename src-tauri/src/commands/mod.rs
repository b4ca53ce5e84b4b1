//! The typed commands the pages may invoke, and the error shape they all return. Each window
//! may call only its own (`src-tauri/permissions/`, granted per window in `capabilities/`).

pub mod context;
pub mod history;
pub mod settings;
pub mod windows;

use serde::Serialize;

/// Every command, for `tauri::Builder::invoke_handler`.
pub fn handler() -> impl Fn(tauri::ipc::Invoke) -> bool + Send + Sync + 'static {
    tauri::generate_handler![
        context::current_view,
        context::set_paused,
        context::app_reports,
        history::history_page,
        history::history_detail,
        history::history_reopen,
        history::history_export,
        history::history_choices,
        settings::settings_view,
        settings::add_app,
        settings::remove_app,
        settings::set_setting,
        windows::open_window,
        windows::about,
    ]
}

/// What a command failure looks like to the page: `{ "kind": "...", "message": "..." }`.
/// `kind` is stable for code to branch on; `message` is for people.
#[derive(Debug, thiserror::Error, Serialize)]
#[error("{message}")]
pub struct CommandError {
    pub kind: ErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    /// The agent has shut down, so there is no live state to report.
    AgentStopped,
    /// What the page asked for does not exist (any more).
    NotFound,
    /// The request is not valid (a blank name, a bad scope, a close to reopen).
    Invalid,
    /// Site policy sets this; it cannot be changed here.
    Locked,
    /// The hub refused (it is paused, or the change conflicts).
    Refused,
    /// Something failed that the user cannot fix from here (a disk, the keyring).
    Failed,
}

impl CommandError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn failed(error: impl std::fmt::Display) -> Self {
        Self::new(ErrorKind::Failed, error.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialise_as_kind_and_message() {
        let error = CommandError::new(ErrorKind::AgentStopped, "the agent has stopped");
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"kind": "agent-stopped", "message": "the agent has stopped"})
        );
    }
}
