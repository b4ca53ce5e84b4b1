//! The Lockstep agent: everything both binaries share. It loads the configuration, resolves
//! secrets, starts the hub on loopback for the signed-in clinician, and hands the shells a
//! handle to present it.

pub mod audit;
pub mod bridges;
pub mod client;
pub mod config;
pub mod context;
pub mod desktop;
pub mod discovery;
pub mod doctor;
pub mod history;
pub mod links;
pub mod listen;
pub mod logging;
pub mod os_session;
pub mod paths;
pub mod policy;
pub mod report_card;
pub mod secrets;
pub mod upstream;

pub use config::{AppConfig, Config, ConfigError, ConfigSources, EffectiveSetting, SettingOrigin};
pub use context::{ContextNow, LastChange};
pub use links::{LinkKind, LinkView};
/// How an app or a bridge keeps up, from the engine's decision to the window's row.
pub use lockstep_hub::{CurrentContext, LinkEnd, LinkState};
pub use report_card::AppReport;

use desktop::{AppView, Desktop, DesktopError, NewApp, SettingsView, TrayStatus};
use history::History;
use lockstep_fhircast::ScopeSet;
use lockstep_hub::{Authority, ClientRegistration, Engine, HubState};
use secrets::SecretStore;
use std::sync::{Arc, Mutex};
use tokio::sync::{oneshot, watch};
use upstream::Upstream;

/// Why the agent could not start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Listen(#[from] listen::ListenError),
    #[error("app `{client_id}`: the keyring has no secret named `{key}`")]
    MissingSecret { client_id: String, key: String },
    #[error("cannot open the history database: {0}{remedy}", remedy = damage_remedy(.0))]
    History(lockstep_store::StoreError),
    #[error("app `{client_id}`: no client_secret or client_secret_key")]
    NoSecret { client_id: String },
    #[error("app `{client_id}`: {source}")]
    Secret {
        client_id: String,
        source: secrets::SecretError,
    },
}

pub struct Agent;

impl Agent {
    /// Starts the agent with secrets from the OS keyring.
    pub async fn start(config: Config) -> Result<AgentHandle, AgentError> {
        Self::start_with(config, Arc::new(secrets::KeyringStore)).await
    }

