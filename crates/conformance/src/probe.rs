//! The checker's two clients on the hub under test, and the moves the checks are made of:
//! subscribe, connect, publish, read the current context. Everything a check opens is closed
//! by [`Probe::tidy`] when the check ends, whatever its outcome: subscriptions unsubscribed and
//! their sockets closed normally, every context it opened closed again.

use crate::fhir;
use crate::verdict::{CheckResult, Finding};
use crate::wire::{Answer, Arrival, Socket, Trust, Wire};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How the checker gets its tokens.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// Client credentials at the hub's authorization server; the topic comes from the token
    /// response's `hub.topic` unless given.
    Client {
        token_url: String,
        client_id: String,
        client_secret: String,
        topic: Option<String>,
    },
    /// A token obtained some other way, and the topic it is for.
    Token { token: String, topic: String },
}

/// How long the checker waits.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// For a frame that should arrive.
    pub arrival: Duration,
    /// For frames that should not arrive: silence this long counts as none.
    pub quiet: Duration,
    /// For the hub to give up on a subscriber that never answers (spec: about 10 s).
    pub unanswered: Duration,
}

impl Timing {
    /// For several notifications in a row to have arrived: the quiet time, and never less
    /// than 800 ms.
    pub fn settle(&self) -> Duration {
        self.quiet.max(Duration::from_millis(800))
    }
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            arrival: Duration::from_secs(5),
            quiet: Duration::from_millis(400),
            unanswered: Duration::from_secs(15),
        }
    }
}

/// What the checker is pointed at.
#[derive(Debug, Clone)]
pub struct Target {
    pub hub_url: String,
    pub first: Credentials,
    /// A second app; without one, the first app's credentials give the second client a token
    /// of its own (or share the fixed token).
    pub second: Option<Credentials>,
    pub trust: TrustSource,
    pub timing: Timing,
}

/// Which certificates the checker trusts.
#[derive(Debug, Clone, Default)]
pub enum TrustSource {
    #[default]
    WebRoots,
    /// Only the certificates in this PEM text.
    Pem(String),
}

/// One of the checker's clients: a token and the topic it is bound to.
#[derive(Debug, Clone)]
pub struct Client {
    pub token: String,
    pub topic: String,
    /// The token response's `expires_in`, when there was one.
    pub expires_in: Option<u64>,
    /// The granted scopes, when the token response said.
    pub scope: Option<String>,
    credentials: Credentials,
}

impl Client {
    /// The app this client acts as, where known (its client id), else its token.
    pub fn app(&self) -> &str {
        match &self.credentials {
            Credentials::Client { client_id, .. } => client_id,
            Credentials::Token { token, .. } => token,
        }
    }
}

/// Why the checker could not start at all.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("{0}")]
    Trust(String),
    #[error("cannot get a token: {0}")]
    Token(String),
    #[error(
        "the topic has a context open ({0}): the checker opens and closes test patients, so it \
         runs only on a topic with nothing in context; close it, or use a test topic"
    )]
    TopicInUse(String),
}

/// The form of a subscription request; `None` leaves the parameter out.
#[derive(Debug, Clone)]
pub struct SubscribeForm<'a> {
    pub events: &'a str,
    pub lease_seconds: Option<&'a str>,
    pub name: Option<&'a str>,
    /// Another topic than the client's.
    pub topic: Option<&'a str>,
}

impl<'a> SubscribeForm<'a> {
    pub fn events(events: &'a str) -> Self {
        SubscribeForm {
            events,
            lease_seconds: None,
            name: None,
            topic: None,
        }
    }
}

/// A subscription the checker holds: its endpoint, what the hub confirmed, and its socket.
#[derive(Clone)]
pub struct Subscription {
    pub endpoint: String,
    /// The first frame after connecting (`Value::Null` when none came).
    pub confirmation: Value,
    state: Arc<tokio::sync::Mutex<Held>>,
}

struct Held {
    socket: Option<Socket>,
    /// Answer every notification with 200, as a well-behaved app does; off when a check
    /// answers itself (or means not to answer).
    acknowledge: bool,
}

