//! Follower lag (issue 17, SPEC §12): a primary `wxtoken serve`, a follower
//! fleet on its own Redis following it, and a second-level follower
//! following that one. The bench commits a new value into the primary's
//! Redis (as a refresher would: lock, begin, fenced commit) every 50 ms and
//! times, on this process' one clock, when each follower's Redis announces
//! it (`refreshed`, the event its readers act on). Target: p99 ≤ 50 ms on
//! loopback for the first level.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_coordinator::store::{CommitArgs, LockOwner};

use super::Row;
use crate::follow::{Follower, primary};
use crate::{Fleet, ID, ReplicaProcess, Timing};

const SECTION: &str = "follow";

type Seen = Arc<Mutex<HashMap<u64, Instant>>>;

/// When each generation's `refreshed` reached this process, on `redis`.
async fn announced(redis: &wxtoken_testkit::RedisServer, keys: &Keys) -> Result<Seen> {
    let seen: Seen = Arc::default();
    let mut ps = redis.client().get_async_pubsub().await?;
    ps.subscribe(keys.events(&CredentialId::parse(ID)?)).await?;
    let out = seen.clone();
    tokio::spawn(async move {
        let mut msgs = ps.on_message();
        while let Some(m) = msgs.next().await {
            if let Some(g) = refreshed_generation(&m) {
                out.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(g)
                    .or_insert_with(Instant::now);
            }
        }
    });
    Ok(seen)
}

fn spawn_quiet(f: &mut Follower) {
    let mut env = Follower::env();
    env.push(("RUST_LOG", "warn"));
    let id = format!("{}1", f.name);
    f.replicas
        .push(ReplicaProcess::spawn(&f.config, &id, f.dir.path(), &env));
}

pub(super) fn pct(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// The generation a `refreshed` event on a credential's channel announces.
pub(super) fn refreshed_generation(m: &redis::Msg) -> Option<u64> {
    let body: String = m.get_payload().ok()?;
    let v: Value = serde_json::from_str(&body).ok()?;
    (v["event"] == "refreshed")
        .then(|| v["generation"].as_u64())
        .flatten()
}

pub(super) fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    let samples = if quick { 20 } else { 400 };
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(3600),
        ..Timing::default()
    })
    .await;
    primary(&mut fleet, 1);
    fleet.wait_generation(1, Duration::from_secs(30)).await;
    let mut staging = Follower::new(
        "s",
        &fleet,
        &format!("http://{}", fleet.replicas[0].http),
        false,
    );
    spawn_quiet(&mut staging);
    staging.wait_token(0, Duration::from_secs(30)).await;
    let mut dev = Follower::new("d", &fleet, &staging.url(), false);
    spawn_quiet(&mut dev);
    dev.wait_token(0, Duration::from_secs(30)).await;
    let s_seen = announced(&staging.redis, &staging.keys).await?;
    let d_seen = announced(&dev.redis, &dev.keys).await?;

    let store = fleet.store();
    let cref = CredentialRef::token(CredentialId::parse(ID)?);
    let owner = LockOwner::new("bench");
    let mut sent: Vec<(u64, Instant)> = Vec::with_capacity(samples);
    for i in 0..samples {
        if !store
            .try_lock(&cref, &owner, Duration::from_secs(5))
            .await?
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        }
        let grant = store.begin(&cref, &owner).await?.context("begin")?;
        let value = SecretString::from(format!("bench-follow-{i:06}-{}", rand::random::<u64>()));
        let args = CommitArgs::token(&value, Duration::from_secs(3600), "bench", "bench");
        let at = Instant::now();
        if let wxtoken_coordinator::store::Commit::Stored { generation, .. } =
            store.commit(&cref, &grant, &owner, &args).await?
        {
            sent.push((generation, at));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let lags = |seen: &Seen| -> (Vec<Duration>, usize) {
        let seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<Duration> = sent
            .iter()
            .filter_map(|(g, at)| seen.get(g).map(|t| t.saturating_duration_since(*at)))
            .collect();
        v.sort();
        let missed = sent.len() - v.len();
        (v, missed)
    };
    let (s, s_missed) = lags(&s_seen);
    let (d, d_missed) = lags(&d_seen);
    let mut rows = Vec::new();
    for (name, v, missed, target) in [
        ("follower (1st level)", &s, s_missed, true),
        ("second-level follower", &d, d_missed, false),
    ] {
        let row = Row::new(
            SECTION,
            format!(
                "{name}: primary commit → follower's readers, {} values",
                v.len()
            ),
            format!(
                "p50 {} / p99 {} / max {} ({missed} missed)",
                ms(pct(v, 0.5)),
                ms(pct(v, 0.99)),
                ms(pct(v, 1.0))
            ),
        );
        rows.push(if target {
            row.target(
                "p99 ≤ 50 ms, none missed",
                missed == 0 && pct(v, 0.99) <= Duration::from_millis(50),
            )
        } else {
            row
        });
    }
    let json = json!({
        "samples": sent.len(),
        "staging": { "p50_ms": pct(&s, 0.5).as_secs_f64() * 1e3, "p99_ms": pct(&s, 0.99).as_secs_f64() * 1e3, "missed": s_missed },
        "dev": { "p50_ms": pct(&d, 0.5).as_secs_f64() * 1e3, "p99_ms": pct(&d, 0.99).as_secs_f64() * 1e3, "missed": d_missed },
    });
    Ok((rows, json))
}
