//! What the agent's tests share: an agent started on a configuration, where it listens, a
//! patient context to publish, and waiting on the agent's watches.
#![allow(dead_code)] // each test file uses its own part

use lockstep_agent::secrets::MemoryStore;
use lockstep_agent::{Agent, AgentHandle, Config};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

/// The agent on `config`, its app secrets in memory (no keyring in tests).
pub async fn start(config: Config) -> AgentHandle {
    Agent::start_with(config, Arc::new(MemoryStore::default()))
        .await
        .unwrap()
}

/// The agent's hub origin, `http://127.0.0.1:<port>`.
pub fn origin(agent: &AgentHandle) -> String {
    format!("http://127.0.0.1:{}", agent.port())
}

/// A context of one patient: `fields` are the Patient resource's (its `resourceType` is added).
pub fn patient_context(mut fields: Value) -> Value {
    fields["resourceType"] = "Patient".into();
    json!([{ "key": "patient", "resource": fields }])
}

/// Waits up to `within` for the watched value to satisfy `ok`, and returns it; fails the test
/// naming `what` otherwise.
pub async fn wait_for<T: Clone>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    within: Duration,
    ok: impl Fn(&T) -> bool,
) -> T {
    let result = tokio::time::timeout(within, rx.wait_for(|v| ok(v))).await;
    result
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
        .unwrap_or_else(|_| panic!("the agent stopped while waiting for {what}"))
        .clone()
}
