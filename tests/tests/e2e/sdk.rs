//! Issue 5, "prove it" 3: an existing SDK, unchanged. Twenty wechatpy
//! processes (tests/sdk/wechatpy_worker.py) call a real API through wechatpy
//! (`client.misc.get_wechat_ips()` → the sim's `cgi-bin/getcallbackip`) for
//! 60 s, fetching their token from two `wxtoken serve` replicas'
//! WeChat-compatible `GET /cgi-bin/token`. The fleet makes one upstream
//! fetch per refresh cycle and no API use fails.
//!
//! For comparison, the same twenty workers then fetch straight from the
//! simulator, sharing the token through wechatpy's own `RedisStorage` (what
//! wechatpy fleets run today); those figures are printed, not asserted.
//! BENCHMARKS.md records both.
//!
//! JS-SDK tickets the same way: twenty wechatpy processes with their API
//! base pointed at two replicas of an app with `tickets = ["jsapi"]` get
//! the ticket through `client.jsapi.get_jsapi_ticket()` (→ the replicas'
//! `GET /cgi-bin/ticket/getticket`), sign a page with it and have the
//! simulator verify every signature as `wx.config` would. The fleet makes
//! one getticket per ticket life and no signature is refused. The direct
//! alternative (wechatpy's RedisStorage) is measured by the bench's
//! `alternative` section.
//!
//! The workers are driven by `wxtoken_e2e::sdk` (shared with the bench's
//! `alternative` section). The Python environment is `WXTOKEN_SDK_PYTHON`
//! (a python with the packages of tests/sdk/requirements.txt) or a venv
//! created under the target directory (`target/sdk-venv`) with
//! `python3 -m venv` + `pip`.

use std::time::Duration;

use wxtoken_e2e::sdk::{
    Run, Sdk, TicketRun, Work, WorkerReport, WorkerSpec, Workload, run_workers, wait_ready,
};
use wxtoken_e2e::{Fleet, Timing};

const WORKERS: usize = 20;
/// How long each worker calls the API.
const DURATION: Duration = Duration::from_secs(60);
/// Each worker's pause between two API calls.
const PAUSE: Duration = Duration::from_millis(100);

/// Several lifetimes in 60 s. `refresh_ahead` > `overlap`, as in production
/// (10 min and WeChat's 5 min).
fn timing() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(12),
        overlap: Duration::from_secs(3),
        refresh_ahead: Duration::from_secs(4),
        ..Timing::default()
    }
}

/// The harness's own consistency checks of one run.
fn check(run: &Run) {
    assert_eq!(run.calls, run.uses_ok + run.failed);
    assert_eq!(
        run.sim_uses_ok, run.uses_ok,
        "every use a worker counted as ok was accepted by the simulator"
    );
}

/// Measures one run, applies [`check`] and prints its summary.
fn measured(
    sdk: Sdk,
    mode: &str,
    fleet: &Fleet,
    cycle: Duration,
    workload: &Workload,
    reports: &[WorkerReport],
) -> Run {
    let run = Run::measure(sdk, mode, fleet, cycle, workload, reports)
        .unwrap_or_else(|e| panic!("{e:#}"));
    check(&run);
    eprintln!("{}", run.summary());
    run
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_fleet_through_two_replicas_makes_one_fetch_per_lifetime() {
    let _turn = crate::HEAVY.lock().await;
    let sdk = Sdk::Wechatpy;
    let runtime = sdk.runtime().unwrap_or_else(|e| panic!("{e:#}"));
    let timing = timing();
    let workload = Workload {
        duration: DURATION,
        pause: PAUSE,
        margin: sdk.scaled_margin(timing.token_ttl),
        work: Work::Api,
    };

    // Through the coordinator: two replicas, the workers split between them.
    let coordinated = {
        let mut fleet = Fleet::new(timing.clone()).await;
        fleet.spawn_replicas(2);
        fleet.wait_generation(1, Duration::from_secs(15)).await;
        wait_ready(&fleet, Duration::from_secs(20))
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let specs: Vec<WorkerSpec> = (0..WORKERS)
            .map(|i| WorkerSpec::through(&fleet.replicas[i % 2]))
            .collect();
        let reports = run_workers(&runtime, &fleet, &workload, &specs)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        let cycle = timing.token_ttl - timing.refresh_ahead;
        let run = measured(
            sdk,
            "through 2 coordinator replicas",
            &fleet,
            cycle,
            &workload,
            &reports,
        );
        fleet.assert_logs_clean();
        run
    };

    // Today: straight to WeChat (the sim), sharing wechatpy's RedisStorage,
    // on a fresh sim and Redis.
    let direct = {
        let fleet = Fleet::new(timing.clone()).await;
        let specs: Vec<WorkerSpec> = (0..WORKERS).map(|_| WorkerSpec::direct(&fleet)).collect();
        let reports = run_workers(&runtime, &fleet, &workload, &specs)
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        // wechatpy's own cycle: the token's lifetime less its margin.
        let cycle = timing.token_ttl - workload.margin;
        measured(
            sdk,
            "direct, wechatpy RedisStorage",
            &fleet,
            cycle,
            &workload,
            &reports,
        )
    };

    eprintln!(
        "| mode | workers | duration | ideal fetches | upstream fetches | fetches/ideal | API uses ok | failed uses | max concurrent fetches | uses rejected, retried by wechatpy |\n|---|---|---|---|---|---|---|---|---|---|\n{}\n{}",
        coordinated.row(),
        direct.row()
    );

    let c = &coordinated;
    assert!(
        c.fetches.abs_diff(c.ideal) <= 1,
        "upstream fetches {} vs ideal {}",
        c.fetches,
        c.ideal
    );
    assert_eq!(c.max_concurrent, 1, "one upstream fetch at a time");
    assert_eq!(c.failed, 0, "failed API uses: {:?}", c.errors);
    let min_calls = WORKERS as u64 * DURATION.as_secs() * 5;
    assert!(
        c.uses_ok >= min_calls,
        "the workers made too few calls to prove anything: {}",
        c.uses_ok
    );
    // `/cgi-bin/token` answers `expires_in` up to the fleet's refresh (in
    // whole seconds), so workers normally move on before the old token dies
    // one overlap after the refresh. Should a worker still use its cached
    // old token after that (a late refresh), it gets 40001, which wechatpy
    // heals by refetching and retrying: at most one such use per worker per
    // refresh.
    assert!(
        c.rejected <= WORKERS as u64 * c.fetches,
        "{} uses rejected by the sim",
        c.rejected
    );
}

/// How long each ticket worker signs: five ticket lives.
const TICKET_DURATION: Duration = Duration::from_secs(20);

/// Tokens and tickets refreshed on their own schedules: the token every
/// 3.5 s (`token_ttl - refresh_ahead`), the ticket at the end of each 4 s
/// life (WeChat hands out the same ticket until then).
fn ticket_timing() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(6),
        overlap: Duration::from_secs(3),
        refresh_ahead: Duration::from_millis(2500),
        tickets: &["jsapi"],
        ticket_ttl: Duration::from_secs(4),
        ..Timing::default()
    }
}

