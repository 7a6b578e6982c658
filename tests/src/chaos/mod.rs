//! The chaos runner (issue 7): N `wxtoken serve` processes, each reaching
//! Redis through its own fault proxy, M reader processes that use every
//! token they read, one Redis, wechat-sim with scaled TTL — and faults on a
//! seeded schedule: SIGKILL (and restart) a replica, SIGSTOP the lock holder
//! past its lock TTL, restart Redis empty, pause Redis, blackhole a replica's
//! Redis link, third-party refreshes, and upstream -1 / 502 / garbage / hang
//! at configured rates. [`run`] returns a [`Report`] that judges the run.

mod flood;
mod kinds;
pub mod platform;
mod report;
mod watchdog;

use std::collections::{BTreeMap, HashSet};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wechat_sim::Faults;
use wxtoken_client::connect::ClientSource;
use wxtoken_client::events::{ConnectionState, EventSink, EventSubscription, SubscriptionConfig};
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_testkit::{FaultProxy, ProxyMode};

pub use report::{ReaderReport, Report};

use crate::{APPID, Fleet, ID, SECRET, Timing};
pub use watchdog::Watchdog;
use watchdog::pids;

/// What to run and how hard to hit it.
#[derive(Debug, Clone)]
pub struct ChaosConfig {
    pub duration: Duration,
    pub seed: u64,
    pub replicas: usize,
    pub readers: usize,
    pub timing: Timing,
    /// Mean time between two scheduled faults.
    pub fault_every: Duration,
    /// Upstream fault rates (per fetch).
    pub busy_rate: f64,
    pub http_502_rate: f64,
    pub garbage_rate: f64,
    pub hang_rate: f64,
    /// How long Redis is paused by a pause fault.
    pub redis_pause: Duration,
    /// Which scheduled faults to draw from (all by default).
    pub kinds: Vec<FaultKind>,
    /// Test hook: once the fleet is up, block a runtime worker this long
    /// (as a blocking call would) under a 2 s deadline, so the watchdog's
    /// failing report can be checked.
    pub stall: Option<Duration>,
}

impl ChaosConfig {
    pub fn new(duration: Duration, seed: u64) -> Self {
        Self {
            duration,
            seed,
            replicas: 5,
            readers: 20,
            timing: Timing {
                token_ttl: Duration::from_secs(20),
                overlap: Duration::from_secs(5),
                refresh_ahead: Duration::from_secs(6),
                lock_ttl: Duration::from_secs(3),
                upstream_timeout: Duration::from_secs(1),
                daily_budget: 100_000,
                fatal_cooldown: Duration::from_secs(5),
                verify_interval: Duration::from_secs(2),
                report_refresh_interval: Duration::from_secs(2),
                tickets: &["jsapi"],
                wecom: Some(&["jsapi"]),
                ticket_ttl: Duration::from_secs(20),
                platform: false,
            },
            fault_every: Duration::from_secs(8),
            busy_rate: 0.05,
            http_502_rate: 0.05,
            garbage_rate: 0.02,
            hang_rate: 0.02,
            redis_pause: Duration::from_secs(10),
            kinds: FaultKind::ALL.to_vec(),
            stall: None,
        }
    }

    fn faults(&self, seed: u64) -> Faults {
        Faults {
            busy_rate: self.busy_rate,
            http_502_rate: self.http_502_rate,
            garbage_rate: self.garbage_rate,
            hang_rate: self.hang_rate,
            seed: Some(seed),
            ..Faults::default()
        }
    }
}

/// A scheduled fault kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum FaultKind {
    KillReplica,
    StallLockHolder,
    RestartRedisEmpty,
    PauseRedis,
    BlackholeReplicaLink,
    ThirdPartyRefresh,
    /// WeCom revokes an agent's token early (issue 13): the fleet heals it
    /// through a reader's verified report.
    WecomRevoke,
    /// An attacker with an API key and the reader ACL user (issue 12):
    /// reports the token it just read, over HTTP and through Redis, and
    /// publishes forged events, for 4 s. It must cost no upstream call.
    ReportFlood,
}

impl FaultKind {
    pub const ALL: [FaultKind; 8] = [
        Self::KillReplica,
        Self::StallLockHolder,
        Self::RestartRedisEmpty,
        Self::PauseRedis,
        Self::BlackholeReplicaLink,
        Self::ThirdPartyRefresh,
        Self::WecomRevoke,
        Self::ReportFlood,
    ];

