//! Where the hub listens: loopback by default; any other address only when the configuration
//! names it, and then only over TLS.
//!
//! A hub on a network address relays PHI to, and takes patient changes from, whoever can reach
//! that address. That is never a default and never happens without TLS: the agent refuses to
//! start rather than listen in the clear, even if the configuration was not validated first.

use lockstep_hub::{HubSettings, TlsConfig, TlsError};
use std::net::{IpAddr, SocketAddr};
use tokio::net::TcpListener;

/// Why the hub could not listen.
#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    #[error("cannot listen on {address}: {source} (is another Lockstep running? set [hub] port)")]
    Bind {
        address: SocketAddr,
        source: std::io::Error,
    },
    #[error(
        "refusing to listen on {address}: it is not a loopback address, and listening beyond \
         this machine requires TLS (set hub.tls_cert_file and hub.tls_key_file)"
    )]
    NeedsTls { address: IpAddr },
    #[error(
        "refusing to listen on {address}: set hub.host_name to the name apps use to reach this \
         machine (the name the TLS certificate carries)"
    )]
    NeedsHostName { address: IpAddr },
    #[error("cannot set up TLS: {0}")]
    Tls(#[from] TlsError),
}

/// Listeners ready to serve, all on one port, and the TLS configuration to serve them with.
#[derive(Debug)]
pub struct Bound {
    pub listeners: Vec<TcpListener>,
    pub port: u16,
    pub tls: Option<TlsConfig>,
}

/// Binds what `settings` asks for: 127.0.0.1 (and ::1 where the machine has it) when
/// `hub.bind_addresses` is empty, else exactly the configured addresses on one port.
pub async fn bind(settings: &HubSettings) -> Result<Bound, ListenError> {
    check(settings)?;
    // Loaded before binding, so a wrong certificate path stops the start with its own error.
    let tls = if settings.tls_enabled() {
        Some(TlsConfig::load(settings)?)
    } else {
        None
    };
    let addresses = settings.listen_addresses();
    // Loopback on its own: ::1 is a bonus where the machine has IPv6 loopback.
    let optional_after_first = settings.bind_addresses.is_empty();
    let mut listeners = Vec::new();
    let mut port = settings.port;
    // On a multi-session host another user's agent may hold the configured port: this user's
    // agent then takes a free one (the discovery file names it). Its own user's agent holding
    // it stays an error: one agent per user.
    if optional_after_first
        && port != 0
        && let Some(owner) = lockstep_hub::peer::listener_owner(port)
        && lockstep_hub::peer::own_user().is_some_and(|me| me != owner)
    {
        tracing::warn!(
            "port {port} is another user's agent (uid {owner}): this user's hub takes a free port instead"
        );
        port = 0;
    }
    for (i, ip) in addresses.into_iter().enumerate() {
        let address = SocketAddr::new(ip, port);
        match TcpListener::bind(address).await {
            Ok(listener) => {
                if i == 0 {
                    // Port 0 picks a free port; every other address shares it.
                    port = listener
                        .local_addr()
                        .map_err(|source| ListenError::Bind { address, source })?
                        .port();
                }
                listeners.push(listener);
            }
            Err(e) if i > 0 && optional_after_first => {
                tracing::debug!("not listening on {address}: {e}");
            }
            Err(source) => return Err(ListenError::Bind { address, source }),
        }
    }
    for listener in &listeners {
        if let Ok(address) = listener.local_addr() {
            let scheme = if tls.is_some() { "https" } else { "http" };
            tracing::info!("listening on {scheme}://{address}");
        }
    }
    Ok(Bound {
        listeners,
        port,
        tls,
    })
}

/// Refuses a non-loopback address without TLS and a host name, whatever validation ran before.
fn check(settings: &HubSettings) -> Result<(), ListenError> {
    if let Some(&address) = settings.non_loopback_addresses().first() {
        if !settings.tls_enabled() {
            return Err(ListenError::NeedsTls { address });
        }
        if settings.host_name.is_none() {
            return Err(ListenError::NeedsHostName { address });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn loopback_by_default_on_one_port() {
        let settings = HubSettings {
            port: 0,
            ..Default::default()
        };
        let bound = bind(&settings).await.unwrap();
        assert!(bound.port != 0);
        assert!(bound.tls.is_none());
        for listener in &bound.listeners {
            let address = listener.local_addr().unwrap();
            assert!(address.ip().is_loopback(), "{address}");
            assert_eq!(address.port(), bound.port);
        }
    }

    #[tokio::test]
    async fn a_network_address_without_tls_is_refused_before_binding() {
        for address in ["0.0.0.0", "::", "192.0.2.10"] {
            let settings = HubSettings {
                port: 0,
                bind_addresses: vec![address.parse().unwrap()],
                ..Default::default()
            };
            let err = bind(&settings).await.unwrap_err();
            assert!(
                matches!(err, ListenError::NeedsTls { .. }),
                "{address}: {err}"
            );
            assert!(err.to_string().contains("requires TLS"), "{err}");
        }
        // With TLS configured but no host name, still refused, naming what is missing.
        let settings = HubSettings {
            port: 0,
            bind_addresses: vec!["0.0.0.0".parse().unwrap()],
            tls_cert_file: Some("cert.pem".into()),
            tls_key_file: Some("key.pem".into()),
            ..Default::default()
        };
        let err = bind(&settings).await.unwrap_err();
        assert!(err.to_string().contains("hub.host_name"), "{err}");
    }

    #[tokio::test]
    async fn explicit_loopback_addresses_need_no_tls_and_all_must_bind() {
        let settings = HubSettings {
            port: 0,
            bind_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        let bound = bind(&settings).await.unwrap();
        assert_eq!(bound.listeners.len(), 1);
        // A configured address that cannot be bound is an error, not a silent skip.
        let taken = HubSettings {
            port: bound.port,
            bind_addresses: vec!["127.0.0.1".parse().unwrap()],
            ..Default::default()
        };
        assert!(matches!(
            bind(&taken).await.unwrap_err(),
            ListenError::Bind { .. }
        ));
    }

    #[tokio::test]
    async fn a_missing_certificate_stops_the_start() {
        let settings = HubSettings {
            port: 0,
            tls_cert_file: Some("/nonexistent/cert.pem".into()),
            tls_key_file: Some("/nonexistent/key.pem".into()),
            ..Default::default()
        };
        let err = bind(&settings).await.unwrap_err();
        assert!(err.to_string().contains("hub.tls_cert_file"), "{err}");
    }
}
