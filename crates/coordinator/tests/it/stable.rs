//! Scenario 10: `api = "stable_token"` uses normal mode only, refreshing
//! inside WeChat's renew window so every call yields a new token; the one
//! exception is a reported-invalid token that normal mode still returns.

use std::time::Duration;

use wechat_sim::TokenSource;
use wxtoken_client::keyspace::Invalidation;

use crate::fleet::{Fleet, Settings, watch_reads};

fn stable() -> Settings {
    Settings {
        api: "stable_token",
        token_ttl: Duration::from_secs(5),
        overlap: Duration::from_secs(2),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_replicas_on_stable_token_never_force_refresh() {
    let settings = stable();
    let cycle = settings.cycle();
    let fleet = Fleet::start(settings, 8).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (reads, app) = tokio::join!(
        watch_reads(&fleet, cycle * 4, Duration::from_millis(50)),
        fleet.wait_sim(cycle * 8, "5 stable fetches", |a| a.stable_fetch_ok >= 5)
    );
    assert_eq!(app.force_refreshes, 0);
    assert_eq!(app.fetch_calls, app.stable_fetch_ok, "every call succeeded");
    assert_eq!(app.max_concurrent_fetches, 1);
    let issued: Vec<_> = app
        .issued
        .iter()
        .filter(|t| t.source == TokenSource::StableToken)
        .collect();
    assert_eq!(
        issued.len() as u64,
        app.stable_fetch_ok,
        "every call returned a new token"
    );
    assert_eq!(reads.2, 0, "no reader got a rejected token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reported_invalid_token_that_normal_mode_returns_is_force_refreshed_once() {
    let settings = Settings {
        token_ttl: Duration::from_secs(20),
        ..stable()
    };
    let fleet = Fleet::start(settings, 4).await;
    let reported = fleet.wait_generation(1, Duration::from_secs(5)).await;
    // WeChat cut the token off (normal mode keeps returning it regardless).
    assert!(fleet.sim.revoke(&reported.value));
    let r = fleet
        .store
        .report(&fleet.id(), &reported.value)
        .await
        .unwrap();
    assert_eq!(
        r,
        Invalidation::Reported {
            generation: reported.generation
        }
    );
    let fresh = fleet
        .wait_generation(reported.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(fresh.value, reported.value);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = fleet.app();
    assert_eq!(app.force_refreshes, 1);
    assert_eq!(app.fetch_calls, 3, "initial, normal (same token), forced");
}
