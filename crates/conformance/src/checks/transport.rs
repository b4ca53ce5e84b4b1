//! Transport: HTTPS and WSS only (checks 10–11).

use super::checks;
use crate::probe::{Probe, endpoint_of};
use crate::verdict::{CheckResult, ensure};

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        10 => https_only,
        11 => wss_endpoints,
    ]
}

async fn https_only(probe: &Probe) -> CheckResult {
    ensure(probe.hub_url.starts_with("https://"), || {
        format!("hub.url is {}; every endpoint must be HTTPS", probe.hub_url)
    })?;
    // The same address over plain HTTP must not serve the hub.
    let plain = probe.hub_url.replacen("https://", "http://", 1);
    let answer = probe
        .wire
        .get(&format!("{plain}/.well-known/fhircast-configuration"), None)
        .await;
    ensure(!answer.as_ref().is_ok_and(|a| a.is_success()), || {
        format!("{plain} serves the hub over plain HTTP too")
    })
}

async fn wss_endpoints(probe: &Probe) -> CheckResult {
    let answer = probe
        .subscribe_request(
            &probe.first,
            &crate::probe::SubscribeForm::events("Patient-open"),
        )
        .await?;
    let endpoint = endpoint_of(&answer)?;
    ensure(endpoint.starts_with("wss://"), || {
        format!("hub.channel.endpoint is {endpoint}")
    })
}
