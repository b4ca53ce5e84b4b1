//! The confirmation frame, connecting to endpoints, and the replay of the current context to a
//! new subscriber (checks 29–38).

use super::checks;
use super::subscribe::endpoint_token;
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, endpoint_of, event_of};
use crate::verdict::{CheckResult, Finding, ensure};
use crate::wire::Arrival;
use serde_json::Value;
use std::time::Duration;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        29 => confirmation_first,
        30 => confirmation_matches_the_request,
        31 => no_stu2_leftovers,
        32 => unknown_endpoint_refused,
        33 => one_socket_per_endpoint,
        34 => open_patient_replayed,
        35 => replay_keeps_timestamp_and_id,
        36 => replay_per_anchor_type,
        37 => no_replay_of_other_events,
        38 => no_replay_after_close,
    ]
}

async fn confirmation_first(probe: &Probe) -> CheckResult {
    let subscription = probe
        .subscribe(&probe.first, "Patient-open,Patient-close")
        .await?;
    let c = &subscription.confirmation;
    ensure(c.is_object(), || {
        "no JSON frame came first after connecting".into()
    })?;
    ensure(c["hub.mode"] == "subscribe", || {
        format!("hub.mode is {}", c["hub.mode"])
    })?;
    ensure(c["hub.topic"].is_string(), || {
        format!("hub.topic is {}", c["hub.topic"])
    })?;
    ensure(c["hub.events"].is_string(), || {
        format!(
            "hub.events is {} (a comma-separated string is required)",
            c["hub.events"]
        )
    })?;
    ensure(c["hub.lease_seconds"].is_number(), || {
        format!("hub.lease_seconds is {}", c["hub.lease_seconds"])
    })
}

/// `a,b` as a sorted, lower-cased set of names.
fn event_set(list: &str) -> Vec<String> {
    let mut set: Vec<String> = list
        .split(',')
        .map(|e| e.trim().to_ascii_lowercase())
        .filter(|e| !e.is_empty())
        .collect();
    set.sort();
    set.dedup();
    set
}

async fn confirmation_matches_the_request(probe: &Probe) -> CheckResult {
    let requested = "Patient-open,Patient-close";
    let subscription = probe.subscribe(&probe.first, requested).await?;
    let c = &subscription.confirmation;
    ensure(c["hub.topic"] == probe.first.topic.as_str(), || {
        format!(
            "hub.topic is {}, the request's was {}",
            c["hub.topic"], probe.first.topic
        )
    })?;
    let granted = c["hub.events"].as_str().unwrap_or_default();
    ensure(event_set(granted) == event_set(requested), || {
        format!("hub.events is `{granted}`, the request asked for `{requested}`")
    })
}

async fn no_stu2_leftovers(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let c = &subscription.confirmation;
    let leftovers: Vec<&str> = ["hub.callback", "hub.secret", "hub.channel", "hub.challenge"]
        .into_iter()
        .filter(|k| c.get(*k).is_some())
        .collect();
    ensure(leftovers.is_empty(), || {
        format!("the confirmation carries {leftovers:?}")
    })
}

/// An endpoint URL of this hub's with the token replaced by `token`.
pub(super) async fn endpoint_like(probe: &Probe, token: &str) -> Result<String, Finding> {
    let answer = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    let endpoint = endpoint_of(&answer)?;
    let issued = endpoint_token(&endpoint);
    Ok(endpoint.replacen(issued, token, 1))
}

/// Whether a connect to `url` is refused: no upgrade, or a close before any frame.
pub(super) async fn refused_connect(probe: &Probe, url: &str, headers: &[(&str, &str)]) -> bool {
    match probe.wire.connect(url, headers).await {
        Err(_) => true,
        Ok(mut socket) => {
            let refused = matches!(
                socket.next(Duration::from_secs(2)).await,
                Arrival::Closed(_)
            );
            socket.close(1000).await;
            refused
        }
    }
}

