//! The apps' side of the wire: the publisher, the answering subscribers, the arrival tracker.
//!
//! The publisher is raw HTTP/1.1; the subscribers are WebSocket clients that answer every
//! notification with `{id, status}`; the tracker times each event's arrival at the last of
//! its subscribers.
//!
//! The publisher writes requests by hand on a kept-alive socket, so that what is timed is the
//! server and the subscribers, not an HTTP client library.

use anyhow::{Context, anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use std::borrow::Cow;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// How long the bench waits for anything that should come before calling it lost.
pub const PATIENCE: Duration = Duration::from_secs(10);

/// A topic on a server and the bearer token for it.
#[derive(Debug, Clone, serde::Serialize, Deserialize)]
pub struct Access {
    pub topic: String,
    pub token: String,
}

/// A server under test, as the apps see it.
#[derive(Debug, Clone)]
pub struct Target {
    /// `127.0.0.1:<port>`
    pub host: String,
    pub topics: Vec<Access>,
}

/// An HTTP/1.1 connection kept alive across requests.
pub struct HttpConn {
    reader: ResponseReader,
    writer: OwnedWriteHalf,
}

pub struct ResponseReader {
    reader: BufReader<OwnedReadHalf>,
    line: String,
}

pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

impl HttpConn {
    pub async fn connect(host: &str) -> anyhow::Result<HttpConn> {
        let stream = TcpStream::connect(host)
            .await
            .with_context(|| format!("connect to {host}"))?;
        stream.set_nodelay(true)?;
        let (read, writer) = stream.into_split();
        Ok(HttpConn {
            reader: ResponseReader {
                reader: BufReader::with_capacity(64 * 1024, read),
                line: String::new(),
            },
            writer,
        })
    }

    pub async fn send(&mut self, request: &[u8]) -> anyhow::Result<()> {
        self.writer.write_all(request).await?;
        Ok(())
    }

    pub async fn response(&mut self) -> anyhow::Result<Response> {
        self.reader.next().await
    }

    pub async fn roundtrip(&mut self, request: &[u8]) -> anyhow::Result<Response> {
        self.send(request).await?;
        self.response().await
    }

    /// The two directions apart, for pipelining.
    pub fn split(self) -> (ResponseReader, OwnedWriteHalf) {
        (self.reader, self.writer)
    }
}

impl ResponseReader {
    /// Reads one response; bodies must carry a Content-Length (every server here sends one).
    pub async fn next(&mut self) -> anyhow::Result<Response> {
        self.line.clear();
        if self.reader.read_line(&mut self.line).await? == 0 {
            bail!("the server closed the connection");
        }
        let status: u16 = self
            .line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow!("bad status line {:?}", self.line))?;
        let mut length = 0usize;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).await?;
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                } else if name.eq_ignore_ascii_case("transfer-encoding") {
                    bail!("chunked responses are not expected here");
                }
            }
        }
        let mut body = vec![0; length];
        self.reader.read_exact(&mut body).await?;
        Ok(Response { status, body })
    }
}

/// A request, written out.
pub fn request(
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: {host}\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
    let mut out = out.into_bytes();
    out.extend_from_slice(body);
    out
}

/// A publish request for event `k` of `phase`: an ImagingStudy-open (a study and its patient,
/// about 1 KB, the usual context switch on a reading workstation).
pub fn publish_request(host: &str, access: &Access, phase: u32, k: usize) -> Vec<u8> {
    let body = event_body(&access.topic, phase, k);
    let auth = format!("Bearer {}", access.token);
    request(
        "POST",
        host,
        "/fhircast",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/json"),
        ],
        body.as_bytes(),
    )
}

pub fn event_body(topic: &str, phase: u32, k: usize) -> String {
    let patient = k % 997;
    serde_json::json!({
        "timestamp": "2026-11-26T10:00:00.000Z",
        "id": event_id(phase, k),
        "event": {
            "hub.topic": topic,
            "hub.event": "ImagingStudy-open",
            "context": [
                { "key": "study", "resource": {
                    "resourceType": "ImagingStudy",
                    "id": format!("s{k}"),
                    "status": "available",
                    "started": "2026-11-26T09:41:07Z",
                    "modality": [{ "system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT" }],
                    "description": "CT CHEST WITHOUT CONTRAST",
                    "numberOfSeries": 4,
                    "numberOfInstances": 812,
                    "subject": { "reference": format!("Patient/p{patient}") },
                    "identifier": [
                        { "system": "urn:dicom:uid", "value": format!("urn:oid:2.16.124.113543.6003.1154777499.{k}") },
                        { "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "ACSN" }] },
                          "value": format!("ACC-{k}") },
                    ],
                }},
                { "key": "patient", "resource": {
                    "resourceType": "Patient",
                    "id": format!("p{patient}"),
                    "identifier": [{
                        "type": { "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": "MR" }] },
                        "system": "urn:oid:1.2.36.146.595.217.0.1",
                        "value": format!("MRN-{patient}"),
                    }],
                    "name": [{ "family": "Doe", "given": ["Jane"] }],
                    "birthDate": "1970-01-02",
                    "gender": "female",
                }},
            ],
        },
    })
    .to_string()
}

