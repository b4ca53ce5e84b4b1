//! Bridges start and stop with the configuration, each on its own: a failing bridge is
//! reported broken and retried, and neither the hub nor the other bridges notice.

mod common;
use common::*;
use lockstep_bridges::{BridgesConfig, LinkState};
use lockstep_hub::EngineEvent;
use serde_json::{Value, json};
use std::path::Path;

const RECORDER: &str = env!("CARGO_BIN_EXE_lockstep-record-argv");

fn viewer(out: &Path, debounce_ms: u64) -> Value {
    json!({ "name": "Viewer", "program": RECORDER, "args": [out, "{study.uid}"], "debounce_ms": debounce_ms })
}

fn ris_out(dir: &Path) -> Value {
    json!({ "name": "RIS", "out": {
        "dir": dir, "file_name": "study.txt", "format": "text", "template": "{study.uid}\n",
    }})
}

fn subscriber_names(hub: &Hub) -> Vec<String> {
    let mut names: Vec<String> = hub
        .engine
        .subscribers(&hub.topic)
        .into_iter()
        .map(|(info, _)| info.spec_name().to_owned())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn a_failing_bridge_is_broken_and_retried_while_the_others_follow() {
    let hub = Hub::start();
    let tmp = tempfile::tempdir().unwrap();
    let launches = tmp.path().join("launches");
    std::fs::create_dir(&launches).unwrap();
    // A file where the bridge's folder should be: it cannot start until that is fixed.
    let blocker = tmp.path().join("exchange");
    std::fs::write(&blocker, "not a folder").unwrap();
    let config = json!({
        "launch": [viewer(&launches, 0)],
        "folder": [{ "name": "RIS", "in": {
            "dir": blocker.join("in"), "format": "text",
            "rules": [{ "event": "ImagingStudy-open", "study_uid": "line:1" }],
        }}],
    });
    let bridges = hub.bridges(config).await;
    let detail = hub.wait_for_state("RIS", LinkState::Broken).await;
    assert!(detail.contains("restarting in"), "{detail}");

    hub.wait_for_state("Viewer", LinkState::Following).await;
    hub.publish(
        "PACS",
        "ImagingStudy-open",
        study_open("p1", "1", "A1", "1.2.3"),
    );
    wait_for_files(&launches, 1).await;

    // Fixed underneath it: the next retry joins the session.
    std::fs::remove_file(&blocker).unwrap();
    hub.wait_for_state("RIS", LinkState::Following).await;
    assert_eq!(status_of(&bridges, "Viewer").state, LinkState::Unconfirmed);
    bridges.stop().await;
}

#[tokio::test]
async fn reload_matches_bridges_by_name() {
    let hub = Hub::start();
    let tmp = tempfile::tempdir().unwrap();
    let config = json!({ "launch": [viewer(tmp.path(), 0)], "folder": [ris_out(tmp.path())] });
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("Viewer", LinkState::Following).await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    assert_eq!(subscriber_names(&hub), ["RIS", "Viewer"]);

    // The viewer changes, the RIS goes, a dictation bridge comes.
    let next: BridgesConfig = serde_json::from_value(json!({
        "launch": [viewer(tmp.path(), 250)],
        "folder": [{ "name": "Dictation", "out": {
            "dir": tmp.path(), "file_name": "d.txt", "format": "text", "template": "{study.uid}",
        }}],
    }))
    .unwrap();
    let summary = bridges.reload(&next.validate().unwrap()).await;
    assert_eq!(summary.restarted, ["Viewer"]);
    assert_eq!(summary.stopped, ["RIS"]);
    assert_eq!(summary.started, ["Dictation"]);
    hub.wait_for_state("Dictation", LinkState::Following).await;
    let names: Vec<String> = bridges.statuses().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["Viewer", "Dictation"]);
    // The RIS left the session; the viewer is subscribed once, not twice.
    let mut expected = vec!["Dictation".to_owned(), "Viewer".to_owned()];
    expected.sort();
    let deadline = std::time::Instant::now() + PATIENCE;
    while subscriber_names(&hub) != expected {
        assert!(
            std::time::Instant::now() < deadline,
            "{:?}",
            subscriber_names(&hub)
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }

    // The same configuration again changes nothing.
    let summary = bridges.reload(&next.validate().unwrap()).await;
    assert!(
        summary.started.is_empty() && summary.restarted.is_empty() && summary.stopped.is_empty()
    );
    bridges.stop().await;
}

#[tokio::test]
async fn stopping_leaves_the_session_with_a_normal_goodbye() {
    let hub = Hub::start();
    let tmp = tempfile::tempdir().unwrap();
    let mut watcher = hub.subscriber("Watcher", "SyncError,ImagingStudy-open");
    let bridges = hub
        .bridges(json!({ "launch": [viewer(tmp.path(), 0)], "folder": [ris_out(tmp.path())] }))
        .await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    hub.wait_for_state("Viewer", LinkState::Following).await;
    bridges.stop().await;
    assert_eq!(subscriber_names(&hub), ["Watcher"]);
    assert!(bridges.statuses().iter().all(|s| s.state == LinkState::Off));
    // Leaving is no failure: the next thing the other app sees is the next event, not a SyncError.
    hub.publish(
        "PACS",
        "ImagingStudy-open",
        study_open("p1", "1", "A1", "1.2.3"),
    );
    assert_eq!(
        watcher.next().await["event"]["hub.event"],
        "ImagingStudy-open"
    );
    hub.wait_for("the publish", |e| {
        matches!(e, EngineEvent::ContextChanged { .. })
    })
    .await;
}