    /// By its report name.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::KillReplica => "sigkill_replica",
            Self::StallLockHolder => "sigstop_lock_holder",
            Self::RestartRedisEmpty => "redis_restart_empty",
            Self::PauseRedis => "redis_pause",
            Self::BlackholeReplicaLink => "blackhole_replica_redis_link",
            Self::ThirdPartyRefresh => "third_party_refresh",
            Self::WecomRevoke => "wecom_revoke",
            Self::ReportFlood => "report_flood",
        }
    }
}

/// Wakes the tracker that records the SHA-1 of every token the fleet
/// committed (read on each `refreshed` event), so failed uses can be told apart: a token superseded
/// by one the fleet never stored (a killed holder's, a garbage reply's, a
/// third party's) is a window the fault forces; anything else is a bug.
struct Committed {
    tx: tokio::sync::mpsc::UnboundedSender<()>,
}

impl EventSink for Committed {
    fn on_event(&self, _cref: &CredentialRef, event: Event) {
        if matches!(event, Event::Refreshed { .. }) {
            let _ = self.tx.send(());
        }
    }
    fn on_connection(&self, state: ConnectionState) {
        if matches!(state, ConnectionState::Up { .. }) {
            let _ = self.tx.send(());
        }
    }
}

fn sha1(s: &str) -> String {
    sha1_smol::Sha1::from(s).hexdigest()
}

struct Replica {
    proxy: FaultProxy,
}

