//! `lockstep-bench`: Lockstep's fan-out, throughput, scale and footprint beside a baseline.
//!
//! ```sh
//! cargo run --release -p lockstep-bench -- --json bench.json     # 5 runs, about 9 minutes
//! cargo run --release -p lockstep-bench -- --quick               # one small run, about a minute
//! ```
//!
//! Every figure is set beside the same measurement of a minimal broadcast server taken in the
//! same run (see `docs/performance.md`).
//!
//! Servers run as child processes (`lockstepd` itself, built in release mode first; the
//! baseline and a many-topic hub as modes of this binary); the apps (one HTTP publisher and up
//! to 1,000 WebSocket subscribers) share one runtime in this process. Every figure is the
//! median over the runs; every ratio is the median of the per-run ratios, so that both sides
//! of a ratio always come from the same minute of a noisy machine.

mod baseline;
mod client;
mod report;
mod serve;
mod servers;
mod stats;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use client::{Delivery, Fleet, HttpConn, Target, Tracker, publish_request};
use servers::Server;
use stats::Latency;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

#[derive(Parser)]
#[command(
    name = "lockstep-bench",
    about = "Fan-out latency, throughput, scale and footprint of Lockstep against a minimal broadcast server"
)]
struct Cli {
    /// One small run of every phase (about a minute): a smoke test, not a measurement.
    #[arg(long)]
    quick: bool,
    /// How many times to repeat every measurement (default 5; 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Also write every figure, per run and aggregated, to this JSON file.
    #[arg(long, value_name = "PATH")]
    json: Option<PathBuf>,
    /// The lockstepd binary to measure (default: `cargo build --release -p lockstepd`).
    #[arg(long, value_name = "PATH")]
    lockstepd: Option<PathBuf>,
    /// Measure only these systems (repeatable): baseline, hub, lockstepd. For profiling one.
    #[arg(long, value_enum)]
    only: Vec<System>,
    /// Fan-out sizes instead of 1,10,50,200 (for profiling one size).
    #[arg(long, value_delimiter = ',', value_name = "N,N")]
    fanout: Vec<usize>,
    /// Events per fan-out size instead of the plan's.
    #[arg(long, value_name = "N")]
    events: Option<usize>,
    /// Skip the throughput, 1,000-subscriber and many-topic phases (for profiling fan-out).
    #[arg(long)]
    fanout_only: bool,
    #[command(subcommand)]
    serve: Option<Serve>,
}

#[derive(Subcommand)]
enum Serve {
    /// Run the baseline server (used by the bench itself).
    #[command(hide = true)]
    ServeBaseline {
        #[arg(long, default_value_t = 1)]
        topics: usize,
    },
    /// Run the hub library with many topics (used by the bench itself).
    #[command(hide = true)]
    ServeHub {
        #[arg(long, default_value_t = 1)]
        topics: usize,
    },
}

/// How much of everything one run does.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Plan {
    pub runs: usize,
    pub fanout_subscribers: Vec<usize>,
    pub fanout_events: usize,
    pub warmup_events: usize,
    /// The fan-out sizes at which throughput is measured too.
    pub throughput_subscribers: Vec<usize>,
    pub throughput_events: usize,
    /// Publishes allowed in flight (sent, not yet at every subscriber) while pipelining.
    pub throughput_window: usize,
    pub scale_subscribers: usize,
    pub scale_events: usize,
    pub topics: usize,
    pub subscribers_per_topic: usize,
    pub topic_events: usize,
    pub systems: Vec<System>,
    pub fanout_only: bool,
}

impl Plan {
    fn new(quick: bool, runs: Option<usize>) -> Plan {
        if quick {
            Plan {
                runs: runs.unwrap_or(1),
                fanout_subscribers: vec![1, 10, 50, 200],
                fanout_events: 100,
                warmup_events: 10,
                throughput_subscribers: vec![1, 50],
                throughput_events: 1_000,
                throughput_window: 128,
                scale_subscribers: 1_000,
                scale_events: 20,
                topics: 100,
                subscribers_per_topic: 10,
                topic_events: 200,
                systems: SYSTEMS.to_vec(),
                fanout_only: false,
            }
        } else {
            Plan {
                runs: runs.unwrap_or(5),
                fanout_subscribers: vec![1, 10, 50, 200],
                fanout_events: 1_000,
                warmup_events: 100,
                throughput_subscribers: vec![1, 50],
                throughput_events: 10_000,
                throughput_window: 128,
                scale_subscribers: 1_000,
                scale_events: 300,
                topics: 100,
                subscribers_per_topic: 10,
                topic_events: 1_000,
                systems: SYSTEMS.to_vec(),
                fanout_only: false,
            }
        }
    }

