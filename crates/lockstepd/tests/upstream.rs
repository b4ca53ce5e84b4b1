//! The enterprise link, end to end: a second real `lockstepd` is the site's hub; the
//! workstation's `lockstepd` follows it through `[upstream]`. Apps on both sides are real
//! WebSocket clients.

mod common;
use common::Daemon;
use lockstep_agent::client::{HubClient, Subscription};
use serde_json::{Value, json};
use std::time::Duration;

const LINK_SECRET: &str = "link-secret-123";

/// The site's hub: the EHR app, and Lockstep's link client (which may not open studies, so
/// that the site refuses something the workstation would take).
fn site_config(port: u16, token_lifetime: u64) -> String {
    format!(
        r#"
[hub]
port = {port}
token_lifetime_seconds = {token_lifetime}

[[apps]]
client_id = "ehr"
client_secret = "ehr-secret-123"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[[apps]]
client_id = "lockstep"
client_secret = "{LINK_SECRET}"
name = "Reading room 4"
scopes = ["fhircast/*.read", "fhircast/Patient-open.write", "fhircast/Patient-close.write", "fhircast/DiagnosticReport-open.write", "fhircast/DiagnosticReport-update.write", "fhircast/SyncError.write"]
"#
    )
}

fn workstation_config(site: &Daemon, when_down: &str) -> String {
    format!(
        r#"
[hub]
port = 0

[[apps]]
client_id = "pacs"
client_secret = "pacs-secret-123"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[upstream]
issuer = "{}"
client_id = "lockstep"
client_secret = "{LINK_SECRET}"
when_down = "{when_down}"
"#,
        site.origin
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn patient(id: &str) -> Value {
    json!([{ "key": "patient", "resource": patient_resource(id) }])
}

fn patient_resource(id: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": "urn:oid:1.2.36.146.595.217.0.1", "value": format!("MRN-{id}") }]
    })
}

async fn wait_for_link(workstation: &Daemon, state: &str) {
    for _ in 0..400 {
        if workstation.upstream_link_state().as_deref() == Some(state) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!(
        "the upstream link never became {state} (it is {:?})",
        workstation.upstream_link_state()
    );
}

/// The next event (confirmations and acknowledgements aside), acknowledged.
async fn next_event(subscription: &mut Subscription) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), subscription.next_frame())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .expect("the socket closed");
        if frame.get("event").is_some() {
            let id = frame["id"].as_str().unwrap().to_owned();
            subscription.acknowledge(&id, 200).await.unwrap();
            return frame;
        }
    }
}

/// Nothing more arrives for a while.
async fn nothing_more(subscription: &mut Subscription, who: &str) {
    let more = tokio::time::timeout(Duration::from_millis(700), subscription.next_frame()).await;
    if let Ok(Ok(Some(frame))) = more {
        panic!("{who} got a second frame: {frame}");
    }
}

async fn sign_in(daemon: &Daemon, client_id: &str) -> HubClient {
    HubClient::sign_in(
        &daemon.origin,
        client_id,
        &format!("{client_id}-secret-123"),
        None,
    )
    .await
    .unwrap()
}

fn opened_patient(frame: &Value) -> &str {
    frame["event"]["context"][0]["resource"]["id"]
        .as_str()
        .unwrap()
}

/// A site and a workstation following it, with the site's EHR and the workstation's PACS
/// each subscribed to `events`.
struct Linked {
    _site: Daemon,
    _workstation: Daemon,
    ehr: HubClient,
    ehr_feed: Subscription,
    pacs: HubClient,
    pacs_feed: Subscription,
}

async fn linked(events: &str) -> Linked {
    let site = Daemon::start_with_text(&site_config(0, 3600));
    let workstation = Daemon::start_with_text(&workstation_config(&site, "refuse"));
    wait_for_link(&workstation, "following").await;
    let ehr = sign_in(&site, "ehr").await;
    let ehr_feed = ehr.subscribe(events, None).await.unwrap();
    let pacs = sign_in(&workstation, "pacs").await;
    let pacs_feed = pacs.subscribe(events, None).await.unwrap();
    Linked {
        _site: site,
        _workstation: workstation,
        ehr,
        ehr_feed,
        pacs,
        pacs_feed,
    }
}

