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
//!
//! JS-SDK tickets (6 s, like the tokens; WeChat: both 7200 s), the same
//! workers and duration: each wechatpy worker gets the jsapi ticket through
//! `client.jsapi.get_jsapi_ticket()`, signs a page URL with it every 100 ms
//! and has the simulator verify the signature as `wx.config` would:
//! - direct: token and ticket from the sim, shared through wechatpy's
//!   `RedisStorage` as its docs configure it;
//! - through 2 `wxtoken serve` replicas keeping the app's jsapi ticket
//!   (`tickets = ["jsapi"]`), wechatpy's API base pointed at them.
//!
//! `get_jsapi_ticket` has no margin; its only time constant is its
//! whole-second clock (it keeps a ticket until `int(time.time())` passes
//! the expiry it computed), scaled like the margins: 1 s to 0.8 ms. The
//! ideal is one getticket per ticket life, for any fleet: WeChat hands out
//! the same ticket while it is valid.

use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;

use super::Row;
use crate::sdk::{
    Run, Sdk, TicketRun, Work, WorkerSpec, Workload, run_workers, scaled_tick, wait_ready,
};
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

/// The ticket runs' timings: the efficiency section's, with a jsapi ticket
/// (kept by the fleet through wxtoken) living as long as a token.
fn ticket_timing() -> Timing {
    let t = timing();
    Timing {
        tickets: &["jsapi"],
        ticket_ttl: t.token_ttl,
        ..t
    }
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

/// What one run measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Job {
    /// API calls with the token (`Work::Api`).
    Tokens(Sdk, Mode),
    /// `wx.config` signatures with the jsapi ticket (wechatpy only).
    Tickets(Mode),
}

impl Job {
    fn sdk(self) -> Sdk {
        match self {
            Self::Tokens(sdk, _) => sdk,
            Self::Tickets(_) => Sdk::Wechatpy,
        }
    }

    fn label(self, quick: bool) -> String {
        let t = timing();
        match self {
            Self::Tokens(sdk, mode) => {
                label(sdk, mode, workers(quick), sdk.scaled_margin(t.token_ttl))
            }
            Self::Tickets(mode) => ticket_label(mode, workers(quick)),
        }
    }
}

/// `wechatpy ×20 jsapi ticket, direct, RedisStorage (ticket clock tick 1 s
/// scaled to 0.8 ms)`.
fn ticket_label(mode: Mode, n: usize) -> String {
    let sdk = Sdk::Wechatpy;
    let how = match mode {
        Mode::Direct => format!("direct, {}", sdk.redis_store()),
        Mode::Wxtoken => format!("via {REPLICAS} wxtoken replicas"),
    };
    format!(
        "{} ×{n} jsapi ticket, {how} (ticket clock tick 1 s scaled to {})",
        sdk.name(),
        ms(scaled_tick(ticket_timing().ticket_ttl))
    )
}

/// A fresh fleet for `mode`: through wxtoken, its replicas started and
/// serving their first token.
async fn fleet(timing: Timing, mode: Mode) -> anyhow::Result<Fleet> {
    let mut fleet = Fleet::new(timing).await;
    if mode == Mode::Wxtoken {
        for _ in 0..REPLICAS {
            fleet.spawn_replica_env(SECRET, &[("RUST_LOG", "warn")]);
        }
        first_token(&fleet, Duration::from_secs(15)).await?;
        wait_ready(&fleet, Duration::from_secs(20)).await?;
    }
    Ok(fleet)
}

