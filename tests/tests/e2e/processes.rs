//! Scenario 1 with processes: eight `wxtoken serve` processes make one
//! upstream call at cold start and one per token lifetime.

use std::time::Duration;

use wxtoken_e2e::{Fleet, Timing, watch_reads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_make_one_fetch_per_token_lifetime() {
    let timing = Timing::default();
    let cycle = timing.token_ttl - timing.refresh_ahead;
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(8);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.app().fetch_calls, 1, "cold start of 8 processes");
    let (reads, app) = tokio::join!(
        watch_reads(&fleet, cycle * 3, Duration::from_millis(50)),
        fleet.wait_sim(cycle * 6, "4 tokens", |a| a.fetch_ok >= 4)
    );
    eprintln!(
        "8 processes: {} fetches for 4 lifetimes, reads {reads:?}",
        app.fetch_calls
    );
    assert_eq!(app.fetch_calls, 4);
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!((reads.1, reads.2), (0, 0), "missing / rejected reads");
    fleet.assert_logs_clean();
}
