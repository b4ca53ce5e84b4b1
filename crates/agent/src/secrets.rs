//! Client secrets kept outside the config file: the OS keyring in production, memory in tests.

use std::collections::HashMap;
use std::sync::Mutex;

/// A store of named secrets.
pub trait SecretStore: Send + Sync {
    fn get(&self, name: &str) -> Result<Option<String>, SecretError>;
    fn set(&self, name: &str, secret: &str) -> Result<(), SecretError>;
    fn delete(&self, name: &str) -> Result<(), SecretError>;
}

#[derive(Debug, thiserror::Error)]
#[error("the OS keyring failed: {0}")]
pub struct SecretError(pub String);

/// The OS keyring: Secret Service on Linux, Credential Manager on Windows, Keychain on macOS.
/// Entries live under the service name of the bundle identifier.
pub struct KeyringStore;

impl KeyringStore {
    fn entry(name: &str) -> Result<keyring::Entry, SecretError> {
        keyring::Entry::new(crate::paths::IDENTIFIER, name).map_err(|e| SecretError(e.to_string()))
    }
}

impl SecretStore for KeyringStore {
    fn get(&self, name: &str) -> Result<Option<String>, SecretError> {
        match Self::entry(name)?.get_password() {
            Ok(secret) => Ok(Some(secret)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(SecretError(e.to_string())),
        }
    }

    fn set(&self, name: &str, secret: &str) -> Result<(), SecretError> {
        Self::entry(name)?
            .set_password(secret)
            .map_err(|e| SecretError(e.to_string()))
    }

    fn delete(&self, name: &str) -> Result<(), SecretError> {
        match Self::entry(name)?.delete_credential() {
            Ok(()) | Err(keyring::Error::NoEntry) => Ok(()),
            Err(e) => Err(SecretError(e.to_string())),
        }
    }
}

/// Secrets in memory, for tests and for runs that must not touch the OS keyring.
#[derive(Default)]
pub struct MemoryStore {
    secrets: Mutex<HashMap<String, String>>,
}

impl SecretStore for MemoryStore {
    fn get(&self, name: &str) -> Result<Option<String>, SecretError> {
        Ok(self.secrets.lock().map_err(poisoned)?.get(name).cloned())
    }

    fn set(&self, name: &str, secret: &str) -> Result<(), SecretError> {
        self.secrets
            .lock()
            .map_err(poisoned)?
            .insert(name.to_owned(), secret.to_owned());
        Ok(())
    }

    fn delete(&self, name: &str) -> Result<(), SecretError> {
        self.secrets.lock().map_err(poisoned)?.remove(name);
        Ok(())
    }
}

fn poisoned<T>(_: T) -> SecretError {
    SecretError("the in-memory secret store was poisoned".into())
}
