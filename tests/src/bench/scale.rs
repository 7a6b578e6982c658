//! Scale: 1 / 100 / 10 000 credentials on 3 `wxtoken serve` replicas.
//!
//! Per credential count, on a fresh Redis and wechat-sim (answering every
//! fetch after 1 ms):
//! 1. cold start: time until every credential has a token;
//! 2. refresh window (`cycles` refresh cycles at a scaled TTL): Redis
//!    commands per refresh (`INFO commandstats`, which counts the commands
//!    scripts run as well as the scripts), CPU and RSS of every replica, and
//!    how the refreshes spread over the replicas (their `/metrics`);
//! 3. `FLUSHALL`: time until every credential has a token again, and how
//!    many upstream fetches that took (one per credential is the floor);
//! 4. idle window right after the refill, when no token is due: the
//!    commands a fleet sends with nothing to do (event-link pings, the
//!    data-loss check) per hour.
//!
//! Commands per credential per hour at WeChat's real timings (7200 s tokens,
//! the default 600 s `refresh_ahead`) = commands per refresh × refreshes per
//! hour + the idle commands per hour shared by all credentials.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::MultiplexedConnection;
use serde_json::json;
use wechat_sim::{Faults, SimConfig};
use wxtoken_common::{CredentialId, Keys};
use wxtoken_testkit::{RedisServer, random_prefix};

use super::Row;
use crate::ReplicaProcess;

const SECRET: &str = "bench-secret-Zq81";
const REPLICAS: usize = 3;
/// `[refresh] loss_check_interval`, the default.
const LOSS_CHECK: Duration = Duration::from_secs(5);
/// WeChat's token lifetime and the default `refresh_ahead`, with the mean
/// refresh jitter (lead / 20): the production refresh cycle.
const PROD_CYCLE_S: f64 = 7200.0 - 600.0 - 30.0;

#[derive(Debug, Clone)]
struct Plan {
    credentials: Vec<usize>,
    token_ttl: Duration,
    refresh_ahead: Duration,
    lock_ttl: Duration,
    upstream_timeout: Duration,
    cycles: u32,
    idle: Duration,
    settle: Duration,
}

impl Plan {
    /// `WXTOKEN_BENCH_CREDENTIALS=10000` (comma-separated) runs only those
    /// credential counts, e.g. to profile one.
    fn new(quick: bool) -> Self {
        let mut plan = Self::defaults(quick);
        if let Ok(list) = std::env::var("WXTOKEN_BENCH_CREDENTIALS") {
            let counts: Vec<usize> = list
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect();
            if !counts.is_empty() {
                plan.credentials = counts;
            }
        }
        plan
    }

    fn defaults(quick: bool) -> Self {
        if quick {
            Self {
                credentials: vec![1, 100],
                token_ttl: Duration::from_secs(6),
                refresh_ahead: Duration::from_secs(1),
                lock_ttl: Duration::from_millis(600),
                upstream_timeout: Duration::from_millis(250),
                cycles: 1,
                idle: Duration::from_secs(2),
                settle: Duration::from_millis(500),
            }
        } else {
            Self {
                credentials: vec![1, 100, 10_000],
                token_ttl: Duration::from_secs(30),
                refresh_ahead: Duration::from_secs(3),
                lock_ttl: Duration::from_secs(2),
                upstream_timeout: Duration::from_millis(500),
                cycles: 2,
                idle: Duration::from_secs(10),
                settle: Duration::from_secs(5),
            }
        }
    }

    fn cycle(&self) -> Duration {
        self.token_ttl - self.refresh_ahead
    }
}

fn id(i: usize) -> String {
    format!("c{i:05}")
}

fn appid(i: usize) -> String {
    format!("wx{i:016x}")
}

fn config_text(plan: &Plan, n: usize, redis: &str, prefix: &str, upstream: &str) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    let mut text = format!(
        r#"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
command_timeout = "2s"
connect_timeout = "1s"
pool_wait_timeout = "2s"

[refresh]
refresh_ahead = "{ahead}"
lock_ttl = "{lock}"
upstream_timeout = "{upstream_timeout}"
backoff_base = "100ms"
backoff_max = "1s"

[upstream]
base_url = "{upstream}"

[http]
listen = "127.0.0.1:0"
"#,
        ahead = ms(plan.refresh_ahead),
        lock = ms(plan.lock_ttl),
        upstream_timeout = ms(plan.upstream_timeout),
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[apps]]\nid = \"{}\"\nappid = \"{}\"\nsecret = {{ env = \"BENCH_SECRET\" }}\n",
            id(i),
            appid(i)
        ));
    }
    text
}

