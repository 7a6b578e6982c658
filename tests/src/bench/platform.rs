//! Open platform scale (issue 14): one component and N authorizers (10 000
//! and 100 000 in the full run, `WXTOKEN_BENCH_AUTHORIZERS` to choose) on 3
//! `wxtoken serve` replicas, wechat-sim answering after 1 ms.
//!
//! 1. fill: the verify ticket pushed, `POST …/authorizers/import` (pages of
//!    500 from `api_get_authorizer_list`), until every authorizer has a
//!    token;
//! 2. refresh window (one scaled cycle): RSS and CPU per replica, Redis
//!    commands per refresh and per authorizer-hour at WeChat's timings,
//!    refreshes per replica, the highest per-minute call rate;
//! 3. `FLUSHALL`: time until every authorizer has a token again (registry
//!    and refresh tokens rebuilt from the list), upstream calls that took,
//!    45011 answers (the fleet must stay within the per-minute limit).

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use wechat_sim::{Faults, SimComponent, SimConfig};
use wxtoken_common::{CredentialId, Keys};
use wxtoken_testkit::{RedisServer, free_port, random_prefix};

use super::Row;
use super::scale::{commandstats, cpu_ticks, refreshed_by, reset_stats, rss, wait_all_tokens};
use crate::ReplicaProcess;

const REPLICAS: usize = 3;
pub(super) const COMPONENT: &str = "open1";
pub(super) const COMPONENT_APPID: &str = "wx00000000000000b9";
pub(super) const SECRET: &str = "bench-component-secret-Lp4";
pub(super) const MSG_TOKEN: &str = "bench-msgtoken";
pub(super) const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub(super) const STATE_KEY: &str = "YmVuY2gtc3RhdGUta2V5LW9mLTMyLWJ5dGVzLi4uLi4=";
pub(super) const API_KEY: &str = "bench-api-key";
/// WeChat's 7200 s authorizer tokens, the default 600 s lead and the mean
/// jitter: the production refresh cycle.
const PROD_CYCLE_S: f64 = 7200.0 - 600.0 - 30.0;
/// `authorizer_calls_per_minute` of the bench config and the simulator's
/// limit (WeChat publishes none): counted over the current and previous
/// minute, so it refills this many authorizers per two minutes at most.
const PER_MINUTE: u64 = 100_000;

#[derive(Debug, Clone)]
struct Plan {
    authorizers: Vec<usize>,
    token_ttl: Duration,
    refresh_ahead: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        let mut plan = if quick {
            Self {
                authorizers: vec![300],
                token_ttl: Duration::from_secs(8),
                refresh_ahead: Duration::from_secs(3),
            }
        } else {
            Self {
                authorizers: vec![10_000, 100_000],
                token_ttl: Duration::from_secs(360),
                refresh_ahead: Duration::from_secs(60),
            }
        };
        if let Ok(list) = std::env::var("WXTOKEN_BENCH_AUTHORIZERS") {
            let counts: Vec<usize> = list
                .split(',')
                .filter_map(|n| n.trim().parse().ok())
                .filter(|n| *n > 0)
                .collect();
            if !counts.is_empty() {
                plan.authorizers = counts;
            }
        }
        plan
    }

    fn cycle(&self) -> Duration {
        self.token_ttl - self.refresh_ahead
    }
}

/// What one authorizer count measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Point {
    pub authorizers: usize,
    pub import_s: f64,
    pub fill_s: f64,
    pub window_s: f64,
    pub refreshes: u64,
    pub commands: u64,
    pub commands_per_refresh: f64,
    pub commands_per_authorizer_hour: f64,
    /// Commands per refresh by name (where they go).
    pub command_mix: std::collections::BTreeMap<String, f64>,
    pub rss_mb: Vec<f64>,
    pub peak_rss_mb: Vec<f64>,
    pub cpu_percent: Vec<f64>,
    pub refreshes_by_replica: Vec<u64>,
    pub refill_s: f64,
    pub refill_calls: u64,
    pub max_calls_per_minute: u64,
    pub minute_refusals: u64,
    pub max_concurrent_fetches_per_authorizer: u64,
}

