//! Legacy bridges: applications that speak no FHIRcast, brought into the clinician's session
//! both ways.
//!
//! Each bridge joins the session like any app (a subscriber and/or a requester of the engine,
//! under its own name), reports a link state, and runs as its own supervised task: a bridge
//! that fails is reported `broken` and restarted with backoff, and never takes the hub or
//! another bridge down. [`Bridges`] starts, reloads (by name) and stops them with the config.

pub mod ccow;
pub mod config;
pub mod folder;
pub mod launch;
pub mod mapping;
pub mod message;
pub mod session;
pub mod template;
pub mod text;

pub use config::{BridgeConfig, BridgesConfig, ConfigProblem};
pub use lockstep_hub::LinkState;
pub use session::Session;

use lockstep_fhircast::EventSpec;
use lockstep_hub::Engine;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The client id prefix of a bridge's seat in the session (`bridge:<name>`), so listeners can
/// tell a bridge's subscription from an app's.
pub const CLIENT_ID_PREFIX: &str = "bridge:";

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

/// One bridge as the UI shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BridgeStatus {
    pub name: String,
    /// `launch` or `folder`.
    pub kind: &'static str,
    pub state: LinkState,
    /// Why, in plain words (never a patient identifier).
    pub detail: String,
}

/// Why a bridge stopped running (the supervisor restarts it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BridgeError {
    #[error("cannot join the session: {0}")]
    Join(String),
    #[error("the hub refused the request: {0}")]
    Publish(String),
    #[error("{0}")]
    Setup(String),
}

/// The link states of every bridge, shared by the supervisor and the bridges' sessions.
#[derive(Clone)]
pub(crate) struct Board {
    tx: Arc<watch::Sender<Vec<BridgeStatus>>>,
}

impl Board {
    fn new() -> Self {
        Board {
            tx: Arc::new(watch::channel(Vec::new()).0),
        }
    }

    fn add(&self, name: &str, kind: &'static str, state: LinkState, detail: &str) {
        self.tx.send_modify(|all| {
            all.retain(|s| s.name != name);
            all.push(BridgeStatus {
                name: name.to_owned(),
                kind,
                state,
                detail: detail.to_owned(),
            });
        });
    }

    /// Updates a bridge's state; true when the state itself changed.
    fn set(&self, name: &str, state: LinkState, detail: &str) -> bool {
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

    fn remove(&self, name: &str) {
        self.tx.send_if_modified(|all| {
            let before = all.len();
            all.retain(|s| s.name != name);
            all.len() != before
        });
    }
}

struct Running {
    config: BridgeConfig,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// What a reload changed, by bridge name.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadSummary {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
}

/// The running bridges of one topic.
pub struct Bridges {
    engine: Engine,
    topic: Arc<str>,
    board: Board,
    reporter: Reporter,
    running: tokio::sync::Mutex<HashMap<String, Running>>,
    /// Configs of disabled bridges, kept so a reload can tell what changed.
    disabled: Mutex<HashMap<String, BridgeConfig>>,
}

/// How long a stopping bridge may take before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A bridge that ran this long before failing is not crash-looping: its backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl Bridges {
    /// Starts every enabled bridge of `config` (validated beforehand by the agent); each
    /// bridge's reports go to `reporter`.
    pub async fn start(
        engine: Engine,
        topic: Arc<str>,
        config: &BridgesConfig,
        reporter: Reporter,
    ) -> Bridges {
        let bridges = Bridges {
            engine,
            topic,
            board: Board::new(),
            reporter,
            running: tokio::sync::Mutex::new(HashMap::new()),
            disabled: Mutex::new(HashMap::new()),
        };
        bridges.reload(config).await;
        bridges
    }

    /// Every bridge's link state, in configuration order of starting.
    pub fn statuses(&self) -> Vec<BridgeStatus> {
        self.board.tx.borrow().clone()
    }

    /// Changes of link state, for the UI (no polling).
    pub fn watch(&self) -> watch::Receiver<Vec<BridgeStatus>> {
        self.board.tx.subscribe()
    }

