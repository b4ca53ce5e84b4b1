//! The time-based decisions: leases, endpoints never connected, acknowledgements past their
//! deadline. One task takes them all; it sleeps until the earliest deadline any subscription
//! has, and whoever sets an earlier one wakes it ([`Alarm::by`]). An idle hub never wakes.

use super::*;

/// How long a socket's task has to read what its app already sent before a missing
/// acknowledgement is declared (see [`OverdueCheck`]).
pub(super) const READ_BEFORE_BLAME: Duration = Duration::from_secs(1);

/// How long after a socket's task has read what was sent an acknowledgement still missing is
/// declared so (see [`Engine::read_everything_sent`]).
pub(super) const READ_SETTLE: Duration = Duration::from_millis(200);

/// When the sweeper next looks, shared by the engine (which brings it forward) and the sweeper
/// (which sets it after each pass).
pub(super) struct Alarm {
    epoch: Instant,
    /// Milliseconds after `epoch`, rounded up; `u64::MAX` while a pass runs or when nothing is due.
    at_ms: AtomicU64,
    wake: Notify,
    /// Passes made so far.
    passes: AtomicU64,
}

impl Alarm {
    pub(super) fn new() -> Self {
        Alarm {
            epoch: Instant::now(),
            at_ms: AtomicU64::new(u64::MAX),
            wake: Notify::new(),
            passes: AtomicU64::new(0),
        }
    }

    /// Has the sweeper look no later than `deadline`. Cheap when it will anyway: one atomic
    /// load, so a publish that adds a deadline later than the one set costs no wake-up.
    pub(super) fn by(&self, deadline: Instant) {
        let ms = self.millis(deadline);
        if ms < self.at_ms.load(Ordering::Acquire) {
            self.at_ms.fetch_min(ms, Ordering::AcqRel);
            self.wake.notify_one();
        }
    }

    /// Wakes the sweeper now: the engine is gone, or a deadline is already due.
    pub(super) fn ring(&self) {
        self.wake.notify_one();
    }

    fn millis(&self, at: Instant) -> u64 {
        let micros = at.saturating_duration_since(self.epoch).as_micros();
        u64::try_from(micros.div_ceil(1000)).unwrap_or(u64::MAX - 1)
    }
}

/// The earliest of the deadlines seen in a pass.
#[derive(Default)]
struct Earliest(Option<Instant>);

impl Earliest {
    fn add(&mut self, at: Instant) {
        self.0 = Some(self.0.map_or(at, |now| now.min(at)));
    }
}

