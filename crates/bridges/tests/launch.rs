//! The launch bridge end to end: a real child process that records the argv it was given, and
//! a real local HTTP server that receives the URL.

mod common;
use common::viewer::Viewer;
use common::*;
use lockstep_bridges::LinkState;
use lockstep_bridges::{BridgeReport, BridgesConfig};
use serde_json::{Value, json};
use std::path::Path;

const RECORDER: &str = env!("CARGO_BIN_EXE_lockstep-record-argv");

fn argv(file: &Path) -> Vec<String> {
    serde_json::from_str(&std::fs::read_to_string(file).unwrap()).unwrap()
}

fn exec_bridge(dir: &Path, extra: Value) -> Value {
    let mut bridge = json!({
        "name": "Desktop viewer",
        "events": ["ImagingStudy-open"],
        "program": RECORDER,
        "args": [dir, "--accession", "{study.accession}", "--mrn={patient.mrn}^^^{patient.mrn.issuer}",
                 "{study.uid}", "{patient.family}, {patient.given}", "{patient.birthDate:yyyyMMdd}"],
        "debounce_ms": 0,
        "identifiers": identifiers(),
    });
    for (k, v) in extra.as_object().unwrap() {
        bridge[k] = v.clone();
    }
    json!({ "launch": [bridge] })
}

#[tokio::test]
async fn exec_passes_the_context_as_exact_argv_elements_never_through_a_shell() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    let bridges = hub.bridges(exec_bridge(out.path(), json!({}))).await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;

    // Characters a shell or a URL would treat specially reach the program untouched.
    let accession = "A&1 $(rm -rf /);|^#";
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "MRN 7'\"", accession, "1.2.840.9"),
    );
    let files = wait_for_files(out.path(), 1).await;
    assert_eq!(
        argv(&files[0]),
        [
            "--accession",
            accession,
            "--mrn=MRN 7'\"^^^GENHOSP",
            "1.2.840.9",
            "O'Brien, Zoë Ann",
            "19610203"
        ]
    );
    hub.wait_for_state("Desktop viewer", LinkState::Unconfirmed)
        .await;
    assert_eq!(
        status_of(&bridges, "Desktop viewer").state,
        LinkState::Unconfirmed
    );
    assert_eq!(hub.count("Desktop viewer", BridgeReport::Acted), 1);
    bridges.stop().await;
}

#[tokio::test]
async fn url_fetch_reaches_a_local_server_with_each_component_encoded() {
    let hub = Hub::start();
    let viewer = Viewer::start().await;
    let port = viewer.port;

    let config = json!({ "launch": [{
        "name": "PACS viewer",
        "events": ["ImagingStudy-open"],
        "url": format!("http://127.0.0.1:{port}/IHEInvokeImageDisplay?requestType=STUDY&studyUID={{study.uid}}&accessionNumber={{study.accession}}&patientID={{patient.mrn}}%5E%5E%5E{{patient.mrn.issuer}}"),
        "allowed_schemes": ["http"],
        "allowed_hosts": ["127.0.0.1"],
        "fetch": true,
        "debounce_ms": 0,
        "identifiers": identifiers(),
    }]});
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("PACS viewer", LinkState::Following)
        .await;
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "M&1", "A 1/#ü", "1.2.3"),
    );
    hub.wait_for_state("PACS viewer", LinkState::Unconfirmed)
        .await;
    let queries = viewer.queries();
    assert_eq!(
        queries,
        [
            "requestType=STUDY&studyUID=1.2.3&accessionNumber=A%201%2F%23%C3%BC&patientID=M%261%5E%5E%5EGENHOSP"
        ]
    );
    let decoded: Vec<(String, String)> = form_urlencoded_pairs(&queries[0]);
    assert!(decoded.contains(&("accessionNumber".into(), "A 1/#ü".into())));
    assert!(decoded.contains(&("patientID".into(), "M&1^^^GENHOSP".into())));
    bridges.stop().await;
}

fn form_urlencoded_pairs(query: &str) -> Vec<(String, String)> {
    url::Url::parse(&format!("http://x/?{query}"))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[tokio::test]
async fn url_mode_hands_the_whole_url_to_the_opener_as_one_argument() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    let config = json!({ "launch": [{
        "name": "Desktop viewer",
        "events": ["ImagingStudy-open"],
        "url": "viewer://open?study={study.uid}&accession={study.accession}",
        "allowed_schemes": ["viewer"],
        // A desktop scheme's "host" is allow-listed like any other.
        "allowed_hosts": ["open"],
        "opener": [RECORDER, out.path()],
        "debounce_ms": 0,
        "identifiers": identifiers(),
    }]});
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "1", "A B&C", "1.2.3"),
    );
    let files = wait_for_files(out.path(), 1).await;
    assert_eq!(
        argv(&files[0]),
        ["viewer://open?study=1.2.3&accession=A%20B%26C"]
    );
    bridges.stop().await;
}

