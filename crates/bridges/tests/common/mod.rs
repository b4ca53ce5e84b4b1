//! Helpers for the bridge tests: a real engine with a topic, in-process subscribers that
//! acknowledge like apps, and a record of every engine event and bridge report (the audit
//! trail's input).
#![allow(dead_code)]

use lockstep_bridges::{
    BridgeReport, BridgeStatus, Bridges, BridgesConfig, LinkState, Report, Reporter,
};
use lockstep_fhircast::{ContextChange, Mode, ScopeSet, SubscriptionRequest};
use lockstep_hub::{Engine, EngineEvent, HubSettings, TokenGrant};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

pub mod ccow;
pub mod viewer;

/// How long a test waits for something that should happen at once before it fails. A bound
/// on hanging, not a measurement: nothing is asserted about how fast it happened.
pub const PATIENCE: Duration = Duration::from_secs(15);

pub const MRN_SYSTEM: &str = "urn:oid:1.2.36.1.2001.1003.0";
pub const ACSN_SYSTEM: &str = "urn:oid:1.2.36.1.2001.1005.52";

pub struct Hub {
    pub engine: Engine,
    pub topic: Arc<str>,
    events: Arc<Mutex<Vec<EngineEvent>>>,
    reports: Arc<Mutex<Vec<Report>>>,
    changed: Arc<Notify>,
}

impl Hub {
    pub fn start() -> Hub {
        let engine = Engine::new(HubSettings::default());
        let topic = engine.create_topic();
        let events: Arc<Mutex<Vec<EngineEvent>>> = Arc::default();
        let changed = Arc::new(Notify::new());
        let (e, c) = (events.clone(), changed.clone());
        engine.observe(Arc::new(move |event| {
            e.lock().unwrap().push(event.clone());
            c.notify_waiters();
        }));
        Hub {
            engine,
            topic,
            events,
            reports: Arc::default(),
            changed,
        }
    }

    pub fn grant(&self, name: &str, scopes: &str) -> TokenGrant {
        TokenGrant {
            client_id: name.to_owned(),
            client_name: name.to_owned(),
            topic: self.topic.clone(),
            scopes: ScopeSet::parse(scopes).unwrap(),
            expires_at: Instant::now() + Duration::from_secs(3600),
            acknowledges: true,
        }
    }

    /// Publishes as the app `app`; returns the event id.
    pub fn publish(&self, app: &str, event: &str, context: Value) -> String {
        self.try_publish(app, event, context).unwrap()
    }

    pub fn try_publish(&self, app: &str, event: &str, context: Value) -> Result<String, String> {
        let id = uuid::Uuid::new_v4().to_string();
        let body = json!({
            "timestamp": "2026-11-26T10:00:00Z",
            "id": id,
            "event": { "hub.topic": &*self.topic, "hub.event": event, "context": context },
        });
        let change =
            ContextChange::parse(body.to_string().as_bytes()).map_err(|e| e.to_string())?;
        self.engine
            .publish(&self.grant(app, "fhircast/*.write"), change)
            .map_err(|e| e.to_string())?;
        Ok(id)
    }

    /// An app subscribed to `events`, acknowledging every notification with 200.
    pub fn subscriber(&self, name: &str, events: &str) -> Subscriber {
        let request = SubscriptionRequest {
            mode: Mode::Subscribe,
            topic: self.topic.to_string(),
            events: events
                .split(',')
                .map(|e| lockstep_fhircast::EventSpec::lookup(e).unwrap())
                .collect(),
            ignored_events: Vec::new(),
            lease_seconds: None,
            channel_endpoint: None,
            subscriber_name: Some(name.to_owned()),
        };
        let outcome = self
            .engine
            .subscribe(&self.grant(name, "fhircast/*.read"), request)
            .unwrap();
        let connection = self.engine.connect(&outcome.endpoint).unwrap();
        Subscriber {
            engine: self.engine.clone(),
            endpoint: outcome.endpoint,
            connection,
        }
    }

    /// Waits until an engine event matches `pred`, and returns it.
    pub async fn wait_for(&self, what: &str, pred: impl Fn(&EngineEvent) -> bool) -> EngineEvent {
        self.wait_in(&self.events, what, pred).await
    }

    /// Waits until a bridge's report matches `pred`, and returns it.
    pub async fn wait_for_report(&self, what: &str, pred: impl Fn(&Report) -> bool) -> Report {
        self.wait_in(&self.reports, what, pred).await
    }

