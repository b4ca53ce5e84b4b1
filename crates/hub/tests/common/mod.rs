//! A real hub on 127.0.0.1:0, a real HTTP client and real WebSocket subscribers.
#![allow(dead_code)] // each test file uses its own part of the harness

use futures_util::{SinkExt, StreamExt};
use lockstep_fhircast::ScopeSet;
use lockstep_hub::{Authority, ClientRegistration, Engine, HubSettings, HubState};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long a test waits for a frame that should come.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long a test listens to be sure a frame does not come.
pub const QUIET: Duration = Duration::from_millis(300);

pub const SECRET: &str = "test-secret-123";

/// Where the public SMART client's codes go.
pub const SMART_REDIRECT: &str = "http://127.0.0.1:9/smart/callback";

/// The clients every test hub registers.
pub fn clients() -> Vec<ClientRegistration> {
    let client = |id: &str, scopes: &str| ClientRegistration {
        client_id: id.into(),
        client_secret: SECRET.into(),
        scopes: ScopeSet::parse(scopes).unwrap(),
        name: format!("{id} app"),
        acknowledges: true,
        redirect_uris: Vec::new(),
    };
    vec![
        client("app", "fhircast/*.read fhircast/*.write"),
        client("reader", "fhircast/*.read"),
        client(
            "patient-only",
            "fhircast/Patient-open.read fhircast/Patient-close.read fhircast/Patient-open.write",
        ),
        // An app registered as one that never replies (as OHIF's FHIRcast service).
        ClientRegistration {
            acknowledges: false,
            redirect_uris: Vec::new(),
            ..client("viewer", "fhircast/*.read fhircast/*.write")
        },
        // A SMART app in a browser: a public client, PKCE only.
        ClientRegistration {
            client_secret: String::new(),
            redirect_uris: vec![SMART_REDIRECT.into()],
            ..client(
                "smart-viewer",
                "fhircast/*.read fhircast/Patient-open.write",
            )
        },
    ]
}

