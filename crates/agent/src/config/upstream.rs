//! `[upstream]`: the site's hub (the EHR's or the reporting system's) that the workstation's
//! session follows, through the enterprise link.

use serde::{Deserialize, Serialize};
use std::fmt;

/// The scopes asked for when the site names none.
pub const DEFAULT_SCOPES: &str = "openid fhircast/*.read fhircast/*.write";

#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UpstreamConfig {
    /// The site's FHIR server (SMART discovery at `{issuer}/.well-known/smart-configuration`);
    /// no link without it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Lockstep's client id at the site's authorization server.
    pub client_id: String,
    /// The client secret itself (a kiosk's or a service's: `client_credentials`) ...
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<String>,
    /// ... or the name of the OS keyring entry that holds it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret_key: Option<String>,
    /// The scopes asked for (space-separated).
    pub scopes: String,
    /// The hub's URL, only where the token response carries no `hub.url`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hub_url: Option<String>,
    /// The session's topic, only where the token response carries no `hub.topic`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// What a change requested here does while the site's hub cannot be reached.
    pub when_down: WhenDown,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        UpstreamConfig {
            issuer: None,
            client_id: "lockstep".into(),
            client_secret: None,
            client_secret_key: None,
            scopes: DEFAULT_SCOPES.into(),
            hub_url: None,
            topic: None,
            when_down: WhenDown::Refuse,
        }
    }
}

// Hand-written so that a `{:?}` of the configuration never prints the secret.
impl fmt::Debug for UpstreamConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field(
                "client_secret",
                &self.client_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("client_secret_key", &self.client_secret_key)
            .field("scopes", &self.scopes)
            .field("hub_url", &self.hub_url)
            .field("topic", &self.topic)
            .field("when_down", &self.when_down)
            .finish()
    }
}

/// `upstream.when_down`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WhenDown {
    /// Refused (503, saying why): the workstation never shows what the site's session does not.
    #[default]
    Refuse,
    /// Kept on this workstation only, and marked so in the window until the link is back.
    KeepLocal,
}

impl UpstreamConfig {
    /// Whether the workstation follows a site's hub at all.
    pub fn is_on(&self) -> bool {
        self.issuer.is_some()
    }

    /// The site's name for the tray and the history: the issuer's host.
    pub fn site_name(&self) -> String {
        let issuer = self.issuer.as_deref().unwrap_or_default();
        reqwest::Url::parse(issuer)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .unwrap_or_else(|| issuer.to_owned())
    }

    /// `(key, reason)` for the first thing wrong.
    pub(super) fn validate(&self) -> Result<(), (&'static str, String)> {
        let Some(issuer) = &self.issuer else {
            return Ok(());
        };
        checked_url(issuer).map_err(|why| ("issuer", why))?;
        if let Some(url) = &self.hub_url {
            checked_url(url).map_err(|why| ("hub_url", why))?;
        }
        if self.client_id.trim().is_empty() {
            return Err(("client_id", "must not be empty".into()));
        }
        match (&self.client_secret, &self.client_secret_key) {
            (Some(_), Some(_)) => {
                return Err((
                    "client_secret",
                    "give client_secret or client_secret_key, not both".into(),
                ));
            }
            (Some(secret), None) if secret.len() < 8 => {
                return Err(("client_secret", "must be at least 8 characters".into()));
            }
            _ => {}
        }
        if self.scopes.split_whitespace().next().is_none() {
            return Err((
                "scopes",
                format!("must not be empty, e.g. \"{DEFAULT_SCOPES}\""),
            ));
        }
        if self.topic.as_deref().is_some_and(|t| t.trim().is_empty()) {
            return Err(("topic", "must not be empty".into()));
        }
        Ok(())
    }
}

/// An https URL, or http to this machine only (a hub on the same workstation, a test).
pub(super) fn checked_url(text: &str) -> Result<(), String> {
    let url = reqwest::Url::parse(text).map_err(|e| format!("`{text}` is not a URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        "http" => Err(format!(
            "`{text}`: use https (http only to this machine's loopback)"
        )),
        other => Err(format!("`{text}`: `{other}` is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(issuer: &str) -> UpstreamConfig {
        UpstreamConfig {
            issuer: Some(issuer.into()),
            ..Default::default()
        }
    }

    #[test]
    fn the_link_is_off_without_an_issuer() {
        assert!(!UpstreamConfig::default().is_on());
        assert!(UpstreamConfig::default().validate().is_ok());
    }

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(with("https://ehr.example.org/fhir").validate().is_ok());
        assert!(with("http://127.0.0.1:4990").validate().is_ok());
        assert!(with("http://localhost:4990").validate().is_ok());
        let (key, why) = with("http://ehr.example.org/fhir").validate().unwrap_err();
        assert_eq!(key, "issuer");
        assert!(why.contains("use https"), "{why}");
        assert_eq!(with("ehr.example.org").validate().unwrap_err().0, "issuer");
        assert_eq!(
            with("ftp://ehr.example.org").validate().unwrap_err().0,
            "issuer"
        );
    }

    #[test]
    fn secrets_scopes_and_overrides_are_checked() {
        let both = UpstreamConfig {
            client_secret: Some("long-enough-secret".into()),
            client_secret_key: Some("upstream".into()),
            ..with("https://ehr.example.org")
        };
        assert_eq!(both.validate().unwrap_err().0, "client_secret");
        let short = UpstreamConfig {
            client_secret: Some("short".into()),
            ..with("https://ehr.example.org")
        };
        assert_eq!(short.validate().unwrap_err().0, "client_secret");
        let no_scopes = UpstreamConfig {
            scopes: "  ".into(),
            ..with("https://ehr.example.org")
        };
        assert_eq!(no_scopes.validate().unwrap_err().0, "scopes");
        let hub = UpstreamConfig {
            hub_url: Some("http://ehr.example.org/hub".into()),
            ..with("https://ehr.example.org")
        };
        assert_eq!(hub.validate().unwrap_err().0, "hub_url");
    }

    #[test]
    fn the_site_is_named_by_the_issuer_s_host_and_the_secret_never_printed() {
        let config = UpstreamConfig {
            client_secret: Some("do-not-print-me".into()),
            ..with("https://ehr.example.org/fhir")
        };
        assert_eq!(config.site_name(), "ehr.example.org");
        assert!(!format!("{config:?}").contains("do-not-print-me"));
    }
}
