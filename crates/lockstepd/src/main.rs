//! `lockstepd`: the Lockstep agent without a GUI, and the verbs site IT uses to check a
//! configuration and to exercise a running hub from a terminal.

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use lockstep_agent::client::HubClient;
use lockstep_agent::history;
use lockstep_agent::history::AuditFormat;
use lockstep_agent::{Config, config::ConfigSources};
use std::path::PathBuf;

mod conformance;

#[derive(Parser)]
#[command(
    name = "lockstepd",
    version,
    about = "Lockstep headless agent: a FHIRcast hub on loopback for the signed-in clinician"
)]
struct Cli {
    /// Configuration file (default: the user's config.toml, over the machine file).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Override one setting, e.g. `--set hub.port=5000` (repeatable).
    #[arg(long = "set", global = true, value_name = "KEY=VALUE")]
    overrides: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args)]
struct AppCredentials {
    /// The registered app to act as.
    #[arg(long, env = "LOCKSTEP_CLIENT_ID")]
    client_id: String,
    /// Its secret.
    #[arg(long, env = "LOCKSTEP_CLIENT_SECRET", hide_env_values = true)]
    client_secret: String,
    /// Server origin (default: this user's running agent, from its discovery file, else
    /// http://127.0.0.1:<configured port>).
    #[arg(long, value_name = "URL")]
    hub: Option<String>,
    /// Narrow the token to these scopes (space-separated).
    #[arg(long)]
    scope: Option<String>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the agent in the foreground (the default).
    Run,
    /// Check the layered configuration and print it, secrets redacted.
    CheckConfig,
    /// The effective configuration, one setting per line.
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Get an access token from the running hub, as an app would; prints the token response.
    Token(AppCredentials),
    /// Publish an event to the running hub, e.g. `send Patient-open --context @patient.json`.
    Send {
        #[command(flatten)]
        app: AppCredentials,
        /// The event name, e.g. Patient-open.
        event: String,
        /// The context array as JSON, or @FILE to read it from a file.
        #[arg(long, default_value = "[]")]
        context: String,
        /// For *-update: the content version it applies to (`context.versionId` of the
        /// current context).
        #[arg(long)]
        version_id: Option<String>,
    },
    /// Subscribe and print every notification as one JSON line, acknowledging each with 200.
    Tail {
        #[command(flatten)]
        app: AppCredentials,
        /// Comma-separated events.
        #[arg(
            long,
            default_value = "Patient-open,Patient-close,ImagingStudy-open,ImagingStudy-close,SyncError"
        )]
        events: String,
        /// Stop after this many notifications.
        #[arg(long)]
        count: Option<usize>,
    },
    /// Print the current context of the session.
    Context(AppCredentials),
    /// Each connected app's report card: subscriptions, answers, statuses, answer times,
    /// lease expiries and drops (the app's token needs the scope `lockstep/apps.read`).
    Apps {
        #[command(flatten)]
        app: AppCredentials,
        /// The cards as JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Search the context history (newest first), from the local database.
    History {
        /// Filters, as `key=value`: patient (MRN), accession, uid, event, app, text, from, to
        /// (RFC 3339), limit, before (row id, for the next page).
        #[arg(value_name = "FILTER")]
        filters: Vec<String>,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
        /// CSV for a spreadsheet (the history window's export): every matching entry, `limit`
        /// being only the page size.
        #[arg(long, conflicts_with = "json")]
        csv: bool,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
    /// Check any FHIRcast 3.0.0 hub against the spec's observable hub requirements; exits 1
    /// when a SHALL fails.
    Conformance(Box<conformance::ConformanceArgs>),
    /// Check this workstation's Lockstep: configuration, port, folders, keyring, history and
    /// audit chain, apps, bridges; exits 1 when something is a problem.
    Doctor {
        /// Also write a support archive (tar) with no patient data: this report, the
        /// configuration with secrets redacted, versions, recent logs at info level and above.
        #[arg(long, value_name = "FILE")]
        bundle: Option<PathBuf>,
        /// The findings as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign in to the site's hub (`[upstream]` without a client secret): prints the page to
    /// open, and opens it where there is a browser.
    Login {
        /// The running agent (default: this user's, as it published itself).
        #[arg(long)]
        hub: Option<String>,
        /// Only print the page.
        #[arg(long)]
        no_browser: bool,
    },
    /// Sign out of the site's hub: the link stops until the next sign-in.
    Logout {
        #[arg(long)]
        hub: Option<String>,
    },
    /// The audit trail: verify its hash chain, or export it.
    Audit {
        #[command(subcommand)]
        action: AuditAction,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Every effective setting (secrets redacted); with --origin, where each comes from:
    /// default, enforced policy (the machine file), a file, the environment, the command line.
    Show {
        #[arg(long)]
        origin: bool,
        /// As JSON: key, value (TOML) and origin of each.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum AuditAction {
    /// Walk the hash chain; exits non-zero and names the first broken row if it was tampered with.
    Verify,
    /// Write every audit row, oldest first.
    Export {
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Output file (default: standard output).
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
    },
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    Csv,
    /// JSON Lines: one object per row.
    Json,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // The checker is a client of some hub: it needs no configuration of this agent.
    if let Some(Command::Conformance(args)) = cli.command {
        return conformance::run(*args);
    }
    // The doctor reports a configuration that does not load rather than stopping at it.
    if let Some(Command::Doctor { bundle, json }) = &cli.command {
        let config = Config::load_from(&ConfigSources::standard(
            cli.config.as_deref(),
            cli.overrides.clone(),
        ));
        return doctor(config, bundle.as_deref(), *json);
    }
    let config = match Config::load_from(&ConfigSources::standard(
        cli.config.as_deref(),
        cli.overrides.clone(),
    )) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("lockstepd: configuration error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    // Only the agent itself logs to the file; a verb run beside it writes to standard error.
    let mut log = config.log.clone();
    log.file &= matches!(cli.command, None | Some(Command::Run));
    lockstep_agent::logging::init(&log, "lockstepd");
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lockstepd: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let sources = ConfigSources::standard(cli.config.as_deref(), cli.overrides.clone());
    match runtime.block_on(execute(
        cli.command.unwrap_or(Command::Run),
        config,
        sources,
    )) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("lockstepd: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(command: Command, config: Config, sources: ConfigSources) -> anyhow::Result<()> {
    match command {
        // Dispatched in `main` before any configuration is read; never here.
        Command::Conformance(_) | Command::Doctor { .. } => {
            anyhow::bail!("this verb runs before the configuration is read")
        }
        Command::Run => lockstep_agent::run_until_signal_reloading(config, Some(sources)).await,
        Command::Login { hub, no_browser } => {
            login(&agent_origin(hub.as_deref(), &config), &config, no_browser)
        }
        Command::Logout { hub } => logout(&agent_origin(hub.as_deref(), &config)).await,
        Command::CheckConfig => {
            print!("{}", config.to_redacted_toml());
            eprintln!("lockstepd: configuration is valid");
            Ok(())
        }
        Command::Config {
            action: ConfigAction::Show { origin, json },
        } => {
            let settings = config.effective_settings();
            if json {
                println!("{}", serde_json::to_string_pretty(&settings)?);
                return Ok(());
            }
            let width = settings
                .iter()
                .map(|s| s.key.len() + s.value.len() + 3)
                .max()
                .unwrap_or(0);
            for setting in &settings {
                let line = format!("{} = {}", setting.key, setting.value);
                if origin {
                    println!("{line:<width$}  # {}", setting.origin);
                } else {
                    println!("{line}");
                }
            }
            Ok(())
        }
        Command::Token(app) => {
            let client = sign_in(&app, &config).await?;
            let out = serde_json::json!({ "hub.url": client.hub_url, "hub.topic": client.topic, "scope": client.scope });
            println!("{out}");
            Ok(())
        }
        Command::Send {
            app,
            event,
            context,
            version_id,
        } => {
            let context = read_context(&context)?;
            let client = sign_in(&app, &config).await?;
            let id = client
                .publish(&event, context, version_id.as_deref())
                .await?;
            eprintln!("lockstepd: {event} accepted (id {id})");
            Ok(())
        }
        Command::Tail { app, events, count } => {
            let client = sign_in(&app, &config).await?;
            let mut subscription = client.subscribe(&events, Some("lockstepd tail")).await?;
            println!("{}", subscription.confirmation);
            let mut seen = 0;
            while let Some(frame) = subscription.next_frame().await? {
                println!("{frame}");
                if let Some(id) = frame.get("id").and_then(|i| i.as_str()) {
                    let id = id.to_owned();
                    subscription.acknowledge(&id, 200).await?;
                    seen += 1;
                }
                if count.is_some_and(|c| seen >= c) {
                    subscription.close().await?;
                    return Ok(());
                }
            }
            bail!("the hub closed the subscription")
        }
        Command::Context(app) => {
            let client = sign_in(&app, &config).await?;
            println!("{}", client.current_context().await?);
            Ok(())
        }
        Command::Apps { app, json } => {
            let client = sign_in(&app, &config).await?;
            let reports = client.app_reports().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
                return Ok(());
            }
            println!(
                "{:<28} {:>5} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>6}  statuses",
                "app",
                "subs",
                "conn",
                "acked",
                "refused",
                "missed",
                "p50 ms",
                "p99 ms",
                "renew",
                "lapsed",
                "drops"
            );
            let ms = |v: Option<f64>| v.map_or("-".to_owned(), |ms| format!("{ms:.1}"));
            for r in &reports {
                let name = match &r.own_name {
                    Some(own) => format!("{} (\"{own}\")", r.name),
                    None => r.name.clone(),
                };
                let counts = |by: &std::collections::BTreeMap<u16, u64>| {
                    by.iter()
                        .map(|(s, n)| format!("{s}×{n}"))
                        .collect::<Vec<_>>()
                        .join(" ")
                };
                let mut statuses = counts(&r.statuses);
                if !r.requests_refused.is_empty() {
                    statuses.push_str(&format!(
                        "; its requests refused: {}",
                        counts(&r.requests_refused)
                    ));
                }
                println!(
                    "{name:<28} {:>5} {:>5} {:>7} {:>7} {:>7} {:>9} {:>9} {:>6} {:>6} {:>6}  {}",
                    r.subscribed,
                    r.connected,
                    r.acknowledged,
                    r.refused,
                    r.timed_out,
                    ms(r.answer_p50_ms),
                    ms(r.answer_p99_ms),
                    r.renewals,
                    r.lease_expired,
                    r.dropped,
                    statuses
                );
            }
            Ok(())
        }
        Command::History {
            filters,
            json,
            csv,
            output,
        } => {
            let query = history::query_from_params(
                filters.iter().map(|f| f.split_once('=').unwrap_or((f, ""))),
            )
            .map_err(anyhow::Error::msg)?;
            let store = history::open_store(&config)?;
            if csv {
                let rows = match output {
                    Some(path) => history::export_csv(&store, &query, create(&path)?)?,
                    None => history::export_csv(&store, &query, std::io::stdout().lock())?,
                };
                eprintln!("lockstepd: {rows} history entries exported");
                return Ok(());
            }
            let entries = history::query_all(&store, &query)?;
            for entry in &entries {
                if json {
                    println!("{}", serde_json::to_string(entry)?);
                } else {
                    let s = &entry.summary;
                    println!(
                        "{:>6}  {}  {:<24} {:<28} {:<12} {:<12} {}",
                        entry.id,
                        entry.at,
                        entry.event,
                        s.patient_name.as_deref().unwrap_or("-"),
                        s.patient_mrn.as_deref().unwrap_or("-"),
                        s.study_accession.as_deref().unwrap_or("-"),
                        entry.app
                    );
                }
            }
            if !json {
                eprintln!(
                    "lockstepd: {} entr{}",
                    entries.len(),
                    if entries.len() == 1 { "y" } else { "ies" }
                );
            }
            Ok(())
        }
        Command::Audit { action } => {
            let store = history::open_store(&config)?;
            match action {
                AuditAction::Verify => {
                    let report = store.verify_audit()?;
                    if let Some(broken) = &report.broken {
                        bail!(
                            "the audit trail was altered: row {} ({:?})",
                            broken.id,
                            broken.reason
                        );
                    }
                    println!(
                        "audit trail intact: {} rows checked, head {}",
                        report.rows_checked, report.head_hash
                    );
                    Ok(())
                }
                AuditAction::Export { format, output } => {
                    let format = match format {
                        ExportFormat::Csv => AuditFormat::Csv,
                        ExportFormat::Json => AuditFormat::JsonLines,
                    };
                    let rows = match output {
                        Some(path) => store.export_audit(format, create(&path)?)?,
                        None => store.export_audit(format, std::io::stdout().lock())?,
                    };
                    eprintln!("lockstepd: {rows} audit rows exported");
                    Ok(())
                }
            }
        }
    }
}

fn doctor(
    config: Result<Config, lockstep_agent::ConfigError>,
    bundle: Option<&std::path::Path>,
    json: bool,
) -> std::process::ExitCode {
    use lockstep_agent::doctor::{self, Health};
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("lockstepd doctor: cannot start the runtime: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    let secrets = lockstep_agent::secrets::KeyringStore;
    let findings = runtime.block_on(doctor::examine(&config, &secrets));
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&findings).unwrap_or_default()
        );
    } else {
        print!("{}", doctor::render(&findings));
    }
    if let Some(path) = bundle {
        let written = std::fs::File::create(path).and_then(|file| {
            doctor::write_bundle(
                std::io::BufWriter::new(file),
                &findings,
                config.as_ref().ok(),
            )
        });
        match written {
            Ok(names) => eprintln!(
                "lockstepd doctor: support archive {} ({})",
                path.display(),
                names.join(", ")
            ),
            Err(e) => {
                eprintln!("lockstepd doctor: cannot write {}: {e}", path.display());
                return std::process::ExitCode::from(2);
            }
        }
    }
    if findings.iter().any(|f| f.health == Health::Problem) {
        std::process::ExitCode::FAILURE
    } else {
        std::process::ExitCode::SUCCESS
    }
}

/// An output file the user named, buffered.
fn create(path: &std::path::Path) -> anyhow::Result<std::io::BufWriter<std::fs::File>> {
    let file =
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?;
    Ok(std::io::BufWriter::new(file))
}

/// The running agent's origin: the hub named, else the one this user's agent published, else
/// the configured port.
fn agent_origin(hub: Option<&str>, config: &Config) -> String {
    hub.map(str::to_owned)
        .unwrap_or_else(|| match lockstep_agent::discovery::read() {
            Some(published) => published.hub_url.trim_end_matches("/fhircast").to_owned(),
            None => format!("http://127.0.0.1:{}", config.hub.port),
        })
}

/// `lockstepd login`: the agent's own sign-in page, which sends the browser to the site.
fn login(origin: &str, config: &Config, no_browser: bool) -> anyhow::Result<()> {
    anyhow::ensure!(
        config.upstream.is_on(),
        "no site to sign in to: set upstream.issuer"
    );
    let url = format!("{origin}{}", lockstep_agent::upstream::LOGIN_PATH);
    println!("To sign in to {}, open: {url}", config.upstream.site_name());
    let display = ["DISPLAY", "WAYLAND_DISPLAY"]
        .iter()
        .any(|name| std::env::var_os(name).is_some_and(|v| !v.is_empty()));
    if !no_browser && display {
        // The desktop's browser; where there is none the printed page is the way.
        let _ = std::process::Command::new("xdg-open")
            .arg(&url)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn();
    }
    Ok(())
}

/// `lockstepd logout`.
async fn logout(origin: &str) -> anyhow::Result<()> {
    let said = lockstep_agent::client::sign_out_of_site(origin)
        .await
        .with_context(|| format!("asking the agent at {origin} to sign out"))?;
    println!("{said}");
    Ok(())
}

async fn sign_in(app: &AppCredentials, config: &Config) -> anyhow::Result<HubClient> {
    let origin = agent_origin(app.hub.as_deref(), config);
    HubClient::sign_in(
        &origin,
        &app.client_id,
        &app.client_secret,
        app.scope.as_deref(),
    )
    .await
    .with_context(|| format!("signing in to {origin} as `{}`", app.client_id))
}

fn read_context(arg: &str) -> anyhow::Result<serde_json::Value> {
    let text = match arg.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => arg.to_owned(),
    };
    let value: serde_json::Value =
        serde_json::from_str(&text).context("the context is not valid JSON")?;
    if !value.is_array() {
        bail!("the context must be a JSON array of {{\"key\": ..., \"resource\": ...}} entries");
    }
    Ok(value)
}
