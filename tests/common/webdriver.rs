//! Drives the real app over WebDriver: tauri-driver (`cargo install tauri-driver`) in front
//! of WebKitWebDriver (Debian package `webkit2gtk-driver`), with fantoccini as the client.
//! Each run gets its own X server, session bus and home, so runs side by side never meet.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

use super::{Home, READY, SessionBus, XServer, origin_of, tray::TrayMenu, wait_for_line};

/// Where tauri-driver is: on `PATH`, else where `cargo install` puts it.
fn tauri_driver() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("tauri-driver"))
            .find(|candidate| candidate.is_file())
    });
    on_path.or_else(|| {
        let cargo_home = std::env::var_os("CARGO_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))?;
        Some(cargo_home.join("bin/tauri-driver")).filter(|path| path.is_file())
    })
}

/// Whether WebDriver runs can happen here. In CI a missing driver is a failure, so these tests
/// cannot silently stop running; elsewhere they are skipped with a note.
pub fn webdriver_available() -> bool {
    if !super::gui_available() {
        return false;
    }
    let available = tauri_driver().is_some() && which("WebKitWebDriver");
    if !available {
        assert!(
            std::env::var_os("CI").is_none(),
            "WebDriver tests need tauri-driver and WebKitWebDriver: run scripts/install-deps"
        );
        eprintln!("skipped: no tauri-driver or WebKitWebDriver; run scripts/install-deps");
    }
    available
}

