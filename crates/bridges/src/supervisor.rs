//! The supervisor: starts, reloads (by name) and stops the bridges of one topic, each as its own
//! task, restarted with backoff when it fails or panics.

use crate::config::{Ready, ValidBridge, ValidBridges};
use crate::error::BridgeError;
use crate::report::{Board, BridgeStatus, Reporter};
use crate::session::{Services, Session};
use crate::{ccow, folder, launch};
use lockstep_fhircast::EventSpec;
use lockstep_hub::{Engine, LinkState};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

struct Running {
    bridge: ValidBridge,
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
    disabled: Mutex<HashMap<String, ValidBridge>>,
    smart: Option<crate::launch::SmartLauncher>,
}

/// How long a stopping bridge may take before it is aborted.
const STOP_GRACE: Duration = Duration::from_secs(3);
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A bridge that ran this long before failing is not crash-looping: its backoff starts over.
const HEALTHY_RUN: Duration = Duration::from_secs(60);

impl Bridges {
    /// Starts every enabled bridge of `config`; each
    /// bridge's reports go to `reporter`.
    pub async fn start(
        engine: Engine,
        topic: Arc<str>,
        config: &ValidBridges,
        reporter: Reporter,
    ) -> Bridges {
        Self::start_with(engine, topic, config, reporter, None).await
    }

    /// [`Bridges::start`], with SMART apps launched through `smart`'s authorization server.
    pub async fn start_with(
        engine: Engine,
        topic: Arc<str>,
        config: &ValidBridges,
        reporter: Reporter,
        smart: Option<crate::launch::SmartLauncher>,
    ) -> Bridges {
        let bridges = Bridges {
            engine,
            topic,
            smart,
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
        self.board.statuses()
    }

    /// Changes of link state, for the UI (no polling).
    pub fn watch(&self) -> watch::Receiver<Vec<BridgeStatus>> {
        self.board.watch()
    }

    /// Applies a new configuration: bridges are matched by name; a changed one is restarted,
    /// a removed one stopped, a new one started. The hub and unchanged bridges are untouched.
    pub async fn reload(&self, config: &ValidBridges) -> ReloadSummary {
        let wanted: Vec<ValidBridge> = config.iter().cloned().collect();
        let mut summary = ReloadSummary::default();
        let mut running = self.running.lock().await;
        let names: Vec<String> = running.keys().cloned().collect();
        for name in names {
            let keep = wanted.iter().any(|c| {
                c.name() == name && c.enabled() && running[&name].bridge.config() == c.config()
            });
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

    fn spawn(&self, config: ValidBridge) -> Running {
        let (read, write) = events_of(&config);
        self.board.add(
            config.name(),
            config.kind(),
            LinkState::Unconfirmed,
            "starting",
        );
        let services = Services {
            engine: self.engine.clone(),
            topic: self.topic.clone(),
            board: self.board.clone(),
            reporter: self.reporter.clone(),
            smart: self.smart.clone(),
        };
        let session = Session::new(services, config.name(), &read, &write);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(config.clone(), session, stop_rx));
        Running {
            bridge: config,
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
fn events_of(bridge: &ValidBridge) -> (Vec<&'static EventSpec>, Vec<&'static EventSpec>) {
    match bridge.ready() {
        Ready::Launch(launcher) => (launcher.subscribed_events(), Vec::new()),
        Ready::Folder(folder) => {
            let read = folder
                .sides
                .outgoing()
                .map(|o| o.events.clone())
                .unwrap_or_default();
            let write = folder
                .sides
                .incoming()
                .map(|i| i.rules.all().iter().map(|r| r.event).collect())
                .unwrap_or_default();
            (read, write)
        }
        Ready::Ccow(_) => {
            let both = crate::ccow::EVENTS
                .iter()
                .filter_map(|name| EventSpec::lookup(name))
                .collect::<Vec<_>>();
            (both.clone(), both)
        }
    }
}

/// Runs one bridge until told to stop, restarting it with backoff when it fails or panics.
async fn supervise(config: ValidBridge, session: Session, mut stop: watch::Receiver<bool>) {
    let mut backoff = FIRST_BACKOFF;
    loop {
        let started = Instant::now();
        let mut run = tokio::spawn(run_bridge(config.clone(), session.clone(), stop.clone()));
        let result = tokio::select! {
            result = &mut run => Some(result),
            _ = crate::session::stopped(&mut stop) => None,
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
            _ = crate::session::stopped(&mut stop) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    session.set_state(LinkState::Off, "stopped");
}

async fn run_bridge(
    config: ValidBridge,
    session: Session,
    stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    match config.ready() {
        Ready::Launch(launcher) => launch::run(launcher.clone(), session, stop).await,
        Ready::Folder(folder) => folder::run(folder.clone(), session, stop).await,
        Ready::Ccow(ccow) => ccow::run(ccow.clone(), session, stop).await,
    }
}
