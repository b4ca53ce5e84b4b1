//! The checker's only view of a hub: HTTP requests and WebSocket frames, each written to the
//! transcript so that a failed check can show what was sent and what came back.

use crate::verdict::Finding;
use futures_util::{SinkExt, StreamExt};
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde_json::Value;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::net::TcpStream;
use tokio_rustls::rustls;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

/// Bodies longer than this are cut in the transcript.
const SHOWN_BODY: usize = 1500;
/// How long any one HTTP exchange or WebSocket handshake may take.
const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(10);
/// A 429 is retried this many times, after the hub's `Retry-After` (at most 5 s).
const RATE_LIMIT_RETRIES: u32 = 3;

/// What was said on the wire during the current check, oldest first.
#[derive(Clone, Default)]
pub struct Transcript(Arc<Mutex<Vec<String>>>);

impl Transcript {
    pub fn note(&self, line: String) {
        if let Ok(mut lines) = self.0.lock() {
            lines.push(line);
        }
    }

    /// Everything noted since the last take.
    pub fn take(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|mut lines| std::mem::take(&mut *lines))
            .unwrap_or_default()
    }
}

fn shown(body: &str) -> String {
    if body.len() <= SHOWN_BODY {
        return body.to_owned();
    }
    let mut cut = SHOWN_BODY;
    while !body.is_char_boundary(cut) {
        cut -= 1;
    }
    format!("{}… ({} bytes in all)", &body[..cut], body.len())
}

/// An HTTP answer, read whole.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub content_type: String,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn is_client_error(&self) -> bool {
        (400..500).contains(&self.status)
    }

    /// The media type without parameters, lower-cased.
    pub fn media_type(&self) -> String {
        self.content_type
            .split(';')
            .next()
            .unwrap_or_default()
            .trim()
            .to_ascii_lowercase()
    }
}

/// How the hub's certificate is trusted.
#[derive(Clone)]
pub struct Trust {
    /// `None`: the usual web roots.
    custom: Option<Arc<rustls::ClientConfig>>,
    reqwest_root: Option<reqwest::Certificate>,
}

impl Trust {
    pub fn web_roots() -> Trust {
        Trust {
            custom: None,
            reqwest_root: None,
        }
    }

    /// Trusts only the CA (or self-signed certificate) in this PEM text.
    pub fn only(pem: &str) -> Result<Trust, String> {
        use rustls::pki_types::CertificateDer;
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for certificate in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            let certificate = certificate.map_err(|e| format!("not a PEM certificate: {e}"))?;
            roots
                .add(certificate)
                .map_err(|e| format!("cannot trust that certificate: {e}"))?;
        }
        if roots.is_empty() {
            return Err("the file holds no PEM certificate".into());
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let reqwest_root =
            reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| e.to_string())?;
        Ok(Trust {
            custom: Some(Arc::new(config)),
            reqwest_root: Some(reqwest_root),
        })
    }
}

/// HTTP and WebSocket access to the hub, noting every exchange in the transcript.
#[derive(Clone)]
pub struct Wire {
    http: reqwest::Client,
    trust: Trust,
    pub transcript: Transcript,
}

/// A bearer token, or none.
pub type Bearer<'a> = Option<&'a str>;

impl Wire {
    pub fn new(trust: Trust) -> Result<Wire, String> {
        let mut builder = reqwest::Client::builder()
            .timeout(EXCHANGE_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none());
        if let Some(root) = &trust.reqwest_root {
            builder = builder
                .tls_built_in_root_certs(false)
                .add_root_certificate(root.clone());
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        Ok(Wire {
            http,
            trust,
            transcript: Transcript::default(),
        })
    }

    pub async fn get(&self, url: &str, bearer: Bearer<'_>) -> Result<Answer, Finding> {
        self.send("GET", url, bearer, None).await
    }

    /// A form-encoded POST of `pairs`, in order (a pair may repeat).
    pub async fn post_form(
        &self,
        url: &str,
        bearer: Bearer<'_>,
        pairs: &[(&str, &str)],
    ) -> Result<Answer, Finding> {
        let body = form_urlencoded(pairs);
        self.send(
            "POST",
            url,
            bearer,
            Some(("application/x-www-form-urlencoded", body)),
        )
        .await
    }

    pub async fn post_json(
        &self,
        url: &str,
        bearer: Bearer<'_>,
        content_type: &str,
        body: String,
    ) -> Result<Answer, Finding> {
        self.send("POST", url, bearer, Some((content_type, body)))
            .await
    }

    /// Like [`Wire::post_form`] with HTTP Basic client authentication (a token request).
    pub async fn post_form_basic(
        &self,
        url: &str,
        client: (&str, &str),
        pairs: &[(&str, &str)],
    ) -> Result<Answer, Finding> {
        let body = form_urlencoded(pairs);
        self.transcript
            .note(format!("→ POST {url} (Basic {})\n  {body}", client.0));
        let request = self
            .http
            .post(url)
            .basic_auth(client.0, Some(client.1))
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body);
        self.answer(url, request).await
    }

