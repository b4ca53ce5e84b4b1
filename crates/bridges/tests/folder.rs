//! The folder bridge end to end, with real folders in a temp dir: files in become requests
//! (or are rejected into error/ with a reason), context changes become files out.

mod common;
use common::*;
use lockstep_bridges::BridgeReport;
use lockstep_bridges::LinkState;
use lockstep_bridges::text::{Decoder, decode};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

struct Folders {
    _root: tempfile::TempDir,
    inbox: PathBuf,
    outbox: PathBuf,
    staging: PathBuf,
}

impl Folders {
    fn new() -> Folders {
        let root = tempfile::tempdir().unwrap();
        let (inbox, outbox, staging) = (
            root.path().join("in"),
            root.path().join("out"),
            root.path().join("staging"),
        );
        for dir in [&inbox, &outbox, &staging] {
            std::fs::create_dir_all(dir).unwrap();
        }
        Folders {
            _root: root,
            inbox,
            outbox,
            staging,
        }
    }

    /// Drops a fixture as a careful writer does: written elsewhere, renamed into place.
    fn drop_file(&self, fixture_name: &str, as_name: &str) {
        let staged = self.staging.join(as_name);
        std::fs::copy(fixture(fixture_name), &staged).unwrap();
        std::fs::rename(staged, self.inbox.join(as_name)).unwrap();
    }

    /// Drops bytes written in place (the writer creates, writes and closes the file).
    fn write_in_place(&self, bytes: &[u8], as_name: &str) {
        std::fs::write(self.inbox.join(as_name), bytes).unwrap();
    }

