//! The enterprise link against a hub that speaks a deployed hub's dialect (see
//! `common/dialect_hub.rs`): a local app and a bridge follow the site, the site's app follows a
//! local change, each event crosses once, and the link rides out the site's denial broadcasts
//! and its change of topic.

#[path = "common/bus.rs"]
mod bus;
mod common;
#[allow(dead_code)]
#[path = "common/dialect_hub.rs"]
mod dialect_hub;

use common::Daemon;
use dialect_hub::DialectHub;
use lockstep_agent::client::{HubClient, Subscription};
use serde_json::{Value, json};
use std::time::Duration;

fn workstation_config(site: &DialectHub, out: &std::path::Path) -> String {
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
client_secret = "link-secret-123"

[[bridges.folder]]
name = "Dictation drop"
identifiers.mrn = [{{ system = "urn:mrn" }}]

[bridges.folder.out]
dir = "{}"
events = ["Patient-open"]
file_name = "patient.txt"
format = "text"
template = "{{patient.mrn}}"
"#,
        site.origin,
        out.display()
    )
}

fn patient(id: &str) -> Value {
    json!([{ "key": "patient", "resource": {
        "resourceType": "Patient",
        "id": id,
        "identifier": [{ "system": "urn:mrn", "value": format!("MRN-{id}") }]
    } }])
}

/// The next event that is not a heartbeat, acknowledged.
async fn next_event(feed: &mut Subscription) -> Value {
    loop {
        let frame = tokio::time::timeout(Duration::from_secs(10), feed.next_frame())
            .await
            .expect("no event within 10 s")
            .unwrap()
            .expect("the socket closed");
        let name = frame["event"]["hub.event"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if name.is_empty() || name == "heartbeat" {
            continue;
        }
        feed.acknowledge(frame["id"].as_str().unwrap(), 200)
            .await
            .unwrap();
        return frame;
    }
}

/// No event but heartbeats for a while.
async fn nothing_more(feed: &mut Subscription, who: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    while let Ok(frame) = tokio::time::timeout_at(deadline, feed.next_frame()).await {
        let frame = frame.unwrap().expect("the socket closed");
        let name = frame["event"]["hub.event"].as_str().unwrap_or_default();
        assert!(
            name.is_empty() || name == "heartbeat",
            "{who} got another event: {frame}"
        );
    }
}

fn link_following(workstation: &Daemon) -> bool {
    workstation.upstream_link_state().as_deref() == Some("following")
}

async fn wait_until(what: &str, mut ok: impl FnMut() -> bool) {
    for _ in 0..400 {
        if ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("never: {what}");
}

async fn site_app(site: &DialectHub) -> (HubClient, Subscription) {
    let ehr = HubClient::sign_in(&site.origin, "ehr", "anything", None)
        .await
        .unwrap();
    let feed = ehr.subscribe("Patient-open", None).await.unwrap();
    (ehr, feed)
}

#[tokio::test]
async fn the_link_speaks_a_deployed_hub_s_dialect() {
    // Topics last 10 s and tokens 2 s: the link renews several times within the first topic,
    // and the first renewal after it brings a new topic.
    let topic_period = Duration::from_secs(10);
    let started = tokio::time::Instant::now();
    let site = DialectHub::start(topic_period, Duration::from_secs(2)).await;
    let out = tempfile::tempdir().unwrap();
    let workstation = Daemon::start_with_text(&workstation_config(&site, out.path()));
    wait_until("the link following", || link_following(&workstation)).await;
    let pacs = HubClient::sign_in(&workstation.origin, "pacs", "pacs-secret-123", None)
        .await
        .unwrap();
    let mut pacs_feed = pacs.subscribe("Patient-open", None).await.unwrap();
    let (ehr, mut ehr_feed) = site_app(&site).await;

    // The site's change: the local app follows it once, under its id, and so does the bridge.
    let from_site = ehr
        .publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut ehr_feed).await["id"], from_site.as_str());
    let here = next_event(&mut pacs_feed).await;
    assert_eq!(here["id"], from_site.as_str());
    assert_eq!(here["event"]["hub.topic"], pacs.topic.as_str());
    // Spec-exact here: no versionId on an open that mints none, whatever the site added.
    assert!(here["event"].get("context.versionId").is_none(), "{here}");
    let file = out.path().join("patient.txt");
    wait_until("the bridge writing the site's patient", || {
        std::fs::read_to_string(&file).is_ok_and(|text| text.contains("MRN-p1"))
    })
    .await;
    nothing_more(&mut pacs_feed, "pacs").await;

    // A change here: the site's app follows it once, the site got it once, and the echo does
    // not come back to the local app.
    let from_here = pacs
        .publish("Patient-open", patient("p2"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut ehr_feed).await["id"], from_here.as_str());
    assert_eq!(next_event(&mut pacs_feed).await["id"], from_here.as_str());
    assert_eq!(site.posted(&from_here), 1);
    nothing_more(&mut pacs_feed, "pacs").await;
    nothing_more(&mut ehr_feed, "ehr").await;

    // Another app leaves the site's topic: its denial reaches every socket, the link's too,
    // and the link keeps following.
    let (leaver, _leaver_feed) = site_app(&site).await;
    let form = [
        ("hub.channel.type", "websocket"),
        ("hub.mode", "unsubscribe"),
        ("hub.topic", leaver.topic.as_str()),
        ("hub.events", "Patient-open"),
    ];
    let token = reqwest::Client::new()
        .post(format!("{}/oauth2/token", site.origin))
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap()["access_token"]
        .as_str()
        .unwrap()
        .to_owned();
    reqwest::Client::new()
        .post(&leaver.hub_url)
        .bearer_auth(token)
        .form(&form)
        .send()
        .await
        .unwrap();
    // (The site's tokens are short: its app signs in again.)
    let (ehr, _ehr_feed) = site_app(&site).await;
    let again = ehr
        .publish("Patient-open", patient("p3"), None)
        .await
        .unwrap();
    assert_eq!(next_event(&mut pacs_feed).await["id"], again.as_str());

    // The site hands out a new topic after its period: the link follows it there.
    let first_topic = ehr.topic.clone();
    assert!(
        started.elapsed() < topic_period,
        "the steps above took too long"
    );
    tokio::time::sleep_until(started + topic_period + Duration::from_secs(1)).await;
    let (ehr, _feed) = site_app(&site).await;
    assert_ne!(ehr.topic, first_topic, "the dialect hub changes topic");
    wait_until("the link following again", || link_following(&workstation)).await;
    let mut from_new_topic = None;
    for _ in 0..100 {
        // Until the link has moved to the new topic, the event reaches nobody here.
        let (ehr, _feed) = site_app(&site).await;
        ehr.publish("Patient-open", patient("p4"), None)
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_millis(300), next_event(&mut pacs_feed));
        if let Ok(frame) = next.await {
            from_new_topic = Some(frame);
            break;
        }
    }
    // By the re-sync on the new topic (a new id) or as the event itself.
    let frame = from_new_topic.expect("the link never followed the new topic");
    assert_eq!(frame["event"]["context"][0]["resource"]["id"], "p4");
    assert!(site.tokens_issued() >= 3, "the link renewed its token");
}

