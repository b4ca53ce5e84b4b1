//! Helpers for driving the built `lockstep` binary: a private session bus, a fresh
//! configuration, the process's log, its tray menu on the bus, and stopping it.

#![allow(dead_code)] // each test file uses its own subset

pub mod tray;
pub mod webdriver;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long anything may take to become ready. Generous: CI builds are unoptimised and run
/// tests in parallel on two cores, and a readiness wait costs nothing when things are fast.
pub const READY: Duration = Duration::from_secs(120);

/// A test app registered in every test configuration, so tests can publish as an app would.
pub const CLIENT_ID: &str = "shell-test";
pub const CLIENT_SECRET: &str = "shell-test-secret";

/// The apps of the sample session: a worklist that drives the context and a viewer that
/// follows it.
pub const RIS: (&str, &str) = ("ris", "ris-secret");
pub const PACS: (&str, &str) = ("pacs", "pacs-secret");

/// Whether the process gets a display (a virtual X server of the test's own) or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Own,
    None,
}

/// GUI tests need the X display and session bus that `make test` provides. Anywhere but CI a
/// missing display skips them with a note; in CI it is a failure, so they cannot silently stop
/// running.
pub fn gui_available() -> bool {
    let set = |name| std::env::var_os(name).is_some_and(|value| !value.is_empty());
    let available = set("DISPLAY") && set("DBUS_SESSION_BUS_ADDRESS");
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "GUI tests need DISPLAY and a session bus: run them under `xvfb-run -a dbus-run-session --` (see `make test`)"
        );
        eprintln!("skipped: no DISPLAY or session bus; run `make test` to include GUI tests");
    }
    available
}

/// A virtual X server of the test's own, so tests that run side by side never see each
/// other's windows, nor take each other's keyboard focus.
pub struct XServer {
    child: Child,
    /// `:N`, for `DISPLAY`.
    pub display: String,
}

impl XServer {
    pub fn start() -> Self {
        let mut child = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1600x1000x24",
                "-nolisten",
                "tcp",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb (Debian package xvfb)");
        let mut number = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut number)
            .expect("read the display number");
        let number = number.trim();
        assert!(!number.is_empty(), "Xvfb printed no display number");
        Self {
            child,
            display: format!(":{number}"),
        }
    }

    /// Runs xdotool on this display; `None` when it fails.
    pub fn xdotool(&self, args: &[&str]) -> Option<String> {
        let output = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.display)
            .stderr(Stdio::null())
            .output()
            .expect("run xdotool");
        output
            .status
            .success()
            .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The ids of the named top-level windows of process `pid`.
    pub fn windows_of(&self, pid: u32) -> Vec<(String, String)> {
        self.xdotool(&["search", "--pid", &pid.to_string(), "--name", "."])
            .unwrap_or_default()
            .lines()
            .filter_map(|id| {
                let name = self.xdotool(&["getwindowname", id])?;
                Some((id.to_owned(), name.trim().to_owned()))
            })
            .collect()
    }

    pub fn window_titled(&self, pid: u32, title: &str) -> Option<String> {
        self.windows_of(pid)
            .into_iter()
            .find(|(_, name)| name == title)
            .map(|(id, _)| id)
    }

    /// Focuses the window and presses Ctrl+W, as a person would (real key events: WebKitGTK
    /// takes a synthetic press whose release never comes as a key still held), until the
    /// window has closed; a page still loading has no key handler yet.
    pub fn close_with_keyboard(&self, pid: u32, title: &str) {
        eventually("the window to close on Ctrl+W", || {
            let Some(window) = self.window_titled(pid, title) else {
                return Some(());
            };
            self.xdotool(&["windowfocus", "--sync", &window]);
            self.xdotool(&["key", "--clearmodifiers", "ctrl+w"]);
            for _ in 0..15 {
                if self.window_titled(pid, title).is_none() {
                    return Some(());
                }
                std::thread::sleep(Duration::from_millis(200));
            }
            None
        });
    }
}

impl Drop for XServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session bus of the test's own. Lockstep allows one instance per session bus, so tests
/// that run side by side each need their own; the tray menu is read over it too.
pub struct SessionBus {
    child: Child,
    pub address: String,
}

