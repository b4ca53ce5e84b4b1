//! Subscribing: the request, its answer, and the refusals a hub owes to bad requests
//! (checks 12–28).

use super::{checks, refused};
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, endpoint_of, event_of};
use crate::verdict::{CheckResult, Finding, ensure};
use crate::wire::Answer;
use serde_json::json;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        12 => accepted,
        13 => answer_names_the_endpoint,
        14 => endpoints_are_distinct_and_random,
        15 => channel_type_required,
        16 => only_websocket,
        17 => mode_required,
        18 => topic_required,
        19 => events_required,
        20 => no_repeated_parameters,
        21 => refusals_say_why,
        22 => token_required,
        23 => read_scope_required,
        24 => own_topic_only,
        25 => duplicate_event_granted_once,
        26 => event_names_case_insensitive,
        27 => lease_within_the_token,
        28 => subscriber_name_accepted,
    ]
}

async fn accepted(probe: &Probe) -> CheckResult {
    let answer = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    ensure(answer.status == 202, || {
        format!("answered {}", answer.status)
    })
}

async fn answer_names_the_endpoint(probe: &Probe) -> CheckResult {
    let answer = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    endpoint_of(&answer)?;
    ensure(answer.media_type() == "application/json", || {
        format!("Content-Type is `{}`", answer.content_type)
    })
}

/// Bits of randomness a token of this length can carry at most, from its alphabet.
fn capacity_bits(token: &str) -> f64 {
    let hex = token.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
    let alphabet: f64 = if hex { 16.0 } else { 64.0 };
    let symbols = token.chars().filter(|c| *c != '-').count() as f64;
    let bits = symbols * alphabet.log2();
    // A UUID spends 6 of its 128 bits on version and variant.
    if hex && token.len() == 36 && token.matches('-').count() == 4 {
        bits - 6.0
    } else {
        bits
    }
}

/// The part of an endpoint URL that makes it unique (its last non-empty path segment).
pub(super) fn endpoint_token(endpoint: &str) -> &str {
    endpoint
        .split(['?', '#'])
        .next()
        .unwrap_or_default()
        .rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or_default()
}

async fn endpoints_are_distinct_and_random(probe: &Probe) -> CheckResult {
    let mut endpoints = Vec::new();
    for _ in 0..3 {
        let answer = probe
            .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
            .await?;
        endpoints.push(endpoint_of(&answer)?);
    }
    let mut distinct = endpoints.clone();
    distinct.sort();
    distinct.dedup();
    ensure(distinct.len() == endpoints.len(), || {
        format!("three subscriptions got {endpoints:?}")
    })?;
    for endpoint in &endpoints {
        let token = endpoint_token(endpoint);
        let bits = capacity_bits(token);
        ensure(bits >= 120.0, || {
            format!(
                "the endpoint token `{token}` can carry at most {bits:.0} random bits (128 needed)"
            )
        })?;
    }
    Ok(())
}

/// A subscription request with exactly `pairs` (and the first client's token).
async fn raw(probe: &Probe, pairs: &[(&str, &str)]) -> Result<Answer, Finding> {
    probe
        .wire
        .post_form(&probe.hub_url, Some(&probe.first.token), pairs)
        .await
}

async fn channel_type_required(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let answer = raw(
        probe,
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.events", "Patient-open"),
        ],
    )
    .await?;
    refused(&answer, "a subscription without hub.channel.type")
}

async fn only_websocket(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    for channel in ["webhook", "sse"] {
        let answer = raw(
            probe,
            &[
                ("hub.channel.type", channel),
                ("hub.mode", "subscribe"),
                ("hub.topic", topic),
                ("hub.events", "Patient-open"),
                ("hub.callback", "https://example.invalid/callback"),
            ],
        )
        .await?;
        refused(&answer, &format!("hub.channel.type={channel}"))?;
    }
    Ok(())
}

async fn mode_required(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let base = [
        ("hub.channel.type", "websocket"),
        ("hub.topic", topic),
        ("hub.events", "Patient-open"),
    ];
    refused(&raw(probe, &base).await?, "a request without hub.mode")?;
    let mut bogus = base.to_vec();
    bogus.push(("hub.mode", "subscribe-please"));
    refused(&raw(probe, &bogus).await?, "hub.mode=subscribe-please")
}

async fn topic_required(probe: &Probe) -> CheckResult {
    let answer = raw(
        probe,
        &[
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.events", "Patient-open"),
        ],
    )
    .await?;
    refused(&answer, "a subscription without hub.topic")
}

async fn events_required(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let base = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
    ];
    refused(
        &raw(probe, &base).await?,
        "a subscription without hub.events",
    )?;
    let mut empty = base.to_vec();
    empty.push(("hub.events", ""));
    refused(
        &raw(probe, &empty).await?,
        "a subscription with an empty hub.events",
    )
}

async fn no_repeated_parameters(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let answer = raw(
        probe,
        &[
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.topic", topic),
            ("hub.events", "Patient-open"),
        ],
    )
    .await?;
    refused(&answer, "a subscription naming hub.topic twice")
}

async fn refusals_say_why(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let bad: [&[(&str, &str)]; 3] = [
        &[
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.events", "Patient-open"),
        ],
        &[
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.events", "Patient-open"),
        ],
        &[
            ("hub.channel.type", "websocket"),
            ("hub.mode", "unsubscribe"),
            ("hub.topic", topic),
        ],
    ];
    for pairs in bad {
        let answer = raw(probe, pairs).await?;
        if answer.status < 400 {
            continue; // checks 15, 18 and 43 report that
        }
        ensure(!answer.body.trim().is_empty(), || {
            format!("a {} came with an empty body", answer.status)
        })?;
        ensure(answer.media_type() == "text/plain", || {
            format!(
                "a {} came as `{}`, not plain text",
                answer.status, answer.content_type
            )
        })?;
    }
    Ok(())
}