fn which(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// The app under WebDriver. Dropping it ends the session (and with it the app) and the driver.
pub struct App {
    pub client: Client,
    driver: Child,
    lines: Receiver<String>,
    log: Arc<Mutex<String>>,
    /// The hub's origin, `http://127.0.0.1:PORT`.
    pub origin: String,
    pub home: Arc<Home>,
    pub x: Arc<XServer>,
    pub bus: Arc<SessionBus>,
}

impl App {
    /// Starts the app through tauri-driver with a fresh home (`extra` TOML added to its
    /// configuration) and waits for the tray and the hub.
    pub async fn start(extra: &str) -> App {
        // A port of its own rather than 0, so the settings show what a workstation shows.
        Self::start_in(Arc::new(Home::with_port(free_port(), extra))).await
    }

    pub async fn start_in(home: Arc<Home>) -> App {
        let x = Arc::new(XServer::start());
        let bus = Arc::new(SessionBus::start());
        let port = free_port();
        let native_port = free_port();
        let mut driver = Command::new(tauri_driver().expect("tauri-driver"))
            .args([
                "--port",
                &port.to_string(),
                "--native-port",
                &native_port.to_string(),
            ])
            .envs(home.env())
            .env("DISPLAY", &x.display)
            .env("DBUS_SESSION_BUS_ADDRESS", &bus.address)
            .env_remove("WAYLAND_DISPLAY")
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start tauri-driver");
        // The app's own log comes through the driver's stderr (both pass it on).
        let (lines, log) = super::read_lines(driver.stderr.take().expect("piped stderr"));

        let webdriver = format!("http://127.0.0.1:{port}");
        let capabilities = json!({
            "tauri:options": {
                "application": env!("CARGO_BIN_EXE_lockstep"),
                "args": ["--config", home.config.to_str().expect("a UTF-8 path")],
            }
        });
        let Value::Object(capabilities) = capabilities else {
            unreachable!()
        };
        let deadline = Instant::now() + READY;
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match ClientBuilder::new(connector)
                .capabilities(capabilities.clone())
                .connect(&webdriver)
                .await
            {
                Ok(client) => break client,
                // The driver may not listen yet.
                Err(error) if Instant::now() < deadline => {
                    let _ = error;
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(error) => panic!(
                    "no WebDriver session within {READY:?}: {error}; log:\n{}",
                    log.lock().unwrap()
                ),
            }
        };
        let mut app = App {
            client,
            driver,
            lines,
            log,
            origin: String::new(),
            home,
            x,
            bus,
        };
        app.origin = origin_of(&app.wait_for_line("hub ready at "));
        app.wait_for_line("tray ready");
        app
    }

    /// Everything the app (and the drivers) wrote so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_for_line(&self, needle: &str) -> String {
        wait_for_line(&self.lines, needle).unwrap_or_else(|_| {
            panic!(
                "no log line with {needle:?} within {READY:?}; log:\n{}",
                self.log()
            )
        })
    }

    /// The tray menu, over the app's session bus.
    pub fn tray(&self) -> TrayMenu {
        let pid = super::eventually("the app's process", || self.pid());
        TrayMenu::of_process(&self.bus.address, pid)
    }

    /// The app's process id: the `lockstep` below the driver.
    fn pid(&self) -> Option<u32> {
        let app = std::fs::canonicalize(env!("CARGO_BIN_EXE_lockstep")).ok()?;
        super::descendants(self.driver.id())
            .into_iter()
            .find(|pid| std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_ref() == Some(&app))
    }

    /// Makes the window with this title the one WebDriver talks to, waiting for it to open.
    pub async fn window(&self, title: &str) {
        let deadline = Instant::now() + READY;
        loop {
            for handle in self.client.windows().await.unwrap_or_default() {
                if self.client.switch_to_window(handle).await.is_ok()
                    && self.client.title().await.is_ok_and(|t| t == title)
                {
                    return;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no window titled {title:?} within {READY:?}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Runs `script` in the current window and returns its result.
    pub async fn run(&self, script: &str, args: Vec<Value>) -> Value {
        self.client
            .execute(script, args)
            .await
            .unwrap_or_else(|e| panic!("script failed: {e}\n{script}"))
    }

    /// The text of the first element matching `css`, or `None` when there is none (or it is
    /// hidden: a hidden field must not count as shown).
    pub async fn text(&self, css: &str) -> Option<String> {
        let value = self
            .run(
                "const e = document.querySelector(arguments[0]);
                 return e && e.closest('[hidden]') === null ? e.textContent.trim() : null;",
                vec![json!(css)],
            )
            .await;
        value.as_str().map(str::to_owned)
    }

    /// The texts of every element matching `css`.
    pub async fn texts(&self, css: &str) -> Vec<String> {
        let value = self
            .run(
                "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent.trim());",
                vec![json!(css)],
            )
            .await;
        serde_json::from_value(value).unwrap_or_default()
    }

    /// Waits until `probe` (read from the page) says yes; returns what it saw.
    pub async fn until<T, F, Fut>(&self, what: &str, mut probe: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + READY;
        loop {
            if let Some(value) = probe().await {
                return value;
            }
            if Instant::now() >= deadline {
                self.fail(&format!("timed out waiting for {what}")).await;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Fails the test with what the window showed: its title, its text and a screenshot kept
    /// in the temporary folder, and the app's log.
    pub async fn fail(&self, why: &str) -> ! {
        let title = self.client.title().await.unwrap_or_default();
        let text = self
            .run("return document.body.innerText;", vec![])
            .await
            .as_str()
            .map(str::to_owned)
            .unwrap_or_default();
        let shot = std::env::temp_dir().join(format!("lockstep-e2e-{}.png", std::process::id()));
        let saved = match self.client.screenshot().await {
            Ok(png) => std::fs::write(&shot, png)
                .map(|()| format!("screenshot: {}", shot.display()))
                .unwrap_or_else(|e| format!("no screenshot: {e}")),
            Err(e) => format!("no screenshot: {e}"),
        };
        panic!(
            "{why}\nwindow {title:?} ({saved}) shows:\n{text}\n\nlog:\n{}",
            self.log()
        )
    }

    /// Waits until the element's text satisfies `check`, and returns it.
    pub async fn until_text(&self, css: &str, check: impl Fn(&str) -> bool) -> String {
        self.until(&format!("the text of {css}"), || async {
            self.text(css).await.filter(|text| check(text))
        })
        .await
    }

    /// Clicks the element, as a person would. A list that re-renders between finding the
    /// element and clicking it (a reload pushed by the agent) replaces the node: find it again.
    pub async fn click(&self, css: &str) {
        let deadline = Instant::now() + READY;
        loop {
            let clicked = match self.client.find(Locator::Css(css)).await {
                Ok(element) => element.click().await,
                Err(error) => Err(error),
            };
            match clicked {
                Ok(()) => return,
                Err(error) if Instant::now() >= deadline => {
                    self.fail(&format!("cannot click {css}: {error}")).await
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Replaces the text of an input, typing as a person would.
    pub async fn type_into(&self, css: &str, text: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        element.clear().await.expect("clear the input");
        element
            .send_keys(text)
            .await
            .unwrap_or_else(|e| panic!("cannot type into {css}: {e}"));
    }

    /// Picks the option with this value in a `<select>`.
    pub async fn select(&self, css: &str, value: &str) {
        let element = self
            .client
            .find(Locator::Css(css))
            .await
            .unwrap_or_else(|e| panic!("no {css}: {e}"));
        element
            .select_by_value(value)
            .await
            .unwrap_or_else(|e| panic!("cannot pick {value:?} in {css}: {e}"));
    }

    /// Saves the current window as `docs/screenshots/NAME.png`-to-be: written only when
    /// `LOCKSTEP_SCREENSHOTS` names a folder (`make screenshots`).
    pub async fn screenshot(&self, name: &str) {
        let Some(folder) = std::env::var_os("LOCKSTEP_SCREENSHOTS") else {
            return;
        };
        // Let the page paint what it holds (two frames), then give fonts and layout a moment:
        // on a busy machine the snapshot can otherwise show an earlier frame.
        let _ = self
            .client
            .execute_async(
                "const done = arguments[0];
                 requestAnimationFrame(() => requestAnimationFrame(() => done(true)));",
                vec![],
            )
            .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        let png = self.client.screenshot().await.expect("a screenshot");
        let folder = PathBuf::from(folder);
        std::fs::create_dir_all(&folder).expect("the screenshot folder");
        std::fs::write(folder.join(format!("{name}.png")), png).expect("write the screenshot");
    }

    /// Ends the session (WebKitWebDriver stops the app) and the driver.
    pub async fn quit(self) {
        let _ = self.client.clone().close().await;
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // A test that failed ends here without `quit`: stop what the driver started too
        // (WebKitWebDriver, the app, its web views), not only the driver.
        for pid in super::descendants(self.driver.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(Stdio::null())
                .status();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