impl SessionBus {
    pub fn start() -> Self {
        let mut child = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--nosyslog", "--print-address=1"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start dbus-daemon (Debian package dbus)");
        let mut address = String::new();
        BufReader::new(child.stdout.take().expect("piped stdout"))
            .read_line(&mut address)
            .expect("read the bus address");
        let address = address.trim().to_owned();
        assert!(!address.is_empty(), "dbus-daemon printed no address");
        Self { child, address }
    }
}

impl Drop for SessionBus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A fresh home for one run: configuration, data and logs all inside a temporary folder.
pub struct Home {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
}

impl Home {
    /// Any free hub port, the test app, the sample session's apps, and `extra` TOML.
    pub fn new(extra: &str) -> Self {
        Self::with_port(0, extra)
    }

    /// [`Home::new`] with the hub on `port` (0: any).
    pub fn with_port(port: u16, extra: &str) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("config.toml");
        let (ris_id, ris_secret) = RIS;
        let (pacs_id, pacs_secret) = PACS;
        std::fs::write(
            &config,
            format!(
                "[hub]\nport = {port}\n\n{extra}\n\
                 [[apps]]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nscopes = [\"fhircast/*.*\"]\n\n\
                 [[apps]]\nclient_id = \"{ris_id}\"\nclient_secret = \"{ris_secret}\"\nname = \"Radiology worklist\"\nscopes = [\"fhircast/*.*\"]\n\n\
                 [[apps]]\nclient_id = \"{pacs_id}\"\nclient_secret = \"{pacs_secret}\"\nname = \"PACS viewer\"\nscopes = [\"fhircast/*.read\"]\n"
            ),
        )
        .expect("write the test configuration");
        Self { dir, config }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The environment that keeps the app's files (config, data, logs, autostart entry)
    /// inside this folder.
    pub fn env(&self) -> Vec<(&'static str, PathBuf)> {
        let home = self.dir.path();
        let mut env = vec![
            ("HOME", home.to_owned()),
            ("XDG_CONFIG_HOME", home.join(".config")),
            ("XDG_DATA_HOME", home.join(".local/share")),
            ("XDG_STATE_HOME", home.join(".local/state")),
            ("XDG_CACHE_HOME", home.join(".cache")),
            ("TMPDIR", home.to_owned()),
        ];
        // Programs a test put in the home's `bin` (a stand-in browser) come first on PATH.
        let bin = home.join("bin");
        if bin.is_dir() {
            let path = std::env::var("PATH").unwrap_or_default();
            env.push(("PATH", PathBuf::from(format!("{}:{path}", bin.display()))));
        }
        env
    }
}

/// A running `lockstep` with its own configuration; killed on drop if a test left it running.
pub struct Lockstep {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    pub home: Arc<Home>,
    /// The private session bus the process runs on (GUI runs only).
    pub bus: Option<Arc<SessionBus>>,
    /// The private X server the process shows its windows on (GUI runs only).
    pub x: Option<Arc<XServer>>,
}

impl Lockstep {
    /// Starts the binary with a fresh configuration (see [`Home::new`]) and, with a display,
    /// on an X server and a session bus of its own.
    pub fn start(display: Display, args: &[&str]) -> Self {
        let (x, bus) = match display {
            Display::Own => (
                Some(Arc::new(XServer::start())),
                Some(Arc::new(SessionBus::start())),
            ),
            Display::None => (None, None),
        };
        Self::start_in(Arc::new(Home::new("")), x, bus, args)
    }

    /// The tray app on a display of its own, once its hub answers and its tray is up, with the
    /// hub's origin; `None` where no GUI can run (see [`gui_available`]).
    pub fn with_tray() -> Option<(Self, String)> {
        if !gui_available() {
            return None;
        }
        let mut lockstep = Self::start(Display::Own, &[]);
        let origin = lockstep.wait_for_hub();
        lockstep.wait_for_line("tray ready");
        Some((lockstep, origin))
    }

