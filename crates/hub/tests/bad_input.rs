//! Bad input: every malformed request gets a clear 4xx, changes nothing, and never takes the
//! hub down; the hub keeps serving honest clients afterwards.

mod common;
use common::{Hub, patient_context};
use futures_util::SinkExt;
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

async fn assert_unchanged_and_serving(hub: &Hub, sub: &mut common::Subscriber, token: &str) {
    sub.assert_quiet().await;
    let current: Value = hub.current(token).await.json().await.unwrap();
    assert_eq!(current["context.type"], "");
    let event = hub.event("Patient-open", patient_context("ok", "1"));
    assert_eq!(hub.publish(token, &event).await.status(), 202);
    assert_eq!(sub.next().await["id"], event["id"]);
}

#[tokio::test]
async fn malformed_bodies_get_400_with_a_reason() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let bodies: Vec<Vec<u8>> = vec![
        b"{".to_vec(),
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{\"timestamp\":1,\"id\":\"x\",\"event\":{}}".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        deep.into_bytes(),
        format!(r#"{{"timestamp":"t","id":"i","event":{{"hub.topic":"{}","hub.event":"Patient-open","context":"nope"}}}}"#, hub.topic).into_bytes(),
    ];
    for body in bodies {
        let response = hub.post_raw(&token, "application/json", body.clone()).await;
        assert_eq!(
            response.status(),
            400,
            "{:?}",
            String::from_utf8_lossy(&body[..body.len().min(40)])
        );
        assert_eq!(
            response.headers()["content-type"],
            "text/plain; charset=utf-8"
        );
        assert!(!response.text().await.unwrap().is_empty());
    }
    assert_unchanged_and_serving(&hub, &mut sub, &token).await;
}

#[tokio::test]
async fn oversized_body_gets_413() {
    let settings = lockstep_hub::HubSettings {
        max_body_bytes: 4096,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    let mut context = patient_context("big", "1");
    context[0]["resource"]["text"] = "x".repeat(10_000).into();
    let response = hub
        .publish(&token, &hub.event("Patient-open", context))
        .await;
    assert_eq!(response.status(), 413);
    assert!(response.text().await.unwrap().contains("4096"));
    assert_unchanged_and_serving(&hub, &mut sub, &token).await;
}

#[tokio::test]
async fn foreign_host_header_is_refused() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    for host in ["evil.example", "evil.example:4980", "127.0.0.1:1"] {
        let response = hub
            .http
            .post(&hub.hub_url)
            .header("host", host)
            .bearer_auth(&token)
            .json(&hub.event("Patient-open", patient_context("p1", "1")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 421, "{host}");
    }
    // The loopback names the hub owns are all fine.
    let port = hub.origin.rsplit(':').next().unwrap();
    for host in [format!("localhost:{port}"), format!("127.0.0.1:{port}")] {
        let response = hub
            .http
            .get(format!(
                "{}/.well-known/fhircast-configuration",
                hub.hub_url
            ))
            .header("host", host.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{host}");
    }
    assert_unchanged_and_serving(&hub, &mut sub, &token).await;
}

#[tokio::test]
async fn junk_and_oversized_socket_frames_do_not_hurt_the_hub() {
    let settings = lockstep_hub::HubSettings {
        max_body_bytes: 4096,
        ..Default::default()
    };
    let hub = Hub::start_with(settings).await;
    let token = hub.token("app").await;
    let mut victim = hub.subscriber_with_token(&token, "Patient-open").await;
    let mut junk = hub.subscriber_with_token(&token, "Patient-open").await;
    for frame in [
        Message::text("not json"),
        Message::text("{\"id\":5}"),
        Message::binary(vec![0u8; 16]),
    ] {
        junk.socket.send(frame).await.unwrap();
    }
    // Flooding replies for events that were never sent.
    for i in 0..500 {
        junk.socket
            .send(Message::text(format!("{{\"id\":\"x{i}\",\"status\":200}}")))
            .await
            .unwrap();
    }
    let _ = junk.socket.send(Message::text("x".repeat(100_000))).await;
    let (_, _) = junk.closed().await;
    let event = hub.event("Patient-open", patient_context("p1", "1"));
    assert_eq!(hub.publish(&token, &event).await.status(), 202);
    assert_eq!(victim.next().await["id"], event["id"]);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_plain_text_4xx() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let response = hub.get(&token, "nope/deeper").await;
    assert_eq!(response.status(), 404);
    let response = hub
        .http
        .delete(&hub.hub_url)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert!(response.status().is_client_error());
    let response = hub
        .post_raw(&token, "application/x-www-form-urlencoded", "%%%&&&=")
        .await;
    assert_eq!(response.status(), 400);
}

#[tokio::test]
async fn a_key_repeated_inside_a_resource_is_refused_not_relayed() {
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut sub = hub.subscriber_with_token(&token, "Patient-open").await;
    // Written as text: a JSON value cannot hold a repeated key. The hub would check one MRN and
    // relay both; a subscriber's parser may read the other.
    let envelope = |resource: &str| {
        format!(
            r#"{{"timestamp":"2026-01-01T00:00:00Z","id":"dup-1","event":{{"hub.topic":"{}","hub.event":"Patient-open","context":[{{"key":"patient","resource":{resource}}}]}}}}"#,
            hub.topic
        )
    };
    let cases = [
        (
            r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"1234","value":"5678"}]}"#,
            "`value`",
        ),
        (
            r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"1234"}],"identifier":[{"value":"5678"}]}"#,
            "`identifier`",
        ),
        (
            r#"{"resourceType":"Patient","id":"p1","id":"p2","identifier":[{"value":"1234"}]}"#,
            "`id`",
        ),
    ];
    for (resource, key) in cases {
        let response = hub
            .post_raw(&token, "application/json", envelope(resource).into_bytes())
            .await;
        assert_eq!(response.status(), 400, "{resource}");
        let reason = response.text().await.unwrap();
        assert!(reason.contains(key) && reason.contains("twice"), "{reason}");
    }
    // The same resource without the repeat is accepted: the refusal was for the repeat alone.
    let clean = r#"{"resourceType":"Patient","id":"p1","identifier":[{"value":"1234"}]}"#;
    let response = hub
        .post_raw(&token, "application/json", envelope(clean).into_bytes())
        .await;
    assert_eq!(response.status(), 202);
    assert_eq!(sub.next().await["id"], "dup-1");
}

#[tokio::test]
async fn expect_100_continue_with_an_oversized_length_gets_413_at_once() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let hub = Hub::start().await;
    let token = hub.token("app").await;
    let mut stream = tokio::net::TcpStream::connect(hub.address()).await.unwrap();
    let request = format!(
        "POST /fhircast HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 2000000000\r\n\
         Expect: 100-continue\r\n\r\n",
        hub.address()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    // No body follows: the answer must come on the headers alone, and not invite the body.
    let mut answer = vec![0u8; 512];
    let n = tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut answer))
        .await
        .expect("an answer without the body")
        .unwrap();
    let status_line = String::from_utf8_lossy(&answer[..n]);
    assert!(
        status_line.starts_with("HTTP/1.1 413"),
        "{}",
        status_line.lines().next().unwrap_or_default()
    );
}