    async fn send(
        &self,
        method: &str,
        url: &str,
        bearer: Bearer<'_>,
        body: Option<(&str, String)>,
    ) -> Result<Answer, Finding> {
        let mut headers = HeaderMap::new();
        if let Some(token) = bearer {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| Finding::setup("the token is not a valid header value"))?;
            headers.insert(reqwest::header::AUTHORIZATION, value);
        }
        let auth = if bearer.is_some() { " (Bearer)" } else { "" };
        match &body {
            Some((media, text)) => self
                .transcript
                .note(format!("→ {method} {url}{auth} {media}\n  {}", shown(text))),
            None => self.transcript.note(format!("→ {method} {url}{auth}")),
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|_| Finding::setup("bad method"))?;
        let mut request = self.http.request(method, url).headers(headers);
        if let Some((media, text)) = body {
            request = request.header(CONTENT_TYPE, media).body(text);
        }
        self.answer(url, request).await
    }

    /// Sends `request`, retrying after a 429 as the hub asks, and notes the answer.
    async fn answer(&self, url: &str, request: reqwest::RequestBuilder) -> Result<Answer, Finding> {
        let mut attempt = 0;
        loop {
            let Some(this_try) = request.try_clone() else {
                return Err(Finding::setup("the request cannot be repeated"));
            };
            let response = this_try.send().await.map_err(|e| {
                self.transcript.note(format!("← no answer: {e}"));
                Finding::fail(format!("{url} did not answer: {e}"))
            })?;
            let status = response.status().as_u16();
            if status == 429 && attempt < RATE_LIMIT_RETRIES {
                let wait = response
                    .headers()
                    .get(RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(1)
                    .min(5);
                self.transcript
                    .note(format!("← 429: rate-limited; retrying in {wait} s"));
                tokio::time::sleep(Duration::from_secs(wait)).await;
                attempt += 1;
                continue;
            }
            let content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            let body = response.text().await.map_err(|e| {
                Finding::fail(format!(
                    "{url} answered {status} but its body broke off: {e}"
                ))
            })?;
            self.transcript
                .note(format!("← {status} {content_type}\n  {}", shown(&body)));
            return Ok(Answer {
                status,
                content_type,
                body,
            });
        }
    }

    /// Opens a WebSocket to `url`, with these extra request headers.
    pub async fn connect(&self, url: &str, headers: &[(&str, &str)]) -> Result<Socket, String> {
        self.transcript.note(format!("⇒ WebSocket connect {url}"));
        let mut request = url
            .into_client_request()
            .map_err(|e| format!("not a WebSocket URL: {e}"))?;
        for (name, value) in headers {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes())
                .map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(value).map_err(|e| e.to_string())?;
            request.headers_mut().insert(name, value);
        }
        let connector = self.trust.custom.clone().map(Connector::Rustls);
        let connecting =
            tokio_tungstenite::connect_async_tls_with_config(request, None, false, connector);
        let outcome = match tokio::time::timeout(EXCHANGE_TIMEOUT, connecting).await {
            Err(_) => Err("the handshake did not finish within 10 s".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok((stream, _))) => Ok(Socket {
                stream,
                transcript: self.transcript.clone(),
                closed: None,
            }),
        };
        if let Err(reason) = &outcome {
            self.transcript.note(format!("⇐ refused: {reason}"));
        }
        outcome
    }
}

fn form_urlencoded(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(byte as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// What came next on a socket.
#[derive(Debug, Clone)]
pub enum Arrival {
    /// A text frame; `json` is `None` when it is not JSON.
    Text { text: String, json: Option<Value> },
    /// A binary frame (never valid in FHIRcast).
    Binary(usize),
    /// The hub closed the socket (its close code, if it sent one).
    Closed(Option<u16>),
    /// Nothing within the wait.
    Silent,
}

/// One WebSocket to the hub.
pub struct Socket {
    stream: WebSocketStream<MaybeTlsStream<TcpStream>>,
    transcript: Transcript,
    closed: Option<Option<u16>>,
}

impl Socket {
    /// The next frame within `within` (pings and pongs are not frames of interest).
    pub async fn next(&mut self, within: Duration) -> Arrival {
        if let Some(code) = self.closed {
            return Arrival::Closed(code);
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let read = tokio::time::timeout_at(deadline, self.stream.next()).await;
            let arrival = match read {
                Err(_) => return Arrival::Silent,
                Ok(None) | Ok(Some(Err(_))) => Arrival::Closed(None),
                Ok(Some(Ok(Message::Text(text)))) => {
                    let text = text.to_string();
                    let json = serde_json::from_str(&text).ok();
                    Arrival::Text { text, json }
                }
                Ok(Some(Ok(Message::Binary(bytes)))) => Arrival::Binary(bytes.len()),
                Ok(Some(Ok(Message::Close(frame)))) => {
                    Arrival::Closed(frame.map(|f| u16::from(f.code)))
                }
                Ok(Some(Ok(_))) => continue,
            };
            match &arrival {
                Arrival::Text { text, .. } => self.transcript.note(format!("⇐ {}", shown(text))),
                Arrival::Binary(n) => self.transcript.note(format!("⇐ binary frame, {n} bytes")),
                Arrival::Closed(code) => {
                    self.transcript.note(format!("⇐ closed ({code:?})"));
                    self.closed = Some(*code);
                }
                Arrival::Silent => {}
            }
            return arrival;
        }
    }

    pub async fn send_text(&mut self, text: String) -> Result<(), Finding> {
        self.transcript.note(format!("⇒ {}", shown(&text)));
        self.stream
            .send(Message::text(text))
            .await
            .map_err(|e| Finding::fail(format!("the socket would not take a frame: {e}")))
    }

    /// Closes with `code` and waits briefly for the hub's close.
    pub async fn close(&mut self, code: u16) {
        if self.closed.is_some() {
            return;
        }
        self.transcript.note(format!("⇒ close {code}"));
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        };
        let _ = self.stream.send(Message::Close(Some(frame))).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while let Ok(Some(Ok(message))) =
            tokio::time::timeout_at(deadline, self.stream.next()).await
        {
            if message.is_close() {
                break;
            }
        }
        self.closed = Some(Some(code));
    }
}
