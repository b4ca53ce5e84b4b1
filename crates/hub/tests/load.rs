//! Correctness under load: every subscriber receives every event it subscribed to, exactly once,
//! in the order the hub applied them, with publishers pipelining and with 1,000 subscribers.
//!
//! Nothing here is timed: the only clocks are the harness's waits for a frame that must come.

mod common;
use common::{Hub, Subscriber, patient_context};
use futures_util::future::join_all;
use lockstep_hub::HubSettings;
use std::collections::HashSet;

/// Reads notifications until `count` have come, answering each with 200 as a real app does,
/// then makes sure nothing more comes (a duplicate would). Returns the ids in arrival order,
/// and the subscriber, still connected.
async fn receive(mut sub: Subscriber, count: usize) -> (Vec<String>, Subscriber) {
    let mut ids = Vec::with_capacity(count);
    while ids.len() < count {
        let frame = sub.next().await;
        sub.ack(&frame, 200).await;
        let id = frame["id"].as_str().expect("a notification has an id");
        ids.push(id.to_owned());
    }
    sub.assert_quiet().await;
    (ids, sub)
}

/// Waits for every reader; the subscribers stay connected until the caller drops them.
async fn received(
    readers: Vec<tokio::task::JoinHandle<(Vec<String>, Subscriber)>>,
) -> (Vec<Vec<String>>, Vec<Subscriber>) {
    join_all(readers)
        .await
        .into_iter()
        .map(Result::unwrap)
        .unzip()
}

/// `count` subscribers to Patient-open, subscribed a batch at a time.
async fn subscribers(hub: &Hub, count: usize) -> Vec<Subscriber> {
    let token = hub.token("reader").await;
    let mut subs = Vec::with_capacity(count);
    while subs.len() < count {
        let batch = (count - subs.len()).min(50);
        let joined = (0..batch).map(|_| hub.subscriber_with_token(&token, "Patient-open"));
        subs.extend(join_all(joined).await);
    }
    subs
}

/// Publishes `events` Patient-opens from each of `publishers` concurrent apps; each app sends
/// its events one after the other without waiting for any delivery. Returns each app's ids in
/// the order it sent them.
async fn publish(hub: &Hub, publishers: usize, events: usize) -> Vec<Vec<String>> {
    let token = hub.token("app").await;
    let apps = (0..publishers).map(|p| {
        let token = token.clone();
        async move {
            let mut sent = Vec::with_capacity(events);
            for k in 0..events {
                let mut event = hub.event("Patient-open", patient_context(&format!("p{k}"), "M"));
                let id = format!("app{p}-event{k}");
                event["id"] = id.clone().into();
                assert_eq!(hub.publish(&token, &event).await.status(), 202, "{id}");
                sent.push(id);
            }
            sent
        }
    });
    join_all(apps).await
}

/// Every subscriber got the same sequence; it holds each published event exactly once; and
/// each app's events appear in the order that app sent them.
fn check(received: &[Vec<String>], sent: &[Vec<String>]) {
    let total: usize = sent.iter().map(Vec::len).sum();
    let first = &received[0];
    assert_eq!(first.len(), total);
    let unique: HashSet<&String> = first.iter().collect();
    assert_eq!(unique.len(), total, "an event came twice");
    assert_eq!(
        unique,
        sent.iter().flatten().collect::<HashSet<_>>(),
        "an event that was not published came, or one that was did not"
    );
    for (i, ids) in received.iter().enumerate() {
        assert_eq!(
            ids, first,
            "subscriber {i} saw a different order than subscriber 0"
        );
    }
    for app in sent {
        let order: Vec<&String> = first.iter().filter(|id| app.contains(id)).collect();
        assert_eq!(
            order,
            app.iter().collect::<Vec<_>>(),
            "an app's events were reordered"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_subscribers_get_a_thousand_pipelined_events_once_each_in_order() {
    let hub = Hub::start().await;
    let subs = subscribers(&hub, 50).await;
    let (publishers, per_publisher) = (4, 250);
    let readers: Vec<_> = subs
        .into_iter()
        .map(|sub| tokio::spawn(receive(sub, publishers * per_publisher)))
        .collect();
    let sent = publish(&hub, publishers, per_publisher).await;
    let (received, _connected) = received(readers).await;
    check(&received, &sent);
    assert_eq!(
        hub.engine.subscribers(&hub.topic).len(),
        50,
        "no subscriber was dropped"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_get_every_event() {
    let wanted = 1000;
    let count = wanted.min(sockets_we_may_open());
    if count < wanted {
        eprintln!(
            "only {count} subscribers: the open-file limit allows no more (raise it with `ulimit -n 4096`)"
        );
    }
    // The shipped caps (64 subscriptions per app, 512 in all) guard a workstation against a
    // runaway app; this test is about the fan-out, so it lifts them.
    let hub = Hub::start_with(HubSettings {
        max_subscriptions_per_client: count,
        max_subscriptions_total: count,
        ..HubSettings::default()
    })
    .await;
    let subs = subscribers(&hub, count).await;
    let events = 5;
    let readers: Vec<_> = subs
        .into_iter()
        .map(|sub| tokio::spawn(receive(sub, events)))
        .collect();
    let sent = publish(&hub, 1, events).await;
    let (received, _connected) = received(readers).await;
    check(&received, &sent);
    assert_eq!(
        hub.engine.subscribers(&hub.topic).len(),
        count,
        "no subscriber was dropped"
    );
    hub.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stalls_then_catches_up_gets_everything_in_order() {
    // Time to catch up must not count as unresponsive here: that is another test's subject.
    let hub = Hub::start_with(HubSettings {
        ack_timeout_seconds: 600,
        ..HubSettings::default()
    })
    .await;
    let stalled = hub.subscriber("reader", "Patient-open").await;
    let live = hub.subscriber("reader", "Patient-open").await;
    // 800 events of 16 KB are far more than the socket buffers hold while the stalled app
    // reads nothing: frames back up behind the socket and then in the hub's queue (well
    // under its 1,024), so they reach it by the queued way, after the direct one.
    let events = 800;
    let live = tokio::spawn(receive(live, events));
    let token = hub.token("app").await;
    let mut sent = Vec::with_capacity(events);
    for k in 0..events {
        let mut context = patient_context(&format!("p{k}"), "M");
        context[0]["resource"]["text"] = serde_json::json!({
            "status": "generated",
            "div": format!("<div>{}</div>", "x".repeat(16 * 1024)),
        });
        let mut event = hub.event("Patient-open", context);
        let id = format!("event{k}");
        event["id"] = id.clone().into();
        assert_eq!(hub.publish(&token, &event).await.status(), 202, "{id}");
        sent.push(id);
    }
    let (stalled_ids, _stalled) = receive(stalled, events).await;
    let (live_ids, _live) = live.await.unwrap();
    check(&[stalled_ids, live_ids], &[sent]);
    assert_eq!(
        hub.engine.subscribers(&hub.topic).len(),
        2,
        "nobody was dropped"
    );
    hub.stop().await;
}

/// How many subscribers this process can hold: each costs two descriptors (the client's socket
/// and the hub's), and the harness needs some of its own.
fn sockets_we_may_open() -> usize {
    let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
    let soft = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .and_then(|l| l.split_whitespace().nth(3))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    soft.saturating_sub(200) / 2
}
