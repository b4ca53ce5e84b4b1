//! Two clinicians' sessions on one machine (a Remote Desktop or Citrix host): two real OS
//! users, each running their own agent at once. Each user's apps reach only their own hub,
//! even with the site's shared app credentials; each agent's data stays in its user's home.
//!
//! Creating OS users needs root (CI runs as root); elsewhere the test says it did not run.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

const CONFIG: &str = r#"
[hub]
port = PORT

# One registration for the whole site, as a machine file would have it.
[[apps]]
client_id = "pacs"
client_secret = "the-site-s-shared-secret"
scopes = ["fhircast/*.read", "fhircast/*.write"]
"#;

struct User {
    name: String,
    uid: u32,
    home: tempfile::TempDir,
}

impl User {
    fn create(name: &str) -> User {
        let _ = Command::new("userdel").arg(name).output();
        let made = Command::new("useradd")
            .args([
                "--system",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                name,
            ])
            .output()
            .unwrap();
        assert!(
            made.status.success(),
            "useradd: {}",
            String::from_utf8_lossy(&made.stderr)
        );
        let id = Command::new("id").args(["-u", name]).output().unwrap();
        let uid = String::from_utf8(id.stdout)
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        let home = tempfile::tempdir().unwrap();
        chown(home.path(), uid);
        User {
            name: name.to_owned(),
            uid,
            home,
        }
    }

    /// `lockstepd ARGS` as this user, in their home.
    fn lockstepd(&self) -> Command {
        let mut command = Command::new("setpriv");
        command
            .args([
                &format!("--reuid={}", self.uid),
                &format!("--regid={}", self.uid),
                "--clear-groups",
                "--",
                env!("CARGO_BIN_EXE_lockstepd"),
            ])
            .env_clear()
            .env("HOME", self.home.path())
            .env("PATH", "/usr/bin:/bin");
        command
    }

    /// Starts this user's agent on `port`; its hub URL once ready.
    fn start_agent(&self, port: u16) -> (Agent, String) {
        let config = self.home.path().join("config.toml");
        std::fs::write(&config, CONFIG.replace("PORT", &port.to_string())).unwrap();
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
        chown(&config, self.uid);
        let mut agent = Agent(
            self.lockstepd()
                .arg("--config")
                .arg(&config)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let stderr = agent.0.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{}'s agent did not start", self.name));
            if let Some(url) = line.split("hub ready at ").nth(1) {
                return (agent, url.split_whitespace().next().unwrap().to_owned());
            }
        }
    }

    /// `lockstepd token` as this user against the hub at `origin` (`None`: the one the verb
    /// finds by itself), with the site's shared credentials.
    fn token(&self, origin: Option<&str>) -> Output {
        let hub: Vec<&str> = origin.map(|o| vec!["--hub", o]).unwrap_or_default();
        self.lockstepd()
            .args(["token", "--client-id", "pacs"])
            .args(hub)
            .env("LOCKSTEP_CLIENT_SECRET", "the-site-s-shared-secret")
            .output()
            .unwrap()
    }
}

impl Drop for User {
    fn drop(&mut self) {
        let _ = Command::new("userdel").arg(&self.name).output();
    }
}

fn chown(path: &Path, uid: u32) {
    let status = Command::new("chown")
        .arg(format!("{uid}:{uid}"))
        .arg(path)
        .status()
        .unwrap();
    assert!(status.success());
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A user's running agent, stopped (SIGTERM, then SIGKILL) when dropped, even when the test
/// fails: a user with a process left cannot be deleted.
struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        for _ in 0..100 {
            if matches!(self.0.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn two_users_two_agents_and_no_crossing() {
    if unsafe { libc_geteuid() } != 0 {
        eprintln!(
            "two_users_two_agents_and_no_crossing: not run, it needs root to create OS users"
        );
        return;
    }
    let alice = User::create("lockstep-test-a");
    let bob = User::create("lockstep-test-b");
    // The site configures one port for everyone: Bob's agent finds Alice's on it and takes
    // another, which it publishes.
    let port = free_port();
    let (_alice_agent, alice_hub) = alice.start_agent(port);
    let (_bob_agent, bob_hub) = bob.start_agent(port);
    assert_eq!(alice_hub, format!("http://127.0.0.1:{port}/fhircast"));
    assert_ne!(bob_hub, alice_hub);
    let origin = |hub: &str| hub.trim_end_matches("/fhircast").to_owned();

    // Each user's app gets a token from their own hub, named or found by the verb.
    for (user, hub) in [(&alice, &alice_hub), (&bob, &bob_hub)] {
        for named in [Some(origin(hub)), None] {
            let out = user.token(named.as_deref());
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{}: {stderr}", user.name);
            let token: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            assert_eq!(token["hub.url"], hub.as_str(), "{} ({named:?})", user.name);
        }
    }
    // The same credentials do not reach the other user's hub: the connection is refused.
    for (user, other) in [(&alice, &bob_hub), (&bob, &alice_hub)] {
        let out = user.token(Some(&origin(other)));
        assert!(!out.status.success(), "{} reached {other}", user.name);
    }
    // Each agent keeps its data in its own user's home.
    let database = |user: &User| -> PathBuf {
        user.home
            .path()
            .join(".local/share/org.lockstep.agent/lockstep.db")
    };
    assert!(database(&alice).exists() && database(&bob).exists());
    let owner =
        |path: &Path| std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(path).unwrap());
    assert_eq!(owner(&database(&alice)), alice.uid);
    assert_eq!(owner(&database(&bob)), bob.uid);
}

unsafe extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