fn event_id(phase: u32, k: usize) -> String {
    format!("bench-{phase}-{k}")
}

fn parse_event_id(id: &str) -> Option<(u32, usize)> {
    let (phase, k) = id.strip_prefix("bench-")?.split_once('-')?;
    Some((phase.parse().ok()?, k.parse().ok()?))
}

/// Counts each event's arrivals and keeps the time of the last one.
pub struct Tracker {
    epoch: Instant,
    phase: AtomicU32,
    slots: Box<[Slot]>,
    completed: AtomicU64,
    notify: Notify,
}

#[derive(Default)]
struct Slot {
    expect: AtomicU32,
    count: AtomicU32,
    last_ns: AtomicU64,
}

impl Tracker {
    pub fn new(capacity: usize) -> Arc<Tracker> {
        Arc::new(Tracker {
            epoch: Instant::now(),
            phase: AtomicU32::new(0),
            slots: (0..capacity).map(|_| Slot::default()).collect(),
            completed: AtomicU64::new(0),
            notify: Notify::new(),
        })
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Starts counting `phase`: event `k` is complete when `expect(k)` subscribers have it.
    /// Phases are numbered from 1 and never reused, so a late frame of an old phase (a
    /// replay of the current context to a new subscriber) is never counted.
    pub fn begin(&self, phase: u32, events: usize, expect: impl Fn(usize) -> u32) {
        assert!(events <= self.slots.len(), "tracker too small");
        for (k, slot) in self.slots[..events].iter().enumerate() {
            slot.expect.store(expect(k), Ordering::Relaxed);
            slot.count.store(0, Ordering::Relaxed);
            slot.last_ns.store(0, Ordering::Relaxed);
        }
        self.completed.store(0, Ordering::Relaxed);
        self.phase.store(phase, Ordering::Release);
    }

    /// Stops counting; frames that still come are acknowledged but not counted.
    pub fn end(&self) {
        self.phase.store(0, Ordering::Release);
    }

    fn counting(&self, phase: u32) -> bool {
        phase == self.phase.load(Ordering::Acquire)
    }

    fn arrive(&self, phase: u32, k: usize, at_ns: u64) {
        if !self.counting(phase) || k >= self.slots.len() {
            return;
        }
        let slot = &self.slots[k];
        // The time first, then the count: whoever completes the event sees the latest time.
        slot.last_ns.fetch_max(at_ns, Ordering::AcqRel);
        if slot.count.fetch_add(1, Ordering::AcqRel) + 1 == slot.expect.load(Ordering::Relaxed) {
            self.completed.fetch_add(1, Ordering::AcqRel);
            self.notify.notify_one();
        }
    }

    pub fn completed(&self) -> u64 {
        self.completed.load(Ordering::Acquire)
    }

    /// When event `k` reached its last subscriber, once it has.
    pub fn done_at(&self, k: usize) -> Option<u64> {
        let slot = &self.slots[k];
        (slot.count.load(Ordering::Acquire) >= slot.expect.load(Ordering::Relaxed))
            .then(|| slot.last_ns.load(Ordering::Acquire))
    }

    /// Waits until event `k` has reached every subscriber; `None` after [`PATIENCE`].
    pub async fn wait_event(&self, k: usize) -> Option<u64> {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        loop {
            if let Some(at) = self.done_at(k) {
                return Some(at);
            }
            // A stale permit only costs one more look.
            if tokio::time::timeout_at(deadline, self.notify.notified())
                .await
                .is_err()
            {
                return self.done_at(k);
            }
        }
    }

    /// Waits until at least `n` events are complete; false after [`PATIENCE`] without progress.
    pub async fn wait_completed(&self, n: u64) -> bool {
        loop {
            let before = self.completed();
            if before >= n {
                return true;
            }
            let notified = tokio::time::timeout(PATIENCE, self.notify.notified()).await;
            if notified.is_err() && self.completed() == before {
                return false;
            }
        }
    }

    /// The latest arrival of any of the first `events` events.
    pub fn last_arrival(&self, events: usize) -> u64 {
        self.slots[..events]
            .iter()
            .map(|s| s.last_ns.load(Ordering::Acquire))
            .max()
            .unwrap_or(0)
    }
}

/// What one subscriber saw of the current phase; written by its task alone.
#[derive(Default)]
pub struct SubStats {
    phase: AtomicU32,
    received: AtomicU64,
    /// One more than the last event index received (0: none yet).
    next: AtomicU64,
    /// Events that came again or before one already received.
    disorder: AtomicU64,
    closed: AtomicBool,
}

impl SubStats {
    fn record(&self, phase: u32, k: usize) {
        if self.phase.load(Ordering::Relaxed) != phase {
            self.phase.store(phase, Ordering::Relaxed);
            self.received.store(0, Ordering::Relaxed);
            self.next.store(0, Ordering::Relaxed);
        }
        self.received.fetch_add(1, Ordering::Relaxed);
        let k = k as u64;
        if k < self.next.load(Ordering::Relaxed) {
            self.disorder.fetch_add(1, Ordering::Relaxed);
        } else {
            self.next.store(k + 1, Ordering::Relaxed);
        }
    }
}

/// What a phase delivered, checked subscriber by subscriber.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Delivery {
    /// Deliveries that never came (expected minus received, over every subscriber).
    pub lost: u64,
    /// Deliveries that came twice or out of order.
    pub disorder: u64,
    /// Subscribers whose socket the server closed.
    pub dropped: u64,
}

