//! The agent's legacy bridges: started with the hub, reloaded with the configuration (by
//! bridge name, the hub untouched), stopped before the hub stops.

use crate::{AgentHandle, Config, ConfigError};
use lockstep_bridges::{BridgeStatus, ReloadSummary};
use tokio::sync::watch;

impl AgentHandle {
    /// Every configured bridge's link state.
    pub fn bridges(&self) -> Vec<BridgeStatus> {
        self.inner.bridges.statuses()
    }

    /// Link-state changes, for the tray (no polling).
    pub fn watch_bridges(&self) -> watch::Receiver<Vec<BridgeStatus>> {
        self.inner.bridges.watch()
    }

    /// Applies the `[bridges]` of a new configuration: changed bridges restart, removed ones
    /// stop, new ones start. A configuration that does not validate changes nothing.
    pub async fn reload_bridges(&self, config: &Config) -> Result<ReloadSummary, ConfigError> {
        let bridges = config.validated()?;
        let summary = self.inner.bridges.reload(&bridges).await;
        tracing::info!(
            "bridges reloaded: {} started, {} restarted, {} stopped",
            summary.started.len(),
            summary.restarted.len(),
            summary.stopped.len()
        );
        Ok(summary)
    }
}
