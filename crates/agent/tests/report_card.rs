//! The report card of four apps as an integration engineer meets them, each a real WebSocket
//! client: one that answers at once, a slow one, one that never answers, and one that refuses.

mod common;
use lockstep_agent::client::HubClient;
use lockstep_agent::report_card::AppReport;
use lockstep_agent::{AppConfig, Config};
use std::time::Duration;

fn app(client_id: &str, name: &str, scopes: &[&str]) -> AppConfig {
    AppConfig {
        client_id: client_id.into(),
        client_secret: Some(format!("{client_id}-secret")),
        client_secret_key: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        name: Some(name.into()),
        acknowledges: true,
        redirect_uris: Vec::new(),
    }
}

#[tokio::test]
async fn the_card_tells_a_good_app_from_a_slow_a_silent_and_a_refusing_one() {
    let data = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.hub.port = 0;
    config.hub.ack_timeout_seconds = 1;
    config.history.database = Some(data.path().join("lockstep.db"));
    config.apps = vec![
        app("ris", "RIS", &["fhircast/*.write"]),
        app("good", "Good viewer", &["fhircast/*.read"]),
        app("slow", "Slow viewer", &["fhircast/*.read"]),
        app("silent", "Silent viewer", &["fhircast/*.read"]),
        app("refusing", "Refusing viewer", &["fhircast/*.read"]),
    ];
    let agent = common::start(config).await;
    let origin = common::origin(&agent);
    let sign_in = |id: &'static str| {
        let origin = origin.clone();
        async move {
            HubClient::sign_in(&origin, id, &format!("{id}-secret"), None)
                .await
                .unwrap()
        }
    };
    let ris = sign_in("ris").await;
    let mut viewers = Vec::new();
    for (id, answer) in [
        ("good", Some((200, 0))),
        ("slow", Some((200, 300))),
        ("silent", None),
        ("refusing", Some((409, 0))),
    ] {
        let client = sign_in(id).await;
        let subscription = client.subscribe("Patient-open", None).await.unwrap();
        viewers.push((client, subscription, answer));
    }

    for round in 0..3 {
        let context = common::patient_context(serde_json::json!({
            "id": format!("p{round}"), "identifier": [{ "value": format!("MRN{round}") }] }));
        let id = ris.publish("Patient-open", context, None).await.unwrap();
        for (_, subscription, answer) in viewers.iter_mut() {
            let Some((status, delay_ms)) = *answer else {
                continue;
            };
            let frame = subscription.next_frame().await.unwrap().unwrap();
            assert_eq!(frame["id"], id.as_str());
            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
            subscription.acknowledge(&id, status).await.unwrap();
        }
    }

    // The silent app is dropped after its first unanswered event; wait until it shows.
    let card = |name: &str| -> AppReport {
        agent
            .app_reports()
            .into_iter()
            .find(|r| r.name == name)
            .unwrap_or_else(|| panic!("no card for {name}"))
    };
    for _ in 0..200 {
        if card("Silent viewer").dropped >= 1 && card("Refusing viewer").refused == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let good = card("Good viewer");
    assert_eq!((good.acknowledged, good.refused, good.timed_out), (3, 0, 0));
    assert_eq!(good.statuses.get(&200), Some(&3));

    let slow = card("Slow viewer");
    assert_eq!((slow.acknowledged, slow.timed_out), (3, 0));
    let (good_p50, slow_p50) = (good.answer_p50_ms.unwrap(), slow.answer_p50_ms.unwrap());
    assert!(slow_p50 >= 300.0, "slow p50 {slow_p50} ms");
    assert!(
        good_p50 < slow_p50,
        "good p50 {good_p50} ms, slow {slow_p50} ms"
    );

    let silent = card("Silent viewer");
    assert_eq!(silent.acknowledged, 0);
    assert!(silent.timed_out >= 1, "{silent:?}");
    assert!(silent.dropped >= 1, "{silent:?}");
    assert!(silent.answer_p50_ms.is_none());

    let refusing = card("Refusing viewer");
    assert_eq!((refusing.acknowledged, refusing.refused), (0, 3));
    assert_eq!(refusing.statuses.get(&409), Some(&3));
    agent.shutdown().await;
}
