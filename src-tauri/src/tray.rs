//! The tray icon and its menu. On Linux a panel sends menu events only (no clicks on the icon),
//! so everything the tray offers is in the menu.

use std::sync::Mutex;

use lockstep_agent::AgentHandle;
use lockstep_agent::config::WhenUnwritable;
use lockstep_agent::desktop::TrayStatus;
use tauri::image::Image;
use tauri::menu::{IsMenuItem, Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager};

use crate::view::{CurrentContext, NO_PATIENT, status_label};
use crate::window::{self, Kind};

const PATIENT_ITEM: &str = "patient";
const SHOW_ITEM: &str = "show-current";
const HISTORY_ITEM: &str = "history";
const PAUSE_ITEM: &str = "pause";
const SETTINGS_ITEM: &str = "settings";
const ABOUT_ITEM: &str = "about";
const QUIT_ITEM: &str = "quit";
const POLICY_ITEM: &str = "history-policy";
const SITE_SIGN_IN_ITEM: &str = "site-sign-in";
const SITE_SIGN_OUT_ITEM: &str = "site-sign-out";

pub const PAUSE_LABEL: &str = "Pause following";
pub const RESUME_LABEL: &str = "Resume";

/// The parts of the tray that change, and what they show now.
struct Tray {
    icon: TrayIcon,
    patient: MenuItem<tauri::Wry>,
    pause: MenuItem<tauri::Wry>,
    shown: Mutex<Shown>,
}

struct Shown {
    headline: String,
    status: TrayStatus,
}

pub fn install(app: &AppHandle) -> tauri::Result<()> {
    // Disabled: the line is a label, not an action, and clicking a patient's name must not
    // look like it does something to that patient.
    let patient = MenuItem::with_id(app, PATIENT_ITEM, NO_PATIENT, false, None::<&str>)?;
    let item = |id, text| MenuItem::with_id(app, id, text, true, None::<&str>);
    let show = item(SHOW_ITEM, "Show current context")?;
    let history = item(HISTORY_ITEM, "History…")?;
    let pause = item(PAUSE_ITEM, PAUSE_LABEL)?;
    let settings = item(SETTINGS_ITEM, "Settings…")?;
    let about = item(ABOUT_ITEM, "About")?;
    let quit = item(QUIT_ITEM, "Quit")?;
    // The site's choice to sync without history is said for as long as it is on, not only
    // while history fails (a label, like the patient line).
    let policy = app
        .try_state::<AgentHandle>()
        .is_some_and(|agent| {
            agent.history().when_unwritable() == WhenUnwritable::SyncWithoutHistory
        })
        .then(|| {
            MenuItem::with_id(
                app,
                POLICY_ITEM,
                "Site policy: syncing goes on without history when it cannot be written",
                false,
                None::<&str>,
            )
        })
        .transpose()?;
    // Where the clinician signs in to the site's hub: Sign in / Sign out.
    let site = match app
        .try_state::<AgentHandle>()
        .and_then(|agent| agent.site_sign_in())
    {
        Some((site, _)) => {
            let sign_in = format!("Sign in to {site}…");
            let sign_out = format!("Sign out of {site}");
            let enabled = |id, text: &str| MenuItem::with_id(app, id, text, true, None::<&str>);
            Some((
                enabled(SITE_SIGN_IN_ITEM, &sign_in)?,
                enabled(SITE_SIGN_OUT_ITEM, &sign_out)?,
            ))
        }
        None => None,
    };
    let (above, below) = (
        PredefinedMenuItem::separator(app)?,
        PredefinedMenuItem::separator(app)?,
    );
    let mut items: Vec<&dyn IsMenuItem<tauri::Wry>> = vec![&patient];
    if let Some(policy) = &policy {
        items.push(policy);
    }
    items.extend([
        &above as &dyn IsMenuItem<tauri::Wry>,
        &show,
        &history,
        &pause,
        &settings,
    ]);
    if let Some((sign_in, sign_out)) = &site {
        items.extend([sign_in as &dyn IsMenuItem<tauri::Wry>, sign_out]);
    }
    items.extend([&about as &dyn IsMenuItem<tauri::Wry>, &below, &quit]);
    let menu = Menu::with_items(app, &items)?;
    let shown = Shown {
        headline: NO_PATIENT.to_owned(),
        status: TrayStatus::Idle,
    };
    let mut builder = TrayIconBuilder::with_id("lockstep");
    // On Linux the panel is handed the icon as a file: keep it in the user's own cache rather
    // than a shared temporary folder, where two users' agents on one host would collide.
    if let Ok(cache) = app.path().app_cache_dir() {
        builder = builder.temp_dir_path(cache.join("tray-icon"));
    }
    let icon = builder
        .icon(icon_for(app, shown.status))
        .tooltip(tooltip(&shown))
        .menu(&menu)
        .on_menu_event(on_menu_event)
        .build(app)?;
    app.manage(Tray {
        icon,
        patient,
        pause,
        shown: Mutex::new(shown),
    });
    Ok(())
}