    /// Starts the binary in `home` on `x` and `bus` (so a second launch can share the
    /// first's); with no X server, without a display.
    pub fn start_in(
        home: Arc<Home>,
        x: Option<Arc<XServer>>,
        bus: Option<Arc<SessionBus>>,
        args: &[&str],
    ) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        command
            .arg("--config")
            .arg(&home.config)
            .args(args)
            .envs(home.env())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        match &bus {
            Some(bus) => command.env("DBUS_SESSION_BUS_ADDRESS", &bus.address),
            None => command.env_remove("DBUS_SESSION_BUS_ADDRESS"),
        };
        command.env_remove("WAYLAND_DISPLAY");
        match &x {
            Some(x) => command.env("DISPLAY", &x.display),
            None => command.env_remove("DISPLAY"),
        };
        let mut child = command.spawn().expect("start lockstep");
        let (lines, log) = read_lines(child.stderr.take().expect("piped stderr"));
        Self {
            child,
            lines,
            log,
            home,
            bus,
            x,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The X server the process shows its windows on.
    pub fn x(&self) -> &XServer {
        self.x.as_deref().expect("a GUI run has an X server")
    }

    /// The tray menu this process exports on its session bus.
    pub fn tray(&self) -> tray::TrayMenu {
        let bus = self.bus.as_ref().expect("a GUI run has a session bus");
        tray::TrayMenu::of_process(&bus.address, self.pid())
    }

    /// Everything the process has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        match wait_for_line(&self.lines, needle) {
            Ok(line) => line,
            Err(timed_out) => {
                if !timed_out {
                    let status = self.child.wait().expect("wait for lockstep");
                    panic!(
                        "lockstep exited ({status}) before logging {needle:?}; log:\n{}",
                        self.log()
                    )
                }
                panic!(
                    "no log line with {needle:?} within {READY:?}; log:\n{}",
                    self.log()
                )
            }
        }
    }

    /// Waits for the agent to report its hub, and returns the server's origin
    /// (`http://127.0.0.1:PORT`).
    pub fn wait_for_hub(&mut self) -> String {
        origin_of(&self.wait_for_line("hub ready at "))
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("poll lockstep").is_none()
    }

    /// Sends SIGTERM, as a service manager or logout would, and waits for the exit.
    pub fn terminate(&mut self) -> ExitStatus {
        let sent = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(sent.success(), "kill -TERM failed");
        self.wait_for_exit()
    }

    /// Waits for the process to exit on its own.
    pub fn wait_for_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + READY;
        while Instant::now() < deadline {
            if let Some(status) = self.child.try_wait().expect("poll lockstep") {
                // Let the reader thread drain what the process wrote last.
                while self.lines.recv_timeout(Duration::from_secs(5)).is_ok() {}
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        panic!(
            "lockstep did not exit within {READY:?}; log:\n{}",
            self.log()
        )
    }
}

impl Drop for Lockstep {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a process's output line by line: every line kept, and each sent on as it comes.
pub fn read_lines(stream: impl Read + Send + 'static) -> (Receiver<String>, Arc<Mutex<String>>) {
    let (sender, lines) = mpsc::channel();
    let log = Arc::new(Mutex::new(String::new()));
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            let mut log = kept.lock().unwrap();
            log.push_str(&line);
            log.push('\n');
            drop(log);
            let _ = sender.send(line);
        }
    });
    (lines, log)
}

/// The next line containing `needle`; `Err(true)` when none came in time, `Err(false)` when
/// the stream ended first.
pub fn wait_for_line(lines: &Receiver<String>, needle: &str) -> Result<String, bool> {
    let deadline = Instant::now() + READY;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return Ok(line),
            Ok(_) => continue,
            Err(RecvTimeoutError::Timeout) => return Err(true),
            Err(RecvTimeoutError::Disconnected) => return Err(false),
        }
    }
}

/// `http://127.0.0.1:PORT` from the agent's "hub ready at URL" line.
pub fn origin_of(line: &str) -> String {
    let url = line
        .split("hub ready at ")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .expect("a URL after `hub ready at`");
    let port = url
        .strip_prefix("http://127.0.0.1:")
        .and_then(|rest| rest.split('/').next())
        .unwrap_or_else(|| panic!("a loopback hub URL, not {url}"));
    format!("http://127.0.0.1:{port}")
}

/// A plain HTTP/1.1 GET; returns the status code and the body.
pub fn http_get(origin: &str, path: &str) -> std::io::Result<(u16, String)> {
    let address = origin.strip_prefix("http://").expect("an http:// origin");
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(READY))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

