//! Re-subscribing, denial, unsubscribing and the lease (checks 39–47).

use super::confirmation::refused_connect;
use super::{checks, refused};
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, Subscription, endpoint_of, event_names};
use crate::verdict::{CheckResult, Finding, ensure};
use std::time::Duration;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        39 => resubscribe_changes_the_events,
        40 => denial_after_acceptance,
        41 => unsubscribe_accepted,
        42 => unsubscribe_denies_and_closes,
        43 => unsubscribe_needs_the_endpoint,
        44 => unsubscribe_of_a_stranger_refused,
        45 => nothing_after_unsubscribe,
        46 => new_endpoint_after_unsubscribe,
        47 => lease_ends_the_subscription,
    ]
}

/// The longest lease the checker waits out.
const LONGEST_WAITED_LEASE: u64 = 5;

async fn resubscribe_changes_the_events(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    let subscription = probe.subscribe(&probe.first, "Patient-close").await?;
    let pairs = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", probe.first.topic.as_str()),
        ("hub.events", "ImagingStudy-open"),
        ("hub.channel.endpoint", subscription.endpoint.as_str()),
    ];
    let answer = probe
        .wire
        .post_form(&probe.hub_url, Some(&probe.first.token), &pairs)
        .await?;
    ensure(answer.is_success(), || {
        format!("the re-subscription was answered {}", answer.status)
    })?;
    // A new confirmation may come; it is not an event.
    subscription.drain(probe.timing.quiet).await;
    probe.open_and_close_patient().await?;
    let (study, _) = fhir::study_context();
    let sent = probe
        .publish(&probe.second, "ImagingStudy-open", study)
        .await?;
    let frames = subscription.drain(probe.timing.settle()).await;
    let names = event_names(&frames);
    ensure(names == ["ImagingStudy-open"], || {
        format!(
            "after re-subscribing to ImagingStudy-open only, the socket got {names:?} (sent {})",
            sent["id"]
        )
    })
}

async fn denial_after_acceptance(probe: &Probe) -> CheckResult {
    let (other, answer) = super::subscribe::foreign_topic_request(probe).await?;
    if answer.status != 202 {
        return Err(Finding::not_applicable(format!(
            "the hub refuses a topic the token may not use at once ({}), so no denial follows a 202",
            answer.status
        )));
    }
    let subscription = probe.connect(&endpoint_of(&answer)?).await?;
    let first = subscription.confirmation.clone();
    ensure(
        first["hub.mode"] == "denied" && first["hub.topic"] == other.as_str(),
        || {
            format!(
                "a subscription to a topic the token may not use got {first} instead of a denial"
            )
        },
    )?;
    ensure(first["hub.events"].is_string(), || {
        "the denial has no hub.events".into()
    })?;
    subscription
        .closed_within(probe.timing.arrival)
        .await
        .map(|_| ())
        .map_err(|_| Finding::fail("the hub did not close the socket after the denial"))
}

async fn unsubscribe(
    probe: &Probe,
    subscription: &Subscription,
) -> Result<crate::wire::Answer, Finding> {
    probe
        .unsubscribe(
            &probe.first.token,
            &probe.first.topic,
            &subscription.endpoint,
        )
        .await
}

async fn unsubscribe_accepted(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let answer = unsubscribe(probe, &subscription).await?;
    ensure(answer.status == 202, || {
        format!("the unsubscribe was answered {}", answer.status)
    })?;
    let body = answer.json().unwrap_or_default();
    ensure(
        body["hub.channel.endpoint"] == subscription.endpoint.as_str(),
        || {
            format!(
                "the 202 body is `{}`, not {{\"hub.channel.endpoint\": <the endpoint>}}",
                answer.body
            )
        },
    )
}

async fn unsubscribe_denies_and_closes(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let answer = unsubscribe(probe, &subscription).await?;
    ensure(answer.is_success(), || {
        format!("the unsubscribe was answered {}", answer.status)
    })?;
    match subscription.closed_within(probe.timing.arrival).await {
        Err(frames) => Err(Finding::fail(format!(
            "the socket was not closed after the unsubscribe (frames: {frames:?})"
        ))),
        Ok((frames, _)) => ensure(frames.iter().any(|f| f["hub.mode"] == "denied"), || {
            format!("the socket closed without a denial message first (frames: {frames:?})")
        }),
    }
}

async fn unsubscribe_needs_the_endpoint(probe: &Probe) -> CheckResult {
    let pairs = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", probe.first.topic.as_str()),
    ];
    let answer = probe
        .wire
        .post_form(&probe.hub_url, Some(&probe.first.token), &pairs)
        .await?;
    refused(&answer, "an unsubscribe without hub.channel.endpoint")
}

async fn unsubscribe_of_a_stranger_refused(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let made_up =
        super::confirmation::endpoint_like(probe, &fhir::fresh_id().replace('-', "")).await?;
    let answer = probe
        .unsubscribe(&probe.first.token, &probe.first.topic, &made_up)
        .await?;
    refused(
        &answer,
        "an unsubscribe of an endpoint the hub never issued",
    )?;
    let other_topic = fhir::fresh_id();
    let answer = probe
        .unsubscribe(&probe.first.token, &other_topic, &subscription.endpoint)
        .await?;
    refused(
        &answer,
        "an unsubscribe naming another topic than the endpoint's",
    )
}

async fn nothing_after_unsubscribe(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let answer = unsubscribe(probe, &subscription).await?;
    ensure(answer.is_success(), || {
        format!("the unsubscribe was answered {}", answer.status)
    })?;
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    subscription
        .quiet(probe.timing.quiet, "the subscription was ended")
        .await?;
    ensure(
        refused_connect(probe, &subscription.endpoint, &[]).await,
        || "the old endpoint still accepts a connection after the unsubscribe".into(),
    )
}

async fn new_endpoint_after_unsubscribe(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    unsubscribe(probe, &subscription).await?;
    let again = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    let endpoint = endpoint_of(&again)?;
    ensure(endpoint != subscription.endpoint, || {
        "the fresh subscription got the old endpoint back".into()
    })
}

/// A subscription on a 2 s lease and the lease confirmed; not applicable when the hub grants
/// more than the checker waits out.
pub(super) async fn short_lease(probe: &Probe) -> Result<(Subscription, u64), Finding> {
    let form = SubscribeForm {
        lease_seconds: Some("2"),
        ..SubscribeForm::events("Patient-open")
    };
    let subscription = probe.subscribe_with(&probe.first, &form).await?;
    let lease = subscription.confirmation["hub.lease_seconds"]
        .as_u64()
        .unwrap_or(u64::MAX);
    if lease > LONGEST_WAITED_LEASE {
        return Err(Finding::not_applicable(format!(
            "asked for a 2 s lease, the hub granted {lease} s, longer than the checker waits"
        )));
    }
    Ok((subscription, lease))
}

async fn lease_ends_the_subscription(probe: &Probe) -> CheckResult {
    let (subscription, lease) = short_lease(probe).await?;
    let within = Duration::from_secs(lease + 3);
    match subscription.closed_within(within).await {
        Ok(_) => Ok(()),
        Err(_) => Err(Finding::fail(format!(
            "the socket of a {lease} s lease was still open {} s after it began",
            within.as_secs()
        ))),
    }
}
