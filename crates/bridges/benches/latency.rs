//! The bridges' latencies, against a real engine on this machine, printed as a table:
//!
//! - out: from the hub accepting an event (the publish call) to a launch starting (the child
//!   process spawned; the HTTP request arriving at a local server) or a file renamed into place;
//! - in: from a complete file landing in a watched folder (renamed into it) to the event
//!   reaching a subscriber, with OS notifications (and with polling, for comparison);
//! - CCOW: from a CCOW application's commit to the FHIRcast frame at a subscriber, and from the
//!   hub accepting an event to the last CCOW application told (after its survey).
//!
//! `cargo bench -p lockstep-bridges --bench latency [-- N]` (N samples per row, default 200).

use lockstep_bridges::{BridgeReport, Bridges, BridgesConfig, Reporter};
use lockstep_fhircast::{ContextChange, EventSpec, Mode, ScopeSet, SubscriptionRequest};
use lockstep_hub::{Engine, HubSettings, TokenGrant};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

const RECORDER: &str = env!("CARGO_BIN_EXE_lockstep-record-argv");
const MRN_SYSTEM: &str = "urn:oid:1.2.36.1.2001.1003.0";
const ACSN_SYSTEM: &str = "urn:oid:1.2.36.1.2001.1005.52";

struct Bench {
    engine: Engine,
    topic: Arc<str>,
    /// When each bridge last reported acting.
    acted: mpsc::UnboundedReceiver<(String, Instant)>,
    reporter: Reporter,
}

impl Bench {
    fn new() -> Bench {
        let engine = Engine::new(HubSettings::default());
        let topic = engine.create_topic();
        let (tx, acted) = mpsc::unbounded_channel();
        let reporter: Reporter = Arc::new(move |report| {
            if report.kind == BridgeReport::Acted {
                let _ = tx.send((report.bridge.clone(), Instant::now()));
            }
        });
        Bench {
            engine,
            topic,
            acted,
            reporter,
        }
    }

    fn grant(&self) -> TokenGrant {
        TokenGrant {
            client_id: "pacs".into(),
            client_name: "PACS".into(),
            topic: self.topic.clone(),
            scopes: ScopeSet::parse("fhircast/*.write fhircast/*.read").unwrap(),
            expires_at: Instant::now() + Duration::from_secs(3600),
            acknowledges: true,
        }
    }

    fn publish(&self, context: Value) {
        let body = json!({
            "timestamp": "2026-11-26T10:00:00Z", "id": uuid::Uuid::new_v4().to_string(),
            "event": { "hub.topic": &*self.topic, "hub.event": "ImagingStudy-open", "context": context },
        });
        let change = ContextChange::parse(body.to_string().as_bytes()).unwrap();
        self.engine.publish(&self.grant(), change).unwrap();
    }

    async fn bridges(&self, config: Value) -> Bridges {
        let config: BridgesConfig = serde_json::from_value(config).unwrap();
        let config = config.validate().unwrap();
        let bridges = Bridges::start(
            self.engine.clone(),
            self.topic.clone(),
            &config,
            self.reporter.clone(),
        )
        .await;
        // Let every bridge join before measuring.
        let mut states = bridges.watch();
        states
            .wait_for(|all| {
                all.iter()
                    .all(|s| s.state == lockstep_bridges::LinkState::Following)
            })
            .await
            .unwrap();
        bridges
    }

    /// An in-process subscriber; every notification's arrival time goes to the channel.
    fn subscriber(&self, events: &str) -> mpsc::UnboundedReceiver<Instant> {
        let request = SubscriptionRequest {
            mode: Mode::Subscribe,
            topic: self.topic.to_string(),
            events: events
                .split(',')
                .map(|e| EventSpec::lookup(e).unwrap())
                .collect(),
            ignored_events: Vec::new(),
            lease_seconds: None,
            channel_endpoint: None,
            subscriber_name: Some("Measuring app".into()),
        };
        let grant = self.grant();
        let endpoint = self.engine.subscribe(&grant, request).unwrap().endpoint;
        let mut connection = self.engine.connect(&endpoint).unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let engine = self.engine.clone();
        tokio::spawn(async move {
            while let Some(frame) = connection.frames.recv().await {
                let at = Instant::now();
                let value: Value = serde_json::from_str(frame.as_str()).unwrap();
                if value.get("hub.mode").is_some() {
                    continue;
                }
                engine.reply(
                    &endpoint,
                    &json!({ "id": value["id"], "status": 200 }).to_string(),
                );
                let _ = tx.send(at);
            }
        });
        rx
    }

