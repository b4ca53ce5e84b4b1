//! Content sharing, where the hub supports `DiagnosticReport-update` (checks 89–103).

use super::{checks, refused};
use crate::fhir::{self, Report};
use crate::probe::{Probe, Subscription};
use crate::verdict::{CheckResult, Finding, ensure};
use serde_json::{Value, json};

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        89 => open_carries_a_version,
        90 => versions_unique,
        91 => update_accepted_and_versioned,
        92 => stale_version_rejected,
        93 => version_required,
        94 => rejected_update_changes_nothing,
        95 => content_in_current_context,
        96 => delete_removes,
        97 => anchor_stays_as_opened,
        98 => content_always_present,
        99 => bad_bundles_rejected,
        100 => too_large_refused,
        101 => non_current_anchor,
        102 => close_discards_content,
        103 => select,
    ]
}

/// The largest update the checker sends; a hub whose limit is higher is not tested for 413.
const LARGE_UPDATE_BYTES: usize = 6 * 1024 * 1024;

const EVENTS: &str =
    "DiagnosticReport-open,DiagnosticReport-update,DiagnosticReport-select,DiagnosticReport-close";

/// A report opened by the second client, with a first-client subscriber to its events.
struct Opened {
    report: Report,
    subscription: Subscription,
    /// The `context.versionId` the distributed open carried.
    version: Value,
}

async fn open(probe: &Probe) -> Result<Opened, Finding> {
    probe.require_events(&["DiagnosticReport-open", "DiagnosticReport-update"])?;
    let subscription = probe.subscribe(&probe.first, EVENTS).await?;
    let report = Report::new();
    probe
        .publish(
            &probe.second,
            "DiagnosticReport-open",
            report.open_context(),
        )
        .await?;
    let frame = subscription
        .notification_of("DiagnosticReport-open", probe.timing.arrival)
        .await?;
    Ok(Opened {
        report,
        subscription,
        version: frame["event"]["context.versionId"].clone(),
    })
}

impl Opened {
    /// A `DiagnosticReport-update` request for this report at `version` with these entries
    /// (`Value::Null`: no version).
    fn request(&self, probe: &Probe, version: &Value, entries: Vec<Value>) -> Value {
        let context = self.report.update_context(fhir::bundle(entries));
        let mut event = probe.event(&probe.second, "DiagnosticReport-update", context);
        if !version.is_null() {
            event["event"]["context.versionId"] = version.clone();
        }
        event
    }

    /// Applies an update at the version the open was given.
    async fn apply(&self, probe: &Probe, entries: Vec<Value>) -> CheckResult {
        let request = self.request(probe, &self.version, entries);
        probe.publish_event(&probe.second, &request).await
    }

    /// Closes the report and opens it again.
    async fn reopen(&self, probe: &Probe) -> CheckResult {
        let context = self.report.open_context();
        probe
            .publish(&probe.second, "DiagnosticReport-close", context.clone())
            .await?;
        probe
            .publish(&probe.second, "DiagnosticReport-open", context)
            .await
            .map(|_| ())
    }

    /// A new measurement of this report's patient, as a PUT entry, and its id.
    fn observation(&self) -> (String, Value) {
        let id = fhir::fresh_id();
        let resource = fhir::observation(&id, &self.report.patient_id);
        (id, fhir::put(resource))
    }
}

/// The current context's `content` Bundle entries, and its version.
async fn content(probe: &Probe) -> Result<(Vec<Value>, Value, Value), Finding> {
    probe.require_current_context()?;
    let body = probe.current(&probe.first).await?;
    let bundle = body["context"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["key"] == "content"))
        .map(|e| e["resource"].clone())
        .ok_or_else(|| {
            Finding::fail(format!("the current context has no content Bundle: {body}"))
        })?;
    let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
    Ok((entries, body["context.versionId"].clone(), body))
}

fn lists(entries: &[Value], id: &str) -> bool {
    entries.iter().any(|e| e["resource"]["id"] == id)
}

async fn open_carries_a_version(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    ensure(opened.version.is_string(), || {
        format!(
            "the distributed DiagnosticReport-open carries context.versionId {}",
            opened.version
        )
    })
}

async fn versions_unique(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    opened.reopen(probe).await?;
    let again = opened
        .subscription
        .notification_of("DiagnosticReport-open", probe.timing.arrival)
        .await?;
    let version = &again["event"]["context.versionId"];
    ensure(version.is_string() && *version != opened.version, || {
        format!(
            "reopening the report gave context.versionId {version}, the first open's was {}",
            opened.version
        )
    })
}