async fn unknown_endpoint_refused(probe: &Probe) -> CheckResult {
    let url = endpoint_like(probe, &fhir::fresh_id().replace('-', "")).await?;
    ensure(refused_connect(probe, &url, &[]).await, || {
        format!("a connect to the made-up endpoint {url} was kept open")
    })
}

async fn one_socket_per_endpoint(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    ensure(subscription.confirmation["hub.mode"] == "subscribe", || {
        "the first connect was not confirmed".into()
    })?;
    ensure(
        refused_connect(probe, &subscription.endpoint, &[]).await,
        || "a second connect to an endpoint in use was accepted".into(),
    )
}

/// Subscribes to `events` after `setup` opened contexts, and returns what arrived right after
/// the confirmation.
async fn replayed(probe: &Probe, events: &str) -> Result<Vec<Value>, Finding> {
    let subscription = probe.subscribe(&probe.first, events).await?;
    ensure(subscription.confirmation["hub.mode"] == "subscribe", || {
        format!(
            "the subscription was not confirmed: {}",
            subscription.confirmation
        )
    })?;
    Ok(subscription.drain(probe.timing.settle()).await)
}

async fn open_patient_replayed(probe: &Probe) -> CheckResult {
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frames = replayed(probe, "Patient-open").await?;
    ensure(
        frames.first().is_some_and(|f| f["id"] == sent["id"]),
        || {
            format!(
                "a new Patient-open subscriber was not replayed the open patient {}",
                sent["id"]
            )
        },
    )
}

async fn replay_keeps_timestamp_and_id(probe: &Probe) -> CheckResult {
    let (context, _) = fhir::patient_context();
    let mut sent = probe.event(&probe.second, "Patient-open", context);
    // An event that happened a while ago: a replay that stamps "now" shows.
    sent["timestamp"] = "2026-01-02T03:04:05.678Z".into();
    probe.publish_event(&probe.second, &sent).await?;
    let frames = replayed(probe, "Patient-open").await?;
    let Some(replay) = frames.iter().find(|f| event_of(f) == "Patient-open") else {
        return Err(Finding::fail("nothing was replayed"));
    };
    ensure(replay["timestamp"] == sent["timestamp"], || {
        format!(
            "the replay's timestamp is {}, the event's {}",
            replay["timestamp"], sent["timestamp"]
        )
    })?;
    ensure(replay["id"] == sent["id"], || {
        format!(
            "the replay's id is {}, the event's {}",
            replay["id"], sent["id"]
        )
    })
}

async fn replay_per_anchor_type(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    // A patient, then a study of that patient: two anchor types, one patient.
    let (patient, patient_id) = fhir::patient_context();
    let patient = probe
        .publish(&probe.second, "Patient-open", patient)
        .await?;
    let study = fhir::study_context_for(&patient_id);
    let study = probe
        .publish(&probe.second, "ImagingStudy-open", study)
        .await?;
    let frames = replayed(probe, "Patient-open,ImagingStudy-open").await?;
    ensure(
        frames.iter().any(|f| {
            event_of(f) == "ImagingStudy-open" && f["event"]["context"] == study["event"]["context"]
        }),
        || "the open study was not replayed".into(),
    )?;
    ensure(
        frames.iter().any(|f| {
            event_of(f) == "Patient-open" && f["event"]["context"] == patient["event"]["context"]
        }),
        || "the study was replayed, the open Patient context was not".into(),
    )
}

async fn no_replay_of_other_events(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frames = replayed(probe, "ImagingStudy-open").await?;
    match frames.iter().find(|f| f.get("event").is_some()) {
        None => Ok(()),
        Some(frame) => Err(Finding::fail(format!(
            "an ImagingStudy-open subscriber was replayed a {}",
            event_of(frame)
        ))),
    }
}

async fn no_replay_after_close(probe: &Probe) -> CheckResult {
    probe.open_and_close_patient().await?;
    let frames = replayed(probe, "Patient-open").await?;
    match frames.iter().find(|f| f.get("event").is_some()) {
        None => Ok(()),
        Some(frame) => Err(Finding::fail(format!(
            "a patient opened and closed was replayed: {}",
            frame["id"]
        ))),
    }
}
