//! The servers under test as child processes, and what is read from them (start-up, memory).
//!
//! Each is its own process so that apps and server never share a runtime: `lockstepd` itself,
//! the baseline, and the hub library serving many topics.

use crate::client::{Access, HttpConn, Target, request};
use anyhow::{Context, anyhow, bail};
use base64::Engine as _;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The app the bench registers with `lockstepd`.
pub const CLIENT_ID: &str = "bench";
pub const CLIENT_SECRET: &str = "bench-secret-not-for-production";

/// The hub's abuse limits, raised for the bench alone: the shipped defaults (64 subscriptions
/// per app, 512 in all, 200 requests per second per app, 64 tokens per app) are far below
/// 1,000 subscribers, a pipelined burst from one app, or one app on 100 topics. Every other
/// setting is the shipped default.
pub const LIMITS: Limits = Limits {
    max_subscriptions_per_client: 4_000,
    max_subscriptions_total: 4_000,
    requests_per_second_per_client: 1_000_000,
    request_burst_per_client: 1_000_000,
    max_tokens_per_client: 1_000,
};

pub struct Limits {
    pub max_subscriptions_per_client: usize,
    pub max_subscriptions_total: usize,
    pub requests_per_second_per_client: u32,
    pub request_burst_per_client: u32,
    pub max_tokens_per_client: usize,
}

/// [`LIMITS`] as `[hub]` keys.
const LIMITS_TOML: &str = "max_subscriptions_per_client = 4000\nmax_subscriptions_total = 4000\nrequests_per_second_per_client = 1000000\nrequest_burst_per_client = 1000000\nmax_tokens_per_client = 1000\n";

/// A running server process; stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    child: std::process::Child,
    pub target: Target,
    /// From spawn to the first successful answer (lockstepd only).
    pub ready: Option<Duration>,
    _scratch: Option<tempfile::TempDir>,
}

impl Server {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process and its descendants, in KiB.
    pub fn rss_kib(&self) -> u64 {
        tree_rss_kib(self.pid())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid, which we have not yet reaped.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds `lockstepd` in release mode with the same cargo that runs the bench and returns its
/// path (cargo is a no-op when it is up to date).
pub fn build_lockstepd() -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let output = Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "lockstepd",
            "--message-format=json-render-diagnostics",
        ])
        .stderr(Stdio::inherit())
        .output()
        .context("run cargo build --release -p lockstepd")?;
    if !output.status.success() {
        bail!("cargo build --release -p lockstepd failed");
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["target"]["name"] == "lockstepd")
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .ok_or_else(|| anyhow!("cargo reported no lockstepd executable"))
}

/// A free loopback port (free a moment ago; the server binds it right after).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts `lockstepd` with a scratch home and configuration (the shipped defaults, one app)
/// and times it from spawn to the first answered HTTP request.
pub async fn start_lockstepd(binary: &Path) -> anyhow::Result<Server> {
    start_lockstepd_with(binary, "").await
}

/// The enterprise link's client at a site's lockstepd (see [`start_relayed`]).
const LINK_TOML: &str = "[[apps]]\nclient_id = \"link\"\nclient_secret = \"link-secret-for-the-bench\"\nscopes = [\"fhircast/*.read\", \"fhircast/*.write\"]\nname = \"Workstation\"\n";