async fn token_required(probe: &Probe) -> CheckResult {
    let topic = probe.first.topic.as_str();
    let pairs = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.events", "Patient-open"),
    ];
    for (bearer, what) in [(None, "no token"), (Some("not-a-token"), "a made-up token")] {
        let answer = probe.wire.post_form(&probe.hub_url, bearer, &pairs).await?;
        ensure(answer.status == 401, || {
            format!("a subscription with {what} was answered {}", answer.status)
        })?;
        ensure(!answer.body.contains("hub.channel.endpoint"), || {
            format!("a subscription with {what} was issued an endpoint")
        })?;
    }
    Ok(())
}

async fn read_scope_required(probe: &Probe) -> CheckResult {
    let narrow = probe.narrowed("fhircast/Patient-open.read").await?;
    let answer = probe
        .subscribe_request(
            &narrow,
            &SubscribeForm::events("Patient-open,ImagingStudy-open"),
        )
        .await?;
    if answer.is_client_error() {
        return Ok(());
    }
    let endpoint = endpoint_of(&answer)?;
    let subscription = probe.connect(&endpoint).await?;
    let confirmation = &subscription.confirmation;
    if confirmation["hub.mode"] == "denied" {
        return Ok(());
    }
    let granted = confirmation["hub.events"].as_str().unwrap_or_default();
    ensure(
        !granted
            .split(',')
            .any(|e| e.trim().eq_ignore_ascii_case("ImagingStudy-open")),
        || format!("a token with only fhircast/Patient-open.read was granted `{granted}`"),
    )
}

/// A Patient-open subscription request for a made-up topic the token is not bound to; the
/// topic and the answer.
pub(super) async fn foreign_topic_request(probe: &Probe) -> Result<(String, Answer), Finding> {
    let other = fhir::fresh_id();
    let form = SubscribeForm {
        topic: Some(&other),
        ..SubscribeForm::events("Patient-open")
    };
    let answer = probe.subscribe_request(&probe.first, &form).await?;
    Ok((other, answer))
}

async fn own_topic_only(probe: &Probe) -> CheckResult {
    let (_, answer) = foreign_topic_request(probe).await?;
    ensure(matches!(answer.status, 403 | 404), || {
        format!(
            "a subscription to a topic the token is not bound to was answered {}",
            answer.status
        )
    })
}

async fn duplicate_event_granted_once(probe: &Probe) -> CheckResult {
    let subscription = probe
        .subscribe(&probe.first, "Patient-open,Patient-open")
        .await?;
    let granted = subscription.confirmation["hub.events"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let count = granted
        .split(',')
        .filter(|e| e.trim().eq_ignore_ascii_case("Patient-open"))
        .count();
    ensure(count == 1, || {
        format!("`Patient-open,Patient-open` was granted as `{granted}`")
    })?;
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frames = subscription
        .drain(probe.timing.quiet.max(probe.timing.arrival / 5))
        .await;
    let copies = frames.iter().filter(|f| f["id"] == sent["id"]).count();
    ensure(copies == 1, || {
        format!("one Patient-open arrived {copies} times")
    })
}

async fn event_names_case_insensitive(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "patient-open").await?;
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frame = subscription
        .notification(probe.timing.arrival, "the Patient-open notification")
        .await?;
    ensure(
        frame["id"] == sent["id"] && event_of(&frame) == "Patient-open",
        || format!("expected the Patient-open {}, got {frame}", sent["id"]),
    )
}

async fn lease_within_the_token(probe: &Probe) -> CheckResult {
    let Some(lifetime) = probe.first.expires_in else {
        return Err(Finding::not_applicable(
            "the token's lifetime is not known (no expires_in)",
        ));
    };
    let subscription = probe
        .subscribe_with(
            &probe.first,
            &SubscribeForm {
                lease_seconds: Some("31536000"),
                ..SubscribeForm::events("Patient-open")
            },
        )
        .await?;
    let lease = subscription.confirmation["hub.lease_seconds"].as_u64();
    ensure(lease.is_some_and(|l| l <= lifetime), || {
        format!("a token valid for {lifetime} s got a confirmed lease of {lease:?} s")
    })
}

async fn subscriber_name_accepted(probe: &Probe) -> CheckResult {
    probe.require_events(&["SyncError"])?;
    let watcher = probe.subscribe(&probe.second, "SyncError").await?;
    let name = format!("conformance checker {}", &fhir::fresh_id()[..8]);
    let refuser = probe
        .subscribe_with(
            &probe.first,
            &SubscribeForm {
                name: Some(&name),
                ..SubscribeForm::events("Patient-open")
            },
        )
        .await?;
    ensure(refuser.confirmation["hub.mode"] == "subscribe", || {
        format!(
            "a subscription with subscriber.name was not confirmed: {}",
            refuser.confirmation
        )
    })?;
    refuser.answer_myself().await;
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frame = refuser
        .notification(probe.timing.arrival, "the Patient-open")
        .await?;
    refuser
        .answer(frame["id"].as_str().unwrap_or_default(), json!(409))
        .await?;
    let error = watcher
        .notification_of("SyncError", probe.timing.arrival)
        .await?;
    let text = error.to_string();
    ensure(text.contains(&name), || {
        format!(
            "the SyncError about {} does not name `{name}`: {text}",
            sent["id"]
        )
    })
}
