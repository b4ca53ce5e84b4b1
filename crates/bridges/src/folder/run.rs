//! The folder bridge's loop: it joins the session for the out side, watches (or polls) the
//! inbox, and turns what happened to each file into the bridge's link state and SyncErrors.

use super::bridge::FolderBridge;
use super::files::look_at;
use super::inbox::Inbox;
use super::incoming::{Incoming, Watch};
use super::outcome::{Handled, Rejection};
use super::ready::{FsChange, Readiness};
use super::writer::{WriteError, Writer};
use crate::error::BridgeError;
use crate::session::Session;
use crate::template::ContextData;
use lockstep_hub::LinkState;
use notify::event::{AccessKind, AccessMode, ModifyKind, RenameMode};
use notify::{EventKind as FsKind, RecursiveMode, Watcher};
use parking_lot::Mutex;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};

/// What the OS reported, per file.
fn classify(event: notify::Event) -> Vec<(PathBuf, FsChange)> {
    let mut paths = event.paths;
    let change = match event.kind {
        FsKind::Access(AccessKind::Close(AccessMode::Write)) => FsChange::Closed,
        FsKind::Modify(ModifyKind::Name(RenameMode::To)) => FsChange::Renamed,
        FsKind::Modify(ModifyKind::Name(RenameMode::Both)) => {
            return paths
                .pop()
                .map(|p| (p, FsChange::Renamed))
                .into_iter()
                .collect();
        }
        FsKind::Modify(ModifyKind::Name(_)) | FsKind::Remove(_) | FsKind::Access(_) => {
            return Vec::new();
        }
        FsKind::Create(_) => FsChange::Created,
        FsKind::Modify(ModifyKind::Metadata(_)) => FsChange::Touched,
        _ => FsChange::Written,
    };
    paths.into_iter().map(|p| (p, change)).collect()
}

/// Runs a folder bridge until `stop`.
pub async fn run(
    bridge: Arc<FolderBridge>,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let own_events: Arc<Mutex<VecDeque<String>>> = Arc::default();
    let writer = bridge
        .sides
        .outgoing()
        .map(|out| Writer::new(out, &bridge.identifiers))
        .transpose()?
        .map(Arc::new);
    let mut feed = match bridge.sides.outgoing() {
        Some(out) => {
            std::fs::create_dir_all(&out.dir).map_err(|e| {
                BridgeError::Setup(format!("cannot use {}: {e}", out.dir.display()))
            })?;
            Some(session.join(out.events.clone()).await?)
        }
        None => None,
    };
    let inbox = match bridge.sides.incoming() {
        Some(inbound) => {
            // Canonical, because the OS reports events under the folder's real path.
            let dir = std::fs::create_dir_all(&inbound.dir)
                .and_then(|()| std::fs::canonicalize(&inbound.dir))
                .map_err(|e| {
                    BridgeError::Setup(format!("cannot use {}: {e}", inbound.dir.display()))
                })?;
            let inbound = Incoming {
                dir,
                ..inbound.clone()
            };
            let inbox = Inbox::new(
                &inbound,
                &bridge.identifiers,
                session.clone(),
                own_events.clone(),
            );
            Some(Arc::new(Mutex::new(inbox)))
        }
        None => None,
    };

    // OS notifications, or polling when configured (or when the OS refuses to watch).
    let (fs_tx, mut fs_rx) = mpsc::unbounded_channel::<notify::Result<notify::Event>>();
    let mut _watcher: Option<notify::RecommendedWatcher> = None;
    let mut poll_every: Option<Duration> = None;
    let watched_dir = inbox.as_ref().map(|i| i.lock().config.dir.clone());
    if let (Some(inbound), Some(dir)) = (bridge.sides.incoming(), watched_dir) {
        match inbound.watch {
            Watch::Poll(every) => poll_every = Some(every),
            Watch::Notify => {
                let tx = fs_tx.clone();
                let watched = notify::recommended_watcher(move |event| {
                    let _ = tx.send(event);
                })
                .and_then(|mut w| {
                    w.watch(&dir, RecursiveMode::NonRecursive)?;
                    Ok(w)
                });
                match watched {
                    Ok(w) => _watcher = Some(w),
                    Err(e) => {
                        tracing::warn!(bridge = %session.name(), "cannot watch the folder ({e}); polling it every second instead");
                        poll_every = Some(Duration::from_secs(1));
                    }
                }
            }
        }
    }
    drop(fs_tx);
    let settle = bridge
        .sides
        .incoming()
        .map_or(Duration::from_millis(250), |i| i.settle);
    // Linux's watcher reports "closed after writing"; the others do not.
    let closes_reported = cfg!(target_os = "linux") && _watcher.is_some();
    let mut readiness = Readiness::new(settle, closes_reported);
    // Polling: a file must look the same over at least two scans and the settling time.
    let stable = poll_every.map_or(settle, |every| settle.max(every * 2));

    session.set_state(LinkState::Following, "in the session");
    let mut written_ids = crate::session::RecentIds::default();
    let mut poll = tokio::time::interval(poll_every.unwrap_or(Duration::from_secs(3600)));
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    // What is already in the folder is read first, oldest first, once settled: a writer may
    // be in the middle of one (polling scans it anyway).
    if let Some(inbox) = &inbox
        && poll_every.is_none()
    {
        let now = tokio::time::Instant::now();
        for path in blocking(inbox, |i| i.backlog()).await {
            readiness.check_later(&path, now);
        }
    }

    loop {
        let next_due = readiness.next_due();
        tokio::select! {
            _ = crate::session::stopped(&mut stop) => return Ok(()),
            change = async {
                match feed.as_mut() {
                    Some(feed) => feed.next().await,
                    None => std::future::pending().await,
                }
            } => {
                let change = change?;
                let Some(feed) = feed.as_ref() else { continue };
                let id = change.id.clone();
                let own = own_events.lock().contains(&id);
                if own || !written_ids.first_time(&id) {
                    // Its own request, or a replay of what was written: nothing to tell the app.
                    feed.reply(&id, 200);
                    continue;
                }
                let Some(writer) = writer.clone() else { continue };
                let data = ContextData::from_change(&change);
                let event = change.event.name;
                let written = tokio::task::spawn_blocking(move || writer.write(&data)).await;
                match written {
                    Ok(Ok(path)) => {
                        feed.reply(&id, 200);
                        session.acted(format!(
                            "wrote {} for {event} {id}",
                            path.file_name().unwrap_or_default().to_string_lossy()
                        ));
                        session.set_state(LinkState::Unconfirmed, format!("file written for {event}"));
                    }
                    Ok(Err(WriteError::Render(e))) => {
                        feed.reply(&id, 409);
                        session.rejected(
                            &format!("refused to write a file for {event}: {e}"),
                            format!("{event} {id}: {e}"),
                        );
                        session.set_state(LinkState::Refused { status: None }, format!("could not follow {event}: {e}"));
                    }
                    Ok(Err(e)) => {
                        feed.reply(&id, 500);
                        session.set_state(LinkState::Broken, format!("could not write a file for {event}: {e}"));
                    }
                    Err(e) => {
                        feed.reply(&id, 500);
                        session.set_state(LinkState::Broken, format!("writing a file failed: {e}"));
                    }
                }
            }
            Some(event) = fs_rx.recv() => {
                let Some(inbox) = &inbox else { continue };
                match event {
                    Ok(event) => {
                        for (path, change) in classify(event) {
                            if readiness.changed(&path, change, tokio::time::Instant::now()) {
                                handle(&session, inbox, path, &mut readiness).await;
                            }
                        }
                    }
                    Err(e) => tracing::warn!(bridge = %session.name(), "folder watch error: {e}"),
                }
            }
            _ = async { tokio::time::sleep_until(next_due.unwrap_or_else(tokio::time::Instant::now)).await }, if next_due.is_some() => {
                let Some(inbox) = &inbox else { continue };
                let now = tokio::time::Instant::now();
                // Looked at on a blocking thread: a share may stall.
                let paths = readiness.due_paths(now);
                let looks = tokio::task::spawn_blocking(move || {
                    paths
                        .into_iter()
                        .map(|p| {
                            let look = look_at(&p);
                            (p, look)
                        })
                        .collect::<HashMap<_, _>>()
                })
                .await
                .unwrap_or_default();
                let due = readiness.due(now, |p| looks.get(p).copied().flatten());
                for path in due {
                    handle(&session, inbox, path, &mut readiness).await;
                }
            }
            _ = poll.tick(), if poll_every.is_some() => {
                let Some(inbox) = &inbox else { continue };
                let scan = blocking(inbox, |i| {
                    i.backlog()
                        .into_iter()
                        .filter_map(|p| look_at(&p).map(|look| (p, look)))
                        .collect::<Vec<_>>()
                })
                .await;
                for path in readiness.scanned(scan, stable, tokio::time::Instant::now()) {
                    handle(&session, inbox, path, &mut readiness).await;
                }
            }
        }
    }
}

