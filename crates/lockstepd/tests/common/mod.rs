//! `lockstepd` as a child process, and its verbs.
#![allow(dead_code)] // each test file uses its own part of the harness

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub struct Daemon {
    child: Child,
    pub origin: String,
    /// Every line it has written to standard error so far.
    log: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    _config: Option<tempfile::NamedTempFile>,
    _home: tempfile::TempDir,
}

impl Daemon {
    /// Starts `lockstepd --config FILE` with `config` as the file's text.
    pub fn start_with_text(config: &str) -> Daemon {
        Self::start_with_env(config, &[])
    }

    /// As [`Daemon::start_with_text`], with these environment variables set too.
    pub fn start_with_env(config: &str, env: &[(&str, &str)]) -> Daemon {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(config.as_bytes()).unwrap();
        let path = file.path().to_owned();
        Self::spawn(&path, &[], Some(file), env)
    }

    /// Starts `lockstepd --config FILE ARGS...` and waits for its "hub ready at" line.
    pub fn start(config: &Path, args: &[&str], file: Option<tempfile::NamedTempFile>) -> Daemon {
        Self::spawn(config, args, file, &[])
    }

    fn spawn(
        config: &Path,
        args: &[&str],
        file: Option<tempfile::NamedTempFile>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_lockstepd"))
            .arg("--config")
            .arg(config)
            .args(args)
            .envs(env.iter().copied())
            .env("RUST_LOG", "info")
            .env("HOME", home.path())
            // Its own runtime folder: daemons side by side never read each other's
            // discovery files.
            .env("XDG_RUNTIME_DIR", home.path().join("run"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let lines = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(url) = line.split("hub ready at ").nth(1) {
                    let _ = tx.send(url.split_whitespace().next().unwrap_or("").to_owned());
                }
                lines.lock().unwrap().push(line);
            }
        });
        let hub_url = rx
            .recv_timeout(Duration::from_secs(20))
            .expect("lockstepd did not report ready");
        let origin = hub_url.trim_end_matches("/fhircast").to_owned();
        Daemon {
            child,
            origin,
            log,
            _config: file,
            _home: home,
        }
    }

    /// Runs a `lockstepd` verb against this daemon as the app `client_id`.
    pub fn verb(&self, client_id: &str, secret: &str, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_lockstepd"))
            .args(args)
            .args(["--hub", &self.origin, "--client-id", client_id])
            .env("LOCKSTEP_CLIENT_SECRET", secret)
            .output()
            .unwrap()
    }

    /// Runs `lockstepd --config <the daemon's file> ARGS` as the daemon's user (same home).
    pub fn beside(&self, args: &[&str]) -> Output {
        let config = self._config.as_ref().expect("started from a config text");
        Command::new(env!("CARGO_BIN_EXE_lockstepd"))
            .arg("--config")
            .arg(config.path())
            .args(args)
            .env("HOME", self._home.path())
            .env("XDG_RUNTIME_DIR", self._home.path().join("run"))
            .output()
            .unwrap()
    }

    /// The daemon's home folder (its data, history and logs are under it).
    pub fn home(&self) -> &Path {
        self._home.path()
    }

    /// Waits (up to 20 s) until it has logged a line containing `text`.
    pub fn wait_for_log(&self, text: &str) {
        for _ in 0..400 {
            if self
                .log
                .lock()
                .unwrap()
                .iter()
                .any(|line| line.contains(text))
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("lockstepd never logged {text:?}");
    }

    /// The state of its enterprise link as it published it (`links.json`), if it has one.
    pub fn upstream_link_state(&self) -> Option<String> {
        let file = self.home().join("run/org.lockstep.agent/links.json");
        let links: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
        links["links"]
            .as_array()?
            .iter()
            .find(|l| l["kind"] == "upstream")
            .and_then(|l| l["state"].as_str())
            .map(str::to_owned)
    }

    /// What it has logged so far, for a failing assertion's message.
    pub fn logged(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Waits (up to 20 s) for it to exit on its own.
    pub fn wait_exit(mut self) -> std::process::ExitStatus {
        for _ in 0..400 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("lockstepd did not exit");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to clean up.
    pub fn kill_hard(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        panic!("lockstepd did not stop on SIGTERM");
    }
}

/// Runs `lockstepd --config <text> ARGS` (verbs that read the local database).
pub fn cli(config: &str, args: &[&str]) -> Output {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(config.as_bytes()).unwrap();
    Command::new(env!("CARGO_BIN_EXE_lockstepd"))
        .arg("--config")
        .arg(file.path())
        .args(args)
        .output()
        .unwrap()
}

impl Drop for Daemon {
    /// A failing test must not leave its daemon running.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
