//! Logging for both binaries: to stderr, filtered by `[log] level` or `RUST_LOG`.
//!
//! Nothing logged at info level or above names a patient: summaries and frames go to debug.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; calling it twice keeps the first.
pub fn init(level: &str) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}
