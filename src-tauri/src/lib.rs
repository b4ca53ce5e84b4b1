//! The desktop shell: starts the agent and presents it in the tray and its windows. No logic:
//! the agent decides, the shell shows and passes on what the user asks for.

mod autostart;
mod commands;
#[cfg(target_os = "linux")]
pub mod gtk_gl;
mod notify;
mod present;
mod tray;
mod view;
mod window;

use std::path::PathBuf;

use anyhow::Context as _;
use lockstep_agent::config::{ConfigError, ConfigSources};
use lockstep_agent::{Agent, AgentHandle, Config};
use tauri::{Manager, RunEvent};

/// Command line of the `lockstep` binary; `--config` and `--set` mean what they do for
/// `lockstepd`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "lockstep",
    version,
    about = "Lockstep: keeps this desktop's applications on the same patient (FHIRcast)"
)]
pub struct Cli {
    /// Configuration file (default: the user's config.toml, over the machine file).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Override one setting, e.g. `--set hub.port=5000` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Run the agent without the tray, even when a display is available.
    #[arg(long)]
    pub headless: bool,
    /// Started by the machine's autostart entry at sign-in: exit at once unless the
    /// `desktop.start_at_login` setting (the user's, or site policy) is on.
    #[arg(long)]
    pub at_login: bool,
}

impl Cli {
    /// The layered configuration, with this command line's file and overrides on top.
    pub fn load_config(&self) -> Result<Config, ConfigError> {
        Config::load_from(&ConfigSources::standard(
            self.config.as_deref(),
            self.overrides.clone(),
        ))
    }
}

/// Runs the tray app, or the headless agent when asked to or when there is no display.
pub fn run(cli: &Cli, config: Config) -> anyhow::Result<()> {
    if cli.at_login && !config.desktop.start_at_login {
        tracing::info!("started at sign-in, but desktop.start_at_login is off: not starting");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("lockstep")
        .build()
        .context("starting the async runtime")?;
    let headless_because = if cli.headless {
        Some("--headless")
    } else if !display_available() {
        Some("no display (neither DISPLAY nor WAYLAND_DISPLAY is set)")
    } else {
        None
    };
    if let Some(reason) = headless_because {
        tracing::info!("{reason}: running the agent without the tray");
        return runtime.block_on(lockstep_agent::run_until_signal(config));
    }
    run_tray(&runtime, config)
}

/// Whether a GUI can start here. Tauri panics without a display rather than returning an
/// error, so this has to be decided before anything touches `tauri::Builder`.
pub fn display_available() -> bool {
    if !cfg!(target_os = "linux") {
        return true;
    }
    let set = |name| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    set("DISPLAY") || set("WAYLAND_DISPLAY")
}

fn run_tray(runtime: &tokio::runtime::Runtime, config: Config) -> anyhow::Result<()> {
    // One runtime for the agent and for Tauri's async work, so the shell's tasks and the
    // agent's share threads and shut down together.
    tauri::async_runtime::set(runtime.handle().clone());
    // Built before the agent starts: building runs the single-instance check, and a second
    // launch must hand over to the first (which shows its window) and exit 0, not fail to
    // bind the first one's port.
    let app = build_app().context("starting the tray app")?;
    #[cfg(target_os = "linux")]
    gtk_gl::forget();
    let agent = runtime
        .block_on(Agent::start(config))
        .context("starting the agent")?;
    agent.publish_discovery();
    let result = Termination::listen(runtime)
        .context("listening for termination signals")
        .and_then(|termination| run_event_loop(app, agent.clone(), termination));
    // Whatever ended the event loop (Quit, a signal, a failure to start), the agent still
    // gets to unsubscribe and close its listeners before the process goes.
    runtime.block_on(agent.shutdown());
    tracing::info!("agent stopped");
    result
}

fn build_app() -> tauri::Result<tauri::App> {
    let builder = tauri::Builder::default()
        // First, as the plugin asks: a second instance exits before anything else starts.
        .plugin(tauri_plugin_single_instance::init(|app, _args, _cwd| {
            tracing::info!("Lockstep was launched again: showing this one");
            window::open(app, window::Kind::Current);
        }))
        .plugin(tauri_plugin_notification::init())
        .invoke_handler(commands::handler());
    autostart::register(builder).build(tauri::generate_context!())
}

fn run_event_loop(
    app: tauri::App,
    agent: AgentHandle,
    termination: Termination,
) -> anyhow::Result<()> {
    // Done here rather than in `Builder::setup`, whose errors become panics in `run_return`.
    let handle = app.handle();
    handle.manage(agent.clone());
    tray::install(handle).context("creating the tray icon")?;
    present::start(handle, &agent);
    autostart::apply(handle, agent.settings().start_at_login);
    termination.quit_app_on_signal(handle.clone());
    quit_app_on_sign_out(handle.clone(), agent.clone());
    if window::under_automation() {
        // A WebDriver session attaches to the first web view, and the tray makes none until
        // asked: give the driver the current-context window to start from.
        window::open(handle, window::Kind::Current);
    }
    tracing::info!(hub_url = %agent.hub_url(), "tray ready");
    let code = app.run_return(|_, event| {
        // Closing the last window must leave the tray running: only Quit or a signal, which
        // both exit with an explicit code, end the app.
        if let RunEvent::ExitRequested {
            code: None, api, ..
        } = event
        {
            api.prevent_exit();
        }
    });
    present::stop();
    anyhow::ensure!(code == 0, "the tray app exited with status {code}");
    Ok(())
}

/// Signing out of the OS session (`UserLogout` sent) quits like the tray's Quit does.
fn quit_app_on_sign_out(app: tauri::AppHandle, agent: AgentHandle) {
    tauri::async_runtime::spawn(async move {
        agent.signed_out().await;
        tracing::info!("the clinician signed out: quitting");
        app.exit(0);
    });
}

/// SIGTERM and SIGINT quit like the tray's Quit does, so a service manager or a logout stops
/// the agent cleanly instead of killing it mid-notification.
struct Termination {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl Termination {
    /// Installs the handlers now rather than in a task, so a signal that arrives as soon as the
    /// app reports ready is already caught instead of killing the process.
    fn listen(runtime: &tokio::runtime::Runtime) -> std::io::Result<Self> {
        let _context = runtime.enter();
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(Self {
                terminate: signal(SignalKind::terminate())?,
                interrupt: signal(SignalKind::interrupt())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    fn quit_app_on_signal(mut self, app: tauri::AppHandle) {
        tauri::async_runtime::spawn(async move {
            self.recv().await;
            tracing::info!("termination signal: quitting");
            app.exit(0);
        });
    }

    #[cfg(unix)]
    async fn recv(&mut self) {
        tokio::select! {
            _ = self.terminate.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn recv(&mut self) {
        // Without a handler there is nothing to wait for; never quit on a failed listen.
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
