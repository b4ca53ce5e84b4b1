//! Each app's and each bridge's link as the window and the tray show it, kept on the engine's
//! decisions and the bridges' reports.

use crate::desktop::{Desktop, now_iso};
use lockstep_hub::engine::BridgeReport;
use lockstep_hub::{EngineEvent, LinkState, SubscriberInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::broadcast;

/// Whether a link is an app's own subscription or a bridge for an app that speaks no FHIRcast.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    App,
    Bridge,
}

/// One app (or bridge) in the session and how it keeps up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    pub name: String,
    pub client_id: String,
    pub kind: LinkKind,
    pub state: LinkState,
    /// The last SyncError about it, or why it is in this state, in plain words.
    pub detail: Option<String>,
    /// When it entered this state (RFC 3339).
    pub since: String,
    /// Whether this link is a sync problem the clinician must see.
    pub problem: bool,
}

type Links = BTreeMap<(String, String), LinkView>;

/// Keeps the link list on the engine's decisions.
pub(crate) async fn follow_links(
    desktop: Arc<Desktop>,
    mut events: broadcast::Receiver<EngineEvent>,
) {
    let mut links = Links::new();
    for (info, state) in desktop.engine.subscribers(&desktop.topic) {
        update(&mut links, &info, state, None);
    }
    publish(&desktop, &links);
    loop {
        match events.recv().await {
            Ok(EngineEvent::Link {
                subscriber,
                state,
                detail,
            }) if subscriber.topic == desktop.topic => {
                update(&mut links, &subscriber, state, detail);
            }
            Ok(EngineEvent::SyncError {
                topic,
                about,
                diagnostics,
                ..
            }) if topic == desktop.topic => {
                for link in links.values_mut().filter(|l| l.name == about) {
                    link.detail = Some(diagnostics.clone());
                    link.problem = !link.state.is_following();
                }
            }
            Ok(EngineEvent::Bridge {
                topic,
                bridge,
                report: BridgeReport::Link(state),
                detail,
            }) if topic == desktop.topic => bridge_link(&mut links, &bridge, state, detail),
            Ok(EngineEvent::Paused { .. }) => {}
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(_)) => {
                // Missed some: start again from what the engine holds now.
                links.retain(|_, l| matches!(l.state, LinkState::Gone(_)));
                for (info, state) in desktop.engine.subscribers(&desktop.topic) {
                    update(&mut links, &info, state, None);
                }
            }
            Err(broadcast::error::RecvError::Closed) => return,
        }
        publish(&desktop, &links);
    }
}

fn publish(desktop: &Desktop, links: &Links) {
    let list: Vec<LinkView> = links.values().cloned().collect();
    desktop.links.send_if_modified(|current| {
        let changed = *current != list;
        *current = list;
        changed
    });
    desktop.refresh_status();
}

fn update(links: &mut Links, info: &SubscriberInfo, state: LinkState, detail: Option<String>) {
    // A bridge is listed with its own link state (`bridge_link`), not its subscription's.
    if info
        .client_id
        .starts_with(lockstep_bridges::CLIENT_ID_PREFIX)
    {
        return;
    }
    let key = (info.client_id.clone(), info.name.clone());
    let previous = links.get(&key);
    // A goodbye after a SyncError stays a problem; a recovery clears it.
    let problem = match state {
        LinkState::Gone(_) => state.is_problem() || previous.is_some_and(|p| p.problem),
        _ => state.is_problem(),
    };
    let detail = match state {
        LinkState::Following | LinkState::FollowingUnacknowledged | LinkState::Pending => None,
        _ => detail.or_else(|| previous.and_then(|p| p.detail.clone())),
    };
    links.insert(
        key,
        LinkView {
            name: info.name.clone(),
            client_id: info.client_id.clone(),
            kind: LinkKind::App,
            state,
            detail,
            since: now_iso(),
            problem,
        },
    );
}

/// A bridge, with the link state it reports: it says more than its subscription would (a
/// launch is `unconfirmed`, a refused file `refused`, a stopped bridge `off`).
fn bridge_link(links: &mut Links, name: &str, state: LinkState, detail: String) {
    let client_id = format!("{}{name}", lockstep_bridges::CLIENT_ID_PREFIX);
    links.insert(
        (client_id.clone(), name.to_owned()),
        LinkView {
            name: name.to_owned(),
            client_id,
            kind: LinkKind::Bridge,
            state,
            detail: Some(detail).filter(|d| !d.is_empty()),
            since: now_iso(),
            problem: state.is_problem(),
        },
    );
}