#[tokio::test]
async fn both_sides_follow_each_other_once_and_the_site_decides() {
    // The daemons bound by name, so they live to the test's end.
    let Linked {
        _site,
        _workstation,
        ehr,
        mut ehr_feed,
        pacs,
        mut pacs_feed,
    } = linked("Patient-open,ImagingStudy-open").await;

    // The site's change reaches the workstation's app, with the site's event id, once.
    let from_site = ehr
        .publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    let at_pacs = next_event(&mut pacs_feed).await;
    assert_eq!(at_pacs["id"], from_site.as_str());
    assert_eq!(opened_patient(&at_pacs), "p1");
    assert_eq!(at_pacs["event"]["hub.topic"], pacs.topic.as_str());
    assert_eq!(next_event(&mut ehr_feed).await["id"], from_site.as_str());
    nothing_more(&mut pacs_feed, "pacs").await;

    // A change requested at the workstation reaches the site's app, once, and is not echoed
    // back to the workstation's apps.
    let from_pacs = pacs
        .publish("Patient-open", patient("p2"), None)
        .await
        .unwrap();
    let at_ehr = next_event(&mut ehr_feed).await;
    assert_eq!(at_ehr["id"], from_pacs.as_str());
    assert_eq!(opened_patient(&at_ehr), "p2");
    assert_eq!(at_ehr["event"]["hub.topic"], ehr.topic.as_str());
    assert_eq!(next_event(&mut pacs_feed).await["id"], from_pacs.as_str());
    nothing_more(&mut ehr_feed, "ehr").await;
    nothing_more(&mut pacs_feed, "pacs").await;
    let site_now = ehr.current_context().await.unwrap();
    let here_now = pacs.current_context().await.unwrap();
    assert_eq!(site_now["context"][0]["resource"]["id"], "p2");
    assert_eq!(here_now["context"][0]["resource"]["id"], "p2");

    // The site refuses (its client may not open studies): the workstation's app gets the
    // site's 403, and neither side changes.
    let study = json!([
        { "key": "patient", "resource": patient_resource("p2") },
        { "key": "study", "resource": {
            "resourceType": "ImagingStudy",
            "id": "s1",
            "status": "available",
            "subject": { "reference": "Patient/p2" },
            "identifier": [{ "system": "urn:dicom:uid", "value": "urn:oid:1.2.3.4" }]
        } },
    ]);
    let refused = pacs.publish("ImagingStudy-open", study, None).await;
    match refused {
        Err(lockstep_agent::client::ClientError::Refused { status, body }) => {
            assert_eq!(status, 403, "{body}");
            assert!(body.contains("the site's hub refused"), "{body}");
        }
        other => panic!("expected the site's 403, got {other:?}"),
    }
    nothing_more(&mut pacs_feed, "pacs").await;
    nothing_more(&mut ehr_feed, "ehr").await;
    let here_now = pacs.current_context().await.unwrap();
    assert_eq!(here_now["context.type"], "Patient");
}