    /// Starts the agent: binds the hub on loopback, creates the clinician's topic and serves.
    pub async fn start_with(
        config: Config,
        secrets: Arc<dyn SecretStore>,
    ) -> Result<AgentHandle, AgentError> {
        // The bridges as they will run; the configuration may never have been validated.
        let ready_bridges = config.bridges.validate().map_err(ConfigError::from)?;
        let (clients, upstream_secret) = {
            let (apps, upstream, secrets) = (
                config.apps.clone(),
                config.upstream.clone(),
                secrets.clone(),
            );
            // Keyring calls block (D-Bus, Credential Manager): keep them off the runtime's threads.
            tokio::task::spawn_blocking(move || {
                Ok::<_, AgentError>((
                    resolve_clients(&apps, secrets.as_ref())?,
                    resolve_upstream_secret(&upstream, secrets.as_ref())?,
                ))
            })
            .await
            .map_err(|e| AgentError::Secret {
                client_id: String::new(),
                source: secrets::SecretError(e.to_string()),
            })??
        };
        let settings = config.hub.clone();
        // Loopback unless configured otherwise, and then only with TLS (listen.rs).
        let listen::Bound {
            listeners,
            port,
            tls,
        } = listen::bind(&settings).await?;

        let engine = Engine::new(settings.clone());
        let topic = engine.create_topic();
        let authority = Arc::new(Authority::new(clients, settings.token_lifetime()));
        let history = {
            let (config, engine, topic) = (config.clone(), engine.clone(), topic.clone());
            tokio::task::spawn_blocking(move || History::start(&config, &engine, topic))
                .await
                .map_err(|e| {
                    AgentError::History(lockstep_store::StoreError::Io(std::io::Error::other(e)))
                })?
                .map_err(AgentError::History)?
        };
        let report_cards = Arc::new(report_card::ReportCards::default());
        let observing = report_cards.clone();
        engine.observe(Arc::new(move |event| observing.observe(event)));
        let mut state = HubState::new(engine.clone(), authority.clone(), topic.clone(), port);
        state.tls = tls;
        // The clinician's sign-in to the site, where there is one: its pages are the hub's.
        let sign_in = upstream::SignIn::new(
            &config.upstream,
            upstream_secret,
            &state.origin,
            secrets.clone(),
        );
        state.extension = history
            .routes()
            .merge(report_card::routes(report_cards.clone()));
        if let Some(sign_in) = &sign_in {
            state.extension = state.extension.merge(upstream::routes(sign_in.clone()));
        }
        let recorder = history.clone();
        state.on_record = Some(Arc::new(move |event_id| {
            let recorder = recorder.clone();
            Box::pin(async move { recorder.on_record(&event_id).await })
        }));
        let audit = audit::AuditTrail::new(history.writer().clone());
        state.on_token = Some({
            let audit = audit.clone();
            Arc::new(move |client_id, outcome| audit.token(client_id, outcome))
        });
        state.on_refused = Some({
            let cards = report_cards.clone();
            Arc::new(move |grant, status, why| {
                cards.refused(&grant.client_id, &grant.client_name, status, why)
            })
        });
        let hub_url = state.hub_url();
        let origin = state.origin.to_string();

        let desktop = Desktop::start(
            engine.clone(),
            topic.clone(),
            hub_url.clone(),
            authority.clone(),
            secrets,
            audit.clone(),
            config.clone(),
        );
        let app_links = engine.listen_links();
        tokio::spawn(follow_history(
            history.writer().watch_problem(),
            history.when_unwritable(),
            engine.clone(),
            desktop.clone(),
        ));
        let (context_tx, context_rx) = watch::channel(ContextNow::default());
        engine.observe(context::follow_context(
            topic.clone(),
            context_tx,
            desktop.clone(),
        ));
        // Before the bridges start, so that no change of theirs misses the site's hub.
        let upstream = sign_in.clone().map(|sign_in| {
            Upstream::start(&config.upstream, sign_in, engine.clone(), topic.clone())
        });
        let (signed_out_tx, signed_out) = watch::channel(false);
        if config.desktop.follow_os_session {
            follow_os_session(os_session::Follower {
                engine: engine.clone(),
                topic: topic.clone(),
                resync: upstream.as_ref().map(Upstream::resync_trigger),
                signed_out: signed_out_tx,
            });
        }
        let bridges = Arc::new(
            lockstep_bridges::Bridges::start_with(
                engine.clone(),
                topic.clone(),
                &ready_bridges,
                Arc::new(move |report| audit.bridge(report)),
                Some(lockstep_bridges::launch::SmartLauncher {
                    iss: origin.clone(),
                    register: {
                        let authority = authority.clone();
                        Arc::new(move |context| authority.grants().new_launch(context))
                    },
                }),
            )
            .await,
        );
        tokio::spawn(links::follow_links(
            desktop.clone(),
            app_links,
            bridges.watch(),
            upstream.as_ref().map(Upstream::watch),
        ));

        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (ended_tx, ended_rx) = watch::channel(false);
        tokio::spawn(async move {
            let result = lockstep_hub::serve(listeners, state, async {
                let _ = stop_rx.await;
            })
            .await;
            match result {
                Ok(()) => tracing::info!("hub stopped"),
                Err(e) => tracing::error!("hub stopped with an error: {e}"),
            }
            let _ = ended_tx.send(true);
        });
        tracing::info!(
            "hub ready at {hub_url} ({} app(s) registered)",
            config.apps.len()
        );
        Ok(AgentHandle {
            inner: Arc::new(HandleInner {
                hub_url,
                port,
                topic,
                engine,
                history,
                desktop,
                bridges,
                upstream,
                sign_in,
                signed_out,
                report_cards,
                context: context_rx,
                stop: Mutex::new(Some(stop_tx)),
                ended: ended_rx,
                runtime: tokio::runtime::Handle::current(),
            }),
        })
    }
}

/// Follows the OS session where the platform's watcher is built (see `os_session`).
fn follow_os_session(follower: os_session::Follower) {
    #[cfg(target_os = "linux")]
    os_session::start(Box::new(os_session::DbusWatcher::from_env()), follower);
    #[cfg(windows)]
    os_session::start(Box::new(os_session::windows::WtsWatcher), follower);
    #[cfg(not(any(target_os = "linux", windows)))]
    drop(follower);
}

