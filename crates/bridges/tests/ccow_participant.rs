//! Participant mode against a context manager written as a test program: a registry that
//! answers `Locate` in the Vergence dialect (served as `text/html`, a manager URL with a path,
//! `componentParameters` to send back on every call), and a manager that surveys Lockstep,
//! commits its own application's changes and takes Lockstep's.

mod common;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, State};
use axum::http::header;
use axum::response::IntoResponse;
use common::{Hub, PATIENCE, identifiers, study_open};
use lockstep_bridges::LinkState;
use lockstep_bridges::ccow::wire::{Args, read_reply};
use serde_json::json;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PARAMETERS: &str = "desktopId=HOST_1_2&backChannelId=9&cpId=7";

#[derive(Default)]
struct Vault {
    port: u16,
    /// Lockstep's callback URL, once it joined.
    callback: Option<String>,
    next_coupon: u64,
    contexts: Vec<(u64, Vec<(String, String)>)>,
    current: u64,
    pending: Vec<(String, String)>,
    /// What the other applications answer when Lockstep changes the context.
    dissent: Option<String>,
    decisions: Vec<String>,
    calls_without_parameters: usize,
    left: bool,
}

type Shared = Arc<Mutex<Vault>>;

fn reply(pairs: &[(&str, String)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs {
        out.append_pair(k, v);
    }
    out.finish()
}

async fn vault(
    State(vault): State<Shared>,
    OriginalUri(uri): OriginalUri,
    _body: Bytes,
) -> axum::response::Response {
    let args = Args::parse(uri.query().unwrap_or_default().as_bytes()).unwrap();
    let method = args.get("method").unwrap_or_default().to_owned();
    let mut v = vault.lock().unwrap();
    let port = v.port;
    let body = if uri.path() == "/" {
        // The registry, in the Vergence dialect.
        reply(&[
            (
                "componentUrl",
                format!("http://127.0.0.1:{port}/USDVA/CM/1"),
            ),
            ("componentParameters", PARAMETERS.to_owned()),
            ("site", "https://example.org".to_owned()),
        ])
    } else {
        if args.get("desktopId") != Some("HOST_1_2") || args.get("cpId") != Some("7") {
            v.calls_without_parameters += 1;
        }
        match method.as_str() {
            "JoinCommonContext" => {
                v.callback = args.get("contextParticipant").map(str::to_owned);
                reply(&[("participantCoupon", "41".to_owned())])
            }
            "LeaveCommonContext" => {
                v.left = true;
                String::new()
            }
            "StartContextChanges" => {
                v.next_coupon += 1;
                v.pending.clear();
                reply(&[("contextCoupon", (1000 + v.next_coupon).to_string())])
            }
            "SetItemValues" => {
                let names = args.list("itemNames");
                let values = args.list("itemValues");
                v.pending = names
                    .iter()
                    .zip(values)
                    .map(|(n, v)| ((*n).to_owned(), v.to_owned()))
                    .collect();
                String::new()
            }
            "EndContextChanges" => match &v.dissent {
                Some(why) => reply(&[("noContinue", "false".into()), ("responses", why.clone())]),
                None => reply(&[("noContinue", "false".into()), ("responses", String::new())]),
            },
            "PublishChangesDecision" => {
                let decision = args.get("decision").unwrap_or_default().to_owned();
                if decision == "accept" {
                    let coupon = 1000 + v.next_coupon;
                    let items = v.pending.clone();
                    v.contexts.push((coupon, items));
                    v.current = coupon;
                }
                v.decisions.push(decision);
                reply(&[("listenerURLs", String::new())])
            }
            "GetItemValues" => {
                let coupon: u64 = args
                    .get("contextCoupon")
                    .unwrap_or("0")
                    .parse()
                    .unwrap_or(0);
                let items = v
                    .contexts
                    .iter()
                    .find(|(c, _)| *c == coupon)
                    .map(|(_, items)| items.clone())
                    .unwrap_or_default();
                let flat: Vec<String> = items.into_iter().flat_map(|(n, v)| [n, v]).collect();
                reply(&[("itemValues", flat.join("|"))])
            }
            _ => reply(&[
                ("exception", "NotImplemented".into()),
                ("exceptionMessage", method.clone()),
            ]),
        }
    };
    // A deployed vault labels its form replies as HTML.
    ([(header::CONTENT_TYPE, "text/html")], body).into_response()
}

struct Fixture {
    vault: Shared,
    http: reqwest::Client,
}

impl Fixture {
    /// The vault's own application commits `items`: Lockstep is surveyed, then told.
    /// Returns Lockstep's survey answer (`decision`, `reason`).
    async fn commit(&self, items: &[(&str, &str)]) -> (String, String) {
        let (callback, coupon) = {
            let mut v = self.vault.lock().unwrap();
            v.next_coupon += 1;
            let coupon = 1000 + v.next_coupon;
            v.contexts.push((
                coupon,
                items
                    .iter()
                    .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
                    .collect(),
            ));
            (v.callback.clone().unwrap(), coupon)
        };
        let ask = |method: &'static str| {
            self.http.get(&callback).query(&[
                ("interface", "ContextParticipant"),
                ("method", method),
                ("contextCoupon", &coupon.to_string()),
            ])
        };
        let body = ask("ContextChangesPending")
            .send()
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        let answer = read_reply(&body).unwrap();
        let decision = answer.get("decision").unwrap_or_default().to_owned();
        let reason = answer.get("reason").unwrap_or_default().to_owned();
        if decision == "accept" {
            self.vault.lock().unwrap().current = coupon;
            ask("ContextChangesAccepted").send().await.unwrap();
        } else {
            ask("ContextChangesCancelled").send().await.unwrap();
        }
        (decision, reason)
    }
}