#[tokio::test]
async fn the_link_recovers_after_the_site_restarts_and_re_syncs() {
    let port = free_port();
    let site = Daemon::start_with_text(&site_config(port, 3600));
    let workstation = Daemon::start_with_text(&workstation_config(&site, "refuse"));
    wait_for_link(&workstation, "following").await;
    let pacs = sign_in(&workstation, "pacs").await;

    site.kill_hard();
    wait_for_link(&workstation, "broken").await;
    // While the site is away, a change here is refused, saying why: no silent split.
    match pacs.publish("Patient-open", patient("p9"), None).await {
        Err(lockstep_agent::client::ClientError::Refused { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("link to 127.0.0.1 is down"), "{body}");
        }
        other => panic!("expected 503 while the link is down, got {other:?}"),
    }

    // The site comes back (a new process: new topic, new tokens) and opens a patient before
    // the link is back; the link recovers and the workstation re-syncs to it.
    let site = Daemon::start_with_text(&site_config(port, 3600));
    let ehr = sign_in(&site, "ehr").await;
    ehr.publish("Patient-open", patient("p3"), None)
        .await
        .unwrap();
    wait_for_link(&workstation, "following").await;
    let mut here = Value::Null;
    for _ in 0..100 {
        here = pacs.current_context().await.unwrap();
        if here["context"][0]["resource"]["id"] == "p3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(here["context"][0]["resource"]["id"], "p3", "{here}");
    // And changes here go to the site again.
    pacs.publish("Patient-open", patient("p4"), None)
        .await
        .unwrap();
    let site_now = ehr.current_context().await.unwrap();
    assert_eq!(site_now["context"][0]["resource"]["id"], "p4");
}

#[tokio::test]
async fn a_token_that_expires_mid_session_is_renewed_and_the_link_keeps_following() {
    // The site's tokens (and so its leases) last 3 s: the link must sign in again and renew
    // its subscription before each ends, without a gap.
    let site = Daemon::start_with_text(&site_config(0, 3));
    let workstation = Daemon::start_with_text(&workstation_config(&site, "refuse"));
    wait_for_link(&workstation, "following").await;
    tokio::time::sleep(Duration::from_secs(8)).await;
    assert_eq!(
        workstation.upstream_link_state().as_deref(),
        Some("following")
    );

    // The workstation's change is posted with a fresh token (an expired one would be 401).
    crosses_both_ways(&site, &workstation, "p5", "p6").await;
}

/// A site's change reaches an app on the workstation (under its id), and the app's change
/// reaches the site; returns the app's client.
async fn crosses_both_ways(
    site: &Daemon,
    workstation: &Daemon,
    theirs: &str,
    ours: &str,
) -> HubClient {
    let ehr = sign_in(site, "ehr").await;
    let pacs = sign_in(workstation, "pacs").await;
    let mut pacs_feed = pacs.subscribe("Patient-open", None).await.unwrap();
    let from_site = ehr
        .publish("Patient-open", patient(theirs), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut pacs_feed).await["id"], from_site.as_str());
    pacs.publish("Patient-open", patient(ours), None)
        .await
        .unwrap();
    let site_now = ehr.current_context().await.unwrap();
    assert_eq!(site_now["context"][0]["resource"]["id"], ours);
    pacs
}

/// SyncErrors seen on `feed` over a few seconds: (subscriber name, event id) of each.
async fn sync_errors(feed: &mut Subscription, within: Duration) -> Vec<(String, String)> {
    let mut seen = Vec::new();
    let deadline = tokio::time::Instant::now() + within;
    while let Ok(frame) = tokio::time::timeout_at(deadline, feed.next_frame()).await {
        let frame = frame.unwrap().expect("the socket closed");
        let Some(id) = frame["id"].as_str().map(str::to_owned) else {
            continue;
        };
        feed.acknowledge(&id, 200).await.unwrap();
        if frame["event"]["hub.event"] != "SyncError" {
            continue;
        }
        let codings = &frame["event"]["context"][0]["resource"]["issue"][0]["details"]["coding"];
        let code = |what: &str| {
            codings
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["system"].as_str().unwrap().ends_with(what))
                .and_then(|c| c["code"].as_str())
                .unwrap_or_default()
                .to_owned()
        };
        seen.push((code("subscribername"), code("eventid")));
    }
    seen
}