async fn update_accepted_and_versioned(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, entry) = opened.observation();
    let sent = opened.request(probe, &opened.version, vec![entry]);
    probe.publish_event(&probe.second, &sent).await?;
    let frame = opened
        .subscription
        .notification_of("DiagnosticReport-update", probe.timing.arrival)
        .await?;
    let event = &frame["event"];
    ensure(event["context.priorVersionId"] == opened.version, || {
        format!(
            "context.priorVersionId is {}, the request's version was {}",
            event["context.priorVersionId"], opened.version
        )
    })?;
    ensure(
        event["context.versionId"].is_string() && event["context.versionId"] != opened.version,
        || {
            format!(
                "the new context.versionId is {}",
                event["context.versionId"]
            )
        },
    )?;
    ensure(frame["id"] == sent["id"], || {
        format!("the update's id {} came as {}", sent["id"], frame["id"])
    })?;
    let bundle_id = |e: &Value| {
        e["context"]
            .as_array()
            .and_then(|c| c.iter().find(|x| x["key"] == "updates"))
            .map(|x| x["resource"]["id"].clone())
    };
    ensure(bundle_id(event) == bundle_id(&sent["event"]), || {
        "the updates Bundle's id changed on the way".into()
    })
}

async fn stale_version_rejected(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, entry) = opened.observation();
    opened.apply(probe, vec![entry]).await?;
    opened
        .subscription
        .notification_of("DiagnosticReport-update", probe.timing.arrival)
        .await?;
    for stale in [opened.version.clone(), json!(fhir::fresh_id())] {
        let (_, entry) = opened.observation();
        let answer = probe
            .post_event(&probe.second, &opened.request(probe, &stale, vec![entry]))
            .await?;
        refused(
            &answer,
            &format!("an update at the stale or unknown version {stale}"),
        )?;
    }
    opened
        .subscription
        .quiet(probe.timing.quiet, "both updates were at a wrong version")
        .await
}

async fn version_required(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, entry) = opened.observation();
    let answer = probe
        .post_event(
            &probe.second,
            &opened.request(probe, &Value::Null, vec![entry]),
        )
        .await?;
    refused(&answer, "an update without context.versionId")
}

async fn rejected_update_changes_nothing(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, before_version, before) = content(probe).await?;
    let (_, good) = opened.observation();
    // Valid first entry, then an entry no hub can apply: nothing of it may stick.
    let bad = json!({ "request": { "method": "PATCH", "url": "Observation/x" } });
    let answer = probe
        .post_event(
            &probe.second,
            &opened.request(probe, &before_version, vec![good, bad]),
        )
        .await?;
    if answer.is_success() {
        return Err(Finding::fail(
            "an update with an entry that cannot be applied was accepted",
        ));
    }
    let (_, after_version, after) = content(probe).await?;
    ensure(before == after && before_version == after_version, || {
        format!("the current context changed from {before} to {after}")
    })
}

async fn content_in_current_context(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (id, entry) = opened.observation();
    opened.apply(probe, vec![entry]).await?;
    let (entries, _, body) = content(probe).await?;
    let bundle = body["context"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["key"] == "content"))
        .cloned()
        .unwrap_or_default();
    ensure(bundle["resource"]["type"] == "collection", || {
        format!(
            "the content Bundle's type is {}",
            bundle["resource"]["type"]
        )
    })?;
    ensure(lists(&entries, &id), || {
        format!("the content does not list Observation/{id}")
    })?;
    ensure(entries.iter().all(|e| e.get("request").is_none()), || {
        "a content entry carries `request`".into()
    })
}

async fn delete_removes(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (id, entry) = opened.observation();
    opened.apply(probe, vec![entry]).await?;
    let frame = opened
        .subscription
        .notification_of("DiagnosticReport-update", probe.timing.arrival)
        .await?;
    let version = frame["event"]["context.versionId"].clone();
    let url = format!("Observation/{id}");
    probe
        .publish_event(
            &probe.second,
            &opened.request(probe, &version, vec![fhir::delete(&url)]),
        )
        .await?;
    let (entries, _, _) = content(probe).await?;
    ensure(!lists(&entries, &id), || {
        format!("{url} is still listed after its DELETE")
    })
}

async fn anchor_stays_as_opened(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let changed = opened.report.with_status("final");
    opened.apply(probe, vec![fhir::put(changed)]).await?;
    let (entries, _, body) = content(probe).await?;
    let anchor = body["context"]
        .as_array()
        .and_then(|c| c.iter().find(|e| e["key"] == "report"))
        .cloned()
        .unwrap_or_default();
    ensure(anchor["resource"]["status"] == "preliminary", || {
        format!(
            "the context's report has status {} after an update; it must stay as opened",
            anchor["resource"]["status"]
        )
    })?;
    ensure(
        entries.iter().any(|e| e["resource"]["status"] == "final"),
        || "the changed report is not in the content".into(),
    )
}

