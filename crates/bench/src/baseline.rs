//! The baseline: a minimal loopback broadcast server, the limit every figure is a ratio to.
//!
//! It speaks just enough HTTP/1.1 and WebSocket for the bench's clients: a form POST subscribes
//! (no validation, no auth) and answers an endpoint; a GET upgrades that endpoint; a JSON POST is
//! written, as it came, as one text frame to every socket of its topic. Frames are written
//! straight from the publishing request (a non-blocking write per socket, as Node's and Python's
//! event loops do); only a socket whose kernel buffer is full gets a writer task to drain it.

use bytes::BytesMut;
use std::collections::HashMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;

struct Shared {
    host: String,
    /// Endpoint id → topic, until the endpoint's socket connects.
    endpoints: Mutex<HashMap<String, String>>,
    topics: Mutex<HashMap<String, Vec<Arc<Out>>>>,
    next_endpoint: AtomicU64,
}

/// Serves until the process ends.
pub async fn serve(listener: TcpListener) -> io::Result<()> {
    let shared = Arc::new(Shared {
        host: listener.local_addr()?.to_string(),
        endpoints: Mutex::new(HashMap::new()),
        topics: Mutex::new(HashMap::new()),
        next_endpoint: AtomicU64::new(1),
    });
    loop {
        let (stream, _) = listener.accept().await?;
        // Small frames must leave at once, not wait for the previous one's ACK.
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, shared.clone()));
    }
}

struct Request {
    method: String,
    path: String,
    form: bool,
    ws_key: Option<String>,
    body: bytes::Bytes,
}

/// Takes one complete request off the front of `buf`, if one is there.
fn take_request(buf: &mut BytesMut) -> Option<Request> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let method = first.next()?.to_owned();
    let path = first.next()?.to_owned();
    let (mut length, mut form, mut ws_key) = (0usize, false, None);
    for line in lines {
        let (name, value) = line.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("content-type") {
            form = value.starts_with("application/x-www-form-urlencoded");
        } else if name.eq_ignore_ascii_case("sec-websocket-key") {
            ws_key = Some(value.to_owned());
        }
    }
    let total = head_end + 4 + length;
    if buf.len() < total {
        return None;
    }
    let mut whole = buf.split_to(total);
    let body = whole.split_off(head_end + 4).freeze();
    Some(Request {
        method,
        path,
        form,
        ws_key,
        body,
    })
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let mut buf = BytesMut::with_capacity(16 * 1024);
    loop {
        // Pipelined requests are answered in order, all from one read when they came together.
        while let Some(request) = take_request(&mut buf) {
            if let (Some(key), Some(id)) = (&request.ws_key, request.path.rsplit('/').next()) {
                let topic = shared
                    .endpoints
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .remove(id);
                let Some(topic) = topic else {
                    let _ = stream.write_all(&response("404 Not Found", "")).await;
                    return;
                };
                let accept = derive_accept_key(key.as_bytes());
                let head = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {accept}\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).await.is_ok() {
                    websocket(stream, topic, &shared).await;
                }
                return;
            }
            let answer = match (request.method.as_str(), request.form) {
                ("POST", true) => subscribe(&shared, &request.body),
                ("POST", false) => {
                    if let Some(topic) = topic_of(&request.body) {
                        shared.broadcast(topic, &text_frame(&request.body));
                    }
                    response("202 Accepted", "")
                }
                _ => response("404 Not Found", ""),
            };
            if stream.write_all(&answer).await.is_err() {
                return;
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

fn subscribe(shared: &Shared, form: &[u8]) -> Vec<u8> {
    let form = String::from_utf8_lossy(form);
    let topic = form
        .split('&')
        .find_map(|pair| pair.strip_prefix("hub.topic="))
        .unwrap_or("")
        .to_owned();
    let id = shared
        .next_endpoint
        .fetch_add(1, Ordering::Relaxed)
        .to_string();
    let body = format!(
        "{{\"hub.channel.endpoint\":\"ws://{}/fhircast/ws/{id}\"}}",
        shared.host
    );
    shared
        .endpoints
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id, topic);
    response("202 Accepted", &body)
}

fn response(status: &str, body: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The `event.hub.topic` of a request body, found by position rather than parsed: routing is
/// the one thing even a minimal server must do.
fn topic_of(body: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(body).ok()?;
    let after = &text[text.find("\"hub.topic\"")? + "\"hub.topic\"".len()..];
    let after = after.trim_start().strip_prefix(':')?.trim_start();
    let value = after.strip_prefix('"')?;
    Some(&value[..value.find('"')?])
}

/// An unmasked WebSocket text frame (RFC 6455 §5.2) around `payload`.
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(payload.len() + 10);
    frame.push(0x81);
    match payload.len() {
        n if n < 126 => frame.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            frame.push(126);
            frame.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            frame.push(127);
            frame.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    frame.extend_from_slice(payload);
    frame
}

impl Shared {
    fn broadcast(&self, topic: &str, frame: &[u8]) {
        let topics = self.topics.lock().unwrap_or_else(PoisonError::into_inner);
        for out in topics.get(topic).into_iter().flatten() {
            out.send(frame);
        }
    }
}

/// The write side of one subscriber socket.
struct Out {
    stream: Arc<TcpStream>,
    state: Mutex<OutState>,
    wake: Notify,
}

#[derive(Default)]
struct OutState {
    /// The writer task owns the socket until `pending` is drained; direct writes would reorder.
    busy: bool,
    pending: BytesMut,
    closed: bool,
}

impl Out {
    fn send(&self, frame: &[u8]) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if state.closed {
            return;
        }
        if state.busy {
            state.pending.extend_from_slice(frame);
            return;
        }
        let written = match self.stream.try_write(frame) {
            Ok(n) if n == frame.len() => return,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => 0,
            Err(_) => {
                state.closed = true;
                return;
            }
        };
        state.pending.extend_from_slice(&frame[written..]);
        state.busy = true;
        drop(state);
        self.wake.notify_one();
    }

    fn close(&self) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .closed = true;
        self.wake.notify_one();
    }
}

