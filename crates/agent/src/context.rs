//! The session's current context as the desktop follows it: the summary and the change that
//! made it, pushed on every change by an engine observer (in a headless agent nobody listens,
//! and a change wakes no task at all).

use crate::desktop::Desktop;
use lockstep_fhircast::summary::ContextSummary;
use lockstep_hub::EngineEvent;
use lockstep_hub::clock::now_iso;
use serde::Serialize;
use std::sync::Arc;
use tokio::sync::watch;

/// The latest context change of the clinician's session.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContextNow {
    /// What the current context names; `None` when nothing is open.
    pub summary: Option<ContextSummary>,
    /// The change that made it; `None` until the first change since the agent started.
    pub change: Option<LastChange>,
}

/// Who changed the context, with what, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LastChange {
    /// RFC 3339 (UTC), when the hub accepted it.
    pub at: String,
    pub event: String,
    /// The registered name of the app that asked for the change.
    pub app: String,
}

/// Keeps `tx` on the topic's current context, and the tray's patient flag.
pub(crate) fn follow_context(
    topic: Arc<str>,
    tx: watch::Sender<ContextNow>,
    desktop: Arc<Desktop>,
) -> lockstep_hub::Observer {
    Arc::new(move |event| {
        let EngineEvent::ContextChanged {
            topic: changed,
            event,
            requester,
            current,
            ..
        } = event
        else {
            return;
        };
        if *changed != topic {
            return;
        }
        desktop.show_patient(current.is_some());
        tx.send_replace(ContextNow {
            summary: current.as_deref().cloned(),
            change: Some(LastChange {
                at: now_iso(),
                event: (*event).to_owned(),
                app: requester.clone(),
            }),
        });
    })
}