async fn content_always_present(probe: &Probe) -> CheckResult {
    let _opened = open(probe).await?;
    let (entries, _, _) = content(probe).await?;
    ensure(entries.is_empty(), || {
        format!("a report with no updates has content {entries:?}")
    })
}

async fn bad_bundles_rejected(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, mut post) = opened.observation();
    post["request"]["method"] = "POST".into();
    let mut batch = opened.request(probe, &opened.version, vec![opened.observation().1]);
    batch["event"]["context"][2]["resource"]["type"] = "batch".into();
    let (_, twice) = opened.observation();
    let cases = [
        (
            opened.request(probe, &opened.version, vec![post]),
            "a POST entry",
        ),
        (batch, "a Bundle of type batch"),
        (
            opened.request(probe, &opened.version, vec![twice.clone(), twice]),
            "the same resource twice",
        ),
    ];
    for (event, what) in cases {
        let answer = probe.post_event(&probe.second, &event).await?;
        refused(&answer, &format!("an update with {what}"))?;
    }
    Ok(())
}

async fn too_large_refused(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (_, mut entry) = opened.observation();
    entry["resource"]["note"] = json!([{ "text": "x".repeat(LARGE_UPDATE_BYTES) }]);
    let event = opened.request(probe, &opened.version, vec![entry]);
    let answer = probe.post_event(&probe.second, &event).await?;
    if answer.status == 413 {
        return Ok(());
    }
    if answer.is_success() {
        let reported = opened.subscription.drain(probe.timing.quiet).await;
        if reported.iter().any(|f| f.to_string().contains("too-long")) {
            return Ok(());
        }
        return Err(Finding::not_applicable(format!(
            "the hub took a {} MiB update; its limit is above what the checker sends",
            LARGE_UPDATE_BYTES >> 20
        )));
    }
    Err(Finding::fail(format!(
        "a {} MiB update was answered {}, not 413",
        LARGE_UPDATE_BYTES >> 20,
        answer.status
    )))
}

async fn non_current_anchor(probe: &Probe) -> CheckResult {
    let supports = probe
        .discovery
        .as_ref()
        .map(|d| d["capabilities"]["supportsNonCurrentContextUpdates"].clone())
        .unwrap_or_default();
    if supports != false {
        return Err(Finding::not_applicable(format!(
            "supportsNonCurrentContextUpdates is {supports}, not false"
        )));
    }
    let opened = open(probe).await?;
    // Another report becomes current.
    probe
        .publish(
            &probe.second,
            "DiagnosticReport-open",
            Report::new().open_context(),
        )
        .await?;
    let (_, entry) = opened.observation();
    let answer = probe
        .post_event(
            &probe.second,
            &opened.request(probe, &opened.version, vec![entry]),
        )
        .await?;
    refused(
        &answer,
        "an update of a report that is no longer the current context",
    )
}

async fn close_discards_content(probe: &Probe) -> CheckResult {
    let opened = open(probe).await?;
    let (id, entry) = opened.observation();
    opened.apply(probe, vec![entry]).await?;
    opened.reopen(probe).await?;
    let (entries, _, _) = content(probe).await?;
    ensure(!lists(&entries, &id), || {
        format!("the reopened report still has Observation/{id} from before its close")
    })
}

async fn select(probe: &Probe) -> CheckResult {
    probe.require_events(&["DiagnosticReport-select"])?;
    let opened = open(probe).await?;
    let (id, entry) = opened.observation();
    opened.apply(probe, vec![entry]).await?;
    opened
        .subscription
        .notification_of("DiagnosticReport-update", probe.timing.arrival)
        .await?;
    let (_, version_before, _) = content(probe).await?;
    let selected = [format!("Observation/{id}")];
    let sent = probe
        .publish(
            &probe.second,
            "DiagnosticReport-select",
            opened.report.select_context(&selected),
        )
        .await?;
    let frame = opened
        .subscription
        .notification_of("DiagnosticReport-select", probe.timing.arrival)
        .await?;
    ensure(frame["id"] == sent["id"], || {
        "the select was not forwarded".into()
    })?;
    let (_, version_after, _) = content(probe).await?;
    ensure(version_before == version_after, || {
        format!("a select changed context.versionId from {version_before} to {version_after}")
    })?;
    let stranger = Report::new();
    let event = probe.event(
        &probe.second,
        "DiagnosticReport-select",
        stranger.select_context(&selected),
    );
    let answer = probe.post_event(&probe.second, &event).await?;
    refused(
        &answer,
        "a select for a report that is not the current context",
    )
}
