//! The checker proved both ways: a faithful proxy in front of Lockstep passes every check, and
//! each defect the proxy injects is caught by the check named for it.

mod common;
use common::proxy::{Defect, Proxy};
use lockstep_conformance::{Outcome, Selection, run};

/// Lockstep behind a proxy with `defect`, checked with `selection`.
async fn check(defect: Defect, selection: &Selection) -> lockstep_conformance::Report {
    let data = tempfile::tempdir().unwrap();
    let agent = common::lockstep(&data).await;
    let proxy = Proxy::start(format!("http://127.0.0.1:{}", agent.port()), defect).await;
    let report = run(&common::target(&proxy.origin), selection)
        .await
        .unwrap();
    agent.shutdown().await;
    report
}

#[tokio::test]
async fn a_faithful_proxy_passes_every_check_but_transport() {
    // The proxy speaks plain HTTP: HTTPS and WSS (10, 11) are checked against Lockstep itself.
    let selection = Selection::parse(None, Some("10-11")).unwrap();
    let report = check(Defect::None, &selection).await;
    let failed: Vec<_> = report
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Fail)
        .collect();
    assert!(
        failed.is_empty(),
        "{}",
        lockstep_conformance::report::table(&report)
    );
    assert!(report.left_in_context.is_none());
}

/// Runs check `number` against a hub with `defect` and requires it to fail.
async fn caught(defect: Defect, number: u16) {
    let report = check(defect, &common::only(&number.to_string())).await;
    let check = report.checks.iter().find(|c| c.number == number).unwrap();
    assert_eq!(
        check.outcome,
        Outcome::Fail,
        "{defect:?} was not caught by check {number}:\n{}",
        lockstep_conformance::report::table(&report)
    );
    assert!(!check.reason.is_empty() && !check.transcript.is_empty());
    eprintln!("{defect:?} caught by {number}: {}", check.reason);
}

macro_rules! defects {
    ($($name:ident: $defect:ident => $number:literal),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                caught(Defect::$defect, $number).await;
            }
        )*
    };
}

defects! {
    discovery_without_websocket_support_is_caught_by_4: NoWebsocketSupport => 4,
    a_subscription_answered_200_is_caught_by_12: SubscribeAnswered200 => 12,
    refusals_without_a_reason_are_caught_by_21: SilentRefusals => 21,
    a_missing_confirmation_is_caught_by_29: NoConfirmation => 29,
    a_missing_replay_is_caught_by_34: NoReplay => 34,
    a_notification_without_id_is_caught_by_48: NotificationWithoutId => 48,
    repeated_notification_ids_are_caught_by_49: RepeatedIds => 49,
    unsubscribed_events_delivered_are_caught_by_50: UnsubscribedEvents => 50,
    no_echo_to_the_sender_is_caught_by_52: NoEchoToTheSender => 52,
    a_new_id_on_the_broadcast_is_caught_by_53: NewIdOnBroadcast => 53,
    a_rewritten_context_is_caught_by_54: ContextRewritten => 54,
    no_sync_error_on_a_refusal_is_caught_by_58: NoSyncError => 58,
    a_stale_current_context_is_caught_by_84: StaleCurrentContext => 84,
}
