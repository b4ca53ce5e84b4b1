//! CCOW through `lockstepd`: the daemon started on a config with `[bridges.ccow]` serves the
//! CCOW registry and context manager; a CCOW application (a test program with a real callback
//! server) and a FHIRcast app over WebSocket follow each other both ways.

mod common;
use axum::Router;
use axum::extract::{Query, State};
use common::Daemon;
use lockstep_agent::client::HubClient;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const PATIENCE: Duration = Duration::from_secs(15);

fn config(ccow_port: u16) -> String {
    format!(
        r#"
[hub]
port = 0

[[apps]]
client_id = "ris"
client_secret = "ris-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "RIS"

[bridges.ccow]
port = {ccow_port}
survey_timeout_seconds = 2
identifiers.mrn = [{{ system = "urn:oid:1.2.36.1.2001.1003.0", issuer = "GENHOSP" }}]
identifiers.accession = [{{ system = "urn:oid:1.2.36.1.2001.1005.52", issuer = "GENHOSP" }}]
"#
    )
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The CCOW application's callback server: accepts every survey, records each method.
async fn participant() -> (String, Arc<Mutex<Vec<String>>>) {
    async fn callback(
        State(heard): State<Arc<Mutex<Vec<String>>>>,
        Query(query): Query<HashMap<String, String>>,
    ) -> String {
        let method = query.get("method").cloned().unwrap_or_default();
        heard.lock().unwrap().push(method.clone());
        if method == "ContextChangesPending" {
            "decision=accept&reason=".into()
        } else {
            String::new()
        }
    }
    let heard = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cp", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/cp", axum::routing::get(callback))
        .with_state(heard.clone());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heard)
}

/// One CCOW call; its reply as name → value.
async fn ccow(
    base: &str,
    interface: &str,
    method: &str,
    args: &[(&str, &str)],
) -> HashMap<String, String> {
    let mut query = vec![("interface", interface), ("method", method)];
    query.extend_from_slice(args);
    let body = reqwest::Client::new()
        .get(base)
        .query(&query)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let reply: HashMap<String, String> = url_pairs(&body);
    assert!(!reply.contains_key("exception"), "{method}: {body}");
    reply
}

fn url_pairs(body: &str) -> HashMap<String, String> {
    body.split('&')
        .filter(|p| !p.is_empty())
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            let decode = |s: &str| {
                let s = s.replace('+', " ");
                percent_decode(&s)
            };
            Some((decode(k), decode(v)))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = s.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn located(base: &str) {
    for _ in 0..300 {
        if reqwest::get(format!(
            "{base}?interface=ContextManagementRegistry&method=Locate"
        ))
        .await
        .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("the CCOW registry never answered at {base}");
}

fn patient_open() -> Value {
    json!([{ "key": "patient", "resource": {
        "resourceType": "Patient", "id": "p1",
        "identifier": [{ "type": { "coding": [{ "code": "MR" }] },
            "system": "urn:oid:1.2.36.1.2001.1003.0", "value": "185444" }],
        "name": [{ "family": "Doe", "given": ["Jane"] }], "birthDate": "1970-01-02",
    }}])
}

#[tokio::test]
async fn a_ccow_application_and_a_fhircast_app_follow_each_other_through_lockstepd() {
    let port = free_port();
    let daemon = Daemon::start_with_text(&config(port));
    let base = format!("http://127.0.0.1:{port}/");
    located(&base).await;
    let ris = HubClient::sign_in(&daemon.origin, "ris", "ris-secret", None)
        .await
        .unwrap();
    let mut ris_feed = ris.subscribe("Patient-open", None).await.unwrap();

    // Located like any CCOW application locates its manager, then joined.
    let locate = ccow(
        &base,
        "ContextManagementRegistry",
        "Locate",
        &[("componentName", "CCOW.ContextManager"), ("version", "1.5")],
    )
    .await;
    let manager = locate["componentUrl"].clone();
    let (callback, heard) = participant().await;
    let joined = ccow(
        &manager,
        "ContextManager",
        "JoinCommonContext",
        &[
            ("applicationName", "EHR"),
            ("contextParticipant", &callback),
            ("survey", "true"),
        ],
    )
    .await;
    let ehr = joined["participantCoupon"].clone();

    // FHIRcast to CCOW: the RIS opens a patient; the EHR is surveyed, told, and reads it.
    ris.publish("Patient-open", patient_open(), None)
        .await
        .unwrap();
    let deadline = tokio::time::Instant::now() + PATIENCE;
    while !heard
        .lock()
        .unwrap()
        .iter()
        .any(|m| m == "ContextChangesAccepted")
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the EHR was never told: {:?}",
            heard.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let coupon = ccow(
        &manager,
        "ContextManager",
        "GetMostRecentContextCoupon",
        &[],
    )
    .await;
    let values = ccow(
        &manager,
        "ContextData",
        "GetItemValues",
        &[
            ("participantCoupon", &ehr),
            ("contextCoupon", &coupon["contextCoupon"]),
        ],
    )
    .await;
    assert!(
        values["itemValues"].contains("Patient.Id.MRN.GENHOSP|185444"),
        "{values:?}"
    );
    assert!(
        values["itemValues"].contains("Patient.Co.PatientName|Doe^Jane"),
        "{values:?}"
    );

    // CCOW to FHIRcast: the EHR opens another patient; the RIS receives it.
    let started = ccow(
        &manager,
        "ContextManager",
        "StartContextChanges",
        &[("participantCoupon", &ehr)],
    )
    .await;
    let tx = started["contextCoupon"].clone();
    ccow(
        &manager,
        "ContextData",
        "SetItemValues",
        &[
            ("participantCoupon", &ehr),
            ("contextCoupon", &tx),
            ("itemNames", "Patient.Id.MRN.GENHOSP"),
            ("itemValues", "200001"),
        ],
    )
    .await;
    let ended = ccow(
        &manager,
        "ContextManager",
        "EndContextChanges",
        &[("participantCoupon", &ehr), ("contextCoupon", &tx)],
    )
    .await;
    assert_eq!(ended["noContinue"], "false", "{ended:?}");
    ccow(
        &manager,
        "ContextManager",
        "PublishChangesDecision",
        &[
            ("participantCoupon", &ehr),
            ("contextCoupon", &tx),
            ("decision", "accept"),
        ],
    )
    .await;
    let frame = loop {
        let frame = tokio::time::timeout(PATIENCE, ris_feed.next_frame())
            .await
            .expect("the EHR's patient reached the RIS")
            .unwrap()
            .unwrap();
        let id = frame["id"].as_str().unwrap_or_default().to_owned();
        ris_feed.acknowledge(&id, 200).await.unwrap();
        if frame["event"]["context"][0]["resource"]["identifier"][0]["value"] == "200001" {
            break frame;
        }
    };
    assert_eq!(frame["event"]["hub.event"], "Patient-open");
    let current = ris.current_context().await.unwrap();
    assert_eq!(
        current["context"][0]["resource"]["identifier"][0]["value"],
        "200001"
    );
    assert!(daemon.terminate().success());
}
