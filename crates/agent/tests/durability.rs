//! A 2xx means recorded: while history cannot be written the agent refuses context changes
//! with 503 and the reason, the tray and window say so at once, and everything recovers by
//! itself once the disk has room again. A site may choose to sync without history; a damaged
//! database stops the agent unless the site chose to start fresh, and the file is kept.

#[path = "../../store/tests/common/mount.rs"]
mod mount;

mod common;

use lockstep_agent::client::{ClientError, HubClient};
use lockstep_agent::config::{WhenDamaged, WhenUnwritable};
use lockstep_agent::desktop::TrayStatus;
use lockstep_agent::secrets::MemoryStore;
use lockstep_agent::{Agent, AgentHandle, AppConfig, Config};
use lockstep_store::HistoryQuery;
use mount::{Mount, fill, skip};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(db: &Path) -> Config {
    let mut config = Config::default();
    config.hub.port = 0;
    config.history.database = Some(db.to_owned());
    config.apps = vec![AppConfig {
        client_id: "ris".into(),
        client_secret: Some("secret-for-tests".into()),
        client_secret_key: None,
        scopes: vec!["fhircast/*.read".into(), "fhircast/*.write".into()],
        name: Some("RIS".into()),
        acknowledges: true,
        redirect_uris: Vec::new(),
    }];
    config
}

async fn sign_in(agent: &AgentHandle) -> HubClient {
    HubClient::sign_in(&common::origin(agent), "ris", "secret-for-tests", None)
        .await
        .unwrap()
}

/// A Patient-open carrying about 20 KB, so that a few of them outgrow any slack of the WAL.
fn patient(n: usize) -> Value {
    common::patient_context(json!({
        "id": format!("p{n}"),
        "identifier": [{ "value": format!("MRN-{n}") }],
        "text": { "status": "generated", "div": "x".repeat(20_000) },
    }))
}

async fn wait_for_status(agent: &AgentHandle, wanted: impl Fn(TrayStatus) -> bool) -> TrayStatus {
    let mut status = agent.watch_status();
    common::wait_for(
        &mut status,
        "the tray status",
        Duration::from_secs(15),
        |now| wanted(*now),
    )
    .await
}