impl Engine {
    /// One pass of the sweeper over every topic; returns when the next is due, if ever.
    fn sweep_once(&self) -> Option<Instant> {
        let now = Instant::now();
        let ack_timeout = self.inner.settings.ack_timeout();
        let mut next = Earliest::default();
        let topics: Vec<Arc<Topic>> = self.inner.topics.read().values().cloned().collect();
        for topic in topics {
            let mut state = topic.state.lock();
            let mut expired = Vec::new();
            let mut unresponsive = Vec::new();
            let mut never_connected = Vec::new();
            for (id, sub) in state.subs.iter_mut() {
                match &mut sub.link {
                    Link::Pending { deadline } if now >= *deadline => never_connected.push(*id),
                    Link::Pending { deadline } => next.add(*deadline),
                    Link::Connected {
                        lease_deadline,
                        awaiting,
                        read_now,
                        overdue,
                        ..
                    } => {
                        if now >= *lease_deadline {
                            expired.push(*id);
                            continue;
                        }
                        next.add(*lease_deadline);
                        let Some(oldest) = awaiting.front().filter(|_| sub.acknowledges) else {
                            continue;
                        };
                        let due = oldest.sent + ack_timeout;
                        if now < due {
                            next.add(due);
                            continue;
                        }
                        match overdue {
                            None => {
                                *overdue = Some(OverdueCheck {
                                    asked: now,
                                    read_at: None,
                                });
                                read_now.notify_one();
                                // Brought forward by `read_everything_sent` once it has read.
                                next.add(now + READ_BEFORE_BLAME);
                            }
                            Some(check)
                                if check.read_at.is_some_and(|at| now >= at + READ_SETTLE)
                                    || now.duration_since(check.asked) >= READ_BEFORE_BLAME =>
                            {
                                unresponsive.push((
                                    *id,
                                    oldest.event_id.clone(),
                                    oldest.event_name,
                                ));
                            }
                            Some(check) => {
                                next.add(check.asked + READ_BEFORE_BLAME);
                                if let Some(at) = check.read_at {
                                    next.add(at + READ_SETTLE);
                                }
                            }
                        }
                    }
                }
            }
            for id in never_connected {
                let never = LinkEnd::NeverConnected;
                self.end_link(&topic, &mut state, id, never, CLOSE_NORMAL);
            }
            for id in expired {
                self.end_link(&topic, &mut state, id, LinkEnd::LeaseExpired, CLOSE_NORMAL);
            }
            for (id, event_id, event_name) in unresponsive {
                if let Some(sub) = state.subs.get(&id) {
                    self.emit(EngineEvent::Delivery {
                        subscriber: sub.info.clone(),
                        event_id: event_id.to_string(),
                        event_name,
                        outcome: Delivery::TimedOut,
                    });
                }
                self.fail_subscriber(
                    &topic,
                    &mut state,
                    id,
                    &event_id,
                    event_name,
                    "did not acknowledge a notification in time and was unsubscribed",
                );
            }
        }
        next.0
    }
}

/// The sweeper task: a pass, then sleep until the next deadline or an earlier one is set. It
/// ends once the engine is dropped (whose last clone rings the alarm).
pub(super) async fn sweep(inner: Weak<Inner>, alarm: Arc<Alarm>) {
    loop {
        // Deadlines set during the pass ring the alarm, so none is slept through.
        alarm.at_ms.store(u64::MAX, Ordering::Release);
        alarm.passes.fetch_add(1, Ordering::Relaxed);
        let next = {
            let Some(inner) = inner.upgrade() else { return };
            Engine { inner }.sweep_once()
        };
        if let Some(next) = next {
            alarm.at_ms.fetch_min(alarm.millis(next), Ordering::AcqRel);
        }
        let at_ms = alarm.at_ms.load(Ordering::Acquire);
        let woken = alarm.wake.notified();
        if at_ms == u64::MAX {
            woken.await;
        } else {
            let at = alarm.epoch + Duration::from_millis(at_ms);
            tokio::select! {
                () = tokio::time::sleep_until(at.into()) => {}
                () = woken => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lockstep_fhircast::ScopeSet;

    fn passes(engine: &Engine) -> u64 {
        engine.inner.alarm.passes.load(Ordering::Relaxed)
    }

    #[tokio::test]
    async fn an_idle_hub_sleeps_and_a_due_deadline_wakes_it() {
        let engine = Engine::new(HubSettings::default());
        let topic = engine.create_topic();
        // A pending endpoint's deadline is minutes away: nothing to do before then.
        let grant = TokenGrant {
            client_id: "ris".into(),
            client_name: "RIS".into(),
            topic: topic.clone(),
            scopes: ScopeSet::parse("fhircast/*.*").unwrap(),
            expires_at: Instant::now() + Duration::from_secs(3600),
            acknowledges: true,
        };
        let form = format!(
            "hub.channel.type=websocket&hub.mode=subscribe&hub.topic={topic}&hub.events=Patient-open"
        );
        let request = SubscriptionRequest::from_form(form.as_bytes()).unwrap();
        engine.subscribe(&grant, request).unwrap();
        tokio::time::sleep(Duration::from_secs(1)).await;
        let idle = passes(&engine);
        assert!(
            (1..=2).contains(&idle),
            "{idle} passes in a second with nothing due (a 200 ms tick would make five)"
        );
        // A deadline due now is met at once, not at the next tick.
        engine.inner.alarm.by(Instant::now());
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(passes(&engine), idle + 1);
    }
}
