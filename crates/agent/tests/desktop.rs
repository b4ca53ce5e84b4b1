//! What the tray and its windows drive: link states, the tray status, pause, registering and
//! removing apps, settings and site-policy locks.

mod common;

use lockstep_agent::client::HubClient;
use lockstep_agent::config::{ConfigSources, PolicyLayer, PolicyLevel, PolicySetting};
use lockstep_agent::desktop::{DesktopError, TrayStatus};
use lockstep_agent::secrets::{MemoryStore, SecretError, SecretStore};
use lockstep_agent::{Agent, AgentHandle, Config, LinkState, LinkView};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

const USER_FILE: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "ris"
client_secret = "secret-for-tests"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "RIS"

[[apps]]
client_id = "ohif"
client_secret = "secret-for-ohif"
scopes = ["fhircast/*.read", "fhircast/*.write"]
name = "OHIF"
acknowledges = false
"#;

struct Setup {
    agent: AgentHandle,
    dir: tempfile::TempDir,
}

impl Setup {
    fn user_file(&self) -> std::path::PathBuf {
        self.dir.path().join("config.toml")
    }
    fn origin(&self) -> String {
        common::origin(&self.agent)
    }
}

/// The machine files a test starts with.
#[derive(Default, Clone, Copy)]
struct Policy<'a> {
    enforced: Option<&'a str>,
    recommended: Option<&'a str>,
}

fn enforced(text: &str) -> Policy<'_> {
    Policy {
        enforced: Some(text),
        recommended: None,
    }
}

async fn start_with(policy: Policy<'_>, secrets: Arc<dyn SecretStore>) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let user = dir.path().join("config.toml");
    std::fs::write(
        &user,
        format!(
            "{USER_FILE}\n[history]\ndatabase = \"{}\"\n",
            dir.path().join("db").display()
        ),
    )
    .unwrap();
    let layer = |name: &str, text: Option<&str>| {
        text.map(|text| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            PolicyLayer::File(path)
        })
    };
    let config = Config::load_from(&ConfigSources {
        enforced: layer("policy.toml", policy.enforced).into_iter().collect(),
        recommended: layer("recommended.toml", policy.recommended)
            .into_iter()
            .collect(),
        files: vec![(user.clone(), true)],
        user_file: Some(user),
        ..Default::default()
    })
    .unwrap();
    let agent = Agent::start_with(config, secrets).await.unwrap();
    Setup { agent, dir }
}

async fn start() -> Setup {
    start_with(Policy::default(), Arc::new(MemoryStore::default())).await
}

fn patient(id: &str) -> serde_json::Value {
    common::patient_context(json!({ "id": id, "identifier": [{ "value": id }] }))
}

/// What the window waits for: up to five seconds.
async fn wait_for<T: Clone>(
    rx: &mut tokio::sync::watch::Receiver<T>,
    what: &str,
    ok: impl Fn(&T) -> bool,
) -> T {
    common::wait_for(rx, what, Duration::from_secs(5), ok).await
}

#[tokio::test]
async fn pause_refuses_context_changes_until_resumed() {
    let s = start().await;
    let ris = HubClient::sign_in(&s.origin(), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    let mut status = s.agent.watch_status();
    s.agent.set_paused(true);
    wait_for(&mut status, "paused", |st| *st == TrayStatus::Paused).await;
    let refused = ris
        .publish("Patient-open", patient("p1"), None)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("409") && refused.contains("paused"),
        "{refused}"
    );
    assert_eq!(ris.current_context().await.unwrap()["context.type"], "");
    s.agent.set_paused(false);
    ris.publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    wait_for(&mut status, "patient", |st| *st == TrayStatus::Patient).await;
    s.agent.history().writer().flush().await.unwrap();
    let audit = s
        .agent
        .history()
        .store()
        .audit(&Default::default())
        .unwrap();
    assert!(audit.iter().any(|a| a.detail.contains("following paused")));
    s.agent.shutdown().await;
}

