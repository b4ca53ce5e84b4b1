//! What the agent observed of each app in its session, kept from the engine's decisions: does
//! it open the socket it subscribed for, does it acknowledge every event, how fast, with which
//! statuses, does it let its lease run out, is it dropped. An integration engineer sees which
//! vendor's app is the weak link, with figures to send to that vendor.
//!
//! An engine observer: it runs under the topic's lock on every delivery, so it only counts and
//! keeps a bounded window of latencies; percentiles are computed when someone asks.

use axum::routing::get;
use axum::{Json, Router};
use lockstep_hub::{
    Authenticated, Delivery, EngineEvent, HubState, LinkEnd, LinkState, SubscriberInfo,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::Duration;

/// The scope an app needs to read the report cards over HTTP.
pub const APPS_READ_SCOPE: &str = "lockstep/apps.read";

/// How many of an app's latest acknowledgement times its percentiles are read from.
const LATENCY_WINDOW: usize = 1024;

/// One app's report card (per subscriber name: a client may hold several subscriptions).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AppReport {
    pub client_id: String,
    /// The name site IT registered it under.
    pub name: String,
    /// What it calls itself (`subscriber.name`), where that differs.
    pub own_name: Option<String>,
    /// Subscriptions the hub granted it.
    pub subscribed: u64,
    /// Of those, the ones whose socket it opened (the confirmation reached it).
    pub connected: u64,
    pub acknowledged: u64,
    pub refused: u64,
    /// Events it did not answer in time.
    pub timed_out: u64,
    /// Every status it answered with, and how often.
    pub statuses: BTreeMap<u16, u64>,
    /// Time from sending an event to its answer, over its latest answers (milliseconds).
    pub answer_p50_ms: Option<f64>,
    pub answer_p99_ms: Option<f64>,
    /// Times it renewed a subscription before its lease ran out.
    pub renewals: u64,
    /// The least lease time it had left when it renewed (seconds): near 0, it renews at the
    /// last moment and a slow network makes it lapse.
    pub least_lease_left_seconds: Option<u64>,
    /// Subscriptions that ended because it did not renew them in time.
    pub lease_expired: u64,
    /// Times the hub dropped it (unresponsive, or too slow to keep up).
    pub dropped: u64,
    /// Its requests to the hub that were refused (a malformed event, a conflict, a scope it
    /// lacks), by status: counted for the app's client, on each of its cards.
    pub requests_refused: BTreeMap<u16, u64>,
    /// Why the latest was refused, in the hub's words.
    pub last_refusal: Option<String>,
}

impl AppReport {
    /// A card with nothing observed yet.
    fn new(client_id: &str, name: &str, own_name: Option<String>) -> Self {
        AppReport {
            client_id: client_id.to_owned(),
            name: name.to_owned(),
            own_name,
            subscribed: 0,
            connected: 0,
            acknowledged: 0,
            refused: 0,
            timed_out: 0,
            statuses: BTreeMap::new(),
            answer_p50_ms: None,
            answer_p99_ms: None,
            renewals: 0,
            least_lease_left_seconds: None,
            lease_expired: 0,
            dropped: 0,
            requests_refused: BTreeMap::new(),
            last_refusal: None,
        }
    }
}

/// A client's refused requests.
#[derive(Debug, Default, Clone)]
struct Refused {
    name: String,
    by_status: BTreeMap<u16, u64>,
    last: Option<String>,
}

#[derive(Debug)]
struct Card {
    report: AppReport,
    /// Microseconds, the latest last.
    answers: VecDeque<u32>,
    /// Its link's last state: a socket opened is a following state right after pending.
    state: Option<LinkState>,
}

/// Every app's card, kept as the engine decides.
#[derive(Debug, Default)]
pub struct ReportCards {
    cards: Mutex<HashMap<(String, String), Card>>,
    /// By client id.
    refused: Mutex<HashMap<String, Refused>>,
}

/// How much of a refusal's words a card keeps.
const REFUSAL_WORDS: usize = 240;

