//! The launch bridge (out): on the configured events, open a URL or start a program with the
//! context rendered into it, as an argument vector and never through a shell.
//!
//! Each notification is rendered when it arrives, so the hub is answered at once: 202 when
//! the launch will happen (FHIRcast's "accepted; a SyncError follows if it fails"), 409 when the
//! context cannot be rendered safely. The first switch launches at once; switches within
//! `debounce_ms` after a launch are coalesced into one launch of the latest at the window's end.

mod launcher;
mod smart;

pub use smart::{SmartLaunch, SmartLauncher};

pub use launcher::{
    Action, AfterLaunch, AllowList, LaunchError, LaunchMode, Launcher, UrlOpen, check_url,
};

use crate::error::BridgeError;
use crate::session::Session;
use crate::template::ContextData;
use lockstep_fhircast::{EventKind, EventSpec};
use lockstep_hub::LinkState;
use std::sync::Arc;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;

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
    launcher: Arc<Launcher>,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let opens: &[&'static EventSpec] = &launcher.opens;
    let mut feed = session.join(launcher.subscribed_events()).await?;
    session.set_state(LinkState::Following, "in the session");
    let debounce = launcher.debounce;
    let (done_tx, mut done_rx) = mpsc::channel::<Outcome>(64);
    let mut handled = crate::session::RecentIds::default();
    // The context of the last launch: what an on-close action renders (a close event carries
    // little more than ids).
    let mut launched: Option<ContextData> = None;
    let mut pending: Option<Pending> = None;
    let mut quiet_until: Option<Instant> = None;

    let start = |p: Pending| {
        let (done, session) = (done_tx.clone(), session.clone());
        tokio::spawn(async move {
            let what = p.action.describe();
            match p.action.perform().await {
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
                    let mut data = ContextData::from_change(&change);
                    // Where the agent launches SMART apps, each launch is registered for its
                    // context (`{smart.launch}`).
                    data.smart = session.smart().map(|smart| smart.launch(&data));
                    data
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
                    let state = match launcher.after_launch {
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