#[tokio::test]
async fn an_unmapped_identifier_is_refused_with_a_syncerror_and_nothing_is_launched() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    let mut others = hub.subscriber("Dictation", "SyncError");
    let bridges = hub.bridges(exec_bridge(out.path(), json!({}))).await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;

    // The patient's only MRN is in a system this bridge does not map.
    let mut context = study_open("p1", "1", "A1", "1.2.3");
    context[1]["resource"]["identifier"][0]["system"] = "urn:oid:9.9.9".into();
    let refused = hub.publish("ris", "ImagingStudy-open", context);
    let error = others.next_of("SyncError").await;
    let issue = &error["event"]["context"][0]["resource"]["issue"][0];
    let codings = issue["details"]["coding"].as_array().unwrap();
    assert!(
        codings.iter().any(|c| c["code"] == "Desktop viewer"),
        "{error}"
    );
    assert!(
        codings.iter().any(|c| c["code"] == refused.as_str()),
        "{error}"
    );
    let detail = hub
        .wait_for_state("Desktop viewer", LinkState::Refused { status: None })
        .await;
    assert!(detail.contains("no system mapped"), "{detail}");
    assert_eq!(hub.count("Desktop viewer", BridgeReport::Rejected), 1);

    // The next, mappable study launches; it is the only launch there ever was.
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p2", "2", "A2", "1.2.4"),
    );
    let files = wait_for_files(out.path(), 1).await;
    assert_eq!(files.len(), 1);
    assert_eq!(argv(&files[0])[1], "A2");
    bridges.stop().await;
}

#[tokio::test]
async fn rapid_switches_launch_the_first_at_once_and_only_the_latest_after() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    // A window long enough that the burst below surely falls inside it.
    let bridges = hub
        .bridges(exec_bridge(out.path(), json!({ "debounce_ms": 1500 })))
        .await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;
    for accession in ["A1", "A2", "A3", "A4"] {
        hub.publish(
            "ris",
            "ImagingStudy-open",
            study_open("p1", "1", accession, "1.2.3"),
        );
    }
    let files = wait_for_files(out.path(), 2).await;
    let launched: Vec<String> = files.iter().map(|f| argv(f)[1].clone()).collect();
    assert_eq!(launched, ["A1", "A4"]);
    bridges.stop().await;
    // Stopped: nothing else can come; A2 and A3 were coalesced away.
    assert_eq!(wait_for_files(out.path(), 2).await.len(), 2);
}

#[tokio::test]
async fn the_close_of_the_launched_study_runs_the_on_close_command() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    let on_close = json!({ "on_close_args": [out.path(), "--close", "{study.accession}"] });
    let bridges = hub.bridges(exec_bridge(out.path(), on_close)).await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "1", "A1", "1.2.3"),
    );
    wait_for_files(out.path(), 1).await;
    // A close carries only ids: the command is rendered from what was launched.
    let close = json!([
        { "key": "study", "resource": { "resourceType": "ImagingStudy", "id": "s-A1", "status": "available",
          "subject": { "reference": "Patient/p1" } } },
        { "key": "patient", "resource": { "resourceType": "Patient", "id": "p1" } },
    ]);
    hub.publish("ris", "ImagingStudy-close", close);
    let files = wait_for_files(out.path(), 2).await;
    assert_eq!(argv(&files[1]), ["--close", "A1"]);
    bridges.stop().await;
}

#[tokio::test]
async fn a_launcher_that_fails_breaks_the_link_and_tells_the_other_apps() {
    let hub = Hub::start();
    let out = tempfile::tempdir().unwrap();
    std::fs::write(out.path().join("exit-code"), "3").unwrap();
    let mut others = hub.subscriber("Dictation", "SyncError");
    let bridges = hub.bridges(exec_bridge(out.path(), json!({}))).await;
    hub.wait_for_state("Desktop viewer", LinkState::Following)
        .await;
    let id = hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "1", "A1", "1.2.3"),
    );
    let error = others.next_of("SyncError").await;
    let diagnostics = error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(diagnostics.contains("exit status: 3"), "{diagnostics}");
    let codings = error["event"]["context"][0]["resource"]["issue"][0]["details"]["coding"].clone();
    assert!(
        codings
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == id.as_str())
    );
    hub.wait_for_state("Desktop viewer", LinkState::Broken)
        .await;

    // A program that cannot be started at all fails the same way.
    let missing = json!({ "launch": [{
        "name": "Missing viewer", "program": out.path().join("no-such-program"),
        "args": ["{study.uid}"], "debounce_ms": 0,
    }]});
    let missing: BridgesConfig = serde_json::from_value(missing).unwrap();
    bridges.reload(&missing.validate().unwrap()).await;
    hub.wait_for_state("Missing viewer", LinkState::Following)
        .await;
    hub.publish(
        "ris",
        "ImagingStudy-open",
        study_open("p1", "1", "A2", "1.2.4"),
    );
    let detail = hub
        .wait_for_state("Missing viewer", LinkState::Broken)
        .await;
    assert!(detail.contains("cannot start"), "{detail}");
    bridges.stop().await;
}