#[tokio::test]
async fn link_states_and_tray_status_follow_the_apps() {
    let s = start().await;
    let ris = HubClient::sign_in(&s.origin(), "ris", "secret-for-tests", None)
        .await
        .unwrap();
    let mut links = s.agent.watch_links();
    let mut status = s.agent.watch_status();
    // Listed under the name site IT registered (RIS), with the name it gives itself beside.
    let is_viewer = |v: &LinkView| v.name == "RIS" && v.own_name.as_deref() == Some("Viewer");
    let mut viewer = ris.subscribe("Patient-open", Some("Viewer")).await.unwrap();
    wait_for(&mut links, "viewer following", |l| {
        l.iter()
            .any(|v| is_viewer(v) && v.state == LinkState::Following)
    })
    .await;

    let id = ris
        .publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    viewer.next_frame().await.unwrap();
    viewer.acknowledge(&id, 409).await.unwrap();
    let list = wait_for(&mut links, "viewer refused", |l| {
        l.iter()
            .any(|v| is_viewer(v) && matches!(v.state, LinkState::Refused { .. }))
    })
    .await;
    let link = list.iter().find(|v| is_viewer(v)).unwrap();
    assert!(link.problem);
    assert!(link.detail.as_deref().unwrap().contains("409"), "{link:?}");
    assert!(
        link.detail
            .as_deref()
            .unwrap()
            .starts_with("RIS (\"Viewer\") refused"),
        "{link:?}"
    );
    wait_for(&mut status, "problem", |st| *st == TrayStatus::Problem).await;

    let id = ris
        .publish("Patient-open", patient("p2"), None)
        .await
        .unwrap();
    viewer.next_frame().await.unwrap();
    viewer.acknowledge(&id, 200).await.unwrap();
    wait_for(&mut status, "patient again", |st| {
        *st == TrayStatus::Patient
    })
    .await;
    let list = s.agent.watch_links().borrow().clone();
    assert!(list.iter().all(|v| !v.problem && v.detail.is_none()));
    // Its report card: one subscription, its socket opened, one refusal, one acknowledgement.
    let reports = s.agent.app_reports();
    let card = reports
        .iter()
        .find(|r| r.name == "RIS" && r.own_name.as_deref() == Some("Viewer"))
        .unwrap_or_else(|| panic!("no card for the viewer: {reports:?}"));
    assert_eq!((card.subscribed, card.connected), (1, 1));
    assert_eq!((card.acknowledged, card.refused, card.timed_out), (1, 1, 0));
    assert_eq!(
        card.statuses,
        std::collections::BTreeMap::from([(200, 1), (409, 1)])
    );
    assert!(card.answer_p50_ms.is_some_and(|ms| ms >= 0.0));

    viewer.close().await.unwrap();
    wait_for(&mut links, "viewer gone", |l| {
        l.iter()
            .any(|v| is_viewer(v) && matches!(v.state, LinkState::Gone(_)) && !v.problem)
    })
    .await;
    s.agent.shutdown().await;
}

#[tokio::test]
async fn an_added_app_gets_a_token_at_once_and_a_removed_one_stops_working() {
    let secrets = Arc::new(MemoryStore::default());
    let s = start_with(Policy::default(), secrets.clone()).await;
    let new = s
        .agent
        .add_app("Reading Room PACS", vec!["fhircast/*.read".into()])
        .await
        .unwrap();
    assert!(
        new.client_id.starts_with("reading-room-pacs-"),
        "{}",
        new.client_id
    );
    assert!(new.secret_in_keyring);
    assert!(new.client_secret.len() >= 32);
    assert_eq!(
        secrets
            .get(&format!("app.{}", new.client_id))
            .unwrap()
            .as_deref(),
        Some(new.client_secret.as_str())
    );
    let written = std::fs::read_to_string(s.user_file()).unwrap();
    assert!(
        written.contains(&new.client_id) && !written.contains(&new.client_secret),
        "{written}"
    );
    assert!(
        s.agent
            .apps()
            .iter()
            .any(|a| a.client_id == new.client_id && a.secret_in_keyring)
    );

    let pacs = HubClient::sign_in(&s.origin(), &new.client_id, &new.client_secret, None)
        .await
        .unwrap();
    assert!(pacs.current_context().await.is_ok());

    s.agent.remove_app(&new.client_id).await.unwrap();
    assert!(
        pacs.current_context().await.is_err(),
        "its token stops working at once"
    );
    assert!(
        HubClient::sign_in(&s.origin(), &new.client_id, &new.client_secret, None)
            .await
            .is_err()
    );
    assert!(
        secrets
            .get(&format!("app.{}", new.client_id))
            .unwrap()
            .is_none()
    );
    assert!(matches!(
        s.agent.remove_app("nobody").await,
        Err(DesktopError::UnknownApp(..))
    ));
    assert!(matches!(
        s.agent.add_app("  ", vec!["fhircast/*.read".into()]).await,
        Err(DesktopError::Invalid(_))
    ));
    assert!(matches!(
        s.agent.add_app("X", vec!["fhircast/bad".into()]).await,
        Err(DesktopError::Invalid(_))
    ));
    s.agent.shutdown().await;
}

/// A keyring that is not there (no Secret Service in this session).
struct NoKeyring;
impl SecretStore for NoKeyring {
    fn get(&self, _: &str) -> Result<Option<String>, SecretError> {
        Err(SecretError("no keyring".into()))
    }
    fn set(&self, _: &str, _: &str) -> Result<(), SecretError> {
        Err(SecretError("no keyring".into()))
    }
    fn delete(&self, _: &str) -> Result<(), SecretError> {
        Err(SecretError("no keyring".into()))
    }
}

#[tokio::test]
async fn without_a_keyring_the_secret_goes_to_the_owner_only_file() {
    let s = start_with(Policy::default(), Arc::new(NoKeyring)).await;
    let new = s
        .agent
        .add_app("Dictation", vec!["fhircast/*.read".into()])
        .await
        .unwrap();
    assert!(!new.secret_in_keyring);
    let written = std::fs::read_to_string(s.user_file()).unwrap();
    assert!(written.contains(&new.client_secret));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(s.user_file())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
    }
    assert!(
        HubClient::sign_in(&s.origin(), &new.client_id, &new.client_secret, None)
            .await
            .is_ok()
    );
    s.agent.shutdown().await;
}

