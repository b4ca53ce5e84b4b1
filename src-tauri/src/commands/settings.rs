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

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SettingsPage {
    pub hub_port: u16,
    pub hub_url: String,
    pub log_dir: Option<String>,
    pub database: Option<String>,
    pub config_file: Option<String>,
    pub start_at_login: bool,
    pub notifications: bool,
    /// Which settings site policy sets, and in which file.
    pub locked: Vec<Lock>,
    pub apps: Vec<App>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Lock {
    /// The dotted key (`hub.port`), or `apps` for the list of apps.
    pub key: String,
    pub source: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct App {
    pub client_id: String,
    pub name: String,
    pub scopes: Vec<String>,
    pub secret_in_keyring: bool,
    pub locked_by: Option<String>,
}

impl SettingsPage {
    fn new(settings: SettingsView, apps: Vec<AppView>) -> Self {
        Self {
            hub_port: settings.hub_port,
            hub_url: settings.hub_url,
            log_dir: settings.log_dir.as_deref().map(display_path),
            database: settings.database.as_deref().map(display_path),
            config_file: settings.config_file.as_deref().map(display_path),
            start_at_login: settings.start_at_login,
            notifications: settings.notifications,
            locked: settings
                .locked
                .into_iter()
                .map(|lock| Lock {
                    key: lock.key,
                    source: lock.source,
                })
                .collect(),
            apps: apps
                .into_iter()
                .map(|app| App {
                    client_id: app.client_id,
                    name: app.name,
                    scopes: app.scopes,
                    secret_in_keyring: app.secret_in_keyring,
                    locked_by: app.locked_by,
                })
                .collect(),
        }
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
        autostart::apply(&app, page.start_at_login);
    }
    Ok(page)
}