#[tokio::test]
async fn sync_errors_reach_the_other_side_once() {
    let site = Daemon::start_with_text(&site_config(0, 3600).replace(
        "token_lifetime_seconds = 3600",
        "token_lifetime_seconds = 3600\nack_timeout_seconds = 1",
    ));
    let workstation = Daemon::start_with_text(
        &workstation_config(&site, "refuse")
            .replace("port = 0", "port = 0\nack_timeout_seconds = 1"),
    );
    wait_for_link(&workstation, "following").await;

    // On each side one subscriber that never answers, and one that watches for SyncErrors.
    let ehr = sign_in(&site, "ehr").await;
    let _ehr_silent = ehr
        .subscribe("Patient-open", Some("EHR silent"))
        .await
        .unwrap();
    let mut ehr_watch = ehr.subscribe("SyncError", Some("EHR watch")).await.unwrap();
    let pacs = sign_in(&workstation, "pacs").await;
    let _pacs_silent = pacs
        .subscribe("Patient-open", Some("PACS silent"))
        .await
        .unwrap();
    let mut pacs_watch = pacs
        .subscribe("SyncError", Some("PACS watch"))
        .await
        .unwrap();

    let opened = ehr
        .publish("Patient-open", patient("p7"), None)
        .await
        .unwrap();
    let (at_site, here) = tokio::join!(
        sync_errors(&mut ehr_watch, Duration::from_secs(4)),
        sync_errors(&mut pacs_watch, Duration::from_secs(4)),
    );
    let about = |seen: &[(String, String)], name: &str| {
        seen.iter()
            .filter(|(who, _)| who == name)
            .cloned()
            .collect::<Vec<_>>()
    };
    // The workstation's app that did not follow is named at the site, under the site's event.
    assert_eq!(
        about(&at_site, "PACS silent"),
        vec![("PACS silent".to_owned(), opened.clone())],
        "{at_site:?}"
    );
    assert_eq!(about(&at_site, "EHR silent").len(), 1, "{at_site:?}");
    // And the site's app that did not follow is named here; each SyncError arrives once.
    assert_eq!(
        about(&here, "EHR silent"),
        vec![("EHR silent".to_owned(), opened.clone())],
        "{here:?}"
    );
    assert_eq!(about(&here, "PACS silent").len(), 1, "{here:?}");
    assert_eq!(here.len(), 2, "{here:?}");
}

fn example(name: &str) -> Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../docs/examples")
        .join(name);
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// An update that adds one Observation with `id`.
fn update_adding(id: &str) -> Value {
    let mut update = example("report-update.json");
    update[2]["resource"]["entry"][0]["resource"]["id"] = id.into();
    update
}