#[tokio::test]
async fn settings_change_in_the_user_file_unless_policy_locks_them() {
    let policy = "[desktop]\nstart_at_login = true\n";
    let s = start_with(enforced(policy), Arc::new(MemoryStore::default())).await;
    let settings = s.agent.settings();
    assert!(settings.start_at_login);
    assert!(settings.policy.contains(&PolicySetting {
        key: "desktop.start_at_login".into(),
        source: s.dir.path().join("policy.toml").display().to_string(),
        level: PolicyLevel::Enforced,
    }));
    let locked = s
        .agent
        .set_setting("desktop.start_at_login", json!(false))
        .await
        .unwrap_err();
    assert!(matches!(locked, DesktopError::Locked { .. }), "{locked}");
    assert!(locked.to_string().contains("policy.toml"));

    s.agent
        .set_setting("desktop.notifications", json!(false))
        .await
        .unwrap();
    assert!(!s.agent.settings().notifications);
    assert!(
        std::fs::read_to_string(s.user_file())
            .unwrap()
            .contains("notifications = false")
    );
    s.agent.set_setting("hub.port", json!(5123)).await.unwrap();
    assert_eq!(s.agent.settings().hub_port, 5123);

    for (key, value) in [
        ("hub.port", json!("high")),
        ("hub.port", json!(70000)),
        ("hub.max_body_bytes", json!(1)),
        ("nonsense", json!(1)),
    ] {
        assert!(
            matches!(
                s.agent.set_setting(key, value).await,
                Err(DesktopError::Invalid(_))
            ),
            "{key}"
        );
    }
    s.agent.shutdown().await;
}

#[tokio::test]
async fn a_recommended_setting_is_a_default_the_user_may_change() {
    let policy = Policy {
        enforced: Some("[desktop]\nstart_at_login = true\n"),
        // The recommended file also tries the enforced key: enforced policy wins.
        recommended: Some("[desktop]\nnotifications = false\nstart_at_login = false\n"),
    };
    let s = start_with(policy, Arc::new(MemoryStore::default())).await;
    let settings = s.agent.settings();
    assert!(!settings.notifications, "the recommendation is the default");
    assert!(
        settings.start_at_login,
        "enforced policy wins over recommended"
    );
    let recommended = s.dir.path().join("recommended.toml").display().to_string();
    assert!(settings.policy.contains(&PolicySetting {
        key: "desktop.notifications".into(),
        source: recommended.clone(),
        level: PolicyLevel::Recommended,
    }));
    assert!(
        !settings
            .policy
            .iter()
            .any(|p| p.key == "desktop.start_at_login" && p.level == PolicyLevel::Recommended),
        "{:?}",
        settings.policy
    );
    // Not locked: the user's choice goes to their file and wins from then on.
    s.agent
        .set_setting("desktop.notifications", json!(true))
        .await
        .unwrap();
    assert!(s.agent.settings().notifications);
    assert!(
        std::fs::read_to_string(s.user_file())
            .unwrap()
            .contains("notifications = true")
    );
    s.agent.shutdown().await;
}

#[tokio::test]
async fn a_policy_that_sets_the_apps_locks_the_list() {
    let policy = "[[apps]]\nclient_id = \"site\"\nclient_secret = \"site-secret-1\"\nscopes = [\"fhircast/*.read\"]\n";
    let s = start_with(enforced(policy), Arc::new(MemoryStore::default())).await;
    assert!(s.agent.apps().iter().all(|a| a.locked_by.is_some()));
    assert_eq!(
        s.agent.apps().len(),
        1,
        "the policy's apps replace the user's"
    );
    assert!(matches!(
        s.agent
            .add_app("Mine", vec!["fhircast/*.read".into()])
            .await,
        Err(DesktopError::Locked { .. })
    ));
    s.agent.shutdown().await;
}

#[tokio::test]
async fn an_app_that_never_acknowledges_shows_as_following_without_acknowledgements() {
    let s = start().await;
    let ohif = HubClient::sign_in(&s.origin(), "ohif", "secret-for-ohif", None)
        .await
        .unwrap();
    let mut links = s.agent.watch_links();
    let mut status = s.agent.watch_status();
    let mut viewer = ohif.subscribe("Patient-open", None).await.unwrap();
    let shown = wait_for(&mut links, "OHIF following", |l| {
        l.iter()
            .any(|v| v.name == "OHIF" && v.state != LinkState::Pending)
    })
    .await;
    let link = shown.iter().find(|v| v.name == "OHIF").unwrap();
    assert_eq!(link.state, LinkState::FollowingUnacknowledged);
    assert!(!link.problem);
    ohif.publish("Patient-open", patient("p1"), None)
        .await
        .unwrap();
    viewer.next_frame().await.unwrap();
    // Its silence is not a problem for the tray.
    wait_for(&mut status, "patient", |st| *st == TrayStatus::Patient).await;
    s.agent.shutdown().await;
}
