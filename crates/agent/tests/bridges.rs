//! The README's bridges example, run end to end by the agent: a viewer opened by URL (a real
//! local HTTP server receives it) and a RIS exchanging files (real folders), with real apps
//! on the hub over HTTP and WebSocket; link states, the audit trail and reload.

#[path = "../../bridges/tests/common/ccow.rs"]
mod ccow;
#[path = "../../bridges/tests/common/viewer.rs"]
mod viewer;

mod common;

use lockstep_agent::client::HubClient;
use lockstep_agent::config::ConfigSources;
use lockstep_agent::{Config, LinkKind};
use lockstep_bridges::LinkState;
use lockstep_store::AuditQuery;
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use viewer::Viewer;

const PATIENCE: Duration = Duration::from_secs(15);

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(path)
}

/// The example, pointed at a local server and a temp dir instead of the site's.
fn example(port: u16, dir: &Path) -> String {
    std::fs::read_to_string(repo("docs/examples/bridges.toml"))
        .unwrap()
        .replace(
            "https://pacs.example.org",
            &format!("http://127.0.0.1:{port}"),
        )
        .replace(
            r#"allowed_schemes = ["https"]"#,
            r#"allowed_schemes = ["http"]"#,
        )
        .replace(
            r#"allowed_hosts = ["pacs.example.org"]"#,
            r#"allowed_hosts = ["127.0.0.1"]"#,
        )
        .replace("/var/lib/lockstep/ris", &dir.display().to_string())
}

fn load(text: &str, dir: &Path) -> Result<Config, lockstep_agent::ConfigError> {
    let file = dir.join("lockstep.toml");
    std::fs::write(&file, text).unwrap();
    Config::load_from(&ConfigSources {
        files: vec![(file, true)],
        ..Default::default()
    })
}

const APPS: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "pacs"
client_secret = "pacs-secret-for-tests"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "Other PACS"
"#;

async fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + PATIENCE;
    loop {
        if let Some(found) = check() {
            return found;
        }
        assert!(Instant::now() < deadline, "waited in vain for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn study_open() -> Value {
    json!([
        { "key": "study", "resource": {
            "resourceType": "ImagingStudy", "id": "s1", "status": "available",
            "subject": { "reference": "Patient/p1" },
            "identifier": [
                { "type": { "coding": [{ "code": "ACSN" }] }, "system": "urn:oid:1.2.36.1.2001.1005.52", "value": "ACC-5001" },
                { "system": "urn:dicom:uid", "value": "urn:oid:1.2.840.1" },
            ],
        }},
        { "key": "patient", "resource": {
            "resourceType": "Patient", "id": "p1",
            "identifier": [{ "type": { "coding": [{ "code": "MR" }] }, "system": "urn:oid:1.2.36.1.2001.1003.0", "value": "MRN-1001" }],
            "name": [{ "family": "O'Brien", "given": ["Zoë", "Ann"] }], "birthDate": "1961-02-03",
        }},
    ])
}

#[test]
fn the_readme_shows_the_example_verbatim() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let example = std::fs::read_to_string(repo("docs/examples/bridges.toml")).unwrap();
    assert!(
        readme.contains(&example),
        "README.md must quote docs/examples/bridges.toml exactly (the test runs that file)"
    );
}