impl Delivery {
    pub fn add(&mut self, other: Delivery) {
        self.lost += other.lost;
        self.disorder += other.disorder;
        self.dropped = self.dropped.max(other.dropped);
    }

    pub fn clean(&self) -> bool {
        self.lost == 0 && self.disorder == 0 && self.dropped == 0
    }
}

struct Member {
    topic: usize,
    stats: Arc<SubStats>,
    task: JoinHandle<()>,
}

/// A set of subscribers on one server, each a real WebSocket client in its own task.
pub struct Fleet {
    target: Target,
    tracker: Arc<Tracker>,
    members: Vec<Member>,
    stop: watch::Sender<bool>,
}

#[derive(Deserialize)]
struct IdOnly<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
}

impl Fleet {
    pub fn new(target: Target, tracker: Arc<Tracker>) -> Fleet {
        Fleet {
            target,
            tracker,
            members: Vec::new(),
            stop: watch::channel(false).0,
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Subscribers on `topic`.
    pub fn on_topic(&self, topic: usize) -> usize {
        self.members.iter().filter(|m| m.topic == topic).count()
    }

    /// Adds `count` subscribers to topic `topic`, each subscribed, connected and confirmed.
    pub async fn grow(&mut self, topic: usize, count: usize) -> anyhow::Result<()> {
        // A few subscriptions at a time: connection setup is not what is measured.
        const PARALLEL: usize = 8;
        let mut workers = Vec::new();
        for w in 0..PARALLEL.min(count) {
            let share = count / PARALLEL.min(count) + usize::from(w < count % PARALLEL.min(count));
            let target = self.target.clone();
            workers.push(tokio::spawn(async move {
                let mut http = HttpConn::connect(&target.host).await?;
                let mut sockets = Vec::with_capacity(share);
                for _ in 0..share {
                    sockets.push(subscribe(&mut http, &target, topic).await?);
                }
                anyhow::Ok(sockets)
            }));
        }
        for worker in workers {
            for socket in worker.await?? {
                let stats = Arc::new(SubStats::default());
                let task = tokio::spawn(run_subscriber(
                    socket,
                    self.tracker.clone(),
                    stats.clone(),
                    self.stop.subscribe(),
                ));
                self.members.push(Member { topic, stats, task });
            }
        }
        Ok(())
    }

    /// Checks every subscriber against what `phase` sent to its topic.
    pub fn check(&self, phase: u32, sent_to_topic: impl Fn(usize) -> u64) -> Delivery {
        let mut delivery = Delivery::default();
        for member in &self.members {
            let expected = sent_to_topic(member.topic);
            let stats = &member.stats;
            let received = if stats.phase.load(Ordering::Acquire) == phase {
                stats.received.load(Ordering::Acquire)
            } else {
                0
            };
            delivery.lost += expected.saturating_sub(received);
            if stats.closed.load(Ordering::Acquire) {
                delivery.dropped += 1;
            }
        }
        delivery.disorder += self
            .members
            .iter()
            .map(|m| m.stats.disorder.swap(0, Ordering::AcqRel))
            .sum::<u64>();
        delivery
    }

    /// Closes every socket with 1000 (a normal goodbye, so the hub reports nothing).
    pub async fn close(self) {
        let _ = self.stop.send(true);
        for member in self.members {
            let _ = tokio::time::timeout(Duration::from_secs(2), member.task).await;
        }
    }
}

async fn subscribe(http: &mut HttpConn, target: &Target, topic: usize) -> anyhow::Result<Socket> {
    let access = &target.topics[topic];
    let form = format!(
        "hub.channel.type=websocket&hub.mode=subscribe&hub.topic={}&hub.events=ImagingStudy-open",
        access.topic
    );
    let auth = format!("Bearer {}", access.token);
    let response = http
        .roundtrip(&request(
            "POST",
            &target.host,
            "/fhircast",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            form.as_bytes(),
        ))
        .await?;
    if response.status != 202 {
        bail!(
            "subscribe answered {}: {}",
            response.status,
            String::from_utf8_lossy(&response.body)
        );
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body)?;
    let endpoint = body["hub.channel.endpoint"]
        .as_str()
        .ok_or_else(|| anyhow!("no hub.channel.endpoint in {body}"))?;
    // tungstenite zero-fills the free part of its read buffer (128 KiB by default) before every
    // read; with 1,000 subscribers in this process that memset, not any server, would set the
    // pace. Notifications are about 1 KB, and larger frames still grow the buffer.
    let config = WebSocketConfig::default().read_buffer_size(4 * 1024);
    let (mut socket, _) =
        tokio_tungstenite::connect_async_with_config(endpoint, Some(config), true)
            .await
            .with_context(|| format!("connect {endpoint}"))?;
    // The first frame is the confirmation: from then on the server counts this subscriber.
    loop {
        match tokio::time::timeout(PATIENCE, socket.next()).await {
            Ok(Some(Ok(Message::Text(_)))) => return Ok(socket),
            Ok(Some(Ok(_))) => continue,
            other => bail!("no confirmation on {endpoint}: {other:?}"),
        }
    }
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn run_subscriber(
    mut socket: Socket,
    tracker: Arc<Tracker>,
    stats: Arc<SubStats>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            incoming = socket.next() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    let at = tracker.now_ns();
                    let Ok(IdOnly { id: Some(id) }) = serde_json::from_str::<IdOnly>(text.as_str())
                    else {
                        continue;
                    };
                    // Recorded before it counts: once the event is complete, the check
                    // that follows must find it here.
                    if let Some((phase, k)) = parse_event_id(&id)
                        && tracker.counting(phase)
                    {
                        stats.record(phase, k);
                        tracker.arrive(phase, k, at);
                    }
                    // Every notification is answered, as the spec asks of a subscriber.
                    let reply = format!("{{\"id\":{},\"status\":200}}", serde_json::Value::from(id.as_ref()));
                    if socket.send(Message::text(reply)).await.is_err() {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
            _ = stop.changed() => {
                let _ = socket.close(None).await;
                // Wait briefly for the server's close; the baseline never sends one.
                let _ = tokio::time::timeout(Duration::from_millis(300), async {
                    while let Some(Ok(_)) = socket.next().await {}
                })
                .await;
                return;
            }
        }
    }
    stats.closed.store(true, Ordering::Release);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_round_trip() {
        assert_eq!(parse_event_id(&event_id(3, 1234)), Some((3, 1234)));
        assert_eq!(parse_event_id("other"), None);
    }

    #[test]
    fn disorder_is_counted() {
        let stats = SubStats::default();
        for k in [0, 1, 3, 2, 3] {
            stats.record(1, k);
        }
        assert_eq!(stats.received.load(Ordering::Relaxed), 5);
        assert_eq!(stats.disorder.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn the_event_is_valid_json() {
        let body = event_body("T", 1, 5);
        let value: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(value["id"], "bench-1-5");
        assert!(body.len() > 950, "a realistic size: {}", body.len());
    }
}
