//! Where each effective setting comes from, across every layer the agent reads.

use lockstep_agent::{Config, ConfigSources, SettingOrigin};

#[test]
fn each_setting_names_the_layer_that_gave_its_value() {
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("machine.toml");
    let user = dir.path().join("user.toml");
    std::fs::write(&policy, "[hub]\nport = 4990\n").unwrap();
    // The user tries the locked port too: policy wins, and stays the origin.
    std::fs::write(&user, "[hub]\nport = 5000\nack_timeout_seconds = 7\n").unwrap();
    let config = Config::load_from(&ConfigSources {
        policy: Some(policy.clone()),
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
    assert_eq!(of("desktop.notifications").origin, SettingOrigin::Default);
    // Every setting is listed once.
    let mut keys: Vec<&str> = settings.iter().map(|s| s.key.as_str()).collect();
    let count = keys.len();
    keys.dedup();
    assert_eq!(keys.len(), count);
    assert!(count > 30, "{count} settings");
}
