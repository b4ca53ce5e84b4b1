//! Get Current Context, where the hub advertises it (checks 80–88).

use super::checks;
use crate::fhir;
use crate::probe::Probe;
use crate::verdict::{CheckResult, Finding, ensure};
use serde_json::Value;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        80 => shape,
        81 => empty_at_first,
        82 => the_open_patient,
        83 => the_open_report,
        84 => empty_after_close,
        85 => closed_last_leaves_nothing,
        86 => the_latest_open,
        87 => version_changes,
        88 => token_required,
    ]
}

async fn current(probe: &Probe) -> Result<Value, Finding> {
    probe.require_current_context()?;
    probe.current(&probe.first).await
}

/// The current context's array without the content Bundle a content-sharing hub adds.
fn context_without_content(body: &Value) -> Value {
    let entries = body["context"].as_array().cloned().unwrap_or_default();
    Value::Array(
        entries
            .into_iter()
            .filter(|e| e["key"] != "content")
            .collect(),
    )
}

fn is_empty(body: &Value) -> bool {
    body["context.type"] == "" && context_without_content(body) == Value::Array(Vec::new())
}

async fn shape(probe: &Probe) -> CheckResult {
    let body = current(probe).await?;
    ensure(body["context.type"].is_string(), || {
        format!("context.type is {}", body["context.type"])
    })?;
    ensure(body["context.versionId"].is_string(), || {
        format!("context.versionId is {}", body["context.versionId"])
    })?;
    ensure(body["context"].is_array(), || {
        format!("context is {}", body["context"])
    })
}

async fn empty_at_first(probe: &Probe) -> CheckResult {
    let body = current(probe).await?;
    ensure(is_empty(&body), || {
        format!("with nothing open the hub answers {body}")
    })
}

async fn the_open_patient(probe: &Probe) -> CheckResult {
    probe.require_current_context()?;
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context.clone())
        .await?;
    let body = current(probe).await?;
    ensure(body["context.type"] == "Patient", || {
        format!("context.type is {}", body["context.type"])
    })?;
    ensure(context_without_content(&body) == context, || {
        format!("context is {}, the open's was {context}", body["context"])
    })
}

async fn the_open_report(probe: &Probe) -> CheckResult {
    probe.require_current_context()?;
    probe.require_events(&["DiagnosticReport-open"])?;
    let report = fhir::Report::new();
    probe
        .publish(
            &probe.second,
            "DiagnosticReport-open",
            report.open_context(),
        )
        .await?;
    let body = current(probe).await?;
    ensure(body["context.type"] == "DiagnosticReport", || {
        format!("context.type is {}", body["context.type"])
    })
}

async fn empty_after_close(probe: &Probe) -> CheckResult {
    probe.require_current_context()?;
    probe.open_and_close_patient().await?;
    let body = current(probe).await?;
    ensure(is_empty(&body), || {
        format!("after the close the hub answers {body}")
    })
}

/// Opens P1, then P2 (whose context is returned).
async fn two_patients(probe: &Probe) -> Result<Value, Finding> {
    probe.require_current_context()?;
    let (first, _) = fhir::patient_context();
    let (second, _) = fhir::patient_context();
    probe.publish(&probe.second, "Patient-open", first).await?;
    probe
        .publish(&probe.second, "Patient-open", second.clone())
        .await?;
    Ok(second)
}

async fn closed_last_leaves_nothing(probe: &Probe) -> CheckResult {
    let second = two_patients(probe).await?;
    probe
        .publish(&probe.second, "Patient-close", second)
        .await?;
    let body = current(probe).await?;
    ensure(is_empty(&body), || {
        format!("P1 open, P2 open, P2 closed: the hub answers {body}")
    })
}

async fn the_latest_open(probe: &Probe) -> CheckResult {
    let second = two_patients(probe).await?;
    let body = current(probe).await?;
    ensure(context_without_content(&body) == second, || {
        format!("after P1 then P2 the hub answers {body}")
    })
}

async fn version_changes(probe: &Probe) -> CheckResult {
    let mut versions = vec![current(probe).await?["context.versionId"].clone()];
    let (context, _) = fhir::patient_context();
    probe
        .publish(&probe.second, "Patient-open", context.clone())
        .await?;
    versions.push(current(probe).await?["context.versionId"].clone());
    probe
        .publish(&probe.second, "Patient-close", context)
        .await?;
    versions.push(current(probe).await?["context.versionId"].clone());
    ensure(
        versions[0] != versions[1] && versions[1] != versions[2],
        || format!("context.versionId went {versions:?} over an open and a close"),
    )
}

async fn token_required(probe: &Probe) -> CheckResult {
    probe.require_current_context()?;
    let url = format!("{}/{}", probe.hub_url, probe.first.topic);
    for (bearer, what) in [(None, "no token"), (Some("not-a-token"), "a made-up token")] {
        let answer = probe.wire.get(&url, bearer).await?;
        ensure(answer.status == 401, || {
            format!("GET context with {what} was answered {}", answer.status)
        })?;
    }
    let unknown = format!("{}/{}", probe.hub_url, fhir::fresh_id());
    let answer = probe.wire.get(&unknown, Some(&probe.first.token)).await?;
    let empty = answer.json().is_some_and(|b| is_empty(&b));
    ensure(
        matches!(answer.status, 403 | 404) || (answer.status == 200 && empty),
        || {
            format!(
                "GET context of an unknown topic was answered {} {}",
                answer.status, answer.body
            )
        },
    )
}
