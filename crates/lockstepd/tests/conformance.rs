//! `lockstepd conformance` against Lockstep's own hub, over TLS as the spec requires: every
//! check passes or says why it does not apply, in each of the report's forms.

mod common;
use common::Daemon;
use serde_json::Value;
use std::collections::BTreeMap;
use std::process::{Command, Output};

struct TlsDaemon {
    daemon: Daemon,
    ca_file: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

fn start() -> TlsDaemon {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("hub.pem");
    let key = dir.path().join("hub.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    let config = format!(
        r#"
[hub]
port = 0
ack_timeout_seconds = 2
tls_cert_file = "{}"
tls_key_file = "{}"

[[apps]]
client_id = "checker"
client_secret = "checker-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[[apps]]
client_id = "checker-peer"
client_secret = "checker-peer-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#,
        cert.display(),
        key.display()
    );
    TlsDaemon {
        daemon: Daemon::start_with_text(&config),
        ca_file: cert,
        _dir: dir,
    }
}

fn conformance(hub: &TlsDaemon, args: &[&str]) -> Output {
    let origin = &hub.daemon.origin;
    Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .arg("conformance")
        .arg(format!("{origin}/fhircast"))
        .args(["--token-url", &format!("{origin}/auth/token")])
        .args([
            "--client-id",
            "checker",
            "--second-client-id",
            "checker-peer",
        ])
        .arg("--ca-file")
        .arg(&hub.ca_file)
        .args(["--unanswered-seconds", "6"])
        .args(args)
        .env("LOCKSTEP_CLIENT_SECRET", "checker-secret")
        .env("LOCKSTEP_SECOND_CLIENT_SECRET", "checker-peer-secret")
        .output()
        .unwrap()
}

#[test]
fn lockstep_passes_every_check_that_applies_to_it() {
    let hub = start();
    let out = conformance(&hub, &["--format", "json"]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stderr));
    });
    let checks = report["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 110);
    let failed: Vec<&Value> = checks.iter().filter(|c| c["outcome"] == "fail").collect();
    assert!(
        failed.is_empty(),
        "{}",
        serde_json::to_string_pretty(&failed).unwrap()
    );
    assert!(out.status.success(), "{:?}", out.status);
    // What does not apply, and why: these are the only ones, each with its reason.
    let not_applicable: BTreeMap<u64, &str> = checks
        .iter()
        .filter(|c| c["outcome"] == "not-applicable")
        .map(|c| (c["number"].as_u64().unwrap(), c["reason"].as_str().unwrap()))
        .collect();
    assert_eq!(
        not_applicable.keys().copied().collect::<Vec<_>>(),
        [40, 51, 78],
        "{not_applicable:#?}"
    );
    assert!(not_applicable[&40].contains("at once"));
    assert!(not_applicable[&51].contains("same topic"));
    assert!(report["left_in_context"].is_null());
    eprintln!("the whole run took {} ms", report["milliseconds"]);
    hub.daemon.terminate();
}

#[test]
fn the_table_and_junit_forms_and_the_selection() {
    let hub = start();
    let out = conformance(&hub, &["--only", "1-5,29"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(
        table.contains("Discovery") && table.contains("   29  pass"),
        "{table}"
    );
    assert!(
        table.contains("6 passed, 0 failed (0 of them SHALL), 0 not applicable, 104 skipped"),
        "{table}"
    );

    let out = conformance(&hub, &["--only", "1-3", "--skip", "2", "--format", "junit"]);
    assert!(out.status.success());
    let junit = String::from_utf8(out.stdout).unwrap();
    assert!(junit.starts_with("<?xml"));
    assert_eq!(junit.matches("<testcase ").count(), 2, "{junit}");
    assert!(junit.contains("tests=\"2\" failures=\"0\""), "{junit}");

    // Bad selections and missing credentials are refused before anything is sent.
    for args in [&["--only", "0"][..], &["--skip", "5-2"], &["--only", "200"]] {
        let out = conformance(&hub, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("numbered 1 to 110"));
    }
    hub.daemon.terminate();
}

/// `lockstepd conformance` of the hub at `origin` as the app `checker`, trusting the usual roots.
fn conformance_of(origin: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .args(["conformance", &format!("{origin}/fhircast")])
        .args(["--token-url", &format!("{origin}/auth/token")])
        .args(["--client-id", "checker"])
        .env("LOCKSTEP_CLIENT_SECRET", "checker-secret")
        .output()
        .unwrap()
}

#[test]
fn an_untrusted_hub_or_a_busy_topic_is_left_alone() {
    // Without trusting the hub's certificate, nothing can be checked at all.
    let hub = start();
    let out = conformance_of(&hub.daemon.origin);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot get a token"));
    hub.daemon.terminate();

    // A clinician's patient is in context: the checker refuses to touch the session.
    let plain = Daemon::start_with_text(
        r#"
[hub]
port = 0

[[apps]]
client_id = "checker"
client_secret = "checker-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#,
    );
    let patient = r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"p1","identifier":[{"value":"MRN1"}]}}]"#;
    let send = plain.verb(
        "checker",
        "checker-secret",
        &["send", "Patient-open", "--context", patient],
    );
    assert!(
        send.status.success(),
        "{}",
        String::from_utf8_lossy(&send.stderr)
    );
    let out = conformance_of(&plain.origin);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("has a context open (Patient)"), "{stderr}");
    // Nothing was sent to the session: the patient is still the one in context.
    let context = plain.verb("checker", "checker-secret", &["context"]);
    assert!(String::from_utf8_lossy(&context.stdout).contains("MRN1"));
    plain.terminate();
}
