//! A launch bridge ready to run, as validation builds it: its templates parsed and its mode
//! decided (a URL handed to an opener or fetched, or a program started), and what one launch
//! does for a context.

use crate::mapping::IdentifierMapping;
use crate::template::{ContextData, RenderError, Template};
use lockstep_fhircast::{EventKind, EventSpec};
use serde::{Deserialize, Serialize};
use std::process::Stdio;
use std::time::Duration;

/// Why a launch did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error("cannot render the launch: {0}")]
    Render(#[from] RenderError),
    #[error("{0}")]
    NotAllowed(String),
    #[error("cannot start `{program}`: {source}")]
    Spawn {
        program: String,
        source: std::io::Error,
    },
    #[error("`{program}` exited with {status}")]
    Exit { program: String, status: String },
    /// (reqwest's own text names the URL, which may carry identifiers: it is left out.)
    #[error("the request to {host} failed: {reason}")]
    Fetch { host: String, reason: String },
}

/// `link_state_after_launch`: the link state after a successful launch.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterLaunch {
    #[default]
    Unconfirmed,
    Following,
}

/// A launch bridge, validated: everything it needs to launch, parsed once.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `*-open` events that launch.
    pub opens: Vec<&'static EventSpec>,
    pub mode: LaunchMode,
    /// Switches within this window after a launch are coalesced.
    pub debounce: Duration,
    pub after_launch: AfterLaunch,
    pub identifiers: IdentifierMapping,
}

/// What a launch bridge does.
#[derive(Debug, Clone)]
pub enum LaunchMode {
    /// Open a URL (each placeholder percent-encoded as a URL component).
    Url {
        url: Template,
        /// Opened when the launched context closes.
        on_close: Option<Template>,
        allowed: AllowList,
        open: UrlOpen,
    },
    /// Start a program (never a shell), one argv element per template.
    Exec {
        program: String,
        args: Vec<Template>,
        /// Started with these when the launched context closes.
        on_close_args: Option<Vec<Template>>,
    },
}

/// How a URL is opened.
#[derive(Debug, Clone)]
pub enum UrlOpen {
    /// Handed to a program, the URL appended as one argument.
    Opener {
        program: String,
        leading: Vec<String>,
    },
    /// Requested by the agent itself (http/https; no redirects, with a timeout).
    Fetch(reqwest::Client),
}

/// The schemes and hosts a rendered URL may use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowList {
    pub schemes: Vec<String>,
    pub hosts: Vec<String>,
}

/// What one launch does, ready to perform.
#[derive(Debug, Clone)]
pub enum Action {
    /// GET the URL from the agent (`fetch`).
    Fetch {
        url: url::Url,
        client: reqwest::Client,
    },
    /// Hand the URL to the opener: `program` with `args`, the URL the last of them.
    Open {
        url: url::Url,
        program: String,
        args: Vec<String>,
    },
    /// Start the bridge's program with these arguments.
    Exec { program: String, args: Vec<String> },
}

