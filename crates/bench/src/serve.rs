//! The bench binary's server modes: the baseline, and the hub library with many topics.
//!
//! The bench runs each as a child process of its own; `lockstepd`, with its one session topic,
//! cannot serve many topics, so the hub library stands in for it there.

use crate::baseline;
use crate::client::Access;
use crate::servers::{Announce, CLIENT_ID, CLIENT_SECRET, LIMITS};
use lockstep_fhircast::ScopeSet;
use lockstep_hub::{Authority, ClientRegistration, Engine, HubSettings, HubState};
use std::io::Write;
use std::sync::Arc;
use tokio::net::TcpListener;

/// The same runtime `lockstepd` builds: one worker per core.
fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Runtime::new()?)
}

fn announce(announce: &Announce) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string(announce)?)?;
    out.flush()?;
    Ok(())
}

pub fn baseline(topics: usize) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        announce(&Announce {
            host: listener.local_addr()?.to_string(),
            topics: (0..topics)
                .map(|i| Access {
                    topic: format!("topic-{i}"),
                    token: "unchecked".into(),
                })
                .collect(),
        })?;
        baseline::serve(listener).await?;
        Ok(())
    })
}

/// The hub library alone, as `lockstepd` serves it (`lockstep_hub::serve`, the shipped settings
/// but for the bench's raised limits) without the agent around it (no history, no audit, no
/// log subscriber): `topics` topics and a token bound to each.
pub fn hub(topics: usize) -> anyhow::Result<()> {
    runtime()?.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let settings = HubSettings {
            port,
            max_subscriptions_per_client: LIMITS.max_subscriptions_per_client,
            max_subscriptions_total: LIMITS.max_subscriptions_total,
            requests_per_second_per_client: LIMITS.requests_per_second_per_client,
            request_burst_per_client: LIMITS.request_burst_per_client,
            max_tokens_per_client: LIMITS.max_tokens_per_client,
            ..HubSettings::default()
        };
        let engine = Engine::new(settings.clone());
        let client = ClientRegistration {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            scopes: ScopeSet::parse("fhircast/*.read fhircast/*.write")?,
            name: "Bench".into(),
            acknowledges: true,
            redirect_uris: Vec::new(),
        };
        let authority = Arc::new(Authority::new(
            vec![client.clone()],
            settings.token_lifetime(),
        ));
        authority.set_max_tokens_per_client(settings.max_tokens_per_client);
        let mut accesses = Vec::new();
        let mut first = None;
        for _ in 0..topics.max(1) {
            let topic = engine.create_topic();
            let issued = authority.issue(&client, None, topic.clone())?;
            first.get_or_insert_with(|| topic.clone());
            accesses.push(Access {
                topic: topic.to_string(),
                token: issued.access_token,
            });
        }
        let state = HubState::new(engine, authority, first.expect("one topic"), port);
        announce(&Announce {
            host: format!("127.0.0.1:{port}"),
            topics: accesses,
        })?;
        lockstep_hub::serve(vec![listener], state, std::future::pending()).await?;
        Ok(())
    })
}
