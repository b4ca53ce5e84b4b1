//! `lockstepd doctor`: one line per check, a non-zero exit on a problem, and a support archive
//! that holds what support needs and no patient data.

mod common;
use common::Daemon;

/// The agent's configuration on `port` (the doctor checks the configured port).
fn config(port: u16) -> String {
    format!("[hub]\nport = {port}\n{APPS}")
}

const APPS: &str = r#"

[[apps]]
client_id = "ris"
client_secret = "ris-secret-7f3a"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "RIS"
"#;

const PATIENT_DATA: [&str; 4] = ["Zylberstein", "MRN-99173", "pat-7731", "1931-04-05"];

#[test]
fn a_healthy_agent_gets_a_clean_report_and_a_bundle_without_patient_data() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon::start_with_text(&config(port));
    let patient = r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"pat-7731",
        "identifier":[{"system":"urn:mrn","value":"MRN-99173"}],"name":[{"family":"Zylberstein"}],
        "birthDate":"1931-04-05"}}]"#;
    let sent = daemon.verb(
        "ris",
        "ris-secret-7f3a",
        &["send", "Patient-open", "--context", patient],
    );
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    // What a site running at debug level would have in the log: lines naming the patient.
    let log = daemon
        .home()
        .join(".local/share/org.lockstep.agent/logs/lockstepd.log");
    let mut text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("hub ready at"), "{text}");
    text.push_str("2026-12-03T10:00:01.000000Z DEBUG Patient-open of Zylberstein (MRN-99173)\n");
    text.push_str("    context: [{\"id\":\"pat-7731\",\"birthDate\":\"1931-04-05\"}]\n");
    std::fs::write(&log, text).unwrap();

    let bundle = daemon.home().join("support.tar");
    let out = daemon.beside(&["doctor", "--bundle", bundle.to_str().unwrap()]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for line in [
        "ok       port",
        "the agent's hub answers",
        "ok       history",
        "audit chain intact",
        "1 registered: RIS",
    ] {
        assert!(report.contains(line), "{line}:\n{report}");
    }
    assert!(report.contains("0 problems"), "{report}");

    let archive = std::fs::read(&bundle).unwrap();
    let listing = std::process::Command::new("tar")
        .arg("-tf")
        .arg(&bundle)
        .output()
        .unwrap();
    let listing = String::from_utf8(listing.stdout).unwrap();
    for name in [
        "doctor.txt",
        "config.toml",
        "versions.txt",
        "logs/lockstepd.log",
    ] {
        assert!(
            listing.lines().any(|l| l == name),
            "{name} missing from {listing}"
        );
    }
    let text = String::from_utf8_lossy(&archive);
    assert!(text.contains("hub ready at"), "the logs' info lines are in");
    for secret in PATIENT_DATA.iter().chain(&["ris-secret-7f3a"]) {
        assert!(!text.contains(secret), "the support archive holds {secret}");
    }
    assert!(daemon.terminate().success());
}

#[test]
fn problems_are_named_with_what_to_do_and_fail_the_exit_status() {
    // Another program holds the port.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let out = common::cli(&format!("[hub]\nport = {port}\n"), &["doctor"]);
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    assert_eq!(out.status.code(), Some(1), "{report}");
    assert!(
        report.contains("problem  port") && report.contains("not a FHIRcast hub"),
        "{report}"
    );
    assert!(report.contains("→ stop that program"), "{report}");

    // A configuration that does not load is the first problem, not a crash.
    let out = common::cli("[hub]\nport = \"many\"\n", &["doctor", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(findings[0]["check"], "configuration");
    assert_eq!(findings[0]["health"], "problem");
    assert!(
        findings[0]["detail"].as_str().unwrap().contains("hub.port"),
        "{findings}"
    );
    drop(holder);
}