    fn files(&self, sub: &str) -> Vec<String> {
        let dir = self.inbox.join(sub);
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Waits until `name` has left the folder (handled files go once their request is out).
    async fn gone(&self, name: &str) {
        let deadline = Instant::now() + PATIENCE;
        while self.inbox.join(name).exists() {
            assert!(Instant::now() < deadline, "{name} stayed in the folder");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Waits for a rejected file and returns its reason.
    async fn rejected(&self, name: &str) -> String {
        let deadline = Instant::now() + PATIENCE;
        loop {
            if let Some(reason) = self
                .files("error")
                .iter()
                .find(|f| f.ends_with(&format!("-{name}.reason.txt")))
            {
                assert!(
                    self.files("error")
                        .iter()
                        .any(|f| f.ends_with(&format!("-{name}"))),
                    "the rejected file itself is kept beside its reason"
                );
                return std::fs::read_to_string(self.inbox.join("error").join(reason)).unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "{name} was never rejected: {:?}",
                self.files("error")
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn ris(folders: &Folders, extra_in: Value) -> Value {
    let mut inbound = json!({
        "dir": folders.inbox,
        "pattern": "*.xml",
        "format": "xml",
        "message_type": "/Message/Type",
        "ignore_types": ["Login"],
        "rules": [{
            "when": "ReportOpened",
            "event": "DiagnosticReport-open",
            "mrn": "/Message/Patient/ID",
            "mrn_issuer": "/Message/Patient/ID/@issuer",
            "accession": "/Message/Accessions/Accession",
            "accession_issuer": "/Message/Accessions/Accession/@issuer",
            "family_name": "/Message/Patient/FamilyName",
            "given_name": "/Message/Patient/GivenName",
            "birth_date": "/Message/Patient/BirthDate",
        }],
    });
    for (k, v) in extra_in.as_object().unwrap() {
        inbound[k] = v.clone();
    }
    json!({ "folder": [{ "name": "RIS", "identifiers": identifiers(), "in": inbound }] })
}

fn resource<'a>(notification: &'a Value, key: &str) -> &'a Value {
    notification["event"]["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == key)
        .map(|e| &e["resource"])
        .unwrap_or_else(|| panic!("no {key} in {notification}"))
}

fn accession_of(notification: &Value) -> String {
    resource(notification, "report")["basedOn"][0]["identifier"]["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_report_opened_file_becomes_a_diagnostic_report_open_and_is_archived() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    hub.wait_for_state("RIS", LinkState::Following).await;

    folders.drop_file("report-opened.xml", "r1.xml");
    let n = pacs.next_of("DiagnosticReport-open").await;
    let patient = resource(&n, "patient");
    assert_eq!(patient["identifier"][0]["system"], MRN_SYSTEM);
    assert_eq!(patient["identifier"][0]["value"], "MRN-1001");
    assert_eq!(patient["name"][0]["family"], "O'Brien");
    assert_eq!(patient["name"][0]["given"], json!(["Zoë", "Ann"]));
    assert_eq!(patient["birthDate"], "1961-02-03");
    let report = resource(&n, "report");
    assert_eq!(report["basedOn"][0]["identifier"]["system"], ACSN_SYSTEM);
    assert_eq!(accession_of(&n), "ACC-5001");
    assert_eq!(
        report["subject"]["reference"],
        format!("Patient/{}", patient["id"].as_str().unwrap())
    );
    // The hub took it from the bridge, under the bridge's name.
    hub.wait_for("the change in history", |e| {
        matches!(e, lockstep_hub::EngineEvent::ContextChanged { requester, .. } if requester == "RIS")
    })
    .await;
    folders.gone("r1.xml").await;
    let archived = folders.files("archive");
    assert!(
        archived.len() == 1 && archived[0].ends_with("-r1.xml"),
        "{archived:?}"
    );
    bridges.stop().await;
}

#[tokio::test]
async fn utf16_with_a_bom_is_read_and_a_half_written_character_is_not() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    hub.wait_for_state("RIS", LinkState::Following).await;

    // Written in place: read when its writer closes it.
    let utf16 = std::fs::read(fixture("report-opened-utf16.xml")).unwrap();
    folders.write_in_place(&utf16, "utf16.xml");
    let n = pacs.next_of("DiagnosticReport-open").await;
    assert_eq!(accession_of(&n), "ACC-5002");
    assert_eq!(resource(&n, "patient")["name"][0]["given"][0], "Zoë");

    folders.write_in_place(&utf16[..utf16.len() - 1], "cut.xml");
    let reason = folders.rejected("cut.xml").await;
    assert!(reason.contains("partial write"), "{reason}");
    bridges.stop().await;
}

#[tokio::test]
async fn partial_duplicate_stale_malformed_and_unknown_files_are_rejected_one_by_one() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    hub.wait_for_state("RIS", LinkState::Following).await;

    folders.drop_file("half-written.xml", "half.xml");
    assert!(
        folders
            .rejected("half.xml")
            .await
            .starts_with("partial write")
    );

    folders.drop_file("malformed.xml", "bad.xml");
    assert!(folders.rejected("bad.xml").await.starts_with("malformed"));

    folders.drop_file("report-opened.xml", "first.xml");
    assert_eq!(accession_of(&pacs.next().await), "ACC-5001");
    folders.drop_file("report-opened.xml", "again.xml");
    assert!(folders.rejected("again.xml").await.starts_with("duplicate"));

    // Last written an hour ago (a leftover, or a replay): stale.
    let staged = folders.staging.join("old.xml");
    std::fs::copy(fixture("report-opened-utf16.xml"), &staged).unwrap();
    let file = std::fs::File::options().write(true).open(&staged).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);
    std::fs::rename(&staged, folders.inbox.join("old.xml")).unwrap();
    assert!(folders.rejected("old.xml").await.starts_with("stale"));

    std::fs::write(
        folders.inbox.join("odd.xml"),
        "<Message><Type>Dance</Type></Message>",
    )
    .unwrap();
    assert!(
        folders
            .rejected("odd.xml")
            .await
            .contains("no rule for message type `Dance`")
    );

    // Ignored types are handled quietly; in-progress names are never read.
    folders.drop_file("login.xml", "login.xml");
    std::fs::write(folders.inbox.join("next.xml.tmp"), "<Message>").unwrap();
    // Files are handled in order: once this one is through, all before it were too.
    std::fs::copy(
        fixture("report-opened-utf16.xml"),
        folders.staging.join("last.xml"),
    )
    .unwrap();
    std::fs::rename(
        folders.staging.join("last.xml"),
        folders.inbox.join("last.xml"),
    )
    .unwrap();
    assert_eq!(accession_of(&pacs.next().await), "ACC-5002");
    let archived = folders.files("archive");
    assert!(
        archived.iter().any(|f| f.ends_with("-login.xml")),
        "{archived:?}"
    );
    assert!(folders.inbox.join("next.xml.tmp").exists());
    // One audit row per rejection, each naming the file; nothing was published for them.
    let rejections: Vec<String> = hub
        .bridge_reports()
        .into_iter()
        .filter(|(b, r, _)| b == "RIS" && *r == BridgeReport::Rejected)
        .map(|(_, _, d)| d)
        .collect();
    assert_eq!(rejections.len(), 5, "{rejections:#?}");
    for name in ["half.xml", "bad.xml", "again.xml", "old.xml", "odd.xml"] {
        assert!(
            rejections
                .iter()
                .any(|d| d.contains(&format!("file {name} rejected")))
        );
    }
    bridges.stop().await;
}

#[tokio::test]
async fn a_file_naming_another_patient_raises_a_syncerror_and_never_switches() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut watcher = hub.subscriber("Dictation", "SyncError");
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    hub.publish(
        "PACS",
        "ImagingStudy-open",
        study_open("p1", "MRN-1001", "ACC-5001", "1.2.3"),
    );

    folders.drop_file("other-patient.xml", "other.xml");
    let error = watcher.next_of("SyncError").await;
    let issue = &error["event"]["context"][0]["resource"]["issue"][0];
    assert!(
        issue["diagnostics"]
            .as_str()
            .unwrap()
            .contains("another patient"),
        "{error}"
    );
    assert!(
        issue["details"]["coding"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "RIS")
    );
    assert!(
        folders
            .rejected("other.xml")
            .await
            .contains("another patient")
    );
    hub.wait_for_state("RIS", LinkState::Broken).await;
    assert_eq!(hub.current_patient_mrn().as_deref(), Some("MRN-1001"));
    // The audit row says who; the log line and the tray do not.
    let (_, _, audit) = hub
        .bridge_reports()
        .into_iter()
        .find(|(_, r, _)| *r == BridgeReport::Rejected)
        .unwrap();
    assert!(audit.contains("MRN-2002"), "{audit}");
    assert!(!bridges.statuses()[0].detail.contains("MRN-2002"));

    // The same patient's report is passed on, and the link recovers.
    folders.drop_file("report-opened.xml", "same.xml");
    hub.wait_for_state("RIS", LinkState::Following).await;
    bridges.stop().await;
}

#[tokio::test]
async fn an_issuer_that_is_not_mapped_is_refused_not_guessed() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut watcher = hub.subscriber("Dictation", "SyncError");
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    folders.drop_file("unmapped-issuer.xml", "elsewhere.xml");
    let reason = folders.rejected("elsewhere.xml").await;
    assert!(reason.contains("`ELSEWHERE` is not mapped"), "{reason}");
    watcher.next_of("SyncError").await;
    hub.wait_for_state("RIS", LinkState::Refused { status: None })
        .await;
    assert_eq!(hub.current_patient_mrn(), None);
    bridges.stop().await;
}

#[tokio::test]
async fn a_report_for_the_current_accession_takes_the_patient_from_the_context() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    let config = json!({ "folder": [{ "name": "Dictation", "identifiers": identifiers(), "in": {
        "dir": folders.inbox, "pattern": "*.json", "format": "json", "message_type": "/messageType",
        "rules": [{ "when": "ReportOpened", "event": "DiagnosticReport-open",
                    "accession": "/accessionNumbers", "accession_issuer": "/issuer" }],
    }}]});
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("Dictation", LinkState::Following).await;

    // No current study with that accession: nothing to take the patient from.
    folders.drop_file("report-opened.json", "early.json");
    let reason = folders.rejected("early.json").await;
    assert!(
        reason.contains("another patient") || reason.contains("no patient"),
        "{reason}"
    );

    hub.publish(
        "PACS",
        "ImagingStudy-open",
        study_open("p1", "MRN-1001", "ACC-5001", "1.2.3"),
    );
    std::fs::write(
        folders.staging.join("now.json"),
        std::fs::read_to_string(fixture("report-opened.json"))
            .unwrap()
            .replace("dr.who", "dr.who (again)"),
    )
    .unwrap();
    std::fs::rename(
        folders.staging.join("now.json"),
        folders.inbox.join("now.json"),
    )
    .unwrap();
    let n = pacs.next_of("DiagnosticReport-open").await;
    assert_eq!(resource(&n, "patient")["id"], "p1");
    assert_eq!(resource(&n, "study")["id"], "s-ACC-5001");
    assert_eq!(accession_of(&n), "ACC-5001");
    bridges.stop().await;
}

#[tokio::test]
async fn context_changes_are_written_atomically_in_the_configured_encoding() {
    let hub = Hub::start();
    let folders = Folders::new();
    let template = "<?xml version=\"1.0\" encoding=\"utf-16\"?>\n<Study>\n  <PatientID issuer=\"{patient.mrn.issuer}\">{patient.mrn}</PatientID>\n  <PatientName>{patient.family}^{patient.given}</PatientName>\n  <BirthDate>{patient.birthDate:yyyyMMdd}</BirthDate>\n  <AccessionNumber>{study.accession}</AccessionNumber>\n  <StudyInstanceUID>{study.uid}</StudyInstanceUID>\n</Study>\n";
    let mut config = ris(&folders, json!({}));
    // The RIS's own open-study messages, to check they are not written back to it.
    config["folder"][0]["in"]["rules"][0]["event"] = "ImagingStudy-open".into();
    config["folder"][0]["out"] = json!({
        "dir": folders.outbox, "events": ["ImagingStudy-open"], "file_name": "study.xml",
        "format": "xml", "template": template, "encoding": "utf-16le", "line_endings": "crlf",
    });
    let mut viewer = hub.subscriber("Viewer", "ImagingStudy-open");
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("RIS", LinkState::Following).await;

    folders.drop_file("report-opened.xml", "from-ris.xml");
    assert_eq!(
        viewer.next().await["event"]["hub.event"],
        "ImagingStudy-open"
    );
    let mut context = study_open("p1", "MRN-1001", "ACC<9>&", "1.2.840.7");
    context[1]["resource"]["name"][0]["family"] = "Müller".into();
    hub.publish("PACS", "ImagingStudy-open", context);
    hub.wait_for_state("RIS", LinkState::Unconfirmed).await;

    let bytes = std::fs::read(folders.outbox.join("study.xml")).unwrap();
    assert_eq!(&bytes[..2], b"\xff\xfe", "UTF-16 LE with a BOM");
    let text = decode(&bytes, Decoder::Utf8).unwrap();
    assert_eq!(
        text,
        template
            .replace("{patient.mrn.issuer}", "GENHOSP")
            .replace("{patient.mrn}", "MRN-1001")
            .replace("{patient.family}^{patient.given}", "Müller^Zoë Ann")
            .replace("{patient.birthDate:yyyyMMdd}", "19610203")
            .replace("{study.accession}", "ACC&lt;9&gt;&amp;")
            .replace("{study.uid}", "1.2.840.7")
            .replace('\n', "\r\n")
    );
    // Only the PACS's change was written (not the RIS's own), and no temporary file is left.
    assert_eq!(hub.count("RIS", BridgeReport::Acted), 1);
    let left: Vec<_> = std::fs::read_dir(&folders.outbox).unwrap().collect();
    assert_eq!(left.len(), 1);
    bridges.stop().await;
}

#[tokio::test]
async fn polling_reads_files_where_notifications_are_not_trusted() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    let bridges = hub
        .bridges(ris(
            &folders,
            json!({ "poll_interval_ms": 20, "after_read": "delete" }),
        ))
        .await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    folders.write_in_place(
        &std::fs::read(fixture("report-opened.xml")).unwrap(),
        "polled.xml",
    );
    assert_eq!(accession_of(&pacs.next().await), "ACC-5001");
    folders.gone("polled.xml").await;
    assert!(folders.files("archive").is_empty(), "deleted, not archived");
    bridges.stop().await;
}

