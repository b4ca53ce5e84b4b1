//! Security and robustness: unguessable ids, no Origin bypass, endpoints that expire, and
//! abuse that harms no one else (checks 107–110).

use super::checks;
use super::confirmation::{endpoint_like, refused_connect};
use super::subscribe::endpoint_token;
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, endpoint_of};
use crate::verdict::{CheckResult, ensure};
use serde_json::json;
use std::time::Duration;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        107 => ids_unguessable,
        108 => origin_is_no_key,
        109 => unused_endpoints_expire,
        110 => abuse_harms_no_one_else,
    ]
}

fn url_safe(text: &str) -> bool {
    text.chars()
        .all(|c| c.is_ascii_alphanumeric() || "-._~".contains(c))
}

async fn ids_unguessable(probe: &Probe) -> CheckResult {
    let answer = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    let endpoint = endpoint_of(&answer)?;
    let token = endpoint_token(&endpoint);
    ensure(url_safe(token) && token.len() >= 22, || {
        format!("the endpoint token `{token}` is short or not URL-safe")
    })?;
    let topic = &probe.first.topic;
    ensure(url_safe(topic), || {
        format!("the topic `{topic}` is not URL-safe")
    })?;
    // A topic of 128 random bits takes at least 22 base64url or 32 hex characters.
    ensure(topic.chars().filter(|c| *c != '-').count() >= 22, || {
        format!("the topic `{topic}` is too short to carry 128 random bits")
    })
}

async fn origin_is_no_key(probe: &Probe) -> CheckResult {
    let made_up = endpoint_like(probe, &fhir::fresh_id().replace('-', "")).await?;
    for origin in [None, Some("http://127.0.0.1"), Some("https://evil.example")] {
        let headers: Vec<(&str, &str)> = origin.map(|o| ("Origin", o)).into_iter().collect();
        ensure(refused_connect(probe, &made_up, &headers).await, || {
            format!("a made-up endpoint was kept open with Origin {origin:?}")
        })?;
    }
    // A real endpoint works with no Origin at all (native apps send none).
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    ensure(subscription.confirmation["hub.mode"] == "subscribe", || {
        "a connect without an Origin header was not confirmed".into()
    })
}

async fn unused_endpoints_expire(probe: &Probe) -> CheckResult {
    let answer = probe
        .subscribe_request(
            &probe.first,
            &SubscribeForm {
                lease_seconds: Some("2"),
                ..SubscribeForm::events("Patient-open")
            },
        )
        .await?;
    let endpoint = endpoint_of(&answer)?;
    // The lease is only confirmed on connect; a second subscription tells what the hub grants.
    let (_, lease) = super::lifecycle::short_lease(probe).await?;
    tokio::time::sleep(Duration::from_secs(lease + 2)).await;
    ensure(refused_connect(probe, &endpoint, &[]).await, || {
        format!(
            "an endpoint never connected was still usable {} s after its {lease} s lease",
            lease + 2
        )
    })
}

async fn abuse_harms_no_one_else(probe: &Probe) -> CheckResult {
    let bystander = probe.subscribe(&probe.second, "Patient-open").await?;
    let abuser = probe.subscribe(&probe.first, "Patient-open").await?;
    abuser.send("this is not JSON {".into()).await?;
    for i in 0..500 {
        abuser
            .send(json!({ "id": format!("flood-{i}"), "status": 200 }).to_string())
            .await?;
    }
    // Oversized: a hub may close the abuser over it; that is its right.
    let _ = abuser.send("x".repeat(4 * 1024 * 1024)).await;
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    bystander
        .notification_for(&sent, probe.timing.arrival)
        .await?;
    let answer = probe
        .wire
        .get(
            &format!("{}/.well-known/fhircast-configuration", probe.hub_url),
            None,
        )
        .await?;
    ensure(answer.status == 200, || {
        format!("after the abuse, discovery answers {}", answer.status)
    })
}