/// The enterprise link's client secret: inline, from the keyring, or none (the clinician
/// signs in).
fn resolve_upstream_secret(
    upstream: &config::UpstreamConfig,
    secrets: &dyn SecretStore,
) -> Result<Option<String>, AgentError> {
    match (&upstream.client_secret, &upstream.client_secret_key) {
        (Some(secret), _) => Ok(Some(secret.clone())),
        (None, Some(key)) => secrets
            .get(key)
            .map_err(|source| AgentError::Secret {
                client_id: upstream.client_id.clone(),
                source,
            })?
            .map(Some)
            .ok_or_else(|| AgentError::MissingSecret {
                client_id: upstream.client_id.clone(),
                key: key.clone(),
            }),
        (None, None) => Ok(None),
    }
}

fn resolve_clients(
    apps: &[AppConfig],
    secrets: &dyn SecretStore,
) -> Result<Vec<ClientRegistration>, AgentError> {
    apps.iter()
        .map(|app| {
            let client_secret = match (&app.client_secret, &app.client_secret_key) {
                (Some(secret), _) => secret.clone(),
                (None, Some(key)) => secrets
                    .get(key)
                    .map_err(|source| AgentError::Secret {
                        client_id: app.client_id.clone(),
                        source,
                    })?
                    .ok_or_else(|| AgentError::MissingSecret {
                        client_id: app.client_id.clone(),
                        key: key.clone(),
                    })?,
                // A public client (a SMART app with redirect URIs): PKCE instead of a secret.
                (None, None) if !app.redirect_uris.is_empty() => String::new(),
                (None, None) => {
                    return Err(AgentError::NoSecret {
                        client_id: app.client_id.clone(),
                    });
                }
            };
            Ok(ClientRegistration {
                client_id: app.client_id.clone(),
                client_secret,
                // Config::validate has parsed these already.
                scopes: ScopeSet::from_iter_checked(app.scopes.iter().map(String::as_str))
                    .unwrap_or_default(),
                name: app.display_name().to_owned(),
                acknowledges: app.acknowledges,
                redirect_uris: app.redirect_uris.clone(),
            })
        })
        .collect()
}

/// A running agent. Clones share it.
#[derive(Clone)]
pub struct AgentHandle {
    inner: Arc<HandleInner>,
}

struct HandleInner {
    hub_url: String,
    port: u16,
    topic: Arc<str>,
    engine: Engine,
    context: watch::Receiver<ContextNow>,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    /// Becomes true when the server has stopped, for whatever reason.
    ended: watch::Receiver<bool>,
    history: Arc<History>,
    desktop: Arc<Desktop>,
    bridges: Arc<lockstep_bridges::Bridges>,
    /// The enterprise link, where the site has one.
    upstream: Option<upstream::Upstream>,
    /// The clinician's sign-in to the site, where there is a site.
    sign_in: Option<upstream::SignIn>,
    /// Becomes true when the clinician signed out of the OS session.
    signed_out: watch::Receiver<bool>,
    report_cards: Arc<report_card::ReportCards>,
    /// The runtime the agent started on, for tasks started from outside it (the tray's
    /// main thread).
    runtime: tokio::runtime::Handle,
}

impl AgentHandle {
    /// `hub.url`: where apps subscribe and publish.
    pub fn hub_url(&self) -> String {
        self.inner.hub_url.clone()
    }

    /// The port the hub listens on (useful when configured as 0).
    pub fn port(&self) -> u16 {
        self.inner.port
    }

    /// The signed-in clinician's topic.
    pub fn topic(&self) -> String {
        self.inner.topic.to_string()
    }

    /// Context history and the audit trail.
    pub fn history(&self) -> &Arc<History> {
        &self.inner.history
    }

    /// The current context's summary and the change that made it, pushed on every change.
    pub fn watch_context(&self) -> watch::Receiver<ContextNow> {
        self.inner.context.clone()
    }

    /// The session's current context as Get Current Context answers it, read now.
    pub fn current_context(&self) -> Option<CurrentContext> {
        self.inner.engine.current_context_of(&self.inner.topic)
    }

    /// What the agent observed of each app: its report card.
    pub fn app_reports(&self) -> Vec<AppReport> {
        self.inner.report_cards.reports()
    }

    /// Each app's link state, pushed on every change.
    pub fn watch_links(&self) -> watch::Receiver<Vec<LinkView>> {
        self.inner.desktop.watch_links()
    }

    /// What the tray icon shows, pushed on every change.
    pub fn watch_status(&self) -> watch::Receiver<TrayStatus> {
        self.inner.desktop.watch_status()
    }

    /// While history cannot be written: why, and what follows from it, in plain words (the
    /// status is [`TrayStatus::NoHistory`] or [`TrayStatus::SyncWithoutHistory`] meanwhile).
    pub fn history_notice(&self) -> Option<String> {
        self.inner.desktop.history_notice()
    }