    async fn next_acted(&mut self, name: &str) -> Instant {
        loop {
            let (bridge, at) = tokio::time::timeout(Duration::from_secs(10), self.acted.recv())
                .await
                .expect("the bridge acted")
                .unwrap();
            if bridge == name {
                return at;
            }
        }
    }
}

fn study(i: usize) -> Value {
    json!([
        { "key": "study", "resource": { "resourceType": "ImagingStudy", "id": format!("s{i}"), "status": "available",
          "subject": { "reference": "Patient/p1" },
          "identifier": [{ "type": { "coding": [{ "code": "ACSN" }] }, "system": ACSN_SYSTEM, "value": format!("ACC-{i}") },
                         { "system": "urn:dicom:uid", "value": format!("urn:oid:1.2.840.{i}") }] } },
        { "key": "patient", "resource": { "resourceType": "Patient", "id": "p1",
          "identifier": [{ "type": { "coding": [{ "code": "MR" }] }, "system": MRN_SYSTEM, "value": "MRN-1001" }],
          "name": [{ "family": "Rivera", "given": ["Ann"] }], "birthDate": "1961-02-03" } },
    ])
}

fn identifiers() -> Value {
    json!({ "mrn": [{ "system": MRN_SYSTEM, "issuer": "GENHOSP" }],
            "accession": [{ "system": ACSN_SYSTEM, "issuer": "GENHOSP" }] })
}

