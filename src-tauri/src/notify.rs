//! OS notifications for sync problems: an app refused a change, stopped answering, or went
//! away after a SyncError. On by default; `desktop.notifications` turns them off.

use std::collections::HashSet;
use std::sync::Mutex;

use lockstep_agent::AgentHandle;
use lockstep_agent::LinkView;
use tauri::{AppHandle, Manager};
use tauri_plugin_notification::NotificationExt;

use crate::view::AppLink;

/// The problems already told, so a link that stays in trouble is told once, not on every
/// change elsewhere in the list.
#[derive(Default)]
pub struct Notifier {
    told: Mutex<HashSet<(String, String, String)>>,
}

/// Tells the user about each link that has become a problem since the last call.
pub fn sync_problems(app: &AppHandle, agent: &AgentHandle, links: &[LinkView]) {
    let Some(notifier) = app.try_state::<Notifier>() else {
        return;
    };
    let fresh: Vec<AppLink> = {
        let key = |link: &LinkView| {
            (
                link.client_id.clone(),
                link.name.clone(),
                link.since.clone(),
            )
        };
        let problems: HashSet<_> = links.iter().filter(|l| l.problem).map(key).collect();
        let mut told = notifier.told.lock().unwrap_or_else(|e| e.into_inner());
        // Forget problems that are over, so the set stays small and a relapse is told again.
        told.retain(|problem| problems.contains(problem));
        links
            .iter()
            .filter(|link| link.problem && told.insert(key(link)))
            .map(AppLink::from)
            .collect()
    };
    if fresh.is_empty() || !agent.settings().notifications {
        return;
    }
    for link in fresh {
        let title = match &link.own_name {
            Some(own) => format!("{} (\"{own}\") is out of step", link.name),
            None => format!("{} is out of step", link.name),
        };
        let body = match &link.detail {
            Some(detail) => format!("{}: {detail}", link.state_label),
            None => link.state_label.clone(),
        };
        let app = app.clone();
        // Showing one is a blocking D-Bus call on Linux; keep it off the runtime's threads.
        tauri::async_runtime::spawn_blocking(move || {
            let shown = app
                .notification()
                .builder()
                .title(&title)
                .body(&body)
                .show();
            match shown {
                Ok(()) => tracing::info!("notified: {title}"),
                Err(error) => tracing::warn!("cannot show a notification ({title}): {error}"),
            }
        });
    }
}