#[tokio::test]
async fn files_waiting_before_the_bridge_starts_are_read_oldest_first() {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "DiagnosticReport-open");
    for (name, fixture_name, age) in [
        ("b.xml", "report-opened.xml", 5),
        ("a.xml", "report-opened-utf16.xml", 1),
    ] {
        let path = folders.inbox.join(name);
        std::fs::copy(fixture(fixture_name), &path).unwrap();
        let file = std::fs::File::options().write(true).open(&path).unwrap();
        file.set_modified(SystemTime::now() - Duration::from_secs(age))
            .unwrap();
    }
    let bridges = hub.bridges(ris(&folders, json!({}))).await;
    assert_eq!(accession_of(&pacs.next().await), "ACC-5001");
    assert_eq!(accession_of(&pacs.next().await), "ACC-5002");
    bridges.stop().await;
}

/// One format's message naming MRN `1234`, cut where a slow writer pauses: the part before
/// the pause (`…12`) parses on its own for formats with no end marker.
struct Stalling {
    format: &'static str,
    extension: &'static str,
    mrn: &'static str,
    issuer: &'static str,
    before: &'static str,
    after: &'static str,
}

static STALLING: [Stalling; 4] = [
    Stalling {
        format: "ini",
        extension: "ini",
        mrn: "Patient.MRN",
        issuer: "Patient.Issuer",
        before: "[Patient]\nIssuer=GENHOSP\nMRN=12",
        after: "34\n",
    },
    Stalling {
        format: "text",
        extension: "txt",
        mrn: "line:2",
        issuer: "line:1",
        before: "GENHOSP\n12",
        after: "34\n",
    },
    Stalling {
        format: "json",
        extension: "json",
        mrn: "/mrn",
        issuer: "/issuer",
        before: r#"{"issuer":"GENHOSP","mrn":"12"#,
        after: r#"34"}"#,
    },
    Stalling {
        format: "xml",
        extension: "xml",
        mrn: "/Message/MRN",
        issuer: "/Message/Issuer",
        before: "<Message><Issuer>GENHOSP</Issuer><MRN>12",
        after: "34</MRN></Message>",
    },
];

