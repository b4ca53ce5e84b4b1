//! TLS for the hub (https and wss): a rustls server configuration read from PEM files.
//!
//! rustls with the ring provider, because reqwest already brings both into the build (no C
//! toolchain beyond what ring needs, no second crypto library). HTTP/1.1 is the only protocol
//! offered by ALPN: WebSocket upgrades and the header timeouts are HTTP/1.1 mechanisms.

use crate::settings::HubSettings;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::{self, ServerConfig};

/// Why the TLS configuration could not be loaded; each names the setting and file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS is not configured: set hub.tls_cert_file and hub.tls_key_file")]
    NotConfigured,
    #[error("hub.tls_cert_file {}: {source}", .path.display())]
    Certificate { path: PathBuf, source: pem::Error },
    #[error("hub.tls_key_file {}: {source}", .path.display())]
    Key { path: PathBuf, source: pem::Error },
    #[error("the TLS certificate and key cannot be used together: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A loaded certificate and key, ready to accept TLS connections. Cheap to clone.
#[derive(Clone)]
pub struct TlsConfig {
    acceptor: TlsAcceptor,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print key material.
        f.write_str("TlsConfig { .. }")
    }
}

impl TlsConfig {
    /// Loads `hub.tls_cert_file` and `hub.tls_key_file`.
    pub fn load(settings: &HubSettings) -> Result<Self, TlsError> {
        match (&settings.tls_cert_file, &settings.tls_key_file) {
            (Some(cert), Some(key)) => Self::from_pem_files(cert, key),
            _ => Err(TlsError::NotConfigured),
        }
    }

    /// Reads a PEM certificate chain (leaf first) and its PEM private key.
    pub fn from_pem_files(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = CertificateDer::pem_file_iter(cert)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .and_then(|chain| {
                if chain.is_empty() {
                    Err(pem::Error::NoItemsFound)
                } else {
                    Ok(chain)
                }
            })
            .map_err(|source| TlsError::Certificate {
                path: cert.to_owned(),
                source,
            })?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|source| TlsError::Key {
            path: key.to_owned(),
            source,
        })?;
        Self::from_der(chain, key)
    }

    fn from_der(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Self, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_single_cert(chain, key)?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsConfig {
            acceptor: TlsAcceptor::from(Arc::new(config)),
        })
    }

    pub(crate) fn acceptor(&self) -> &TlsAcceptor {
        &self.acceptor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_name_the_setting_and_the_file() {
        let dir = std::env::temp_dir();
        let missing = dir.join("lockstep-no-such-cert.pem");
        let err = TlsConfig::from_pem_files(&missing, &missing).unwrap_err();
        assert!(err.to_string().starts_with("hub.tls_cert_file"), "{err}");
        assert!(
            err.to_string().contains("lockstep-no-such-cert.pem"),
            "{err}"
        );

        let empty = tempfile_with(b"not a certificate\n");
        let err = TlsConfig::from_pem_files(&empty, &missing).unwrap_err();
        assert!(matches!(err, TlsError::Certificate { .. }), "{err}");
        assert!(matches!(
            TlsConfig::load(&HubSettings::default()),
            Err(TlsError::NotConfigured)
        ));
    }

    fn tempfile_with(bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "lockstep-tls-test-{}-{:?}.pem",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, bytes).unwrap();
        path
    }
}
