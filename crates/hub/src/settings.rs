//! The hub's tunables, as the `[hub]` table of the agent config names them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HubSettings {
    /// TCP port on loopback; 0 picks any free port (tests).
    pub port: u16,
    /// How long a subscriber has to answer a notification with `{id, status}`.
    pub ack_timeout_seconds: u64,
    /// Lease granted when a subscriber asks for none.
    pub lease_seconds_default: u64,
    /// The longest lease granted, whatever is asked (and never past the token's expiry).
    pub lease_seconds_max: u64,
    /// Largest request body accepted; larger ones get 413.
    pub max_body_bytes: usize,
    /// Lifetime of access tokens issued by the local authorization server.
    pub token_lifetime_seconds: u64,
    /// How often the hub pings each WebSocket; a peer silent for two intervals is dead.
    /// Well under the 60 s after which idle intermediaries drop connections.
    pub ping_interval_seconds: u64,
    /// Web origins (e.g. `http://localhost:3000`) whose pages may call the hub; every other
    /// `Origin` is refused, and CORS is answered for these alone.
    pub allowed_origins: Vec<String>,
    /// Serve the STU2 shape of Get Current Context (a bare array) at `/api/hub/{topic}`.
    pub stu2_compat: bool,
}

impl Default for HubSettings {
    fn default() -> Self {
        HubSettings {
            port: 4980,
            ack_timeout_seconds: 10,
            lease_seconds_default: 3600,
            lease_seconds_max: 86_400,
            max_body_bytes: 1024 * 1024,
            token_lifetime_seconds: 3600,
            ping_interval_seconds: 20,
            allowed_origins: Vec::new(),
            stu2_compat: false,
        }
    }
}

impl HubSettings {
    pub fn ack_timeout(&self) -> Duration {
        Duration::from_secs(self.ack_timeout_seconds)
    }

    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ping_interval_seconds)
    }

    pub fn token_lifetime(&self) -> Duration {
        Duration::from_secs(self.token_lifetime_seconds)
    }

    /// Checks values that would make the hub unusable; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let positive = [
            ("ack_timeout_seconds", self.ack_timeout_seconds),
            ("lease_seconds_default", self.lease_seconds_default),
            ("lease_seconds_max", self.lease_seconds_max),
            ("token_lifetime_seconds", self.token_lifetime_seconds),
            ("ping_interval_seconds", self.ping_interval_seconds),
            ("max_body_bytes", self.max_body_bytes as u64),
        ];
        for (key, value) in positive {
            if value == 0 {
                return Err((key, "must be greater than 0".into()));
            }
        }
        if self.lease_seconds_default > self.lease_seconds_max {
            return Err((
                "lease_seconds_default",
                format!(
                    "must not exceed lease_seconds_max ({})",
                    self.lease_seconds_max
                ),
            ));
        }
        Ok(())
    }
}
