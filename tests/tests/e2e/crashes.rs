//! Scenarios 2 and 3 with real processes: SIGKILL of the lock holder in the
//! middle of its upstream call, SIGSTOP of a refresher past its lock, and
//! SIGTERM's release-and-exit.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wechat_sim::Faults;
use wxtoken_e2e::{Fleet, Timing, watch_reads};

/// Waits until a replica's fetch is in flight at the sim, then returns the
/// id of the replica holding the lock.
async fn holder_mid_fetch(fleet: &Fleet) -> String {
    fleet
        .wait_sim(Duration::from_secs(10), "a fetch in flight", |a| {
            a.concurrent_fetches == 1
        })
        .await;
    let owner = fleet
        .lock_owner()
        .await
        .expect("the fetching replica holds the lock");
    owner
        .split(':')
        .next()
        .expect("owner is replica:nonce")
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_the_lock_holder_mid_fetch_hands_the_refresh_to_another_replica() {
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replicas(3);
    let first = fleet.wait_generation(1, Duration::from_secs(10)).await;
    // The next fetch is answered slowly: the holder is mid-fetch for a while.
    fleet.sim.set_faults(Faults {
        delay: Some(Duration::from_millis(1000)),
        remaining: Some(1),
        ..Faults::default()
    });
    let reader = watch_reads(
        &fleet,
        fleet.timing.token_ttl * 2,
        Duration::from_millis(50),
    );
    let chaos = async {
        let holder = holder_mid_fetch(&fleet).await;
        let killed_at = Instant::now();
        fleet
            .replicas
            .iter()
            .find(|r| r.replica_id == holder)
            .expect("known replica")
            .signal(Signal::SIGKILL);
        let next = fleet
            .wait_generation(first.generation + 1, Duration::from_secs(10))
            .await;
        let took = killed_at.elapsed();
        assert_eq!(
            fleet.sim.token_state(&next.value),
            wechat_sim::TokenState::Valid
        );
        (holder, took, next)
    };
    let ((reads, missing, rejected), (holder, took, next)) = tokio::join!(reader, chaos);
    let meta_by = fleet.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&meta_by.stdout).expect("status json");
    let fetched_by = status[0]["fetched_by"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    eprintln!(
        "SIGKILL mid-fetch: next token {took:?} after the kill, by {fetched_by}; reads {reads} ({missing} missing, {rejected} rejected)"
    );
    assert_ne!(fetched_by, holder, "the killed replica did not commit");
    assert!(
        took >= fleet.timing.lock_ttl.mul_f64(0.5),
        "refreshed before the dead holder's lock lapsed?"
    );
    assert_eq!((missing, rejected), (0, 0), "readers never lost the token");
    assert!(next.generation > first.generation);
    assert_eq!(fleet.app().max_concurrent_fetches, 1);
    fleet.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigstopped_refresher_cannot_overwrite_the_newer_token() {
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replicas(3);
    let first = fleet.wait_generation(1, Duration::from_secs(10)).await;
    // The stalled replica's token is issued, then its reply waits 300 ms.
    fleet.sim.set_faults(Faults {
        delay: Some(Duration::from_millis(300)),
        remaining: Some(1),
        ..Faults::default()
    });
    let holder = holder_mid_fetch(&fleet).await;
    let stalled = fleet
        .replicas
        .iter()
        .position(|r| r.replica_id == holder)
        .expect("known");
    fleet.replicas[stalled].signal(Signal::SIGSTOP);
    // Its lock lapses; another replica refreshes.
    let newer = fleet
        .wait_generation(first.generation + 2, Duration::from_secs(10))
        .await;
    fleet.replicas[stalled].signal(Signal::SIGCONT);
    // Give the stalled replica time to wake up and try its commit.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let stored = fleet.token().await.expect("token");
    let app = fleet.app();
    let newest = app
        .issued
        .iter()
        .max_by_key(|t| t.issued_at_ms)
        .expect("issued")
        .token
        .clone();
    eprintln!(
        "SIGSTOP: stored generation {} (stalled replica {holder}), {} fetches",
        stored.generation, app.fetch_calls
    );
    assert_eq!(
        stored.value, newer.value,
        "the newer token was not overwritten"
    );
    assert_eq!(
        stored.value, newest,
        "the stored token is the newest the sim issued"
    );
    assert_eq!(
        fleet.sim.token_state(&stored.value),
        wechat_sim::TokenState::Valid
    );
    let logs = fleet.replicas[stalled].logs();
    assert!(
        logs.contains("not stored")
            || logs.contains("upstream fetch failed")
            || logs.contains("lock nearly expired"),
        "the stalled replica noticed it lost: {logs}"
    );
    fleet.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_fetch_releases_the_lock_and_exits_zero_within_5s() {
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replicas(2);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    fleet.sim.set_faults(Faults {
        delay: Some(Duration::from_millis(2000)),
        remaining: Some(1),
        ..Faults::default()
    });
    let holder = holder_mid_fetch(&fleet).await;
    let replica = fleet.replica(&holder).expect("known");
    let asked = Instant::now();
    replica.signal(Signal::SIGTERM);
    let status = replica.wait_exit(Duration::from_secs(6)).expect("exited");
    let took = asked.elapsed();
    eprintln!("SIGTERM mid-fetch: exit {status} after {took:?}");
    assert!(status.success(), "exit status {status}");
    assert!(took < Duration::from_secs(5), "took {took:?}");
    let owner = fleet.lock_owner().await;
    assert!(
        !owner.is_some_and(|o| o.starts_with(&format!("{holder}:"))),
        "lock left behind"
    );
    fleet.assert_logs_clean();
}
