//! The hub's tunables, as the `[hub]` table of the agent config names them.

use serde::{Deserialize, Serialize};
use std::net::IpAddr;
use std::path::PathBuf;
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

    /// Addresses to listen on. Empty (the default) is loopback only: 127.0.0.1, and ::1 where
    /// the machine has it. An address that is not loopback must be listed here explicitly, and
    /// then TLS (`tls_cert_file`, `tls_key_file`) and `host_name` are required.
    pub bind_addresses: Vec<IpAddr>,
    /// The host in `hub.url` and in every URL the hub hands out, and one more `Host` the hub
    /// answers to; 127.0.0.1 when absent. With TLS it must be a name the certificate covers.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host_name: Option<String>,
    /// PEM certificate chain (leaf first): with `tls_key_file`, the hub serves https/wss only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the certificate.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key_file: Option<PathBuf>,
    /// HTTP connections open at once (WebSockets once upgraded are counted as subscriptions
    /// instead); a connection beyond it is closed at once.
    pub max_connections: usize,
    /// Subscriptions one client may hold on a topic, pending or connected. Each WebSocket
    /// belongs to exactly one subscription, so this also caps the client's sockets.
    pub max_subscriptions_per_client: usize,
    /// Subscriptions (and so WebSockets) the hub holds in all.
    pub max_subscriptions_total: usize,
    /// Live access tokens per client; issuing one more retires that client's oldest.
    pub max_tokens_per_client: usize,
    /// Sustained requests per second one client may make; beyond it, 429 with `Retry-After`.
    /// Requests with a wrong token or secret draw on one shared allowance of the same size.
    pub requests_per_second_per_client: u32,
    /// Requests a client may make in a burst above the sustained rate.
    pub request_burst_per_client: u32,
    /// A connection must send a request's complete headers (and finish a TLS handshake)
    /// within this, and may sit idle between requests no longer (slowloris).
    pub header_read_timeout_seconds: u64,
    /// A request, body included, must be read and answered within this (408 otherwise).
    pub request_timeout_seconds: u64,
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
            bind_addresses: Vec::new(),
            host_name: None,
            tls_cert_file: None,
            tls_key_file: None,
            max_connections: 256,
            max_subscriptions_per_client: 64,
            max_subscriptions_total: 512,
            max_tokens_per_client: 64,
            requests_per_second_per_client: 200,
            request_burst_per_client: 4000,
            header_read_timeout_seconds: 10,
            request_timeout_seconds: 30,
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

    pub fn header_read_timeout(&self) -> Duration {
        Duration::from_secs(self.header_read_timeout_seconds)
    }

    pub fn request_timeout(&self) -> Duration {
        Duration::from_secs(self.request_timeout_seconds)
    }

    /// Whether the hub serves TLS (https and wss) rather than plain http and ws.
    pub fn tls_enabled(&self) -> bool {
        self.tls_cert_file.is_some() || self.tls_key_file.is_some()
    }

    /// The host in every URL the hub hands out.
    pub fn host(&self) -> &str {
        self.host_name.as_deref().unwrap_or("127.0.0.1")
    }

    /// The addresses to listen on: those configured, or loopback.
    pub fn listen_addresses(&self) -> Vec<IpAddr> {
        if self.bind_addresses.is_empty() {
            vec![
                IpAddr::from(std::net::Ipv4Addr::LOCALHOST),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ]
        } else {
            self.bind_addresses.clone()
        }
    }

    /// The configured addresses that reach beyond this machine.
    pub fn non_loopback_addresses(&self) -> Vec<IpAddr> {
        self.bind_addresses
            .iter()
            .copied()
            .filter(|a| !a.is_loopback())
            .collect()
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
            ("max_connections", self.max_connections as u64),
            (
                "max_subscriptions_per_client",
                self.max_subscriptions_per_client as u64,
            ),
            (
                "max_subscriptions_total",
                self.max_subscriptions_total as u64,
            ),
            ("max_tokens_per_client", self.max_tokens_per_client as u64),
            (
                "requests_per_second_per_client",
                u64::from(self.requests_per_second_per_client),
            ),
            (
                "request_burst_per_client",
                u64::from(self.request_burst_per_client),
            ),
            (
                "header_read_timeout_seconds",
                self.header_read_timeout_seconds,
            ),
            ("request_timeout_seconds", self.request_timeout_seconds),
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
        for origin in &self.allowed_origins {
            check_origin(origin).map_err(|reason| ("allowed_origins", reason))?;
        }
        if let Some(host) = &self.host_name
            && !is_host_name(host)
        {
            return Err((
                "host_name",
                format!("`{host}` is not a host name or IP address (no scheme, port or path)"),
            ));
        }
        match (&self.tls_cert_file, &self.tls_key_file) {
            (Some(_), None) => {
                return Err(("tls_key_file", "missing: tls_cert_file needs it".into()));
            }
            (None, Some(_)) => {
                return Err(("tls_cert_file", "missing: tls_key_file needs it".into()));
            }
            _ => {}
        }
        // Beyond loopback, anyone on the network could read PHI off the wire or pose as the
        // hub: that is only allowed when asked for explicitly, and over TLS.
        if let Some(address) = self.non_loopback_addresses().first() {
            if !self.tls_enabled() {
                return Err((
                    "bind_addresses",
                    format!(
                        "{address} is not a loopback address: listening beyond this machine \
                         requires TLS (set tls_cert_file and tls_key_file)"
                    ),
                ));
            }
            if self.host_name.is_none() {
                return Err((
                    "host_name",
                    format!(
                        "missing: listening on {address} needs the name apps use to reach the \
                         hub (the one the TLS certificate names)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// A web origin as browsers send it: `scheme://host[:port]`, nothing else. `*` and `null`
/// (sandboxed frames, `file:` pages) would let any page in.
fn check_origin(origin: &str) -> Result<(), String> {
    let refuse = |why: &str| Err(format!("`{origin}`: {why}"));
    if origin == "*" || origin.eq_ignore_ascii_case("null") {
        return refuse("a wildcard or `null` origin would admit any web page; name each origin");
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return refuse("expected scheme://host[:port], e.g. http://localhost:3000");
    };
    if !matches!(scheme, "http" | "https") || rest.is_empty() || rest.contains(['/', '?', '#']) {
        return refuse("expected scheme://host[:port] with scheme http or https and no path");
    }
    Ok(())
}

fn is_host_name(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return inner.parse::<std::net::Ipv6Addr>().is_ok();
    }
    !host.is_empty()
        && host.len() <= 253
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused_key(settings: HubSettings) -> &'static str {
        settings.validate().expect_err("should be refused").0
    }

    #[test]
    fn defaults_are_valid_and_loopback_only() {
        let settings = HubSettings::default();
        settings.validate().unwrap();
        assert!(settings.listen_addresses().iter().all(IpAddr::is_loopback));
        assert!(!settings.tls_enabled());
    }

    #[test]
    fn non_loopback_needs_tls_and_a_host_name() {
        let open = HubSettings {
            bind_addresses: vec!["0.0.0.0".parse().unwrap()],
            ..Default::default()
        };
        assert_eq!(refused_key(open.clone()), "bind_addresses");
        let with_tls = HubSettings {
            tls_cert_file: Some("cert.pem".into()),
            tls_key_file: Some("key.pem".into()),
            ..open
        };
        assert_eq!(refused_key(with_tls.clone()), "host_name");
        HubSettings {
            host_name: Some("ws01.example.org".into()),
            ..with_tls
        }
        .validate()
        .unwrap();
        // Loopback addresses listed explicitly need nothing more.
        HubSettings {
            bind_addresses: vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()],
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn half_a_tls_configuration_is_refused() {
        let cert_only = HubSettings {
            tls_cert_file: Some("cert.pem".into()),
            ..Default::default()
        };
        assert_eq!(refused_key(cert_only), "tls_key_file");
    }

    #[test]
    fn wildcard_null_and_malformed_origins_are_refused() {
        for origin in [
            "*",
            "null",
            "localhost:3000",
            "http://localhost:3000/app",
            "file://",
        ] {
            let settings = HubSettings {
                allowed_origins: vec![origin.into()],
                ..Default::default()
            };
            assert_eq!(refused_key(settings), "allowed_origins", "{origin}");
        }
        HubSettings {
            allowed_origins: vec![
                "http://localhost:3000".into(),
                "https://viewer.example".into(),
            ],
            ..Default::default()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn limits_must_be_positive() {
        let settings = HubSettings {
            requests_per_second_per_client: 0,
            ..Default::default()
        };
        assert_eq!(refused_key(settings), "requests_per_second_per_client");
    }
}
