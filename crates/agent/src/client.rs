//! A FHIRcast client: token, subscribe, receive, publish, get current context. `lockstepd`'s
//! verbs for site IT use it, and so will the upstream link to an enterprise hub.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("HTTP request to the hub failed: {0}")]
    Http(#[from] reqwest::Error),
    #[error("WebSocket failed: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    #[error("the hub answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("unexpected answer from the hub: {0}")]
    Protocol(String),
}

impl From<tokio_tungstenite::tungstenite::Error> for ClientError {
    fn from(e: tokio_tungstenite::tungstenite::Error) -> Self {
        ClientError::WebSocket(Box::new(e))
    }
}

/// An app's session with a hub: its token and the launch parameters that came with it.
pub struct HubClient {
    http: reqwest::Client,
    token: String,
    pub hub_url: String,
    pub topic: String,
    pub scope: String,
}

/// An open subscription: the socket, after its confirmation frame.
pub struct Subscription {
    socket: WebSocketStream<MaybeTlsStream<TcpStream>>,
    pub endpoint: String,
    pub confirmation: Value,
}

async fn checked(response: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = response.status();
    if status.is_success() {
        Ok(response)
    } else {
        let body = response.text().await.unwrap_or_default();
        Err(ClientError::Refused {
            status: status.as_u16(),
            body,
        })
    }
}

fn field(value: &Value, key: &str) -> Result<String, ClientError> {
    value
        .get(key)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| ClientError::Protocol(format!("no `{key}` in {value}")))
}

impl HubClient {
    /// Discovers the token endpoint at `origin` (e.g. `http://127.0.0.1:4980`) and gets a
    /// token with `client_credentials` (client_secret_basic).
    pub async fn sign_in(
        origin: &str,
        client_id: &str,
        secret: &str,
        scope: Option<&str>,
    ) -> Result<Self, ClientError> {
        let http = reqwest::Client::new();
        let smart: Value = checked(
            http.get(format!("{origin}/.well-known/smart-configuration"))
                .send()
                .await?,
        )
        .await?
        .json()
        .await?;
        let token_endpoint = field(&smart, "token_endpoint")?;
        let mut form = vec![("grant_type", "client_credentials")];
        if let Some(scope) = scope {
            form.push(("scope", scope));
        }
        let response: Value = checked(
            http.post(token_endpoint)
                .basic_auth(client_id, Some(secret))
                .form(&form)
                .send()
                .await?,
        )
        .await?
        .json()
        .await?;
        Ok(HubClient {
            token: field(&response, "access_token")?,
            hub_url: field(&response, "hub.url")?,
            topic: field(&response, "hub.topic")?,
            scope: field(&response, "scope")?,
            http,
        })
    }

    /// Subscribes to `events` (comma-separated), connects the WebSocket and reads the
    /// confirmation.
    pub async fn subscribe(
        &self,
        events: &str,
        subscriber_name: Option<&str>,
    ) -> Result<Subscription, ClientError> {
        let mut form = vec![
            ("hub.channel.type", "websocket"),
            ("hub.mode", "subscribe"),
            ("hub.topic", self.topic.as_str()),
            ("hub.events", events),
        ];
        if let Some(name) = subscriber_name {
            form.push(("subscriber.name", name));
        }
        let response: Value = checked(
            self.http
                .post(&self.hub_url)
                .bearer_auth(&self.token)
                .form(&form)
                .send()
                .await?,
        )
        .await?
        .json()
        .await?;
        let endpoint = field(&response, "hub.channel.endpoint")?;
        let (socket, _) = tokio_tungstenite::connect_async(endpoint.as_str()).await?;
        let mut subscription = Subscription {
            socket,
            endpoint,
            confirmation: Value::Null,
        };
        let confirmation = subscription.next_frame().await?.ok_or_else(|| {
            ClientError::Protocol("the socket closed before the confirmation".into())
        })?;
        if confirmation.get("hub.mode").and_then(Value::as_str) != Some("subscribe") {
            return Err(ClientError::Protocol(format!(
                "expected a confirmation, got {confirmation}"
            )));
        }
        subscription.confirmation = confirmation;
        Ok(subscription)
    }

    /// Publishes `event` with `context` on this client's topic; returns the event id.
    /// `version_id` is the content version an `*-update` applies to.
    pub async fn publish(
        &self,
        event: &str,
        context: Value,
        version_id: Option<&str>,
    ) -> Result<String, ClientError> {
        let id = uuid::Uuid::new_v4().to_string();
        let timestamp = OffsetDateTime::now_utc()
            .format(&Rfc3339)
            .unwrap_or_default();
        let mut body = json!({
            "timestamp": timestamp,
            "id": id,
            "event": { "hub.topic": self.topic, "hub.event": event, "context": context },
        });
        if let Some(version) = version_id {
            body["event"]["context.versionId"] = version.into();
        }
        checked(
            self.http
                .post(&self.hub_url)
                .bearer_auth(&self.token)
                .json(&body)
                .send()
                .await?,
        )
        .await?;
        Ok(id)
    }

    /// Every app's report card (`GET /lockstep/apps`, scope `lockstep/apps.read`).
    pub async fn app_reports(&self) -> Result<Vec<crate::AppReport>, ClientError> {
        let origin = self
            .hub_url
            .strip_suffix(lockstep_hub::server::HUB_PATH)
            .unwrap_or(&self.hub_url);
        let url = format!("{origin}/lockstep/apps");
        Ok(
            checked(self.http.get(url).bearer_auth(&self.token).send().await?)
                .await?
                .json()
                .await?,
        )
    }

    /// Get Current Context (`GET {hub.url}/{topic}`).
    pub async fn current_context(&self) -> Result<Value, ClientError> {
        let url = format!("{}/{}", self.hub_url, self.topic);
        Ok(
            checked(self.http.get(url).bearer_auth(&self.token).send().await?)
                .await?
                .json()
                .await?,
        )
    }
}

/// Asks the running agent at `origin` to forget the clinician's sign-in to the site; returns
/// what it said.
pub async fn sign_out_of_site(origin: &str) -> Result<String, ClientError> {
    let url = format!("{origin}{}", crate::upstream::LOGOUT_PATH);
    let response = checked(reqwest::Client::new().post(url).send().await?).await?;
    Ok(response.text().await?)
}

impl Subscription {
    /// The next JSON frame; `None` when the hub closed the socket.
    pub async fn next_frame(&mut self) -> Result<Option<Value>, ClientError> {
        while let Some(message) = self.socket.next().await {
            match message? {
                Message::Text(text) => {
                    return serde_json::from_str(text.as_str()).map(Some).map_err(|e| {
                        ClientError::Protocol(format!("a frame that is not JSON: {e}"))
                    });
                }
                Message::Close(_) => return Ok(None),
                _ => continue,
            }
        }
        Ok(None)
    }

    /// Answers a notification with `{id, status}`.
    pub async fn acknowledge(&mut self, id: &str, status: u16) -> Result<(), ClientError> {
        let reply = json!({ "id": id, "status": status }).to_string();
        self.socket.send(Message::text(reply)).await?;
        Ok(())
    }

    /// Closes the socket normally (1000).
    pub async fn close(mut self) -> Result<(), ClientError> {
        use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
        let frame = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        self.socket.close(Some(frame)).await?;
        Ok(())
    }
}
