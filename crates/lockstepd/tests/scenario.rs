//! The README's content-sharing scenario, run with `lockstepd` verbs only: a dictation app opens
//! a report, a viewer updates it, a third app joins late and receives the current context.

mod common;
use common::Daemon;
use serde_json::Value;
use std::path::PathBuf;

fn example(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples")
        .join(name)
}

fn ok_json(output: std::process::Output) -> Value {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap()
}

#[test]
fn dictation_opens_viewer_updates_late_joiner_gets_the_context() {
    let daemon = Daemon::start(&example("lockstep.toml"), &["--set", "hub.port=0"], None);
    let report_open = format!("@{}", example("report-open.json").display());
    let report_update = format!("@{}", example("report-update.json").display());

    let opened = daemon.verb(
        "dictation",
        "dictation-secret",
        &["send", "DiagnosticReport-open", "--context", &report_open],
    );
    assert!(
        opened.status.success(),
        "{}",
        String::from_utf8_lossy(&opened.stderr)
    );

    let before = ok_json(daemon.verb("viewer", "viewer-secret", &["context"]));
    assert_eq!(before["context.type"], "DiagnosticReport");
    let version = before["context.versionId"].as_str().unwrap();

    let updated = daemon.verb(
        "viewer",
        "viewer-secret",
        &[
            "send",
            "DiagnosticReport-update",
            "--version-id",
            version,
            "--context",
            &report_update,
        ],
    );
    assert!(
        updated.status.success(),
        "{}",
        String::from_utf8_lossy(&updated.stderr)
    );
    // The same version again is now stale: refused.
    let stale = daemon.verb(
        "viewer",
        "viewer-secret",
        &[
            "send",
            "DiagnosticReport-update",
            "--version-id",
            version,
            "--context",
            &report_update,
        ],
    );
    assert!(!stale.status.success());
    assert!(String::from_utf8_lossy(&stale.stderr).contains("409"));

    // The worklist joins late: it is replayed the open report and sees the shared content.
    let late = daemon.verb(
        "worklist",
        "worklist-secret",
        &[
            "tail",
            "--events",
            "DiagnosticReport-open,Patient-open",
            "--count",
            "1",
        ],
    );
    let replayed = ok_json(late);
    assert_eq!(replayed["event"]["hub.event"], "DiagnosticReport-open");
    let after = ok_json(daemon.verb("worklist", "worklist-secret", &["context"]));
    assert_ne!(after["context.versionId"], before["context.versionId"]);
    let content = after["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "content")
        .unwrap();
    assert_eq!(
        content["resource"]["entry"][0]["resource"]["id"],
        "435098234"
    );

    assert!(daemon.terminate().success());
}
