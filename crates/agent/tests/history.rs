//! The agent records what the hub decides: history of every accepted change, an audit row for
//! every security-relevant act, a history API behind its own scope, and reopen.

mod common;

use lockstep_agent::client::HubClient;
use lockstep_agent::{AgentHandle, AppConfig, Config};
use lockstep_store::{AuditQuery, HistoryQuery};
use serde_json::{Value, json};
use std::time::Duration;

fn config(db: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.hub.port = 0;
    config.history.database = Some(db.to_owned());
    let app = |id: &str, scopes: &[&str]| AppConfig {
        client_id: id.into(),
        client_secret: Some("secret-for-tests".into()),
        client_secret_key: None,
        scopes: scopes.iter().map(|s| s.to_string()).collect(),
        name: Some(format!("{id} app")),
        acknowledges: true,
        redirect_uris: Vec::new(),
    };
    config.apps = vec![
        app("ris", &["fhircast/*.read", "fhircast/*.write"]),
        app("privacy", &["lockstep/history.read"]),
        app(
            "tray",
            &[
                "fhircast/*.read",
                "lockstep/history.read",
                "lockstep/history.reopen",
            ],
        ),
    ];
    config
}

async fn start(db: &std::path::Path) -> AgentHandle {
    common::start(config(db)).await
}

fn origin(agent: &AgentHandle) -> String {
    common::origin(agent)
}

fn patient(id: &str, mrn: &str, family: &str) -> Value {
    common::patient_context(json!({
        "id": id,
        "identifier": [{ "type": { "coding": [{ "code": "MR" }] }, "value": mrn }],
        "name": [{ "family": family, "given": ["Ann"] }], "birthDate": "1961-02-03",
    }))
}

async fn history(agent: &AgentHandle, query: HistoryQuery) -> Vec<lockstep_store::HistoryEntry> {
    let history = agent.history().clone();
    tokio::task::spawn_blocking(move || history.query(&query))
        .await
        .unwrap()
        .unwrap()
}

/// Every audit row, newest first, once what was recorded so far is committed.
async fn audit_rows(agent: &AgentHandle) -> Vec<lockstep_store::AuditEntry> {
    agent.history().writer().flush().await.unwrap();
    agent
        .history()
        .store()
        .audit(&AuditQuery::default())
        .unwrap()
}