    /// Applies a new configuration: bridges are matched by name; a changed one is restarted,
    /// a removed one stopped, a new one started. The hub and unchanged bridges are untouched.
    pub async fn reload(&self, config: &BridgesConfig) -> ReloadSummary {
        let wanted = config.all();
        let mut summary = ReloadSummary::default();
        let mut running = self.running.lock().await;
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .iter()
                .any(|c| c.name() == name && c.enabled() && running[&name].config == *c);
            if keep {
                continue;
            }
            if let Some(bridge) = running.remove(&name) {
                stop(bridge).await;
            }
            if wanted.iter().any(|c| c.name() == name && c.enabled()) {
                summary.restarted.push(name);
            } else if wanted.iter().any(|c| c.name() == name) {
                summary.stopped.push(name);
            } else {
                self.board.remove(&name);
                summary.stopped.push(name);
            }
        }
        let mut disabled = self.disabled.lock();
        disabled.retain(|name, _| {
            let still = wanted.iter().any(|c| c.name() == name && !c.enabled());
            if !still && !wanted.iter().any(|c| c.name() == name) {
                self.board.remove(name);
            }
            still
        });
        for config in wanted {
            let name = config.name().to_owned();
            if !config.enabled() {
                running.remove(&name);
                self.board.add(
                    &name,
                    config.kind(),
                    LinkState::Off,
                    "disabled in the configuration",
                );
                disabled.insert(name, config);
                continue;
            }
            if running.contains_key(&name) {
                continue;
            }
            if !summary.restarted.contains(&name) {
                summary.started.push(name.clone());
            }
            let bridge = self.spawn(config);
            running.insert(name, bridge);
        }
        summary
    }

    /// Stops every bridge (the agent is stopping); each leaves the session cleanly.
    pub async fn stop(&self) {
        let mut running = self.running.lock().await;
        for (_, bridge) in running.drain() {
            stop(bridge).await;
        }
    }

    fn spawn(&self, config: BridgeConfig) -> Running {
        let (read, write) = events_of(&config);
        self.board.add(
            config.name(),
            config.kind(),
            LinkState::Unconfirmed,
            "starting",
        );
        let session = Session::new(
            self.engine.clone(),
            self.topic.clone(),
            config.name(),
            &read,
            &write,
            self.board.clone(),
            self.reporter.clone(),
        );
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(config.clone(), session, stop_rx));
        Running {
            config,
            stop: stop_tx,
            task,
        }
    }
}

async fn stop(bridge: Running) {
    let _ = bridge.stop.send(true);
    let mut task = bridge.task;
    if tokio::time::timeout(STOP_GRACE, &mut task).await.is_err() {
        tracing::warn!("a bridge did not stop in time and was aborted");
        task.abort();
    }
}

/// The events a bridge follows and those it may request.
fn events_of(config: &BridgeConfig) -> (Vec<&'static EventSpec>, Vec<&'static EventSpec>) {
    let lookup = |names: &[String]| -> Vec<&'static EventSpec> {
        names.iter().filter_map(|n| EventSpec::lookup(n)).collect()
    };
    match config {
        BridgeConfig::Launch(c) => (launch::subscribed_events(c), Vec::new()),
        BridgeConfig::Folder(c) => {
            let read = c
                .out
                .as_ref()
                .map(|o| lookup(&o.events))
                .unwrap_or_default();
            let write = c
                .inbound
                .as_ref()
                .map(|i| {
                    i.rules
                        .iter()
                        .filter_map(|r| EventSpec::lookup(&r.event))
                        .collect()
                })
                .unwrap_or_default();
            (read, write)
        }
    }
}

/// Runs one bridge until told to stop, restarting it with backoff when it fails or panics.
async fn supervise(config: BridgeConfig, session: Session, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let mut run = tokio::spawn(run_bridge(config.clone(), session.clone(), stop.clone()));
        let result = tokio::select! {
            result = &mut run => Some(result),
            _ = stopped(&mut stop) => None,
        };
        let result = match result {
            Some(result) => result,
            None => {
                if tokio::time::timeout(STOP_GRACE, &mut run).await.is_err() {
                    run.abort();
                }
                break;
            }
        };
        if *stop.borrow() {
            break;
        }
        let why = match result {
            Ok(Ok(())) => "stopped on its own".to_owned(),
            Ok(Err(e)) => e.to_string(),
            Err(e) if e.is_panic() => "crashed (a bug)".to_owned(),
            Err(_) => "was cancelled".to_owned(),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        tracing::error!(bridge = %session.name(), "bridge failed: {why}");
        session.set_state(
            LinkState::Broken,
            format!("{why}; restarting in {} ms", backoff.as_millis()),
        );
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    session.set_state(LinkState::Off, "stopped");
}

/// Event ids a bridge has handled lately: the replay that follows joining again must not
/// launch or write twice.
#[derive(Default)]
pub(crate) struct RecentIds(std::collections::VecDeque<String>);

impl RecentIds {
    const KEEP: usize = 32;

    /// True the first time an id is seen (and remembers it).
    pub(crate) fn first_time(&mut self, id: &str) -> bool {
        if self.0.iter().any(|seen| seen == id) {
            return false;
        }
        if self.0.len() == Self::KEEP {
            self.0.pop_front();
        }
        self.0.push_back(id.to_owned());
        true
    }
}

/// Resolves once `stop` says so (or its sender is gone). The watch guard is never held across
/// an await, so the futures that use this stay `Send`.
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    loop {
        if *stop.borrow_and_update() {
            return;
        }
        if stop.changed().await.is_err() {
            return;
        }
    }
}

async fn run_bridge(
    config: BridgeConfig,
    session: Session,
    stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    match config {
        BridgeConfig::Launch(c) => launch::run(c, session, stop).await,
        BridgeConfig::Folder(c) => folder::run(c, session, stop).await,
    }
}
