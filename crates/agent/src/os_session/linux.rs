//! Linux: logind's `Lock`/`Unlock` for this session and `SessionRemoved` on the system bus,
//! and the screen saver's `ActiveChanged` on the session bus. A signal counts only from the
//! bus name that owns the service (a local program cannot lock another's session by saying
//! so), and logind's only for this login session (`XDG_SESSION_ID`), never another user's.

use super::{SessionSignal, SessionWatcher};
use futures_util::StreamExt;
use std::fmt::Write;
use tokio::sync::mpsc;
use zbus::message::Type;
use zbus::{Connection, MatchRule, MessageStream};

const LOGIND: &str = "org.freedesktop.login1";
const LOGIND_PATH: &str = "/org/freedesktop/login1";
const SCREEN_SAVERS: [&str; 2] = ["org.freedesktop.ScreenSaver", "org.gnome.ScreenSaver"];

/// Follows logind (for `session_id`) and the desktop's screen saver.
pub struct DbusWatcher {
    /// This login session's id (`XDG_SESSION_ID`); without it logind is not followed.
    pub session_id: Option<String>,
}

impl DbusWatcher {
    pub fn from_env() -> Self {
        DbusWatcher {
            session_id: std::env::var("XDG_SESSION_ID")
                .ok()
                .filter(|id| !id.is_empty()),
        }
    }
}

/// logind's object path for a session id, escaped as sd-bus escapes a path label: letters
/// kept, digits kept but the first, everything else `_xx`.
pub fn session_object_path(id: &str) -> String {
    let mut path = format!("{LOGIND_PATH}/session/");
    if id.is_empty() {
        path.push('_');
    }
    for (i, byte) in id.bytes().enumerate() {
        if byte.is_ascii_alphabetic() || (i > 0 && byte.is_ascii_digit()) {
            path.push(byte as char);
        } else {
            let _ = write!(path, "_{byte:02x}");
        }
    }
    path
}

impl SessionWatcher for DbusWatcher {
    fn watch(
        self: Box<Self>,
        signals: mpsc::Sender<SessionSignal>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(async move {
            let logind = async {
                match &self.session_id {
                    Some(id) => {
                        if let Err(e) = follow_logind(id, signals.clone()).await {
                            tracing::info!(
                                "logind is not followed ({e}): a screen lock reaches the session only through the desktop's screen saver"
                            );
                        }
                    }
                    None => tracing::info!(
                        "no XDG_SESSION_ID: logind's lock and sign-out are not followed"
                    ),
                }
            };
            let screen_saver = async {
                if let Err(e) = follow_screen_saver(signals.clone()).await {
                    tracing::info!("the desktop's screen saver is not followed ({e})");
                }
            };
            tokio::join!(logind, screen_saver);
        })
    }
}

fn signal_rule<'a>(interface: &'a str, path: Option<&'a str>) -> zbus::Result<MatchRule<'a>> {
    let builder = MatchRule::builder()
        .msg_type(Type::Signal)
        .interface(interface)?;
    Ok(match path {
        Some(path) => builder.path(path)?.build(),
        None => builder.build(),
    })
}

/// Whether `message` was sent by the owner of `service` (asked of the bus each time: a service
/// may restart under a new unique name).
async fn from_owner(connection: &Connection, message: &zbus::Message, service: &str) -> bool {
    let Some(sender) = message.header().sender().map(|s| s.to_string()) else {
        return false;
    };
    let Ok(bus) = zbus::fdo::DBusProxy::new(connection).await else {
        return false;
    };
    let Ok(name) = zbus::names::BusName::try_from(service) else {
        return false;
    };
    matches!(bus.get_name_owner(name).await, Ok(owner) if owner.as_str() == sender)
}

async fn follow_logind(id: &str, signals: mpsc::Sender<SessionSignal>) -> zbus::Result<()> {
    let connection = Connection::system().await?;
    let path = session_object_path(id);
    let session = MessageStream::for_match_rule(
        signal_rule("org.freedesktop.login1.Session", Some(&path))?,
        &connection,
        Some(16),
    )
    .await?;
    let manager = MessageStream::for_match_rule(
        signal_rule("org.freedesktop.login1.Manager", Some(LOGIND_PATH))?,
        &connection,
        Some(16),
    )
    .await?;
    tracing::info!("following logind's session {id} (lock, unlock, sign-out)");
    let mut messages = futures_util::stream::select(session, manager);
    while let Some(message) = messages.next().await {
        let Ok(message) = message else { continue };
        let member = message.header().member().map(|m| m.to_string());
        let signal = match member.as_deref() {
            Some("Lock") => SessionSignal::Locked,
            Some("Unlock") => SessionSignal::Unlocked,
            Some("SessionRemoved") => {
                let removed: Result<(String, zbus::zvariant::OwnedObjectPath), _> =
                    message.body().deserialize();
                match removed {
                    Ok((removed, _)) if removed == id => SessionSignal::SignedOut,
                    _ => continue,
                }
            }
            _ => continue,
        };
        if !from_owner(&connection, &message, LOGIND).await {
            tracing::warn!(
                ?signal,
                "ignored a logind signal from a program that is not logind"
            );
            continue;
        }
        if signals.send(signal).await.is_err() {
            break;
        }
    }
    Ok(())
}

async fn follow_screen_saver(signals: mpsc::Sender<SessionSignal>) -> zbus::Result<()> {
    let connection = Connection::session().await?;
    let mut streams = Vec::new();
    for service in SCREEN_SAVERS {
        let stream =
            MessageStream::for_match_rule(signal_rule(service, None)?, &connection, Some(16))
                .await?;
        streams.push(stream.map(move |message| (service, message)));
    }
    tracing::info!("following the desktop's screen saver");
    let mut messages = futures_util::stream::select_all(streams);
    while let Some((service, message)) = messages.next().await {
        let Ok(message) = message else { continue };
        if message.header().member().map(|m| m.to_string()).as_deref() != Some("ActiveChanged") {
            continue;
        }
        let Ok(active) = message.body().deserialize::<bool>() else {
            continue;
        };
        if !from_owner(&connection, &message, service).await {
            tracing::warn!("ignored a screen-saver signal from a program that is not {service}");
            continue;
        }
        let signal = if active {
            SessionSignal::Locked
        } else {
            SessionSignal::Unlocked
        };
        if signals.send(signal).await.is_err() {
            break;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_paths_are_escaped_as_logind_escapes_them() {
        assert_eq!(
            session_object_path("2"),
            "/org/freedesktop/login1/session/_32"
        );
        assert_eq!(
            session_object_path("c12"),
            "/org/freedesktop/login1/session/c12"
        );
        assert_eq!(
            session_object_path("a-b"),
            "/org/freedesktop/login1/session/a_2db"
        );
        assert_eq!(session_object_path(""), "/org/freedesktop/login1/session/_");
    }
}