fn config_text(plan: &Plan, redis: &str, prefix: &str, upstream: &str) -> String {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    format!(
        r#"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
command_timeout = "2s"
connect_timeout = "1s"
pool_wait_timeout = "2s"

[refresh]
refresh_ahead = "{ahead}"
lock_ttl = "2s"
upstream_timeout = "500ms"
backoff_base = "100ms"
backoff_max = "1s"

[upstream]
base_url = "{upstream}"

[http]
listen = "127.0.0.1:0"
api_keys = {{ env = "BENCH_API_KEYS" }}
request_timeout = "120s"

[security]
state_key = {{ env = "BENCH_STATE_KEY" }}

[[components]]
id = "{COMPONENT}"
component_appid = "{COMPONENT_APPID}"
secret = {{ env = "BENCH_SECRET" }}
token = {{ env = "BENCH_MSG_TOKEN" }}
encoding_aes_key = {{ env = "BENCH_AES_KEY" }}
authorizer_calls_per_minute = {PER_MINUTE}
"#,
        ahead = ms(plan.refresh_ahead),
    )
}

fn authorizer_calls(sim: &wechat_sim::SimHandle) -> u64 {
    sim.stats()
        .component(COMPONENT_APPID)
        .and_then(|c| c.ok.get("api_authorizer_token").copied())
        .unwrap_or(0)
}

/// A primary fleet of `replicas` processes with `n` authorizers imported,
/// each with a token.
pub(super) struct Filled {
    pub redis: RedisServer,
    pub sim: wechat_sim::SimHandle,
    pub replicas: Vec<ReplicaProcess>,
    pub conn: redis::aio::MultiplexedConnection,
    /// The component's and every authorizer's token key.
    pub token_keys: Vec<String>,
    pub listen: String,
    pub http: reqwest::Client,
    pub import: Duration,
    pub fill: Duration,
    pub dir: std::path::PathBuf,
    pub authorizers: Vec<CredentialId>,
    _tmp: Option<tempfile::TempDir>,
}

