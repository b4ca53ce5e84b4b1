//! Requesting a context change: what is accepted, what is refused, and that a refusal changes
//! nothing (checks 70–79).

use super::{checks, refused};
use crate::fhir;
use crate::probe::{Probe, Subscription};
use crate::verdict::{CheckResult, Finding, ensure};
use serde_json::Value;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        70 => valid_request_accepted,
        71 => both_json_media_types,
        72 => topic_in_the_path,
        73 => required_fields,
        74 => unknown_topic_refused,
        75 => write_scope_required,
        76 => unsupported_event_refused,
        77 => event_names_case_insensitive,
        78 => late_rejection_to_the_requester_only,
        79 => malformed_json_refused,
    ]
}

async fn watcher(probe: &Probe) -> Result<Subscription, Finding> {
    probe.subscribe(&probe.first, "Patient-open").await
}

async fn valid_request_accepted(probe: &Probe) -> CheckResult {
    let (context, _) = fhir::patient_context();
    let event = probe.event(&probe.second, "Patient-open", context);
    let answer = probe.post_event(&probe.second, &event).await?;
    ensure(answer.is_success(), || {
        format!("a valid Patient-open was answered {}", answer.status)
    })
}

async fn both_json_media_types(probe: &Probe) -> CheckResult {
    for media in ["application/json", "application/fhir+json"] {
        let (context, _) = fhir::patient_context();
        let event = probe.event(&probe.second, "Patient-open", context);
        let answer = probe
            .post_event_at(&probe.hub_url, media, &probe.second, &event)
            .await?;
        ensure(answer.is_success(), || {
            format!(
                "a Patient-open sent as {media} was answered {}",
                answer.status
            )
        })?;
        probe
            .publish(
                &probe.second,
                "Patient-close",
                event["event"]["context"].clone(),
            )
            .await?;
    }
    Ok(())
}

async fn topic_in_the_path(probe: &Probe) -> CheckResult {
    let subscription = watcher(probe).await?;
    let (context, _) = fhir::patient_context();
    let event = probe.event(&probe.second, "Patient-open", context);
    let url = format!("{}/{}", probe.hub_url, probe.second.topic);
    let answer = probe
        .post_event_at(&url, "application/json", &probe.second, &event)
        .await?;
    ensure(answer.is_success(), || {
        format!("POST {{hub.url}}/{{topic}} was answered {}", answer.status)
    })?;
    subscription
        .notification(
            probe.timing.arrival,
            "the event posted to {hub.url}/{topic}",
        )
        .await?;
    probe
        .publish(
            &probe.second,
            "Patient-close",
            event["event"]["context"].clone(),
        )
        .await?;
    let (context, _) = fhir::patient_context();
    let event = probe.event(&probe.second, "Patient-open", context);
    let wrong = format!("{}/{}", probe.hub_url, fhir::fresh_id());
    let answer = probe
        .post_event_at(&wrong, "application/json", &probe.second, &event)
        .await?;
    refused(
        &answer,
        "a POST whose path names another topic than event.hub.topic",
    )?;
    subscription
        .quiet(
            probe.timing.quiet,
            "the path's topic disagreed with the event's",
        )
        .await
}

/// Removes `path` (top-level key, or `event.<key>`) from a valid request.
fn without(event: &Value, path: &str) -> Value {
    let mut event = event.clone();
    match path.strip_prefix("event.") {
        Some(inner) => {
            if let Some(object) = event["event"].as_object_mut() {
                object.remove(inner);
            }
        }
        None => {
            if let Some(object) = event.as_object_mut() {
                object.remove(path);
            }
        }
    }
    event
}

async fn required_fields(probe: &Probe) -> CheckResult {
    let subscription = watcher(probe).await?;
    let (context, _) = fhir::patient_context();
    let event = probe.event(&probe.second, "Patient-open", context);
    for field in [
        "timestamp",
        "id",
        "event",
        "event.hub.topic",
        "event.hub.event",
        "event.context",
    ] {
        let answer = probe
            .post_event(&probe.second, &without(&event, field))
            .await?;
        refused(&answer, &format!("a request without {field}"))?;
    }
    subscription
        .quiet(probe.timing.quiet, "every request lacked a required field")
        .await
}

async fn unknown_topic_refused(probe: &Probe) -> CheckResult {
    let subscription = watcher(probe).await?;
    let (context, _) = fhir::patient_context();
    let event = fhir::event(&fhir::fresh_id(), "Patient-open", context);
    let answer = probe.post_event(&probe.second, &event).await?;
    refused(&answer, "a change on a topic that does not exist")?;
    subscription
        .quiet(probe.timing.quiet, "the change was on an unknown topic")
        .await
}

async fn write_scope_required(probe: &Probe) -> CheckResult {
    let reader = probe.narrowed("fhircast/Patient-open.read").await?;
    let subscription = watcher(probe).await?;
    let (context, _) = fhir::patient_context();
    let event = probe.event(&reader, "Patient-open", context);
    let answer = probe.post_event(&reader, &event).await?;
    ensure(matches!(answer.status, 401 | 403), || {
        format!(
            "a Patient-open from a token without fhircast/Patient-open.write was answered {}",
            answer.status
        )
    })?;
    subscription
        .quiet(probe.timing.quiet, "the requester had no write scope")
        .await
}

async fn unsupported_event_refused(probe: &Probe) -> CheckResult {
    let Some(unsupported) = [
        "Medication-open",
        "Specimen-open",
        "Device-open",
        "Coverage-open",
    ]
    .into_iter()
    .find(|e| !probe.supports(e)) else {
        return Err(Finding::not_applicable(
            "the hub lists every event the checker would try",
        ));
    };
    let event = probe.event(&probe.second, unsupported, Value::Array(Vec::new()));
    let answer = probe.post_event(&probe.second, &event).await?;
    refused(
        &answer,
        &format!("{unsupported}, which eventsSupported does not list"),
    )
}

async fn event_names_case_insensitive(probe: &Probe) -> CheckResult {
    let subscription = watcher(probe).await?;
    let (context, _) = fhir::patient_context();
    let event = probe.event(&probe.second, "patient-open", context);
    let answer = probe.post_event(&probe.second, &event).await?;
    ensure(answer.is_success(), || {
        format!("`patient-open` was answered {}", answer.status)
    })?;
    let frame = subscription
        .notification(probe.timing.arrival, "the patient-open as a Patient-open")
        .await?;
    ensure(frame["id"] == event["id"], || {
        format!("got {} instead of {}", frame["id"], event["id"])
    })
}

async fn late_rejection_to_the_requester_only(_probe: &Probe) -> CheckResult {
    Err(Finding::not_applicable(
        "needs a request the hub accepts with 202 and rejects later; nothing a client sends \
         provokes that on purpose, so it is not observable from outside",
    ))
}

async fn malformed_json_refused(probe: &Probe) -> CheckResult {
    let before = probe.current_context(&probe.second).await?.body;
    let answer = probe
        .wire
        .post_json(
            &probe.hub_url,
            Some(&probe.second.token),
            "application/json",
            r#"{"timestamp": "2026-"#.into(),
        )
        .await?;
    ensure(answer.status == 400, || {
        format!("malformed JSON was answered {}", answer.status)
    })?;
    let after = probe.current_context(&probe.second).await?.body;
    ensure(before == after, || {
        format!("the current context changed from {before} to {after}")
    })
}
