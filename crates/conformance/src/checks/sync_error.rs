//! Subscriber answers and the SyncErrors they lead to (checks 58–69).

use super::checks;
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, Subscription, event_of};
use crate::verdict::{CheckResult, Finding, ensure};
use serde_json::{Value, json};

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        58 => conflict_reported,
        59 => client_error_reported,
        60 => server_error_reported,
        61 => success_not_reported,
        62 => operation_outcome_shape,
        63 => codes_name_the_event,
        64 => code_names_the_subscriber,
        65 => only_to_sync_error_subscribers,
        66 => posted_sync_error_relayed,
        67 => silent_subscriber_unsubscribed,
        68 => abnormal_close_reported,
        69 => normal_close_not_reported,
    ]
}

const SUBSCRIBER_NAME: &str = "conformance follower";

/// A watcher of SyncErrors (the second client) and a follower of Patient-open (the first,
/// answering by itself), named [`SUBSCRIBER_NAME`].
async fn pair(probe: &Probe) -> Result<(Subscription, Subscription), Finding> {
    probe.require_events(&["SyncError"])?;
    let watcher = probe.subscribe(&probe.second, "SyncError").await?;
    let follower = probe
        .subscribe_with(
            &probe.first,
            &SubscribeForm {
                name: Some(SUBSCRIBER_NAME),
                ..SubscribeForm::events("Patient-open")
            },
        )
        .await?;
    follower.answer_myself().await;
    Ok((watcher, follower))
}

/// The follower answers a new Patient-open with `status`; the event sent.
async fn answered(probe: &Probe, follower: &Subscription, status: Value) -> Result<Value, Finding> {
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    let frame = follower
        .notification(probe.timing.arrival, "the Patient-open")
        .await?;
    follower
        .answer(frame["id"].as_str().unwrap_or_default(), status)
        .await?;
    Ok(sent)
}

/// The SyncError the watcher receives about `sent`.
async fn sync_error_about(
    probe: &Probe,
    watcher: &Subscription,
    sent: &Value,
    what: &str,
) -> Result<Value, Finding> {
    let frame = watcher
        .notification_of("SyncError", probe.timing.arrival)
        .await
        .map_err(|_| {
            Finding::fail(format!(
                "{what} led to no SyncError within {} s",
                probe.timing.arrival.as_secs()
            ))
        })?;
    let about = codes(&frame);
    ensure(about.event_id.as_deref() == sent["id"].as_str(), || {
        format!(
            "the SyncError is about event {:?}, not {}",
            about.event_id, sent["id"]
        )
    })?;
    Ok(frame)
}

#[derive(Default)]
struct Codes {
    event_id: Option<String>,
    event_name: Option<String>,
    subscriber_name: Option<String>,
}

fn outcome(frame: &Value) -> &Value {
    &frame["event"]["context"][0]["resource"]
}

fn codes(frame: &Value) -> Codes {
    let mut codes = Codes::default();
    let issues = outcome(frame)["issue"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    for issue in issues {
        for coding in issue["details"]["coding"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            let code = coding["code"].as_str().map(str::to_owned);
            match coding["system"].as_str().unwrap_or_default() {
                "https://fhircast.hl7.org/events/syncerror/eventid" => codes.event_id = code,
                "https://fhircast.hl7.org/events/syncerror/eventname" => codes.event_name = code,
                "https://fhircast.hl7.org/events/syncerror/subscribername" => {
                    codes.subscriber_name = code
                }
                _ => {}
            }
        }
    }
    codes
}

async fn reported(probe: &Probe, status: Value) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let sent = answered(probe, &follower, status.clone()).await?;
    sync_error_about(probe, &watcher, &sent, &format!("an answer of {status}"))
        .await
        .map(|_| ())
}

async fn conflict_reported(probe: &Probe) -> CheckResult {
    reported(probe, json!(409)).await
}

async fn client_error_reported(probe: &Probe) -> CheckResult {
    reported(probe, json!(422)).await
}

async fn server_error_reported(probe: &Probe) -> CheckResult {
    reported(probe, json!(500)).await
}

async fn success_not_reported(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    answered(probe, &follower, json!(200)).await?;
    answered(probe, &follower, json!(202)).await?;
    watcher
        .quiet(probe.timing.quiet, "the follower answered 200 and 202")
        .await
}

