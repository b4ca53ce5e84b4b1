//! What a bridge tells the outside: its link state on the board (for the UI and the links) and
//! its reports (for the audit trail).

use lockstep_hub::LinkState;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

/// What a bridge reports, besides its link state on the board.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BridgeReport {
    /// Its link state became this.
    Link(LinkState),
    /// It launched its app or wrote a file for it.
    Acted,
    /// It refused something: a file, an identifier, a context it cannot render.
    Rejected,
}

/// One report of one bridge, for the audit trail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    pub topic: Arc<str>,
    pub bridge: String,
    pub kind: BridgeReport,
    /// Plain words; may name a patient, so it stays out of info-level logs.
    pub detail: String,
}

/// Where the bridges' reports go (the agent's audit trail). Called on the bridge's task, in
/// the order the reports happen: it must only queue, never wait.
pub type Reporter = Arc<dyn Fn(&Report) + Send + Sync>;

/// What kind of bridge it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BridgeKind {
    Launch,
    Folder,
    Ccow,
}

/// One bridge as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeStatus {
    pub name: String,
    pub kind: BridgeKind,
    pub state: LinkState,
    /// Why, in plain words (never a patient identifier).
    pub detail: String,
    /// The applications it brings into the session, each with its own link state (a CCOW
    /// bridge's participants); none for a bridge that stands for one app.
    pub apps: Vec<AppStatus>,
}

/// An application a bridge brings into the session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppStatus {
    pub name: String,
    pub state: LinkState,
    pub detail: String,
}

/// The link states of every bridge, shared by the supervisor and the bridges' sessions.
#[derive(Clone)]
pub(crate) struct Board {
    tx: Arc<watch::Sender<Vec<BridgeStatus>>>,
}

impl Board {
    pub(crate) fn new() -> Self {
        Board {
            tx: Arc::new(watch::channel(Vec::new()).0),
        }
    }

    pub(crate) fn statuses(&self) -> Vec<BridgeStatus> {
        self.tx.borrow().clone()
    }

    pub(crate) fn watch(&self) -> watch::Receiver<Vec<BridgeStatus>> {
        self.tx.subscribe()
    }

    pub(crate) fn add(&self, name: &str, kind: BridgeKind, state: LinkState, detail: &str) {
        self.tx.send_modify(|all| {
            all.retain(|s| s.name != name);
            all.push(BridgeStatus {
                name: name.to_owned(),
                kind,
                state,
                detail: detail.to_owned(),
                apps: Vec::new(),
            });
        });
    }

    /// Sets (adding it if new) the link state of an application bridge `bridge` brings in.
    pub(crate) fn set_app(&self, bridge: &str, app: &str, state: LinkState, detail: &str) {
        self.tx.send_if_modified(|all| {
            let Some(status) = all.iter_mut().find(|s| s.name == bridge) else {
                return false;
            };
            let new = AppStatus {
                name: app.to_owned(),
                state,
                detail: detail.to_owned(),
            };
            match status.apps.iter_mut().find(|a| a.name == app) {
                Some(known) if *known == new => false,
                Some(known) => {
                    *known = new;
                    true
                }
                None => {
                    status.apps.push(new);
                    true
                }
            }
        });
    }

    /// Removes an application from bridge `bridge`'s list.
    pub(crate) fn remove_app(&self, bridge: &str, app: &str) {
        self.tx.send_if_modified(|all| {
            let Some(status) = all.iter_mut().find(|s| s.name == bridge) else {
                return false;
            };
            let before = status.apps.len();
            status.apps.retain(|a| a.name != app);
            status.apps.len() != before
        });
    }

    /// Updates a bridge's state; true when the state itself changed.
    pub(crate) fn set(&self, name: &str, state: LinkState, detail: &str) -> bool {
        let mut changed = false;
        self.tx.send_if_modified(|all| {
            let Some(status) = all.iter_mut().find(|s| s.name == name) else {
                return false;
            };
            changed = status.state != state;
            let modified = changed || status.detail != detail;
            status.state = state;
            status.detail = detail.to_owned();
            modified
        });
        changed
    }

    pub(crate) fn remove(&self, name: &str) {
        self.tx.send_if_modified(|all| {
            let before = all.len();
            all.retain(|s| s.name != name);
            all.len() != before
        });
    }
}
