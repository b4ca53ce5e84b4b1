//! SIGHUP reloads the bridges from the configuration file, with the hub still running.

mod common;
use common::Daemon;
use std::process::Command;
use std::time::Duration;

#[test]
fn sighup_starts_a_bridge_added_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("to-ris");
    std::fs::create_dir_all(&out).unwrap();
    let base = format!(
        "[hub]\nport = 0\n\n[history]\ndatabase = \"{}\"\n\n[[apps]]\nclient_id = \"ris\"\nclient_secret = \"change-me\"\nscopes = [\"fhircast/*.read\", \"fhircast/*.write\"]\n",
        dir.path().join("db").display()
    );
    let config = dir.path().join("config.toml");
    std::fs::write(&config, &base).unwrap();
    let daemon = Daemon::start(&config, &[], None);

    let bridge = format!(
        r#"
[[bridges.folder]]
name = "RIS"
identifiers.mrn = [{{ system = "urn:mrn", issuer = "GENHOSP" }}]

[bridges.folder.out]
dir = "{}"
events = ["Patient-open"]
file_name = "patient.txt"
format = "text"
template = "{{patient.mrn}}"
"#,
        out.display()
    );
    std::fs::write(&config, format!("{base}{bridge}")).unwrap();
    Command::new("kill")
        .args(["-HUP", &daemon.pid().to_string()])
        .status()
        .unwrap();

    let context = r#"[{"key":"patient","resource":{"resourceType":"Patient","id":"p1","identifier":[{"system":"urn:mrn","value":"185444"}]}}]"#;
    let file = out.join("patient.txt");
    // The reload takes effect asynchronously: publish until the bridge has written the file.
    for _ in 0..100 {
        let sent = daemon.verb(
            "ris",
            "change-me",
            &["send", "Patient-open", "--context", context],
        );
        assert!(
            sent.status.success(),
            "{}",
            String::from_utf8_lossy(&sent.stderr)
        );
        if std::fs::read_to_string(&file).is_ok_and(|t| t.contains("185444")) {
            assert!(daemon.terminate().success());
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the bridge added before SIGHUP never wrote {}",
        file.display()
    );
}
