//! The desktop shell end to end: the built `lockstep` binary with and without a display, its
//! tray driven over D-Bus as a panel would (`com.canonical.dbusmenu`), its windows found with
//! xdotool.

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;

use common::{
    Display, Home, Lockstep, PACS, RIS, SessionBus, Subscriber, XServer, descendants, eventually,
    gui_available, http_get, jane_study, publish, read_lines,
};

const NO_PATIENT: &str = "No patient in context";
const JANE_LINE: &str = "DOE, Jane · 1970-01-02 · MRN 12345";
const CURRENT_TITLE: &str = "Lockstep — Current context";
const MENU: [&str; 6] = [
    "Show current context",
    "History…",
    "Pause following",
    "Settings…",
    "About",
    "Quit",
];

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
    let mut lockstep = Lockstep::start(Display::Own, &["--headless"]);
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
fn the_tray_shows_the_patient_and_show_opens_the_current_context_window() {
    let Some((mut lockstep, origin)) = Lockstep::with_tray() else {
        return;
    };

    let menu = lockstep.tray();
    let items = menu.items();
    assert_eq!(items[0].label, NO_PATIENT, "{items:?}");
    assert!(
        !items[0].enabled,
        "the patient line is a label, not an action"
    );
    assert_eq!(menu.labels()[1..], MENU, "{items:?}");
    eventually("the idle icon", || {
        (menu.icon_state()? == "idle").then_some(())
    });

    assert!(
        lockstep
            .x()
            .window_titled(lockstep.pid(), CURRENT_TITLE)
            .is_none(),
        "a window exists before anyone asked for it"
    );
    assert_eq!(
        webkit_processes(lockstep.pid()),
        Vec::<String>::new(),
        "an idle tray must not run a web view"
    );

    publish(&origin, RIS, "ImagingStudy-open", jane_study()).expect("publish");
    eventually("the tray to show the patient", || {
        (menu.labels().first()? == JANE_LINE).then_some(())
    });
    eventually("the patient icon", || {
        (menu.icon_state()? == "patient").then_some(())
    });

    menu.click("Show current context");
    eventually("the current-context window", || {
        lockstep.x().window_titled(lockstep.pid(), CURRENT_TITLE)
    });
    eventually("the window's web view to start", || {
        web_content_processes(lockstep.pid()).then_some(())
    });

    // Asking again focuses the open window rather than opening a second one.
    menu.click("Show current context");
    assert!(lockstep.is_running());
    let titled = lockstep
        .x()
        .windows_of(lockstep.pid())
        .into_iter()
        .filter(|(_, name)| name == CURRENT_TITLE)
        .count();
    assert_eq!(titled, 1);

    // Closing it (Ctrl+W, as in any desktop app) destroys it and its web content process;
    // the tray keeps running.
    lockstep
        .x()
        .close_with_keyboard(lockstep.pid(), CURRENT_TITLE);
    eventually("the web content process to end", || {
        (!web_content_processes(lockstep.pid())).then_some(())
    });
    assert!(lockstep.is_running(), "closing the window ended the app");
    assert_eq!(menu.labels().first().map(String::as_str), Some(JANE_LINE));

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
    assert!(
        lockstep.log().contains("agent stopped"),
        "{}",
        lockstep.log()
    );
}

#[test]
fn pause_in_the_tray_refuses_context_changes_until_resume() {
    let Some((mut lockstep, origin)) = Lockstep::with_tray() else {
        return;
    };
    let menu = lockstep.tray();

    menu.click("Pause following");
    eventually("the menu to offer Resume", || {
        menu.labels().contains(&"Resume".to_owned()).then_some(())
    });
    eventually("the paused icon", || {
        (menu.icon_state()? == "paused").then_some(())
    });
    let refused = publish(&origin, RIS, "ImagingStudy-open", jane_study())
        .expect_err("a context change while paused");
    assert!(refused.contains("409"), "{refused}");
    assert_eq!(menu.labels().first().map(String::as_str), Some(NO_PATIENT));

    menu.click("Resume");
    eventually("the menu to offer Pause following", || {
        menu.labels()
            .contains(&"Pause following".to_owned())
            .then_some(())
    });
    publish(&origin, RIS, "ImagingStudy-open", jane_study()).expect("accepted once resumed");
    eventually("the patient icon", || {
        (menu.icon_state()? == "patient").then_some(())
    });

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
}

