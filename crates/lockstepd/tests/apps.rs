//! `lockstepd apps`: the report card of each app, read from the running daemon by an app whose
//! token carries `lockstep/apps.read`.

mod common;
use common::Daemon;
use lockstep_agent::client::HubClient;
use serde_json::{Value, json};

const CONFIG: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "ris"
client_secret = "ris-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "RIS"

[[apps]]
client_id = "pacs"
client_secret = "pacs-secret"
scopes = ["fhircast/*.read"]
name = "PACS viewer"

[[apps]]
client_id = "engineer"
client_secret = "engineer-secret"
scopes = ["lockstep/apps.read"]
name = "Integration engineer"
"#;

fn patient(id: &str) -> Value {
    json!([{ "key": "patient", "resource": {
        "resourceType": "Patient", "id": id, "identifier": [{ "value": id }] } }])
}

#[tokio::test]
async fn the_report_card_shows_each_app_s_answers() {
    let daemon = Daemon::start_with_text(CONFIG);
    let ris = HubClient::sign_in(&daemon.origin, "ris", "ris-secret", None)
        .await
        .unwrap();
    let pacs = HubClient::sign_in(&daemon.origin, "pacs", "pacs-secret", None)
        .await
        .unwrap();
    let mut viewer = pacs
        .subscribe("Patient-open", Some("viewer 7"))
        .await
        .unwrap();
    for (i, status) in [200, 200, 409].into_iter().enumerate() {
        let id = ris
            .publish("Patient-open", patient(&format!("p{i}")), None)
            .await
            .unwrap();
        let frame = viewer.next_frame().await.unwrap().unwrap();
        assert_eq!(frame["id"], id.as_str());
        viewer.acknowledge(&id, status).await.unwrap();
    }

    // A malformed request of the RIS's: refused, and on its card.
    assert!(ris.publish("Patient-open", json!([]), None).await.is_err());

    // Read until the last answer is counted (the socket task handles it after the frame left).
    let mut card = Value::Null;
    for _ in 0..100 {
        let out = daemon.verb("engineer", "engineer-secret", &["apps", "--json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let cards: Value = serde_json::from_slice(&out.stdout).unwrap();
        card = cards
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == "PACS viewer")
            .cloned()
            .unwrap_or_default();
        if card["refused"] == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(card["own_name"], "viewer 7");
    assert_eq!(card["subscribed"], 1);
    assert_eq!(card["connected"], 1);
    assert_eq!(card["acknowledged"], 2);
    assert_eq!(card["refused"], 1);
    assert_eq!(card["statuses"], json!({ "200": 2, "409": 1 }));
    assert!(card["answer_p99_ms"].as_f64().is_some());
    let out = daemon.verb("engineer", "engineer-secret", &["apps", "--json"]);
    let cards: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ris_card = cards
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "RIS")
        .cloned()
        .expect("a card for the RIS, which only requests");
    assert_eq!(ris_card["requests_refused"], json!({ "400": 1 }));
    assert!(
        ris_card["last_refusal"]
            .as_str()
            .unwrap()
            .contains("patient"),
        "{ris_card}"
    );

    let table = daemon.verb("engineer", "engineer-secret", &["apps"]);
    let table = String::from_utf8_lossy(&table.stdout).into_owned();
    assert!(table.contains("PACS viewer (\"viewer 7\")"), "{table}");
    assert!(table.contains("200×2 409×1"), "{table}");

    // Without the scope, the cards are not shown.
    let refused = daemon.verb("ris", "ris-secret", &["apps"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("lockstep/apps.read"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    viewer.close().await.unwrap();
    assert!(daemon.terminate().success());
}
