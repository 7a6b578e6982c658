//! Efficiency: upstream fetches of a wxtoken fleet of 1, 8 and 32
//! `wxtoken serve` processes (quick: 1, 4) sharing one Redis, while 20
//! services use the token.
//!
//! Per replica count, on a fresh Redis and wechat-sim (6 s tokens, 1 s
//! overlap, WeChat's 2000 fetches a day): the replicas (`RUST_LOG=warn`)
//! refresh 1 s ahead of expiry; 20 in-process `TokenClient`s (the reader
//! services) each call the simulator's `cgi-bin/getcallbackip` with the
//! fleet's token every 100 ms through `wxtoken_client::wechat::Api` (on
//! 40001/42001: report the token, wait for a newer one, retry once) for 20
//! token lifetimes (quick: 2).
//!
//! Measured from the simulator: upstream fetches against the ideal (the
//! first fetch + one per refresh cycle, `token_ttl - refresh_ahead`, from the
//! first fetch to the end), the most fetches ever in flight at once, and
//! uses the simulator rejected; from the readers: failed uses (still
//! failing after the retry, or no token).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use wxtoken_client::wechat::{Api, ApiError};

use super::Row;
use crate::{Fleet, ID, SECRET, Timing};

const SECTION: &str = "efficiency";
const READERS: usize = 20;
/// Each reader's pause between two uses.
const PAUSE: Duration = Duration::from_millis(100);
/// How long a reader waits for the fleet's refresh after a token error.
const REFRESH_WAIT: Duration = Duration::from_secs(5);
/// The readers' `expiry_margin`. The client's default, 1 s, is made for
/// 7200 s tokens; at this scale it would equal `refresh_ahead` (it works
/// too: the jitter only ever refreshes early).
const EXPIRY_MARGIN: Duration = Duration::from_millis(100);

/// The scaled timing of every fleet of this section.
pub fn timing() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(6),
        overlap: Duration::from_secs(1),
        refresh_ahead: Duration::from_secs(1),
        lock_ttl: Duration::from_millis(600),
        upstream_timeout: Duration::from_millis(250),
        ..Timing::default()
    }
}

/// How many token lifetimes each fleet runs for.
pub fn lifetimes(quick: bool) -> u32 {
    if quick { 2 } else { 20 }
}

/// What the readers counted.
#[derive(Debug, Default)]
struct Uses {
    calls: u64,
    ok: u64,
    failed: u64,
    /// Failed uses by errcode or kind.
    errors: BTreeMap<String, u64>,
    /// Latency of successful uses (retries included), microseconds.
    latencies_us: Vec<u64>,
}

impl Uses {
    fn add(&mut self, other: Uses) {
        self.calls += other.calls;
        self.ok += other.ok;
        self.failed += other.failed;
        for (k, n) in other.errors {
            *self.errors.entry(k).or_default() += n;
        }
        self.latencies_us.extend(other.latencies_us);
    }

    fn percentile_ms(&mut self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        self.latencies_us.sort_unstable();
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }
}

fn error_key(e: &ApiError) -> String {
    match e {
        ApiError::Wechat { errcode, .. } => errcode.to_string(),
        ApiError::Token(_) => "no_token".into(),
        ApiError::Transport(_) => "transport".into(),
        ApiError::BadReply(_) => "bad_reply".into(),
        _ => "other".into(),
    }
}

/// One reader service: uses the token every `PAUSE` until `stop`.
async fn reader(api: Api, stop: Arc<AtomicBool>) -> Uses {
    let mut uses = Uses::default();
    let mut tick = tokio::time::interval(PAUSE);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        uses.calls += 1;
        let started = Instant::now();
        match api.get(ID, "cgi-bin/getcallbackip", &[]).await {
            Ok(v) if v.get("ip_list").is_some_and(|l| l.is_array()) => {
                uses.ok += 1;
                uses.latencies_us
                    .push(u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX));
            }
            Ok(_) => {
                uses.failed += 1;
                *uses.errors.entry("bad_reply".into()).or_default() += 1;
            }
            Err(e) => {
                uses.failed += 1;
                *uses.errors.entry(error_key(&e)).or_default() += 1;
            }
        }
    }
    uses
}

