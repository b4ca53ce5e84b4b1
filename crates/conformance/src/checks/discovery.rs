//! Discovery: the well-known FHIRcast configuration (checks 1–9).

use super::checks;
use crate::probe::Probe;
use crate::verdict::{CheckResult, Finding, ensure};
use serde_json::Value;

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        1 => served_as_json,
        2 => appended_to_the_hub_path,
        3 => lists_events,
        4 => supports_websocket,
        5 => names_the_version,
        6 => advertises_get_current_context,
        7 => says_whether_non_current_updates_work,
        8 => names_a_known_fhir_version,
        9 => claims_no_webhooks,
    ]
}

fn url(probe: &Probe) -> String {
    format!("{}/.well-known/fhircast-configuration", probe.hub_url)
}

/// The document the hub serves now (each check reads it afresh, so its transcript shows it).
async fn document(probe: &Probe) -> Result<Value, Finding> {
    let answer = probe.wire.get(&url(probe), None).await?;
    answer
        .json()
        .filter(|_| answer.status == 200)
        .ok_or_else(|| {
            Finding::fail(format!(
                "the document is not served as JSON ({})",
                answer.status
            ))
        })
}

async fn served_as_json(probe: &Probe) -> CheckResult {
    let answer = probe.wire.get(&url(probe), None).await?;
    ensure(answer.status == 200, || {
        format!("answered {}", answer.status)
    })?;
    ensure(answer.media_type() == "application/json", || {
        format!("Content-Type is `{}`", answer.content_type)
    })?;
    ensure(answer.json().is_some_and(|v| v.is_object()), || {
        "the body is not a JSON object".into()
    })
}

async fn appended_to_the_hub_path(probe: &Probe) -> CheckResult {
    let path = probe
        .hub_url
        .splitn(4, '/')
        .nth(3)
        .unwrap_or_default()
        .to_owned();
    if path.is_empty() {
        return Err(Finding::not_applicable("hub.url has no path"));
    }
    document(probe).await.map(|_| ())
}

async fn lists_events(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    let events = document["eventsSupported"].as_array();
    ensure(
        events.is_some_and(|e| !e.is_empty() && e.iter().all(Value::is_string)),
        || format!("eventsSupported is {}", document["eventsSupported"]),
    )
}

async fn supports_websocket(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    ensure(document["websocketSupport"] == true, || {
        format!("websocketSupport is {}", document["websocketSupport"])
    })
}

async fn names_the_version(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    ensure(document["fhircastVersion"] == "3.0.0", || {
        format!("fhircastVersion is {}", document["fhircastVersion"])
    })
}

async fn advertises_get_current_context(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    let answer = probe.current_context(&probe.first).await?;
    let implemented =
        answer.status == 200 && answer.json().is_some_and(|b| b.get("context").is_some());
    if !implemented {
        return Err(Finding::not_applicable(format!(
            "GET {{hub.url}}/{{topic}} answered {}: Get Current Context is not implemented",
            answer.status
        )));
    }
    ensure(
        document["capabilities"]["supportsGetCurrentContext"] == true
            && document["getCurrentSupport"] == true,
        || {
            format!(
                "Get Current Context answers, but capabilities.supportsGetCurrentContext is {} \
                 and getCurrentSupport is {}",
                document["capabilities"]["supportsGetCurrentContext"],
                document["getCurrentSupport"]
            )
        },
    )
}

async fn says_whether_non_current_updates_work(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    let value = &document["capabilities"]["supportsNonCurrentContextUpdates"];
    ensure(value.is_boolean(), || {
        format!("capabilities.supportsNonCurrentContextUpdates is {value}")
    })
}

async fn names_a_known_fhir_version(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    match document.get("fhirVersion") {
        None => Err(Finding::not_applicable("the document has no fhirVersion")),
        Some(version) => ensure(
            ["DSTU1", "DSTU2", "STU3", "R4", "R4B", "R5"]
                .iter()
                .any(|known| version == known),
            || format!("fhirVersion is {version}"),
        ),
    }
}

async fn claims_no_webhooks(probe: &Probe) -> CheckResult {
    let document = document(probe).await?;
    ensure(document["webhookSupport"] != true, || {
        "the document claims webhookSupport: true, which STU3 removed".into()
    })
}