pub struct Hub {
    pub origin: String,
    pub hub_url: String,
    pub topic: String,
    pub engine: Engine,
    pub http: reqwest::Client,
    authority: Arc<Authority>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl Hub {
    pub async fn start() -> Hub {
        Self::start_with(HubSettings::default()).await
    }

    pub async fn start_with(settings: HubSettings) -> Hub {
        Self::start_with_client(settings, reqwest::Client::new()).await
    }

    /// A hub with `settings`, driven by `http` (e.g. a client that trusts a test certificate);
    /// `origin` is the one the hub hands out (`https://…` when TLS is configured).
    pub async fn start_with_client(settings: HubSettings, http: reqwest::Client) -> Hub {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let engine = Engine::new(settings.clone());
        let topic = engine.create_topic();
        let authority = Arc::new(Authority::new(clients(), settings.token_lifetime()));
        let state = HubState::new(engine.clone(), authority.clone(), topic.clone(), port);
        let hub_url = state.hub_url();
        let origin = state.origin.to_string();
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(lockstep_hub::serve(vec![listener], state, async {
            let _ = stopped.await;
        }));
        Hub {
            origin,
            hub_url,
            topic: topic.to_string(),
            engine,
            http,
            authority,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// `127.0.0.1:<port>`: where to open raw TCP connections to this hub.
    /// The hub's authorization server (its grants: EHR launches).
    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    pub fn address(&self) -> String {
        let port = self.origin.rsplit(':').next().unwrap();
        format!("127.0.0.1:{port}")
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.unwrap().unwrap();
        }
    }

    /// A token for a registered client, through the real token endpoint.
    pub async fn token(&self, client_id: &str) -> String {
        let response = self.token_response(client_id, None).await;
        assert_eq!(response.status(), 200, "token for {client_id}");
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    pub async fn token_response(&self, client_id: &str, scope: Option<&str>) -> reqwest::Response {
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        self.http
            .post(format!("{}/auth/token", self.origin))
            .basic_auth(client_id, Some(SECRET))
            .form(&form)
            .send()
            .await
            .unwrap()
    }

    /// POSTs `body` as it is, with this content type, to `hub.url`.
    pub async fn post_raw(
        &self,
        token: &str,
        content_type: &str,
        body: impl Into<reqwest::Body>,
    ) -> reqwest::Response {
        self.http
            .post(&self.hub_url)
            .bearer_auth(token)
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap()
    }

    /// POSTs a form to `hub.url`.
    pub async fn post_form(&self, token: &str, form: &[(&str, &str)]) -> reqwest::Response {
        self.http
            .post(&self.hub_url)
            .bearer_auth(token)
            .form(form)
            .send()
            .await
            .unwrap()
    }

    /// A subscribe request for `events` on this hub's topic.
    pub async fn subscribe(&self, token: &str, events: &str) -> reqwest::Response {
        self.post_form(
            token,
            &[
                ("hub.channel.type", "websocket"),
                ("hub.mode", "subscribe"),
                ("hub.topic", &self.topic),
                ("hub.events", events),
            ],
        )
        .await
    }

    /// Subscribes, connects and reads the confirmation.
    pub async fn subscriber(&self, client_id: &str, events: &str) -> Subscriber {
        let token = self.token(client_id).await;
        self.subscriber_with_token(&token, events).await
    }

    pub async fn subscriber_with_token(&self, token: &str, events: &str) -> Subscriber {
        let response = self.subscribe(token, events).await;
        assert_eq!(response.status(), 202, "subscribe {events}");
        let endpoint = response.json::<Value>().await.unwrap()["hub.channel.endpoint"]
            .as_str()
            .unwrap()
            .to_owned();
        let mut subscriber = Subscriber::connect(&endpoint).await.expect("connect");
        subscriber.confirmation = subscriber.next().await;
        assert_eq!(
            subscriber.confirmation["hub.mode"], "subscribe",
            "{}",
            subscriber.confirmation
        );
        subscriber
    }

    /// POSTs an event (JSON) to `hub.url`.
    pub async fn publish(&self, token: &str, body: &Value) -> reqwest::Response {
        self.http
            .post(&self.hub_url)
            .bearer_auth(token)
            .json(body)
            .send()
            .await
            .unwrap()
    }

    /// GETs `hub.url/{path}` with the token.
    pub async fn get(&self, token: &str, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}/{path}", self.hub_url))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    /// Get Current Context.
    pub async fn current(&self, token: &str) -> reqwest::Response {
        self.get(token, &self.topic).await
    }

    /// A request for a context change on this hub's topic.
    pub fn event(&self, name: &str, context: Value) -> Value {
        event_on(&self.topic, name, context)
    }
}

pub fn event_on(topic: &str, name: &str, context: Value) -> Value {
    json!({
        "timestamp": "2026-11-26T10:00:00.000Z",
        "id": uuid::Uuid::new_v4().to_string(),
        "event": { "hub.topic": topic, "hub.event": name, "context": context },
    })
}

pub fn patient(id: &str, mrn: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "id": id,
        "identifier": [{
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] },
            "system": "urn:oid:1.2.36.146.595.217.0.1",
            "value": mrn,
        }],
        "name": [{ "family": "Doe", "given": ["Jane"] }],
        "birthDate": "1970-01-02",
        "gender": "female",
    })
}

pub fn study(id: &str, patient_id: &str, accession: &str) -> Value {
    json!({
        "resourceType": "ImagingStudy",
        "id": id,
        "status": "available",
        "subject": { "reference": format!("Patient/{patient_id}") },
        "identifier": [
            { "system": "urn:dicom:uid", "value": format!("urn:oid:2.16.124.113543.{id}") },
            {
                "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
                "value": accession,
            },
        ],
    })
}

pub fn patient_context(id: &str, mrn: &str) -> Value {
    json!([{ "key": "patient", "resource": patient(id, mrn) }])
}

pub fn study_context(study_id: &str, patient_id: &str) -> Value {
    json!([
        { "key": "study", "resource": study(study_id, patient_id, "ACC-1") },
        { "key": "patient", "resource": patient(patient_id, "MRN-1") },
    ])
}

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub struct Subscriber {
    pub socket: Socket,
    pub endpoint: String,
    pub confirmation: Value,
}

/// What arrived when a frame was expected.
#[derive(Debug)]
pub enum Arrival {
    Frame(Value),
    Closed(Option<u16>),
    Nothing,
}

impl Subscriber {
    pub async fn connect(
        endpoint: &str,
    ) -> Result<Subscriber, tokio_tungstenite::tungstenite::Error> {
        let (socket, _) = tokio_tungstenite::connect_async(endpoint).await?;
        Ok(Subscriber {
            socket,
            endpoint: endpoint.to_owned(),
            confirmation: Value::Null,
        })
    }

    /// The next frame, failing the test if none comes in time.
    pub async fn next(&mut self) -> Value {
        match self.arrival(WAIT).await {
            Arrival::Frame(frame) => frame,
            other => panic!("expected a frame, got {other:?}"),
        }
    }

