//! The settings window: the hub's port, the registered apps (add, remove), the log folder,
//! start at login and notifications, each shown as locked where site policy sets it. The agent
//! checks and stores every change; the shell only passes it on (and keeps the OS's
//! start-at-login entry in step).

use lockstep_agent::AgentHandle;
use lockstep_agent::desktop::{AppView, DesktopError, SettingsView};
use serde::Serialize;
use tauri::{AppHandle, State};

use super::{CommandError, ErrorKind};
use crate::autostart;
use crate::view::display_path;

/// What the settings window shows: the agent's settings view (paths under the home folder
/// written with `~`) and the registered apps.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsPage {
    #[serde(flatten)]
    pub settings: SettingsView,
    pub apps: Vec<AppView>,
}

impl SettingsPage {
    fn new(mut settings: SettingsView, apps: Vec<AppView>) -> Self {
        for path in [
            &mut settings.log_dir,
            &mut settings.database,
            &mut settings.config_file,
        ] {
            *path = path.as_deref().map(display_path);
        }
        Self { settings, apps }
    }
}

fn page(agent: &AgentHandle) -> SettingsPage {
    SettingsPage::new(agent.settings(), agent.apps())
}

fn refused(error: DesktopError) -> CommandError {
    let kind = match &error {
        DesktopError::Locked { .. } => ErrorKind::Locked,
        DesktopError::Invalid(_) => ErrorKind::Invalid,
        DesktopError::UnknownApp(..) => ErrorKind::NotFound,
        _ => ErrorKind::Failed,
    };
    CommandError::new(kind, error.to_string())
}

#[tauri::command]
pub fn settings_view(agent: State<'_, AgentHandle>) -> SettingsPage {
    page(&agent)
}

/// A new app's credentials, shown once: the secret is not kept anywhere the window can read
/// it again.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewAppView {
    pub client_id: String,
    pub client_secret: String,
    pub secret_in_keyring: bool,
    pub settings: SettingsPage,
}

#[tauri::command]
pub async fn add_app(
    agent: State<'_, AgentHandle>,
    name: String,
    scopes: Vec<String>,
) -> Result<NewAppView, CommandError> {
    let added = agent.add_app(&name, scopes).await.map_err(refused)?;
    tracing::info!("app `{}` added from the settings window", added.client_id);
    Ok(NewAppView {
        client_id: added.client_id,
        client_secret: added.client_secret,
        secret_in_keyring: added.secret_in_keyring,
        settings: page(&agent),
    })
}

#[tauri::command]
pub async fn remove_app(
    agent: State<'_, AgentHandle>,
    client_id: String,
) -> Result<SettingsPage, CommandError> {
    agent.remove_app(&client_id).await.map_err(refused)?;
    tracing::info!("app `{client_id}` removed from the settings window");
    Ok(page(&agent))
}

#[tauri::command]
pub async fn set_setting(
    app: AppHandle,
    agent: State<'_, AgentHandle>,
    key: String,
    value: serde_json::Value,
) -> Result<SettingsPage, CommandError> {
    agent.set_setting(&key, value).await.map_err(refused)?;
    let page = page(&agent);
    if key == "desktop.start_at_login" {
        autostart::apply(&app, page.settings.start_at_login);
    }
    Ok(page)
}