impl Subscription {
    /// The next frame within `within`, answering a notification with 200 when acknowledging.
    pub async fn next(&self, within: Duration) -> Arrival {
        let mut held = self.state.lock().await;
        let acknowledge = held.acknowledge;
        let Some(socket) = held.socket.as_mut() else {
            return Arrival::Closed(None);
        };
        let arrival = socket.next(within).await;
        if let Arrival::Text {
            json: Some(frame), ..
        } = &arrival
            && acknowledge
            && frame.get("event").is_some()
            && let Some(id) = frame["id"].as_str()
        {
            let reply = json!({ "id": id, "status": 200 }).to_string();
            let _ = socket.send_text(reply).await;
        }
        arrival
    }

    /// The next notification (a JSON frame with an `event`), skipping nothing else: any other
    /// frame, a close or silence fails.
    pub async fn notification(&self, within: Duration, what: &str) -> Result<Value, Finding> {
        match self.next(within).await {
            Arrival::Text {
                json: Some(frame), ..
            } if frame.get("event").is_some() => Ok(frame),
            other => Err(Finding::fail(format!(
                "expected {what}; got {}",
                describe(&other, within)
            ))),
        }
    }

    /// Notifications of `event_name` until one arrives, skipping others; fails after `within`.
    pub async fn notification_of(
        &self,
        event_name: &str,
        within: Duration,
    ) -> Result<Value, Finding> {
        let what = format!("a {event_name} notification");
        self.first_matching(within, &what, |frame| {
            event_of(frame).eq_ignore_ascii_case(event_name)
        })
        .await
    }

    /// The notification of the request `sent` (same `id`), skipping any other frame.
    pub async fn notification_for(&self, sent: &Value, within: Duration) -> Result<Value, Finding> {
        let what = format!("the notification of {} ({})", sent["id"], event_of(sent));
        self.first_matching(within, &what, |frame| frame["id"] == sent["id"])
            .await
    }

    /// The first JSON frame within `within` that `wanted` accepts, skipping the others; a
    /// close or the end of the wait fails, naming `what` was expected.
    async fn first_matching(
        &self,
        within: Duration,
        what: &str,
        wanted: impl Fn(&Value) -> bool,
    ) -> Result<Value, Finding> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Arrival::Text {
                    json: Some(frame), ..
                } if wanted(&frame) => return Ok(frame),
                Arrival::Text { .. } | Arrival::Binary(_) => continue,
                other => {
                    return Err(Finding::fail(format!(
                        "expected {what}; got {}",
                        describe(&other, within)
                    )));
                }
            }
        }
    }

    /// Every notification arriving within `within` (stops at a close).
    pub async fn drain(&self, within: Duration) -> Vec<Value> {
        match self.closed_within(within).await {
            Ok((frames, _)) | Err(frames) => frames,
        }
    }

    /// Passes when no notification arrives within `within`; `what` names what must not come.
    pub async fn quiet(&self, within: Duration, what: &str) -> CheckResult {
        let frames = self.drain(within).await;
        match frames.iter().find(|f| f.get("event").is_some()) {
            None => Ok(()),
            Some(frame) => Err(Finding::fail(format!(
                "{what}, yet the hub sent a {} notification",
                event_of(frame)
            ))),
        }
    }

    /// Waits for the hub to close the socket; the frames before the close, and its code.
    pub async fn closed_within(
        &self,
        within: Duration,
    ) -> Result<(Vec<Value>, Option<u16>), Vec<Value>> {
        let deadline = tokio::time::Instant::now() + within;
        let mut frames = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Arrival::Text {
                    json: Some(frame), ..
                } => frames.push(frame),
                Arrival::Text { .. } | Arrival::Binary(_) => {}
                Arrival::Closed(code) => return Ok((frames, code)),
                Arrival::Silent => return Err(frames),
            }
        }
    }

    /// Sends a frame as the app (e.g. an `{id, status}` answer).
    pub async fn send(&self, frame: String) -> CheckResult {
        let mut held = self.state.lock().await;
        match held.socket.as_mut() {
            Some(socket) => socket.send_text(frame).await,
            None => Err(Finding::setup("the socket is gone")),
        }
    }

    /// Answers notification `id` with `status` (a number or a string, as given).
    pub async fn answer(&self, id: &str, status: Value) -> CheckResult {
        self.send(json!({ "id": id, "status": status }).to_string())
            .await
    }

    /// Stops answering notifications by itself.
    pub async fn answer_myself(&self) {
        self.state.lock().await.acknowledge = false;
    }

    /// Closes the socket with `code` (the subscription stays, as when an app goes away).
    pub async fn close(&self, code: u16) {
        let mut held = self.state.lock().await;
        if let Some(socket) = held.socket.as_mut() {
            socket.close(code).await;
        }
    }
}