#[tokio::test]
async fn a_viewer_by_url_and_a_ris_by_files_work_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let viewer = Viewer::start().await;
    let port = viewer.port;

    let mut config = load(
        &format!("{APPS}\n{}", example(port, dir.path())),
        dir.path(),
    )
    .unwrap();
    config.history.database = Some(dir.path().join("lockstep.db"));
    let agent = common::start(config.clone()).await;
    let mut states = agent.watch_bridges();
    tokio::time::timeout(
        PATIENCE,
        states
            .wait_for(|all| all.len() == 2 && all.iter().all(|s| s.state == LinkState::Following)),
    )
    .await
    .expect("both bridges in the session")
    .unwrap();

    let origin = format!("http://127.0.0.1:{}", agent.port());
    let pacs = HubClient::sign_in(&origin, "pacs", "pacs-secret-for-tests", None)
        .await
        .unwrap();
    let mut reports = pacs
        .subscribe("DiagnosticReport-open", Some("Other PACS"))
        .await
        .unwrap();

    // Out: the session opens a study; the viewer is called and the RIS gets its file.
    pacs.publish("ImagingStudy-open", study_open(), None)
        .await
        .unwrap();
    let query = wait_until("the viewer's request", || viewer.queries().first().cloned()).await;
    assert_eq!(
        query,
        "requestType=STUDY&studyUID=1.2.840.1&accessionNumber=ACC-5001&patientID=MRN-1001%5E%5E%5EGENHOSP"
    );
    let study_xml = dir.path().join("to-ris/study.xml");
    let bytes = wait_until("study.xml", || std::fs::read(&study_xml).ok()).await;
    let text =
        lockstep_bridges::text::decode(&bytes, lockstep_bridges::text::Decoder::Utf8).unwrap();
    assert!(
        text.contains("<AccessionNumber>ACC-5001</AccessionNumber>\r\n"),
        "{text}"
    );
    assert!(
        text.contains("<PatientName>O&apos;Brien^Zoë Ann</PatientName>"),
        "{text}"
    );

    // In: the RIS opens the report for that study; the apps get a DiagnosticReport-open.
    let from_ris = dir.path().join("from-ris");
    let staged = dir.path().join("staged.xml");
    std::fs::copy(
        repo("crates/bridges/tests/fixtures/report-opened.xml"),
        &staged,
    )
    .unwrap();
    std::fs::rename(&staged, from_ris.join("report.xml")).unwrap();
    let frame = loop {
        let frame = tokio::time::timeout(PATIENCE, reports.next_frame())
            .await
            .expect("a report notification")
            .unwrap()
            .unwrap();
        if frame["event"]["hub.event"] == "DiagnosticReport-open" {
            break frame;
        }
    };
    reports
        .acknowledge(frame["id"].as_str().unwrap(), 200)
        .await
        .unwrap();
    let context = frame["event"]["context"].as_array().unwrap();
    let patient = context.iter().find(|e| e["key"] == "patient").unwrap();
    assert_eq!(
        patient["resource"]["id"], "p1",
        "the current patient, not a new one"
    );

    // The states and the audit trail say what the bridges did.
    let mut watch = agent.watch_bridges();
    tokio::time::timeout(
        PATIENCE,
        watch.wait_for(|all| {
            let is = |name: &str, state| all.iter().any(|s| s.name == name && s.state == state);
            is("RIS", LinkState::Following) && is("PACS viewer", LinkState::Unconfirmed)
        }),
    )
    .await
    .expect("the RIS following again, the viewer launched")
    .unwrap();
    let states = agent.bridges();
    let state = |name: &str| states.iter().find(|s| s.name == name).unwrap().state;
    assert_eq!(state("PACS viewer"), LinkState::Unconfirmed);
    assert_eq!(state("RIS"), LinkState::Following);
    agent.history().writer().flush().await.unwrap();
    let history = agent.history().clone();
    let audit = tokio::task::spawn_blocking(move || {
        history.store().audit(&AuditQuery {
            limit: 1000,
            ..Default::default()
        })
    })
    .await
    .unwrap()
    .unwrap();
    let rows = |kind: &str, actor: &str| {
        audit
            .iter()
            .filter(|r| r.kind == kind && r.actor == actor)
            .count()
    };
    assert!(rows("bridge.link", "PACS viewer") >= 2, "{audit:#?}");
    assert_eq!(rows("bridge.action", "PACS viewer"), 1);
    assert_eq!(rows("bridge.action", "RIS"), 1);

    // The current-context window lists each bridge once, with its own link state.
    let mut links = agent.watch_links();
    tokio::time::timeout(
        PATIENCE,
        links.wait_for(|all| {
            all.iter().any(|l| {
                l.name == "PACS viewer"
                    && l.kind == LinkKind::Bridge
                    && l.state == LinkState::Unconfirmed
            }) && all.iter().any(|l| {
                l.name == "RIS" && l.kind == LinkKind::Bridge && l.state == LinkState::Following
            })
        }),
    )
    .await
    .expect("the bridges in the window's list")
    .unwrap();
    assert_eq!(
        links.borrow().iter().filter(|l| l.name == "RIS").count(),
        1,
        "{:?}",
        *links.borrow()
    );

    // Reload without the viewer: it leaves, the RIS and the hub carry on.
    let without_viewer = load(
        &format!("{APPS}\n{}", example(port, dir.path()))
            .replace("[[bridges.launch]]", "[[bridges.launch]]\nenabled = false"),
        dir.path(),
    )
    .unwrap();
    let summary = agent.reload_bridges(&without_viewer).await.unwrap();
    assert_eq!(summary.stopped, ["PACS viewer"]);
    assert!(summary.restarted.is_empty() && summary.started.is_empty());
    assert_eq!(
        agent
            .bridges()
            .iter()
            .map(|s| (s.name.as_str(), s.state))
            .collect::<Vec<_>>(),
        [
            ("RIS", LinkState::Following),
            ("PACS viewer", LinkState::Off)
        ]
    );
    pacs.publish("ImagingStudy-open", study_open(), None)
        .await
        .unwrap();
    agent.shutdown().await;
}