fn version(current: &Value) -> String {
    current["context.versionId"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn content_sharing_keeps_each_hub_s_versions_straight() {
    // The daemons bound by name, so they live to the test's end.
    let Linked {
        _site,
        _workstation,
        ehr,
        mut ehr_feed,
        pacs,
        mut pacs_feed,
    } = linked("DiagnosticReport-update").await;

    // Opened here: each hub mints its own version.
    pacs.publish("DiagnosticReport-open", example("report-open.json"), None)
        .await
        .unwrap();
    let here = version(&pacs.current_context().await.unwrap());
    let there = version(&ehr.current_context().await.unwrap());
    assert_ne!(here, there, "each hub mints its own version");

    // An update here names the local version; the site takes it against its own.
    pacs.publish(
        "DiagnosticReport-update",
        update_adding("obs-1"),
        Some(&here),
    )
    .await
    .unwrap();
    let at_ehr = next_event(&mut ehr_feed).await;
    assert_eq!(at_ehr["event"]["context.priorVersionId"], there.as_str());
    let at_pacs = next_event(&mut pacs_feed).await;
    assert_eq!(at_pacs["event"]["context.priorVersionId"], here.as_str());

    // An update at the site is applied here against the local version, and the next one
    // from here still fits.
    let there = version(&ehr.current_context().await.unwrap());
    ehr.publish(
        "DiagnosticReport-update",
        update_adding("obs-2"),
        Some(&there),
    )
    .await
    .unwrap();
    let at_pacs = next_event(&mut pacs_feed).await;
    let here_now = version(&pacs.current_context().await.unwrap());
    assert_eq!(at_pacs["event"]["context.versionId"], here_now.as_str());
    assert_ne!(at_pacs["event"]["context.priorVersionId"], there.as_str());
    next_event(&mut ehr_feed).await;
    pacs.publish(
        "DiagnosticReport-update",
        update_adding("obs-3"),
        Some(&here_now),
    )
    .await
    .unwrap();
    let at_ehr = next_event(&mut ehr_feed).await;
    assert_eq!(
        at_ehr["event"]["context"][2]["resource"]["entry"][0]["resource"]["id"],
        "obs-3"
    );
}

/// A browser that does not follow redirects: the test follows each one itself, as the
/// clinician's browser would, approving without a page (the site's user is signed in).
async fn follow_sign_in(start: &str) -> (u16, String) {
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let mut url = start.to_owned();
    for _ in 0..5 {
        let response = browser.get(&url).send().await.unwrap();
        match response.headers().get("location") {
            Some(next) => url = next.to_str().unwrap().to_owned(),
            None => {
                let status = response.status().as_u16();
                return (status, response.text().await.unwrap());
            }
        }
    }
    panic!("too many redirects signing in");
}

#[tokio::test]
async fn the_clinician_signs_in_with_pkce_and_out_again() {
    let port = free_port();
    let callback = format!("http://127.0.0.1:{port}/lockstep/upstream/callback");
    let site = Daemon::start_with_text(&format!(
        r#"{}
[[apps]]
client_id = "reading-room"
name = "Reading room (signed in)"
redirect_uris = ["{callback}"]
scopes = ["fhircast/*.read", "fhircast/Patient-open.write"]
"#,
        site_config(0, 3600)
    ));
    let workstation = Daemon::start_with_text(&format!(
        r#"
[hub]
port = {port}

[[apps]]
client_id = "pacs"
client_secret = "pacs-secret-123"
scopes = ["fhircast/*.read", "fhircast/*.write"]

[upstream]
issuer = "{}"
client_id = "reading-room"
"#,
        site.origin
    ));
    wait_for_link(&workstation, "off").await;

    let (status, page) =
        follow_sign_in(&format!("{}/lockstep/upstream/login", workstation.origin)).await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("Signed in to 127.0.0.1"), "{page}");
    wait_for_link(&workstation, "following").await;
    let pacs = crosses_both_ways(&site, &workstation, "p8", "p9").await;

    // Signing out ends the link: changes here are refused again, saying why.
    let out = workstation.beside(&["logout"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    wait_for_link(&workstation, "off").await;
    match pacs.publish("Patient-open", patient("p10"), None).await {
        Err(lockstep_agent::client::ClientError::Refused { status, body }) => {
            assert_eq!(status, 503, "{body}");
            assert!(body.contains("not signed in"), "{body}");
        }
        other => panic!("expected 503 while signed out, got {other:?}"),
    }
    // `lockstepd login` names the page to open.
    let login = workstation.beside(&["login", "--no-browser"]);
    let said = String::from_utf8_lossy(&login.stdout);
    assert!(
        said.contains(&format!("{}/lockstep/upstream/login", workstation.origin)),
        "{said}"
    );
}

#[tokio::test]
async fn a_workstation_that_joins_late_gets_the_report_and_what_was_shared_on_it() {
    let site = Daemon::start_with_text(&site_config(0, 3600));
    let ehr = sign_in(&site, "ehr").await;
    ehr.publish("DiagnosticReport-open", example("report-open.json"), None)
        .await
        .unwrap();
    let there = version(&ehr.current_context().await.unwrap());
    ehr.publish(
        "DiagnosticReport-update",
        update_adding("obs-1"),
        Some(&there),
    )
    .await
    .unwrap();

    // The workstation comes up after: the re-sync brings the report and its shared content.
    let workstation = Daemon::start_with_text(&workstation_config(&site, "refuse"));
    wait_for_link(&workstation, "following").await;
    let pacs = sign_in(&workstation, "pacs").await;
    let here = pacs.current_context().await.unwrap();
    assert_eq!(here["context.type"], "DiagnosticReport", "{here}");
    let content = here["context"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["key"] == "content")
        .expect("a content bundle");
    assert_eq!(
        content["resource"]["entry"][0]["resource"]["id"],
        "obs-1",
        "{here}\n{}",
        workstation.logged()
    );
    // And the next update from here fits the site's version.
    let mut ehr_feed = ehr
        .subscribe("DiagnosticReport-update", None)
        .await
        .unwrap();
    pacs.publish(
        "DiagnosticReport-update",
        update_adding("obs-2"),
        Some(&version(&here)),
    )
    .await
    .unwrap();
    let at_ehr = next_event(&mut ehr_feed).await;
    assert_eq!(
        at_ehr["event"]["context"][2]["resource"]["entry"][0]["resource"]["id"],
        "obs-2"
    );
}