/// What one credential count measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub credentials: usize,
    pub cold_fill_s: f64,
    pub window_s: f64,
    pub refreshes: u64,
    pub commands: u64,
    pub commands_by_name: BTreeMap<String, u64>,
    pub idle_window_s: f64,
    pub idle_commands: u64,
    pub idle_fetches: u64,
    pub idle_by_name: BTreeMap<String, u64>,
    pub commands_per_refresh: f64,
    pub idle_commands_per_hour: f64,
    pub commands_per_credential_hour: f64,
    pub rss_mb: Vec<f64>,
    pub peak_rss_mb: Vec<f64>,
    pub cpu_percent: Vec<f64>,
    pub refreshes_by_replica: Vec<u64>,
    pub refill_s: f64,
    pub refill_fetches: u64,
    pub max_concurrent_fetches_per_credential: u64,
}

pub async fn run(quick: bool) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let plan = Plan::new(quick);
    let mut points = Vec::new();
    for &n in &plan.credentials {
        eprintln!("bench: scale, {n} credentials on {REPLICAS} replicas");
        points.push(
            point(&plan, n)
                .await
                .with_context(|| format!("{n} credentials"))?,
        );
    }
    let mut rows = Vec::new();
    for p in &points {
        let n = p.credentials;
        let work_per_hour = p.commands_per_refresh * 3600.0 / PROD_CYCLE_S;
        rows.push(
            Row::new(
                "scale",
                format!(
                    "{n} cred: Redis commands / credential / hour for its refreshes (7200 s tokens)"
                ),
                format!(
                    "{work_per_hour:.2} ({:.1} commands per refresh, the scripts' own included)",
                    p.commands_per_refresh
                ),
            )
            .target("≤ 10", work_per_hour <= 10.0),
        );
        let total = Row::new(
            "scale",
            format!(
                "{n} cred: all Redis commands / credential / hour, incl. the fleet's fixed cost"
            ),
            format!(
                "{:.2} (fixed: {:.0}/h for {REPLICAS} replicas: event-link pings, data-loss checks)",
                p.commands_per_credential_hour, p.idle_commands_per_hour
            ),
        );
        rows.push(if n >= 10_000 {
            total.target("≤ 10", p.commands_per_credential_hour <= 10.0)
        } else {
            total
        });
        let max_rss = p.peak_rss_mb.iter().copied().fold(0.0, f64::max);
        let rss = Row::new(
            "scale",
            format!("{n} cred: RSS per replica (peak)"),
            format!("{} MB ({max_rss:.1} MB peak)", join(&p.rss_mb, 1)),
        );
        rows.push(if n >= 10_000 {
            rss.target("≤ 64 MB", max_rss <= 64.0)
        } else {
            rss
        });
        rows.push(Row::new(
            "scale",
            format!("{n} cred: CPU per replica over the refresh window"),
            format!("{} % of a core", join(&p.cpu_percent, 2)),
        ));
        let refill = Row::new(
            "scale",
            format!("{n} cred: refill after FLUSHALL (sim answers in 1 ms)"),
            format!(
                "{:.2} s, {} fetches for {n} credentials, max {} concurrent per credential",
                p.refill_s, p.refill_fetches, p.max_concurrent_fetches_per_credential
            ),
        );
        rows.push(if n >= 10_000 {
            refill.target("≤ 60 s", p.refill_s <= 60.0)
        } else {
            refill
        });
        let total: u64 = p.refreshes_by_replica.iter().sum();
        let shares: Vec<f64> = p
            .refreshes_by_replica
            .iter()
            .map(|&r| 100.0 * r as f64 / total.max(1) as f64)
            .collect();
        rows.push(Row::new(
            "scale",
            format!("{n} cred: refreshes per replica"),
            format!(
                "{} ({} %)",
                p.refreshes_by_replica
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(" / "),
                join(&shares, 0)
            ),
        ));
    }
    let json = json!({
        "replicas": REPLICAS,
        "token_ttl_s": plan.token_ttl.as_secs_f64(),
        "refresh_ahead_s": plan.refresh_ahead.as_secs_f64(),
        "production_cycle_s": PROD_CYCLE_S,
        "points": points,
    });
    Ok((rows, json))
}

