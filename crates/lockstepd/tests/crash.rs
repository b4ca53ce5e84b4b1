//! Crash safety: SIGKILL in the middle of a burst of publishes loses nothing the hub answered
//! 2xx for, the database opens cleanly, the audit chain verifies, and the restarted agent has
//! no current context (apps re-open; history never silently restores a patient).

mod common;
use common::{Daemon, cli};
use lockstep_store::{HistoryQuery, Store, StoreOptions};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn config(db: &std::path::Path) -> String {
    format!(
        r#"
[hub]
port = 0

[history]
database = "{}"

[[apps]]
client_id = "ris"
client_secret = "change-me"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#,
        db.display()
    )
}

async fn token(http: &reqwest::Client, origin: &str) -> (String, String, String) {
    let body: Value = http
        .post(format!("{origin}/auth/token"))
        .basic_auth("ris", Some("change-me"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let field = |k: &str| body[k].as_str().unwrap().to_owned();
    (field("access_token"), field("hub.url"), field("hub.topic"))
}

#[tokio::test]
async fn sigkill_mid_burst_loses_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lockstep.db");
    let text = config(&db);
    let daemon = Daemon::start_with_text(&text);
    let http = reqwest::Client::new();
    let (access, hub_url, topic) = token(&http, &daemon.origin).await;

    let accepted: Arc<Mutex<Vec<String>>> = Arc::default();
    let mut publishers = Vec::new();
    for worker in 0..6 {
        let (http, access, hub_url, topic, accepted) = (
            http.clone(),
            access.clone(),
            hub_url.clone(),
            topic.clone(),
            accepted.clone(),
        );
        publishers.push(tokio::spawn(async move {
            for n in 0.. {
                let id = format!("w{worker}-{n}");
                let event = json!({
                    "timestamp": "2026-11-26T10:00:00Z", "id": id,
                    "event": { "hub.topic": topic, "hub.event": "Patient-open", "context": [{ "key": "patient", "resource": {
                        "resourceType": "Patient", "id": format!("p{n}"), "identifier": [{ "value": format!("MRN-{n}") }] } }] }
                });
                match http.post(&hub_url).bearer_auth(&access).json(&event).send().await {
                    Ok(response) if response.status() == 202 => accepted.lock().unwrap().push(id),
                    // The process is gone: the burst is over.
                    _ => return,
                }
            }
        }));
    }
    // Let a burst build up, then kill the agent mid-flight.
    while accepted.lock().unwrap().len() < 300 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    daemon.kill_hard();
    for publisher in publishers {
        publisher.await.unwrap();
    }
    let accepted: HashSet<String> = accepted.lock().unwrap().iter().cloned().collect();

    // The database opens cleanly and holds every acknowledged event.
    let store = Store::open(&db, StoreOptions::default()).unwrap();
    let mut recorded = HashSet::new();
    let mut query = HistoryQuery {
        limit: HistoryQuery::MAX_LIMIT,
        ..Default::default()
    };
    loop {
        let page = store.history(&query).unwrap();
        let Some(last) = page.last() else { break };
        query.before_id = Some(last.id);
        recorded.extend(page.into_iter().map(|e| e.event_id));
    }
    let missing: Vec<&String> = accepted.difference(&recorded).collect();
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged events missing: {:?}",
        missing.len(),
        accepted.len(),
        &missing[..missing.len().min(5)]
    );
    assert!(store.verify_audit().unwrap().broken.is_none());
    drop(store);

    // Restarted: the audit chain verifies through the CLI, and nothing is current.
    let again = Daemon::start_with_text(&text);
    let history = cli(&text, &["history", "--json", "limit=5"]);
    assert!(history.status.success());
    assert_eq!(String::from_utf8_lossy(&history.stdout).lines().count(), 5);
    // `audit verify` reads the local database the config names, not the hub.
    let verify = cli(&text, &["audit", "verify"]);
    assert!(
        verify.status.success(),
        "{}",
        String::from_utf8_lossy(&verify.stderr)
    );
    let csv = cli(&text, &["audit", "export", "--format", "csv"]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(
        csv.lines().next().unwrap().contains("kind"),
        "a header line"
    );
    assert!(csv.contains("token.issued"));
    let json_lines = cli(&text, &["audit", "export", "--format", "json"]);
    for line in String::from_utf8(json_lines.stdout).unwrap().lines() {
        serde_json::from_str::<Value>(line).unwrap();
    }
    let current = again.verb("ris", "change-me", &["context"]);
    let current: Value = serde_json::from_slice(&current.stdout).unwrap();
    assert_eq!(current["context.type"], "");
    assert!(again.terminate().success());
}
