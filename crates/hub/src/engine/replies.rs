//! What subscribers answer: each `{id, status}` reply matched to the event it acknowledges or
//! refuses (spec 2-5).

use super::*;

impl Engine {
    /// Handles a text frame a subscriber sent: its `{id, status}` reply to a notification.
    pub fn reply(&self, endpoint: &str, text: &str) {
        let Some(reply) = SubscriberReply::parse(text) else {
            tracing::debug!("ignoring a subscriber frame that is not an {{id, status}} reply");
            return;
        };
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        let Some(sub) = state.subs.get_mut(&id) else {
            return;
        };
        let Link::Connected {
            awaiting, overdue, ..
        } = &mut sub.link
        else {
            return;
        };
        let Some(pos) = awaiting.iter().position(|a| *a.event_id == *reply.id) else {
            return;
        };
        // The oldest, which a check may be about, is answered: the next gets its own check.
        if pos == 0 {
            *overdue = None;
        }
        let (answered, after) = awaiting
            .remove(pos)
            .map(|a| (a.event_name, a.sent.elapsed()))
            .unwrap_or_default();
        let delivery = EngineEvent::Delivery {
            subscriber: sub.info.clone(),
            event_id: reply.id.clone(),
            event_name: answered,
            outcome: match reply.status {
                None | Some(200..=299) => Delivery::Acknowledged {
                    status: reply.status.unwrap_or(200),
                    after,
                },
                Some(status) => Delivery::Refused { status, after },
            },
        };
        match reply.status {
            // No status (`@medplum/core`) means received; any 2xx is success (spec 2-5).
            None | Some(200..=299) => {
                let recovered = (sub.state != sub.following()).then(|| {
                    sub.state = sub.following();
                    EngineEvent::Link {
                        subscriber: sub.info.clone(),
                        state: sub.state,
                        detail: None,
                    }
                });
                // Told once the topic is free again: with a thousand subscribers answering,
                // the observers' work must not hold up the next change's fan-out.
                drop(state);
                self.emit(delivery);
                if let Some(recovered) = recovered {
                    self.emit(recovered);
                }
            }
            Some(status) => {
                // Before the SyncError it causes.
                self.emit(delivery);
                sub.state = LinkState::Refused {
                    status: Some(status),
                };
                let info = sub.info.clone();
                let name = info.display_name();
                let diagnostics = match status {
                    409 => format!("{name} refused to follow {answered} (status 409)"),
                    400..=499 => format!("{name} refused {answered} (status {status})"),
                    _ => format!("{answered} was not delivered to {name}: status {status}"),
                };
                self.send_sync_error(&topic, &mut state, id, &reply.id, answered, &diagnostics);
                drop(state);
                self.emit(EngineEvent::Link {
                    subscriber: info,
                    state: LinkState::Refused {
                        status: Some(status),
                    },
                    detail: Some(diagnostics),
                });
            }
        }
    }

    /// The socket's task has read everything its app sent before it was asked to (see
    /// [`Connection::read_now`]): an acknowledgement still missing now is missing.
    pub fn read_everything_sent(&self, endpoint: &str) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        if let Some(Subscription {
            link:
                Link::Connected {
                    overdue: Some(check),
                    ..
                },
            ..
        }) = state.subs.get_mut(&id)
        {
            let now = Instant::now();
            check.read_at = Some(now);
            // Blamed soon, not a second later; but not at once: after a freeze the reactor may
            // not yet have seen the socket readable, so the task's non-blocking read can miss
            // a reply that the next regular read takes.
            self.inner.alarm.by(now + READ_SETTLE);
        }
    }
}
