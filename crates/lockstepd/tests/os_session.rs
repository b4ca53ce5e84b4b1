//! The OS session, on a private bus: the test plays logind and the screen saver (owning their
//! bus names, as they do) and `lockstepd` follows. A locked screen hibernates the session, a
//! signal from a program that does not own the service changes nothing, and signing out ends
//! the session and stops the agent.

#[path = "common/bus.rs"]
mod bus;
mod common;
use bus::{Bus, emit, service};
use common::Daemon;
use lockstep_agent::client::{HubClient, Subscription};
use serde_json::Value;
use std::time::Duration;

const CONFIG: &str = r#"
[hub]
port = 0

[[apps]]
client_id = "pacs"
client_secret = "pacs-secret-123"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#;

/// The login session the agent runs in, and logind's path for it (`1` escapes to `_31`).
const SESSION_ID: &str = "1";
const SESSION_PATH: &str = "/org/freedesktop/login1/session/_31";

/// The next infrastructure event's name within `wait`, acknowledged; `None` if none came.
async fn next_event(feed: &mut Subscription, wait: Duration) -> Option<String> {
    loop {
        let frame = tokio::time::timeout(wait, feed.next_frame()).await.ok()?;
        let frame: Value = frame.unwrap()?;
        if let Some(id) = frame["id"].as_str() {
            feed.acknowledge(id, 200).await.unwrap();
            return frame["event"]["hub.event"].as_str().map(str::to_owned);
        }
    }
}

#[tokio::test]
async fn screen_lock_hibernates_and_sign_out_ends_the_session_and_the_agent() {
    let bus = Bus::start();
    let daemon = Daemon::start_with_env(
        CONFIG,
        &[
            ("DBUS_SYSTEM_BUS_ADDRESS", bus.address.as_str()),
            ("DBUS_SESSION_BUS_ADDRESS", bus.address.as_str()),
            ("XDG_SESSION_ID", SESSION_ID),
        ],
    );
    daemon.wait_for_log("following logind's session 1");
    daemon.wait_for_log("following the desktop's screen saver");
    let pacs = HubClient::sign_in(&daemon.origin, "pacs", "pacs-secret-123", None)
        .await
        .unwrap();
    let mut feed = pacs
        .subscribe("UserHibernate,UserLogout", None)
        .await
        .unwrap();
    let quiet = Duration::from_millis(700);

    // A program that is not logind says the session locked: nothing happens.
    let impostor = bus.connect().await;
    let lock = ("org.freedesktop.login1.Session", "Lock");
    emit(&impostor, SESSION_PATH, lock.0, lock.1, &()).await;
    assert_eq!(next_event(&mut feed, quiet).await, None);

    // logind locks another session: nothing; this one: the session hibernates.
    let logind = service(&bus, "org.freedesktop.login1").await;
    emit(
        &logind,
        "/org/freedesktop/login1/session/_32",
        lock.0,
        lock.1,
        &(),
    )
    .await;
    assert_eq!(next_event(&mut feed, quiet).await, None);
    emit(&logind, SESSION_PATH, lock.0, lock.1, &()).await;
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("UserHibernate"),
        "{}",
        daemon.logged()
    );
    emit(&logind, SESSION_PATH, lock.0, "Unlock", &()).await;
    assert_eq!(next_event(&mut feed, quiet).await, None);

    // The desktop's screen saver turning on hibernates it too.
    let saver = service(&bus, "org.freedesktop.ScreenSaver").await;
    let saver_interface = "org.freedesktop.ScreenSaver";
    emit(
        &saver,
        "/org/freedesktop/ScreenSaver",
        saver_interface,
        "ActiveChanged",
        &true,
    )
    .await;
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("UserHibernate")
    );

    // Another session ends: nothing. This one: UserLogout, and the agent stops cleanly.
    let manager = ("/org/freedesktop/login1", "org.freedesktop.login1.Manager");
    let other =
        zbus::zvariant::ObjectPath::try_from("/org/freedesktop/login1/session/_32").unwrap();
    emit(
        &logind,
        manager.0,
        manager.1,
        "SessionRemoved",
        &("2", &other),
    )
    .await;
    assert_eq!(next_event(&mut feed, quiet).await, None);
    let this = zbus::zvariant::ObjectPath::try_from(SESSION_PATH).unwrap();
    emit(
        &logind,
        manager.0,
        manager.1,
        "SessionRemoved",
        &(SESSION_ID, &this),
    )
    .await;
    assert_eq!(
        next_event(&mut feed, Duration::from_secs(5))
            .await
            .as_deref(),
        Some("UserLogout")
    );
    let status = daemon.wait_exit();
    assert!(status.success(), "{status:?}");
}