async fn start_vault() -> (Fixture, u16) {
    let state: Shared = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    state.lock().unwrap().port = port;
    let app = Router::new().fallback(vault).with_state(state.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (
        Fixture {
            vault: state,
            http: reqwest::Client::new(),
        },
        port,
    )
}

async fn wait(what: &str, check: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited in vain for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn lockstep_joins_a_running_context_manager_and_follows_it_both_ways() {
    let (fixture, port) = start_vault().await;
    let hub = Hub::start();
    let mut viewer = hub.subscriber("Viewer", "Patient-open");
    let mut watcher = hub.subscriber("Watcher", "SyncError");
    let bridges = hub
        .bridges(json!({ "ccow": {
            "mode": "participant", "port": port, "survey_timeout_seconds": 2,
            "identifiers": identifiers(),
        }}))
        .await;
    hub.wait_for_state("CCOW", LinkState::Following).await;
    assert!(
        fixture.vault.lock().unwrap().callback.is_some(),
        "Lockstep joined"
    );

    // The vault's application opens a patient: Lockstep accepts and the session follows.
    let (decision, _) = fixture
        .commit(&[
            ("Patient.Id.MRN.GENHOSP", "185444"),
            ("Patient.Co.PatientName", "DOE^JANE"),
        ])
        .await;
    assert_eq!(decision, "accept");
    let open = viewer.next_of("Patient-open").await;
    assert_eq!(
        open["event"]["context"][0]["resource"]["identifier"][0]["value"],
        "185444"
    );

    // A patient with an unmapped suffix: Lockstep dissents, in words naming no patient.
    let (decision, reason) = fixture.commit(&[("Patient.Id.MRN.ELSEWHERE", "777")]).await;
    assert_eq!(decision, "conditionally_accept");
    assert!(reason.contains("not mapped"), "{reason}");
    assert!(!reason.contains("777"), "{reason}");

    // The session opens a study: Lockstep changes the vault's context.
    hub.publish(
        "RIS",
        "ImagingStudy-open",
        study_open("p2", "200001", "ACC-2", "1.2.840.2"),
    );
    wait("the vault took Lockstep's change", || {
        fixture
            .vault
            .lock()
            .unwrap()
            .decisions
            .last()
            .map(String::as_str)
            == Some("accept")
    })
    .await;
    let committed = {
        let v = fixture.vault.lock().unwrap();
        v.contexts
            .iter()
            .find(|(c, _)| *c == v.current)
            .unwrap()
            .1
            .clone()
    };
    assert!(
        committed.contains(&("Patient.Id.MRN.GENHOSP".into(), "200001".into())),
        "{committed:?}"
    );
    assert!(
        committed.contains(&("DICOMStudy.Id.InstanceUID".into(), "1.2.840.2".into())),
        "{committed:?}"
    );

    // Another application dissents: Lockstep cancels and the SyncError names it.
    fixture.vault.lock().unwrap().dissent = Some("Lab: order entry open".into());
    hub.publish(
        "RIS",
        "ImagingStudy-open",
        study_open("p3", "300001", "ACC-3", "1.2.840.3"),
    );
    let error = watcher.next_of("SyncError").await;
    let diagnostics = error["event"]["context"][0]["resource"]["issue"][0]["diagnostics"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(
        diagnostics.starts_with("Lab: order entry open"),
        "{diagnostics}"
    );
    assert_eq!(
        fixture
            .vault
            .lock()
            .unwrap()
            .decisions
            .last()
            .map(String::as_str),
        Some("cancel")
    );

    assert_eq!(
        fixture.vault.lock().unwrap().calls_without_parameters,
        0,
        "componentParameters go with every call"
    );
    // The vault ends the common context: the link breaks, and Lockstep joins again.
    let first = fixture.vault.lock().unwrap().callback.clone().unwrap();
    fixture
        .http
        .get(&first)
        .query(&[
            ("interface", "ContextParticipant"),
            ("method", "CommonContextTerminated"),
        ])
        .send()
        .await
        .unwrap();
    let why = hub.wait_for_state("CCOW", LinkState::Broken).await;
    assert!(why.contains("ended the common context"), "{why}");
    wait("Lockstep joined again", || {
        fixture.vault.lock().unwrap().callback.as_deref() != Some(first.as_str())
    })
    .await;
    hub.wait_for_state("CCOW", LinkState::Following).await;

    bridges.stop().await;
    assert!(fixture.vault.lock().unwrap().left, "Lockstep left on stop");
}