    /// Pauses following (the hub refuses context changes, each app told why) or resumes it.
    pub fn set_paused(&self, paused: bool) {
        self.inner.desktop.set_paused(paused);
    }

    pub fn watch_paused(&self) -> watch::Receiver<bool> {
        self.inner.desktop.watch_paused()
    }

    /// The registered apps.
    pub fn apps(&self) -> Vec<AppView> {
        self.inner.desktop.apps()
    }

    /// Registers an app; its secret is returned once.
    pub async fn add_app(&self, name: &str, scopes: Vec<String>) -> Result<NewApp, DesktopError> {
        let (desktop, name) = (self.inner.desktop.clone(), name.to_owned());
        blocking(move || desktop.add_app(&name, scopes)).await
    }

    /// Unregisters an app; its tokens stop working at once.
    pub async fn remove_app(&self, client_id: &str) -> Result<(), DesktopError> {
        let (desktop, client_id) = (self.inner.desktop.clone(), client_id.to_owned());
        blocking(move || desktop.remove_app(&client_id)).await
    }

    pub fn settings(&self) -> SettingsView {
        self.inner.desktop.settings()
    }

    /// Changes one setting (`desktop.start_at_login`, `desktop.notifications`, `hub.port`, ...)
    /// in the user's file; refused when site policy sets it.
    pub async fn set_setting(
        &self,
        key: &str,
        value: serde_json::Value,
    ) -> Result<(), DesktopError> {
        let (desktop, key) = (self.inner.desktop.clone(), key.to_owned());
        blocking(move || desktop.set_setting(&key, value)).await
    }

    /// Stops the hub: every app gets a denial and its socket closed, then the server ends.
    /// Calling it again does nothing.
    /// Publishes where this hub listens in the user's discovery file (see [`discovery`]); the
    /// binaries do, once started (tests' agents do not).
    /// Publishes this agent's hub, and from then on its links, in the user's discovery files.
    pub fn publish_discovery(&self) {
        discovery::publish(&self.inner.hub_url, self.inner.port);
        let mut links = self.inner.desktop.watch_links();
        let mut ended = self.inner.ended.clone();
        self.inner.runtime.spawn(async move {
            loop {
                let current = links.borrow_and_update().clone();
                // Off the runtime's threads: a file write.
                let _ =
                    tokio::task::spawn_blocking(move || discovery::publish_links(&current)).await;
                // At most a few writes a second, however busy the session.
                tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                tokio::select! {
                    changed = links.changed() => if changed.is_err() { break },
                    _ = ended.wait_for(|e| *e) => break,
                }
            }
        });
    }

    pub async fn shutdown(&self) {
        // Bridges leave the session first, while the hub can still take their goodbyes.
        self.inner.bridges.stop().await;
        if let Some(upstream) = &self.inner.upstream {
            upstream.stop();
        }
        let stop = self.inner.stop.lock().ok().and_then(|mut s| s.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        self.stopped().await;
        discovery::withdraw();
        let history = self.inner.history.clone();
        // Draining the writer blocks on the disk.
        let _ = tokio::task::spawn_blocking(move || history.shutdown()).await;
    }

    /// Where the clinician signs in to the site in the browser, and the site's name: `None`
    /// without a site, or where the link signs in with a secret.
    pub fn site_sign_in(&self) -> Option<(String, String)> {
        let sign_in = self.inner.sign_in.as_ref().filter(|s| s.in_the_browser())?;
        let origin = self.hub_url();
        let origin = origin
            .strip_suffix(lockstep_hub::server::HUB_PATH)
            .unwrap_or(&origin);
        Some((
            sign_in.site().to_owned(),
            format!("{origin}{}", upstream::LOGIN_PATH),
        ))
    }

    /// Forgets the clinician's sign-in to the site (the tray's Sign out).
    pub fn sign_out_of_site(&self) {
        if let Some(sign_in) = self.inner.sign_in.clone() {
            self.inner
                .runtime
                .spawn(async move { sign_in.sign_out().await });
        }
    }

    /// Resolves when the clinician has signed out of the OS session (`UserLogout` is sent):
    /// the shell then stops the agent.
    pub async fn signed_out(&self) {
        let mut signed_out = self.inner.signed_out.clone();
        if signed_out.wait_for(|out| *out).await.is_err() {
            // Nobody follows the OS session (turned off, or no watcher here): never.
            std::future::pending::<()>().await;
        }
    }

    /// Resolves when the hub has stopped (after `shutdown`, or on its own if it failed).
    pub async fn stopped(&self) {
        let mut ended = self.inner.ended.clone();
        // An error means the sender is gone, which only happens once the server task ended.
        let _ = ended.wait_for(|e| *e).await;
    }
}

/// Runs blocking desktop work (keyring, files) off the runtime's threads.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, DesktopError> + Send + 'static,
) -> Result<T, DesktopError> {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Err(DesktopError::Write(e.to_string())))
}

