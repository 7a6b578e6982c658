//! A followed component (issue 17, SPEC §12): a primary `wxtoken serve`
//! with one component and N authorizers (1 000 and 10 000 in the full run),
//! and a follower `wxtoken serve` on its own Redis following the component
//! over loopback HTTP. Measured on this process' one clock:
//!
//! 1. sync: follower start → every token (the component's and N
//!    authorizers') in the follower's Redis;
//! 2. lag: the bench commits a new generation of a random authorizer into
//!    the primary's Redis (lock, begin, fenced commit, as a refresher
//!    would) every 20 ms; each one's `refreshed` on the follower's Redis;
//! 3. refill: `FLUSHALL` of the follower's Redis → every token back;
//! 4. the follower's own simulator counts its calls: none.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_coordinator::store::{Commit, CommitArgs, LockOwner};
use wxtoken_testkit::RedisServer;

use super::Row;
use super::follow::{ms, pct, refreshed_generation};
use super::platform::{self, COMPONENT};
use super::scale::wait_all_tokens;
use crate::ReplicaProcess;

const SECTION: &str = "follow-component";
const PREFIX: &str = "follower";

type Seen = Arc<Mutex<HashMap<(CredentialId, u64), Instant>>>;

/// When each (id, generation)'s `refreshed` reached this process.
async fn announced(redis: &RedisServer, keys: &Keys) -> Result<Seen> {
    let seen: Seen = Arc::default();
    let mut ps = redis.client().get_async_pubsub().await?;
    ps.psubscribe(keys.events_pattern()).await?;
    let out = seen.clone();
    let keys = keys.clone();
    tokio::spawn(async move {
        let mut msgs = ps.on_message();
        while let Some(m) = msgs.next().await {
            let Some(id) = keys.id_of_events_channel(m.get_channel_name()) else {
                continue;
            };
            if let Some(g) = refreshed_generation(&m) {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry((id, g))
                    .or_insert_with(Instant::now);
            }
        }
    });
    Ok(seen)
}

fn follower_config(redis: &str, primary: &str, wechat: &str) -> String {
    format!(
        r#"
[redis]
url = "{redis}"
key_prefix = "{PREFIX}"
command_timeout = "2s"

[refresh]
lock_ttl = "2s"
upstream_timeout = "500ms"

[upstream]
base_url = "{wechat}"

[http]
listen = "127.0.0.1:0"
api_keys = {{ env = "BENCH_API_KEYS" }}

[[components]]
id = "{COMPONENT}"
component_appid = "{appid}"
follow = {{ url = "http://{primary}", key = {{ env = "BENCH_API_KEYS" }}, keepalive = "2s" }}
"#,
        appid = platform::COMPONENT_APPID,
    )
}

#[derive(Debug, serde::Serialize)]
struct Point {
    authorizers: usize,
    sync_s: f64,
    refill_s: f64,
    lag_p50_ms: f64,
    lag_p99_ms: f64,
    lag_max_ms: f64,
    samples: usize,
    missed: usize,
    follower_wechat_calls: u64,
}