/// Two lockstepd: a site, and a workstation following it through `[upstream]`, once its link
/// is up.
pub async fn start_relayed(binary: &Path) -> anyhow::Result<(Server, Server)> {
    let site = start_lockstepd_with(binary, LINK_TOML).await?;
    let upstream = format!(
        "[upstream]\nissuer = \"http://{}\"\nclient_id = \"link\"\nclient_secret = \"link-secret-for-the-bench\"\n",
        site.target.host
    );
    let workstation = start_lockstepd_with(binary, &upstream).await?;
    let links = workstation
        ._scratch
        .as_ref()
        .map(|s| s.path().join("run/org.lockstep.agent/links.json"))
        .ok_or_else(|| anyhow!("no scratch folder"))?;
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(&links).unwrap_or_default();
        let published: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let following = published["links"].as_array().is_some_and(|links| {
            links
                .iter()
                .any(|l| l["kind"] == "upstream" && l["state"] == "following")
        });
        if following {
            return Ok((site, workstation));
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("the workstation's link to the site did not come up: {text}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// [`start_lockstepd`], with `extra` appended to its configuration.
async fn start_lockstepd_with(binary: &Path, extra: &str) -> anyhow::Result<Server> {
    let scratch = tempfile::tempdir()?;
    let port = free_port()?;
    let config = scratch.path().join("lockstep.toml");
    std::fs::File::create(&config)?.write_all(
        format!(
            "[hub]\nport = {port}\n{LIMITS_TOML}\n[[apps]]\nclient_id = \"{CLIENT_ID}\"\nclient_secret = \"{CLIENT_SECRET}\"\nscopes = [\"fhircast/*.read\", \"fhircast/*.write\"]\nname = \"Bench\"\n{extra}"
        )
        .as_bytes(),
    )?;
    // Its log goes to a file, as a service's would: read through a pipe, every line would wake
    // a thread of this process, beside the apps being timed.
    let log_path = scratch.path().join("lockstepd.log");
    let log = std::fs::File::create(&log_path)?;
    let started = Instant::now();
    let mut child = Command::new(binary)
        .arg("--config")
        .arg(&config)
        // The shipped log level, whatever the calling shell says.
        .env_remove("RUST_LOG")
        .env("HOME", scratch.path())
        .env("XDG_CONFIG_HOME", scratch.path().join("config"))
        .env("XDG_DATA_HOME", scratch.path().join("data"))
        // Its own discovery files: two side by side must not share them.
        .env("XDG_RUNTIME_DIR", scratch.path().join("run"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .with_context(|| format!("start {}", binary.display()))?;
    let host = format!("127.0.0.1:{port}");
    let discovery = request(
        "GET",
        &host,
        "/fhircast/.well-known/fhircast-configuration",
        &[],
        b"",
    );
    let ready = loop {
        if let Ok(Some(status)) = child.try_wait() {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("lockstepd exited during start-up: {status}\n{log}");
        }
        if let Ok(mut http) = HttpConn::connect(&host).await
            && let Ok(response) = http.roundtrip(&discovery).await
            && response.status == 200
        {
            break started.elapsed();
        }
        if started.elapsed() > Duration::from_secs(20) {
            bail!("lockstepd did not answer within 20 s");
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    let access = lockstepd_token(&host).await?;
    eprintln!("  lockstepd is pid {}", child.id());
    Ok(Server {
        child,
        target: Target {
            host,
            topics: vec![access],
        },
        ready: Some(ready),
        _scratch: Some(scratch),
    })
}

/// A token through the real token endpoint, as an app gets one.
async fn lockstepd_token(host: &str) -> anyhow::Result<Access> {
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    let auth = format!("Basic {basic}");
    let mut http = HttpConn::connect(host).await?;
    let response = http
        .roundtrip(&request(
            "POST",
            host,
            "/auth/token",
            &[
                ("Authorization", &auth),
                ("Content-Type", "application/x-www-form-urlencoded"),
            ],
            b"grant_type=client_credentials",
        ))
        .await?;
    if response.status != 200 {
        bail!("token endpoint answered {}", response.status);
    }
    let body: serde_json::Value = serde_json::from_slice(&response.body)?;
    Ok(Access {
        topic: body["hub.topic"]
            .as_str()
            .ok_or_else(|| anyhow!("no hub.topic"))?
            .to_owned(),
        token: body["access_token"]
            .as_str()
            .ok_or_else(|| anyhow!("no access_token"))?
            .to_owned(),
    })
}

/// What a server mode of this binary prints on its first stdout line once it serves.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Announce {
    pub host: String,
    pub topics: Vec<Access>,
}

/// Runs the many-topic hub under this command, e.g.
/// `valgrind --tool=callgrind --callgrind-out-file=hub.%p.out`, for profiling.
pub const HUB_WRAPPER_VAR: &str = "LOCKSTEP_BENCH_HUB_WRAPPER";

/// Starts this binary in one of its server modes (`serve-baseline`, `serve-hub`).
pub fn start_self(mode: &str, topics: usize) -> anyhow::Result<Server> {
    let exe = std::env::current_exe()?;
    let wrapper = std::env::var(HUB_WRAPPER_VAR).unwrap_or_default();
    let mut command = match wrapper.split_whitespace().collect::<Vec<_>>().split_first() {
        Some((program, args)) if mode == "serve-hub" => {
            let mut command = Command::new(program);
            command.args(args).arg(&exe);
            command
        }
        _ => Command::new(&exe),
    };
    let mut child = command
        .args([mode, "--topics", &topics.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped")).read_line(&mut line)?;
    let announce: Announce = serde_json::from_str(&line)
        .with_context(|| format!("{mode} did not announce itself: {line:?}"))?;
    // For attaching a profiler (`perf record -g -p PID`).
    eprintln!("  {mode} is pid {}", child.id());
    Ok(Server {
        child,
        target: Target {
            host: announce.host,
            topics: announce.topics,
        },
        ready: None,
        _scratch: None,
    })
}

/// VmRSS of `pid` plus that of every descendant, in KiB (0 for a process that is gone).
pub fn tree_rss_kib(pid: u32) -> u64 {
    let own = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0);
    own + children(pid).into_iter().map(tree_rss_kib).sum::<u64>()
}

fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|list| {
            list.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// Lets this process (and the servers it starts, which inherit it) hold thousands of sockets.
pub fn raise_open_file_limit() {
    // SAFETY: getrlimit/setrlimit on a valid, owned struct.
    unsafe {
        let mut limit = std::mem::zeroed::<libc::rlimit>();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && limit.rlim_cur < limit.rlim_max
        {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

/// The machine the figures come from.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Machine {
    pub cpu: String,
    pub cores: usize,
    pub memory_gib: f64,
    pub kernel: String,
    /// The 1-minute load average when the bench started (a busy machine reads higher).
    pub load_at_start: f64,
}

impl Machine {
    pub fn describe() -> Machine {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let cpu = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_owned())
            .unwrap_or_else(|| "unknown".into());
        let memory_kib: f64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        Machine {
            cpu,
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_gib: (memory_kib / 1024.0 / 1024.0 * 10.0).round() / 10.0,
            kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
            load_at_start: read("/proc/loadavg")
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0),
        }
    }
}