    fn tracker_capacity(&self) -> usize {
        [
            self.fanout_events,
            self.warmup_events,
            self.throughput_events,
            self.scale_events,
            self.topic_events,
        ]
        .into_iter()
        .max()
        .unwrap_or(0)
    }
}

/// The systems measured side by side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum System {
    /// The minimal broadcast server (the limit).
    Baseline,
    /// The hub library alone (`lockstep_hub::serve`, no agent around it).
    Hub,
    /// The shipped headless agent: the hub plus history, audit trail and logging.
    Lockstepd,
}

const SYSTEMS: [System; 3] = [System::Baseline, System::Hub, System::Lockstepd];

/// A figure for each system.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct Each<T> {
    pub baseline: T,
    pub hub: T,
    pub lockstepd: T,
}

impl<T> Each<T> {
    pub fn get(&self, system: System) -> &T {
        match system {
            System::Baseline => &self.baseline,
            System::Hub => &self.hub,
            System::Lockstepd => &self.lockstepd,
        }
    }

    pub fn get_mut(&mut self, system: System) -> &mut T {
        match system {
            System::Baseline => &mut self.baseline,
            System::Hub => &mut self.hub,
            System::Lockstepd => &mut self.lockstepd,
        }
    }

    pub fn map<U>(&self, f: impl Fn(&T) -> U) -> Each<U> {
        Each {
            baseline: f(&self.baseline),
            hub: f(&self.hub),
            lockstepd: f(&self.lockstepd),
        }
    }
}