fn refusal(result: Result<String, ClientError>) -> (u16, String) {
    match result {
        Err(ClientError::Refused { status, body }) => (status, body),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn a_full_disk_refuses_changes_with_503_says_so_and_recovers_by_itself() {
    let mount = match Mount::tmpfs("8m") {
        Ok(mount) => mount,
        Err(why) => return skip("full disk (agent)", &why),
    };
    let agent = common::start(config(&mount.at.join("lockstep.db"))).await;
    let ris = sign_in(&agent).await;
    let mut viewer = ris.subscribe("Patient-open", Some("Viewer")).await.unwrap();
    let first = ris.publish("Patient-open", patient(0), None).await.unwrap();

    let filler = fill(&mount.at);
    // Changes are relayed until the first one that cannot be recorded: it is answered 503,
    // not 202, and from then on changes are refused before anyone sees them.
    let mut relayed_unrecorded = Vec::new();
    for n in 1..50 {
        match ris.publish("Patient-open", patient(n), None).await {
            Ok(id) => relayed_unrecorded.push(id),
            Err(ClientError::Refused { status, body }) => {
                assert_eq!(status, 503, "{body}");
                break;
            }
            Err(other) => panic!("{other}"),
        }
    }
    let status = wait_for_status(&agent, |s| s == TrayStatus::NoHistory).await;
    assert_eq!(status, TrayStatus::NoHistory);
    let notice = agent.history_notice().expect("the window says why");
    assert!(notice.contains("full"), "{notice}");
    let (status, body) = refusal(ris.publish("Patient-open", patient(99), None).await);
    assert_eq!(status, 503);
    assert!(body.contains("full") && body.contains("refused"), "{body}");
    // Refused changes reach no one.
    let mut seen = Vec::new();
    while let Ok(Ok(Some(frame))) =
        tokio::time::timeout(Duration::from_millis(300), viewer.next_frame()).await
    {
        seen.push(frame["event"]["context"][0]["resource"]["id"].clone());
    }
    assert!(!seen.contains(&json!("p99")), "{seen:?}");

    std::fs::remove_file(filler).unwrap();
    wait_for_status(&agent, |s| s != TrayStatus::NoHistory).await;
    assert_eq!(agent.history_notice(), None);
    let after = ris
        .publish("Patient-open", patient(100), None)
        .await
        .unwrap();
    // Everything relayed is on record, in order: what waited through the full disk too.
    let history = agent.history().clone();
    let mut entries = tokio::task::spawn_blocking(move || history.query(&HistoryQuery::default()))
        .await
        .unwrap()
        .unwrap();
    entries.sort_by_key(|e| e.id);
    let recorded: Vec<String> = entries.into_iter().map(|e| e.event_id).collect();
    let mut expected = vec![first];
    expected.extend(relayed_unrecorded);
    expected.push(after);
    let relayed: Vec<&String> = recorded.iter().filter(|id| expected.contains(id)).collect();
    assert_eq!(relayed, expected.iter().collect::<Vec<_>>());
    agent.shutdown().await;
}

#[tokio::test]
async fn by_site_policy_changes_go_on_without_history_and_the_tray_says_so() {
    let mount = match Mount::tmpfs("8m") {
        Ok(mount) => mount,
        Err(why) => return skip("sync without history", &why),
    };
    let mut config = config(&mount.at.join("lockstep.db"));
    config.history.when_unwritable = WhenUnwritable::SyncWithoutHistory;
    let agent = common::start(config).await;
    let ris = sign_in(&agent).await;
    ris.publish("Patient-open", patient(0), None).await.unwrap();
    let _filler = fill(&mount.at);
    for n in 1..20 {
        ris.publish("Patient-open", patient(n), None)
            .await
            .expect("answered: the site chose to sync without history");
    }
    wait_for_status(&agent, |s| s == TrayStatus::SyncWithoutHistory).await;
    let notice = agent.history_notice().unwrap();
    assert!(notice.contains("site policy"), "{notice}");
    agent.shutdown().await;
}

/// A store with enough rows to have interior pages, then one of them zeroed.
fn damaged_store(db: &Path) {
    {
        let store = lockstep_store::Store::open(db, Default::default()).unwrap();
        let writer = store.writer().unwrap();
        for n in 0..300 {
            writer.record_history(lockstep_store::HistoryRecord::new(
                "T",
                "Patient-open",
                format!("e{n}"),
                "RIS",
                patient(n).to_string(),
            ));
        }
        writer.shutdown().unwrap();
    }
    let mut bytes = std::fs::read(db).unwrap();
    let middle = bytes.len() / 4096 / 2 * 4096;
    bytes[middle..middle + 4096].fill(0);
    std::fs::write(db, &bytes).unwrap();
}

#[tokio::test]
async fn a_damaged_database_stops_the_agent_unless_the_site_chose_to_start_fresh() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("lockstep.db");
    damaged_store(&db);
    let damaged = std::fs::read(&db).unwrap();

    let refused = Agent::start_with(config(&db), Arc::new(MemoryStore::default()))
        .await
        .err()
        .expect("the agent does not start on a damaged database");
    let said = refused.to_string();
    assert!(
        said.contains("damaged pages") && said.contains("when_damaged"),
        "{said}"
    );
    assert_eq!(
        std::fs::read(&db).unwrap(),
        damaged,
        "the file is untouched"
    );

    let mut config = config(&db);
    config.history.when_damaged = WhenDamaged::StartFresh;
    let agent = common::start(config).await;
    let ris = sign_in(&agent).await;
    ris.publish("Patient-open", patient(1), None).await.unwrap();
    let kept: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().contains("lockstep.db.damaged-"))
        .filter(|p| std::fs::read(p).is_ok_and(|b| b == damaged))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the damaged file is kept beside the fresh one"
    );
    agent.shutdown().await;
}
