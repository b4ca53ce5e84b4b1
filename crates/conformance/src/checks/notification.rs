//! Event notification: the frame's shape, ids, filtering, the echo to the sender, and context
//! passed through untouched (checks 48–57).

use super::checks;
use crate::fhir;
use crate::probe::{Probe, event_of};
use crate::verdict::{CheckResult, Finding, ensure};
use crate::wire::Arrival;
use serde_json::{Value, json};

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        48 => frame_shape,
        49 => ids_never_repeat,
        50 => only_subscribed_events,
        51 => only_the_own_topic,
        52 => the_sender_gets_its_own_event,
        53 => broadcast_keeps_the_id,
        54 => broadcast_keeps_timestamp_and_context,
        55 => other_values_pass_through,
        56 => only_what_the_scopes_cover,
        57 => answers_as_number_or_string,
    ]
}

async fn frame_shape(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let (text, frame) = match subscription.next(probe.timing.arrival).await {
        Arrival::Text {
            text,
            json: Some(frame),
        } => (text, frame),
        other => {
            return Err(Finding::fail(format!(
                "expected a JSON text frame, got {other:?}"
            )));
        }
    };
    let event = &frame["event"];
    let problems: Vec<String> = [
        (frame["timestamp"].is_string(), "timestamp is not a string"),
        (frame["id"].is_string(), "id is not a string"),
        (event.is_object(), "event is not an object"),
        (
            event["hub.topic"].is_string(),
            "event.hub.topic is not a string",
        ),
        (
            event["hub.event"].is_string(),
            "event.hub.event is not a string",
        ),
        (event["context"].is_array(), "event.context is not an array"),
    ]
    .into_iter()
    .filter(|(ok, _)| !ok)
    .map(|(_, problem)| problem.to_owned())
    .collect();
    ensure(problems.is_empty(), || {
        format!("{}: {text:.300}", problems.join("; "))
    })
}

async fn ids_never_repeat(probe: &Probe) -> CheckResult {
    let subscription = probe
        .subscribe(&probe.first, "Patient-open,Patient-close")
        .await?;
    let mut sent = Vec::new();
    for _ in 0..3 {
        let (context, _) = fhir::patient_context();
        sent.push(
            probe
                .publish(&probe.second, "Patient-open", context.clone())
                .await?,
        );
        sent.push(
            probe
                .publish(&probe.second, "Patient-close", context)
                .await?,
        );
    }
    let frames = subscription.drain(probe.timing.settle()).await;
    let mut ids: Vec<&str> = frames.iter().filter_map(|f| f["id"].as_str()).collect();
    let received = ids.len();
    ids.sort();
    ids.dedup();
    ensure(received == sent.len() && ids.len() == received, || {
        format!(
            "{} distinct requests arrived as {received} notifications with {} distinct ids",
            sent.len(),
            ids.len()
        )
    })
}

async fn only_subscribed_events(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    let subscription = probe.subscribe(&probe.first, "ImagingStudy-open").await?;
    probe.open_and_close_patient().await?;
    subscription
        .quiet(
            probe.timing.quiet,
            "the socket subscribed to ImagingStudy-open only",
        )
        .await
}

async fn only_the_own_topic(probe: &Probe) -> CheckResult {
    if probe.first.topic == probe.second.topic {
        return Err(Finding::not_applicable(
            "both clients are bound to the same topic; give a second client on another topic",
        ));
    }
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    subscription
        .quiet(probe.timing.quiet, "the event was for another topic")
        .await
}

async fn the_sender_gets_its_own_event(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let (context, _) = fhir::patient_context();
    let sent = probe.publish(&probe.first, "Patient-open", context).await?;
    let frame = subscription
        .notification(probe.timing.arrival, "the echo of its own request")
        .await?;
    ensure(frame["id"] == sent["id"], || {
        format!(
            "the sender got {} instead of its {}",
            frame["id"], sent["id"]
        )
    })
}

/// Publishes from the second client and returns what the first client's subscriber got.
async fn relayed(probe: &Probe, event: &Value) -> Result<Value, Finding> {
    let name = event_of(event).to_owned();
    let subscription = probe.subscribe(&probe.first, &name).await?;
    probe.publish_event(&probe.second, event).await?;
    subscription
        .notification_of(&name, probe.timing.arrival)
        .await
}

