//! The doctor's checks, in the order a support call goes through them.

use super::Finding;
use crate::config::{Config, ConfigError};
use crate::discovery::PublishedLinks;
use crate::links::LinkKind;
use crate::paths::Paths;
use crate::secrets::SecretStore;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::Path;
use std::time::Duration;

/// Below this much free space where history is kept, a warning; below a tenth of it, a problem.
const LOW_SPACE_BYTES: u64 = 500 * 1024 * 1024;

/// Every check. `config` is what loading gave: an invalid configuration is the first problem,
/// and the checks that need one are left out.
pub async fn examine(
    config: &Result<Config, ConfigError>,
    secrets: &dyn SecretStore,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    let config = match config {
        Ok(config) => {
            findings.push(Finding::ok(
                "configuration",
                format!(
                    "valid; site policy enforces {} setting(s) and recommends {}",
                    config.locked().count(),
                    config.policy.len() - config.locked().count()
                ),
            ));
            config
        }
        Err(e) => {
            findings.push(Finding::problem(
                "configuration",
                e.to_string(),
                "fix the key named; `lockstepd check-config` shows the effective configuration",
            ));
            return findings;
        }
    };
    let running = crate::discovery::read();
    findings.push(port(config.hub.port, running.as_ref().map(|r| r.port)).await);
    let paths = Paths::discover();
    let database = crate::history::database_path(config).ok();
    let data = database
        .as_deref()
        .and_then(Path::parent)
        .map(Path::to_owned)
        .or(paths.data_dir());
    findings.push(folder("data folder", data.as_deref()));
    if config.log.file {
        findings.push(folder("log folder", paths.log_dir().as_deref()));
    }
    findings.push(keyring(config, secrets));
    findings.push(history(config));
    // The running agent's session, as it publishes it (none when no agent runs).
    let live = running.and(crate::discovery::read_links());
    findings.push(apps(config));
    findings.push(bridges(config));
    findings.push(live_links(live.as_ref(), LinkKind::App));
    findings.push(live_links(live.as_ref(), LinkKind::Bridge));
    findings.push(upstream(config, live.as_ref()));
    findings
}

async fn port(configured: u16, published: Option<u16>) -> Finding {
    // On a shared host the agent may have taken another port, and published it.
    if let Some(port) = published.filter(|p| *p != configured) {
        return match hub_answers(port).await {
            true => Finding::ok(
                "port",
                format!(
                    "the agent's hub answers on {port}, which it published (the configured \
                     {configured} is taken, by another user's agent on a shared host)"
                ),
            ),
            false => Finding::problem(
                "port",
                format!("the agent published port {port}, but nothing answers there"),
                "restart Lockstep",
            ),
        };
    }
    let port = configured;
    match TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, port))) {
        Ok(_) => Finding::ok(
            "port",
            format!("{port} is free (no agent is running for this user)"),
        ),
        Err(_) => {
            if hub_answers(port).await {
                Finding::ok("port", format!("{port}: the agent's hub answers"))
            } else {
                let whom = super::holder::holder(port)
                    .map(|h| format!(" ({h})"))
                    .unwrap_or_default();
                Finding::problem(
                    "port",
                    format!("{port} is held by another program{whom}, which is not a FHIRcast hub"),
                    "stop that program, or set hub.port to a free port (and tell the apps)",
                )
            }
        }
    }
}

/// Whether a FHIRcast hub answers on loopback at `port`.
async fn hub_answers(port: u16) -> bool {
    let url = format!("http://127.0.0.1:{port}/fhircast/.well-known/fhircast-configuration");
    let Ok(client) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return false;
    };
    match client.get(&url).send().await {
        Ok(answer) => answer
            .text()
            .await
            .is_ok_and(|t| t.contains("\"fhircastVersion\"")),
        Err(_) => false,
    }
}