/// Shows who is in context: the first menu line and the tooltip.
pub fn show_context(app: &AppHandle, context: &CurrentContext) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    let mut shown = tray.shown.lock().unwrap_or_else(|e| e.into_inner());
    shown.headline = context.headline.clone();
    let result = tray
        .patient
        .set_text(&shown.headline)
        .and_then(|()| tray.icon.set_tooltip(Some(tooltip(&shown))));
    if let Err(error) = result {
        tracing::warn!("cannot update the tray: {error}");
    }
}

/// Shows the agent's state: the icon, the pause item and the tooltip.
pub fn show_status(app: &AppHandle, status: TrayStatus) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    let mut shown = tray.shown.lock().unwrap_or_else(|e| e.into_inner());
    shown.status = status;
    let pause = match status {
        TrayStatus::Paused => RESUME_LABEL,
        _ => PAUSE_LABEL,
    };
    let result = tray
        .icon
        .set_icon(Some(icon_for(app, status)))
        .and_then(|()| tray.pause.set_text(pause))
        .and_then(|()| tray.icon.set_tooltip(Some(tooltip(&shown))));
    if let Err(error) = result {
        tracing::warn!("cannot update the tray: {error}");
    }
}

fn tooltip(shown: &Shown) -> String {
    match shown.status {
        TrayStatus::Problem
        | TrayStatus::Paused
        | TrayStatus::NoHistory
        | TrayStatus::SyncWithoutHistory => format!(
            "Lockstep: {}\n{}",
            shown.headline,
            status_label(shown.status)
        ),
        TrayStatus::Idle | TrayStatus::Patient => format!("Lockstep: {}", shown.headline),
    }
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    match event.id().as_ref() {
        SHOW_ITEM => window::open(app, Kind::Current),
        HISTORY_ITEM => window::open(app, Kind::History),
        SETTINGS_ITEM => window::open(app, Kind::Settings),
        ABOUT_ITEM => window::open(app, Kind::About),
        PAUSE_ITEM => {
            let agent = app.state::<AgentHandle>();
            let paused = *agent.watch_status().borrow() == TrayStatus::Paused;
            tracing::info!(
                "{} chosen from the tray",
                if paused { "resume" } else { "pause" }
            );
            agent.set_paused(!paused);
        }
        SITE_SIGN_IN_ITEM => {
            let agent = app.state::<AgentHandle>();
            if let Some((site, page)) = agent.site_sign_in() {
                tracing::info!("sign in to {site} chosen from the tray");
                open_in_browser(&page);
            }
        }
        SITE_SIGN_OUT_ITEM => {
            tracing::info!("sign out of the site chosen from the tray");
            app.state::<AgentHandle>().sign_out_of_site();
        }
        QUIT_ITEM => {
            tracing::info!("quit chosen from the tray");
            // The agent is shut down once the event loop has returned; see `run_tray`.
            app.exit(0);
        }
        _ => {}
    }
}

/// Whether the panel the icon sits on is light or dark; the icon's strokes must contrast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Panel {
    Light,
    Dark,
}

/// The tray's four icons.
#[derive(Clone, Copy)]
enum Icon {
    Idle,
    Patient,
    Problem,
    Paused,
}

