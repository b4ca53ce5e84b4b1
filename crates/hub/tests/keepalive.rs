//! Keep-alive, dead peers and slow subscribers: one bad socket never harms the others.

mod common;
use common::{Arrival, Hub, patient_context};
use futures_util::StreamExt;
use lockstep_hub::HubSettings;
use std::time::Duration;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_hub_pings_and_a_live_peer_stays_connected() {
    let settings = HubSettings {
        ping_interval_seconds: 1,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let mut sub = hub.subscriber("app", "Patient-open").await;
    let mut pings = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_millis(3500);
    // tungstenite answers pings with pongs as long as the socket is read.
    while let Ok(Some(message)) = tokio::time::timeout_at(deadline, sub.socket.next()).await {
        if let Ok(Message::Ping(_)) = message {
            pings += 1;
        }
    }
    assert!(pings >= 2, "{pings} pings");
    let token = hub.token("app").await;
    let open = hub.event("Patient-open", patient_context("p1", "1"));
    hub.publish(&token, &open).await;
    assert_eq!(sub.next().await["id"], open["id"]);
}

#[tokio::test]
async fn a_peer_that_stops_answering_is_dropped_like_an_abnormal_close() {
    let settings = HubSettings {
        ping_interval_seconds: 1,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    // Connected, confirmed, and then never read again: no pongs go back.
    let _frozen = hub.subscriber("app", "Patient-open").await;
    let mut error = None;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(6);
    while tokio::time::Instant::now() < deadline {
        match watcher.arrival(Duration::from_millis(500)).await {
            Arrival::Frame(frame) => {
                error = Some(frame);
                break;
            }
            Arrival::Closed(_) => panic!("the watcher was closed"),
            Arrival::Nothing => {}
        }
    }
    let error = error.expect("a SyncError about the frozen peer");
    assert!(
        error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("lost its connection")
    );
    assert_eq!(hub.engine.subscribers(&hub.topic).len(), 1);
}

#[tokio::test]
async fn a_slow_subscriber_overflows_alone_and_never_delays_the_others() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("app", "SyncError").await;
    let mut reader = hub.subscriber("app", "Patient-open").await;
    let _stalled = hub.subscriber("app", "Patient-open").await;
    // Large events fill the stalled socket's TCP buffers, then its bounded queue.
    let mut context = patient_context("p1", "1");
    context[0]["resource"]["text"] =
        serde_json::json!({ "status": "generated", "div": "x".repeat(16_000) });
    let total = 2000;
    let mut received = 0;
    let mut overflow_error = None;
    for i in 0..total {
        let mut event = hub.event("Patient-open", context.clone());
        event["id"] = format!("e{i}").into();
        assert_eq!(hub.publish(&token, &event).await.status(), 202);
        // The reader keeps up and acknowledges as it goes.
        let frame = reader.next().await;
        assert_eq!(frame["id"], format!("e{i}"), "in order, nothing lost");
        reader.ack(&frame, 200).await;
        received += 1;
        if overflow_error.is_none()
            && let Arrival::Frame(frame) = watcher.arrival(Duration::ZERO).await
        {
            overflow_error = Some(frame);
        }
    }
    assert_eq!(received, total);
    let error = match overflow_error {
        Some(error) => error,
        None => watcher.next().await,
    };
    assert!(
        error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("did not keep up")
    );
    // The stalled subscriber is gone, the reader is not.
    assert_eq!(hub.engine.subscribers(&hub.topic).len(), 2);
}