/// The `hub.event` of each notification among `frames`, in order (other frames left out).
pub fn event_names(frames: &[Value]) -> Vec<&str> {
    frames
        .iter()
        .filter(|f| f.get("event").is_some())
        .map(event_of)
        .collect()
}

/// A notification's `hub.event`.
pub fn event_of(frame: &Value) -> &str {
    frame["event"]["hub.event"].as_str().unwrap_or_default()
}

/// An arrival in words, for a failure message.
pub fn describe(arrival: &Arrival, within: Duration) -> String {
    match arrival {
        Arrival::Text { json: Some(f), .. } if f.get("event").is_some() => {
            format!("a {} notification", event_of(f))
        }
        Arrival::Text { json: Some(f), .. } => format!("the frame {f}"),
        Arrival::Text { text, .. } => format!("a frame that is not JSON: {text:.200}"),
        Arrival::Binary(n) => format!("a binary frame of {n} bytes"),
        Arrival::Closed(code) => format!("the socket closed (code {code:?})"),
        Arrival::Silent => format!("nothing within {} ms", within.as_millis()),
    }
}

/// The checker's session with the hub under test.
pub struct Probe {
    pub wire: Wire,
    pub hub_url: String,
    pub first: Client,
    pub second: Client,
    /// The well-known FHIRcast configuration, when the hub served one as JSON.
    pub discovery: Option<Value>,
    pub timing: Timing,
    held: Mutex<Vec<Subscription>>,
    /// Every endpoint issued during the current check: (token, topic, endpoint).
    issued: Mutex<Vec<(String, String, String)>>,
    /// Close events for what the current check opened, in the order opened.
    opened: Mutex<Vec<(Client, Value)>>,
}

impl Probe {
    /// Gets both clients' tokens, reads the discovery document, and refuses a topic that has
    /// a context open.
    pub async fn start(target: &Target) -> Result<Probe, SetupError> {
        let trust = match &target.trust {
            TrustSource::WebRoots => Trust::web_roots(),
            TrustSource::Pem(pem) => Trust::only(pem).map_err(SetupError::Trust)?,
        };
        let wire = Wire::new(trust).map_err(SetupError::Trust)?;
        let hub_url = target.hub_url.trim_end_matches('/').to_owned();
        let first = client(&wire, &target.first).await?;
        let second = client(&wire, target.second.as_ref().unwrap_or(&target.first)).await?;
        let discovery = wire
            .get(
                &format!("{hub_url}/.well-known/fhircast-configuration"),
                None,
            )
            .await
            .ok()
            .and_then(|answer| answer.json());
        let probe = Probe {
            wire,
            hub_url,
            first,
            second,
            discovery,
            timing: target.timing,
            held: Mutex::new(Vec::new()),
            issued: Mutex::new(Vec::new()),
            opened: Mutex::new(Vec::new()),
        };
        if let Some(open) = probe.left_in_context().await {
            return Err(SetupError::TopicInUse(open));
        }
        probe.wire.transcript.take();
        Ok(probe)
    }

    /// The type of the topic's current context when Get Current Context shows one open.
    pub async fn left_in_context(&self) -> Option<String> {
        let answer = self.current_context(&self.first).await.ok()?;
        let body = answer.json().filter(|_| answer.status == 200)?;
        let open = body["context"]
            .as_array()
            .is_some_and(|c| c.iter().any(|e| e["key"] != "content"));
        open.then(|| {
            body["context.type"]
                .as_str()
                .unwrap_or("unknown type")
                .to_owned()
        })
    }

    /// Whether the hub says it supports `event` (case-insensitive); `false` without discovery.
    pub fn supports(&self, event: &str) -> bool {
        self.discovery
            .as_ref()
            .and_then(|d| d["eventsSupported"].as_array())
            .is_some_and(|events| {
                events
                    .iter()
                    .filter_map(Value::as_str)
                    .any(|e| e.eq_ignore_ascii_case(event))
            })
    }