/// A writer that writes `before` in place, pauses for `stall`, then finishes and closes.
async fn write_with_a_stall(path: PathBuf, before: &str, after: &str, stall: Duration) {
    use std::io::Write;
    let mut file = std::fs::File::create(&path).unwrap();
    file.write_all(before.as_bytes()).unwrap();
    file.flush().unwrap();
    tokio::time::sleep(stall).await;
    file.write_all(after.as_bytes()).unwrap();
    drop(file);
}

/// Runs one format's stalling writer against its own hub and bridge; the app must see MRN
/// 1234 and never 12.
async fn stalled_file_is_read_whole(case: &'static Stalling, mode: Value, stall: Duration) {
    let hub = Hub::start();
    let folders = Folders::new();
    let mut pacs = hub.subscriber("PACS", "Patient-open");
    let mut inbound = json!({
        "dir": folders.inbox,
        "pattern": format!("*.{}", case.extension),
        "format": case.format,
        "rules": [{
            "when": "",
            "event": "Patient-open",
            "mrn": case.mrn,
            "mrn_issuer": case.issuer,
        }],
    });
    for (k, v) in mode.as_object().unwrap() {
        inbound[k] = v.clone();
    }
    let config =
        json!({ "folder": [{ "name": "RIS", "identifiers": identifiers(), "in": inbound }] });
    let bridges = hub.bridges(config).await;
    hub.wait_for_state("RIS", LinkState::Following).await;
    let path = folders.inbox.join(format!("open.{}", case.extension));
    write_with_a_stall(path, case.before, case.after, stall).await;
    let n = pacs.next_of("Patient-open").await;
    assert_eq!(
        resource(&n, "patient")["identifier"][0]["value"],
        "1234",
        "{} ({mode}): the app was sent a patient read from a file cut short",
        case.format
    );
    folders.gone(&format!("open.{}", case.extension)).await;
    assert_eq!(hub.current_patient_mrn().as_deref(), Some("1234"));
    bridges.stop().await;
}