/// Drains what direct writes could not place in the kernel buffer.
async fn writer(out: Arc<Out>) {
    loop {
        out.wake.notified().await;
        loop {
            let chunk = {
                let mut state = out.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.closed {
                    return;
                }
                if state.pending.is_empty() {
                    state.busy = false;
                    break;
                }
                state.pending.split().freeze()
            };
            let mut offset = 0;
            while offset < chunk.len() {
                if out.stream.writable().await.is_err() {
                    return;
                }
                match out.stream.try_write(&chunk[offset..]) {
                    Ok(n) => offset += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => {
                        out.close();
                        return;
                    }
                }
            }
        }
    }
}

async fn websocket(stream: TcpStream, topic: String, shared: &Shared) {
    let stream = Arc::new(stream);
    let out = Arc::new(Out {
        stream: stream.clone(),
        state: Mutex::new(OutState::default()),
        wake: Notify::new(),
    });
    tokio::spawn(writer(out.clone()));
    // Registered before the confirmation goes out, so a client that has read it misses nothing.
    shared
        .topics
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .entry(topic.clone())
        .or_default()
        .push(out.clone());
    out.send(&text_frame(b"{\"hub.mode\":\"subscribe\"}"));
    // Replies and close frames are read and dropped: no validation, no bookkeeping.
    let mut scratch = vec![0u8; 16 * 1024];
    loop {
        if stream.readable().await.is_err() {
            break;
        }
        match stream.try_read(&mut scratch) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
    }
    out.close();
    if let Some(outs) = shared
        .topics
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .get_mut(&topic)
    {
        outs.retain(|o| !Arc::ptr_eq(o, &out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pipelined_requests_come_apart() {
        let mut buf = BytesMut::from(
            &b"POST /fhircast HTTP/1.1\r\nContent-Length: 2\r\n\r\n{}POST /x HTTP/1.1\r\ncontent-type: application/x-www-form-urlencoded\r\ncontent-length: 3\r\n\r\na=b"[..],
        );
        let first = take_request(&mut buf).unwrap();
        assert_eq!(
            (first.path.as_str(), &first.body[..]),
            ("/fhircast", &b"{}"[..])
        );
        let second = take_request(&mut buf).unwrap();
        assert!(second.form);
        assert!(take_request(&mut buf).is_none());
    }

    #[test]
    fn topic_is_found_in_the_body() {
        assert_eq!(
            topic_of(br#"{"id":"x","event":{"hub.topic" : "T1","hub.event":"a"}}"#),
            Some("T1")
        );
        assert_eq!(topic_of(b"{}"), None);
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(text_frame(b"hi")[..2], [0x81, 2]);
        assert_eq!(text_frame(&[b'x'; 200])[..4], [0x81, 126, 0, 200]);
    }
}