    async fn wait_in<T: Clone>(
        &self,
        seen: &Mutex<Vec<T>>,
        what: &str,
        pred: impl Fn(&T) -> bool,
    ) -> T {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            let notified = self.changed.notified();
            if let Some(found) = seen.lock().unwrap().iter().find(|e| pred(e)) {
                return found.clone();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                panic!(
                    "waited in vain for {what}; bridge reports so far: {:#?}",
                    self.bridge_reports()
                );
            }
        }
    }

    /// Waits until bridge `name` reports a link state.
    pub async fn wait_for_state(&self, name: &str, state: LinkState) -> String {
        let found = self
            .wait_for_report(&format!("{name} to become {}", state.name()), |r| {
                r.bridge == name && r.kind == BridgeReport::Link(state)
            })
            .await;
        found.detail
    }

    /// What bridges reported so far: (bridge, report, detail).
    pub fn bridge_reports(&self) -> Vec<(String, BridgeReport, String)> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .map(|r| (r.bridge.clone(), r.kind, r.detail.clone()))
            .collect()
    }

    /// Where the bridges started by this hub report: into this hub's record.
    pub fn reporter(&self) -> Reporter {
        let (reports, changed) = (self.reports.clone(), self.changed.clone());
        Arc::new(move |report| {
            reports.lock().unwrap().push(report.clone());
            changed.notify_waiters();
        })
    }

    pub fn count(&self, name: &str, report: BridgeReport) -> usize {
        self.bridge_reports()
            .iter()
            .filter(|(b, r, _)| b == name && *r == report)
            .count()
    }

    pub fn current_patient_mrn(&self) -> Option<String> {
        self.engine
            .current_context_of(&self.topic)
            .and_then(|c| c.summary)
            .and_then(|s| s.patient_mrn)
    }

    pub async fn bridges(&self, config: Value) -> Bridges {
        let config: BridgesConfig = serde_json::from_value(config).unwrap();
        let config = config.validate().unwrap();
        Bridges::start(
            self.engine.clone(),
            self.topic.clone(),
            &config,
            self.reporter(),
        )
        .await
    }
}

pub struct Subscriber {
    engine: Engine,
    endpoint: String,
    connection: lockstep_hub::engine::Connection,
}

impl Subscriber {
    /// The next notification (the confirmation is skipped), acknowledged with 200.
    pub async fn next(&mut self) -> Value {
        loop {
            let frame = tokio::time::timeout(PATIENCE, self.connection.frames.recv())
                .await
                .expect("waited in vain for a notification")
                .expect("the subscription ended");
            let value: Value = serde_json::from_str(frame.as_str()).unwrap();
            if value.get("hub.mode").is_some() {
                continue;
            }
            let reply = json!({ "id": value["id"], "status": 200 }).to_string();
            self.engine.reply(&self.endpoint, &reply);
            return value;
        }
    }

    /// The next notification of event `name`, skipping others.
    pub async fn next_of(&mut self, name: &str) -> Value {
        loop {
            let n = self.next().await;
            if n["event"]["hub.event"] == name {
                return n;
            }
        }
    }
}

/// A Patient resource with an MRN in `system`.
pub fn patient(id: &str, system: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient", "id": id,
        "identifier": [{ "type": { "coding": [{ "code": "MR" }] }, "system": system, "value": mrn }],
        "name": [{ "family": "O'Brien", "given": ["Zoë", "Ann"] }],
        "birthDate": "1961-02-03", "gender": "female",
    })
}

/// An ImagingStudy-open context for a patient and accession.
pub fn study_open(patient_id: &str, mrn: &str, accession: &str, uid: &str) -> Value {
    json!([
        { "key": "study", "resource": {
            "resourceType": "ImagingStudy", "id": format!("s-{accession}"), "status": "available",
            "subject": { "reference": format!("Patient/{patient_id}") },
            "identifier": [
                { "type": { "coding": [{ "code": "ACSN" }] }, "system": ACSN_SYSTEM, "value": accession },
                { "system": "urn:dicom:uid", "value": format!("urn:oid:{uid}") },
            ],
        }},
        { "key": "patient", "resource": patient(patient_id, MRN_SYSTEM, mrn) },
    ])
}

pub fn identifiers() -> Value {
    json!({
        "mrn": [{ "system": MRN_SYSTEM, "issuer": "GENHOSP" }],
        "accession": [{ "system": ACSN_SYSTEM, "issuer": "GENHOSP" }],
    })
}

pub fn status_of(bridges: &Bridges, name: &str) -> BridgeStatus {
    bridges
        .statuses()
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no bridge {name}"))
}

/// Waits until `dir` holds `n` files named `*.json`, and returns them, oldest first.
pub async fn wait_for_files(dir: &std::path::Path, n: usize) -> Vec<std::path::PathBuf> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .collect();
        files.sort();
        if files.len() >= n {
            return files;
        }
        assert!(
            Instant::now() < deadline,
            "waited in vain for {n} file(s) in {}",
            dir.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
