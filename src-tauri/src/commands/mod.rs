//! The typed commands the window may invoke, and the error shape they all return.

pub mod context;

use serde::Serialize;

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
    /// The agent has shut down, so there is no live context to report.
    AgentStopped,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_serialise_as_kind_and_message() {
        let error = CommandError {
            kind: ErrorKind::AgentStopped,
            message: "the agent has stopped".to_owned(),
        };
        assert_eq!(
            serde_json::to_value(&error).unwrap(),
            serde_json::json!({"kind": "agent-stopped", "message": "the agent has stopped"})
        );
    }
}