/// Everything one run measured; `None` for a system not measured (lockstepd serves one
/// session topic, so it has no many-topic figures).
#[derive(Debug, Default, serde::Serialize)]
pub struct Run {
    /// (subscribers, latency) for each fan-out size.
    pub fanout: Vec<(usize, Each<Option<Latency>>)>,
    /// (subscribers, deliveries per second) for each throughput size.
    pub throughput: Vec<(usize, Each<Option<f64>>)>,
    pub scale: Each<Option<Latency>>,
    pub topics: Each<Option<Latency>>,
    /// RSS of each server process after start-up, KiB.
    pub idle_rss_kib: Each<Vec<u64>>,
    /// Extra RSS per idle subscriber (after connecting the scale subscribers), bytes.
    pub rss_per_subscriber: Each<Option<f64>>,
    /// lockstepd, spawn to first answer, milliseconds.
    pub ready_ms: Vec<f64>,
    /// Through the enterprise link (lockstepd following another lockstepd, one subscriber):
    /// an event posted at the site to its arrival here, and posted here to its arrival there.
    pub relay_in: Option<Latency>,
    pub relay_out: Option<Latency>,
    /// Every phase, checked subscriber by subscriber.
    pub delivery: Each<Delivery>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.serve {
        Some(Serve::ServeBaseline { topics }) => return serve::baseline(topics),
        Some(Serve::ServeHub { topics }) => return serve::hub(topics),
        None => {}
    }
    if cfg!(debug_assertions) {
        eprintln!(
            "warning: this is a debug build of the bench; run it with `cargo run --release -p lockstep-bench`"
        );
    }
    servers::raise_open_file_limit();
    let mut plan = Plan::new(cli.quick, cli.runs);
    if !cli.only.is_empty() {
        plan.systems.retain(|s| cli.only.contains(s));
    }
    if !cli.fanout.is_empty() {
        plan.fanout_subscribers = cli.fanout;
    }
    if let Some(events) = cli.events {
        plan.fanout_events = events;
    }
    plan.fanout_only = cli.fanout_only;
    let lockstepd = match cli.lockstepd {
        _ if !plan.systems.contains(&System::Lockstepd) => None,
        Some(path) => Some(path),
        None => Some(servers::build_lockstepd()?),
    };
    let machine = servers::Machine::describe();
    eprintln!(
        "{} ({} cores), {} run(s), lockstepd at {}",
        machine.cpu,
        machine.cores,
        plan.runs,
        lockstepd
            .as_deref()
            .map_or("(not measured)".into(), |p| p.display().to_string())
    );
    // The apps' runtime: one worker per core, like the servers'.
    let runtime = tokio::runtime::Runtime::new()?;
    let runs = runtime.block_on(async {
        let mut runs = Vec::new();
        let tracker = Tracker::new(plan.tracker_capacity());
        let mut phases = Phases(0);
        for index in 0..plan.runs {
            eprintln!("run {}/{}", index + 1, plan.runs);
            runs.push(one_run(&plan, lockstepd.as_deref(), &tracker, &mut phases, index).await?);
        }
        anyhow::Ok(runs)
    })?;
    let rows = report::rows(&plan, &runs);
    println!("{}", report::table(&machine, &plan, &rows));
    if let Some(path) = cli.json {
        let json = serde_json::json!({
            "machine": machine,
            "plan": plan,
            "rows": rows,
            "runs": runs,
        });
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("write {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Hands out phase numbers, never the same twice.
struct Phases(u32);

impl Phases {
    fn next(&mut self) -> u32 {
        self.0 += 1;
        self.0
    }
}

/// The systems in the order run `index` measures them: rotated between runs, so that none
/// always goes first (or always runs on a machine warmed by the others).
fn order(index: usize, only: &[System]) -> Vec<System> {
    let mut systems = SYSTEMS;
    systems.rotate_left(index % SYSTEMS.len());
    systems.into_iter().filter(|s| only.contains(s)).collect()
}

fn show(each: Each<Option<f64>>) -> String {
    let one = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.0}"));
    format!(
        "{} / {} / {}",
        one(each.baseline),
        one(each.hub),
        one(each.lockstepd)
    )
}

async fn one_run(
    plan: &Plan,
    lockstepd: Option<&std::path::Path>,
    tracker: &Arc<Tracker>,
    phases: &mut Phases,
    index: usize,
) -> anyhow::Result<Run> {
    let mut run = Run::default();
    let systems = order(index, &plan.systems);
    eprintln!("  (figures: baseline / hub / lockstepd)");

    // Fan-out at growing N, then throughput at its N, on one set of servers.
    {
        let servers = start_all(&systems, lockstepd, &mut run, 1).await?;
        let mut fleets = servers.map(|s| {
            s.as_ref()
                .map(|s| Fleet::new(s.target.clone(), tracker.clone()))
        });
        for &n in &plan.fanout_subscribers {
            let mut each = Each::<Option<Latency>>::default();
            for &system in &systems {
                let fleet = fleets.get_mut(system).as_mut().expect("started");
                fleet.grow(0, n.saturating_sub(fleet.len())).await?;
                let (samples, delivery) = latency(
                    fleet,
                    tracker,
                    phases,
                    plan.fanout_events,
                    plan.warmup_events,
                )
                .await?;
                *each.get_mut(system) = Some(Latency::of(&samples));
                run.delivery.get_mut(system).add(delivery);
            }
            eprintln!(
                "  fan-out N={n}: p50 {} µs, p99 {} µs",
                show(each.map(|l| l.map(|l| l.p50_us))),
                show(each.map(|l| l.map(|l| l.p99_us)))
            );
            run.fanout.push((n, each));
            if plan.throughput_subscribers.contains(&n) && !plan.fanout_only {
                let mut rates = Each::<Option<f64>>::default();
                for &system in &systems {
                    let fleet = fleets.get(system).as_ref().expect("started");
                    let (rate, delivery) = throughput(fleet, tracker, phases, plan).await?;
                    *rates.get_mut(system) = Some(rate);
                    run.delivery.get_mut(system).add(delivery);
                }
                run.throughput.push((n, rates));
                eprintln!("  throughput N={n}: {} deliveries/s", show(rates));
            }
        }
        let Each {
            baseline,
            hub,
            lockstepd,
        } = fleets;
        for fleet in [baseline, hub, lockstepd].into_iter().flatten() {
            fleet.close().await;
        }
    }

    if plan.fanout_only {
        return Ok(run);
    }

    // 1,000 subscribers on one topic, on fresh servers: idle memory per subscriber, then latency.
    {
        let servers = start_all(&systems, lockstepd, &mut run, 1).await?;
        for &system in &systems {
            let server = servers.get(system).as_ref().expect("started");
            let before = server.rss_kib();
            let mut fleet = Fleet::new(server.target.clone(), tracker.clone());
            fleet.grow(0, plan.scale_subscribers).await?;
            tokio::time::sleep(Duration::from_millis(500)).await;
            let after = server.rss_kib();
            *run.rss_per_subscriber.get_mut(system) =
                Some((after.saturating_sub(before) * 1024) as f64 / plan.scale_subscribers as f64);
            let warmup = plan.warmup_events.min(plan.scale_events);
            let (samples, delivery) =
                latency(&fleet, tracker, phases, plan.scale_events, warmup).await?;
            *run.scale.get_mut(system) = Some(Latency::of(&samples));
            run.delivery.get_mut(system).add(delivery);
            fleet.close().await;
        }
        eprintln!(
            "  {} subscribers: p99 {} µs; {} bytes per idle subscriber",
            plan.scale_subscribers,
            show(run.scale.map(|l| l.map(|l| l.p99_us))),
            show(run.rss_per_subscriber)
        );
    }

    // The enterprise link: a lockstepd following another, one subscriber on the far side.
    if let Some(binary) = lockstepd {
        let (site, workstation) = servers::start_relayed(binary).await?;
        for (publish_at, subscribe_at, slot) in [
            (&site, &workstation, &mut run.relay_in),
            (&workstation, &site, &mut run.relay_out),
        ] {
            let mut fleet = Fleet::new(subscribe_at.target.clone(), tracker.clone());
            fleet.grow(0, 1).await?;
            let (samples, delivery) = latency_from(
                &publish_at.target,
                &fleet,
                tracker,
                phases,
                plan.fanout_events,
                plan.warmup_events,
            )
            .await?;
            *slot = Some(Latency::of(&samples));
            run.delivery.lockstepd.add(delivery);
            fleet.close().await;
        }
        let show = |l: Option<Latency>| {
            l.map_or("–".into(), |l| {
                format!("{:.0} / {:.0}", l.p50_us, l.p99_us)
            })
        };
        eprintln!(
            "  relay, site → here: {} µs; here → site: {} µs (p50 / p99)",
            show(run.relay_in),
            show(run.relay_out)
        );
    }

    // Many topics: lockstepd serves one session topic, so the hub library stands in for it.
    {
        for &system in &systems {
            let mode = match system {
                System::Baseline => "serve-baseline",
                System::Hub => "serve-hub",
                System::Lockstepd => continue,
            };
            let server = servers::start_self(mode, plan.topics)?;
            let mut fleet = Fleet::new(server.target.clone(), tracker.clone());
            for topic in 0..plan.topics {
                fleet.grow(topic, plan.subscribers_per_topic).await?;
            }
            let (samples, delivery) = latency(
                &fleet,
                tracker,
                phases,
                plan.topic_events,
                plan.warmup_events,
            )
            .await?;
            *run.topics.get_mut(system) = Some(Latency::of(&samples));
            run.delivery.get_mut(system).add(delivery);
            fleet.close().await;
        }
        eprintln!(
            "  {} topics x {}: p99 {} µs",
            plan.topics,
            plan.subscribers_per_topic,
            show(run.topics.map(|l| l.map(|l| l.p99_us)))
        );
    }
    Ok(run)
}

/// Starts the servers of `systems`, noting lockstepd's start-up time and each one's idle size.
async fn start_all(
    systems: &[System],
    lockstepd: Option<&std::path::Path>,
    run: &mut Run,
    topics: usize,
) -> anyhow::Result<Each<Option<Server>>> {
    let mut servers = Each::<Option<Server>>::default();
    for &system in systems {
        *servers.get_mut(system) = Some(match system {
            System::Baseline => servers::start_self("serve-baseline", topics)?,
            System::Hub => servers::start_self("serve-hub", topics)?,
            System::Lockstepd => {
                let binary = lockstepd.expect("a lockstepd binary when measuring it");
                let server = servers::start_lockstepd(binary).await?;
                if let Some(ready) = server.ready {
                    run.ready_ms.push(ready.as_secs_f64() * 1000.0);
                }
                server
            }
        });
    }
    // Let start-up allocations settle before reading resident memory.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for &system in systems {
        if let Some(server) = servers.get(system) {
            run.idle_rss_kib.get_mut(system).push(server.rss_kib());
        }
    }
    Ok(servers)
}

/// Publishes events one at a time, round-robin over the fleet's topics, and times each from
/// the moment its POST is written to its arrival at the last of its subscribers.
async fn latency(
    fleet: &Fleet,
    tracker: &Tracker,
    phases: &mut Phases,
    events: usize,
    warmup: usize,
) -> anyhow::Result<(Vec<u64>, Delivery)> {
    latency_from(fleet.target(), fleet, tracker, phases, events, warmup).await
}

/// [`latency`], with the events posted to `target` (another server than the fleet's: the
/// enterprise link carries them across).
async fn latency_from(
    target: &Target,
    fleet: &Fleet,
    tracker: &Tracker,
    phases: &mut Phases,
    events: usize,
    warmup: usize,
) -> anyhow::Result<(Vec<u64>, Delivery)> {
    let topics = target.topics.len();
    let per_topic: Vec<u32> = (0..topics).map(|t| fleet.on_topic(t) as u32).collect();
    let mut http = HttpConn::connect(&target.host).await?;
    let mut delivery = Delivery::default();
    let mut samples = Vec::with_capacity(events);
    for (count, keep) in [(warmup, false), (events, true)] {
        let phase = phases.next();
        tracker.begin(phase, count, |k| per_topic[k % topics]);
        for k in 0..count {
            let request = publish_request(&target.host, &target.topics[k % topics], phase, k);
            let sent = tracker.now_ns();
            let response = http.roundtrip(&request).await?;
            if response.status != 202 {
                bail!(
                    "publish answered {}: {}",
                    response.status,
                    String::from_utf8_lossy(&response.body)
                );
            }
            // A lost delivery shows in the check below; its time is not a latency.
            if let Some(at) = tracker.wait_event(k).await
                && keep
            {
                samples.push(at.saturating_sub(sent));
            }
        }
        tracker.end();
        // Round-robin: topic t got every event k with k % topics == t.
        delivery.add(fleet.check(phase, |t| {
            (count / topics + usize::from(t < count % topics)) as u64
        }));
    }
    Ok((samples, delivery))
}

/// Pipelines publishes on one connection, at most `window` events in flight, and counts
/// deliveries per second from the first request to the last arrival.
async fn throughput(
    fleet: &Fleet,
    tracker: &Tracker,
    phases: &mut Phases,
    plan: &Plan,
) -> anyhow::Result<(f64, Delivery)> {
    let target: &Target = fleet.target();
    let events = plan.throughput_events;
    let window = plan.throughput_window as u64;
    let n = fleet.len() as u32;
    let phase = phases.next();
    let (mut responses, mut writer) = HttpConn::connect(&target.host).await?.split();
    tracker.begin(phase, events, |_| n);
    let reader = tokio::spawn(async move {
        let mut refused = 0usize;
        for _ in 0..events {
            if responses.next().await?.status != 202 {
                refused += 1;
            }
        }
        anyhow::Ok(refused)
    });
    let started = tracker.now_ns();
    let mut k = 0usize;
    let mut batch = Vec::new();
    while k < events {
        let allowed = (tracker.completed() + window) as usize;
        if k >= allowed {
            if !tracker.wait_completed((k + 1) as u64 - window).await {
                bail!("throughput stalled at event {k}");
            }
            continue;
        }
        // Requests that may go now leave together, as a pipelining client sends them.
        let upto = events.min(allowed).min(k + 16);
        batch.clear();
        for j in k..upto {
            batch.extend_from_slice(&publish_request(&target.host, &target.topics[0], phase, j));
        }
        writer.write_all(&batch).await?;
        k = upto;
    }
    if !tracker.wait_completed(events as u64).await {
        bail!("throughput: not every event reached every subscriber");
    }
    let elapsed_ns = tracker.last_arrival(events).saturating_sub(started).max(1);
    let refused = reader.await??;
    if refused > 0 {
        bail!("throughput: {refused} publishes refused");
    }
    tracker.end();
    let rate = (events as f64 * f64::from(n)) / (elapsed_ns as f64 / 1e9);
    Ok((rate, fleet.check(phase, |_| events as u64)))
}
