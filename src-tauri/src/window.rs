//! The current-context window: created on demand, destroyed on close.

use tauri::{AppHandle, Manager, WebviewUrl, WebviewWindowBuilder};

/// The window's label; the capability in `capabilities/default.json` grants by this name.
pub const CURRENT: &str = "current";

/// Shows the current-context window, creating it if it is not open.
///
/// Windows are made when asked for and destroyed when closed (Tauri's default on close), so a
/// tray that nobody looks at runs no web view process at all.
pub fn show_current(app: &AppHandle) -> tauri::Result<()> {
    if let Some(window) = app.get_webview_window(CURRENT) {
        window.unminimize()?;
        window.show()?;
        return window.set_focus();
    }
    let window = WebviewWindowBuilder::new(app, CURRENT, WebviewUrl::App("index.html".into()))
        .title("Lockstep — Current context")
        .inner_size(560.0, 520.0)
        .min_inner_size(380.0, 320.0)
        .center()
        .build()?;
    window.set_focus()
}