/// wechatpy's ticket clock ticks scaled like its token margin
/// ([`Work::jsapi_scaled`]): with its own whole seconds against 4 s tickets,
/// `get_jsapi_ticket` keeps a ticket up to a second (a quarter of a life)
/// past the `expires_in` it was told, depending on where the fleet's ticket
/// changes fall within a wall-clock second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_jsapi_fleet_through_two_replicas_makes_one_getticket_per_life() {
    let _turn = crate::HEAVY.lock().await;
    let sdk = Sdk::Wechatpy;
    let runtime = sdk.runtime().unwrap_or_else(|e| panic!("{e:#}"));
    let timing = ticket_timing();
    let workload = Workload {
        duration: TICKET_DURATION,
        pause: PAUSE,
        margin: sdk.scaled_margin(timing.token_ttl),
        work: Work::jsapi_scaled(timing.ticket_ttl),
    };
    let mut fleet = Fleet::new(timing.clone()).await;
    fleet.spawn_replicas(2);
    fleet
        .wait_sim(Duration::from_secs(15), "the fleet's first ticket", |a| {
            a.tickets_issued.get("jsapi").is_some_and(|&n| n >= 1)
        })
        .await;
    wait_ready(&fleet, Duration::from_secs(20))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let specs: Vec<WorkerSpec> = (0..WORKERS)
        .map(|i| WorkerSpec::pointed_at(&fleet.replicas[i % 2]))
        .collect();
    let reports = run_workers(&runtime, &fleet, &workload, &specs)
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    let run = TicketRun::measure(
        "through 2 coordinator replicas",
        &fleet,
        &workload,
        &reports,
    )
    .unwrap_or_else(|e| panic!("{e:#}"));
    eprintln!("{}", run.summary());

    assert_eq!(
        run.ticket_calls, run.tickets_issued,
        "a getticket returned a ticket the fleet already had: it fetched before the \
         simulator's ticket expired (tickets are not renewed ahead; see the replica logs)"
    );
    assert!(
        run.ticket_calls <= run.ideal && run.ticket_calls + 1 >= run.ideal,
        "getticket calls {} vs ideal {} ({:.1} s / {:?} + 1)",
        run.ticket_calls,
        run.ideal,
        run.elapsed.as_secs_f64(),
        run.ticket_ttl
    );
    assert!(
        run.ticket_failed.is_empty(),
        "failed getticket: {:?}",
        run.ticket_failed
    );
    assert_eq!(run.max_concurrent, 1, "one getticket at a time");
    assert_eq!(
        run.refused_total(),
        0,
        "signatures refused: {:?}",
        run.refused
    );
    assert_eq!(
        run.sim_signatures_bad, 0,
        "the simulator refused signatures"
    );
    assert!(
        run.errors.is_empty(),
        "uses without a ticket: {:?}",
        run.errors
    );
    assert_eq!(run.failed(), 0);
    assert_eq!(
        run.sim_signatures_ok, run.signatures_ok,
        "every signature a worker counted as ok was accepted by the simulator"
    );
    assert_eq!(
        run.tickets_unknown, 0,
        "a worker signed with a ticket never issued"
    );
    assert!(
        run.tickets_seen as u64 + 1 >= run.tickets_issued,
        "the workers signed with {} of {} tickets",
        run.tickets_seen,
        run.tickets_issued
    );
    let min_signatures = WORKERS as u64 * TICKET_DURATION.as_secs() * 3;
    assert!(
        run.signatures_ok >= min_signatures,
        "the workers signed too little to prove anything: {}",
        run.signatures_ok
    );
    fleet.assert_logs_clean();
}