/// Checks a rendered URL against the allow-lists before anything runs.
pub fn check_url(allowed: &AllowList, text: &str) -> Result<url::Url, LaunchError> {
    let url = url::Url::parse(text)
        .map_err(|e| LaunchError::NotAllowed(format!("not a valid URL ({e})")))?;
    let scheme = url.scheme();
    if !allowed
        .schemes
        .iter()
        .any(|s| s.eq_ignore_ascii_case(scheme))
    {
        return Err(LaunchError::NotAllowed(format!(
            "the scheme `{scheme}` is not in allowed_schemes"
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(LaunchError::NotAllowed(
            "a URL with user information is refused".into(),
        ));
    }
    match url.host_str().filter(|h| !h.is_empty()) {
        Some(host) if !allowed.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) => {
            return Err(LaunchError::NotAllowed(format!(
                "the host `{host}` is not in allowed_hosts"
            )));
        }
        Some(_) => {}
        None if matches!(scheme, "http" | "https") => {
            return Err(LaunchError::NotAllowed("an http URL needs a host".into()));
        }
        // A desktop scheme (`weasis://?…`) names no host: its scheme is the allow-list.
        None => {}
    }
    Ok(url)
}

impl Launcher {
    /// The events a launch bridge follows: its opens and, with an on-close action, their closes.
    pub fn subscribed_events(&self) -> Vec<&'static EventSpec> {
        let has_close = match &self.mode {
            LaunchMode::Url { on_close, .. } => on_close.is_some(),
            LaunchMode::Exec { on_close_args, .. } => on_close_args.is_some(),
        };
        let closes = self.opens.iter().filter(|_| has_close).filter_map(|open| {
            EventSpec::all()
                .iter()
                .find(|e| e.kind == EventKind::Close && e.anchor == open.anchor)
        });
        let mut events = self.opens.clone();
        events.extend(closes);
        events
    }

    /// Renders the launch (or the on-close action) for a context and checks it.
    pub fn prepare(&self, data: &ContextData, closing: bool) -> Result<Action, LaunchError> {
        let now = time::OffsetDateTime::now_utc();
        let mapping = &self.identifiers;
        match &self.mode {
            LaunchMode::Url {
                url,
                on_close,
                allowed,
                open,
            } => {
                let template = if closing {
                    on_close.as_ref()
                } else {
                    Some(url)
                };
                let template =
                    template.ok_or_else(|| LaunchError::NotAllowed("no URL configured".into()))?;
                let text = template.render(data, mapping, now)?;
                let url = check_url(allowed, &text)?;
                Ok(match open {
                    UrlOpen::Fetch(client) => Action::Fetch {
                        url,
                        client: client.clone(),
                    },
                    UrlOpen::Opener { program, leading } => {
                        let mut args = leading.clone();
                        // The whole URL is one argument: no shell splits or expands it.
                        args.push(url.to_string());
                        Action::Open {
                            url,
                            program: program.clone(),
                            args,
                        }
                    }
                })
            }
            LaunchMode::Exec {
                program,
                args,
                on_close_args,
            } => {
                let templates = if closing {
                    on_close_args.as_deref().unwrap_or_default()
                } else {
                    args
                };
                let args = templates
                    .iter()
                    .map(|t| t.render(data, mapping, now))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Action::Exec {
                    program: program.clone(),
                    args,
                })
            }
        }
    }
}

impl Action {
    /// Starts the launch. `Ok(Some(child))` when a process was started (its exit is worth
    /// watching), `Ok(None)` when a fetch completed.
    pub async fn perform(&self) -> Result<Option<(String, tokio::process::Child)>, LaunchError> {
        match self {
            Action::Fetch { url, client } => {
                let host = url.host_str().unwrap_or_default().to_owned();
                let response =
                    client
                        .get(url.clone())
                        .send()
                        .await
                        .map_err(|e| LaunchError::Fetch {
                            host: host.clone(),
                            reason: e.without_url().to_string(),
                        })?;
                if !response.status().is_success() {
                    return Err(LaunchError::Fetch {
                        host,
                        reason: format!("status {}", response.status()),
                    });
                }
                Ok(None)
            }
            Action::Open { program, args, .. } | Action::Exec { program, args } => {
                spawn(program, args).map(|c| Some((program.clone(), c)))
            }
        }
    }

    /// A description for the audit trail (no full URL: it may carry identifiers).
    pub fn describe(&self) -> String {
        match self {
            Action::Fetch { url, .. } => format!(
                "requested {}://{}{}",
                url.scheme(),
                url.host_str().unwrap_or(""),
                url.path()
            ),
            Action::Open { url, .. } => format!("opened a {} URL", url.scheme()),
            Action::Exec { program, args } => {
                format!("started {program} with {} argument(s)", args.len())
            }
        }
    }
}

fn spawn(program: &str, args: &[String]) -> Result<tokio::process::Child, LaunchError> {
    tokio::process::Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: program.to_owned(),
            source,
        })
}