async fn point(n: usize, samples: usize) -> Result<Point> {
    let mut primary =
        platform::fill(Duration::from_secs(3600), Duration::from_secs(600), n, 1).await?;
    let wechat = wechat_sim::spawn(wechat_sim::SimConfig::new().component(
        wechat_sim::SimComponent::new(
            platform::COMPONENT_APPID,
            platform::SECRET,
            platform::MSG_TOKEN,
            platform::AES_KEY,
        ),
    ))
    .await?;
    let redis = RedisServer::spawn();
    let keys = Keys::new(PREFIX)?;
    let config = primary.dir.join("follower.toml");
    std::fs::write(
        &config,
        follower_config(&redis.url(), &primary.listen, &wechat.base_url()),
    )?;
    // The component's and every authorizer's token, under the follower's
    // prefix.
    let token_keys: Vec<String> = primary
        .authorizers
        .iter()
        .chain([&CredentialId::parse(COMPONENT)?])
        .map(|id| keys.access_token(id))
        .collect();
    let seen = announced(&redis, &keys).await?;
    let mut conn = redis.client().get_multiplexed_async_connection().await?;
    let started = Instant::now();
    let env = [("BENCH_API_KEYS", platform::API_KEY), ("RUST_LOG", "warn")];
    let mut followers = vec![ReplicaProcess::spawn(&config, "f1", &primary.dir, &env)];
    let deadline = Duration::from_secs(60) + Duration::from_millis(5 * n as u64);
    wait_all_tokens(&mut conn, &token_keys, deadline, &mut followers).await?;
    let sync = started.elapsed();

    // Lag: new generations of random authorizers, committed at the primary.
    let store = primary.store()?;
    let owner = LockOwner::new("bench");
    let ids = primary.authorizers.clone();
    anyhow::ensure!(!ids.is_empty(), "no authorizers");
    let mut sent: Vec<((CredentialId, u64), Instant)> = Vec::with_capacity(samples);
    for i in 0..samples {
        let id = &ids[rand::random_range(0..ids.len())];
        let cref = CredentialRef::token(id.clone());
        if !store
            .try_lock(&cref, &owner, Duration::from_secs(5))
            .await?
        {
            continue;
        }
        let grant = store.begin(&cref, &owner).await?.context("begin")?;
        let value = SecretString::from(format!("bench-fc-{i:06}-{}", rand::random::<u64>()));
        let args = CommitArgs::token(&value, Duration::from_secs(3600), "bench", "bench");
        let at = Instant::now();
        if let Commit::Stored { generation, .. } =
            store.commit(&cref, &grant, &owner, &args).await?
        {
            sent.push(((id.clone(), generation), at));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (mut lags, missed) = {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let lags: Vec<Duration> = sent
            .iter()
            .filter_map(|(k, at)| seen.get(k).map(|t| t.saturating_duration_since(*at)))
            .collect();
        let missed = sent.len() - lags.len();
        (lags, missed)
    };
    lags.sort();

    // Refill after the follower's Redis lost everything.
    let flushed = Instant::now();
    redis::cmd("FLUSHALL")
        .query_async::<()>(&mut conn)
        .await
        .context("FLUSHALL")?;
    wait_all_tokens(&mut conn, &token_keys, deadline, &mut followers).await?;
    let refill = flushed.elapsed();
    let calls: u64 = wechat
        .stats()
        .components
        .values()
        .map(|c| c.calls.values().sum::<u64>())
        .sum();
    for mut r in followers.into_iter().chain(primary.replicas.drain(..)) {
        r.signal(nix::sys::signal::Signal::SIGTERM);
        let _ = r.wait_exit(Duration::from_secs(5));
    }
    Ok(Point {
        authorizers: n,
        sync_s: sync.as_secs_f64(),
        refill_s: refill.as_secs_f64(),
        lag_p50_ms: pct(&lags, 0.5).as_secs_f64() * 1e3,
        lag_p99_ms: pct(&lags, 0.99).as_secs_f64() * 1e3,
        lag_max_ms: pct(&lags, 1.0).as_secs_f64() * 1e3,
        samples: sent.len(),
        missed,
        follower_wechat_calls: calls,
    })
}

pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    let (counts, samples): (&[usize], usize) = if quick {
        (&[100], 20)
    } else {
        (&[1_000, 10_000], 300)
    };
    let mut rows = Vec::new();
    let mut points = Vec::new();
    for &n in counts {
        let p = point(n, samples)
            .await
            .with_context(|| format!("{n} authorizers"))?;
        rows.push(Row::new(
            SECTION,
            format!("{n}: follower start → every token in its Redis"),
            format!("{:.2} s", p.sync_s),
        ));
        rows.push(
            Row::new(
                SECTION,
                format!(
                    "{n}: an authorizer's new generation, primary commit → follower's readers ({} values)",
                    p.samples
                ),
                format!(
                    "p50 {} / p99 {} / max {} ({} missed)",
                    ms(Duration::from_secs_f64(p.lag_p50_ms / 1e3)),
                    ms(Duration::from_secs_f64(p.lag_p99_ms / 1e3)),
                    ms(Duration::from_secs_f64(p.lag_max_ms / 1e3)),
                    p.missed
                ),
            )
            .target(
                "p99 ≤ 50 ms, none missed",
                p.missed == 0 && p.lag_p99_ms <= 50.0,
            ),
        );
        rows.push(Row::new(
            SECTION,
            format!("{n}: follower FLUSHALL → every token back"),
            format!("{:.2} s", p.refill_s),
        ));
        rows.push(
            Row::new(
                SECTION,
                format!("{n}: calls the follower made to WeChat"),
                p.follower_wechat_calls.to_string(),
            )
            .target("0", p.follower_wechat_calls == 0),
        );
        points.push(p);
    }
    Ok((rows, json!({ "points": points })))
}