async fn operation_outcome_shape(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let sent = answered(probe, &follower, json!(409)).await?;
    let frame = sync_error_about(probe, &watcher, &sent, "an answer of 409").await?;
    let context = frame["event"]["context"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        context.len() == 1
            && context[0]["key"] == "operationoutcome"
            && outcome(&frame)["resourceType"] == "OperationOutcome",
        || {
            format!(
                "the context is not one operationoutcome OperationOutcome: {}",
                frame["event"]["context"]
            )
        },
    )?;
    let issues = outcome(&frame)["issue"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    ensure(
        issues.iter().any(|i| {
            i["severity"] == "warning"
                && i["code"] == "processing"
                && i["diagnostics"]
                    .as_str()
                    .is_some_and(|d| !d.trim().is_empty())
        }),
        || format!("no issue has severity warning, code processing and diagnostics: {issues:?}"),
    )
}

async fn codes_name_the_event(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let sent = answered(probe, &follower, json!(409)).await?;
    let frame = sync_error_about(probe, &watcher, &sent, "an answer of 409").await?;
    let codes = codes(&frame);
    ensure(codes.event_name.as_deref() == Some("Patient-open"), || {
        format!("the eventname code is {:?}", codes.event_name)
    })?;
    ensure(codes.subscriber_name.is_some(), || {
        "there is no subscribername code".into()
    })
}

async fn code_names_the_subscriber(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let sent = answered(probe, &follower, json!(409)).await?;
    let frame = sync_error_about(probe, &watcher, &sent, "an answer of 409").await?;
    let name = codes(&frame).subscriber_name;
    ensure(name.as_deref() == Some(SUBSCRIBER_NAME), || {
        format!(
            "the subscribername code is {name:?}, the subscriber.name given was `{SUBSCRIBER_NAME}`"
        )
    })
}

async fn only_to_sync_error_subscribers(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let bystander = probe.subscribe(&probe.second, "Patient-close").await?;
    let sent = answered(probe, &follower, json!(409)).await?;
    sync_error_about(probe, &watcher, &sent, "an answer of 409").await?;
    for (subscription, who) in [
        (&bystander, "a Patient-close subscriber"),
        (&follower, "the Patient-open follower"),
    ] {
        let frames = subscription.drain(probe.timing.quiet).await;
        ensure(
            !frames
                .iter()
                .any(|f| event_of(f).eq_ignore_ascii_case("SyncError")),
            || format!("{who}, not subscribed to SyncError, received one"),
        )?;
    }
    Ok(())
}

async fn posted_sync_error_relayed(probe: &Probe) -> CheckResult {
    probe.require_events(&["SyncError"])?;
    if probe.first.app() == probe.second.app() {
        return Err(Finding::not_applicable(
            "needs a second app (--second-client-id): a hub may count two tokens of one app as \
             one participant, and a SyncError goes to the others",
        ));
    }
    let watcher = probe.subscribe(&probe.first, "SyncError").await?;
    let failed = fhir::fresh_id();
    let outcome = json!({
        "resourceType": "OperationOutcome",
        "id": fhir::fresh_id(),
        "issue": [{
            "severity": "warning",
            "code": "processing",
            "diagnostics": "conformance checker: this app could not follow the change",
            "details": { "coding": [
                { "system": "https://fhircast.hl7.org/events/syncerror/eventid", "code": failed },
                { "system": "https://fhircast.hl7.org/events/syncerror/eventname", "code": "Patient-open" },
                { "system": "https://fhircast.hl7.org/events/syncerror/subscribername", "code": "conformance checker" },
            ] },
        }],
    });
    let event = probe.event(
        &probe.second,
        "SyncError",
        json!([fhir::entry("operationoutcome", outcome)]),
    );
    let answer = probe.post_event(&probe.second, &event).await?;
    ensure(answer.is_success(), || {
        format!(
            "a SyncError posted by an app was answered {}",
            answer.status
        )
    })?;
    let frame = watcher
        .notification_of("SyncError", probe.timing.arrival)
        .await?;
    ensure(
        codes(&frame).event_id.as_deref() == Some(failed.as_str()),
        || format!("the relayed SyncError is not the one posted: {frame}"),
    )
}

async fn silent_subscriber_unsubscribed(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    let (context, _) = fhir::patient_context();
    let sent = probe
        .publish(&probe.second, "Patient-open", context)
        .await?;
    follower
        .notification(probe.timing.arrival, "the Patient-open")
        .await?;
    // Never answered.
    let Ok(frame) = watcher
        .notification_of("SyncError", probe.timing.unanswered)
        .await
    else {
        return Err(Finding::not_applicable(format!(
            "the hub sent no SyncError about a silent subscriber within {} s (it MAY)",
            probe.timing.unanswered.as_secs()
        )));
    };
    ensure(
        codes(&frame).event_id.as_deref() == sent["id"].as_str(),
        || {
            format!(
                "the SyncError is about {:?}, not the unanswered {}",
                codes(&frame).event_id,
                sent["id"]
            )
        },
    )?;
    follower
        .closed_within(probe.timing.arrival)
        .await
        .map(|_| ())
        .map_err(|_| Finding::fail("the hub reported the silent subscriber but did not unsubscribe it (socket still open)"))
}

async fn abnormal_close_reported(probe: &Probe) -> CheckResult {
    let (watcher, follower) = pair(probe).await?;
    follower.close(4000).await;
    match watcher
        .notification_of("SyncError", probe.timing.arrival)
        .await
    {
        Ok(_) => Ok(()),
        Err(_) => Err(Finding::not_applicable(
            "no SyncError followed a close with code 4000 (the hub MAY send one)",
        )),
    }
}

async fn normal_close_not_reported(probe: &Probe) -> CheckResult {
    for code in [1000, 1001] {
        let (watcher, follower) = pair(probe).await?;
        follower.close(code).await;
        watcher
            .quiet(
                probe.timing.quiet,
                &format!("the follower closed with {code}"),
            )
            .await?;
    }
    Ok(())
}