fn join(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

async fn point(plan: &Plan, n: usize) -> anyhow::Result<Point> {
    let redis = RedisServer::spawn();
    let mut sim_config = SimConfig::new()
        .token_ttl(plan.token_ttl)
        .overlap(Duration::from_secs(2))
        .daily_quota(1_000_000);
    for i in 0..n {
        sim_config = sim_config.app(appid(i), SECRET);
    }
    let sim = wechat_sim::spawn(sim_config).await?;
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(1)),
        ..Faults::default()
    });
    let prefix = random_prefix();
    let keys = Keys::new(&prefix)?;
    let dir = tempfile::tempdir()?;
    let config = dir.path().join("wxtoken.toml");
    std::fs::write(
        &config,
        config_text(plan, n, &redis.url(), &prefix, &sim.base_url()),
    )?;
    let token_keys: Vec<String> = (0..n)
        .map(|i| CredentialId::parse(&id(i)).map(|c| keys.access_token(&c)))
        .collect::<Result<_, _>>()?;
    let mut conn = redis.client().get_multiplexed_async_connection().await?;

    crate::wxtoken_bin(); // built before the clock starts
    let started = Instant::now();
    let mut replicas: Vec<ReplicaProcess> = (1..=REPLICAS)
        .map(|r| {
            ReplicaProcess::spawn(
                &config,
                &format!("r{r}"),
                dir.path(),
                &[("BENCH_SECRET", SECRET), ("RUST_LOG", "warn")],
            )
        })
        .collect();
    let fill_deadline = Duration::from_secs(60) + Duration::from_millis(10 * n as u64);
    wait_all_tokens(&mut conn, &token_keys, fill_deadline, &mut replicas).await?;
    let cold_fill = started.elapsed();

    // Refresh window, once every replica has looked at every credential
    // (at start each loop peeks once; behind the first replica's fill the
    // others are still doing so).
    tokio::time::sleep(plan.settle).await;
    let http = reqwest::Client::new();
    let fetched_before = fetched(&sim);
    let refreshed_before = refreshed_by(&http, &replicas).await?;
    let cpu_before: Vec<u64> = replicas.iter().map(cpu_ticks).collect::<Result<_, _>>()?;
    reset_stats(&mut conn).await?;
    let window_start = Instant::now();
    tokio::time::sleep(plan.cycle() * plan.cycles + Duration::from_millis(500)).await;
    let stats = commandstats(&mut conn).await?;
    let window = window_start.elapsed();
    let cpu_after: Vec<u64> = replicas.iter().map(cpu_ticks).collect::<Result<_, _>>()?;
    let refreshed_after = refreshed_by(&http, &replicas).await?;
    let refreshes = fetched(&sim) - fetched_before;
    let ticks_per_s = 100.0; // USER_HZ on Linux
    let cpu_percent: Vec<f64> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| 100.0 * (a - b) as f64 / ticks_per_s / window.as_secs_f64())
        .collect();
    let (rss_mb, peak_rss_mb): (Vec<f64>, Vec<f64>) = replicas
        .iter()
        .map(rss)
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .unzip();
    let refreshes_by_replica: Vec<u64> = refreshed_before
        .iter()
        .zip(&refreshed_after)
        .map(|(b, a)| a.saturating_sub(*b))
        .collect();

    // FLUSHALL and refill.
    let fetched_before_flush = fetched(&sim);
    let flushed = Instant::now();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .context("FLUSHALL")?;
    wait_all_tokens(&mut conn, &token_keys, fill_deadline, &mut replicas).await?;
    let refill = flushed.elapsed();
    let refill_fetches = fetched(&sim) - fetched_before_flush;

    // Idle window: nothing is due for most of a cycle after the refill. It
    // starts once every replica's data-loss check (default every 5 s) has
    // seen the new marker: the replicas that did not find the loss first
    // re-read every credential once then, a cost of the loss, not of the
    // steady state.
    tokio::time::sleep(LOSS_CHECK + Duration::from_secs(1)).await;
    let fetched_before_idle = fetched(&sim);
    reset_stats(&mut conn).await?;
    let idle_start = Instant::now();
    tokio::time::sleep(plan.idle).await;
    let idle_stats = commandstats(&mut conn).await?;
    let idle_window = idle_start.elapsed();
    let idle_fetches = fetched(&sim) - fetched_before_idle;
    let max_concurrent = sim
        .stats()
        .apps
        .values()
        .map(|a| a.max_concurrent_fetches)
        .max()
        .unwrap_or(0);

    for mut r in replicas {
        r.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = r.wait_exit(Duration::from_secs(5));
    }
    sim.shutdown().await;

    let commands: u64 = stats.values().sum();
    let idle_commands: u64 = idle_stats.values().sum();
    let idle_per_s = idle_commands as f64 / idle_window.as_secs_f64();
    let refresh_commands = commands as f64 - idle_per_s * window.as_secs_f64();
    let per_refresh = refresh_commands.max(0.0) / refreshes.max(1) as f64;
    let idle_per_hour = idle_per_s * 3600.0;
    let per_credential_hour = per_refresh * 3600.0 / PROD_CYCLE_S + idle_per_hour / n as f64;
    Ok(Point {
        credentials: n,
        cold_fill_s: cold_fill.as_secs_f64(),
        window_s: window.as_secs_f64(),
        refreshes,
        commands,
        commands_by_name: stats,
        idle_window_s: idle_window.as_secs_f64(),
        idle_commands,
        idle_fetches,
        idle_by_name: idle_stats,
        commands_per_refresh: per_refresh,
        idle_commands_per_hour: idle_per_hour,
        commands_per_credential_hour: per_credential_hour,
        rss_mb,
        peak_rss_mb,
        cpu_percent,
        refreshes_by_replica,
        refill_s: refill.as_secs_f64(),
        refill_fetches,
        max_concurrent_fetches_per_credential: max_concurrent,
    })
}

