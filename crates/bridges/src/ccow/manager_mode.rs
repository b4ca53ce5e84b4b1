//! Manager mode as a bridge: the context manager served on `127.0.0.1:port`, a commit a CCOW
//! application makes published under its name, and a change on the topic carried to the CCOW
//! applications as a surveyed transaction of Lockstep's own.

use super::bridge::{CcowBridge, events};
use super::follow;
use super::items::Subjects;
use super::manager::{Context, Items, Participant};
use super::server::{Committing, ManagerServer, ParticipantEvent, ServerSettings, SessionSide};
use crate::error::BridgeError;
use crate::legacy::Current;
use crate::session::{RecentIds, Session, stopped};
use lockstep_hub::LinkState;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// How many applications may join at once.
const MAX_PARTICIPANTS: usize = 64;

/// Manager mode: the context manager on `127.0.0.1:port`, and the session's changes carried
/// to it.
pub(super) async fn run(
    bridge: Arc<CcowBridge>,
    session: Session,
    mut stop: watch::Receiver<bool>,
) -> Result<(), BridgeError> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", bridge.port))
        .await
        .map_err(|e| {
            BridgeError::Setup(format!(
                "cannot serve the CCOW registry on 127.0.0.1:{}: {e} (is another context \
                 manager running? then it is the one CCOW applications use)",
                bridge.port
            ))
        })?;
    let origin = format!(
        "http://{}",
        listener
            .local_addr()
            .map_err(|e| BridgeError::Setup(e.to_string()))?
    );
    let published = Arc::new(Mutex::new(RecentIds::default()));
    let side = Arc::new(SessionLink {
        session: session.clone(),
        bridge: bridge.clone(),
        published: published.clone(),
    });
    let server = ManagerServer::new(
        ServerSettings {
            survey_timeout: bridge.survey_timeout,
            max_participants: MAX_PARTICIPANTS,
        },
        side,
        origin.clone(),
    );
    let mut feed = session.join(events()).await?;
    let mut serving = tokio::spawn(server.clone().serve(listener, {
        let mut stop = stop.clone();
        async move { stopped(&mut stop).await }
    }));
    session.set_state(
        LinkState::Following,
        format!("the context manager on {origin}"),
    );
    loop {
        tokio::select! {
            () = stopped(&mut stop) => break,
            served = &mut serving => {
                let why = match served {
                    Ok(Ok(())) => "the context manager stopped".to_owned(),
                    Ok(Err(e)) => format!("the context manager failed: {e}"),
                    Err(e) => format!("the context manager failed: {e}"),
                };
                return Err(BridgeError::Setup(why));
            }
            change = feed.next() => {
                let change = change?;
                let id = change.id.clone();
                if !published.lock().first_time(&id) {
                    // Published by this bridge for a CCOW application: already in the CCOW
                    // context.
                    feed.reply(&id, 200);
                    continue;
                }
                carry(&server, &session, &bridge, &change).await;
                feed.reply(&id, 200);
            }
        }
    }
    server.terminate_all().await;
    let _ = tokio::time::timeout(Duration::from_secs(2), serving).await;
    Ok(())
}

/// Carries a change on the topic to the CCOW applications; a dissent becomes a SyncError naming
/// the application.
async fn carry(
    server: &ManagerServer,
    session: &Session,
    bridge: &CcowBridge,
    change: &lockstep_fhircast::ContextChange,
) {
    let event = change.event;
    let context =
        serde_json::Value::Array(change.entries.iter().map(|e| e.value.clone()).collect());
    let items = follow::items_for(event, &context, &bridge.identifiers, &bridge.accession_item);
    let items = match items {
        Ok(items) => items,
        Err(why) => {
            session.rejected(
                &format!("{} not carried to the CCOW applications", event.name),
                format!("{}: {why}", event.name),
            );
            session.sync_error(
                &change.id,
                event.name,
                &format!(
                    "{} was not carried to the CCOW applications: {why}",
                    event.name
                ),
            );
            return;
        }
    };
    match server.instigate(&items).await {
        Ok(result) if result.responses.is_empty() => {
            session.acted(format!("{} carried to the CCOW applications", event.name));
        }
        Ok(result) => {
            for response in &result.responses {
                session.sync_error(
                    &change.id,
                    event.name,
                    &format!("{response}; the CCOW applications stay where they were"),
                );
            }
        }
        Err(error) => session.sync_error(
            &change.id,
            event.name,
            &format!("the CCOW context could not be changed: {error}"),
        ),
    }
}