/// Runs the agent in the foreground until SIGINT or SIGTERM (Ctrl-C or a service stop on
/// Windows), then shuts it down cleanly.
pub async fn run_until_signal(config: Config) -> anyhow::Result<()> {
    run_until_signal_reloading(config, None).await
}

/// As [`run_until_signal`]; where `sources` are given, SIGHUP reads the configuration again
/// and applies its bridges (the hub keeps running; its own settings apply at the next start).
pub async fn run_until_signal_reloading(
    config: Config,
    sources: Option<ConfigSources>,
) -> anyhow::Result<()> {
    // The handlers go in before the agent starts: a signal that arrived while it started (a
    // reload right after a service start) would otherwise take its default action, which for
    // SIGHUP ends the process.
    let stop = stop_signal();
    let hangups = sources.map(|sources| (hangup_signal(), sources));
    let agent = Agent::start(config).await?;
    agent.publish_discovery();
    let reloads = async {
        match hangups {
            Some((hangups, sources)) => reload_on_hangup(&agent, hangups, &sources).await,
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = stop => {}
        _ = reloads => {}
        _ = agent.stopped() => anyhow::bail!("the hub stopped unexpectedly"),
        () = agent.signed_out() => tracing::info!("the clinician signed out"),
    }
    tracing::info!("stopping");
    agent.shutdown().await;
    Ok(())
}

#[cfg(unix)]
type Hangups = Option<tokio::signal::unix::Signal>;
#[cfg(not(unix))]
type Hangups = ();

/// Starts catching SIGHUP (where there is one).
fn hangup_signal() -> Hangups {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        signal(SignalKind::hangup()).ok()
    }
}

/// Reloads the bridges on every SIGHUP; a configuration that does not load changes nothing.
async fn reload_on_hangup(agent: &AgentHandle, hangups: Hangups, sources: &ConfigSources) {
    #[cfg(unix)]
    if let Some(mut hangups) = hangups {
        while hangups.recv().await.is_some() {
            match Config::load_from(sources) {
                Ok(config) => {
                    if let Err(e) = agent.reload_bridges(&config).await {
                        tracing::error!("reload refused: {e}");
                    }
                }
                Err(e) => tracing::error!("reload refused, the configuration does not load: {e}"),
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (agent, hangups, sources);
    }
    std::future::pending().await
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C elsewhere); both are caught from the moment this is
/// called, not from its first poll.
fn stop_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let interrupt = signal(SignalKind::interrupt()).ok();
        let terminate = signal(SignalKind::terminate()).ok();
        async move {
            let next = |signal: Option<tokio::signal::unix::Signal>| async move {
                match signal {
                    Some(mut signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = next(interrupt) => {}
                _ = next(terminate) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// The agent's answer to history that cannot be written: the hub refuses context changes (a
/// 2xx means recorded) unless the site chose to sync without history, and the tray and window
/// say so at once; both end by themselves when the store writes again.
async fn follow_history(
    mut problems: watch::Receiver<Option<lockstep_store::WriteProblem>>,
    policy: config::WhenUnwritable,
    engine: Engine,
    desktop: Arc<Desktop>,
) {
    loop {
        let problem = *problems.borrow_and_update();
        let trouble = problem.map(|problem| desktop::HistoryTrouble { problem, policy });
        let refusal = trouble
            .filter(|t| t.policy == config::WhenUnwritable::Refuse)
            .map(desktop::HistoryTrouble::notice);
        engine.refuse_changes(refusal);
        desktop.show_history(trouble);
        if problems.changed().await.is_err() {
            return;
        }
    }
}

/// What a site does about a damaged database, after the error that says so.
fn damage_remedy(error: &lockstep_store::StoreError) -> String {
    if error.is_damage() {
        format!(". {}", history::DAMAGED_REMEDY)
    } else {
        String::new()
    }
}