    /// Not applicable unless the hub lists every one of `events`.
    pub fn require_events(&self, events: &[&str]) -> CheckResult {
        match events.iter().find(|e| !self.supports(e)) {
            None => Ok(()),
            Some(missing) => Err(Finding::not_applicable(format!(
                "the hub does not list {missing} in eventsSupported"
            ))),
        }
    }

    /// Whether the hub advertises Get Current Context.
    pub fn has_current_context(&self) -> bool {
        self.discovery.as_ref().is_some_and(|d| {
            d["capabilities"]["supportsGetCurrentContext"] == true || d["getCurrentSupport"] == true
        })
    }

    pub fn require_current_context(&self) -> CheckResult {
        if self.has_current_context() {
            Ok(())
        } else {
            Err(Finding::not_applicable(
                "the hub does not advertise Get Current Context",
            ))
        }
    }

    /// A new token for the first app narrowed to `scope`, when the hub's token endpoint
    /// issues one (not applicable otherwise).
    pub async fn narrowed(&self, scope: &str) -> Result<Client, Finding> {
        let Credentials::Client {
            token_url,
            client_id,
            client_secret,
            topic,
        } = &self.first.credentials
        else {
            return Err(Finding::not_applicable(
                "needs a token with narrower scopes; the checker was given a fixed token",
            ));
        };
        let answer = self
            .wire
            .post_form_basic(
                token_url,
                (client_id, client_secret),
                &[("grant_type", "client_credentials"), ("scope", scope)],
            )
            .await?;
        let client = parse_token(&answer, &self.first.credentials, topic.as_deref())
            .map_err(|why| Finding::not_applicable(format!("no token for `{scope}`: {why}")))?;
        match &client.scope {
            Some(granted) if granted.split_whitespace().eq(scope.split_whitespace()) => Ok(client),
            other => Err(Finding::not_applicable(format!(
                "asked for the scope `{scope}`, the token endpoint granted {other:?}"
            ))),
        }
    }

    // ---- subscribing

    /// POSTs a subscription request with exactly these extra pairs after the usual ones.
    pub async fn subscribe_request(
        &self,
        client: &Client,
        form: &SubscribeForm<'_>,
    ) -> Result<Answer, Finding> {
        let topic = form.topic.unwrap_or(&client.topic);
        let mut pairs = vec![
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", topic),
            ("hub.events", form.events),
        ];
        if let Some(lease) = form.lease_seconds {
            pairs.push(("hub.lease_seconds", lease));
        }
        if let Some(name) = form.name {
            pairs.push(("subscriber.name", name));
        }
        let answer = self
            .wire
            .post_form(&self.hub_url, Some(&client.token), &pairs)
            .await?;
        if let Ok(endpoint) = endpoint_of(&answer)
            && let Ok(mut issued) = self.issued.lock()
        {
            issued.push((client.token.clone(), topic.to_owned(), endpoint));
        }
        Ok(answer)
    }

    /// Subscribes to `events`, connects and reads the confirmation.
    pub async fn subscribe(&self, client: &Client, events: &str) -> Result<Subscription, Finding> {
        self.subscribe_with(client, &SubscribeForm::events(events))
            .await
    }

    pub async fn subscribe_with(
        &self,
        client: &Client,
        form: &SubscribeForm<'_>,
    ) -> Result<Subscription, Finding> {
        let answer = self.subscribe_request(client, form).await?;
        let endpoint = endpoint_of(&answer)?;
        self.connect(&endpoint).await
    }

    /// Connects to `endpoint` and reads the first frame.
    pub async fn connect(&self, endpoint: &str) -> Result<Subscription, Finding> {
        let socket = self
            .wire
            .connect(endpoint, &[])
            .await
            .map_err(|e| Finding::fail(format!("could not connect to {endpoint}: {e}")))?;
        let subscription = Subscription {
            endpoint: endpoint.to_owned(),
            confirmation: Value::Null,
            state: Arc::new(tokio::sync::Mutex::new(Held {
                socket: Some(socket),
                acknowledge: true,
            })),
        };
        if let Ok(mut held) = self.held.lock() {
            held.push(subscription.clone());
        }
        let confirmation = match subscription.next(self.timing.arrival).await {
            Arrival::Text { json: Some(v), .. } => v,
            _ => Value::Null,
        };
        Ok(Subscription {
            confirmation,
            ..subscription
        })
    }

