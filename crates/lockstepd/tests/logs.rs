//! lockstepd's log file: in the user's log folder, rotated by size, and free of patient data
//! at the default level.

mod common;
use common::Daemon;

const CONFIG: &str = r#"
[hub]
port = 0

[log]
max_file_megabytes = 1
max_files = 2

[[apps]]
client_id = "ris"
client_secret = "ris-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#;

#[test]
fn the_agent_logs_to_its_file_and_names_no_patient() {
    let daemon = Daemon::start_with_text(CONFIG);
    let patient = r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"pat-7731",
        "identifier":[{"system":"urn:mrn","value":"MRN-99173"}],"name":[{"family":"Zylberstein"}]}}]"#;
    for _ in 0..3 {
        let sent = daemon.verb(
            "ris",
            "ris-secret",
            &["send", "Patient-open", "--context", patient],
        );
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
    }
    // Read while the daemon runs: its home folder goes with it.
    let logs = daemon.home().join(".local/share/org.lockstep.agent/logs");
    let log = std::fs::read_to_string(logs.join("lockstepd.log")).unwrap();
    assert!(log.contains("hub ready at"), "{log}");
    assert!(log.contains("INFO"), "{log}");
    for secret in ["pat-7731", "MRN-99173", "Zylberstein", "ris-secret"] {
        assert!(!log.contains(secret), "the log names {secret}:\n{log}");
    }
    // The verbs run beside the agent do not write its file.
    let files: Vec<_> = std::fs::read_dir(&logs)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(files, ["lockstepd.log"]);
    assert!(daemon.terminate().success());
}

#[test]
fn a_log_setting_out_of_range_is_refused() {
    let out = common::cli("[log]\nmax_files = 0\n", &["check-config"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("log.max_files"));
}
