//! Entry point: the tray app when there is a display, the headless agent when there is none.

// A release build on Windows must not open a console window next to the tray.
#![cfg_attr(not(debug_assertions), windows_subsystem = "windows")]

use std::process::ExitCode;

use clap::Parser;
use lockstep_app::Cli;

fn main() -> ExitCode {
    // SAFETY: first thing in main, before any thread is started.
    #[cfg(target_os = "linux")]
    unsafe {
        lockstep_app::gtk_gl::turn_off();
    }
    let cli = Cli::parse();
    let config = match cli.load_config() {
        Ok(config) => config,
        Err(error) => {
            // Exit status 2, as lockstepd does, so deployment scripts can tell a bad
            // configuration from a failure to run.
            eprintln!("lockstep: configuration error: {error}");
            return ExitCode::from(2);
        }
    };
    lockstep_agent::logging::init(&config.log, "lockstep");
    match lockstep_app::run(&cli, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}
