//! Subscribing, re-subscribing and unsubscribing (spec 2-4), attaching a WebSocket, and ending
//! a link: how a subscription begins and ends.

use super::*;

impl Engine {
    /// Subscribes, re-subscribes or unsubscribes (spec 2-4).
    pub fn subscribe(
        &self,
        grant: &TokenGrant,
        req: SubscriptionRequest,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        let topic = self
            .topic_for(grant, &req.topic)
            .ok_or(SubscribeError::UnknownTopic)?;
        match req.mode {
            Mode::Subscribe => self.add_subscription(grant, &topic, req),
            Mode::Unsubscribe => {
                let endpoint = req.channel_endpoint.unwrap_or_default();
                let mut state = topic.state.lock();
                // Another client's endpoint is answered like an unknown one.
                let id = self
                    .lookup_endpoint(&topic, &endpoint)
                    .filter(|id| {
                        state
                            .subs
                            .get(id)
                            .is_some_and(|sub| sub.info.client_id == grant.client_id)
                    })
                    .ok_or(SubscribeError::UnknownEndpoint)?;
                self.end_link(&topic, &mut state, id, LinkEnd::Unsubscribed, CLOSE_NORMAL);
                Ok(SubscribeOutcome { endpoint })
            }
        }
    }

    pub(super) fn lookup_endpoint(&self, topic: &Arc<Topic>, endpoint: &str) -> Option<SubId> {
        let endpoints = self.inner.endpoints.lock();
        let (owner, id) = endpoints.get(endpoint)?;
        Arc::ptr_eq(owner, topic).then_some(*id)
    }

    pub(super) fn add_subscription(
        &self,
        grant: &TokenGrant,
        topic: &Arc<Topic>,
        req: SubscriptionRequest,
    ) -> Result<SubscribeOutcome, SubscribeError> {
        // Events the token may not read are left out of the grant (checklist 23).
        let events: Vec<&'static EventSpec> = req
            .events
            .iter()
            .copied()
            .filter(|e| grant.scopes.allows(e.name, Access::Read))
            .collect();
        if events.is_empty() {
            return Err(SubscribeError::NoReadScope);
        }
        let settings = &self.inner.settings;
        let asked = req.lease_seconds.unwrap_or(settings.lease_seconds_default);
        // A lease never outlives the token that asked for it (spec 2-4).
        let lease =
            Duration::from_secs(asked.min(settings.lease_seconds_max)).min(grant.remaining());
        let own_name = req.subscriber_name.clone();
        let mut state = topic.state.lock();

        if let Some(endpoint) = req.channel_endpoint {
            // Re-subscription replaces the event set and lease of the (topic, endpoint) pair.
            let id = self
                .lookup_endpoint(topic, &endpoint)
                .ok_or(SubscribeError::UnknownEndpoint)?;
            let sub = state
                .subs
                .get_mut(&id)
                // Another client's endpoint is answered like an unknown one.
                .filter(|sub| sub.info.client_id == grant.client_id)
                .ok_or(SubscribeError::UnknownEndpoint)?;
            sub.events = events;
            sub.lease = lease;
            let info = Arc::make_mut(&mut sub.info);
            info.own_name = own_name;
            info.events = frames_events(&sub.events);
            let mut lease_left = None;
            match &mut sub.link {
                Link::Pending { .. } => {}
                Link::Connected {
                    frames,
                    lease_deadline,
                    ..
                } => {
                    lease_left = Some(lease_deadline.saturating_duration_since(Instant::now()));
                    *lease_deadline = Instant::now() + lease;
                    self.inner.alarm.by(*lease_deadline);
                    let confirmation =
                        frames::confirmation(&topic.id, &sub.events, lease.as_secs());
                    let _ = frames.try_send(confirmation.into());
                }
            }
            self.emit(EngineEvent::Renewed {
                subscriber: sub.info.clone(),
                lease_left,
            });
            return Ok(SubscribeOutcome { endpoint });
        }

        // Caps on what one client, and all of them, may hold: each subscription can carry one
        // socket, so these bound sockets too.
        let held = state
            .subs
            .values()
            .filter(|sub| sub.info.client_id == grant.client_id)
            .count();
        if held >= settings.max_subscriptions_per_client {
            return Err(SubscribeError::TooManySubscriptions(format!(
                "client `{}` already holds {held} subscriptions (hub.max_subscriptions_per_client); \
                 unsubscribe one first",
                grant.client_id
            )));
        }
        if self.inner.endpoints.lock().len() >= settings.max_subscriptions_total {
            return Err(SubscribeError::TooManySubscriptions(
                "the hub holds as many subscriptions as it allows (hub.max_subscriptions_total)"
                    .into(),
            ));
        }
        let endpoint = random_token();
        let id = self.inner.next_sub.fetch_add(1, Ordering::Relaxed);
        let deadline = Instant::now() + CONNECT_WINDOW.min(lease);
        self.inner.alarm.by(deadline);
        let info = Arc::new(SubscriberInfo {
            topic: topic.id.clone(),
            registered_name: grant.client_name.clone(),
            own_name,
            client_id: grant.client_id.clone(),
            events: frames_events(&events),
        });
        state.subs.insert(
            id,
            Subscription {
                endpoint: endpoint.clone(),
                info: info.clone(),
                events,
                lease,
                link: Link::Pending { deadline },
                state: LinkState::Pending,
                acknowledges: grant.acknowledges,
            },
        );
        self.inner
            .endpoints
            .lock()
            .insert(endpoint.clone(), (topic.clone(), id));
        drop(state);
        self.emit(EngineEvent::Link {
            subscriber: info,
            state: LinkState::Pending,
            detail: None,
        });
        Ok(SubscribeOutcome { endpoint })
    }

