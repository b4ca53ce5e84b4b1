//! Opening one window from another, and what the About window shows.

use lockstep_agent::AgentHandle;
use serde::Serialize;
use tauri::{AppHandle, State};

use super::CommandError;
use crate::view::display_path;
use crate::window::{self, Kind};

/// Async, so it runs off the main thread (see [`window::open`]).
#[tauri::command]
pub async fn open_window(app: AppHandle, kind: Kind) -> Result<(), CommandError> {
    window::show(&app, kind).map_err(CommandError::failed)
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct About {
    pub version: String,
    pub hub_url: String,
    pub config_file: Option<String>,
    pub log_dir: Option<String>,
    pub database: Option<String>,
}

#[tauri::command]
pub fn about(app: AppHandle, agent: State<'_, AgentHandle>) -> About {
    let settings = agent.settings();
    About {
        version: app.package_info().version.to_string(),
        hub_url: agent.hub_url(),
        config_file: settings.config_file.as_deref().map(display_path),
        log_dir: settings.log_dir.as_deref().map(display_path),
        database: settings.database.as_deref().map(display_path),
    }
}
