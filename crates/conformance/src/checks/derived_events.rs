//! Derived (implied) opens for multi-anchor contexts (checks 104–106).

use super::checks;
use crate::fhir;
use crate::probe::{Probe, SubscribeForm, event_names};
use crate::verdict::{CheckResult, ensure};

pub(super) fn checks() -> Vec<super::Check> {
    checks![
        104 => patient_follows_a_study,
        105 => no_duplicate_derived_open,
        106 => no_fabricated_closes,
    ]
}

async fn patient_follows_a_study(probe: &Probe) -> CheckResult {
    probe.require_events(&["ImagingStudy-open"])?;
    let answer = probe
        .subscribe_request(&probe.first, &SubscribeForm::events("Patient-open"))
        .await?;
    if answer.is_client_error() {
        return Ok(()); // the allowed alternative: mismatched event sets refused at subscribe time
    }
    let subscription = probe.subscribe(&probe.first, "Patient-open").await?;
    let (study, patient_id) = fhir::study_context();
    probe
        .publish(&probe.second, "ImagingStudy-open", study)
        .await?;
    let frame = subscription
        .notification_of("Patient-open", probe.timing.arrival)
        .await?;
    let context = &frame["event"]["context"];
    ensure(
        context.as_array().is_some_and(|c| {
            c.iter()
                .any(|e| e["key"] == "patient" && e["resource"]["id"] == patient_id.as_str())
        }),
        || {
            format!(
                "the derived Patient-open does not carry the study's patient {patient_id}: {context}"
            )
        },
    )
}

async fn no_duplicate_derived_open(probe: &Probe) -> CheckResult {
    probe.require_events(&["Encounter-open"])?;
    let subscription = probe
        .subscribe(&probe.first, "Encounter-open,Patient-open")
        .await?;
    let (encounter, _) = fhir::encounter_context();
    probe
        .publish(&probe.second, "Encounter-open", encounter)
        .await?;
    let frames = subscription.drain(probe.timing.settle()).await;
    let names = event_names(&frames);
    ensure(names == ["Encounter-open"], || {
        format!(
            "a subscriber of Encounter-open and Patient-open got {names:?} for one Encounter-open"
        )
    })
}

async fn no_fabricated_closes(probe: &Probe) -> CheckResult {
    let closes = "Patient-close,ImagingStudy-close,DiagnosticReport-close,Encounter-close";
    let supported: Vec<&str> = closes.split(',').filter(|e| probe.supports(e)).collect();
    let subscription = probe.subscribe(&probe.first, &supported.join(",")).await?;
    for _ in 0..2 {
        let (patient, _) = fhir::patient_context();
        probe
            .publish(&probe.second, "Patient-open", patient)
            .await?;
    }
    if probe.supports("ImagingStudy-open") {
        probe
            .publish(&probe.second, "ImagingStudy-open", fhir::study_context().0)
            .await?;
    }
    if probe.supports("DiagnosticReport-open") {
        probe
            .publish(
                &probe.second,
                "DiagnosticReport-open",
                fhir::Report::new().open_context(),
            )
            .await?;
    }
    subscription
        .quiet(probe.timing.quiet, "only opens were requested")
        .await
}
