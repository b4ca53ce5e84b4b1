//! The launch bridge (out): on the configured events, open a URL or start a program with the
//! context rendered into it, as an argument vector and never through a shell.
//!
//! Each notification is rendered when it arrives, so the hub is answered at once: 202 when
//! the launch will happen (FHIRcast's "accepted; a SyncError follows if it fails"), 409 when the
//! context cannot be rendered safely. The first switch launches at once; switches within
//! `debounce_ms` after a launch are coalesced into one launch of the latest at the window's end.

use crate::config::{AfterLaunch, LaunchConfig, LaunchMode};
use crate::error::BridgeError;
use crate::session::Session;
use crate::template::{ContextData, Escape, RenderError, Template};
use lockstep_fhircast::{EventKind, EventSpec};
use lockstep_hub::LinkState;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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

/// What one launch does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Hand the URL to the opener, or GET it (`fetch`).
    Url(url::Url),
    /// Start `program` with these arguments.
    Exec(Vec<String>),
}

/// The events a launch bridge follows: its opens and, with an on-close action, their closes.
pub fn subscribed_events(config: &LaunchConfig) -> Vec<&'static EventSpec> {
    let opens: Vec<&'static EventSpec> = config
        .events
        .iter()
        .filter_map(|n| EventSpec::lookup(n))
        .collect();
    let has_close = config.on_close.is_some() || config.on_close_args.is_some();
    let closes = opens.iter().filter(|_| has_close).filter_map(|open| {
        EventSpec::all()
            .iter()
            .find(|e| e.kind == EventKind::Close && e.anchor == open.anchor)
    });
    let mut events = opens.clone();
    events.extend(closes);
    events
}