#[tokio::test]
async fn watched_a_writer_that_stalls_mid_file_is_read_only_once_it_closes_the_file() {
    // The stall is far longer than every timer this bridge has (settle_ms).
    let mode = json!({ "settle_ms": 100 });
    let stall = Duration::from_millis(1500);
    let mut runs = tokio::task::JoinSet::new();
    for case in &STALLING {
        runs.spawn(stalled_file_is_read_whole(case, mode.clone(), stall));
    }
    runs.join_all().await;
}

#[tokio::test]
async fn polled_a_stalled_file_waits_for_the_stable_time_and_one_cut_short_is_kept_until_finished()
{
    // Polled every 50 ms, a file must look the same for 1.5 s (settle_ms). A pause of 600 ms
    // (twelve scans) is waited out for every format; one longer than the stable time can only
    // be caught where the format has an end marker (JSON, XML): the file cut short is kept,
    // and read once finished. INI and text writers on a share must write, then rename.
    let mode = json!({ "poll_interval_ms": 50, "settle_ms": 1500 });
    let mut runs = tokio::task::JoinSet::new();
    for case in &STALLING {
        runs.spawn(stalled_file_is_read_whole(
            case,
            mode.clone(),
            Duration::from_millis(600),
        ));
    }
    for case in &STALLING[2..] {
        runs.spawn(stalled_file_is_read_whole(
            case,
            mode.clone(),
            Duration::from_millis(3000),
        ));
    }
    runs.join_all().await;
}
