//! A viewer's web launch endpoint for tests: a real local HTTP server that records the query
//! of every `GET /IHEInvokeImageDisplay`. Shared by the bridge and agent tests.

use std::sync::{Arc, Mutex};

/// A running viewer: its port, and the queries it has been called with, oldest first.
pub struct Viewer {
    pub port: u16,
    pub seen: Arc<Mutex<Vec<String>>>,
}

impl Viewer {
    pub async fn start() -> Viewer {
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let record = seen.clone();
        let app = axum::Router::new().route(
            "/IHEInvokeImageDisplay",
            axum::routing::get(move |uri: axum::http::Uri| {
                let record = record.clone();
                async move {
                    record
                        .lock()
                        .unwrap()
                        .push(uri.query().unwrap_or_default().to_owned());
                    "ok"
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Viewer { port, seen }
    }

    /// The queries so far.
    pub fn queries(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}