async fn broadcast_keeps_the_id(probe: &Probe) -> CheckResult {
    let (context, _) = fhir::patient_context();
    let sent = probe.event(&probe.second, "Patient-open", context);
    let frame = relayed(probe, &sent).await?;
    ensure(frame["id"] == sent["id"], || {
        format!("the request's id {} came as {}", sent["id"], frame["id"])
    })
}

/// The event object without the version keys a hub may add.
fn without_versions(event: &Value) -> Value {
    let mut event = event.clone();
    if let Some(object) = event.as_object_mut() {
        object.retain(|k, _| k != "context.versionId" && k != "context.priorVersionId");
    }
    event
}

async fn broadcast_keeps_timestamp_and_context(probe: &Probe) -> CheckResult {
    let (context, _) = fhir::patient_context();
    let mut sent = probe.event(&probe.second, "Patient-open", context);
    sent["timestamp"] = "2026-02-03T04:05:06.789Z".into();
    let frame = relayed(probe, &sent).await?;
    ensure(frame["timestamp"] == sent["timestamp"], || {
        format!(
            "the request's timestamp {} came as {}",
            sent["timestamp"], frame["timestamp"]
        )
    })?;
    ensure(without_versions(&frame["event"]) == sent["event"], || {
        format!(
            "the event changed on the way: sent {}, received {}",
            sent["event"], frame["event"]
        )
    })
}

async fn other_values_pass_through(probe: &Probe) -> CheckResult {
    let (mut context, patient_id) = fhir::patient_context();
    let mut patient = context[0]["resource"].clone();
    // Members a hub has no reason to touch: an extension, nested values, unusual numbers.
    patient["extension"] =
        json!([{ "url": "urn:lockstep:conformance:kept", "valueDecimal": 1.50 }]);
    patient["birthDate"] = "1970-01-01".into();
    context[0]["resource"] = patient;
    let context = json!([
        context[0],
        { "key": "extension", "data": { "conformance": { "kept": [1, "two", null, true] } } },
    ]);
    let sent = probe.event(&probe.second, "Patient-open", context);
    let frame = relayed(probe, &sent).await?;
    ensure(
        frame["event"]["context"] == sent["event"]["context"],
        || {
            format!(
                "the context of patient {patient_id} changed on the way: sent {}, received {}",
                sent["event"]["context"], frame["event"]["context"]
            )
        },
    )
}

async fn only_what_the_scopes_cover(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    let narrow = probe.narrowed("fhircast/Patient-open.read").await?;
    let Ok(subscription) = probe
        .subscribe(&narrow, "Patient-open,ImagingStudy-open")
        .await
    else {
        return Ok(()); // refused outright: nothing can be sent beyond the scope
    };
    let (study, _) = fhir::study_context();
    probe
        .publish(&probe.second, "ImagingStudy-open", study)
        .await?;
    let frames = subscription.drain(probe.timing.settle()).await;
    match frames
        .iter()
        .find(|f| !event_of(f).is_empty() && event_of(f) != "Patient-open")
    {
        None => Ok(()),
        Some(frame) => Err(Finding::fail(format!(
            "a token with only fhircast/Patient-open.read was sent a {}",
            event_of(frame)
        ))),
    }
}

async fn answers_as_number_or_string(probe: &Probe) -> CheckResult {
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    subscription.answer_myself().await;
    for status in [json!("200"), json!(200)] {
        let (context, _) = fhir::patient_context();
        let sent = probe
            .publish(&probe.second, "Patient-open", context)
            .await?;
        let frame = subscription
            .notification(probe.timing.arrival, "the Patient-open")
            .await?;
        ensure(frame["id"] == sent["id"], || {
            format!("got {} instead of {}", frame["id"], sent["id"])
        })?;
        subscription
            .answer(frame["id"].as_str().unwrap_or_default(), status)
            .await?;
    }
    // The socket still delivers after both answers.
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frame = subscription
        .notification(
            probe.timing.arrival,
            "a third Patient-open after answering with \"200\" and 200",
        )
        .await?;
    subscription
        .answer(frame["id"].as_str().unwrap_or_default(), json!(200))
        .await
}