/// The icon for each state and panel, at 1x and 2x (see `scripts/make-icons`).
fn icon_image(status: TrayStatus, panel: Panel, high_dpi: bool) -> Image<'static> {
    use Icon::{Idle, Patient, Paused, Problem};
    use Panel::{Dark, Light};
    let icon = match status {
        TrayStatus::Idle => Idle,
        TrayStatus::Patient => Patient,
        TrayStatus::Paused => Paused,
        // History that cannot be written is a sync problem the clinician must see.
        TrayStatus::Problem | TrayStatus::NoHistory | TrayStatus::SyncWithoutHistory => Problem,
    };
    match (icon, panel, high_dpi) {
        (Idle, Light, false) => tauri::include_image!("icons/tray-idle-light.png"),
        (Idle, Light, true) => tauri::include_image!("icons/tray-idle-light@2x.png"),
        (Idle, Dark, false) => tauri::include_image!("icons/tray-idle-dark.png"),
        (Idle, Dark, true) => tauri::include_image!("icons/tray-idle-dark@2x.png"),
        (Patient, Light, false) => tauri::include_image!("icons/tray-patient-light.png"),
        (Patient, Light, true) => tauri::include_image!("icons/tray-patient-light@2x.png"),
        (Patient, Dark, false) => tauri::include_image!("icons/tray-patient-dark.png"),
        (Patient, Dark, true) => tauri::include_image!("icons/tray-patient-dark@2x.png"),
        (Problem, Light, false) => tauri::include_image!("icons/tray-problem-light.png"),
        (Problem, Light, true) => tauri::include_image!("icons/tray-problem-light@2x.png"),
        (Problem, Dark, false) => tauri::include_image!("icons/tray-problem-dark.png"),
        (Problem, Dark, true) => tauri::include_image!("icons/tray-problem-dark@2x.png"),
        (Paused, Light, false) => tauri::include_image!("icons/tray-paused-light.png"),
        (Paused, Light, true) => tauri::include_image!("icons/tray-paused-light@2x.png"),
        (Paused, Dark, false) => tauri::include_image!("icons/tray-paused-dark.png"),
        (Paused, Dark, true) => tauri::include_image!("icons/tray-paused-dark@2x.png"),
    }
}

fn icon_for(app: &AppHandle, status: TrayStatus) -> Image<'static> {
    let high_dpi = app
        .primary_monitor()
        .ok()
        .flatten()
        .is_some_and(|monitor| monitor.scale_factor() > 1.0);
    icon_image(status, panel(), high_dpi)
}

/// Most panels are dark (GNOME's and Cinnamon's top bars whatever the theme, the Windows
/// taskbar by default). Desktops whose panel follows the GTK theme get the light variant
/// when that theme is light.
fn panel() -> Panel {
    #[cfg(target_os = "linux")]
    {
        use gtk::prelude::GtkSettingsExt;
        let desktop = std::env::var("XDG_CURRENT_DESKTOP")
            .unwrap_or_default()
            .to_ascii_uppercase();
        let themed_panel = ["KDE", "XFCE", "MATE", "LXDE", "LXQT"]
            .iter()
            .any(|name| desktop.split(':').any(|part| part == *name));
        if themed_panel && let Some(settings) = gtk::Settings::default() {
            let dark_theme = settings.is_gtk_application_prefer_dark_theme()
                || settings
                    .gtk_theme_name()
                    .is_some_and(|name| name.to_ascii_lowercase().contains("dark"));
            return if dark_theme {
                Panel::Dark
            } else {
                Panel::Light
            };
        }
    }
    Panel::Dark
}

/// Opens `url` in the desktop's browser (a child process of its own; a failure is logged).
fn open_in_browser(url: &str) {
    let (program, args): (&str, &[&str]) = if cfg!(target_os = "windows") {
        ("rundll32", &["url.dll,FileProtocolHandler"])
    } else if cfg!(target_os = "macos") {
        ("open", &[])
    } else {
        ("xdg-open", &[])
    };
    let opened = std::process::Command::new(program)
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn();
    if let Err(e) = opened {
        tracing::error!("cannot open the browser with {program}: {e}");
    }
}