/// The FHIRcast session's side of the CCOW context.
struct SessionLink {
    session: Session,
    bridge: Arc<CcowBridge>,
    /// Ids of the requests this bridge published, so its own feed does not carry them back.
    published: Arc<Mutex<RecentIds>>,
}

impl SessionLink {
    fn current(&self) -> Current {
        let engine = self.session.engine();
        engine
            .current_context_of(self.session.topic())
            .map(|c| Current::from_context(&c.context))
            .unwrap_or_default()
    }

    fn request_for(&self, items: &Items) -> Result<follow::Follow, String> {
        let subjects =
            Subjects::read(items.iter(), &self.bridge.accession_item).map_err(|e| e.message)?;
        follow::request_for(&subjects, &self.bridge.identifiers, &self.current())
    }
}

impl SessionLink {
    /// A change a CCOW application committed, requested of the session.
    async fn follow_committed(&self, context: &Context, by: &str) {
        let follow = match self.request_for(&context.items) {
            Ok(follow) => follow,
            Err(why) => {
                self.session.rejected(
                    &format!("a change {by} committed was not followed"),
                    format!("{by}: {why}"),
                );
                self.session.sync_error(
                    "",
                    "",
                    &format!(
                        "{by} changed the CCOW context, which the session did not follow: {why}"
                    ),
                );
                return;
            }
        };
        let follow::Follow::Request { event, context } = follow else {
            return;
        };
        let (id, request) = self.session.request(event.name, context);
        self.published.lock().first_time(&id);
        if let Err(error) = self.session.publish_for(&request, by).await {
            self.session.sync_error(
                &id,
                event.name,
                &format!(
                    "{by} changed the CCOW context, which the session did not follow: {error}"
                ),
            );
        }
    }
}

impl SessionSide for SessionLink {
    fn survey(&self, proposed: &Items) -> Result<(), String> {
        match self.request_for(proposed)? {
            follow::Follow::Request { event, .. } => {
                let engine = self.session.engine();
                match engine.refusal_now(self.session.topic(), event) {
                    Some(refused) => Err(refused.to_string()),
                    None => Ok(()),
                }
            }
            follow::Follow::Nothing => Ok(()),
        }
    }

    fn committed<'a>(&'a self, context: &'a Context, by: &'a str) -> Committing<'a> {
        Box::pin(self.follow_committed(context, by))
    }

    fn participant(&self, participant: &Participant, event: ParticipantEvent) {
        let name = participant.app_name();
        let (state, detail) = match event {
            ParticipantEvent::Joined => {
                (LinkState::Following, "joined the CCOW context".to_owned())
            }
            ParticipantEvent::Followed => {
                (LinkState::Following, "followed the last change".to_owned())
            }
            ParticipantEvent::Refused(why) => (LinkState::Refused { status: None }, why),
            ParticipantEvent::Silent => (
                LinkState::Unresponsive,
                "did not answer the last change in time".to_owned(),
            ),
            ParticipantEvent::Suspended => (
                LinkState::Off,
                "the link is broken at the application (suspended); it follows nothing until it resumes"
                    .to_owned(),
            ),
            ParticipantEvent::Resumed => (LinkState::Following, "resumed the link".to_owned()),
            ParticipantEvent::Left => {
                self.session.remove_app(name);
                return;
            }
        };
        self.session.set_app_state(name, state, detail);
    }
}
