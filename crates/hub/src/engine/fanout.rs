//! A context change decided and fanned out (spec 2-6), and the SyncErrors the hub sends when a
//! subscriber fails.

use super::*;

impl Engine {
    /// Applies a validated context change and fans it out (spec 2-6).
    pub fn publish(&self, grant: &TokenGrant, change: ContextChange) -> Result<(), PublishError> {
        let topic = self
            .topic_for(grant, &change.topic)
            .ok_or(PublishError::UnknownTopic)?;
        if !grant.scopes.allows(change.event.name, Access::Write) {
            return Err(PublishError::Forbidden(change.event.name));
        }
        let event = change.event;
        let mut state = topic.state.lock();
        // Refused, not queued: the requesting app learns at once that nobody followed.
        if let Some(refused) = self.refused_now(state.paused, event) {
            return Err(refused);
        }
        let applied = state
            .contexts
            .apply(&change)
            .map_err(|refusal| match refusal {
                ContextRefusal::Conflict(m) => PublishError::Conflict(m),
                ContextRefusal::Invalid(m) => PublishError::Invalid(m),
            })?;
        let event_id: Arc<str> = change.id.as_str().into();
        // A posted SyncError goes to the *other* SyncError subscribers (spec 2-5).
        let exclude_client = (event.name == SYNC_ERROR).then_some(grant.client_id.as_str());
        let now = Instant::now();
        let mut overflowed = Vec::new();
        let mut awaited = false;
        for (id, sub) in state.subs.iter_mut() {
            if exclude_client == Some(sub.info.client_id.as_str()) {
                continue;
            }
            let acknowledges = sub.acknowledges;
            let Link::Connected {
                frames,
                outlet,
                awaiting,
                ..
            } = &mut sub.link
            else {
                continue;
            };
            // The event itself to those who want it; otherwise the opens it implies, so a
            // subscriber of Patient-open alone still follows the patient (spec 2-5).
            let wanted = sub.events.iter().any(|e| std::ptr::eq(*e, event));
            let to_send = std::iter::once((event, &applied.frame))
                .filter(|_| wanted)
                .chain(
                    applied
                        .implied
                        .iter()
                        .filter(|(spec, _)| {
                            !wanted && sub.events.iter().any(|e| std::ptr::eq(*e, *spec))
                        })
                        .map(|(spec, frame)| (*spec, frame)),
                );
            for (spec, frame) in to_send {
                match offer(frames, outlet.as_deref(), frame) {
                    Ok(()) => {
                        awaited |= acknowledges;
                        remember_sent(
                            awaiting,
                            acknowledges,
                            Awaiting {
                                event_id: event_id.clone(),
                                event_name: spec.name,
                                sent: now,
                            },
                        );
                    }
                    Err(mpsc::error::TrySendError::Full(_)) => {
                        overflowed.push(*id);
                        break;
                    }
                    // The socket task is gone; its own close report removes the subscription.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        if awaited {
            self.inner.alarm.by(now + self.inner.settings.ack_timeout());
        }
        // Told under the topic's lock, so listeners (history) see changes in the order they
        // were applied; observers only queue, they never wait.
        if event.name == SYNC_ERROR {
            self.emit(EngineEvent::SyncError {
                topic: topic.id.clone(),
                about: grant.client_name.clone(),
                subscriber: None,
                event_id: change.id.clone(),
                event_name: event.name.to_owned(),
                diagnostics: sync_error_diagnostics(&change).unwrap_or_default(),
            });
        }
        self.emit(EngineEvent::ContextChanged {
            topic: topic.id.clone(),
            event: event.name,
            event_id: change.id.clone(),
            requester: grant.client_name.clone(),
            summary: applied.summary.map(Box::new),
            current: state.contexts.current_summary().map(Box::new),
            frame: applied.frame,
        });
        for id in overflowed {
            self.fail_subscriber(
                &topic,
                &mut state,
                id,
                &change.id,
                event.name,
                "did not keep up with notifications (its queue is full) and was unsubscribed",
            );
        }
        Ok(())
    }

    /// Why a change of `event` on `topic` would be refused now (the clinician paused, or the
    /// hub takes no changes), for a bridge that must answer before it asks (a CCOW survey).
    pub fn refusal_now(&self, topic: &str, event: &'static EventSpec) -> Option<PublishError> {
        let topic = self.inner.topics.read().get(topic).cloned()?;
        let paused = topic.state.lock().paused;
        self.refused_now(paused, event)
    }

    pub(super) fn refused_now(
        &self,
        paused: bool,
        event: &'static EventSpec,
    ) -> Option<PublishError> {
        if event.kind == EventKind::Infrastructure {
            return None;
        }
        if let Some(why) = self.inner.refusing.read().clone() {
            return Some(PublishError::Unavailable(why));
        }
        paused.then(|| {
            PublishError::Conflict(format!(
                "context sharing is paused at this workstation; {} was not relayed",
                event.name
            ))
        })
    }

    /// A subscriber failed in a way that ends its subscription: SyncError to the others, then
    /// unsubscribe it (spec 2-5: an unresponsive subscriber SHALL be unsubscribed).
    pub(super) fn fail_subscriber(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        id: SubId,
        event_id: &str,
        event_name: &str,
        why: &'static str,
    ) {
        let Some(name) = state.subs.get(&id).map(|s| s.info.display_name()) else {
            return;
        };
        let diagnostics = format!("{name} {why}");
        self.send_sync_error(topic, state, id, event_id, event_name, &diagnostics);
        self.end_subscription(
            topic,
            state,
            id,
            LinkState::Unresponsive,
            Some(why),
            CLOSE_POLICY,
        );
    }

    /// Sends a hub-generated SyncError about subscriber `about` to every other SyncError
    /// subscriber of the topic.
    pub(super) fn send_sync_error(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        about: SubId,
        event_id: &str,
        event_name: &str,
        diagnostics: &str,
    ) {
        let Some(subscriber) = state.subs.get(&about).map(|sub| sub.info.clone()) else {
            return;
        };
        let report = SyncErrorReport {
            event_id,
            event_name,
            subscriber_name: subscriber.spec_name(),
            diagnostics,
            code: IssueCode::Processing,
        };
        let frame: FrameText = report
            .notification(&topic.id, &ids::event_id(), &now_iso())
            .into();
        let sync_error = EventSpec::lookup(SYNC_ERROR);
        for (id, sub) in state.subs.iter_mut() {
            if *id == about || !sync_error.is_some_and(|e| sub.wants(e)) {
                continue;
            }
            if let Link::Connected { frames, outlet, .. } = &sub.link {
                // A SyncError about a full queue must not recurse into another one.
                let _ = offer(frames, outlet.as_deref(), &frame);
            }
        }
        tracing::warn!(topic = %short(&topic.id), "SyncError: {diagnostics}");
        self.emit(EngineEvent::SyncError {
            topic: topic.id.clone(),
            about: subscriber.display_name(),
            subscriber: Some(subscriber),
            event_id: event_id.to_owned(),
            event_name: event_name.to_owned(),
            diagnostics: diagnostics.to_owned(),
        });
    }
}

/// Puts `frame` on the subscriber's wire directly when nothing is queued ahead of it, else
/// queues it. Called under the topic's lock, so no other frame for this subscriber can be
/// queued between the look at the queue and the write.
pub(super) fn offer(
    frames: &mpsc::Sender<FrameText>,
    outlet: Option<&dyn Outlet>,
    frame: &FrameText,
) -> Result<(), mpsc::error::TrySendError<FrameText>> {
    if let Some(outlet) = outlet
        && frames.capacity() == frames.max_capacity()
        && outlet.try_write(frame)
    {
        return Ok(());
    }
    frames.try_send(frame.clone())
}

pub(super) fn sync_error_diagnostics(change: &ContextChange) -> Option<String> {
    let outcome = change.entry("operationoutcome")?.resource()?;
    let issue = outcome.get("issue")?.get(0)?;
    issue.get("diagnostics")?.as_str().map(str::to_owned)
}
