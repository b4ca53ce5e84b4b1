//! The enterprise link as the window sees it: the site's hub is a second agent (its real hub,
//! over HTTP and WebSocket). With `when_down = "keep_local"`, a change made while the site is
//! away is kept here and the link's row says so until the link is back.

mod common;
use lockstep_agent::client::HubClient;
use lockstep_agent::config::{UpstreamConfig, WhenDown};
use lockstep_agent::{AppConfig, Config, LinkKind, LinkState, LinkView};
use std::time::Duration;

fn app(client_id: &str) -> AppConfig {
    AppConfig {
        client_id: client_id.into(),
        client_secret: Some(format!("{client_id}-secret")),
        client_secret_key: None,
        scopes: vec!["fhircast/*.read".into(), "fhircast/*.write".into()],
        name: None,
        acknowledges: true,
        redirect_uris: Vec::new(),
    }
}

fn config(data: &tempfile::TempDir, apps: Vec<AppConfig>) -> Config {
    let mut config = Config::default();
    config.hub.port = 0;
    config.history.database = Some(data.path().join("lockstep.db"));
    config.apps = apps;
    config
}

fn site_link(links: &[LinkView]) -> Option<&LinkView> {
    links.iter().find(|l| l.kind == LinkKind::Upstream)
}

#[tokio::test]
async fn a_change_kept_local_while_the_site_is_away_is_marked_so() {
    let (site_data, data) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let site = common::start(config(&site_data, vec![app("lockstep")])).await;
    let mut workstation = config(&data, vec![app("pacs")]);
    workstation.upstream = UpstreamConfig {
        issuer: Some(common::origin(&site)),
        client_secret: Some("lockstep-secret".into()),
        when_down: WhenDown::KeepLocal,
        ..UpstreamConfig::default()
    };
    let agent = common::start(workstation).await;
    let mut links = agent.watch_links();
    let following = common::wait_for(
        &mut links,
        "the link following",
        Duration::from_secs(10),
        |l| site_link(l).is_some_and(|l| l.state == LinkState::Following),
    )
    .await;
    assert!(!site_link(&following).unwrap().problem);

    site.shutdown().await;
    common::wait_for(&mut links, "the link down", Duration::from_secs(10), |l| {
        site_link(l).is_some_and(|l| l.state == LinkState::Broken)
    })
    .await;
    let pacs = HubClient::sign_in(&common::origin(&agent), "pacs", "pacs-secret", None)
        .await
        .unwrap();
    let context = common::patient_context(serde_json::json!({
        "id": "p1",
        "identifier": [{ "system": "urn:oid:1.2.3", "value": "MRN-1" }]
    }));
    pacs.publish("Patient-open", context, None).await.unwrap();
    let marked = common::wait_for(
        &mut links,
        "the kept change marked",
        Duration::from_secs(5),
        |l| {
            site_link(l).is_some_and(|l| {
                l.detail
                    .as_deref()
                    .is_some_and(|d| d.contains("1 change is kept on this workstation only"))
            })
        },
    )
    .await;
    let row = site_link(&marked).unwrap();
    assert!(row.problem, "{row:?}");
    let current = pacs.current_context().await.unwrap();
    assert_eq!(current["context"][0]["resource"]["id"], "p1");
    agent.shutdown().await;
}