impl ReportCards {
    /// Counts one engine decision; called synchronously by the engine.
    pub fn observe(&self, event: &EngineEvent) {
        match event {
            EngineEvent::Link {
                subscriber, state, ..
            } => self.with(subscriber, |card| {
                match state {
                    LinkState::Pending => card.report.subscribed += 1,
                    LinkState::Following | LinkState::FollowingUnacknowledged
                        if card.state == Some(LinkState::Pending) =>
                    {
                        card.report.connected += 1;
                    }
                    LinkState::Gone(LinkEnd::LeaseExpired) => card.report.lease_expired += 1,
                    LinkState::Unresponsive => card.report.dropped += 1,
                    _ => {}
                }
                card.state = Some(*state);
            }),
            EngineEvent::Delivery {
                subscriber,
                outcome,
                ..
            } => self.with(subscriber, |card| match *outcome {
                Delivery::Acknowledged { status, after } => {
                    card.report.acknowledged += 1;
                    card.answered(status, after);
                }
                Delivery::Refused { status, after } => {
                    card.report.refused += 1;
                    card.answered(status, after);
                }
                Delivery::TimedOut => card.report.timed_out += 1,
            }),
            EngineEvent::Renewed {
                subscriber,
                lease_left,
            } => self.with(subscriber, |card| {
                card.report.renewals += 1;
                if let Some(left) = lease_left {
                    let left = left.as_secs();
                    let least = card.report.least_lease_left_seconds.get_or_insert(left);
                    *least = (*least).min(left);
                }
            }),
            _ => {}
        }
    }

    fn with(&self, info: &SubscriberInfo, update: impl FnOnce(&mut Card)) {
        // A bridge's seat is the bridge's, listed with the bridges.
        if info
            .client_id
            .starts_with(lockstep_bridges::CLIENT_ID_PREFIX)
        {
            return;
        }
        let key = (info.client_id.clone(), info.spec_name().to_owned());
        let mut cards = self
            .cards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let card = cards.entry(key).or_insert_with(|| Card {
            report: AppReport::new(
                &info.client_id,
                &info.registered_name,
                info.other_name().map(str::to_owned),
            ),
            answers: VecDeque::new(),
            state: None,
        });
        update(card);
    }

    /// A request of `client_id` (registered as `name`) the hub refused with `status`.
    pub fn refused(&self, client_id: &str, name: &str, status: u16, why: &str) {
        if client_id.starts_with(lockstep_bridges::CLIENT_ID_PREFIX) {
            return;
        }
        let mut refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let entry = refused.entry(client_id.to_owned()).or_default();
        entry.name = name.to_owned();
        *entry.by_status.entry(status).or_default() += 1;
        entry.last = Some(why.chars().take(REFUSAL_WORDS).collect());
    }

    /// Every app's card, by registered name.
    pub fn reports(&self) -> Vec<AppReport> {
        let refused = self
            .refused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        let cards = self
            .cards
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut reports: Vec<AppReport> = cards
            .values()
            .map(|card| {
                let mut report = card.report.clone();
                if let Some(r) = refused.get(&report.client_id) {
                    report.requests_refused = r.by_status.clone();
                    report.last_refusal = r.last.clone();
                }
                let mut answers: Vec<u32> = card.answers.iter().copied().collect();
                answers.sort_unstable();
                report.answer_p50_ms = percentile(&answers, 0.50);
                report.answer_p99_ms = percentile(&answers, 0.99);
                report
            })
            .collect();
        // A client that only requests (a worklist that never subscribes) has a card too.
        for (client_id, r) in &refused {
            if !reports.iter().any(|report| report.client_id == *client_id) {
                reports.push(AppReport {
                    requests_refused: r.by_status.clone(),
                    last_refusal: r.last.clone(),
                    ..AppReport::new(client_id, &r.name, None)
                });
            }
        }
        reports.sort_by(|a, b| (&a.name, &a.own_name).cmp(&(&b.name, &b.own_name)));
        reports
    }
}

/// `GET /lockstep/apps` (scope `lockstep/apps.read`): every app's report card, as JSON.
pub fn routes(cards: Arc<ReportCards>) -> Router<HubState> {
    Router::new().route(
        "/lockstep/apps",
        get(move |Authenticated(grant): Authenticated| {
            let cards = cards.clone();
            async move {
                crate::history::require(&grant, APPS_READ_SCOPE)?;
                Ok::<_, lockstep_hub::Refusal>(Json(cards.reports()))
            }
        }),
    )
}