struct Row {
    path: &'static str,
    samples: Vec<Duration>,
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn print(rows: &[Row]) {
    println!(
        "\n{:<66} {:>5} {:>9} {:>9} {:>9}",
        "path", "n", "p50 ms", "p99 ms", "max ms"
    );
    for row in rows {
        let mut s = row.samples.clone();
        s.sort();
        let at = |q: f64| s[((s.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "{:<66} {:>5} {:>9.3} {:>9.3} {:>9.3}",
            row.path,
            s.len(),
            ms(at(0.5)),
            ms(at(0.99)),
            ms(*s.last().unwrap())
        );
    }
}

async fn launch_exec(n: usize, dir: &Path) -> Row {
    let mut bench = Bench::new();
    let bridges = bench
        .bridges(json!({ "launch": [{ "name": "Viewer", "program": RECORDER,
            "args": [dir, "{study.accession}", "{patient.mrn}", "{study.uid}"], "debounce_ms": 0,
            "identifiers": identifiers() }] }))
        .await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        bench.publish(study(i));
        samples.push(bench.next_acted("Viewer").await - t0);
    }
    bridges.stop().await;
    Row {
        path: "hub accepts ImagingStudy-open -> program started (argv)",
        samples,
    }
}

async fn launch_fetch(n: usize) -> Row {
    let mut bench = Bench::new();
    let (tx, mut arrived) = mpsc::unbounded_channel::<Instant>();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new().route(
        "/viewer",
        axum::routing::get(move || {
            let _ = tx.send(Instant::now());
            async { "ok" }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let bridges = bench
        .bridges(json!({ "launch": [{ "name": "Web viewer",
            "url": format!("http://127.0.0.1:{port}/viewer?acc={{study.accession}}&uid={{study.uid}}"),
            "allowed_schemes": ["http"], "allowed_hosts": ["127.0.0.1"], "fetch": true,
            "debounce_ms": 0, "identifiers": identifiers() }] }))
        .await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        bench.publish(study(i));
        let at = arrived.recv().await.unwrap();
        samples.push(at - t0);
        bench.next_acted("Web viewer").await;
    }
    bridges.stop().await;
    Row {
        path: "hub accepts ImagingStudy-open -> URL request at the viewer",
        samples,
    }
}

async fn file_out(n: usize, dir: &Path) -> Row {
    let mut bench = Bench::new();
    let bridges = bench
        .bridges(json!({ "folder": [{ "name": "RIS", "identifiers": identifiers(), "out": {
            "dir": dir, "file_name": "study.xml", "format": "xml", "encoding": "utf-16le", "line_endings": "crlf",
            "template": "<Study><PatientID>{patient.mrn}</PatientID><Accession>{study.accession}</Accession><UID>{study.uid}</UID></Study>\n",
        }}] }))
        .await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        bench.publish(study(i));
        samples.push(bench.next_acted("RIS").await - t0);
    }
    bridges.stop().await;
    Row {
        path: "hub accepts ImagingStudy-open -> file renamed into place",
        samples,
    }
}

async fn file_in(n: usize, root: &Path, poll_ms: Option<u64>) -> Row {
    let bench = Bench::new();
    let inbox = root.join(if poll_ms.is_some() {
        "polled"
    } else {
        "watched"
    });
    let staging = root.join("staging");
    std::fs::create_dir_all(&inbox).unwrap();
    std::fs::create_dir_all(&staging).unwrap();
    let mut inbound = json!({
        "dir": inbox, "pattern": "*.xml", "format": "xml", "message_type": "/Message/Type",
        "after_read": "delete",
        "rules": [{ "when": "ReportOpened", "event": "DiagnosticReport-open",
            "mrn": "/Message/Patient/ID", "mrn_issuer": "/Message/Patient/ID/@issuer",
            "accession": "/Message/Accession" , "accession_issuer": "/Message/Accession/@issuer" }],
    });
    if let Some(ms) = poll_ms {
        inbound["poll_interval_ms"] = ms.into();
    }
    let bridges = bench
        .bridges(json!({ "folder": [{ "name": "Dictation", "identifiers": identifiers(), "in": inbound }] }))
        .await;
    let mut arrivals = bench.subscriber("DiagnosticReport-open");
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let staged = staging.join(format!("m{i}.xml"));
        std::fs::write(
            &staged,
            format!("<?xml version=\"1.0\"?>\n<Message><Type>ReportOpened</Type><Patient><ID issuer=\"GENHOSP\">MRN-1001</ID></Patient><Accession issuer=\"GENHOSP\">ACC-{i}</Accession></Message>\n"),
        )
        .unwrap();
        let t0 = Instant::now();
        std::fs::rename(&staged, inbox.join(format!("m{i}.xml"))).unwrap();
        let at = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("the event reached the subscriber")
            .unwrap();
        samples.push(at - t0);
    }
    bridges.stop().await;
    Row {
        path: if poll_ms.is_some() {
            "file renamed into the folder -> subscriber (polling every 50 ms)"
        } else {
            "file renamed into the folder -> subscriber (OS notifications)"
        },
        samples,
    }
}

/// The CCOW manager's URL, from the bridge's link detail.
fn manager_url(bridges: &Bridges) -> String {
    let status = bridges
        .statuses()
        .into_iter()
        .find(|s| s.name == "CCOW")
        .unwrap();
    status
        .detail
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap()
        .to_owned()
}

/// One CCOW call in the query form; the reply's `name` field, if asked for.
async fn ccow_call(
    http: &reqwest::Client,
    base: &str,
    interface: &str,
    method: &str,
    args: &[(&str, &str)],
    field: Option<&str>,
) -> String {
    let mut query = vec![("interface", interface), ("method", method)];
    query.extend_from_slice(args);
    let body = http
        .get(base)
        .query(&query)
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let reply = lockstep_bridges::ccow::wire::read_reply(&body).unwrap();
    field
        .map(|f| reply.require(f).unwrap().to_owned())
        .unwrap_or_default()
}

fn ccow_config() -> Value {
    json!({ "ccow": { "port": 0, "survey_timeout_seconds": 5, "identifiers": identifiers() } })
}

/// From a CCOW application's commit (its `PublishChangesDecision`) to the FHIRcast frame at a
/// subscriber.
async fn ccow_in(n: usize) -> Row {
    let bench = Bench::new();
    let bridges = bench.bridges(ccow_config()).await;
    let base = manager_url(&bridges);
    let http = reqwest::Client::new();
    let mut arrivals = bench.subscriber("Patient-open");
    let ehr = ccow_call(
        &http,
        &base,
        "ContextManager",
        "JoinCommonContext",
        &[("applicationName", "EHR"), ("survey", "false")],
        Some("participantCoupon"),
    )
    .await;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let tx = ccow_call(
            &http,
            &base,
            "ContextManager",
            "StartContextChanges",
            &[("participantCoupon", &ehr)],
            Some("contextCoupon"),
        )
        .await;
        let mrn = format!("MRN-{i}");
        ccow_call(
            &http,
            &base,
            "ContextData",
            "SetItemValues",
            &[
                ("participantCoupon", &ehr),
                ("contextCoupon", &tx),
                ("itemNames", "Patient.Id.MRN.GENHOSP"),
                ("itemValues", &mrn),
            ],
            None,
        )
        .await;
        ccow_call(
            &http,
            &base,
            "ContextManager",
            "EndContextChanges",
            &[("participantCoupon", &ehr), ("contextCoupon", &tx)],
            None,
        )
        .await;
        let t0 = Instant::now();
        ccow_call(
            &http,
            &base,
            "ContextManager",
            "PublishChangesDecision",
            &[
                ("participantCoupon", &ehr),
                ("contextCoupon", &tx),
                ("decision", "accept"),
            ],
            None,
        )
        .await;
        let at = tokio::time::timeout(Duration::from_secs(10), arrivals.recv())
            .await
            .expect("the commit reached the subscriber")
            .unwrap();
        samples.push(at - t0);
    }
    bridges.stop().await;
    Row {
        path: "CCOW commit (PublishChangesDecision) -> FHIRcast subscriber",
        samples,
    }
}

/// From the hub accepting an event to the last of three CCOW applications told
/// `ContextChangesAccepted` (each surveyed first).
async fn ccow_out(n: usize) -> Row {
    const APPS: usize = 3;
    let bench = Bench::new();
    let bridges = bench.bridges(ccow_config()).await;
    let base = manager_url(&bridges);
    let http = reqwest::Client::new();
    let (tx, mut accepted) = mpsc::unbounded_channel::<Instant>();
    for app in 0..APPS {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cp", listener.local_addr().unwrap());
        let tx = tx.clone();
        let router = axum::Router::new().route(
            "/cp",
            axum::routing::get(
                move |axum::extract::RawQuery(query): axum::extract::RawQuery| {
                    let query = query.unwrap_or_default();
                    if query.contains("method=ContextChangesAccepted") {
                        let _ = tx.send(Instant::now());
                    }
                    async move {
                        if query.contains("method=ContextChangesPending") {
                            "decision=accept"
                        } else {
                            ""
                        }
                    }
                },
            ),
        );
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        let name = format!("App{app}");
        ccow_call(
            &http,
            &base,
            "ContextManager",
            "JoinCommonContext",
            &[
                ("applicationName", &name),
                ("contextParticipant", &url),
                ("survey", "true"),
            ],
            None,
        )
        .await;
    }
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let t0 = Instant::now();
        bench.publish(study(i));
        let mut last = t0;
        for _ in 0..APPS {
            last = tokio::time::timeout(Duration::from_secs(10), accepted.recv())
                .await
                .expect("every CCOW application told")
                .unwrap();
        }
        samples.push(last - t0);
    }
    bridges.stop().await;
    Row {
        path: "hub accepts ImagingStudy-open -> last of 3 CCOW apps told",
        samples,
    }
}

fn main() {
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(200);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let rows = runtime.block_on(async {
        let launches = tmp.path().join("launches");
        std::fs::create_dir_all(&launches).unwrap();
        vec![
            launch_exec(n, &launches).await,
            launch_fetch(n).await,
            file_out(n, &tmp.path().join("out")).await,
            file_in(n, tmp.path(), None).await,
            file_in(n.min(50), tmp.path(), Some(50)).await,
            ccow_in(n).await,
            ccow_out(n).await,
        ]
    });
    print(&rows);
    println!(
        "\ntargets: out p50 < 20 ms; in p50 < 100 ms (no polling on local disks). temp dir on {}",
        tmp.path().display()
    );
}