    /// Attaches a WebSocket to a subscribed endpoint: queues the confirmation, then the replay
    /// of the latest unclosed open of each anchor type the subscriber wants (spec 2-4).
    pub fn connect(&self, endpoint: &str) -> Result<Connection, ConnectError> {
        let (topic, id) = self
            .inner
            .endpoints
            .lock()
            .get(endpoint)
            .cloned()
            .ok_or(ConnectError::UnknownEndpoint)?;
        let mut state = topic.state.lock();
        let TopicState { subs, contexts, .. } = &mut *state;
        let sub = subs.get_mut(&id).ok_or(ConnectError::UnknownEndpoint)?;
        if matches!(sub.link, Link::Connected { .. }) {
            return Err(ConnectError::AlreadyConnected);
        }
        let (tx, rx) = mpsc::channel(SUBSCRIBER_QUEUE);
        let (close_tx, close_rx) = oneshot::channel();
        // The queue is fresh and far larger than one confirmation plus a handful of replays.
        let _ =
            tx.try_send(frames::confirmation(&topic.id, &sub.events, sub.lease.as_secs()).into());
        let mut awaiting = VecDeque::new();
        let events = sub.events.clone();
        for open in contexts.replay(move |e| events.iter().any(|w| std::ptr::eq(*w, e))) {
            let _ = tx.try_send(open.frame.clone());
            remember_sent(
                &mut awaiting,
                sub.acknowledges,
                Awaiting {
                    event_id: open.event_id.clone(),
                    event_name: open.event.name,
                    sent: Instant::now(),
                },
            );
        }
        let read_now = Arc::new(Notify::new());
        let now = Instant::now();
        let lease_deadline = now + sub.lease;
        self.inner.alarm.by(lease_deadline);
        if sub.acknowledges && !awaiting.is_empty() {
            self.inner.alarm.by(now + self.inner.settings.ack_timeout());
        }
        sub.link = Link::Connected {
            frames: tx,
            outlet: None,
            close: Some(close_tx),
            lease_deadline,
            awaiting,
            read_now: read_now.clone(),
            overdue: None,
        };
        sub.state = sub.following();
        let (info, following) = (sub.info.clone(), sub.state);
        drop(state);
        self.emit(EngineEvent::Link {
            subscriber: info,
            state: following,
            detail: None,
        });
        Ok(Connection {
            endpoint: endpoint.to_owned(),
            frames: rx,
            close: close_rx,
            read_now,
        })
    }

    /// Gives the engine a direct path to an endpoint's socket (see [`Outlet`]).
    pub fn attach_outlet(&self, endpoint: &str, outlet: Arc<dyn Outlet>) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        if let Some(Subscription {
            link: Link::Connected { outlet: slot, .. },
            ..
        }) = state.subs.get_mut(&id)
        {
            *slot = Some(outlet);
        }
    }

    /// The socket of an endpoint closed, and how.
    pub fn socket_closed(&self, endpoint: &str, end: SocketEnd) {
        let Some((topic, id)) = self.inner.endpoints.lock().get(endpoint).cloned() else {
            return;
        };
        let mut state = topic.state.lock();
        let Some(sub) = state.subs.get(&id) else {
            return;
        };
        // Closing with 1000/1001 is a normal goodbye; anything else is worth a SyncError (spec 2-5).
        let how = match end {
            SocketEnd::Closed(_) if end.is_goodbye() => None,
            SocketEnd::Closed(code) => {
                Some(format!("closed its connection abnormally (code {code})"))
            }
            SocketEnd::Lost => Some("lost its connection without closing it".to_owned()),
            SocketEnd::TooLarge => Some(format!(
                "sent a WebSocket frame over the hub's limit of {} bytes (hub.max_body_bytes); \
                 the hub closed its connection with code {CLOSE_TOO_BIG}",
                self.settings().max_body_bytes
            )),
        };
        if let Some(how) = how {
            let diagnostics = format!("{} {how}", sub.info.display_name());
            self.send_sync_error(&topic, &mut state, id, "", "", &diagnostics);
        }
        self.end_link(&topic, &mut state, id, LinkEnd::Socket(end), CLOSE_NORMAL);
    }

    /// Ends a subscription that is not being dropped as unresponsive: `end` says why, and
    /// whether the app is sent a denial.
    pub(super) fn end_link(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        id: SubId,
        end: LinkEnd,
        code: u16,
    ) {
        let reason = end.denial_reason();
        self.end_subscription(topic, state, id, LinkState::Gone(end), reason, code);
    }

    /// Removes a subscription: burns its endpoint, tells its socket to send a denial (when a
    /// reason is given) and close, and tells listeners.
    pub(super) fn end_subscription(
        &self,
        topic: &Topic,
        state: &mut TopicState,
        id: SubId,
        final_state: LinkState,
        denial_reason: Option<&'static str>,
        code: u16,
    ) {
        let Some(mut sub) = state.subs.remove(&id) else {
            return;
        };
        self.inner.endpoints.lock().remove(&sub.endpoint);
        if let Link::Connected { close, .. } = &mut sub.link
            && let Some(close) = close.take()
        {
            let denial =
                denial_reason.map(|r| frames::denial(&topic.id, &sub.events, Some(r)).into());
            let _ = close.send(CloseOrder {
                denial,
                code,
                reason: denial_reason.unwrap_or(""),
            });
        }
        self.emit(EngineEvent::Link {
            subscriber: sub.info,
            state: final_state,
            detail: denial_reason.map(str::to_owned),
        });
    }
}

pub(super) fn frames_events(events: &[&'static EventSpec]) -> String {
    lockstep_fhircast::subscription::join_events(events)
}
