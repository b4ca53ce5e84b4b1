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
        report.contains("problem  port")
            && report.contains("not a FHIRcast hub")
            && report.contains(&format!("(pid {})", std::process::id())),
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

/// The doctor's findings as JSON, and the detail of the one named `check`.
fn finding(daemon: &Daemon, check: &str) -> (String, String) {
    let out = daemon.beside(&["doctor", "--json"]);
    let findings: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found = findings
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["check"] == check)
        .unwrap_or_else(|| panic!("no `{check}` in {findings}"));
    (
        found["health"].as_str().unwrap().to_owned(),
        found["detail"].as_str().unwrap().to_owned(),
    )
}

fn until(what: &str, mut probe: impl FnMut() -> Option<String>) -> String {
    for _ in 0..100 {
        if let Some(found) = probe() {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("never: {what}");
}

#[test]
fn the_doctor_shows_the_running_session_s_apps_and_bridges_and_their_states() {
    let out = tempfile::tempdir().unwrap();
    let bridge = format!(
        r#"
[[bridges.folder]]
name = "Dictation drop"
identifiers.mrn = [{{ system = "urn:mrn" }}]

[bridges.folder.out]
dir = "{}"
events = ["Patient-open"]
file_name = "patient.txt"
format = "text"
template = "{{patient.mrn}}"
"#,
        out.path().display()
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let daemon = Daemon::start_with_text(&format!("{}{bridge}", config(port)));
    let bridges = until("the bridge in the doctor's report", || {
        let (_, detail) = finding(&daemon, "bridge states");
        detail.contains("Dictation drop").then_some(detail)
    });
    assert!(!bridges.contains("RIS"), "{bridges}");
    let (_, apps) = finding(&daemon, "connected apps");
    assert!(apps.contains("none in the session"), "{apps}");

    // RIS subscribes: the doctor sees it following.
    let mut tail = std::process::Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .args(["tail", "--hub", &daemon.origin, "--client-id", "ris"])
        .env("LOCKSTEP_CLIENT_SECRET", "ris-secret-7f3a")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    until("RIS following in the doctor's report", || {
        let (health, detail) = finding(&daemon, "connected apps");
        (health == "ok" && detail.contains("RIS following since")).then_some(detail)
    });
    // It goes without a goodbye: no longer following.
    tail.kill().unwrap();
    tail.wait().unwrap();
    until("RIS no longer following", || {
        let (_, detail) = finding(&daemon, "connected apps");
        (!detail.contains("RIS following")).then_some(detail)
    });
    assert!(daemon.terminate().success());
}