#[test]
fn an_app_that_refuses_shows_as_a_sync_problem_and_is_notified() {
    let Some((mut lockstep, origin)) = Lockstep::with_tray() else {
        return;
    };
    let menu = lockstep.tray();
    let bus = lockstep.bus.clone().expect("a session bus");
    // Whatever the app asks the notification service, as the bus sees it (there is no
    // notification daemon here: the call itself is what is checked).
    let mut monitor = Command::new("dbus-monitor")
        .args([
            "--address",
            &bus.address,
            "type='method_call',interface='org.freedesktop.Notifications'",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run dbus-monitor");
    let (_, notifications) = read_lines(monitor.stdout.take().expect("piped stdout"));

    let _pacs = Subscriber::start(&origin, PACS, "ImagingStudy-open", 500);
    publish(&origin, RIS, "ImagingStudy-open", jane_study()).expect("publish");

    eventually("the problem icon", || {
        (menu.icon_state()? == "problem").then_some(())
    });
    eventually("a notification naming the app", || {
        let seen = notifications.lock().unwrap().clone();
        (seen.contains("Notify") && seen.contains("PACS viewer is out of step")).then_some(())
    });
    let _ = monitor.kill();
    let _ = monitor.wait();

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
}

#[test]
fn a_second_launch_shows_the_first_instance_and_exits_0() {
    let Some((mut first, _)) = Lockstep::with_tray() else {
        return;
    };
    assert!(
        first
            .x()
            .window_titled(first.pid(), CURRENT_TITLE)
            .is_none()
    );

    let mut second = Lockstep::start_in(
        Arc::clone(&first.home),
        first.x.clone(),
        first.bus.clone(),
        &[],
    );
    let exit = second.wait_for_exit();
    assert!(exit.success(), "exit {exit}; log:\n{}", second.log());
    assert!(
        !second.log().contains("hub ready"),
        "the second launch started an agent:\n{}",
        second.log()
    );

    eventually("the first instance's window", || {
        first.x().window_titled(first.pid(), CURRENT_TITLE)
    });
    first.wait_for_line("launched again");
    assert!(first.is_running());

    let exit = first.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", first.log());
}

#[test]
fn quit_in_the_tray_stops_the_agent_and_exits_0() {
    let Some((mut lockstep, origin)) = Lockstep::with_tray() else {
        return;
    };

    lockstep.tray().click("Quit");

    let exit = lockstep.wait_for_exit();
    assert_eq!(exit.code(), Some(0), "log:\n{}", lockstep.log());
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

/// Measures what the tray costs: the resident memory of the app and every process it
/// started, idle and with each window open. Prints the figures (they are for the README and
/// for people, not thresholds); asserts only that the idle tray runs no web view.
#[test]
fn footprint_of_the_idle_tray_and_of_each_window() {
    let Some((mut lockstep, origin)) = Lockstep::with_tray() else {
        return;
    };
    let menu = lockstep.tray();
    publish(&origin, RIS, "ImagingStudy-open", jane_study()).expect("publish");
    eventually("the tray to show the patient", || {
        (menu.labels().first()? == JANE_LINE).then_some(())
    });
    let pid = lockstep.pid();
    let settle = || std::thread::sleep(std::time::Duration::from_secs(3));

    settle();
    let mut report = vec![("idle tray".to_owned(), Footprint::of(pid))];
    assert!(
        webkit_processes(pid).is_empty(),
        "an idle tray must not run a web view"
    );
    // GTK's GL is off outside WebDriver: no GL driver in a tray that draws no GL.
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("the tray's maps");
    let drivers: Vec<&str> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| {
            path.contains("_dri.so") || path.contains("libLLVM") || path.contains("libGLX_mesa")
        })
        .collect();
    assert!(
        drivers.is_empty(),
        "the idle tray maps a GL driver: {drivers:?}"
    );
    for (item, title) in [
        ("Show current context", CURRENT_TITLE),
        ("History…", "Lockstep — Context history"),
        ("Settings…", "Lockstep — Settings"),
        ("About", "About Lockstep"),
    ] {
        menu.click(item);
        eventually(title, || lockstep.x().window_titled(pid, title));
        eventually("its web view", || web_content_processes(pid).then_some(()));
        settle();
        report.push((format!("{title} open"), Footprint::of(pid)));
        lockstep.x().close_with_keyboard(pid, title);
        eventually("its web content process to end", || {
            (!web_content_processes(pid)).then_some(())
        });
    }
    settle();
    report.push((
        "tray after closing every window".to_owned(),
        Footprint::of(pid),
    ));

    let mut table = String::from("what | processes | RSS (MiB) | PSS (MiB)\n---|---|---|---\n");
    for (what, footprint) in &report {
        table.push_str(&format!(
            "{what} | {} | {:.0} | {:.0}\n",
            footprint.processes.join(", "),
            footprint.rss_kib as f64 / 1024.0,
            footprint.pss_kib as f64 / 1024.0
        ));
    }
    eprintln!("{table}");
    if let Some(path) = std::env::var_os("LOCKSTEP_FOOTPRINT") {
        std::fs::write(path, &table).expect("write the footprint report");
    }

    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
}

/// The memory of a process and all its descendants.
struct Footprint {
    processes: Vec<String>,
    rss_kib: u64,
    pss_kib: u64,
}

impl Footprint {
    fn of(pid: u32) -> Self {
        let mut processes = Vec::new();
        let (mut rss_kib, mut pss_kib) = (0, 0);
        for process in std::iter::once(pid).chain(descendants(pid)) {
            let proc = format!("/proc/{process}");
            let field = |file: &str, name: &str| -> u64 {
                std::fs::read_to_string(format!("{proc}/{file}"))
                    .unwrap_or_default()
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .and_then(|rest| rest.split_whitespace().next()?.parse().ok())
                    .unwrap_or(0)
            };
            rss_kib += field("status", "VmRSS:");
            pss_kib += field("smaps_rollup", "Pss:");
            processes.push(comm(process).unwrap_or_default());
        }
        Self {
            processes,
            rss_kib,
            pss_kib,
        }
    }
}

fn comm(pid: u32) -> Option<String> {
    Some(
        std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .ok()?
            .trim()
            .to_owned(),
    )
}

/// The names of the WebKit helper processes (web content, network) the app has started.
fn webkit_processes(pid: u32) -> Vec<String> {
    descendants(pid)
        .into_iter()
        .filter_map(comm)
        .filter(|name| name.starts_with("WebKit"))
        .collect()
}

/// Whether a web content process (one per open web view) runs. WebKitGTK keeps its network
/// process once started, so only content processes say whether a window is open.
fn web_content_processes(pid: u32) -> bool {
    webkit_processes(pid)
        .iter()
        .any(|name| name.starts_with("WebKitWebProces"))
}

#[test]
fn with_a_site_to_sign_in_to_the_tray_offers_sign_in_and_opens_the_browser() {
    if !gui_available() {
        return;
    }
    let home = Arc::new(Home::new(
        "[upstream]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"reading-room\"\n",
    ));
    // The browser is the one part not run here: a stand-in `xdg-open` notes what it was given.
    let bin = home.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let opened = home.path().join("opened.txt");
    let browser = bin.join("xdg-open");
    std::fs::write(
        &browser,
        format!("#!/bin/sh\necho \"$1\" >> '{}'\n", opened.display()),
    )
    .unwrap();
    std::fs::set_permissions(
        &browser,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let (x, bus) = (Arc::new(XServer::start()), Arc::new(SessionBus::start()));
    let mut lockstep = Lockstep::start_in(home.clone(), Some(x), Some(bus), &[]);
    let origin = lockstep.wait_for_hub();
    lockstep.wait_for_line("tray ready");
    let menu = lockstep.tray();
    let labels = menu.labels();
    assert!(
        labels.contains(&"Sign in to 127.0.0.1…".to_owned()),
        "{labels:?}"
    );
    assert!(
        labels.contains(&"Sign out of 127.0.0.1".to_owned()),
        "{labels:?}"
    );

    menu.click("Sign in to 127.0.0.1…");
    let page = format!("{origin}/lockstep/upstream/login");
    eventually("the browser opened on the sign-in page", || {
        std::fs::read_to_string(&opened)
            .ok()
            .filter(|text| text.trim() == page)
            .map(drop)
    });
    menu.click("Sign out of 127.0.0.1");
    lockstep.wait_for_line("signed out of the site");
    let exit = lockstep.terminate();
    assert!(exit.success(), "exit {exit}; log:\n{}", lockstep.log());
}