/// Runs the chaos profile and returns its report.
pub async fn run(cfg: ChaosConfig) -> anyhow::Result<Report> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let mut fleet = Fleet::new(cfg.timing.clone()).await;
    fleet.sim.set_faults(cfg.faults(cfg.seed));
    let reader_bin = std::env::current_exe()?
        .parent()
        .map(|d| d.join("reader"))
        .filter(|p| p.exists())
        .ok_or_else(|| {
            anyhow::anyhow!(
                "the reader binary must sit next to this one (cargo build -p wxtoken-e2e --bins)"
            )
        })?;

    // Every step below has a deadline, kept outside the runtime.
    let dog = Watchdog::start();
    dog.step(
        "start the replicas",
        Duration::from_secs(60),
        pids(&fleet, &[]),
    );
    // Replicas, each behind its own proxy to Redis.
    let mut replicas: BTreeMap<String, Replica> = BTreeMap::new();
    for _ in 0..cfg.replicas {
        spawn_replica(&mut fleet, &mut replicas).await;
    }
    dog.step(
        "the first token",
        Duration::from_secs(40),
        pids(&fleet, &[]),
    );
    fleet.wait_generation(1, Duration::from_secs(20)).await;
    eprintln!("fleet up: {} replicas, first token stored", cfg.replicas);
    if let Some(stall) = cfg.stall {
        dog.step(
            "a blocking call (--stall)",
            Duration::from_secs(2),
            pids(&fleet, &[]),
        );
        std::thread::sleep(stall);
    }

    // Track committed tokens.
    let seen = Arc::new(Mutex::new(HashSet::new()));
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let _events = EventSubscription::spawn(
        ClientSource::fixed(fleet.redis.client()),
        Keys::new(&fleet.prefix)?,
        SubscriptionConfig::default(),
        Arc::new(Committed { tx }),
    );
    let tracker = {
        let (seen, url, prefix) = (seen.clone(), fleet.redis.url(), fleet.prefix.clone());
        tokio::spawn(async move {
            let Ok(keys) = Keys::new(&prefix) else { return };
            let Ok(id) = CredentialId::parse(ID) else {
                return;
            };
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let mut tick = tokio::time::interval(Duration::from_millis(200));
            loop {
                tokio::select! {
                    _ = rx.recv() => {}
                    _ = tick.tick() => {}
                }
                if let Ok(mut c) = client.get_multiplexed_async_connection().await
                    && let Ok(Some(t)) =
                        wxtoken_client::keyspace::read_token(&mut c, &keys, &id).await
                    && let Ok(mut s) = seen.lock()
                {
                    s.insert(sha1(&t.value));
                }
            }
        })
    };

    // Readers.
    // Most readers use the app's token; with tickets and WeCom configured,
    // every tenth signs with the jsapi ticket and every tenth (plus five)
    // uses an agent's WeCom token.
    let (base, wecom_base) = (fleet.sim.base_url(), fleet.sim.wecom_base_url());
    let mut readers: Vec<Child> = (0..cfg.readers)
        .map(|i| {
            let (kind, id, use_base) = match i % 10 {
                9 if !cfg.timing.tickets.is_empty() => ("ticket", ID, base.as_str()),
                4 if cfg.timing.wecom.is_some() => {
                    ("wecom", crate::AGENTS[0].0, wecom_base.as_str())
                }
                _ => ("token", ID, base.as_str()),
            };
            Command::new(&reader_bin)
                .args(["--redis", &fleet.redis.url(), "--prefix", &fleet.prefix])
                .args(["--id", id, "--kind", kind, "--appid", APPID])
                .args(["--use-base", use_base, "--interval-ms", "100"])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    // The fault schedule.
    let started = Instant::now();
    let started_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut injected: BTreeMap<&'static str, u64> = BTreeMap::new();
    while started.elapsed() + Duration::from_secs(5) < cfg.duration {
        let gap = cfg.fault_every.mul_f64(rng.random_range(0.5..1.5));
        let gap = gap.min(cfg.duration.saturating_sub(started.elapsed()));
        let slack = Duration::from_secs(10);
        dog.step(
            "the wait before a fault",
            gap + slack,
            pids(&fleet, &readers),
        );
        tokio::time::sleep(gap).await;
        if started.elapsed() + Duration::from_secs(5) >= cfg.duration {
            break;
        }
        if cfg.kinds.is_empty() {
            continue;
        }
        let kind = cfg.kinds[rng.random_range(0..cfg.kinds.len())];
        eprintln!(
            "[{:>6.1}s] fault: {}",
            started.elapsed().as_secs_f64(),
            kind.name()
        );
        let limit = cfg.redis_pause + Duration::from_secs(20);
        // The watchdog's deadline is later: the timeout below ends an await
        // that hangs; only a runtime that is blocked gets past it.
        let at = started.elapsed().as_secs_f64();
        let name = format!("fault {} at {at:.1}s", kind.name());
        dog.step(
            name,
            limit + Duration::from_secs(10),
            pids(&fleet, &readers),
        );
        let step = inject(kind, &cfg, &mut fleet, &mut replicas, &mut rng);
        if tokio::time::timeout(limit, step).await.is_err() {
            anyhow::bail!("injecting {} did not finish", kind.name());
        }
        *injected.entry(kind.name()).or_default() += 1;
    }
    let remaining = cfg.duration.saturating_sub(started.elapsed());
    let limit = remaining + Duration::from_secs(10);
    dog.step("the rest of the run", limit, pids(&fleet, &readers));
    tokio::time::sleep(remaining).await;

    eprintln!("[{:>6.1}s] winding down", started.elapsed().as_secs_f64());
    // Wind down: stop readers first (they report), then read the sim.
    let mut reader_reports = Vec::new();
    dog.step(
        "stop the readers",
        Duration::from_secs(30),
        pids(&fleet, &readers),
    );
    for r in &readers {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(r.id() as i32), Signal::SIGTERM);
    }
    for mut r in readers.drain(..) {
        // Exited (or killed) before its output is read: the read cannot hang.
        let until = Instant::now() + Duration::from_secs(10);
        while matches!(r.try_wait(), Ok(None)) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if matches!(r.try_wait(), Ok(None)) {
            let _ = r.kill();
            let _ = r.wait();
            anyhow::bail!("a reader did not exit within 10 s of SIGTERM");
        }
        let out = tokio::task::spawn_blocking(move || r.wait_with_output()).await??;
        let line = String::from_utf8_lossy(&out.stdout).to_string();
        match serde_json::from_str::<ReaderReport>(line.trim()) {
            Ok(rep) => reader_reports.push(rep),
            Err(e) => anyhow::bail!("a reader reported nothing usable ({e}): {line}"),
        }
    }
    let elapsed = started.elapsed();
    tracker.abort();
    let stats = fleet.sim.stats();
    dog.step("scrape metrics", Duration::from_secs(30), pids(&fleet, &[]));
    let metrics = scrape_metrics(&fleet).await;
    dog.step("judge the run", Duration::from_secs(30), pids(&fleet, &[]));
    let committed = seen.lock().map(|s| s.clone()).unwrap_or_default();
    // For a post-mortem: every replica's log, when asked for.
    if let Some(path) = std::env::var_os("WXTOKEN_CHAOS_LOGS") {
        let _ = std::fs::write(path, fleet.all_logs());
    }
    let report = Report::judge(
        &cfg,
        elapsed,
        &stats,
        &committed,
        reader_reports,
        injected,
        &fleet.all_logs(),
        &metrics,
        started_ms,
    );
    dog.step(
        "tear down the fleet",
        Duration::from_secs(30),
        pids(&fleet, &[]),
    );
    drop(replicas);
    drop(fleet);
    dog.disarm();
    Ok(report)
}

