//! A private D-Bus daemon for a test, standing in for both the system and the session bus, and
//! the test's own connections to it (playing logind or a screen saver).
#![allow(dead_code)] // each test file uses its own part

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

/// A private bus, standing in for both the system and the session bus.
pub struct Bus {
    daemon: Child,
    pub address: String,
}

impl Bus {
    pub fn start() -> Bus {
        let mut daemon = Command::new("dbus-daemon")
            .args(["--session", "--nofork", "--print-address"])
            .stdout(Stdio::piped())
            .spawn()
            .expect("dbus-daemon (Debian's dbus package) is installed");
        let mut address = String::new();
        BufReader::new(daemon.stdout.take().unwrap())
            .read_line(&mut address)
            .unwrap();
        Bus {
            daemon,
            address: address.trim().to_owned(),
        }
    }

    pub async fn connect(&self) -> zbus::Connection {
        zbus::connection::Builder::address(self.address.as_str())
            .unwrap()
            .build()
            .await
            .unwrap()
    }
}

impl Drop for Bus {
    fn drop(&mut self) {
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}

/// A connection that owns `name` on the bus, as the real service would.
pub async fn service(bus: &Bus, name: &str) -> zbus::Connection {
    let connection = bus.connect().await;
    connection.request_name(name).await.unwrap();
    connection
}

pub async fn emit<B>(
    connection: &zbus::Connection,
    path: &str,
    interface: &str,
    member: &str,
    body: &B,
) where
    B: serde::Serialize + zbus::zvariant::DynamicType,
{
    connection
        .emit_signal(None::<&str>, path, interface, member, body)
        .await
        .unwrap();
}
