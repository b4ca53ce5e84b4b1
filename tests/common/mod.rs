//! Helpers for driving the built `lockstep` binary: start it, read its log, find its tray menu
//! on the session bus, and stop it.

#![allow(dead_code)] // each test file uses its own subset

pub mod tray;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long anything may take to become ready. Generous: CI builds are unoptimised and run
/// tests in parallel on two cores, and a readiness wait costs nothing when things are fast.
pub const READY: Duration = Duration::from_secs(120);

/// A test app registered in every test configuration, so tests can publish as an app would.
pub const CLIENT_ID: &str = "shell-test";
pub const CLIENT_SECRET: &str = "shell-test-secret";

/// Whether the process gets the test's display or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Display {
    Inherit,
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

/// A running `lockstep` with its own configuration; killed on drop if a test left it running.
pub struct Lockstep {
    child: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    _dir: tempfile::TempDir,
}

impl Lockstep {
    /// Starts the binary with a fresh configuration: any free hub port and the test app.
    pub fn start(display: Display, args: &[&str]) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let config = dir.path().join("config.toml");
        std::fs::write(
            &config,
            format!(
                "[hub]\nport = 0\n\n[[apps]]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nscopes = [\"fhircast/*.*\"]\n"
            ),
        )
        .expect("write the test configuration");
        let mut command = Command::new(env!("CARGO_BIN_EXE_lockstep"));
        command
            .arg("--config")
            .arg(&config)
            .args(args)
            // The app's own files (logs, state) stay inside the test's directory.
            .env("HOME", dir.path())
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_DATA_HOME", dir.path().join("data"))
            .env("XDG_STATE_HOME", dir.path().join("state"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        if display == Display::None {
            command.env_remove("DISPLAY").env_remove("WAYLAND_DISPLAY");
        }
        let mut child = command.spawn().expect("start lockstep");
        let (sender, lines) = mpsc::channel();
        let log = Arc::new(Mutex::new(String::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let kept = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let mut log = kept.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
                drop(log);
                let _ = sender.send(line);
            }
        });
        Self {
            child,
            lines,
            log,
            _dir: dir,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Everything the process has written to stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Waits for a log line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + READY;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => continue,
                Err(RecvTimeoutError::Timeout) => {
                    panic!(
                        "no log line with {needle:?} within {READY:?}; log:\n{}",
                        self.log()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().expect("wait for lockstep");
                    panic!(
                        "lockstep exited ({status}) before logging {needle:?}; log:\n{}",
                        self.log()
                    )
                }
            }
        }
    }

    /// Waits for the agent to report its hub, and returns the server's origin
    /// (`http://127.0.0.1:PORT`).
    pub fn wait_for_hub(&mut self) -> String {
        let line = self.wait_for_line("hub ready at ");
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
