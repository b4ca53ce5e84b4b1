//! Each app's and each bridge's link as the window and the tray show it, kept on the engine's
//! decisions and the bridges' board.

use crate::desktop::Desktop;
use crate::upstream::{UPSTREAM_CLIENT_ID, UpstreamStatus};
use lockstep_bridges::BridgeStatus;
use lockstep_hub::clock::now_iso;
use lockstep_hub::{EngineEvent, LinkState, SubscriberInfo};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::sync::{broadcast, watch};

/// Whether a link is an app's own subscription, a bridge for an app that speaks no FHIRcast,
/// or the enterprise link to the site's hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LinkKind {
    App,
    Bridge,
    Upstream,
}

/// One app (or bridge) in the session and how it keeps up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LinkView {
    /// The registered name (an app's client's, or the bridge's).
    pub name: String,
    /// The name the app gave itself, where it differs from the registered one.
    pub own_name: Option<String>,
    /// The bridge it joins the session through (a CCOW application's), if any.
    pub via: Option<String>,
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

/// Keeps the link list on the engine's decisions and the bridges' link states.
pub(crate) async fn follow_links(
    desktop: Arc<Desktop>,
    mut events: broadcast::Receiver<EngineEvent>,
    mut bridges: watch::Receiver<Vec<BridgeStatus>>,
    upstream: Option<watch::Receiver<UpstreamStatus>>,
) {
    let mut links = Links::new();
    for (info, state) in desktop.engine.subscribers(&desktop.topic) {
        update(&mut links, &info, state, None);
    }
    sync_bridges(&mut links, &bridges.borrow_and_update());
    let (mut upstream, mut upstream_running) = match upstream {
        Some(watch) => (watch, true),
        None => (watch::channel(UpstreamStatus::default()).1, false),
    };
    if upstream_running {
        sync_upstream(&mut links, &upstream.borrow_and_update());
    }
    publish(&desktop, &links);
    let mut bridges_running = true;
    loop {
        let event = tokio::select! {
            event = events.recv() => event,
            changed = upstream.changed(), if upstream_running => {
                match changed {
                    Ok(()) => {
                        sync_upstream(&mut links, &upstream.borrow_and_update());
                        publish(&desktop, &links);
                    }
                    Err(_) => upstream_running = false,
                }
                continue;
            }
            changed = bridges.changed(), if bridges_running => {
                match changed {
                    Ok(()) => {
                        sync_bridges(&mut links, &bridges.borrow_and_update());
                        publish(&desktop, &links);
                    }
                    // The bridges are gone (the agent is stopping): the apps still count.
                    Err(_) => bridges_running = false,
                }
                continue;
            }
        };
        match event {
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
                subscriber,
                diagnostics,
                ..
            }) if topic == desktop.topic => {
                // About a subscriber the hub dropped or heard refuse; else posted by an app
                // about itself.
                let about = |(key, link): &(&(String, String), &mut LinkView)| match &subscriber {
                    Some(info) => **key == key_of(info),
                    None => link.kind == LinkKind::App && link.name == about,
                };
                for (_, link) in links.iter_mut().filter(|entry| about(entry)) {
                    link.detail = Some(diagnostics.clone());
                    link.problem = !link.state.is_following();
                }
            }
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
    let key = key_of(info);
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
            name: info.registered_name.clone(),
            own_name: info.other_name().map(str::to_owned),
            via: None,
            client_id: info.client_id.clone(),
            kind: LinkKind::App,
            state,
            detail,
            since: now_iso(),
            problem,
        },
    );
}

/// The enterprise link, listed first-class beside the apps: a link down is a sync problem.
fn sync_upstream(links: &mut Links, status: &UpstreamStatus) {
    let key = (UPSTREAM_CLIENT_ID.to_owned(), status.site.clone());
    let detail = Some(status.detail.clone()).filter(|d| !d.is_empty());
    links.insert(
        key,
        LinkView {
            name: status.site.clone(),
            own_name: None,
            via: None,
            client_id: UPSTREAM_CLIENT_ID.to_owned(),
            kind: LinkKind::Upstream,
            state: status.state,
            detail,
            since: status.since.clone(),
            problem: !status.state.is_following(),
        },
    );
}

/// One entry per subscription an app holds: a client may hold several, told apart by the names
/// they give themselves.
fn key_of(info: &SubscriberInfo) -> (String, String) {
    (info.client_id.clone(), info.spec_name().to_owned())
}

/// The bridges, with the link states they report: they say more than their subscriptions
/// would (a launch is `unconfirmed`, a refused file `refused`, a stopped bridge `off`). The
/// applications a bridge brings in (a CCOW bridge's participants) are listed as apps of their
/// own, each with its link state. A bridge no longer configured leaves the list, and so do its
/// applications.
fn sync_bridges(links: &mut Links, bridges: &[BridgeStatus]) {
    links.retain(|(_, name), link| match (&link.kind, &link.via) {
        (LinkKind::Bridge, _) => bridges.iter().any(|b| b.name == *name),
        (LinkKind::App, Some(via)) => bridges
            .iter()
            .any(|b| b.name == *via && b.apps.iter().any(|a| a.name == link.name)),
        (LinkKind::App, None) | (LinkKind::Upstream, _) => true,
    });
    for bridge in bridges {
        let client_id = format!("{}{}", lockstep_bridges::CLIENT_ID_PREFIX, bridge.name);
        let mut entries = vec![(
            (client_id.clone(), bridge.name.clone()),
            LinkKind::Bridge,
            None,
            bridge.name.clone(),
            bridge.state,
            bridge.detail.clone(),
        )];
        for app in &bridge.apps {
            entries.push((
                (client_id.clone(), format!("{}/{}", bridge.name, app.name)),
                LinkKind::App,
                Some(bridge.name.clone()),
                app.name.clone(),
                app.state,
                app.detail.clone(),
            ));
        }
        for (key, kind, via, name, state, detail) in entries {
            let detail = Some(detail).filter(|d| !d.is_empty());
            if links
                .get(&key)
                .is_some_and(|l| l.state == state && l.detail == detail)
            {
                continue;
            }
            links.insert(
                key.clone(),
                LinkView {
                    name,
                    own_name: None,
                    via,
                    client_id: key.0,
                    kind,
                    state,
                    detail,
                    since: now_iso(),
                    problem: state.is_problem(),
                },
            );
        }
    }
}
