//! The FHIRcast hub endpoints: a POST to `hub.url` (subscription or context change), a POST
//! to a topic, and Get Current Context.

use super::*;

/// What a POST to `hub.url` carries: a subscription (form, or JSON with `hub.mode`) or a
/// request for a context change (JSON with `event`).
pub(crate) enum HubPost {
    Subscription(SubscriptionRequest),
    ContextChange(ContextChange),
}

pub(crate) fn classify(headers: &HeaderMap, raw: &[u8]) -> Result<HubPost, Refusal> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if content_type.starts_with("application/x-www-form-urlencoded") {
        return SubscriptionRequest::from_form(raw)
            .map(HubPost::Subscription)
            .map_err(Refusal::bad_request);
    }
    let is_json = content_type.is_empty()
        || content_type.starts_with("application/json")
        || content_type.starts_with("application/fhir+json");
    if !is_json {
        return Err(Refusal::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "use application/x-www-form-urlencoded to subscribe, application/json or application/fhir+json to publish",
        ));
    }
    if !may_name_hub_mode(raw) {
        return ContextChange::parse(raw)
            .map(HubPost::ContextChange)
            .map_err(Refusal::bad_request);
    }
    #[derive(Deserialize)]
    struct Probe {
        #[serde(rename = "hub.mode")]
        mode: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_slice::<Probe>(raw) {
        Ok(Probe { mode: Some(_) }) => SubscriptionRequest::from_json(raw)
            .map(HubPost::Subscription)
            .map_err(Refusal::bad_request),
        Ok(Probe { mode: None }) => ContextChange::parse(raw)
            .map(HubPost::ContextChange)
            .map_err(Refusal::bad_request),
        Err(e) => Err(Refusal::bad_request(format!("malformed JSON: {e}"))),
    }
}

/// Whether a JSON body may have a `hub.mode` member. The key is spelled either as the bytes
/// `"hub.mode"` or with a `\u` escape; a body with neither is a context change, and is parsed
/// once instead of being read twice (every publish comes this way).
pub(super) fn may_name_hub_mode(raw: &[u8]) -> bool {
    memchr::memmem::find(raw, b"\"hub.mode\"").is_some()
        || memchr::memmem::find(raw, b"\\u").is_some()
}

pub(super) async fn hub_post(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    headers: HeaderMap,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let answered = async {
        let raw = read_body(raw, &state)?;
        match classify(&headers, &raw)? {
            HubPost::Subscription(req) => subscribe(&state, &grant, req),
            HubPost::ContextChange(change) => publish(&state, &grant, change).await,
        }
    }
    .await;
    told_if_refused(&state, &grant, answered)
}

/// Tells [`HubState::on_refused`] of a refusal, and passes the answer on.
fn told_if_refused(
    state: &HubState,
    grant: &TokenGrant,
    answered: Result<Response, Refusal>,
) -> Result<Response, Refusal> {
    if let (Err(refusal), Some(on_refused)) = (&answered, &state.on_refused) {
        on_refused(grant, refusal.status().as_u16(), refusal.message());
    }
    answered
}

pub(super) async fn topic_post(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
    raw: Result<Bytes, BytesRejection>,
) -> Result<Response, Refusal> {
    let answered = async {
        let raw = read_body(raw, &state)?;
        let change = ContextChange::parse(&raw).map_err(Refusal::bad_request)?;
        if change.topic != topic {
            return Err(Refusal::bad_request(
                "the topic in the URL differs from event.hub.topic",
            ));
        }
        publish(&state, &grant, change).await
    }
    .await;
    told_if_refused(&state, &grant, answered)
}

pub(super) fn subscribe(
    state: &HubState,
    grant: &TokenGrant,
    mut req: SubscriptionRequest,
) -> Result<Response, Refusal> {
    if let Some(url) = req.channel_endpoint.take() {
        let token = state.endpoint_token(&url).ok_or_else(|| {
            Refusal::bad_request("hub.channel.endpoint is not an endpoint this hub issued")
        })?;
        req.channel_endpoint = Some(token.to_owned());
    }
    let mode = req.mode;
    if !req.ignored_events.is_empty() {
        tracing::info!(
            client = %grant.client_id,
            ignored = %req.ignored_events.join(","),
            "subscription names events this hub does not support; granted the others"
        );
    }
    let outcome = state.engine.subscribe(grant, req)?;
    tracing::info!(client = %grant.client_id, ?mode, "subscription accepted");
    let body = json!({ "hub.channel.endpoint": state.endpoint_url(&outcome.endpoint) });
    Ok(json_response(StatusCode::ACCEPTED, body.to_string()))
}

pub(super) async fn publish(
    state: &HubState,
    grant: &TokenGrant,
    change: ContextChange,
) -> Result<Response, Refusal> {
    let event = change.event.name;
    let event_id: Arc<str> = change.id.as_str().into();
    state.engine.request(grant, change).await?;
    // Debug, not info: history and the audit trail hold every accepted change, and a line per
    // change (formatted, written to standard error and the log file) would cost each answer
    // two more writes.
    tracing::debug!(client = %grant.client_id, event, "context change accepted");
    // Delivery has happened; the answer waits until the change is on record. A 2xx means
    // recorded: a change delivered but not on record is told so.
    if let Some(on_record) = &state.on_record
        && let Err(why) = on_record(event_id).await
    {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("{event} was relayed but is not on record: {why}"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

pub(super) async fn topic_get(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
) -> Result<Response, Refusal> {
    let current = current_context(&state, &grant, &topic)?;
    Ok(json_response(StatusCode::OK, current.to_json()))
}

/// The STU2 shape of Get Current Context: the bare context array (opt-in, `hub.stu2_compat`).
pub(super) async fn topic_get_stu2(
    State(state): State<HubState>,
    Authenticated(grant): Authenticated,
    Path(topic): Path<String>,
) -> Result<Response, Refusal> {
    let current = current_context(&state, &grant, &topic)?;
    Ok(json_response(StatusCode::OK, current.context))
}

pub(super) fn current_context(
    state: &HubState,
    grant: &TokenGrant,
    topic: &str,
) -> Result<CurrentContext, Refusal> {
    state
        .engine
        .current_context(grant, topic)
        .ok_or_else(|| Refusal::new(StatusCode::NOT_FOUND, "unknown topic"))
}
