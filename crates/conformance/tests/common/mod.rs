//! What the checker's tests share: a real Lockstep hub (the agent, in process) with the
//! checker's two apps registered, and the checker's target pointed at a hub.
#![allow(dead_code)] // each test file uses its own part

pub mod proxy;

use lockstep_agent::secrets::MemoryStore;
use lockstep_agent::{Agent, AgentHandle, AppConfig, Config};
use lockstep_conformance::{Credentials, Selection, Target, Timing, TrustSource};
use std::sync::Arc;
use std::time::Duration;

pub const FIRST: (&str, &str) = ("checker", "checker-secret");
pub const SECOND: (&str, &str) = ("checker-peer", "checker-peer-secret");

fn app((client_id, secret): (&str, &str)) -> AppConfig {
    AppConfig {
        client_id: client_id.into(),
        client_secret: Some(secret.into()),
        client_secret_key: None,
        scopes: vec!["fhircast/*.read".into(), "fhircast/*.write".into()],
        name: None,
        acknowledges: true,
        redirect_uris: Vec::new(),
    }
}

/// A Lockstep agent with the checker's apps, giving up on silent apps after 2 s.
pub async fn lockstep(data: &tempfile::TempDir) -> AgentHandle {
    let mut config = Config::default();
    config.hub.port = 0;
    config.hub.ack_timeout_seconds = 2;
    config.history.database = Some(data.path().join("lockstep.db"));
    config.apps = vec![app(FIRST), app(SECOND)];
    Agent::start_with(config, Arc::new(MemoryStore::default()))
        .await
        .unwrap()
}

/// The checker's target: the hub at `origin` (`http://host:port`), both apps.
pub fn target(origin: &str) -> Target {
    let credentials = |(client_id, secret): (&str, &str)| Credentials::Client {
        token_url: format!("{origin}/auth/token"),
        client_id: client_id.into(),
        client_secret: secret.into(),
        topic: None,
    };
    Target {
        hub_url: format!("{origin}/fhircast"),
        first: credentials(FIRST),
        second: Some(credentials(SECOND)),
        trust: TrustSource::WebRoots,
        timing: Timing {
            unanswered: Duration::from_secs(6),
            ..Timing::default()
        },
    }
}

pub fn only(list: &str) -> Selection {
    Selection::parse(Some(list), None).unwrap()
}