/// Tokens fetched from the simulator so far, all apps.
fn fetched(sim: &wechat_sim::SimHandle) -> u64 {
    sim.stats().apps.values().map(|a| a.fetch_ok).sum()
}

pub(super) async fn wait_all_tokens(
    conn: &mut MultiplexedConnection,
    keys: &[String],
    deadline: Duration,
    replicas: &mut [ReplicaProcess],
) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    loop {
        for r in replicas.iter_mut() {
            if r.wait_exit(Duration::ZERO).is_some() {
                anyhow::bail!("replica {} exited:\n{}", r.replica_id, r.logs());
            }
        }
        let mut missing = 0_usize;
        for chunk in keys.chunks(1000) {
            let mut pipe = redis::pipe();
            for k in chunk {
                pipe.exists(k);
            }
            let present: Vec<bool> = pipe.query_async(conn).await?;
            missing += present.iter().filter(|p| !**p).count();
        }
        if missing == 0 {
            return Ok(());
        }
        if Instant::now() >= until {
            let logs: String = replicas
                .iter()
                .map(|r| {
                    let logs = r.logs();
                    let mut lines: Vec<&str> = logs
                        .lines()
                        .filter(|l| l.contains("registry") || l.contains("lost"))
                        .take(20)
                        .collect();
                    lines.extend(logs.lines().rev().take(5));
                    lines.join("\n")
                })
                .collect::<Vec<_>>()
                .join("\n");
            anyhow::bail!(
                "{missing} of {} credentials still without a token after {deadline:?}; replica logs:\n{logs}",
                keys.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(super) async fn reset_stats(conn: &mut MultiplexedConnection) -> anyhow::Result<()> {
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async::<()>(conn)
        .await
        .context("CONFIG RESETSTAT")
}

/// `INFO commandstats` as command → calls (excluding the INFO/CONFIG this
/// harness sent).
pub(super) async fn commandstats(
    conn: &mut MultiplexedConnection,
) -> anyhow::Result<BTreeMap<String, u64>> {
    let text: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await?;
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("cmdstat_") else {
            continue;
        };
        let Some((name, fields)) = rest.split_once(':') else {
            continue;
        };
        if matches!(name, "info" | "config|resetstat" | "config") {
            continue;
        }
        let calls = fields
            .split(',')
            .find_map(|f| f.strip_prefix("calls="))
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        out.insert(name.to_owned(), calls);
    }
    Ok(out)
}

/// Every replica's count of refreshes it stored (`wxtoken_refresh_total`
/// with `outcome="refreshed"`, summed over credentials).
pub(super) async fn refreshed_by(
    http: &reqwest::Client,
    replicas: &[ReplicaProcess],
) -> anyhow::Result<Vec<u64>> {
    let mut out = Vec::new();
    for r in replicas {
        let text = http
            .get(format!("http://{}/metrics", r.http))
            .send()
            .await?
            .text()
            .await?;
        let n: f64 = text
            .lines()
            .filter(|l| {
                l.starts_with("wxtoken_refresh_total{") && l.contains("outcome=\"refreshed\"")
            })
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum();
        out.push(n as u64);
    }
    Ok(out)
}

/// utime + stime of a replica, in clock ticks.
pub(super) fn cpu_ticks(r: &ReplicaProcess) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", r.pid()))?;
    // Fields after the command name (which is in parentheses).
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .context("/proc/<pid>/stat format")?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let utime: u64 = f.get(11).context("utime")?.parse()?;
    let stime: u64 = f.get(12).context("stime")?.parse()?;
    Ok(utime + stime)
}

/// (VmRSS, VmHWM) of a replica in MB.
pub(super) fn rss(r: &ReplicaProcess) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", r.pid()))?;
    let kb = |field: &str| -> anyhow::Result<f64> {
        let line = status
            .lines()
            .find(|l| l.starts_with(field))
            .with_context(|| format!("{field} in /proc/<pid>/status"))?;
        let v: f64 = line
            .split_whitespace()
            .nth(1)
            .context("a number")?
            .parse()?;
        Ok(v / 1024.0)
    };
    Ok((kb("VmRSS:")?, kb("VmHWM:")?))
}