#[tokio::test]
async fn an_unlocked_screen_re_syncs_from_the_site() {
    let site = DialectHub::start(Duration::from_secs(3600), Duration::from_secs(3600)).await;
    let out = tempfile::tempdir().unwrap();
    let bus = bus::Bus::start();
    let workstation = Daemon::start_with_env(
        &workstation_config(&site, out.path()),
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
            ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
            ("XDG_SESSION_ID", "1"),
        ],
    );
    workstation.wait_for_log("following logind's session 1");
    wait_until("the link following", || link_following(&workstation)).await;
    let pacs = HubClient::sign_in(&workstation.origin, "pacs", "pacs-secret-123", None)
        .await
        .unwrap();
    let mut pacs_feed = pacs.subscribe("Patient-open", None).await.unwrap();

    // The site moves on without a word on the link's socket (while the screen was locked, say).
    site.change_silently("Patient", patient("p5"));
    nothing_more(&mut pacs_feed, "pacs").await;
    // The clinician unlocks: the workstation asks the site what is open, and follows.
    let logind = bus::service(&bus, "org.freedesktop.login1").await;
    let session = (
        "/org/freedesktop/login1/session/_31",
        "org.freedesktop.login1.Session",
    );
    bus::emit(&logind, session.0, session.1, "Unlock", &()).await;
    let frame = next_event(&mut pacs_feed).await;
    assert_eq!(frame["event"]["context"][0]["resource"]["id"], "p5");
}