impl Card {
    fn answered(&mut self, status: u16, after: Duration) {
        *self.report.statuses.entry(status).or_default() += 1;
        if self.answers.len() == LATENCY_WINDOW {
            self.answers.pop_front();
        }
        self.answers
            .push_back(u32::try_from(after.as_micros()).unwrap_or(u32::MAX));
    }
}

/// The `q` quantile of sorted microseconds, in milliseconds (nearest rank).
fn percentile(sorted: &[u32], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    Some(f64::from(sorted[rank - 1]) / 1000.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn info(own: Option<&str>) -> Arc<SubscriberInfo> {
        Arc::new(SubscriberInfo {
            topic: "T".into(),
            registered_name: "PACS viewer".into(),
            own_name: own.map(str::to_owned),
            client_id: "pacs".into(),
            events: "Patient-open".into(),
        })
    }

    fn delivery(info: &Arc<SubscriberInfo>, outcome: Delivery) -> EngineEvent {
        EngineEvent::Delivery {
            subscriber: info.clone(),
            event_id: "e".into(),
            event_name: "Patient-open",
            outcome,
        }
    }

    #[test]
    fn answers_statuses_and_latencies_are_counted_per_app() {
        let cards = ReportCards::default();
        let pacs = info(Some("viewer 2"));
        let link = |state| EngineEvent::Link {
            subscriber: pacs.clone(),
            state,
            detail: None,
        };
        cards.observe(&link(LinkState::Pending));
        cards.observe(&link(LinkState::Following));
        // A recovery is no new socket.
        cards.observe(&link(LinkState::Refused { status: Some(409) }));
        cards.observe(&link(LinkState::Following));
        for ms in 1..=100 {
            cards.observe(&delivery(
                &pacs,
                Delivery::Acknowledged {
                    status: 200,
                    after: Duration::from_millis(ms),
                },
            ));
        }
        cards.observe(&delivery(
            &pacs,
            Delivery::Refused {
                status: 409,
                after: Duration::from_millis(500),
            },
        ));
        cards.observe(&delivery(&pacs, Delivery::TimedOut));
        for left in [120, 30] {
            cards.observe(&EngineEvent::Renewed {
                subscriber: pacs.clone(),
                lease_left: Some(Duration::from_secs(left)),
            });
        }
        cards.observe(&link(LinkState::Gone(LinkEnd::LeaseExpired)));
        let reports = cards.reports();
        assert_eq!(reports.len(), 1);
        let r = &reports[0];
        assert_eq!(
            (r.name.as_str(), r.own_name.as_deref()),
            ("PACS viewer", Some("viewer 2"))
        );
        assert_eq!((r.subscribed, r.connected), (1, 1));
        assert_eq!((r.acknowledged, r.refused, r.timed_out), (100, 1, 1));
        assert_eq!(r.statuses, BTreeMap::from([(200, 100), (409, 1)]));
        assert_eq!(r.answer_p50_ms, Some(51.0));
        assert_eq!(r.answer_p99_ms, Some(100.0));
        assert_eq!((r.renewals, r.least_lease_left_seconds), (2, Some(30)));
        assert_eq!(r.lease_expired, 1);
    }

    #[test]
    fn a_bridge_s_seat_has_no_card_and_the_window_is_bounded() {
        let cards = ReportCards::default();
        let bridge = Arc::new(SubscriberInfo {
            client_id: format!("{}CCOW", lockstep_bridges::CLIENT_ID_PREFIX),
            ..(*info(None)).clone()
        });
        cards.observe(&delivery(&bridge, Delivery::TimedOut));
        assert!(cards.reports().is_empty());

        let app = info(None);
        for i in 0..(LATENCY_WINDOW as u64 + 10) {
            let after = Duration::from_micros(if i < 10 { 1_000_000 } else { 1_000 });
            cards.observe(&delivery(
                &app,
                Delivery::Acknowledged { status: 202, after },
            ));
        }
        let r = &cards.reports()[0];
        assert_eq!(r.acknowledged, LATENCY_WINDOW as u64 + 10);
        assert_eq!(
            r.answer_p99_ms,
            Some(1.0),
            "the slow first answers left the window"
        );
    }
}
