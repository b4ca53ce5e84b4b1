//! The windows: each created when first asked for and destroyed when closed.
//!
//! Closing a window (Tauri's default) destroys it and its web view, so a tray that nobody looks
//! at runs no web view process at all; the agent keeps running until Quit.

use serde::Deserialize;
use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

/// Every window the shell has. The labels are what `capabilities/` grants by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Current,
    History,
    Settings,
    About,
}

struct Shape {
    page: &'static str,
    title: &'static str,
    size: (f64, f64),
    min_size: (f64, f64),
    resizable: bool,
}

impl Kind {
    pub fn label(self) -> &'static str {
        match self {
            Kind::Current => "current",
            Kind::History => "history",
            Kind::Settings => "settings",
            Kind::About => "about",
        }
    }

    fn shape(self) -> Shape {
        match self {
            Kind::Current => Shape {
                page: "index.html",
                title: "Lockstep — Current context",
                size: (620.0, 720.0),
                min_size: (420.0, 360.0),
                resizable: true,
            },
            Kind::History => Shape {
                page: "history.html",
                title: "Lockstep — Context history",
                size: (1240.0, 760.0),
                min_size: (760.0, 420.0),
                resizable: true,
            },
            Kind::Settings => Shape {
                page: "settings.html",
                title: "Lockstep — Settings",
                size: (760.0, 780.0),
                min_size: (560.0, 420.0),
                resizable: true,
            },
            Kind::About => Shape {
                page: "about.html",
                title: "About Lockstep",
                size: (500.0, 420.0),
                min_size: (420.0, 320.0),
                resizable: false,
            },
        }
    }
}

/// Shows the window, creating it if it is not open, and brings it to the front.
pub fn show(app: &AppHandle, kind: Kind) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(kind.label()) {
        tracing::debug!("focusing the {} window", kind.label());
        window.unminimize()?;
        window.show()?;
        return window.set_focus();
    }
    tracing::debug!("opening the {} window", kind.label());
    let shape = kind.shape();
    let window = WebviewWindowBuilder::new(app, kind.label(), WebviewUrl::App(shape.page.into()))
        .title(shape.title)
        .inner_size(shape.size.0, shape.size.1)
        .min_inner_size(shape.min_size.0, shape.min_size.1)
        .resizable(shape.resizable)
        .center()
        .build()?;
    window.set_focus()
}

/// [`show`], for callers with nowhere to send the error (menu clicks, a second launch).
///
/// Runs on the async runtime, so a menu callback on the GTK thread returns at once and the
/// window is built through the event loop, as Tauri advises for windows made from handlers.
pub fn open(app: &AppHandle, kind: Kind) {
    let app = app.clone();
    tauri::async_runtime::spawn(async move {
        if let Err(error) = show(&app, kind) {
            tracing::error!("cannot open the {} window: {error}", kind.label());
        }
    });
}

/// Whether a WebDriver session drives this process (tauri-driver sets this).
pub fn under_automation() -> bool {
    std::env::var("TAURI_WEBVIEW_AUTOMATION").as_deref() == Ok("true")
}
