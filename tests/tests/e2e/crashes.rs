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
    let _turn = crate::HEAVY.lock().await;
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
    // Woken, the stalled replica either gives up (its call timed out) or
    // gets its reply and finds a newer token stored: WeChat issued its token
    // (which may cut the stored one off after the overlap), so it asks the
    // fleet to replace the stored token, counted as a stale fetch. Either
    // way the stored token ends as the newest WeChat issued, and valid.
    let until = std::time::Instant::now() + Duration::from_secs(8);
    let (stored, newest) = loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stored = fleet.token().await.expect("token");
        let newest = fleet
            .app()
            .issued
            .iter()
            .max_by_key(|t| t.issued_at_ms)
            .expect("issued")
            .token
            .clone();
        if stored.value == newest || std::time::Instant::now() > until {
            break (stored, newest);
        }
    };
    let app = fleet.app();
    let logs = fleet.replicas[stalled].logs();
    let stale = logs.contains("replacing the stored value");
    eprintln!(
        "SIGSTOP: stored generation {} (stalled replica {holder}, stale fetch: {stale}), {} fetches",
        stored.generation, app.fetch_calls
    );
    assert!(stored.generation >= newer.generation);
    assert_eq!(
        stored.value, newest,
        "the stored token is the newest the sim issued"
    );
    assert_eq!(
        fleet.sim.token_state(&stored.value),
        wechat_sim::TokenState::Valid
    );
    assert!(
        stale || logs.contains("upstream fetch failed") || logs.contains("lock nearly expired"),
        "the stalled replica noticed it lost: {logs}"
    );
    if stale {
        let metrics = reqwest::get(format!("http://{}/metrics", fleet.replicas[stalled].http))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics
                .lines()
                .any(|l| l.starts_with("wxtoken_stale_fetches_total{") && !l.ends_with(" 0")),
            "the stale fetch is counted"
        );
        assert_eq!(
            app.fetch_calls, 4,
            "one extra call replaced the cut-off token"
        );
    }
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

/// A holder whose commit is held up past its lock (its link to Redis
/// partitioned right after WeChat issued its token) finds a newer token
/// stored. Its own fetch cut that one off at WeChat, so it asks the fleet to
/// replace it: one extra call, counted in `wxtoken_stale_fetches_total`,
/// and the token readers get is WeChat's newest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_holder_whose_commit_comes_too_late_gets_the_stored_token_replaced() {
    let mut fleet = Fleet::new(Timing::default()).await;
    let proxy = wxtoken_testkit::FaultProxy::spawn(fleet.redis.addr()).await;
    let via_proxy = proxy.url_for_redis();
    fleet.spawn_replica_env(
        wxtoken_e2e::SECRET,
        &[
            ("WXTOKEN__REDIS__URL", via_proxy.as_str()),
            ("WXTOKEN__REDIS__COMMAND_TIMEOUT", "8s"),
        ],
    );
    let late = fleet.replicas[0].replica_id.clone();
    fleet.spawn_replicas(1);
    let mut generation = fleet
        .wait_generation(1, Duration::from_secs(10))
        .await
        .generation;
    // Wait for a refresh whose lock holder is the proxied replica.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        fleet.sim.set_faults(Faults {
            delay: Some(Duration::from_millis(400)),
            remaining: Some(1),
            ..Faults::default()
        });
        let holder = holder_mid_fetch(&fleet).await;
        if holder == late {
            break;
        }
        generation = fleet
            .wait_generation(generation + 1, Duration::from_secs(10))
            .await
            .generation;
        assert!(
            Instant::now() < deadline,
            "the proxied replica never held the lock"
        );
    }
    // Its token is issued; its commit waits behind the partition while its
    // lock lapses and the other replica refreshes.
    proxy.set_mode(wxtoken_testkit::ProxyMode::Blackhole);
    let calls_before = fleet.app().fetch_calls;
    let newer = fleet
        .wait_generation(generation + 1, Duration::from_secs(10))
        .await;
    proxy.set_mode(wxtoken_testkit::ProxyMode::Pass);
    let until = Instant::now() + Duration::from_secs(10);
    let stored = loop {
        let stored = fleet.token().await.expect("token");
        if stored.generation > newer.generation || Instant::now() > until {
            break stored;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let app = fleet.app();
    let newest = app
        .issued
        .iter()
        .max_by_key(|t| t.issued_at_ms)
        .expect("issued")
        .token
        .clone();
    eprintln!(
        "late commit: {} calls since the partition, stored generation {} after {}",
        app.fetch_calls - calls_before,
        stored.generation,
        newer.generation
    );
    assert!(
        stored.generation > newer.generation,
        "the cut-off token was not replaced"
    );
    assert_eq!(stored.value, newest);
    assert_eq!(
        fleet.sim.token_state(&stored.value),
        wechat_sim::TokenState::Valid
    );
    // The other replica's refresh, and one call to replace the token the
    // late holder's fetch cut off.
    assert_eq!(app.fetch_calls - calls_before, 2);
    let logs = fleet.replicas[0].logs();
    assert!(logs.contains("replacing the stored value"), "{logs}");
    let metrics = reqwest::get(format!("http://{}/metrics", fleet.replicas[0].http))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("wxtoken_stale_fetches_total{") && l.ends_with(" 1")),
        "stale fetch counted"
    );
    fleet.assert_logs_clean();
}