/// One fleet of `replicas` processes, measured.
async fn measure(replicas: usize, quick: bool) -> anyhow::Result<serde_json::Value> {
    let timing = timing();
    let duration = timing.token_ttl * lifetimes(quick);
    let cycle = timing.token_ttl - timing.refresh_ahead;
    let mut fleet = Fleet::new(timing.clone()).await;
    let spawn_started = Instant::now();
    for _ in 0..replicas {
        fleet.spawn_replica_env(SECRET, &[("RUST_LOG", "warn")]);
    }
    crate::sdk::wait_ready(&fleet, Duration::from_secs(60)).await?;
    let ready_after = spawn_started.elapsed();

    let mut apis = Vec::new();
    for _ in 0..READERS {
        let client = fleet
            .client_builder()
            .expiry_margin(EXPIRY_MARGIN)
            .connect()
            .await
            .context("a reader's TokenClient")?;
        apis.push(Api::new(client, &fleet.sim.base_url())?.refresh_wait(REFRESH_WAIT));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let tasks: Vec<_> = apis
        .into_iter()
        .map(|api| tokio::spawn(reader(api, stop.clone())))
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut uses = Uses::default();
    for t in tasks {
        uses.add(t.await.context("a reader panicked")?);
    }

    let end = crate::sdk::unix_ms();
    let app = fleet.app();
    let first = app
        .issued
        .first()
        .context("the fleet fetched no token")?
        .issued_at_ms;
    let elapsed = Duration::from_millis(end.saturating_sub(first));
    let ideal = 1 + u64::try_from(elapsed.as_millis() / cycle.as_millis())?;
    let mut alive = 0;
    for r in &mut fleet.replicas {
        if r.wait_exit(Duration::ZERO).is_none() {
            alive += 1;
        }
    }
    // Refresh intervals: time between consecutive issued tokens.
    let gaps_ms: Vec<u64> = app
        .issued
        .windows(2)
        .map(|w| w[1].issued_at_ms.saturating_sub(w[0].issued_at_ms))
        .collect();
    Ok(json!({
        "replicas": replicas,
        "replicas_alive_at_end": alive,
        "ready_after_s": ready_after.as_secs_f64(),
        "readers": READERS,
        "use_every_ms": PAUSE.as_millis() as u64,
        "reader_expiry_margin_ms": EXPIRY_MARGIN.as_millis() as u64,
        "duration_s": duration.as_secs_f64(),
        "elapsed_since_first_fetch_s": elapsed.as_secs_f64(),
        "cycle_s": cycle.as_secs_f64(),
        "ideal_fetches": ideal,
        "ideal_note": "1 + floor(elapsed since the first fetch / (token_ttl - refresh_ahead)); the refresh jitter makes each refresh up to refresh_ahead/10 early, so over many cycles one fetch more than this is expected",
        "fetch_calls": app.fetch_calls,
        "fetch_ok": app.fetch_ok,
        "fetch_failed": app.fetch_failed,
        "fetches_per_ideal": app.fetch_calls as f64 / ideal as f64,
        "refresh_intervals_ms": gaps_ms,
        "max_concurrent_fetches": app.max_concurrent_fetches,
        "uses": uses.calls,
        "uses_ok": uses.ok,
        "uses_failed": uses.failed,
        "errors": uses.errors,
        "sim_uses_ok": app.uses_ok,
        "uses_rejected_at_sim": app.uses_invalid + app.uses_expired,
        "uses_invalid_40001": app.uses_invalid,
        "uses_expired_42001": app.uses_expired,
        "use_latency_ms": {
            "p50": uses.percentile_ms(0.50),
            "p99": uses.percentile_ms(0.99),
            "max": uses.percentile_ms(1.0),
        },
    }))
}

fn rows(run: &serde_json::Value) -> Vec<Row> {
    let n = |k: &str| run[k].as_u64().unwrap_or(0);
    let label = match n("replicas") {
        1 => "1 replica".to_owned(),
        r => format!("{r} replicas"),
    };
    let (fetches, ideal) = (n("fetch_calls"), n("ideal_fetches"));
    let ratio = run["fetches_per_ideal"].as_f64().unwrap_or(f64::NAN);
    let mut rows = vec![
        Row::new(
            SECTION,
            format!("{label}: fetches / ideal"),
            format!("{fetches} / {ideal} = {ratio:.2}"),
        )
        .target("1.00", ratio <= 1.05 || fetches <= ideal + 1),
        Row::new(
            SECTION,
            format!("{label}: max concurrent fetches"),
            n("max_concurrent_fetches").to_string(),
        )
        .target("1", n("max_concurrent_fetches") <= 1),
        Row::new(
            SECTION,
            format!("{label}: failed uses"),
            format!("{} of {}", n("uses_failed"), n("uses")),
        )
        .target("0", n("uses_failed") == 0),
        Row::new(
            SECTION,
            format!("{label}: uses rejected at the sim (healed by the retry)"),
            n("uses_rejected_at_sim").to_string(),
        ),
    ];
    if n("replicas_alive_at_end") != n("replicas") {
        rows.push(
            Row::new(
                SECTION,
                format!("{label}: replicas alive at the end"),
                n("replicas_alive_at_end").to_string(),
            )
            .target(n("replicas").to_string(), false),
        );
    }
    rows
}

pub async fn run(quick: bool) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let counts: &[usize] = if quick { &[1, 4] } else { &[1, 8, 32] };
    let t = timing();
    // Build (or find) the `wxtoken` binary before any clock starts.
    tokio::task::spawn_blocking(crate::wxtoken_bin)
        .await
        .context("building wxtoken")?;
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    for &replicas in counts {
        let run = measure(replicas, quick)
            .await
            .with_context(|| format!("efficiency with {replicas} replicas"))?;
        rows.extend(self::rows(&run));
        runs.push(run);
    }
    let json = json!({
        "timing": {
            "token_ttl_s": t.token_ttl.as_secs_f64(),
            "overlap_s": t.overlap.as_secs_f64(),
            "refresh_ahead_s": t.refresh_ahead.as_secs_f64(),
            "lock_ttl_ms": t.lock_ttl.as_millis() as u64,
            "upstream_timeout_ms": t.upstream_timeout.as_millis() as u64,
            "lifetimes": lifetimes(quick),
            "daily_quota": wechat_sim::SimConfig::default().daily_quota,
        },
        "runs": runs,
    });
    Ok((rows, json))
}