fn folder(check: &'static str, folder: Option<&Path>) -> Finding {
    let Some(folder) = folder else {
        return Finding::problem(
            check,
            "no home folder to keep it in",
            "run as a user with a home folder",
        );
    };
    let shown = folder.display();
    if !folder.exists() {
        return Finding::ok(
            check,
            format!("{shown} does not exist yet; the agent creates it"),
        );
    }
    let probe = folder.join(format!(".doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"") {
        return Finding::problem(
            check,
            format!("{shown} is not writable: {e}"),
            "give the user write access to it",
        );
    }
    let _ = std::fs::remove_file(&probe);
    match free_bytes(folder) {
        Some(free) if free < LOW_SPACE_BYTES / 10 => Finding::problem(
            check,
            format!("{shown}: only {} MB free", free >> 20),
            "free disk space: history is refused or lost when the disk is full",
        ),
        Some(free) if free < LOW_SPACE_BYTES => Finding::warning(
            check,
            format!("{shown}: {} MB free", free >> 20),
            "free disk space soon",
        ),
        Some(free) => Finding::ok(check, format!("{shown}: writable, {} MB free", free >> 20)),
        None => Finding::ok(check, format!("{shown}: writable")),
    }
}

#[cfg(unix)]
fn free_bytes(folder: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(folder.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
    if unsafe { libc::statvfs(path.as_ptr(), &mut stat) } != 0 {
        return None;
    }
    Some(stat.f_bavail as u64 * stat.f_frsize as u64)
}

#[cfg(not(unix))]
fn free_bytes(_folder: &Path) -> Option<u64> {
    None
}

fn keyring(config: &Config, secrets: &dyn SecretStore) -> Finding {
    let keys: Vec<(&str, &str)> = config
        .apps
        .iter()
        .filter_map(|a| {
            a.client_secret_key
                .as_deref()
                .map(|k| (a.client_id.as_str(), k))
        })
        .collect();
    if keys.is_empty() {
        return Finding::ok("keyring", "no app secret is kept in the keyring");
    }
    let missing: Vec<String> = keys
        .iter()
        .filter_map(|(app, key)| match secrets.get(key) {
            Ok(Some(_)) => None,
            Ok(None) => Some(format!("{app} (entry `{key}` missing)")),
            Err(e) => Some(format!("{app} (entry `{key}`: {})", e.0)),
        })
        .collect();
    if missing.is_empty() {
        Finding::ok("keyring", format!("{} app secret(s) found", keys.len()))
    } else {
        Finding::problem(
            "keyring",
            format!("cannot read: {}", missing.join(", ")),
            "store each secret under its client_secret_key in the user's keyring",
        )
    }
}

fn history(config: &Config) -> Finding {
    let path = match crate::history::database_path(config) {
        Ok(path) => path,
        Err(e) => return Finding::problem("history", e.to_string(), "check [history] database"),
    };
    if !path.exists() {
        return Finding::ok("history", format!("{}: none yet", path.display()));
    }
    let store = match lockstep_store::Store::open(&path, lockstep_store::StoreOptions::default()) {
        Ok(store) => store,
        Err(e) => {
            return Finding::problem(
                "history",
                format!("{} does not open: {e}", path.display()),
                "see docs/site-it.md on a damaged history (history.when_damaged)",
            );
        }
    };
    match store.verify_audit() {
        Ok(report) => match report.broken {
            None => Finding::ok(
                "history",
                format!(
                    "{} opens; audit chain intact ({} rows)",
                    path.display(),
                    report.rows_checked
                ),
            ),
            Some(broken) => Finding::problem(
                "history",
                format!(
                    "the audit trail was altered at row {} ({:?})",
                    broken.id, broken.reason
                ),
                "keep the file for investigation; `lockstepd audit export` reads it",
            ),
        },
        Err(e) => Finding::problem(
            "history",
            format!("audit chain unreadable: {e}"),
            "keep the file for investigation",
        ),
    }
}

fn apps(config: &Config) -> Finding {
    if config.apps.is_empty() {
        return Finding::warning(
            "apps",
            "no app is registered",
            "register the apps in [[apps]] (or in the settings window); `lockstepd apps` shows which are connected",
        );
    }
    let names: Vec<&str> = config.apps.iter().map(|a| a.display_name()).collect();
    Finding::ok(
        "apps",
        format!(
            "{} registered: {}; `lockstepd apps` shows which are connected",
            names.len(),
            names.join(", ")
        ),
    )
}

fn bridges(config: &Config) -> Finding {
    match config.bridges.validate() {
        Err(problem) => Finding::problem(
            "bridges",
            problem.to_string(),
            "fix the [bridges] key named",
        ),
        Ok(_) => {
            let b = &config.bridges;
            let ccow = b.ccow.as_ref().is_some_and(|c| c.enabled);
            Finding::ok(
                "bridges",
                format!(
                    "{} launch, {} folder, CCOW {}; the tray shows each one's state",
                    b.launch.len(),
                    b.folder.len(),
                    if ccow { "on" } else { "off" }
                ),
            )
        }
    }
}

/// The apps (or bridges) in the running agent's session and their states; a warning when one
/// is a sync problem.
fn live_links(live: Option<&PublishedLinks>, kind: LinkKind) -> Finding {
    let check = match kind {
        LinkKind::App => "connected apps",
        LinkKind::Bridge => "bridge states",
        LinkKind::Upstream => "upstream link",
    };
    let Some(live) = live else {
        return Finding::ok(
            check,
            "the agent is not running; they are shown here while it runs",
        );
    };
    let links: Vec<_> = live.links.iter().filter(|l| l.kind == kind).collect();
    if links.is_empty() {
        return Finding::ok(check, "none in the session now");
    }
    let listed = links
        .iter()
        .map(|l| format!("{} {} since {}", l.name, l.state, l.since))
        .collect::<Vec<_>>()
        .join("; ");
    let troubled: Vec<&str> = links
        .iter()
        .filter(|l| l.problem)
        .map(|l| l.name.as_str())
        .collect();
    if troubled.is_empty() {
        Finding::ok(check, listed)
    } else {
        Finding::warning(
            check,
            listed,
            format!(
                "{} not following: the tray's window says why (`lockstepd apps` has the report cards)",
                troubled.join(", ")
            ),
        )
    }
}

/// The enterprise link: none configured, or its state as the running agent publishes it.
fn upstream(config: &Config, live: Option<&PublishedLinks>) -> Finding {
    if !config.upstream.is_on() {
        return Finding::ok(
            "upstream link",
            "none configured (this agent's own session)",
        );
    }
    let site = config.upstream.site_name();
    let Some(link) = live.and_then(|l| l.links.iter().find(|l| l.kind == LinkKind::Upstream))
    else {
        return Finding::ok(
            "upstream link",
            format!("follows {site}; its state is shown here while the agent runs"),
        );
    };
    let said = format!("{site}: {} since {}", link.state, link.since);
    if link.problem {
        Finding::warning(
            "upstream link",
            said,
            "check that the site's hub answers and that Lockstep's client is registered there; the tray shows the reason",
        )
    } else {
        Finding::ok("upstream link", said)
    }
}