/// Polls `probe` until it returns `Some`, for up to [`READY`].
pub fn eventually<T>(what: &str, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + READY;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The sample patient, Jane Doe: an MRN with its issuer and a second identifier.
pub fn jane() -> Value {
    json!({
        "resourceType": "Patient",
        "id": "pat-1",
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "birthDate": "1970-01-02",
        "gender": "female",
        "identifier": [
            {
                "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
                "system": "urn:oid:1.2.36.146.595.217.0.1",
                "assigner": {"display": "St. Elsewhere General"},
                "value": "12345"
            },
            {
                "type": {"text": "National ID"},
                "system": "urn:oid:2.16.840.1.113883.2.4.6.3",
                "value": "999-123-456"
            }
        ]
    })
}

/// ImagingStudy-open's context for Jane Doe's CT, as a PACS or RIS sends it.
pub fn jane_study() -> Value {
    let study = json!({
        "resourceType": "ImagingStudy",
        "id": "study-1",
        "status": "available",
        "subject": {"reference": "Patient/pat-1"},
        "started": "2026-04-12T09:31:00+02:00",
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
    json!([
        {"key": "patient", "resource": jane()},
        {"key": "study", "resource": study}
    ])
}

/// Patient-open's context for another patient, Richard Roe.
pub fn richard() -> Value {
    json!([{"key": "patient", "resource": {
        "resourceType": "Patient",
        "id": "pat-2",
        "name": [{"family": "Roe", "given": ["Richard"]}],
        "birthDate": "1958-11-30",
        "gender": "male",
        "identifier": [{
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR"}]},
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": "67890"
        }]
    }}])
}

/// An app subscribed to the session that answers every notification with `status` (200 to
/// follow, anything else to refuse), until dropped.
pub struct Subscriber {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Subscriber {
    pub fn start(origin: &str, app: (&str, &str), events: &str, status: u16) -> Self {
        let (origin, id, secret, events) = (
            origin.to_owned(),
            app.0.to_owned(),
            app.1.to_owned(),
            events.to_owned(),
        );
        let (ready_tx, ready_rx) = mpsc::channel();
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async move {
                let client =
                    lockstep_agent::client::HubClient::sign_in(&origin, &id, &secret, None)
                        .await
                        .expect("the subscriber signs in");
                let mut subscription = client
                    .subscribe(&events, None)
                    .await
                    .expect("the subscriber subscribes");
                let _ = ready_tx.send(());
                loop {
                    tokio::select! {
                        _ = &mut stopped => break,
                        frame = subscription.next_frame() => {
                            let Ok(Some(frame)) = frame else { break };
                            if let Some(id) = frame.get("id").and_then(Value::as_str) {
                                let _ = subscription.acknowledge(id, status).await;
                            }
                        }
                    }
                }
                let _ = subscription.close().await;
            });
        });
        ready_rx
            .recv_timeout(READY)
            .expect("the subscriber is connected");
        Self {
            stop: Some(stop),
            thread: Some(thread),
        }
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Publishes `event` as the app `(client_id, secret)`; blocking, for synchronous tests.
pub fn publish(
    origin: &str,
    app: (&str, &str),
    event: &str,
    context: Value,
) -> Result<String, String> {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let client = lockstep_agent::client::HubClient::sign_in(origin, app.0, app.1, None)
            .await
            .map_err(|e| e.to_string())?;
        client
            .publish(event, context, None)
            .await
            .map_err(|e| e.to_string())
    })
}

/// Every process below `pid` (children, their children, ...).
pub fn descendants(pid: u32) -> Vec<u32> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let child: u32 = entry.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(entry.path().join("stat")).ok()?;
            // "PID (COMM) STATE PPID ...": COMM may hold spaces, so split at its last ')'.
            let (_, tail) = stat.rsplit_once(')')?;
            let parent = tail.split_whitespace().nth(1)?.parse().ok()?;
            Some((child, parent))
        })
        .collect();
    let mut found = vec![pid];
    let mut next = 0;
    while next < found.len() {
        let parent = found[next];
        found.extend(
            parents
                .iter()
                .filter(|(_, p)| *p == parent)
                .map(|(child, _)| *child),
        );
        next += 1;
    }
    found.remove(0);
    found
}
