//! Where each effective setting comes from, across every layer the agent reads.

use lockstep_agent::config::{PolicyLayer, registry_policy};
use lockstep_agent::policy::registry::{PolicyStore, RegistryData, RegistryValue};
use lockstep_agent::{Config, ConfigSources, SettingOrigin};

#[test]
fn each_setting_names_the_layer_that_gave_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("machine.toml");
    let user = dir.path().join("user.toml");
    let recommended = dir.path().join("recommended.toml");
    std::fs::write(&policy, "[hub]\nport = 4990\n").unwrap();
    std::fs::write(
        &recommended,
        "[hub]\nport = 1\n[log]\nmax_files = 7\n[desktop]\nnotifications = false\n",
    )
    .unwrap();
    // The user tries the locked port too: policy wins, and stays the origin.
    // It changes a recommended setting: theirs to change.
    std::fs::write(
        &user,
        "[hub]\nport = 5000\nack_timeout_seconds = 7\n[desktop]\nnotifications = true\n",
    )
    .unwrap();
    let config = Config::load_from(&ConfigSources {
        enforced: vec![PolicyLayer::File(policy.clone())],
        recommended: vec![PolicyLayer::File(recommended.clone())],
        files: vec![(user.clone(), true)],
        env: vec![("LOCKSTEP__LOG__LEVEL".into(), "debug".into())],
        overrides: vec!["history.retain_days=9".into()],
        user_file: Some(user.clone()),
    })
    .unwrap();
    let settings = config.effective_settings();
    let of = |key: &str| {
        settings
            .iter()
            .find(|s| s.key == key)
            .unwrap_or_else(|| panic!("no {key}"))
            .clone()
    };
    assert_eq!(of("hub.port").value, "4990");
    assert_eq!(
        of("hub.port").origin,
        SettingOrigin::EnforcedPolicy(policy.display().to_string())
    );
    assert_eq!(of("desktop.notifications").value, "true");
    assert_eq!(
        of("desktop.notifications").origin,
        SettingOrigin::File(user.display().to_string())
    );
    assert_eq!(of("hub.ack_timeout_seconds").value, "7");
    assert_eq!(
        of("hub.ack_timeout_seconds").origin,
        SettingOrigin::File(user.display().to_string())
    );
    assert_eq!(
        of("log.level").origin,
        SettingOrigin::Environment("LOCKSTEP__LOG__LEVEL".into())
    );
    assert_eq!(
        of("history.retain_days").origin,
        SettingOrigin::CommandLine("history.retain_days=9".into())
    );
    assert_eq!(of("log.max_files").value, "7");
    assert_eq!(
        of("log.max_files").origin,
        SettingOrigin::RecommendedPolicy(recommended.display().to_string())
    );
    assert_eq!(of("desktop.start_at_login").origin, SettingOrigin::Default);
    // Every setting is listed once.
    let mut keys: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
    let count = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), count);
    assert!(count > 30, "{count} settings");
}

/// What the Windows registry holds after a silent MSI install with `PORT=5100` and nothing
/// else, plus a Group Policy recommendation: REG_SZ values, empty where unset.
struct InstalledByMsi;

impl PolicyStore for InstalledByMsi {
    fn read(&self) -> std::io::Result<Vec<RegistryValue>> {
        let value = |path: &[&str], name: &str, data: RegistryData| RegistryValue {
            path: path.iter().map(|p| p.to_string()).collect(),
            name: name.into(),
            data,
        };
        Ok(vec![
            value(&["hub"], "port", RegistryData::String("5100".into())),
            value(
                &["desktop"],
                "start_at_login",
                RegistryData::String(String::new()),
            ),
            value(
                &["desktop"],
                "notifications",
                RegistryData::String(String::new()),
            ),
            value(
                &["Recommended", "desktop"],
                "notifications",
                RegistryData::Dword(0),
            ),
            value(
                &["Recommended", "hub", "allowed_origins"],
                "1",
                RegistryData::String("http://localhost:3000".into()),
            ),
        ])
    }
}

struct Unreadable;

impl PolicyStore for Unreadable {
    fn read(&self) -> std::io::Result<Vec<RegistryValue>> {
        Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
    }
}

#[test]
fn registry_policy_is_enforced_or_recommended_and_empty_values_are_unset() {
    let (enforced, recommended) = registry_policy(&InstalledByMsi);
    let config = Config::load_from(&ConfigSources {
        enforced: enforced.into_iter().collect(),
        recommended: recommended.into_iter().collect(),
        overrides: vec!["hub.port=6000".into()],
        ..Default::default()
    })
    .unwrap();
    assert_eq!(config.hub.port, 5100, "enforced: --set cannot change it");
    let lock = config.lock_on("hub.port").unwrap();
    assert_eq!(lock.source, r"HKLM\Software\Policies\Lockstep");
    assert!(
        config.lock_on("desktop.start_at_login").is_none(),
        "an empty value is no policy"
    );
    assert!(
        !config.desktop.notifications,
        "recommended, and nobody changed it"
    );
    assert_eq!(config.hub.allowed_origins, vec!["http://localhost:3000"]);
    assert!(config.lock_on("desktop.notifications").is_none());
    assert_eq!(
        config
            .recommendation_on("desktop.notifications")
            .unwrap()
            .source,
        r"HKLM\Software\Policies\Lockstep\Recommended"
    );

    let (enforced, _) = registry_policy(&Unreadable);
    let err = Config::load_from(&ConfigSources {
        enforced: enforced.into_iter().collect(),
        ..Default::default()
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot read the registry"),
        "{err}"
    );
}

#[test]
fn site_policy_cannot_set_a_per_user_setting() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("machine.toml");
    std::fs::write(&policy, "[history]\ndatabase = \"/srv/all.db\"\n").unwrap();
    let err = Config::load_from(&ConfigSources {
        enforced: vec![PolicyLayer::File(policy)],
        ..Default::default()
    })
    .unwrap_err();
    assert_eq!(err.key, "history.database");
    assert!(err.reason.contains("per user"), "{err}");
}
