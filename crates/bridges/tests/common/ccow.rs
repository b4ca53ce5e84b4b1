//! CCOW participants written as test programs: a real callback server that answers the survey
//! as it is told to and records what it hears, and the calls a CCOW application makes on a
//! context manager.
#![allow(dead_code)] // shared by the bridges', the agent's and lockstepd's tests, each using its part

use axum::Router;
use axum::extract::{Query, State};
use lockstep_bridges::ccow::wire::{Args, read_reply};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const SURVEY_TIMEOUT: Duration = Duration::from_millis(500);

/// How a test participant answers `ContextChangesPending`.
#[derive(Clone, Copy)]
pub enum Answers {
    Accept,
    /// The spec's spelling.
    ConditionallyAccept,
    /// The Caradigm SDK's spelling.
    AcceptConditional,
    /// Past the survey timeout.
    Silent,
    /// HTTP 500.
    Fails,
}

#[derive(Clone)]
struct ParticipantApp {
    answers: Answers,
    /// Every callback method it received, in order.
    heard: Arc<Mutex<Vec<String>>>,
}

async fn callback(
    State(app): State<ParticipantApp>,
    Query(query): Query<HashMap<String, String>>,
) -> (axum::http::StatusCode, String) {
    let method = query.get("method").cloned().unwrap_or_default();
    app.heard.lock().unwrap().push(method.clone());
    if method != "ContextChangesPending" {
        return (axum::http::StatusCode::OK, String::new());
    }
    match app.answers {
        Answers::Accept => (axum::http::StatusCode::OK, "decision=accept&reason=".into()),
        Answers::ConditionallyAccept => (
            axum::http::StatusCode::OK,
            "decision=conditionally_accept&reason=Unsaved+report".into(),
        ),
        Answers::AcceptConditional => (
            axum::http::StatusCode::OK,
            "decision=accept_conditional&reason=Order+open".into(),
        ),
        Answers::Silent => {
            tokio::time::sleep(SURVEY_TIMEOUT * 4).await;
            (axum::http::StatusCode::OK, "decision=accept".into())
        }
        Answers::Fails => (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom".into()),
    }
}

/// A participant's callback server; returns its URL and what it hears.
pub async fn participant(answers: Answers) -> (String, Arc<Mutex<Vec<String>>>) {
    let heard = Arc::new(Mutex::new(Vec::new()));
    let app = ParticipantApp {
        answers,
        heard: heard.clone(),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/cp", listener.local_addr().unwrap());
    let router = Router::new()
        .route("/cp", axum::routing::get(callback))
        .with_state(app);
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, heard)
}

/// What a participant was told, its pings left out.
pub fn told(heard: &Mutex<Vec<String>>) -> Vec<String> {
    heard
        .lock()
        .unwrap()
        .iter()
        .filter(|m| *m != "Ping")
        .cloned()
        .collect()
}

/// A CCOW application's calls on the context manager at `base`.
pub struct CcowClient {
    pub base: String,
    pub http: reqwest::Client,
}

impl CcowClient {
    pub fn new(base: &str) -> CcowClient {
        CcowClient {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// A call in the query-string form (the common GET); `Err` is the exception it names.
    pub async fn get(
        &self,
        interface: &str,
        method: &str,
        args: &[(&str, &str)],
    ) -> Result<Args, String> {
        let mut query = vec![("interface", interface), ("method", method)];
        query.extend_from_slice(args);
        let response = self
            .http
            .get(format!("{}/", self.base))
            .query(&query)
            .send()
            .await
            .unwrap();
        // Exceptions are answered at 200, as deployed clients read them.
        assert_eq!(response.status(), 200);
        let body = response.bytes().await.unwrap();
        read_reply(&body).map_err(|e| e.exception.name().to_owned())
    }

    pub async fn join(&self, name: &str, url: &str) -> String {
        let reply = self
            .get(
                "ContextManager",
                "JoinCommonContext",
                &[
                    ("applicationName", name),
                    ("contextParticipant", url),
                    ("survey", "true"),
                    ("wait", "true"),
                ],
            )
            .await
            .unwrap();
        reply.get("participantCoupon").unwrap().to_owned()
    }

    /// Starts, sets and ends a change as `participant`; the context coupon and the survey's
    /// `noContinue` and `responses`.
    pub async fn change(
        &self,
        participant: &str,
        names: &str,
        values: &str,
    ) -> (String, bool, String) {
        let tx = self
            .get(
                "ContextManager",
                "StartContextChanges",
                &[("participantCoupon", participant)],
            )
            .await
            .unwrap();
        let tx = tx.get("contextCoupon").unwrap().to_owned();
        self.get(
            "ContextData",
            "SetItemValues",
            &[
                ("participantCoupon", participant),
                ("contextCoupon", &tx),
                ("itemNames", names),
                ("itemValues", values),
            ],
        )
        .await
        .unwrap();
        let ended = self
            .get(
                "ContextManager",
                "EndContextChanges",
                &[("participantCoupon", participant), ("contextCoupon", &tx)],
            )
            .await
            .unwrap();
        let no_continue = ended.get("noContinue").unwrap() == "true";
        let responses = ended.get("responses").unwrap_or_default().to_owned();
        (tx, no_continue, responses)
    }

    pub async fn decide(&self, participant: &str, tx: &str, decision: &str) {
        self.get(
            "ContextManager",
            "PublishChangesDecision",
            &[
                ("participantCoupon", participant),
                ("contextCoupon", tx),
                ("decision", decision),
            ],
        )
        .await
        .unwrap();
    }
}
