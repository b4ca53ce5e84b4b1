//! Logging for both binaries: to standard error, and to a rotating file in the user's log
//! folder (`[log] file`), filtered by `[log] level` or `RUST_LOG`. A tray app started at
//! sign-in has no terminal to read: the file is where its log is.
//!
//! Nothing logged at info level or above names a patient: summaries and frames go to debug.

mod rotating;

pub use rotating::RotatingFile;

use crate::config::LogConfig;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::writer::MakeWriterExt;

/// Installs the global subscriber; calling it twice keeps the first. `binary` names the log
/// file (`lockstep.log`, `lockstepd.log`), so that the two never write one file. A file that
/// cannot be opened leaves standard error alone, with a warning there.
pub fn init(config: &LogConfig, binary: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let file = match (config.file, crate::paths::Paths::discover().log_dir()) {
        (true, Some(folder)) => match RotatingFile::open(&folder, binary, config) {
            Ok(file) => Some(file),
            Err(e) => {
                eprintln!("{binary}: cannot log to {}: {e}", folder.display());
                None
            }
        },
        _ => None,
    };
    let _ = match file {
        Some(file) => builder
            .with_writer(std::io::stderr.and(std::sync::Mutex::new(file)))
            .try_init(),
        None => builder
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .with_writer(std::io::stderr)
            .try_init(),
    };
}