#[test]
fn a_bridge_config_error_names_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let shell = r#"
[[bridges.launch]]
name = "viewer"
program = "/bin/bash"
args = ["-c", "viewer {study.uid}"]
"#;
    let err = load(shell, dir.path()).unwrap_err();
    assert_eq!(err.key, "bridges.launch[0].program");
    let unknown = "[[bridges.folder]]\nname = \"ris\"\nwatch = \"/tmp\"\n";
    let err = load(unknown, dir.path()).unwrap_err();
    assert!(err.key.starts_with("bridges.folder"), "{err}");
    assert!(err.reason.contains("unknown field"), "{err}");
}

#[test]
fn the_readme_shows_the_ccow_example_verbatim() {
    let readme = std::fs::read_to_string(repo("README.md")).unwrap();
    let example = std::fs::read_to_string(repo("docs/examples/ccow.toml")).unwrap();
    assert!(
        readme.contains(&example),
        "README.md must quote docs/examples/ccow.toml exactly (the test runs that file)"
    );
}

#[tokio::test]
async fn the_ccow_example_lists_each_ccow_application_and_publishes_its_changes() {
    let dir = tempfile::tempdir().unwrap();
    let example = std::fs::read_to_string(repo("docs/examples/ccow.toml"))
        .unwrap()
        .replace("port = 2116", "port = 0");
    let mut config = load(&format!("{APPS}\n{example}"), dir.path()).unwrap();
    config.history.database = Some(dir.path().join("lockstep.db"));
    let agent = common::start(config).await;
    let mut states = agent.watch_bridges();
    let ready = tokio::time::timeout(
        PATIENCE,
        states.wait_for(|all| all.iter().any(|s| s.state == LinkState::Following)),
    )
    .await
    .expect("the CCOW bridge in the session")
    .unwrap()
    .clone();
    let base = ready[0]
        .detail
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned();

    let origin = format!("http://127.0.0.1:{}", agent.port());
    let pacs = HubClient::sign_in(&origin, "pacs", "pacs-secret-for-tests", None)
        .await
        .unwrap();
    let mut patients = pacs.subscribe("Patient-open", None).await.unwrap();

    // An application with no callback (it is never surveyed) joins and commits a patient.
    let cm = ccow::CcowClient::new(&base);
    let joined = cm
        .get(
            "ContextManager",
            "JoinCommonContext",
            &[("applicationName", "EHR#"), ("survey", "false")],
        )
        .await
        .unwrap();
    let ehr = joined.require("participantCoupon").unwrap().to_owned();
    let mut links = agent.watch_links();
    let listed = tokio::time::timeout(
        PATIENCE,
        links.wait_for(|l| {
            l.iter()
                .any(|v| v.name == "EHR" && v.via.as_deref() == Some("CCOW"))
        }),
    )
    .await
    .expect("the EHR listed as an app of its own")
    .unwrap()
    .clone();
    let link = listed.iter().find(|v| v.name == "EHR").unwrap();
    assert_eq!(link.kind, LinkKind::App);
    assert_eq!(link.state, LinkState::Following);

    let (tx, no_continue, _) = cm
        .change(
            &ehr,
            "Patient.Id.MRN.GENHOSP|Patient.Co.PatientName",
            "MRN-1001|O'BRIEN^ZOË",
        )
        .await;
    assert!(!no_continue);
    cm.decide(&ehr, &tx, "accept").await;
    let frame = tokio::time::timeout(PATIENCE, patients.next_frame())
        .await
        .expect("the Patient-open")
        .unwrap()
        .unwrap();
    assert_eq!(
        frame["event"]["context"][0]["resource"]["identifier"][0]["value"],
        "MRN-1001"
    );
    agent.history().writer().flush().await.unwrap();
    let history = agent
        .history()
        .query(&lockstep_store::HistoryQuery::default())
        .unwrap();
    assert_eq!(history[0].app, "EHR (via CCOW)");

    cm.get(
        "ContextManager",
        "LeaveCommonContext",
        &[("participantCoupon", &ehr)],
    )
    .await
    .unwrap();
    tokio::time::timeout(
        PATIENCE,
        links.wait_for(|l| !l.iter().any(|v| v.name == "EHR")),
    )
    .await
    .expect("the EHR off the list once it left")
    .unwrap();
    agent.shutdown().await;
}