/// One ticket run on a fresh fleet.
async fn measure_tickets(
    runtime: &crate::sdk::SdkRuntime,
    mode: Mode,
    quick: bool,
) -> anyhow::Result<TicketRun> {
    let timing = ticket_timing();
    let n = workers(quick);
    let workload = Workload {
        duration: duration(quick),
        pause: PAUSE,
        margin: runtime.sdk.scaled_margin(timing.token_ttl),
        work: Work::jsapi_scaled(timing.ticket_ttl),
    };
    let fleet = fleet(timing, mode).await?;
    let specs: Vec<WorkerSpec> = match mode {
        Mode::Direct => (0..n).map(|_| WorkerSpec::direct(&fleet)).collect(),
        Mode::Wxtoken => (0..n)
            .map(|i| WorkerSpec::pointed_at(&fleet.replicas[i % REPLICAS]))
            .collect(),
    };
    let reports = run_workers(runtime, &fleet, &workload, &specs).await?;
    TicketRun::measure(ticket_label(mode, n), &fleet, &workload, &reports)
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
        work: Work::Api,
    };
    let fleet = fleet(timing.clone(), mode).await?;
    let (specs, cycle) = match mode {
        Mode::Direct => {
            let specs: Vec<WorkerSpec> = (0..n).map(|_| WorkerSpec::direct(&fleet)).collect();
            // The SDK's own cycle: the token's lifetime less its margin.
            (specs, timing.token_ttl - workload.margin)
        }
        Mode::Wxtoken => {
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

/// `3 of 2400 (ticket expired: 2, signature mismatch: 1)`, and uses that
/// never got a ticket.
fn refused(run: &TicketRun) -> String {
    let list = |m: &std::collections::BTreeMap<String, u64>| {
        let mut v: Vec<_> = m.iter().collect();
        v.sort_by(|a, b| b.1.cmp(a.1));
        v.iter()
            .map(|(k, n)| format!("{k}: {n}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut s = format!("{} of {}", run.refused_total(), run.signatures);
    if !run.refused.is_empty() {
        s.push_str(&format!(" ({})", list(&run.refused)));
    }
    if !run.errors.is_empty() {
        let n: u64 = run.errors.values().sum();
        s.push_str(&format!("; {n} uses got no ticket ({})", list(&run.errors)));
    }
    s
}

fn ticket_rows(run: &TicketRun, mode: Mode) -> Vec<Row> {
    let l = &run.mode;
    let ratio = run.ratio();
    let calls_met = run.ticket_calls == run.tickets_issued && run.ticket_calls <= run.ideal;
    let quota_out = run.ticket_failed.get("45009").copied().unwrap_or(0);
    let quota = if quota_out > 0 {
        format!("ran out ({quota_out} getticket calls refused)")
    } else {
        format!("not exhausted ({} used)", run.ticket_calls)
    };
    let rows = vec![
        Row::new(
            SECTION,
            format!(
                "{l}: getticket calls / ideal (ticket life {:.0} s)",
                run.ticket_ttl.as_secs_f64()
            ),
            {
                let mut v = format!(
                    "{} ({} new tickets) / {} = {ratio:.2}",
                    run.ticket_calls, run.tickets_issued, run.ideal
                );
                if run.ticket_token_rejected > 0 {
                    v.push_str(&format!(
                        "; {} more refused for a dead token",
                        run.ticket_token_rejected
                    ));
                }
                v
            },
        ),
        Row::new(SECTION, format!("{l}: signatures refused"), refused(run)),
        Row::new(
            SECTION,
            format!("{l}: max concurrent getticket"),
            run.max_concurrent.to_string(),
        ),
        Row::new(
            SECTION,
            format!("{l}: getticket quota ({}/day)", run.ticket_quota),
            quota,
        ),
        Row::new(
            SECTION,
            format!("{l}: longest get_jsapi_ticket()"),
            ms(run.max_ticket_wait),
        ),
        Row::new(
            SECTION,
            format!("{l}: upstream token fetches"),
            format!(
                "{} ({} by wechatpy)",
                run.token_fetches, run.sdk_token_fetches
            ),
        ),
    ];
    // Targets on the wxtoken run only; the direct run is the reference.
    if mode != Mode::Wxtoken {
        return rows;
    }
    let targets = [
        ("1.00, each a new ticket", calls_met),
        ("0", run.failed() == 0),
        ("1", run.max_concurrent <= 1),
        ("not exhausted", quota_out == 0),
        ("", true),
        ("", true),
    ];
    rows.into_iter()
        .zip(targets)
        .map(|(row, (t, met))| {
            if t.is_empty() {
                row
            } else {
                row.target(t, met)
            }
        })
        .collect()
}

pub async fn run(quick: bool) -> anyhow::Result<(Vec<Row>, serde_json::Value)> {
    let t = timing();
    let plan = [
        Job::Tokens(Sdk::Wechatpy, Mode::Direct),
        Job::Tokens(Sdk::Wechatpy, Mode::Wxtoken),
        Job::Tokens(Sdk::CoWechatApi, Mode::Direct),
        Job::Tickets(Mode::Direct),
        Job::Tickets(Mode::Wxtoken),
    ];
    tokio::task::spawn_blocking(crate::wxtoken_bin)
        .await
        .context("building wxtoken")?;
    let mut rows = Vec::new();
    let mut runs = Vec::new();
    let mut ticket_runs = Vec::new();
    let mut skipped = serde_json::Map::new();
    let mut failures = serde_json::Map::new();
    let mut runtimes = std::collections::BTreeMap::new();
    for job in plan {
        let sdk = job.sdk();
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
                let what = job.label(quick);
                // The first line says enough for the table; JSON has it all.
                let short = reason.lines().next().unwrap_or_default();
                rows.push(Row::new(SECTION, what.clone(), format!("skipped: {short}")));
                skipped.insert(what, reason.clone().into());
                continue;
            }
        };
        let measured = match job {
            Job::Tokens(_, mode) => measure(&runtime, mode, quick).await.map(|run| {
                rows.extend(self::rows(&run, mode));
                runs.push(run.json());
            }),
            Job::Tickets(mode) => measure_tickets(&runtime, mode, quick).await.map(|run| {
                rows.extend(ticket_rows(&run, mode));
                ticket_runs.push(run.json());
            }),
        };
        match measured {
            Ok(()) => {}
            // A harness failure of one run (a worker crashed, ran past its
            // deadline) is reported, and the other runs and sections go on.
            Err(e) => {
                let what = job.label(quick);
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
        "tickets": {
            "ticket_ttl_s": ticket_timing().ticket_ttl.as_secs_f64(),
            "wechatpy_tick_real_s": 1.0,
            "wechatpy_tick_scaled_ms": scaled_tick(ticket_timing().ticket_ttl).as_secs_f64() * 1000.0,
            "ideal_note": "1 + floor(elapsed since the first ticket was minted / ticket_ttl): WeChat hands out the same ticket while it is valid",
            "runs": ticket_runs,
        },
        "skipped": skipped,
        "failed": failures,
    });
    Ok((rows, json))
}