    /// Waits up to `within` for a frame or the close of the socket.
    pub async fn arrival(&mut self, within: Duration) -> Arrival {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Err(_) => return Arrival::Nothing,
                Ok(None) => return Arrival::Closed(None),
                Ok(Some(Err(_))) => return Arrival::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    return Arrival::Frame(
                        serde_json::from_str(text.as_str()).expect("frames are JSON"),
                    );
                }
                Ok(Some(Ok(Message::Close(frame)))) => {
                    return Arrival::Closed(frame.map(|f| u16::from(f.code)));
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    /// The next text frame exactly as sent.
    pub async fn socket_text(&mut self) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            match tokio::time::timeout_at(deadline, self.socket.next()).await {
                Ok(Some(Ok(Message::Text(text)))) => return text.as_str().to_owned(),
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
                other => panic!("expected a text frame, got {other:?}"),
            }
        }
    }

    /// Asserts that no frame arrives for a little while.
    pub async fn assert_quiet(&mut self) {
        match self.arrival(QUIET).await {
            Arrival::Nothing => {}
            other => panic!("expected nothing, got {other:?}"),
        }
    }

    /// Asserts that the hub closes the socket (after any frames, which are returned).
    pub async fn closed(&mut self) -> (Vec<Value>, Option<u16>) {
        let mut frames = Vec::new();
        loop {
            match self.arrival(WAIT).await {
                Arrival::Frame(frame) => frames.push(frame),
                Arrival::Closed(code) => return (frames, code),
                Arrival::Nothing => {
                    panic!("the hub did not close the socket; frames so far: {frames:?}")
                }
            }
        }
    }

    pub async fn reply(&mut self, reply: Value) {
        self.socket
            .send(Message::text(reply.to_string()))
            .await
            .unwrap();
    }

    pub async fn ack(&mut self, frame: &Value, status: u16) {
        self.reply(json!({ "id": frame["id"], "status": status }))
            .await;
    }

    pub async fn close_with(&mut self, code: u16) {
        let frame = CloseFrame {
            code: code.into(),
            reason: "".into(),
        };
        let _ = self.socket.close(Some(frame)).await;
    }
}

/// A copy of `value` with the value of every member named in `keys` (at any depth) replaced by
/// a placeholder, so snapshots pin the shape of a frame and not its random parts.
pub fn redacted(value: &Value, keys: &[(&str, &str)]) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| match keys.iter().find(|(key, _)| key == k) {
                    Some((_, placeholder)) => (k.clone(), Value::String(placeholder.to_string())),
                    None => (k.clone(), redacted(v, keys)),
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(|v| redacted(v, keys)).collect()),
        other => other.clone(),
    }
}

pub fn report(id: &str, patient_id: &str, status: &str) -> Value {
    json!({
        "resourceType": "DiagnosticReport",
        "id": id,
        "status": status,
        "subject": { "reference": format!("Patient/{patient_id}") },
        "basedOn": [{ "identifier": {
            "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
            "value": "ACC-1",
        }}],
        "imagingStudy": [{ "reference": "ImagingStudy/s1" }],
    })
}

/// A DiagnosticReport-open context: the report, its study and its patient.
pub fn report_context(report_id: &str, patient_id: &str) -> Value {
    json!([
        { "key": "report", "resource": report(report_id, patient_id, "preliminary") },
        { "key": "study", "resource": study("s1", patient_id, "ACC-1") },
        { "key": "patient", "resource": patient(patient_id, "MRN-1") },
    ])
}

/// A DiagnosticReport-update request on `version` with the given Bundle entries.
pub fn update(hub: &Hub, report_id: &str, version: &str, bundle_id: &str, entries: Value) -> Value {
    let mut event = hub.event(
        "DiagnosticReport-update",
        json!([
            { "key": "report", "reference": { "reference": format!("DiagnosticReport/{report_id}") } },
            { "key": "updates", "resource": {
                "resourceType": "Bundle", "id": bundle_id, "type": "transaction", "entry": entries,
            }},
        ]),
    );
    event["event"]["context.versionId"] = version.into();
    event
}

pub fn put(resource: Value) -> Value {
    json!({ "request": { "method": "PUT" }, "resource": resource })
}

pub fn observation(id: &str, text: &str) -> Value {
    json!({
        "resourceType": "Observation", "id": id, "status": "preliminary",
        "code": { "text": text }, "subject": { "reference": "Patient/p1" },
    })
}
