//! Alternative: what fleets run today without wxtoken, on the efficiency
//! section's workload. 20 processes (quick: 4) of an unchanged SDK call
//! `cgi-bin/getcallbackip` every 100 ms for 120 s (quick: 12 s) against a
//! fresh wechat-sim (6 s tokens, 1 s overlap, WeChat's 2000 fetches a day)
//! and Redis:
//! - wechatpy fetching straight from the sim, sharing the token through
//!   its `RedisStorage`;
//! - the same wechatpy workers fetching from 2 `wxtoken serve` replicas'
//!   WeChat-compatible `/cgi-bin/token` (the SDK unchanged, with wxtoken);
//! - co-wechat-api fetching straight from the sim, sharing the token
//!   through the Redis getToken/saveToken pair its README suggests
//!   (skipped, with the reason, when Node or its packages cannot be had).
//!
//! The SDKs' refresh margins are scaled by the token lifetime's factor
//! (6 s / 7200 s): wechatpy's 60 s to 50 ms, co-wechat-api's 10 s to
//! 8.3 ms. The ideal fetch count follows whoever refreshes: the SDK's own
//! cycle (`token_ttl - margin`) direct, the fleet's
//! (`token_ttl - refresh_ahead`) through wxtoken.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::Row;
use crate::sdk::{Run, Sdk, WorkerSpec, Workload, run_workers, wait_ready};
use crate::{Fleet, SECRET, Timing};

const SECTION: &str = "alternative";
/// Each worker's pause between two uses (as the efficiency readers').
const PAUSE: Duration = Duration::from_millis(100);
/// wxtoken replicas in the "through wxtoken" run.
const REPLICAS: usize = 2;

fn workers(quick: bool) -> usize {
    if quick { 4 } else { 20 }
}

fn duration(quick: bool) -> Duration {
    super::efficiency::timing().token_ttl * super::efficiency::lifetimes(quick)
}

/// The simulator's timings for the direct runs (the replicas' settings
/// matter only through wxtoken): the efficiency section's.
fn timing() -> Timing {
    super::efficiency::timing()
}

/// `50 ms`, `8.3 ms`.
fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if (ms - ms.round()).abs() < 0.05 {
        format!("{} ms", ms.round())
    } else {
        format!("{ms:.1} ms")
    }
}

/// How a run was set up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Straight to the sim, the SDK's own Redis store.
    Direct,
    /// Through `REPLICAS` wxtoken replicas' `/cgi-bin/token`.
    Wxtoken,
}

fn label(sdk: Sdk, mode: Mode, n: usize, margin: Duration) -> String {
    let how = match mode {
        Mode::Direct => format!("direct, {}", sdk.redis_store()),
        Mode::Wxtoken => format!("via {REPLICAS} wxtoken replicas"),
    };
    format!(
        "{} ×{n}, {how} (margin {} s scaled to {})",
        sdk.name(),
        sdk.real_margin().as_secs(),
        ms(margin)
    )
}