/// Starts the primary fleet and fills it (a verify ticket pushed, every
/// authorizer imported and given a token).
pub(super) async fn fill(
    token_ttl: Duration,
    refresh_ahead: Duration,
    n: usize,
    replica_count: usize,
) -> anyhow::Result<Filled> {
    let plan = &Plan {
        authorizers: vec![n],
        token_ttl,
        refresh_ahead,
    };
    let redis = RedisServer::spawn();
    let event_port = free_port();
    let sim = wechat_sim::spawn(
        SimConfig::new()
            .component(
                SimComponent::new(COMPONENT_APPID, SECRET, MSG_TOKEN, AES_KEY).event_url(format!(
                    "http://127.0.0.1:{event_port}/wechat/components/{COMPONENT}/events"
                )),
            )
            .overlap(plan.refresh_ahead)
            .component_token_ttl(plan.token_ttl)
            .authorizer_token_ttl(plan.token_ttl)
            .authorizer_token_per_minute(u32::try_from(PER_MINUTE)?),
    )
    .await?;
    sim.bulk_authorize(COMPONENT_APPID, n)
        .map_err(|e| anyhow::anyhow!("bulk_authorize: {e}"))?;
    sim.set_faults(Faults {
        delay: Some(Duration::from_millis(1)),
        ..Faults::default()
    });
    let prefix = random_prefix();
    let keys = Keys::new(&prefix)?;
    let tmp = tempfile::tempdir()?;
    // WXTOKEN_BENCH_LOG=info keeps the replicas' logs (the path is printed).
    let log_level = std::env::var("WXTOKEN_BENCH_LOG").unwrap_or_else(|_| "warn".into());
    let (dir, tmp) = if log_level == "warn" {
        (tmp.path().to_owned(), Some(tmp))
    } else {
        let kept = tmp.keep();
        eprintln!("replica logs kept in {}", kept.display());
        (kept, None)
    };
    let config = dir.join("wxtoken.toml");
    std::fs::write(
        &config,
        config_text(plan, &redis.url(), &prefix, &sim.base_url()),
    )?;
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let env = [
        ("BENCH_SECRET", SECRET),
        ("BENCH_MSG_TOKEN", MSG_TOKEN),
        ("BENCH_AES_KEY", AES_KEY),
        ("BENCH_STATE_KEY", STATE_KEY),
        ("BENCH_API_KEYS", API_KEY),
        ("RUST_LOG", log_level.as_str()),
    ];
    crate::wxtoken_bin();
    let listen = format!("127.0.0.1:{event_port}");
    let mut replicas: Vec<ReplicaProcess> = (1..=replica_count)
        .map(|r| {
            let mut env = env.to_vec();
            if r == 1 {
                env.push(("WXTOKEN__HTTP__LISTEN", listen.as_str()));
            }
            ReplicaProcess::spawn(&config, &format!("r{r}"), &dir, &env)
        })
        .collect();
    replicas[0].http = listen.parse()?;

    // The chain: a verify ticket (the first replica may still be starting),
    // then the component token.
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        let push = sim
            .push_verify_ticket(COMPONENT_APPID)
            .await
            .map_err(|e| anyhow::anyhow!("push: {e}"))?;
        if matches!(push, wechat_sim::PushOutcome::Success { .. }) {
            break;
        }
        anyhow::ensure!(
            Instant::now() < until,
            "verify ticket never accepted: {push:?}; replica log:\n{}",
            replicas[0].logs()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let component_key = keys.access_token(&CredentialId::parse(COMPONENT)?);
    wait_all_tokens(
        &mut conn,
        &[component_key],
        Duration::from_secs(30),
        &mut replicas,
    )
    .await?;

    let http = reqwest::Client::new();
    let started = Instant::now();
    let reply: serde_json::Value = http
        .post(format!(
            "http://{listen}/v1/components/{COMPONENT}/authorizers/import"
        ))
        .bearer_auth(API_KEY)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let import = started.elapsed();
    anyhow::ensure!(reply["imported"] == json!(n), "import answered {reply}");
    let component = CredentialId::parse(COMPONENT)?;
    let mut token_keys = Vec::with_capacity(n);
    let mut authorizers = Vec::with_capacity(n);
    let mut cursor = 0_u64;
    loop {
        let (next, flat): (u64, Vec<String>) = redis::cmd("HSCAN")
            .arg(keys.authorizers(&component))
            .arg(cursor)
            .arg("COUNT")
            .arg(5000)
            .query_async(&mut conn)
            .await?;
        for appid in flat.chunks(2).filter_map(|p| p.first()) {
            let id = CredentialId::parse(&format!("{COMPONENT}.{appid}"))?;
            token_keys.push(keys.access_token(&id));
            authorizers.push(id);
        }
        cursor = next;
        if cursor == 0 {
            break;
        }
    }
    anyhow::ensure!(
        token_keys.len() == n,
        "{} registered of {n}",
        token_keys.len()
    );
    let deadline = Duration::from_secs(60) + Duration::from_millis(3 * n as u64);
    wait_all_tokens(&mut conn, &token_keys, deadline, &mut replicas).await?;
    let fill = started.elapsed();
    Ok(Filled {
        redis,
        sim,
        replicas,
        conn,
        token_keys,
        listen,
        http,
        import,
        fill,
        dir,
        authorizers,
        _tmp: tmp,
    })
}

impl Filled {
    /// The primary's store, for commits made as its refresher would.
    pub fn store(&self) -> anyhow::Result<wxtoken_coordinator::store::TokenStore> {
        let text = std::fs::read_to_string(self.dir.join("wxtoken.toml"))?;
        let env: wxtoken_coordinator::config::Env = [
            ("BENCH_SECRET", SECRET),
            ("BENCH_MSG_TOKEN", MSG_TOKEN),
            ("BENCH_AES_KEY", AES_KEY),
            ("BENCH_STATE_KEY", STATE_KEY),
            ("BENCH_API_KEYS", API_KEY),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let config = wxtoken_coordinator::config::Config::from_toml_str(&text, &env)?;
        wxtoken_coordinator::replica::build_store(&config)
    }
}

async fn point(plan: &Plan, n: usize) -> anyhow::Result<Point> {
    let Filled {
        redis: _redis,
        sim,
        mut replicas,
        mut conn,
        token_keys,
        http,
        import,
        fill,
        ..
    } = fill(plan.token_ttl, plan.refresh_ahead, n, REPLICAS).await?;
    let deadline = Duration::from_secs(60) + Duration::from_millis(3 * n as u64);

    // One refresh cycle after every authorizer's first refresh is planned.
    let calls_before = authorizer_calls(&sim);
    let refreshed_before = refreshed_by(&http, &replicas).await?;
    let cpu_before: Vec<u64> = replicas.iter().map(cpu_ticks).collect::<Result<_, _>>()?;
    reset_stats(&mut conn).await?;
    let window_start = Instant::now();
    tokio::time::sleep(plan.cycle() + Duration::from_secs(1)).await;
    let stats = commandstats(&mut conn).await?;
    let window = window_start.elapsed();
    let cpu_after: Vec<u64> = replicas.iter().map(cpu_ticks).collect::<Result<_, _>>()?;
    let refreshed_after = refreshed_by(&http, &replicas).await?;
    let refreshes = authorizer_calls(&sim) - calls_before;
    let cpu_percent: Vec<f64> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| (a - b) as f64 / window.as_secs_f64())
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

    // FLUSHALL: the registry and every refresh token gone.
    let calls_before_flush = authorizer_calls(&sim);
    let flushed = Instant::now();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .context("FLUSHALL")?;
    wait_all_tokens(&mut conn, &token_keys, deadline, &mut replicas).await?;
    let refill = flushed.elapsed();
    let refill_calls = authorizer_calls(&sim) - calls_before_flush;
    let c = sim
        .stats()
        .component(COMPONENT_APPID)
        .cloned()
        .context("component stats")?;

    for mut r in replicas {
        r.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = r.wait_exit(Duration::from_secs(5));
    }
    sim.shutdown().await;

    let commands: u64 = stats.values().sum();
    let per_refresh = commands as f64 / refreshes.max(1) as f64;
    Ok(Point {
        authorizers: n,
        import_s: import.as_secs_f64(),
        fill_s: fill.as_secs_f64(),
        window_s: window.as_secs_f64(),
        refreshes,
        commands,
        commands_per_refresh: per_refresh,
        commands_per_authorizer_hour: per_refresh * 3600.0 / PROD_CYCLE_S,
        command_mix: stats
            .iter()
            .map(|(name, calls)| (name.clone(), *calls as f64 / refreshes.max(1) as f64))
            .collect(),
        rss_mb,
        peak_rss_mb,
        cpu_percent,
        refreshes_by_replica,
        refill_s: refill.as_secs_f64(),
        refill_calls,
        max_calls_per_minute: c.max_authorizer_calls_per_minute,
        minute_refusals: c.authorizer_minute_refusals,
        max_concurrent_fetches_per_authorizer: c.max_concurrent_fetches_per_authorizer,
    })
}

fn join(v: &[f64], decimals: usize) -> String {
    v.iter()
        .map(|x| format!("{x:.decimals$}"))
        .collect::<Vec<_>>()
        .join(" / ")
}

pub async fn run(quick: bool) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let plan = Plan::new(quick);
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for &n in &plan.authorizers {
        let p = point(&plan, n)
            .await
            .with_context(|| format!("{n} authorizers"))?;
        let s = "platform";
        let peak = p.peak_rss_mb.iter().copied().fold(0.0, f64::max);
        let rss_target = if n >= 100_000 { 128.0 } else { 64.0 };
        rows.push(Row::new(
            s,
            format!("{n}: import + first tokens"),
            format!("{:.1} s (import {:.1} s)", p.fill_s, p.import_s),
        ));
        rows.push(
            Row::new(
                s,
                format!("{n}: RSS per replica (peak)"),
                format!("{} MB ({} MB)", join(&p.rss_mb, 0), join(&p.peak_rss_mb, 0)),
            )
            .target(format!("≤ {rss_target:.0} MB"), peak <= rss_target || quick),
        );
        rows.push(Row::new(
            s,
            format!("{n}: CPU per replica"),
            format!("{} %", join(&p.cpu_percent, 1)),
        ));
        rows.push(
            Row::new(
                s,
                format!("{n}: Redis commands / authorizer / hour (WeChat timings)"),
                format!(
                    "{:.2} ({:.1} per refresh)",
                    p.commands_per_authorizer_hour, p.commands_per_refresh
                ),
            )
            .target("≤ 10", p.commands_per_authorizer_hour <= 10.0),
        );
        let total: u64 = p.refreshes_by_replica.iter().sum();
        let spread = p
            .refreshes_by_replica
            .iter()
            .map(|r| (*r as f64 * REPLICAS as f64 / total.max(1) as f64 - 1.0).abs())
            .fold(0.0, f64::max);
        rows.push(
            Row::new(
                s,
                format!("{n}: refreshes per replica"),
                format!(
                    "{:?} (max deviation {:.0} %)",
                    p.refreshes_by_replica,
                    spread * 100.0
                ),
            )
            .target("±10 %", spread <= 0.10 || quick),
        );
        rows.push(
            Row::new(
                s,
                format!("{n}: FLUSHALL → every authorizer served"),
                format!(
                    "{:.1} s, {} calls, {} × 45011",
                    p.refill_s, p.refill_calls, p.minute_refusals
                ),
            )
            .target(
                "≤ 120 s, 0 × 45011",
                p.refill_s <= 120.0 && p.minute_refusals == 0,
            ),
        );
        rows.push(Row::new(
            s,
            format!("{n}: most api_authorizer_token calls in a minute"),
            format!("{} (limit {PER_MINUTE})", p.max_calls_per_minute),
        ));
        points.push(p);
    }
    Ok((
        rows,
        json!({ "points": points, "token_ttl_s": plan.token_ttl.as_secs(), "refresh_ahead_s": plan.refresh_ahead.as_secs() }),
    ))
}
