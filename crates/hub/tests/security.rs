//! The hub as a server under attack: every local user, process and web page can reach
//! 127.0.0.1. One test per threat; each shows the attack refused *and* an honest client served
//! afterwards, against a real hub with real HTTP, raw TCP and WebSocket clients.

mod common;
use common::{Hub, SECRET, Subscriber, WAIT, patient_context};
use futures_util::SinkExt;
use lockstep_hub::HubSettings;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

// ---------------------------------------------------------------------------------------------
// Helpers

/// An honest app does the whole round once more: token, subscribe, socket, publish, receive.
async fn serves_honest_clients(hub: &Hub) {
    serves_honest_client(hub, "patient-only").await;
}

async fn serves_honest_client(hub: &Hub, client_id: &str) {
    let token = hub.token(client_id).await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    let event = hub.event("Patient-open", patient_context("honest", "H-1"));
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
    receive(&mut sub, &event).await;
}

/// Reads frames until `event` arrives (a replay of the current context may come first).
async fn receive(sub: &mut Subscriber, event: &Value) {
    let deadline = Instant::now() + WAIT;
    while Instant::now() < deadline {
        if sub.next().await["id"] == event["id"] {
            return;
        }
    }
    panic!("the event never arrived");
}

/// Sends raw bytes on a fresh connection and returns everything the hub answers until it
/// closes the connection (or a few seconds pass).
async fn raw_exchange(address: &str, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(address).await.unwrap();
    stream.write_all(request).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(WAIT, stream.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of a raw HTTP response.
fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Waits until the hub closes `stream` (EOF or reset); returns how long that took.
async fn closed_within(stream: &mut TcpStream, limit: Duration) -> Duration {
    let started = Instant::now();
    let mut buf = [0u8; 1024];
    loop {
        match tokio::time::timeout(
            limit.saturating_sub(started.elapsed()),
            stream.read(&mut buf),
        )
        .await
        {
            Ok(Ok(0)) | Ok(Err(_)) => return started.elapsed(),
            Ok(Ok(_)) => continue,
            Err(_) => panic!("the hub kept the connection open for {limit:?}"),
        }
    }
}

fn subscribe_form<'a>(topic: &'a str, endpoint: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut form = vec![
        ("hub.channel.type", "websocket"),
        ("hub.mode", "subscribe"),
        ("hub.topic", topic),
        ("hub.events", "Patient-open"),
    ];
    if let Some(endpoint) = endpoint {
        form.push(("hub.channel.endpoint", endpoint));
    }
    form
}

async fn endpoint_of(response: reqwest::Response) -> String {
    assert_eq!(response.status(), 202);
    response.json::<Value>().await.unwrap()["hub.channel.endpoint"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The status and body of a refusal, for comparing two refusals byte for byte.
async fn answer(response: reqwest::Response) -> (u16, String) {
    (response.status().as_u16(), response.text().await.unwrap())
}

// ---------------------------------------------------------------------------------------------
// Web pages in the clinician's browser

#[tokio::test]
async fn dns_rebinding_a_host_other_than_the_hubs_own_is_refused() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let address = hub.address();
    let port = address.rsplit(':').next().unwrap();
    let current = format!("{}/{}", hub.hub_url, hub.topic);
    for host in [
        "evil.example".to_owned(),
        format!("evil.example:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
        format!("localhost.:{port}"),
        "127.0.0.1:1".to_owned(),
    ] {
        let response = hub
            .http
            .get(&current)
            .header("host", &host)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "{host}");
        assert!(response.text().await.unwrap().contains("Host"));
    }

    // What a browser never sends but a crafted request might: no Host, two Hosts, an absolute
    // request target naming another authority.
    let path = format!("/fhircast/{}", hub.topic);
    let auth = format!("Authorization: Bearer {token}\r\nConnection: close\r\n");
    for request in [
        format!("GET {path} HTTP/1.0\r\n{auth}\r\n"),
        format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nHost: evil.example\r\n{auth}\r\n"),
        format!("GET http://evil.example{path} HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n"),
    ] {
        let response = raw_exchange(&address, request.as_bytes()).await;
        assert!(
            matches!(status_of(&response), 421 | 400),
            "{request}\n→ {response}"
        );
        assert!(!response.contains("context.type"), "{response}");
    }
    // The same raw request with the hub's own Host is served: the refusals above are the guard.
    let honest = format!("GET {path} HTTP/1.1\r\nHost: {address}\r\n{auth}\r\n");
    let response = raw_exchange(&address, honest.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");

    // A WebSocket upgrade through a rebound name is refused, and the endpoint stays usable.
    let endpoint = endpoint_of(
        hub.post_form(&token, &subscribe_form(&hub.topic, None))
            .await,
    )
    .await;
    let mut request = endpoint.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("host", "evil.example".parse().unwrap());
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 421)
        }
        other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
    }
    let mut sub = Subscriber::connect(&endpoint).await.unwrap();
    assert_eq!(sub.next().await["hub.mode"], "subscribe");
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn cross_site_requests_are_refused_and_get_no_cors_headers() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let event = hub.event("Patient-open", patient_context("from-a-web-page", "W-1"));
    for origin in ["https://evil.example", "null", hub.origin.as_str()] {
        let requests = [
            hub.http.post(&hub.hub_url).bearer_auth(&token).json(&event),
            hub.http
                .get(format!("{}/{}", hub.hub_url, hub.topic))
                .bearer_auth(&token),
            hub.http
                .post(format!("{}/auth/token", hub.origin))
                .basic_auth("app", Some(SECRET))
                .form(&[("grant_type", "client_credentials")]),
            hub.http
                .post(&hub.hub_url)
                .bearer_auth(&token)
                .form(&subscribe_form(&hub.topic, None)),
        ];
        for request in requests {
            let response = request.header("origin", origin).send().await.unwrap();
            assert_eq!(response.status(), 403, "{origin}");
            assert!(
                response
                    .headers()
                    .get("access-control-allow-origin")
                    .is_none()
            );
            assert!(
                response
                    .text()
                    .await
                    .unwrap()
                    .contains("hub.allowed_origins")
            );
        }
    }
    // Nothing a page sent took effect.
    let current: Value = hub.current(&token).await.json().await.unwrap();
    assert_eq!(current["context.type"], "");
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn a_cross_site_websocket_upgrade_is_refused_even_with_a_valid_endpoint() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let endpoint = endpoint_of(
        hub.post_form(&token, &subscribe_form(&hub.topic, None))
            .await,
    )
    .await;
    for origin in ["https://evil.example", "null"] {
        let mut request = endpoint.as_str().into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
        match tokio_tungstenite::connect_async(request).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 403, "{origin}")
            }
            other => panic!("expected a refusal, got {:?}", other.map(|_| ())),
        }
    }
    // The refused upgrades did not use up the endpoint: its app still connects.
    let mut sub = Subscriber::connect(&endpoint).await.unwrap();
    assert_eq!(sub.next().await["hub.mode"], "subscribe");
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn preflights_are_answered_for_configured_origins_only() {
    let allowed = "http://localhost:3000";
    let hub = Hub::start_with(HubSettings {
        allowed_origins: vec![allowed.into()],
        ..Default::default()
    })
    .await;
    let preflight = |origin: &str| {
        hub.http
            .request(reqwest::Method::OPTIONS, &hub.hub_url)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .send()
    };
    let ok = preflight(allowed).await.unwrap();
    assert!(ok.status().is_success(), "{}", ok.status());
    // Never a wildcard, never credentials: exactly the configured origin.
    assert_eq!(ok.headers()["access-control-allow-origin"], allowed);
    assert!(
        ok.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    let methods = ok.headers()["access-control-allow-methods"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(methods.contains("POST"), "{methods}");
    for origin in [
        "https://evil.example",
        "null",
        "http://localhost:3001",
        "http://localhost:3000.evil.example",
    ] {
        let refused = preflight(origin).await.unwrap();
        assert_eq!(refused.status(), 403, "{origin}");
        assert!(
            refused
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
    }
    // The configured web app itself is served, with CORS, over HTTP and WebSocket.
    let token = hub.token("app").await;
    let response = hub
        .http
        .get(format!("{}/{}", hub.hub_url, hub.topic))
        .header("origin", allowed)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["access-control-allow-origin"], allowed);
    let endpoint = endpoint_of(
        hub.post_form(&token, &subscribe_form(&hub.topic, None))
            .await,
    )
    .await;
    let mut request = endpoint.as_str().into_client_request().unwrap();
    request
        .headers_mut()
        .insert("origin", allowed.parse().unwrap());
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    let _ = socket.close(None).await;
    serves_honest_clients(&hub).await;
}

// ---------------------------------------------------------------------------------------------
// Other local processes and users

#[tokio::test]
async fn every_api_needs_a_valid_bearer_token() {
    let hub = Hub::start().await;
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    let honest = hub.token("app").await;
    let alias = format!("{}/api/hub", hub.origin);
    for base in [hub.hub_url.clone(), alias] {
        let topic_url = format!("{base}/{}", hub.topic);
        for credentials in [None, Some("Bearer forged"), Some("Basic YXBwOnNlY3JldA==")] {
            let requests = [
                hub.http.post(&base).json(&event),
                hub.http.post(&base).form(&subscribe_form(&hub.topic, None)),
                hub.http.get(&topic_url),
                hub.http.post(&topic_url).json(&event),
            ];
            for request in requests {
                let request = match credentials {
                    Some(value) => request.header("authorization", value),
                    None => request,
                };
                let response = request.send().await.unwrap();
                assert_eq!(response.status(), 401, "{base} {credentials:?}");
                assert_eq!(response.headers()["www-authenticate"], "Bearer");
            }
        }
    }
    // A token with one character changed is as good as none.
    let mut tampered = honest.clone().into_bytes();
    tampered[10] = if tampered[10] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    assert_eq!(hub.current(&tampered).await.status(), 401);
    let current: Value = hub.current(&honest).await.json().await.unwrap();
    assert_eq!(current["context.type"], "", "nothing was published");
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn topics_and_channel_endpoints_are_unguessable() {
    let hub = Hub::start().await;
    let other = Hub::start().await;
    assert_ne!(hub.topic, other.topic);
    let token = hub.token("app").await;
    let mut ids = vec![hub.topic.clone(), other.topic.clone()];
    for _ in 0..40 {
        let endpoint = endpoint_of(
            hub.post_form(&token, &subscribe_form(&hub.topic, None))
                .await,
        )
        .await;
        ids.push(endpoint.rsplit('/').next().unwrap().to_owned());
    }
    let mut ones = 0;
    for id in &ids {
        // URL-safe base64 of 32 random bytes: 256 bits, twice the 128 the spec asks for.
        assert_eq!(id.len(), 43, "{id}");
        assert!(
            id.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
        ones += decode_base64url(id)
            .iter()
            .map(|b| b.count_ones())
            .sum::<u32>();
    }
    let unique: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "an id repeated");
    // A counter, a clock or a hash of patient data would not look like fair coin flips.
    let share = f64::from(ones) / (ids.len() * 256) as f64;
    assert!((0.45..0.55).contains(&share), "share of one bits: {share}");

    // Guessing gets nowhere, even one character away from a real endpoint.
    for (i, real) in ids[2..].iter().enumerate() {
        let mut guess = real.clone().into_bytes();
        guess[i] = if guess[i] == b'A' { b'B' } else { b'A' };
        let url = format!("{}/ws/{}", hub.hub_url, String::from_utf8(guess).unwrap());
        match Subscriber::connect(&url.replace("http://", "ws://")).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status(), 404)
            }
            other => panic!("a guessed endpoint: {:?}", other.map(|_| ())),
        }
    }
    serves_honest_clients(&hub).await;
}

