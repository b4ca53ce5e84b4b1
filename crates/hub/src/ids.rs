//! Unguessable identifiers: topics, channel endpoints, tokens, version ids.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// 256 bits from the operating system's CSPRNG, URL-safe: well above the 128 bits the spec's
/// security notes ask for topics and endpoints, and never derived from user or patient data.
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 32];
    // The OS generator failing is not something to limp on with weaker randomness.
    getrandom::fill(&mut bytes).expect("the operating system's random number generator failed");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A unique id for hub-generated events and versions.
pub(crate) fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn tokens_are_long_distinct_and_url_safe() {
        let a = super::random_token();
        let b = super::random_token();
        assert_ne!(a, b);
        assert_eq!(a.len(), 43);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }
}