    /// The unsubscribe request for `endpoint` on `topic`.
    pub async fn unsubscribe(
        &self,
        token: &str,
        topic: &str,
        endpoint: &str,
    ) -> Result<Answer, Finding> {
        self.wire
            .post_form(
                &self.hub_url,
                Some(token),
                &[
                    ("hub.channel.type", "websocket"),
                    ("hub.mode", "unsubscribe"),
                    ("hub.topic", topic),
                    ("hub.channel.endpoint", endpoint),
                ],
            )
            .await
    }

    // ---- requesting changes

    /// A request on the client's topic, ready to POST.
    pub fn event(&self, client: &Client, name: &str, context: Value) -> Value {
        fhir::event(&client.topic, name, context)
    }

    /// POSTs `event` as JSON to `hub.url`; the hub's answer, whatever it is.
    pub async fn post_event(&self, client: &Client, event: &Value) -> Result<Answer, Finding> {
        self.post_event_at(&self.hub_url, "application/json", client, event)
            .await
    }

    /// POSTs `event` to `url` as `media`; what is accepted is remembered for tidying.
    pub async fn post_event_at(
        &self,
        url: &str,
        media: &str,
        client: &Client,
        event: &Value,
    ) -> Result<Answer, Finding> {
        let answer = self
            .wire
            .post_json(url, Some(&client.token), media, event.to_string())
            .await?;
        if answer.is_success() {
            self.remember(client, event);
        }
        Ok(answer)
    }

    /// The second client opens a new test patient and closes it again; its context.
    pub async fn open_and_close_patient(&self) -> Result<Value, Finding> {
        let (context, _) = fhir::patient_context();
        self.publish(&self.second, "Patient-open", context.clone())
            .await?;
        self.publish(&self.second, "Patient-close", context.clone())
            .await?;
        Ok(context)
    }

    /// Requests `name` with `context` and requires a 2xx; the event sent.
    pub async fn publish(
        &self,
        client: &Client,
        name: &str,
        context: Value,
    ) -> Result<Value, Finding> {
        let event = self.event(client, name, context);
        self.publish_event(client, &event).await?;
        Ok(event)
    }

    pub async fn publish_event(&self, client: &Client, event: &Value) -> CheckResult {
        let answer = self.post_event(client, event).await?;
        if answer.is_success() {
            Ok(())
        } else {
            Err(Finding::setup(format!(
                "the hub answered {} to a valid {} request: {}",
                answer.status,
                event["event"]["hub.event"].as_str().unwrap_or_default(),
                answer.body
            )))
        }
    }