/// Checks a rendered URL against the allow-lists before anything runs.
pub fn check_url(config: &LaunchConfig, text: &str) -> Result<url::Url, LaunchError> {
    let url = url::Url::parse(text)
        .map_err(|e| LaunchError::NotAllowed(format!("not a valid URL ({e})")))?;
    let scheme = url.scheme();
    if !config
        .allowed_schemes
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
        Some(host)
            if !config
                .allowed_hosts
                .iter()
                .any(|h| h.eq_ignore_ascii_case(host)) =>
        {
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

/// A launch bridge's templates, parsed once.
pub struct Launcher {
    config: LaunchConfig,
    url: Option<Template>,
    on_close_url: Option<Template>,
    args: Vec<Template>,
    on_close_args: Option<Vec<Template>>,
    client: Option<reqwest::Client>,
}

impl Launcher {
    pub fn new(config: &LaunchConfig) -> Result<Self, BridgeError> {
        let setup = |e: crate::template::TemplateError| BridgeError::Setup(e.to_string());
        let url_template = |t: &Option<String>| {
            t.as_deref()
                .map(|t| Template::parse(t, Escape::UrlComponent))
                .transpose()
                .map_err(setup)
        };
        let args = |list: &[String]| {
            list.iter()
                .map(|a| Template::parse(a, Escape::Argument))
                .collect::<Result<Vec<_>, _>>()
                .map_err(setup)
        };
        let client = if config.fetch {
            Some(
                reqwest::Client::builder()
                    .timeout(Duration::from_millis(config.fetch_timeout_ms))
                    // A redirect could lead off the allow-listed hosts.
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| BridgeError::Setup(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Launcher {
            url: url_template(&config.url)?,
            on_close_url: url_template(&config.on_close)?,
            args: args(&config.args)?,
            on_close_args: config.on_close_args.as_deref().map(args).transpose()?,
            client,
            config: config.clone(),
        })
    }

    /// Renders the launch (or the on-close action) for a context and checks it.
    pub fn prepare(&self, data: &ContextData, closing: bool) -> Result<Action, LaunchError> {
        let now = time::OffsetDateTime::now_utc();
        let mapping = &self.config.identifiers;
        match self.config.mode() {
            Some(LaunchMode::Url) => {
                let template = if closing {
                    self.on_close_url.as_ref()
                } else {
                    self.url.as_ref()
                };
                let template =
                    template.ok_or_else(|| LaunchError::NotAllowed("no URL configured".into()))?;
                let text = template.render(data, mapping, now)?;
                Ok(Action::Url(check_url(&self.config, &text)?))
            }
            Some(LaunchMode::Exec) => {
                let templates = if closing {
                    self.on_close_args.as_deref().unwrap_or_default()
                } else {
                    &self.args
                };
                let args = templates
                    .iter()
                    .map(|t| t.render(data, mapping, now))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(Action::Exec(args))
            }
            None => Err(LaunchError::NotAllowed("neither url nor program".into())),
        }
    }

    /// Starts the launch. `Ok(Some(child))` when a process was started (its exit is worth
    /// watching), `Ok(None)` when a fetch completed.
    pub async fn perform(
        &self,
        action: &Action,
    ) -> Result<Option<(String, tokio::process::Child)>, LaunchError> {
        match action {
            Action::Url(url) if self.config.fetch => {
                let host = url.host_str().unwrap_or_default().to_owned();
                let client = self.client.as_ref().ok_or_else(|| LaunchError::Fetch {
                    host: host.clone(),
                    reason: "no HTTP client".into(),
                })?;
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
            Action::Url(url) => {
                let (program, leading) = self
                    .config
                    .opener
                    .split_first()
                    .ok_or_else(|| LaunchError::NotAllowed("no opener configured".into()))?;
                let mut args = leading.to_vec();
                // The whole URL is one argument: no shell splits or expands it.
                args.push(url.to_string());
                spawn(program, &args).map(|c| Some((program.clone(), c)))
            }
            Action::Exec(args) => {
                let program = self.config.program.clone().unwrap_or_default();
                spawn(&program, args).map(|c| Some((program, c)))
            }
        }
    }

    /// A description of an action for the audit trail (no full URL: it may carry identifiers).
    fn describe(&self, action: &Action) -> String {
        match action {
            Action::Url(url) if self.config.fetch => {
                format!(
                    "requested {}://{}{}",
                    url.scheme(),
                    url.host_str().unwrap_or(""),
                    url.path()
                )
            }
            Action::Url(url) => format!("opened a {} URL", url.scheme()),
            Action::Exec(args) => format!(
                "started {} with {} argument(s)",
                self.config.program.as_deref().unwrap_or(""),
                args.len()
            ),
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

/// What a launch task tells the bridge's loop.
enum Outcome {
    Launched {
        event: &'static str,
        event_id: String,
        what: String,
    },
    Failed {
        event: &'static str,
        event_id: String,
        error: LaunchError,
    },
}

struct Pending {
    action: Action,
    event: &'static str,
    event_id: String,
}

/// Runs a launch bridge until `stop`.
pub async fn run(
    config: LaunchConfig,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let launcher = Arc::new(Launcher::new(&config)?);
    let opens: Vec<&'static EventSpec> = config
        .events
        .iter()
        .filter_map(|n| EventSpec::lookup(n))
        .collect();
    let mut feed = session.join(subscribed_events(&config)).await?;
    session.set_state(LinkState::Following, "in the session");
    let debounce = Duration::from_millis(config.debounce_ms);
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(64);
    let mut handled = crate::session::RecentIds::default();
    // The context of the last launch: what an on-close action renders (a close event carries
    // little more than ids).
    let mut launched: Option<ContextData> = None;
    let mut pending: Option<Pending> = None;
    let mut quiet_until: Option<Instant> = None;

    let start = |p: Pending| {
        let (launcher, done, session) = (launcher.clone(), done_tx.clone(), session.clone());
        tokio::spawn(async move {
            let what = launcher.describe(&p.action);
            match launcher.perform(&p.action).await {
                Ok(child) => {
                    let _ = done
                        .send(Outcome::Launched {
                            event: p.event,
                            event_id: p.event_id.clone(),
                            what,
                        })
                        .await;
                    if let Some((program, mut child)) = child {
                        // Reaped here so no zombie is left; a failure exit breaks the link.
                        match child.wait().await {
                            Ok(status) if status.success() => {}
                            Ok(status) => {
                                let _ = done
                                    .send(Outcome::Failed {
                                        event: p.event,
                                        event_id: p.event_id,
                                        error: LaunchError::Exit {
                                            program,
                                            status: status.to_string(),
                                        },
                                    })
                                    .await;
                            }
                            Err(e) => tracing::debug!(bridge = %session.name(), "wait: {e}"),
                        }
                    }
                }
                Err(error) => {
                    let _ = done
                        .send(Outcome::Failed {
                            event: p.event,
                            event_id: p.event_id,
                            error,
                        })
                        .await;
                }
            }
        });
    };

    loop {
        let window_end = quiet_until.filter(|_| pending.is_some());
        tokio::select! {
            _ = crate::session::stopped(&mut stop) => return Ok(()),
            change = feed.next() => {
                let change = change?;
                let id = change.id.clone();
                // A replay after joining again: already handled.
                if !handled.first_time(&id) {
                    feed.reply(&id, 200);
                    continue;
                }
                let event = change.event;
                let closing = event.kind == EventKind::Close;
                let data = if opens.iter().any(|o| std::ptr::eq(*o, event)) {
                    ContextData::from_change(&change)
                } else if closing {
                    // Only the close of what was launched runs the on-close action.
                    let anchor = event.anchor_key().unwrap_or_default();
                    match launched.take() {
                        Some(data) if data.id_of(anchor) == change.anchor_id() => data,
                        other => {
                            launched = other;
                            feed.reply(&id, 200);
                            continue;
                        }
                    }
                } else {
                    feed.reply(&id, 200);
                    continue;
                };
                match launcher.prepare(&data, closing) {
                    Ok(action) => {
                        feed.reply(&id, 202);
                        if !closing {
                            launched = Some(data);
                        }
                        let next = Pending { action, event: event.name, event_id: id };
                        let now = Instant::now();
                        if quiet_until.is_none_or(|t| t <= now) {
                            quiet_until = Some(now + debounce);
                            pending = None;
                            start(next);
                        } else {
                            // Coalesced: only the latest switch in the window launches.
                            pending = Some(next);
                        }
                    }
                    Err(error) => {
                        feed.reply(&id, 409);
                        let reason = error.to_string();
                        session.rejected(
                            &format!("refused to launch for {}: {reason}", event.name),
                            format!("{} {id}: {reason}", event.name),
                        );
                        session.set_state(
                            LinkState::Refused { status: None },
                            format!("could not follow {}: {reason}", event.name),
                        );
                    }
                }
            }
            _ = async { tokio::time::sleep_until(window_end.unwrap_or_else(Instant::now)).await }, if window_end.is_some() => {
                quiet_until = Some(Instant::now() + debounce);
                if let Some(next) = pending.take() {
                    start(next);
                }
            }
            Some(outcome) = done_rx.recv() => match outcome {
                Outcome::Launched { event, event_id, what } => {
                    session.acted(format!("{what} for {event} {event_id}"));
                    let state = match config.link_state_after_launch {
                        AfterLaunch::Unconfirmed => LinkState::Unconfirmed,
                        AfterLaunch::Following => LinkState::Following,
                    };
                    session.set_state(state, format!("launched for {event}"));
                }
                Outcome::Failed { event, event_id, error } => {
                    let reason = error.to_string();
                    tracing::warn!(bridge = %session.name(), "launch for {event} failed: {reason}");
                    session.set_state(LinkState::Broken, format!("launch failed: {reason}"));
                    session.sync_error(
                        &event_id,
                        event,
                        &format!("{} could not follow {event}: {reason}", session.name()),
                    );
                }
            },
        }
    }
}