#[tokio::test]
async fn accepted_changes_are_in_history_as_soon_as_they_are_answered() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir.path().join("lockstep.db")).await;
    let ris = HubClient::sign_in(&origin(&agent), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    let mut viewer = ris.subscribe("Patient-open", Some("Viewer")).await.unwrap();
    let id = ris
        .publish("Patient-open", patient("p1", "MRN-77", "Rivera"), None)
        .await
        .unwrap();
    // No flush here: the 202 itself promises the row is on record.
    let entries = history(&agent, HistoryQuery::default()).await;
    assert_eq!(entries.len(), 1);
    let entry = &entries[0];
    assert_eq!(entry.event_id, id);
    assert_eq!(entry.event, "Patient-open");
    assert_eq!(entry.app, "ris app");
    assert_eq!(entry.summary.patient_mrn.as_deref(), Some("MRN-77"));
    assert_eq!(entry.summary.patient_name.as_deref(), Some("RIVERA, Ann"));
    let frame = viewer.next_frame().await.unwrap().unwrap();
    assert_eq!(
        serde_json::from_str::<Value>(&entry.event_json).unwrap(),
        frame
    );
    viewer.acknowledge(&id, 200).await.unwrap();

    // Searches by identifier and by text find it; others do not.
    let by_mrn = history(
        &agent,
        HistoryQuery {
            patient_identifier: Some("MRN-77".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_mrn.len(), 1);
    let by_text = history(
        &agent,
        HistoryQuery {
            text: Some("rivera".into()),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(by_text.len(), 1);
    let none = history(
        &agent,
        HistoryQuery {
            patient_identifier: Some("MRN-1".into()),
            ..Default::default()
        },
    )
    .await;
    assert!(none.is_empty());

    // The audit trail has the token, the subscription and the acknowledged delivery (the
    // acknowledgement reaches the hub on its own socket, some time after it was sent).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let kinds = loop {
        let audit = audit_rows(&agent).await;
        let kinds: Vec<String> = audit.iter().map(|a| a.kind.to_string()).collect();
        if kinds.iter().any(|k| k == "delivery.acknowledged")
            || std::time::Instant::now() > deadline
        {
            break kinds;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    for kind in [
        "token.issued",
        "subscription.granted",
        "delivery.acknowledged",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert!(
        agent
            .history()
            .store()
            .verify_audit()
            .unwrap()
            .broken
            .is_none()
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn refused_tokens_are_audited() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir.path().join("lockstep.db")).await;
    assert!(
        HubClient::sign_in(&origin(&agent), "ris", "wrong-secret", None)
            .await
            .is_err()
    );
    let audit = audit_rows(&agent).await;
    let refused = audit
        .iter()
        .find(|a| a.kind == "token.refused")
        .expect("a token.refused row");
    assert_eq!(refused.actor, "ris");
    agent.shutdown().await;
}

#[tokio::test]
async fn history_api_needs_its_own_scope() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir.path().join("lockstep.db")).await;
    let ris = HubClient::sign_in(&origin(&agent), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    ris.publish("Patient-open", patient("p1", "MRN-1", "Stone"), None)
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let token = |client: &str| {
        let http = http.clone();
        let url = format!("{}/auth/token", origin(&agent));
        let client = client.to_owned();
        async move {
            let body: Value = http
                .post(url)
                .basic_auth(&client, Some("secret-for-tests"))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            body["access_token"].as_str().unwrap().to_owned()
        }
    };
    let url = format!("{}/lockstep/history?patient=MRN-1", origin(&agent));
    let forbidden = http
        .get(&url)
        .bearer_auth(token("ris").await)
        .send()
        .await
        .unwrap();
    assert_eq!(forbidden.status(), 403);
    assert_eq!(http.get(&url).send().await.unwrap().status(), 401);
    let allowed = http
        .get(&url)
        .bearer_auth(token("privacy").await)
        .send()
        .await
        .unwrap();
    assert_eq!(allowed.status(), 200);
    let entries: Value = allowed.json().await.unwrap();
    assert_eq!(entries.as_array().unwrap().len(), 1);
    assert_eq!(entries[0]["summary"]["patient_mrn"], "MRN-1");
    let bad = http
        .get(format!("{}/lockstep/history?limit=many", origin(&agent)))
        .bearer_auth(token("privacy").await)
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    // Reading is not reopening.
    let id = entries[0]["id"].as_i64().unwrap();
    let reopen = format!("{}/lockstep/history/{id}/reopen", origin(&agent));
    assert_eq!(
        http.post(&reopen)
            .bearer_auth(token("privacy").await)
            .send()
            .await
            .unwrap()
            .status(),
        403
    );
    agent.shutdown().await;
}

#[tokio::test]
async fn reopen_republishes_a_past_open_as_a_new_event_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    let agent = start(&dir.path().join("lockstep.db")).await;
    let ris = HubClient::sign_in(&origin(&agent), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    let first = ris
        .publish("Patient-open", patient("p1", "MRN-1", "Stone"), None)
        .await
        .unwrap();
    ris.publish("Patient-open", patient("p2", "MRN-2", "Vance"), None)
        .await
        .unwrap();
    let close =
        json!([{ "key": "patient", "resource": { "resourceType": "Patient", "id": "p2" } }]);
    ris.publish("Patient-close", close, None).await.unwrap();
    let mut viewer = ris.subscribe("Patient-open", None).await.unwrap();

    let entries = history(&agent, HistoryQuery::default()).await;
    let stone = entries.iter().find(|e| e.event_id == first).unwrap().id;
    let reopened = reopen(&agent, stone).await.unwrap();
    let frame = viewer.next_frame().await.unwrap().unwrap();
    assert_eq!(frame["id"], reopened);
    assert_ne!(frame["id"], first);
    assert_eq!(frame["event"]["context"][0]["resource"]["id"], "p1");
    let current = ris.current_context().await.unwrap();
    assert_eq!(current["context"][0]["resource"]["id"], "p1");

    // Only opens can be reopened.
    let close_entry = entries
        .iter()
        .find(|e| e.event == "Patient-close")
        .unwrap()
        .id;
    assert!(reopen(&agent, close_entry).await.is_err());
    assert!(reopen(&agent, 999_999).await.is_err());

    let audit = audit_rows(&agent).await;
    let row = audit.iter().find(|a| a.kind == "history.reopened").unwrap();
    assert_eq!(row.actor, "the radiologist");
    agent.shutdown().await;
}

#[tokio::test]
async fn after_a_restart_the_context_is_empty_and_history_remains() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lockstep.db");
    let agent = start(&db).await;
    let ris = HubClient::sign_in(&origin(&agent), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    ris.publish("Patient-open", patient("p1", "MRN-1", "Stone"), None)
        .await
        .unwrap();
    agent.shutdown().await;

    let again = start(&db).await;
    let ris = HubClient::sign_in(&origin(&again), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    let current = ris.current_context().await.unwrap();
    assert_eq!(
        current["context.type"], "",
        "a restart never restores a patient silently"
    );
    assert!(again.watch_context().borrow().summary.is_none());
    assert_eq!(history(&again, HistoryQuery::default()).await.len(), 1);
    again.shutdown().await;
}

/// Reopens a history entry as the window does: on a blocking thread.
async fn reopen(
    agent: &lockstep_agent::AgentHandle,
    id: i64,
) -> Result<String, lockstep_agent::history::ReopenError> {
    let history = agent.history().clone();
    tokio::task::spawn_blocking(move || history.reopen(id, "the radiologist"))
        .await
        .unwrap()
}
