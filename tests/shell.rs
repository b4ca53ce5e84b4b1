//! The desktop shell end to end: the built `lockstep` binary with and without a display.

mod common;

use std::process::Command;

use common::tray::TrayMenu;
use common::{CLIENT_ID, CLIENT_SECRET, Display, Lockstep, eventually, gui_available, http_get};
use lockstep_agent::client::HubClient;
use serde_json::json;

const NO_PATIENT: &str = "No patient in context";
const WINDOW_TITLE: &str = "Lockstep — Current context";

#[test]
fn without_a_display_the_agent_runs_headless_and_stops_on_sigterm() {
    let mut lockstep = Lockstep::start(Display::None, &[]);
    let origin = lockstep.wait_for_hub();

    let (status, body) =
        http_get(&origin, "/.well-known/smart-configuration").expect("the hub answers");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("token_endpoint"), "{body}");
    assert!(lockstep.log().contains("without the tray"));

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
    assert!(lockstep.log().contains("hub stopped"), "{}", lockstep.log());
}

#[test]
fn headless_flag_runs_the_agent_without_the_tray_even_with_a_display() {
    if !gui_available() {
        return;
    }
    let mut lockstep = Lockstep::start(Display::Inherit, &["--headless"]);
    let origin = lockstep.wait_for_hub();
    let (status, _) = http_get(&origin, "/.well-known/smart-configuration").expect("hub answers");
    assert_eq!(status, 200);
    let log = lockstep.log();
    assert!(log.contains("without the tray"), "{log}");
    assert!(!log.contains("tray ready"), "{log}");

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
}

#[test]
fn a_configuration_error_exits_with_status_2() {
    let exit = Command::new(env!("CARGO_BIN_EXE_lockstep"))
        .args(["--config", "/nonexistent/lockstep.toml"])
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .output()
        .expect("run lockstep");
    assert_eq!(exit.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&exit.stderr);
    assert!(stderr.contains("configuration error"), "{stderr}");
}

#[test]
fn the_tray_follows_the_context_and_the_window_shows_it() {
    if !gui_available() {
        return;
    }
    let mut lockstep = Lockstep::start(Display::Inherit, &[]);
    let origin = lockstep.wait_for_hub();
    lockstep.wait_for_line("tray ready");

    let menu = TrayMenu::of_process(lockstep.pid());
    let items = menu.items();
    assert_eq!(items[0].label, NO_PATIENT, "{items:?}");
    assert!(
        !items[0].enabled,
        "the patient line is a label, not an action"
    );
    let labels = menu.labels();
    assert_eq!(labels[1..], ["Show current context", "Quit"], "{labels:?}");

    assert!(
        !windows_of(lockstep.pid())
            .iter()
            .any(|(_, name)| name == WINDOW_TITLE),
        "a window exists before anyone asked for it"
    );
    assert_eq!(
        web_processes_of(lockstep.pid()),
        0,
        "an idle tray must not run a web view"
    );

    open_study(&origin);
    eventually("the tray to show the patient", || {
        let first = menu.labels().into_iter().next()?;
        (first == "DOE, Jane · 1970-01-02 · MRN 12345").then_some(())
    });

    menu.click("Show current context");
    let window = eventually("the current-context window", || {
        windows_of(lockstep.pid())
            .into_iter()
            .find(|(_, name)| name == WINDOW_TITLE)
    });
    eventually("the window's web view to start", || {
        (web_processes_of(lockstep.pid()) > 0).then_some(())
    });
    if let Some(path) = std::env::var_os("LOCKSTEP_SCREENSHOT") {
        screenshot(&window.0, &path);
    }

    // Asking again focuses the open window rather than opening a second one.
    menu.click("Show current context");
    assert!(lockstep.is_running());
    let titled = |name: &String| name == WINDOW_TITLE;
    assert_eq!(
        windows_of(lockstep.pid())
            .iter()
            .filter(|(_, name)| titled(name))
            .count(),
        1
    );

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
    assert!(
        lockstep.log().contains("agent stopped"),
        "{}",
        lockstep.log()
    );
}

#[test]
fn quit_in_the_tray_stops_the_agent_and_exits_0() {
    if !gui_available() {
        return;
    }
    let mut lockstep = Lockstep::start(Display::Inherit, &[]);
    let origin = lockstep.wait_for_hub();
    lockstep.wait_for_line("tray ready");

    TrayMenu::of_process(lockstep.pid()).click("Quit");

    let exit = lockstep.wait_for_exit();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
    let log = lockstep.log();
    assert!(
        log.contains("hub stopped") && log.contains("agent stopped"),
        "{log}"
    );
    assert!(
        http_get(&origin, "/.well-known/smart-configuration").is_err(),
        "the hub still answers after Quit"
    );
}

/// Publishes ImagingStudy-open for Jane Doe, as a PACS would.
fn open_study(origin: &str) {
    let patient = json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1970-01-02",
        "gender": "female",
        "identifier": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": "12345"
        }]
    });
    let study = json!({
        "resourceType": "ImagingStudy",
        "id": "study-1",
        "status": "available",
        "subject": {"reference": "Patient/pat-1"},
        "identifier": [
            {"system": "urn:dicom:uid", "value": "urn:oid:1.2.840.113619.2.55.3.604688119"},
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN"}]},
                "value": "ACC-20260412-0042"
            }
        ],
        "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
        "description": "CT chest with contrast"
    });
    let context = json!([
        {"key": "study", "resource": study},
        {"key": "patient", "resource": patient}
    ]);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime
        .block_on(async {
            let client = HubClient::sign_in(origin, CLIENT_ID, CLIENT_SECRET, None).await?;
            client.publish("ImagingStudy-open", context, None).await
        })
        .expect("publish ImagingStudy-open");
}

/// The process's X windows that have a name: (window id, name).
fn windows_of(pid: u32) -> Vec<(String, String)> {
    let search = Command::new("xdotool")
        .args(["search", "--pid", &pid.to_string(), "--name", "."])
        .output()
        .expect("run xdotool");
    String::from_utf8_lossy(&search.stdout)
        .lines()
        .filter_map(|id| {
            let name = Command::new("xdotool")
                .args(["getwindowname", id])
                .output()
                .ok()?;
            let name = String::from_utf8_lossy(&name.stdout).trim().to_owned();
            Some((id.to_owned(), name))
        })
        .collect()
}

/// How many WebKit helper processes (web content, network) the process has started.
fn web_processes_of(pid: u32) -> usize {
    let entries = std::fs::read_dir("/proc").expect("read /proc");
    entries
        .filter_map(|entry| std::fs::read_to_string(entry.ok()?.path().join("stat")).ok())
        .filter(|stat| {
            // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split at its last ')'.
            let Some((head, tail)) = stat.rsplit_once(')') else {
                return false;
            };
            let parent = tail.split_whitespace().nth(1);
            head.contains("(WebKit") && parent == Some(pid.to_string().as_str())
        })
        .count()
}

/// Saves the window as it looks once its page has rendered (for docs and for a person to
/// check); not an assertion.
fn screenshot(window: &str, path: &std::ffi::OsStr) {
    std::thread::sleep(std::time::Duration::from_secs(3));
    let status = Command::new("import")
        .args(["-window", window])
        .arg(path)
        .status()
        .expect("run ImageMagick import");
    assert!(status.success(), "screenshot failed");
}
