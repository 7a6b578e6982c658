//! Scenario 1: many replicas, one upstream call per token lifetime.

use std::time::Duration;

use crate::fleet::{Fleet, Settings, watch_reads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_replicas_cold_start_make_exactly_one_fetch() {
    let fleet = Fleet::start(Settings::default(), 8).await;
    let token = fleet.wait_generation(1, Duration::from_secs(5)).await;
    // Give every replica time to wake, see the token and go back to sleep.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 1, "cold start of 8 replicas");
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!(
        fleet.sim.token_state(&token.value),
        wechat_sim::TokenState::Valid
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_lifetimes_cost_ten_fetches_and_readers_never_see_a_bad_token() {
    let settings = Settings::default();
    let cycle = settings.cycle();
    let mut fleet = Fleet::start(settings.clone(), 8).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let lifetimes = 10;
    let deadline = cycle * (lifetimes + 3);
    let (reads, app) = tokio::join!(
        watch_reads(&fleet, cycle * lifetimes, Duration::from_millis(50)),
        fleet.wait_sim(deadline, "11 fetches", |a| a.fetch_ok
            > u64::from(lifetimes))
    );
    let (read_count, missing, rejected) = reads;
    fleet.stop_all().await;
    eprintln!(
        "single-flight: {} fetches for {} lifetimes, max concurrent {}, {} reads ({} missing, {} rejected)",
        app.fetch_calls,
        lifetimes + 1,
        app.max_concurrent_fetches,
        read_count,
        missing,
        rejected
    );
    assert_eq!(app.fetch_calls, app.fetch_ok, "no failed or wasted calls");
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!(missing, 0, "a reader found no token");
    assert_eq!(rejected, 0, "a reader got a token WeChat rejects");
    // Every refresh came one cycle after the previous one: never early (that
    // would be a wasted call), never after expiry (that would be a gap).
    let issued: Vec<u64> = app.issued.iter().map(|t| t.issued_at_ms).collect();
    for pair in issued.windows(2) {
        let gap = Duration::from_millis(pair[1] - pair[0]);
        assert!(
            gap >= cycle.mul_f64(0.85),
            "refreshed too early: {gap:?} < cycle {cycle:?}"
        );
        assert!(gap < settings.token_ttl, "refreshed after expiry: {gap:?}");
    }
}