async fn spawn_replica(fleet: &mut Fleet, replicas: &mut BTreeMap<String, Replica>) {
    let proxy = FaultProxy::spawn(fleet.redis.addr()).await;
    let url = proxy.url_for_redis();
    // Spawning a process is a blocking call: off the runtime's worker.
    let id = tokio::task::block_in_place(|| {
        fleet
            .spawn_replica_env(SECRET, &[("WXTOKEN__REDIS__URL", &url)])
            .replica_id
            .clone()
    });
    replicas.insert(id, Replica { proxy });
}

async fn inject(
    kind: FaultKind,
    cfg: &ChaosConfig,
    fleet: &mut Fleet,
    replicas: &mut BTreeMap<String, Replica>,
    rng: &mut StdRng,
) {
    let alive: Vec<String> = replicas.keys().cloned().collect();
    let random = alive[rng.random_range(0..alive.len())].clone();
    // Redis may be paused by an earlier fault: a connection is accepted and
    // never answered. Without a holder the victim is a random replica.
    let holder = tokio::time::timeout(Duration::from_secs(3), fleet.lock_owner())
        .await
        .ok()
        .flatten()
        .and_then(|o| o.split(':').next().map(str::to_owned));
    match kind {
        FaultKind::KillReplica => {
            let victim = if rng.random_bool(0.5) {
                holder
                    .filter(|h| replicas.contains_key(h))
                    .unwrap_or(random)
            } else {
                random
            };
            if let Some(p) = fleet.replicas.iter().position(|r| r.replica_id == victim) {
                fleet.replicas[p].signal(Signal::SIGKILL);
                let _ = tokio::task::block_in_place(|| {
                    fleet.replicas[p].wait_exit(Duration::from_secs(2))
                });
                fleet.replicas.remove(p);
            }
            replicas.remove(&victim);
            tokio::time::sleep(Duration::from_secs(1)).await;
            spawn_replica(fleet, replicas).await;
        }
        FaultKind::StallLockHolder => {
            let victim = holder
                .filter(|h| replicas.contains_key(h))
                .unwrap_or(random);
            // A hung upstream request of a stopped process would stay "in
            // flight" forever; keep upstream faults off while it is stopped.
            fleet.sim.set_faults(Faults::default());
            if let Some(r) = fleet.replicas.iter().find(|r| r.replica_id == victim) {
                r.signal(Signal::SIGSTOP);
                tokio::time::sleep(cfg.timing.lock_ttl + Duration::from_secs(1)).await;
                r.signal(Signal::SIGCONT);
            }
            fleet.sim.set_faults(cfg.faults(rng.random()));
        }
        FaultKind::RestartRedisEmpty => {
            // Stops and starts a process and waits for it: blocking.
            let _ = tokio::task::block_in_place(|| fleet.redis.restart());
        }
        FaultKind::PauseRedis => {
            fleet.redis.pause(cfg.redis_pause);
            tokio::time::sleep(cfg.redis_pause).await;
        }
        FaultKind::BlackholeReplicaLink => {
            if let Some(r) = replicas.get(&random) {
                r.proxy.set_mode(ProxyMode::Blackhole);
                tokio::time::sleep(Duration::from_secs(6)).await;
                r.proxy.set_mode(ProxyMode::Pass);
            }
        }
        FaultKind::ThirdPartyRefresh => {
            let _ = fleet.sim.external_refresh(APPID);
        }
        FaultKind::WecomRevoke => {
            let (agent, _, _) = crate::AGENTS[0];
            let cref = CredentialRef::token(CredentialId::parse(agent).expect("an id"));
            if let Ok(Some(t)) = fleet.store().read_value(&cref).await {
                fleet.sim.revoke(&t.value);
            }
        }
        FaultKind::ReportFlood => flood::report_flood(fleet).await,
    }
}

async fn scrape_metrics(fleet: &Fleet) -> String {
    let Ok(http) = reqwest::Client::builder()
        .timeout(Duration::from_secs(3))
        .build()
    else {
        return String::new();
    };
    let mut all = String::new();
    for r in &fleet.replicas {
        if let Ok(resp) = http.get(format!("http://{}/metrics", r.http)).send().await
            && let Ok(text) = resp.text().await
        {
            all.push_str(&text);
        }
    }
    all
}