fn decode_base64url(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut bits = 0u32;
    let mut width = 0;
    let mut out = Vec::new();
    for c in text.bytes() {
        bits = (bits << 6) | ALPHABET.iter().position(|a| *a == c).unwrap() as u32;
        width += 6;
        if width >= 8 {
            width -= 8;
            out.push((bits >> width) as u8);
        }
    }
    out
}

#[tokio::test]
async fn a_token_is_bound_to_its_client_and_its_topic() {
    let hub = Hub::start().await;
    let app = hub.token("app").await;
    let reader = hub.token("reader").await;
    let other_topic = hub.engine.create_topic();

    // Another session's topic: refused.
    let event = common::event_on(&other_topic, "Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&app, &event).await.status(), 404);
    let response = hub.get(&app, &other_topic).await;
    assert_eq!(response.status(), 404);
    let response = hub
        .post_form(&app, &subscribe_form(&other_topic, None))
        .await;
    assert_eq!(response.status(), 404);

    // A client cannot act beyond its own grant ...
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    let refused = hub.publish(&reader, &event).await;
    assert_eq!(refused.status(), 403);
    // ... nor take over another client's subscription, even knowing its endpoint.
    let endpoint = endpoint_of(hub.post_form(&app, &subscribe_form(&hub.topic, None)).await).await;
    let mut victim = Subscriber::connect(&endpoint).await.unwrap();
    victim.next().await;
    let resubscribe = hub
        .post_form(&reader, &subscribe_form(&hub.topic, Some(&endpoint)))
        .await;
    assert_eq!(resubscribe.status(), 404);
    let unsubscribe = hub
        .post_form(
            &reader,
            &[
                ("hub.channel.type", "websocket"),
                ("hub.mode", "unsubscribe"),
                ("hub.topic", &hub.topic),
                ("hub.channel.endpoint", &endpoint),
            ],
        )
        .await;
    assert_eq!(unsubscribe.status(), 404);
    // The victim still follows the session.
    let event = hub.event("Patient-open", patient_context("p2", "2"));
    assert_eq!(hub.publish(&app, &event).await.status(), 202);
    receive(&mut victim, &event).await;
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn an_unknown_topic_and_a_forbidden_topic_answer_alike() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let forbidden = hub.engine.create_topic().to_string();
    let unknown = "Xq3vJ0c1m2k5i8wz9a7b6n4r3t2y1u0pQWERTYASDFG".to_owned();
    let mut answers = Vec::new();
    for topic in [&forbidden, &unknown] {
        let get = hub.get(&token, topic).await;
        let event = common::event_on(topic, "Patient-open", patient_context("p1", "1"));
        let publish = hub.publish(&token, &event).await;
        let subscribe = hub.post_form(&token, &subscribe_form(topic, None)).await;
        answers.push((
            answer(get).await,
            answer(publish).await,
            answer(subscribe).await,
        ));
    }
    assert_eq!(answers[0], answers[1], "the answers tell the topics apart");
    assert_eq!(answers[0].0, (404, "unknown topic".to_owned()));
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn an_expired_token_stops_working() {
    let hub = Hub::start_with(HubSettings {
        token_lifetime_seconds: 2,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    assert_eq!(hub.current(&token).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2300)).await;
    assert_eq!(hub.current(&token).await.status(), 401);
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&token, &event).await.status(), 401);
    assert_eq!(hub.subscribe(&token, "Patient-open").await.status(), 401);
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn a_lease_never_outlives_its_token() {
    let hub = Hub::start_with(HubSettings {
        token_lifetime_seconds: 2,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut form = subscribe_form(&hub.topic, None);
    form.push(("hub.lease_seconds", "86400"));
    let endpoint = endpoint_of(hub.post_form(&token, &form).await).await;
    let mut sub = Subscriber::connect(&endpoint).await.unwrap();
    let confirmation = sub.next().await;
    let lease = confirmation["hub.lease_seconds"].as_u64().unwrap();
    assert!(lease <= 2, "a lease of {lease} s on a 2 s token");
    // When the token's time is up, so is the subscription.
    let started = Instant::now();
    let (frames, _) = sub.closed().await;
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        frames
            .iter()
            .any(|f| f["hub.mode"] == "denied" && f["hub.reason"] == "lease expired"),
        "{frames:?}"
    );
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn client_secrets_are_compared_in_constant_time() {
    // A secret long enough that an early-exit comparison would show: wrong in its first byte
    // vs wrong in its last takes the same time only when every byte is always compared.
    let secret = "s".repeat(256 * 1024);
    let authority = lockstep_hub::Authority::new(
        vec![lockstep_hub::ClientRegistration {
            client_id: "ris".into(),
            client_secret: secret.clone(),
            scopes: lockstep_fhircast::ScopeSet::parse("fhircast/*.read").unwrap(),
            name: "ris".into(),
            acknowledges: true,
            redirect_uris: Vec::new(),
        }],
        Duration::from_secs(60),
    );
    let wrong_first = format!("x{}", &secret[1..]);
    let wrong_last = format!("{}x", &secret[..secret.len() - 1]);
    // Interleaved, so that load on the machine falls on both alike; the fastest of many runs
    // is the comparison's own cost, with the noise of other work left out.
    let time = |guess: &str| {
        let started = Instant::now();
        assert!(authority.authenticate("ris", guess).is_err());
        started.elapsed()
    };
    let (mut first, mut last) = (Duration::MAX, Duration::MAX);
    for _ in 0..60 {
        first = first.min(time(&wrong_first));
        last = last.min(time(&wrong_last));
    }
    let ratio = first.as_secs_f64() / last.as_secs_f64();
    assert!(
        (0.5..2.0).contains(&ratio),
        "wrong first byte {first:?} vs wrong last byte {last:?}"
    );
    assert!(authority.authenticate("ris", &secret).is_ok());

    // Over HTTP, a wrong secret answers the same whatever is wrong about it.
    let hub = Hub::start().await;
    let mut answers = Vec::new();
    for (id, secret) in [
        ("app", "x".to_owned()),
        ("app", format!("{SECRET}x")),
        ("app", SECRET[..SECRET.len() - 1].to_owned()),
        ("nobody", SECRET.to_owned()),
    ] {
        let response = hub
            .http
            .post(format!("{}/auth/token", hub.origin))
            .basic_auth(id, Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
            .await
            .unwrap();
        answers.push(answer(response).await);
    }
    assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    assert_eq!(answers[0].0, 401);
    serves_honest_clients(&hub).await;
}

// ---------------------------------------------------------------------------------------------
// Secrets and PHI in logs

/// Everything the hub logs, at every level, with the level on each line.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[tokio::test]
async fn tokens_and_secrets_are_never_logged_and_phi_never_at_info() {
    let logs = Captured::default();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(logs.clone())
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .finish();
    // The test's runtime is single-threaded: the hub's tasks all log through this subscriber.
    let _logging = tracing::subscriber::set_default(subscriber);

    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let endpoint = endpoint_of(
        hub.post_form(&token, &subscribe_form(&hub.topic, None))
            .await,
    )
    .await;
    let mut sub = Subscriber::connect(&endpoint).await.unwrap();
    sub.next().await;
    let mut context = patient_context("p-4711", "MRN-98765");
    context[0]["resource"]["name"] = json!([{ "family": "Zebulon", "given": ["Quentin"] }]);
    let event = hub.event("Patient-open", context);
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
    let frame = sub.next().await;
    sub.ack(&frame, 500).await; // a refusal makes the hub log a SyncError
    hub.current(&token).await;
    // Failures are logged too; they must not echo what was tried.
    hub.current("a-token-an-attacker-tried").await;
    hub.http
        .post(format!("{}/auth/token", hub.origin))
        .basic_auth("app", Some("a-wrong-secret-tried"))
        .form(&[("grant_type", "client_credentials")])
        .send()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;

    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("token issued"), "the capture works: {text}");
    let endpoint_token = endpoint.rsplit('/').next().unwrap();
    for secret in [
        token.as_str(),
        SECRET,
        endpoint_token,
        hub.topic.as_str(),
        "a-token-an-attacker-tried",
        "a-wrong-secret-tried",
    ] {
        assert!(!text.contains(secret), "`{secret}` was logged:\n{text}");
    }
    for line in text
        .lines()
        .filter(|l| l.contains(" INFO ") || l.contains(" WARN ") || l.contains(" ERROR "))
    {
        for phi in ["MRN-98765", "Zebulon", "Quentin", "p-4711", "1970-01-02"] {
            assert!(!line.contains(phi), "PHI at info level or above: {line}");
        }
    }
    serves_honest_clients(&hub).await;
}

// ---------------------------------------------------------------------------------------------
// Abuse

#[tokio::test]
async fn malformed_or_oversized_request_heads_are_refused() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let address = hub.address();
    let path = format!("/fhircast/{}", hub.topic);
    let head = |extra: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n{extra}Connection: close\r\n\r\n"
        )
    };
    // One huge header, and a great many small ones: both bounded.
    let huge = head(&format!("X-Pad: {}\r\n", "a".repeat(64 * 1024)));
    let many = head(
        &(0..200)
            .map(|i| format!("X-{i}: 1\r\n"))
            .collect::<String>(),
    );
    for request in [huge, many] {
        let response = raw_exchange(&address, request.as_bytes()).await;
        assert_eq!(status_of(&response), 431, "{response}");
    }
    // HTTP/2 with prior knowledge is not spoken (one protocol, one set of timeouts).
    let response = raw_exchange(&address, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
    assert!(!response.contains(" 200 "), "{response}");
    // A token in the URL (where it would end up in logs and history) is not accepted.
    let response = hub
        .http
        .get(format!(
            "{}/{}?access_token={token}",
            hub.hub_url, hub.topic
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);
    // Paths that try to climb out of the hub go nowhere.
    for path in [
        "/fhircast/..%2f..%2fauth%2ftoken",
        "/fhircast/ws/..%2F..",
        "//etc/passwd",
    ] {
        let response = raw_exchange(
            &address,
            format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .await;
        assert!(
            matches!(status_of(&response), 400 | 401 | 404 | 405),
            "{path}: {response}"
        );
    }
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn oversized_bodies_get_413_whether_announced_or_chunked() {
    let hub = Hub::start_with(HubSettings {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut context = patient_context("big", "1");
    context[0]["resource"]["text"] = "x".repeat(10_000).into();
    let response = hub
        .publish(&token, &hub.event("Patient-open", context))
        .await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("4096"));

    // Chunked: no Content-Length to refuse up front; the limit applies as the body streams in.
    let address = hub.address();
    let chunk = "a".repeat(1000);
    let mut request = format!(
        "POST /fhircast HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    for _ in 0..10 {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    let response = raw_exchange(&address, request.as_bytes()).await;
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");

    // A huge token request is refused too (the token endpoint has the same limit).
    let response = hub
        .http
        .post(format!("{}/auth/token", hub.origin))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&pad={}",
            "x".repeat(10_000)
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn oversized_websocket_frames_close_that_socket_alone() {
    let hub = Hub::start_with(HubSettings {
        max_body_bytes: 4096,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut bystander = hub.subscriber_with_token(&token, "Patient-open").await;
    let mut attacker = hub.subscriber_with_token(&token, "Patient-open").await;
    let _ = attacker
        .socket
        .send(Message::text("x".repeat(100_000)))
        .await;
    let (_, code) = attacker.closed().await;
    assert_eq!(code, Some(1009));
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
    receive(&mut bystander, &event).await;
    serves_honest_clients(&hub).await;
}

/// Whether the hub still holds its side of the TCP connection from `client` (an established
/// socket whose remote address is the client's).
#[cfg(target_os = "linux")]
fn hub_holds_connection_from(client: std::net::SocketAddr) -> bool {
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let remote = format!("0100007F:{:04X}", client.port());
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.get(2) == Some(&remote.as_str()) && fields.get(3) == Some(&"01")
    })
}

#[cfg(target_os = "linux")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_that_stops_reading_loses_its_socket_too() {
    let hub = Hub::start_with(HubSettings {
        ack_timeout_seconds: 1,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut watcher = hub.subscriber("reader", "SyncError").await;
    // Subscribes, then never reads again: the hub's writes to it block once buffers are full.
    let stalled = hub.subscriber_with_token(&token, "Patient-open").await;
    let client = match stalled.socket.get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(tcp) => tcp.local_addr().unwrap(),
        _ => unreachable!("the test hub speaks plain ws"),
    };
    assert!(hub_holds_connection_from(client));
    let mut context = patient_context("p1", "1");
    context[0]["resource"]["text"] = json!({ "status": "generated", "div": "x".repeat(16_000) });
    for i in 0..1200 {
        let mut event = hub.event("Patient-open", context.clone());
        event["id"] = format!("e{i}").into();
        assert_eq!(hub.publish(&token, &event).await.status(), 202);
    }
    // The hub gives up on it (no acknowledgement, or a full queue) and tells the others ...
    let error = watcher.next().await;
    assert_eq!(error["event"]["hub.event"], "SyncError");
    // ... and, a grace period later, closes its socket even though the peer never reads.
    let deadline = Instant::now() + Duration::from_secs(5);
    while hub_holds_connection_from(client) {
        assert!(
            Instant::now() < deadline,
            "the stalled socket is still open on the hub's side"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        hub.engine.subscribers(&hub.topic).len() == 1,
        "only the watcher is left"
    );
    drop(stalled);
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn subscriptions_and_sockets_are_capped_per_client_and_in_total() {
    let hub = Hub::start_with(HubSettings {
        max_subscriptions_per_client: 3,
        max_subscriptions_total: 5,
        ..Default::default()
    })
    .await;
    let app = hub.token("app").await;
    let reader = hub.token("reader").await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(endpoint_of(hub.post_form(&app, &subscribe_form(&hub.topic, None)).await).await);
    }
    let refused = hub.post_form(&app, &subscribe_form(&hub.topic, None)).await;
    assert_eq!(refused.status(), 429);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("hub.max_subscriptions_per_client")
    );
    // Other clients are not held back by the first one's cap ...
    for _ in 0..2 {
        held.push(
            endpoint_of(
                hub.post_form(&reader, &subscribe_form(&hub.topic, None))
                    .await,
            )
            .await,
        );
    }
    // ... until the hub's total is reached, for everyone.
    let refused = hub
        .post_form(&reader, &subscribe_form(&hub.topic, None))
        .await;
    assert_eq!(refused.status(), 429);
    assert!(
        refused
            .text()
            .await
            .unwrap()
            .contains("hub.max_subscriptions_total")
    );
    // One socket per subscription: a second socket on an endpoint is refused.
    let _first = Subscriber::connect(&held[0]).await.unwrap();
    assert!(Subscriber::connect(&held[0]).await.is_err());
    // Unsubscribing frees a place.
    let unsubscribe = hub
        .post_form(
            &app,
            &[
                ("hub.channel.type", "websocket"),
                ("hub.mode", "unsubscribe"),
                ("hub.topic", &hub.topic),
                ("hub.channel.endpoint", &held[1]),
            ],
        )
        .await;
    assert_eq!(unsubscribe.status(), 202);
    serves_honest_client(&hub, "app").await;
}

#[tokio::test]
async fn a_client_over_its_rate_gets_429_with_retry_after_and_others_are_served() {
    let hub = Hub::start_with(HubSettings {
        requests_per_second_per_client: 2,
        request_burst_per_client: 5,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let mut limited = None;
    for _ in 0..10 {
        let response = hub.current(&token).await;
        if response.status() == 429 {
            limited = Some(response);
            break;
        }
        assert_eq!(response.status(), 200);
    }
    let limited = limited.expect("the flood was never limited");
    let retry_after: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&retry_after), "{retry_after}");
    assert_eq!(
        limited.headers()["content-type"],
        "text/plain; charset=utf-8"
    );
    let reason = limited.text().await.unwrap();
    assert!(reason.contains("client `app`"), "{reason}");
    // Another client is untouched by the first one's flood.
    serves_honest_clients(&hub).await;
    // And the limited client is served again once it waited as told.
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    assert_eq!(hub.current(&token).await.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_from_one_client_never_starves_another() {
    let hub = Arc::new(
        Hub::start_with(HubSettings {
            requests_per_second_per_client: 50,
            request_burst_per_client: 50,
            ..Default::default()
        })
        .await,
    );
    let flooder = hub.token("app").await;
    let honest = hub.token("patient-only").await;
    let mut watcher = hub.subscriber("reader", "Patient-open").await;
    // The flooding app also floods its socket with junk replies.
    let mut junk = hub.subscriber_with_token(&flooder, "Patient-open").await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut floods = Vec::new();
    for _ in 0..4 {
        let (hub, token, stop) = (hub.clone(), flooder.clone(), stop.clone());
        floods.push(tokio::spawn(async move {
            let mut limited = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                if hub.current(&token).await.status() == 429 {
                    limited += 1;
                }
            }
            limited
        }));
    }
    let junk_flood = tokio::spawn(async move {
        for i in 0..5000 {
            let reply = format!("{{\"id\":\"junk{i}\",\"status\":200}}");
            if junk.socket.send(Message::text(reply)).await.is_err() {
                break;
            }
        }
        junk
    });
    // Meanwhile the honest app changes the patient every 100 ms; every change is accepted
    // promptly and reaches the other app.
    for i in 0..10 {
        let event = hub.event(
            "Patient-open",
            patient_context(&format!("p{i}"), &format!("{i}")),
        );
        let started = Instant::now();
        assert_eq!(hub.publish(&honest, &event).await.status(), 202);
        receive(&mut watcher, &event).await;
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "change {i} took {:?}",
            started.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut limited = 0;
    for flood in floods {
        limited += flood.await.unwrap();
    }
    assert!(limited > 0, "the flood was never limited");
    let _junk = junk_flood.await.unwrap();
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn guessing_tokens_and_endpoints_is_throttled_without_slowing_honest_clients() {
    let hub = Hub::start_with(HubSettings {
        requests_per_second_per_client: 2,
        request_burst_per_client: 10,
        ..Default::default()
    })
    .await;
    let honest = hub.token("app").await;
    let mut statuses = Vec::new();
    for i in 0..15 {
        statuses.push(hub.current(&format!("guess-{i}")).await.status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10]);
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Guessing channel endpoints draws on the same allowance.
    let guess = format!("{}/ws/{}", hub.hub_url, "A".repeat(43)).replace("http://", "ws://");
    match Subscriber::connect(&guess).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 429)
        }
        other => panic!("expected 429, got {:?}", other.map(|_| ())),
    }
    // A valid token never draws on it.
    assert_eq!(hub.current(&honest).await.status(), 200);
    serves_honest_client(&hub, "patient-only").await;
}

#[tokio::test]
async fn wrong_secrets_lock_guessing_out_of_that_client_alone() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let attempt = |secret: &'static str| {
        hub.http
            .post(format!("{}/auth/token", hub.origin))
            .basic_auth("app", Some(secret))
            .form(&[("grant_type", "client_credentials")])
            .send()
    };
    let mut statuses = Vec::new();
    for _ in 0..15 {
        statuses.push(attempt("guess-guess").await.unwrap().status().as_u16());
    }
    assert_eq!(&statuses[..10], &[401; 10], "{statuses:?}");
    assert!(statuses[10..].iter().all(|s| *s == 429), "{statuses:?}");
    // Locked: even the right secret is not checked until the lock eases (guessing gains nothing).
    let locked = attempt(SECRET).await.unwrap();
    assert_eq!(locked.status(), 429);
    assert!(locked.headers().contains_key("retry-after"));
    // The app's existing token still works, and other clients are untouched.
    assert_eq!(hub.current(&token).await.status(), 200);
    serves_honest_clients(&hub).await;
    // After a pause the right secret works again.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(attempt(SECRET).await.unwrap().status(), 200);
}

#[tokio::test]
async fn slow_or_idle_connections_are_cut_off() {
    let hub = Hub::start_with(HubSettings {
        header_read_timeout_seconds: 1,
        ..Default::default()
    })
    .await;
    let address = hub.address();

    // Headers trickled a line at a time, never finished.
    let mut slow = TcpStream::connect(&address).await.unwrap();
    slow.write_all(b"GET /fhircast/.well-known/fhircast-configuration HTTP/1.1\r\n")
        .await
        .unwrap();
    let trickle = {
        let mut writer = TcpStream::connect(&address).await.unwrap();
        writer
            .write_all(b"GET /fhircast/.well-known/fhircast-configuration HTTP/1.1\r\n")
            .await
            .unwrap();
        tokio::spawn(async move {
            for _ in 0..30 {
                tokio::time::sleep(Duration::from_millis(200)).await;
                if writer.write_all(b"X-Slow: 1\r\n").await.is_err() {
                    break;
                }
            }
            writer
        })
    };
    let took = closed_within(&mut slow, Duration::from_secs(4)).await;
    assert!(took >= Duration::from_millis(900), "{took:?}");

    // Connected and silent.
    let mut idle = TcpStream::connect(&address).await.unwrap();
    closed_within(&mut idle, Duration::from_secs(4)).await;

    // Silent after one complete request on a kept-alive connection.
    let mut kept = TcpStream::connect(&address).await.unwrap();
    kept.write_all(
        format!(
            "GET /fhircast/.well-known/fhircast-configuration HTTP/1.1\r\nHost: {address}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    closed_within(&mut kept, Duration::from_secs(4)).await;

    // The trickler was cut off too, not after its 6 s of trickling.
    let mut trickler = trickle.await.unwrap();
    let mut buf = [0u8; 256];
    let read = tokio::time::timeout(Duration::from_millis(100), trickler.read(&mut buf)).await;
    assert!(matches!(read, Ok(Ok(0)) | Ok(Err(_))), "{read:?}");
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn a_body_trickled_in_gets_408_and_the_connection_is_closed() {
    let hub = Hub::start_with(HubSettings {
        request_timeout_seconds: 1,
        ..Default::default()
    })
    .await;
    let token = hub.token("app").await;
    let address = hub.address();
    let mut stream = TcpStream::connect(&address).await.unwrap();
    stream
        .write_all(
            format!(
                "POST /fhircast HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\
                 Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{"
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    let started = Instant::now();
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        tokio::select! {
            read = stream.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => response.extend_from_slice(&buf[..n]),
            },
            _ = tokio::time::sleep(Duration::from_millis(200)) => {
                let _ = stream.write_all(b" ").await;
            }
        }
        assert!(started.elapsed() < Duration::from_secs(5), "never cut off");
    }
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 408"), "{response}");
    assert!(
        response.contains("hub.request_timeout_seconds"),
        "{response}"
    );
    serves_honest_clients(&hub).await;
}

#[tokio::test]
async fn connections_beyond_the_cap_are_closed_at_once() {
    let hub = Hub::start_with(HubSettings {
        max_connections: 3,
        ..Default::default()
    })
    .await;
    let address = hub.address();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&address).await.unwrap());
    }
    let mut extra = TcpStream::connect(&address).await.unwrap();
    let took = closed_within(&mut extra, Duration::from_secs(2)).await;
    assert!(took < Duration::from_secs(1), "{took:?}");
    drop(held);
    // Freed places are taken again by honest clients.
    tokio::time::sleep(Duration::from_millis(100)).await;
    serves_honest_clients(&hub).await;
}

// ---------------------------------------------------------------------------------------------
// TLS and where the hub listens

struct TestCertificate {
    _dir: tempfile::TempDir,
    settings: HubSettings,
    pem: String,
    der: Vec<u8>,
}

fn test_certificate() -> TestCertificate {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cert = dir.path().join("hub.pem");
    let key = dir.path().join("hub.key");
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.signing_key.serialize_pem()).unwrap();
    TestCertificate {
        settings: HubSettings {
            tls_cert_file: Some(cert),
            tls_key_file: Some(key),
            ..Default::default()
        },
        pem: certified.cert.pem(),
        der: certified.cert.der().to_vec(),
        _dir: dir,
    }
}

#[tokio::test]
async fn with_a_certificate_the_hub_speaks_https_and_wss_only() {
    let certificate = test_certificate();
    let http = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(certificate.pem.as_bytes()).unwrap())
        .build()
        .unwrap();
    let settings = HubSettings {
        header_read_timeout_seconds: 1,
        ..certificate.settings.clone()
    };
    let hub = Hub::start_with_client(settings, http).await;
    assert!(
        hub.hub_url.starts_with("https://127.0.0.1:"),
        "{}",
        hub.hub_url
    );

    // hub.url and the channel endpoint follow TLS.
    let response = hub.token_response("app", None).await;
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["hub.url"], hub.hub_url);
    let token = body["access_token"].as_str().unwrap().to_owned();
    let endpoint = endpoint_of(hub.subscribe(&token, "Patient-open").await).await;
    assert!(endpoint.starts_with("wss://127.0.0.1:"), "{endpoint}");

    // Plain HTTP on the TLS port gets nothing.
    let plain = hub.hub_url.replace("https://", "http://");
    let refused = reqwest::get(format!("{plain}/.well-known/fhircast-configuration")).await;
    assert!(refused.is_err(), "{refused:?}");
    // Neither does a client that does not trust the certificate.
    let untrusting = reqwest::get(format!(
        "{}/.well-known/fhircast-configuration",
        hub.hub_url
    ))
    .await;
    assert!(untrusting.is_err());
    // A TLS handshake begun and never finished is cut off like slow headers.
    let mut silent = TcpStream::connect(hub.address()).await.unwrap();
    silent.write_all(b"\x16\x03\x01").await.unwrap();
    closed_within(&mut silent, Duration::from_secs(4)).await;

    // wss, end to end.
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    roots.add(certificate.der.clone().into()).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let client = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let (socket, _) = tokio_tungstenite::connect_async_tls_with_config(
        endpoint.as_str(),
        None,
        false,
        Some(tokio_tungstenite::Connector::Rustls(Arc::new(client))),
    )
    .await
    .unwrap();
    let mut sub = Subscriber {
        socket,
        endpoint,
        confirmation: Value::Null,
    };
    assert_eq!(sub.next().await["hub.mode"], "subscribe");
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
    receive(&mut sub, &event).await;
}

#[tokio::test]
async fn listening_beyond_loopback_requires_tls() {
    let open = HubSettings {
        bind_addresses: vec!["0.0.0.0".parse().unwrap()],
        ..Default::default()
    };
    let (key, reason) = open.validate().unwrap_err();
    assert_eq!(key, "bind_addresses");
    assert!(reason.contains("requires TLS"), "{reason}");
    let certificate = test_certificate();
    let with_tls = HubSettings {
        bind_addresses: vec!["0.0.0.0".parse().unwrap()],
        host_name: Some("ws01.example.org".into()),
        ..certificate.settings.clone()
    };
    with_tls.validate().unwrap();
    // The URLs handed out then name the configured host, over https.
    let hub = Hub::start_with(HubSettings {
        host_name: Some("localhost".into()),
        ..certificate.settings.clone()
    })
    .await;
    assert!(
        hub.hub_url.starts_with("https://localhost:"),
        "{}",
        hub.hub_url
    );
    // Loopback without TLS stays the default, and serves.
    let plain = Hub::start().await;
    assert!(plain.hub_url.starts_with("http://127.0.0.1:"));
    serves_honest_clients(&plain).await;
}