    /// Keeps track of opens and closes so that tidying can close what is left open.
    fn remember(&self, client: &Client, event: &Value) {
        let name = event["event"]["hub.event"].as_str().unwrap_or_default();
        let context = &event["event"]["context"];
        let Some((kind, verb)) = name.rsplit_once('-') else {
            return;
        };
        let Ok(mut opened) = self.opened.lock() else {
            return;
        };
        let anchor = fhir::anchor_id(context);
        let same = |(_, close): &(Client, Value)| {
            close["event"]["hub.event"]
                .as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case(&format!("{kind}-close")))
                && fhir::anchor_id(&close["event"]["context"]) == anchor
        };
        if verb.eq_ignore_ascii_case("open") {
            let topic = event["event"]["hub.topic"].as_str().unwrap_or_default();
            // The patient of a study, report or encounter is in context too (derived), and
            // closing the anchor does not close it: it gets its own close, after the anchor's.
            let patient = context.as_array().and_then(|c| {
                c.iter()
                    .find(|e| e["key"] == "patient" && e.get("resource").is_some())
            });
            if let Some(patient) = patient.filter(|_| !kind.eq_ignore_ascii_case("Patient")) {
                let close =
                    fhir::event(topic, "Patient-close", Value::Array(vec![patient.clone()]));
                opened.push((client.clone(), close));
            }
            if !opened.iter().any(same) {
                let close = fhir::event(topic, &format!("{kind}-close"), context.clone());
                opened.push((client.clone(), close));
            }
        } else if verb.eq_ignore_ascii_case("close") {
            opened.retain(|entry| !same(entry));
        }
    }

    /// `GET {hub.url}/{topic}` with the client's token.
    pub async fn current_context(&self, client: &Client) -> Result<Answer, Finding> {
        self.wire
            .get(
                &format!("{}/{}", self.hub_url, client.topic),
                Some(&client.token),
            )
            .await
    }

    /// The current context as JSON, requiring a 200.
    pub async fn current(&self, client: &Client) -> Result<Value, Finding> {
        let answer = self.current_context(client).await?;
        match (answer.status, answer.json()) {
            (200, Some(body)) => Ok(body),
            _ => Err(Finding::fail(format!(
                "GET current context answered {} {}",
                answer.status, answer.body
            ))),
        }
    }

    /// Undoes what the check did: closes what it opened (newest first), then unsubscribes
    /// and closes every subscription it still holds.
    pub async fn tidy(&self) {
        let opened = self
            .opened
            .lock()
            .map(|mut o| std::mem::take(&mut *o))
            .unwrap_or_default();
        for (client, close) in opened.into_iter().rev() {
            let _ = self.post_event(&client, &close).await;
        }
        // Unsubscribing what was already unsubscribed is refused, and harmless.
        let issued = self
            .issued
            .lock()
            .map(|mut i| std::mem::take(&mut *i))
            .unwrap_or_default();
        for (token, topic, endpoint) in issued {
            let _ = self.unsubscribe(&token, &topic, &endpoint).await;
        }
        let held = self
            .held
            .lock()
            .map(|mut h| std::mem::take(&mut *h))
            .unwrap_or_default();
        for subscription in held {
            let mut state = subscription.state.lock().await;
            if let Some(socket) = state.socket.as_mut() {
                socket.close(1000).await;
            }
            state.socket = None;
        }
    }
}

/// The `hub.channel.endpoint` of a 202 subscription answer.
pub fn endpoint_of(answer: &Answer) -> Result<String, Finding> {
    if answer.status != 202 {
        return Err(Finding::setup(format!(
            "a valid subscription request was answered {}: {}",
            answer.status, answer.body
        )));
    }
    answer
        .json()
        .and_then(|body| body["hub.channel.endpoint"].as_str().map(str::to_owned))
        .ok_or_else(|| Finding::fail("the 202 carries no hub.channel.endpoint string"))
}

async fn client(wire: &Wire, credentials: &Credentials) -> Result<Client, SetupError> {
    match credentials {
        Credentials::Token { token, topic } => Ok(Client {
            token: token.clone(),
            topic: topic.clone(),
            expires_in: None,
            scope: None,
            credentials: credentials.clone(),
        }),
        Credentials::Client {
            token_url,
            client_id,
            client_secret,
            topic,
        } => {
            let answer = wire
                .post_form_basic(
                    token_url,
                    (client_id, client_secret),
                    &[("grant_type", "client_credentials")],
                )
                .await
                .map_err(|f| SetupError::Token(format!("{f:?}")))?;
            parse_token(&answer, credentials, topic.as_deref()).map_err(SetupError::Token)
        }
    }
}

fn parse_token(
    answer: &Answer,
    credentials: &Credentials,
    topic: Option<&str>,
) -> Result<Client, String> {
    let body = answer
        .json()
        .filter(|_| answer.status == 200)
        .ok_or_else(|| {
            format!(
                "the token endpoint answered {} {}",
                answer.status, answer.body
            )
        })?;
    let token = body["access_token"]
        .as_str()
        .ok_or("the token response has no access_token")?;
    let topic = topic
        .map(str::to_owned)
        .or_else(|| body["hub.topic"].as_str().map(str::to_owned))
        .ok_or("the token response carries no hub.topic; give --topic")?;
    Ok(Client {
        token: token.to_owned(),
        topic,
        expires_in: body["expires_in"].as_u64(),
        scope: body["scope"].as_str().map(str::to_owned),
        credentials: credentials.clone(),
    })
}