/// Runs `f` on the inbox on a blocking thread: file systems (shares above all) may stall,
/// and must not stall the runtime the hub runs on.
async fn blocking<T: Send + Default + 'static>(
    inbox: &Arc<Mutex<Inbox>>,
    f: impl FnOnce(&mut Inbox) -> T + Send + 'static,
) -> T {
    let inbox = inbox.clone();
    tokio::task::spawn_blocking(move || f(&mut inbox.lock()))
        .await
        .unwrap_or_default()
}

async fn handle(
    session: &Session,
    inbox: &Arc<Mutex<Inbox>>,
    path: PathBuf,
    readiness: &mut Readiness,
) {
    let looked_at = path.clone();
    let (handled, max_age) = blocking(inbox, move |i| {
        (i.handle(&path), i.config.max_file_age_seconds)
    })
    .await;
    if let Some(Handled::Rejected(Rejection::Partial(_))) = &handled {
        // Left in place for its writer to finish; looked at again once it would be stale,
        // so that a file no one finishes is rejected, not kept forever.
        let stale_at = tokio::time::Instant::now() + Duration::from_secs(max_age + 1);
        readiness.check_later(&looked_at, stale_at);
    }
    match handled {
        Some(Handled::Requested { event, .. }) => {
            session.set_state(
                LinkState::Following,
                format!("requested {event} from a file"),
            );
        }
        Some(Handled::Rejected(rejection)) => match &rejection {
            Rejection::OtherPatient(_) => {
                let diagnostics = format!(
                    "{} sent a file that names another patient than the current context; the session was not switched",
                    session.name()
                );
                session.sync_error("", "", &diagnostics);
                session.set_state(
                    LinkState::Broken,
                    "its app shows another patient than the session",
                );
            }
            Rejection::Unmapped(why) | Rejection::Unresolvable(why) | Rejection::Refused(why) => {
                let diagnostics = format!(
                    "{} could not pass on a change from its app: {why}",
                    session.name()
                );
                session.sync_error("", "", &diagnostics);
                session.set_state(
                    LinkState::Refused { status: None },
                    format!("refused a change from its app: {why}"),
                );
            }
            _ => {}
        },
        Some(Handled::Ignored(_)) | None => {}
    }
}