/// Waits for the fleet's first token, at most `deadline`.
async fn first_token(fleet: &Fleet, deadline: Duration) -> anyhow::Result<()> {
    let until = Instant::now() + deadline;
    while fleet.token().await.is_none() {
        anyhow::ensure!(
            Instant::now() < until,
            "the fleet stored no token within {deadline:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// One run on a fresh fleet.
async fn measure(runtime: &crate::sdk::SdkRuntime, mode: Mode, quick: bool) -> anyhow::Result<Run> {
    let sdk = runtime.sdk;
    let timing = timing();
    let n = workers(quick);
    let workload = Workload {
        duration: duration(quick),
        pause: PAUSE,
        margin: sdk.scaled_margin(timing.token_ttl),
    };
    let mut fleet = Fleet::new(timing.clone()).await;
    let (specs, cycle) = match mode {
        Mode::Direct => {
            let specs: Vec<WorkerSpec> = (0..n).map(|_| WorkerSpec::direct(&fleet)).collect();
            // The SDK's own cycle: the token's lifetime less its margin.
            (specs, timing.token_ttl - workload.margin)
        }
        Mode::Wxtoken => {
            for _ in 0..REPLICAS {
                fleet.spawn_replica_env(SECRET, &[("RUST_LOG", "warn")]);
            }
            first_token(&fleet, Duration::from_secs(15)).await?;
            wait_ready(&fleet, Duration::from_secs(20)).await?;
            let specs: Vec<WorkerSpec> = (0..n)
                .map(|i| WorkerSpec::through(&fleet.replicas[i % REPLICAS]))
                .collect();
            (specs, timing.token_ttl - timing.refresh_ahead)
        }
    };
    let reports = run_workers(runtime, &fleet, &workload, &specs).await?;
    Run::measure(
        sdk,
        label(sdk, mode, n, workload.margin),
        &fleet,
        cycle,
        &workload,
        &reports,
    )
}

/// `1234 of 24000 (45009: 1200, 40001: 34)`.
fn failed(run: &Run) -> String {
    let mut s = format!("{} of {}", run.failed, run.calls);
    if !run.errors.is_empty() {
        let mut errors: Vec<_> = run.errors.iter().collect();
        errors.sort_by(|a, b| b.1.cmp(a.1));
        let list: Vec<String> = errors.iter().map(|(k, n)| format!("{k}: {n}")).collect();
        s.push_str(&format!(" ({})", list.join(", ")));
    }
    s
}

fn rows(run: &Run, mode: Mode) -> Vec<Row> {
    let l = &run.mode;
    let ratio = run.ratio();
    let fetches_met = ratio <= 1.05 || run.fetches <= run.ideal + 1;
    let quota = match run.quota_out {
        Some(d) => format!(
            "ran out {:.1} s after the first fetch ({} fetches refused)",
            d.as_secs_f64(),
            run.fetch_failed.get("45009").copied().unwrap_or(0)
        ),
        None => format!("not exhausted ({} fetches used)", run.fetch_ok),
    };
    let mut rows = vec![
        Row::new(
            SECTION,
            format!(
                "{l}: fetches / ideal (cycle {:.2} s)",
                run.cycle.as_secs_f64()
            ),
            if run.fetches == run.fetch_ok {
                format!("{} / {} = {ratio:.2}", run.fetches, run.ideal)
            } else {
                format!(
                    "{} ({} ok) / {} = {ratio:.2}",
                    run.fetches, run.fetch_ok, run.ideal
                )
            },
        ),
        Row::new(SECTION, format!("{l}: failed uses"), failed(run)),
        Row::new(
            SECTION,
            format!("{l}: uses rejected at the sim"),
            format!(
                "{} (40001: {}, 42001: {})",
                run.rejected, run.uses_invalid, run.uses_expired
            ),
        ),
        Row::new(
            SECTION,
            format!("{l}: max concurrent fetches"),
            run.max_concurrent.to_string(),
        ),
        Row::new(
            SECTION,
            format!("{l}: daily quota ({}/day)", run.daily_quota),
            quota,
        ),
    ];
    // Targets on the wxtoken run only; the direct runs are the reference.
    if mode == Mode::Wxtoken {
        let met = [
            fetches_met,
            run.failed == 0,
            true,
            run.max_concurrent <= 1,
            run.quota_out.is_none(),
        ];
        let targets = ["1.00", "0", "", "1", "not exhausted"];
        rows = rows
            .into_iter()
            .zip(targets.into_iter().zip(met))
            .map(|(row, (t, met))| {
                if t.is_empty() {
                    row
                } else {
                    row.target(t, met)
                }
            })
            .collect();
    }
    rows
}

pub async fn run(quick: bool) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let t = timing();
    let plan = [
        (Sdk::Wechatpy, Mode::Direct),
        (Sdk::Wechatpy, Mode::Wxtoken),
        (Sdk::CoWechatApi, Mode::Direct),
    ];
    tokio::task::spawn_blocking(crate::wxtoken_bin)
        .await
        .context("building wxtoken")?;
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut skipped = serde_json::Map::new();
    let mut failures = serde_json::Map::new();
    let mut runtimes = std::collections::BTreeMap::new();
    for (sdk, mode) in plan {
        let runtime = match runtimes.entry(sdk.name()) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => e.insert(
                tokio::task::spawn_blocking(move || sdk.runtime())
                    .await
                    .context("installing an SDK")?
                    .map_err(|e| format!("{e:#}")),
            ),
        };
        let runtime = match runtime {
            Ok(r) => r.clone(),
            Err(reason) => {
                let what = label(sdk, mode, workers(quick), sdk.scaled_margin(t.token_ttl));
                // The first line says enough for the table; JSON has it all.
                let short = reason.lines().next().unwrap_or_default();
                rows.push(Row::new(SECTION, what.clone(), format!("skipped: {short}")));
                skipped.insert(what, reason.clone().into());
                continue;
            }
        };
        match measure(&runtime, mode, quick).await {
            Ok(run) => {
                rows.extend(self::rows(&run, mode));
                runs.push(run.json());
            }
            // A harness failure of one run (a worker crashed, ran past its
            // deadline) is reported, and the other runs and sections go on.
            Err(e) => {
                let what = label(sdk, mode, workers(quick), sdk.scaled_margin(t.token_ttl));
                let reason = format!("{e:#}");
                let short = reason.lines().next().unwrap_or_default().to_owned();
                rows.push(
                    Row::new(SECTION, what.clone(), format!("failed: {short}"))
                        .target("a completed run", false),
                );
                failures.insert(what, reason.into());
            }
        }
    }
    let json = json!({
        "timing": {
            "token_ttl_s": t.token_ttl.as_secs_f64(),
            "overlap_s": t.overlap.as_secs_f64(),
            "wxtoken_refresh_ahead_s": t.refresh_ahead.as_secs_f64(),
            "wxtoken_replicas": REPLICAS,
            "workers": workers(quick),
            "use_every_ms": PAUSE.as_millis() as u64,
            "duration_s": duration(quick).as_secs_f64(),
            "daily_quota": wechat_sim::SimConfig::default().daily_quota,
        },
        "margins": {
            "scale": t.token_ttl.as_secs_f64() / crate::sdk::REAL_TTL.as_secs_f64(),
            "wechatpy_real_s": Sdk::Wechatpy.real_margin().as_secs_f64(),
            "wechatpy_scaled_ms": Sdk::Wechatpy.scaled_margin(t.token_ttl).as_secs_f64() * 1000.0,
            "co_wechat_api_real_s": Sdk::CoWechatApi.real_margin().as_secs_f64(),
            "co_wechat_api_scaled_ms": Sdk::CoWechatApi.scaled_margin(t.token_ttl).as_secs_f64() * 1000.0,
        },
        "ideal_note": "1 + floor(elapsed since the first fetch / cycle); cycle = token_ttl - the SDK's scaled margin direct, token_ttl - refresh_ahead through wxtoken (whose refresh jitter makes a refresh up to refresh_ahead/10 early)",
        "runs": runs,
        "skipped": skipped,
        "failed": failures,
    });
    Ok((rows, json))
}
