//! The tray icon and its menu: who is in context, a way to see more, and Quit.

use tauri::image::Image;
use tauri::menu::{Menu, MenuEvent, MenuItem, PredefinedMenuItem};
use tauri::tray::{TrayIcon, TrayIconBuilder};
use tauri::{AppHandle, Manager};

use crate::view::{CurrentContext, NO_PATIENT};
use crate::window;

const IDLE_ICON: Image<'static> = tauri::include_image!("icons/tray-idle.png");
const PATIENT_ICON: Image<'static> = tauri::include_image!("icons/tray-patient.png");

const PATIENT_ITEM: &str = "patient";
const SHOW_ITEM: &str = "show-current";
const QUIT_ITEM: &str = "quit";

/// The parts of the tray that change with the context.
struct Tray {
    icon: TrayIcon,
    patient: MenuItem<tauri::Wry>,
}

pub fn install(app: &AppHandle) -> tauri::Result<()> {
    // Disabled: the line is a label, not an action, and clicking a patient's name must not
    // look like it does something to that patient.
    let patient = MenuItem::with_id(app, PATIENT_ITEM, NO_PATIENT, false, None::<&str>)?;
    let show = MenuItem::with_id(app, SHOW_ITEM, "Show current context", true, None::<&str>)?;
    let quit = MenuItem::with_id(app, QUIT_ITEM, "Quit", true, None::<&str>)?;
    let separator = PredefinedMenuItem::separator(app)?;
    let menu = Menu::with_items(app, &[&patient, &separator, &show, &quit])?;
    let icon = TrayIconBuilder::with_id("lockstep")
        .icon(IDLE_ICON)
        .tooltip(format!("Lockstep: {NO_PATIENT}"))
        .menu(&menu)
        .on_menu_event(on_menu_event)
        .build(app)?;
    app.manage(Tray { icon, patient });
    Ok(())
}

/// Shows the context in the tray: the first menu line, the icon and the tooltip.
pub fn show_context(app: &AppHandle, context: &CurrentContext) {
    let Some(tray) = app.try_state::<Tray>() else {
        return;
    };
    let icon = match context.patient {
        Some(_) => PATIENT_ICON,
        None => IDLE_ICON,
    };
    let shown = tray
        .patient
        .set_text(&context.headline)
        .and_then(|()| tray.icon.set_icon(Some(icon)))
        .and_then(|()| {
            tray.icon
                .set_tooltip(Some(format!("Lockstep: {}", context.headline)))
        });
    if let Err(error) = shown {
        tracing::warn!("cannot update the tray: {error}");
    }
}

fn on_menu_event(app: &AppHandle, event: MenuEvent) {
    match event.id().as_ref() {
        SHOW_ITEM => {
            if let Err(error) = window::show_current(app) {
                tracing::error!("cannot open the current-context window: {error}");
            }
        }
        QUIT_ITEM => {
            tracing::info!("quit chosen from the tray");
            // The agent is shut down once the event loop has returned; see `run_tray`.
            app.exit(0);
        }
        _ => {}
    }
}
