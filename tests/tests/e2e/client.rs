//! The client library against real coordinator processes and wechat-sim
//! (issue 4): coherence under refreshes, propagation latency, Redis loss,
//! the 40001-healing call helper, and a cut event link.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::future::join_all;
use secrecy::SecretString;
use wechat_sim::TokenState;
use wxtoken_client::wechat::Api;
use wxtoken_client::{ClientError, TokenClient};
use wxtoken_coordinator::store::{Commit, CommitArgs, LockOwner, TokenStore};
use wxtoken_e2e::{APPID, Fleet, ID, Timing};
use wxtoken_testkit::{FaultProxy, ProxyMode};

fn fast() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(3),
        overlap: Duration::from_secs(1),
        refresh_ahead: Duration::from_millis(1500),
        lock_ttl: Duration::from_millis(1000),
        upstream_timeout: Duration::from_millis(400),
        ..Timing::default()
    }
}

/// Uses `token` against the sim's use endpoint over HTTP: true when accepted.
async fn use_token(http: &reqwest::Client, base: &str, token: &str) -> bool {
    let reply: serde_json::Value = http
        .get(format!("{base}/cgi-bin/getcallbackip"))
        .query(&[("access_token", token)])
        .send()
        .await
        .expect("sim answers")
        .json()
        .await
        .expect("json");
    reply.get("errcode").and_then(|c| c.as_i64()).unwrap_or(0) == 0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_readers_across_twenty_refreshes_never_use_a_rejected_token() {
    let mut fleet = Fleet::new(fast()).await;
    fleet.spawn_replicas(2);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    // Four "services", fifty readers each.
    let mut clients = Vec::new();
    for _ in 0..4 {
        let c = fleet.client_builder().connect().await.expect("client");
        assert!(c.wait_events_up(Duration::from_secs(5)).await);
        clients.push(c);
    }
    let base = fleet.sim.base_url();
    let http = reqwest::Client::new();
    let stop = Arc::new(AtomicU64::new(0));
    let (uses, rejected, errors) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let readers: Vec<_> = (0..200)
        .map(|i| {
            let (client, http, base) = (clients[i % 4].clone(), http.clone(), base.clone());
            let (stop, uses, rejected, errors) =
                (stop.clone(), uses.clone(), rejected.clone(), errors.clone());
            tokio::spawn(async move {
                while stop.load(Ordering::Relaxed) == 0 {
                    match client.access_token(ID).await {
                        Ok(t) => {
                            uses.fetch_add(1, Ordering::Relaxed);
                            if !use_token(&http, &base, t.value()).await {
                                rejected.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        Err(_) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            })
        })
        .collect();
    let cycle = fleet.timing.token_ttl - fleet.timing.refresh_ahead;
    let app = fleet
        .wait_sim(cycle * 26, "21 tokens", |a| a.fetch_ok >= 21)
        .await;
    stop.store(1, Ordering::Relaxed);
    join_all(readers).await;
    let (uses, rejected, errors) = (
        uses.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed),
        errors.load(Ordering::Relaxed),
    );
    eprintln!(
        "200 readers, 20 refreshes: {uses} uses, {rejected} rejected, {errors} errors; {} fetches",
        app.fetch_calls
    );
    assert!(uses > 5_000, "readers ran: {uses}");
    assert_eq!(rejected, 0, "a reader used a token WeChat rejected");
    assert_eq!(errors, 0, "a reader got no token");
    assert_eq!(app.fetch_calls, app.fetch_ok);
    fleet.assert_logs_clean();
}

/// Acts as a coordinator: lock, begin, commit a made-up token; returns the
/// generation and the instant the commit returned.
async fn commit(store: &TokenStore, n: u64) -> (u64, Instant) {
    let id = wxtoken_common::CredentialRef::token(wxtoken_common::CredentialId::parse(ID).unwrap());
    let owner = LockOwner::new("timer");
    assert!(
        store
            .try_lock(&id, &owner, Duration::from_secs(5))
            .await
            .unwrap()
    );
    let grant = store.begin(&id, &owner).await.unwrap().expect("granted");
    let token = SecretString::from(format!("PROPAGATION_TOKEN_{n}"));
    let done = store
        .commit(
            &id,
            &grant,
            &owner,
            &CommitArgs::token(&token, Duration::from_secs(60), "timer", "token"),
        )
        .await
        .unwrap();
    let at = Instant::now();
    let Commit::Stored { generation, .. } = done else {
        panic!("{done:?}")
    };
    (generation, at)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn propagation_from_commit_to_every_client_cache_is_measured() {
    let fleet = Fleet::new(Timing::default()).await;
    let store = fleet.store();
    let mut clients = Vec::new();
    for _ in 0..10 {
        let c = fleet.client_builder().connect().await.expect("client");
        assert!(c.wait_events_up(Duration::from_secs(5)).await);
        clients.push(c);
    }
    commit(&store, 0).await;
    for c in &clients {
        c.access_token(ID)
            .await
            .expect("first read fills the cache");
    }
    let mut samples = Vec::new();
    for n in 1..=50 {
        let (generation, committed) = commit(&store, n).await;
        let mut pending: Vec<&TokenClient> = clients.iter().collect();
        while !pending.is_empty() {
            pending.retain(|c| {
                let seen = c.cached(ID).is_some_and(|t| t.generation() >= generation);
                if seen {
                    samples.push(committed.elapsed());
                }
                !seen
            });
            assert!(
                committed.elapsed() < Duration::from_secs(5),
                "not propagated within 5 s"
            );
            tokio::time::sleep(Duration::from_micros(100)).await;
        }
    }
    samples.sort();
    let pct = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    eprintln!(
        "propagation commit → cache, 10 clients × 50 commits: p50 {:?}, p99 {:?}, max {:?}",
        pct(0.50),
        pct(0.99),
        samples[samples.len() - 1]
    );
    assert_eq!(samples.len(), 500);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_serves_the_cached_token_until_expiry_then_unavailable_then_recovers() {
    let timing = Timing {
        token_ttl: Duration::from_secs(8),
        ..Timing::default()
    };
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(2);
    let client = fleet
        .client_builder()
        .max_staleness(Duration::from_millis(500))
        .expiry_margin(Duration::from_millis(200))
        .token_wait(Duration::from_millis(500))
        .connect()
        .await
        .unwrap();
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    let before = client.access_token(ID).await.unwrap();
    fleet.redis.stop();
    let stopped = Instant::now();
    // Reads keep succeeding, with the same token, until its real expiry.
    let mut last_ok = stopped;
    let unavailable = loop {
        match client.access_token(ID).await {
            Ok(t) => {
                assert_eq!(t.value(), before.value());
                assert!(Instant::now() < before.expires_at(), "served past expiry");
                last_ok = Instant::now();
            }
            Err(e) => break e,
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(15),
            "never became unavailable"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(
        matches!(unavailable, ClientError::Unavailable { .. }),
        "{unavailable}"
    );
    let served_for = last_ok - stopped;
    let had_left = before.expires_at() - stopped;
    eprintln!("redis down: served the cached token {served_for:?} of the {had_left:?} it had left");
    assert!(
        served_for + Duration::from_millis(500) >= had_left,
        "gave up early"
    );
    // Redis comes back (empty, after ~10 s down): the fleet refills, the client recovers by itself.
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(stopped.elapsed())).await;
    fleet.redis.start().expect("redis back");
    let recovered = wxtoken_testkit::wait_until_async(
        Duration::from_secs(15),
        Duration::from_millis(100),
        || async { client.access_token(ID).await.is_ok() },
    )
    .await;
    assert!(recovered, "client did not recover");
    let after = client.access_token(ID).await.unwrap();
    assert_ne!(after.value(), before.value());
    assert_eq!(fleet.sim.token_state(after.value()), TokenState::Valid);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_call_helper_heals_a_third_party_refresh_for_fifty_callers_with_one_fetch() {
    let timing = Timing {
        token_ttl: Duration::from_secs(30),
        overlap: Duration::from_secs(1),
        ..Timing::default()
    };
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(2);
    let client = fleet.client_builder().connect().await.unwrap();
    assert!(client.wait_events_up(Duration::from_secs(5)).await);
    let ours = client.access_token(ID).await.unwrap();
    fleet.sim.external_refresh(APPID).expect("third party");
    let dead =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            fleet.sim.token_state(ours.value()) != TokenState::Valid
        });
    assert!(dead);
    let fetches_before = fleet.app().fetch_calls;
    let api = Api::new(client.clone(), &fleet.sim.base_url()).unwrap();
    let calls = join_all((0..50).map(|_| api.get(ID, "/cgi-bin/getcallbackip", &[]))).await;
    let failed: Vec<_> = calls.iter().filter_map(|r| r.as_ref().err()).collect();
    assert!(failed.is_empty(), "{failed:?}");
    assert!(
        calls
            .iter()
            .all(|r| r.as_ref().is_ok_and(|v| v.get("ip_list").is_some()))
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        fleet.app().fetch_calls,
        fetches_before + 1,
        "exactly one refresh for 50 callers"
    );
    assert!(fleet.app().uses_invalid >= 1);
    fleet.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_event_link_still_revalidates_within_max_staleness() {
    let fleet = Fleet::new(Timing::default()).await;
    let store = fleet.store();
    let proxy = FaultProxy::spawn(fleet.redis.addr()).await;
    let max_staleness = Duration::from_millis(800);
    let ping = Duration::from_millis(300);
    let client = fleet
        .client_builder()
        .events_url(proxy.url_for_redis())
        .max_staleness(max_staleness)
        .ping_interval(ping)
        .connect()
        .await
        .unwrap();
    assert!(client.wait_events_up(Duration::from_secs(5)).await);
    commit(&store, 1).await;
    let first = client.access_token(ID).await.unwrap();
    // With events flowing, a commit reaches the cache at once.
    let (g2, _) = commit(&store, 2).await;
    assert!(wxtoken_testkit::wait_until(
        Duration::from_secs(1),
        Duration::from_millis(5),
        || client.cached(ID).is_some_and(|t| t.generation() >= g2)
    ));
    assert!(first.generation() < g2);
    // Cut the event link: the commit's event is lost.
    proxy.set_mode(ProxyMode::Blackhole);
    let (g3, committed) = commit(&store, 3).await;
    let seen = loop {
        let t = client.access_token(ID).await.unwrap();
        if t.generation() >= g3 {
            break committed.elapsed();
        }
        assert!(
            committed.elapsed() < Duration::from_secs(5),
            "never revalidated"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let bound = max_staleness + ping * 2 + Duration::from_millis(300);
    eprintln!("event link cut: new generation seen {seen:?} after the commit (bound {bound:?})");
    assert!(seen <= bound, "{seen:?} > {bound:?}");
    assert!(!client.events_up(), "the dead link was noticed");
    proxy.set_mode(ProxyMode::Pass);
    assert!(
        client.wait_events_up(Duration::from_secs(5)).await,
        "subscription came back"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_that_finds_no_token_asks_the_fleet_and_gets_one() {
    let timing = Timing {
        token_ttl: Duration::from_secs(60),
        ..Timing::default()
    };
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(2);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    // Someone flushes Redis. The replicas' subscriptions stay up, so nothing
    // tells them; their next scheduled refresh is ~57 s away.
    let mut conn = fleet.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    let client = fleet
        .client_builder()
        .token_wait(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    assert!(client.wait_events_up(Duration::from_secs(5)).await);
    let asked = Instant::now();
    let token = client
        .access_token(ID)
        .await
        .expect("the fleet refilled on request");
    eprintln!("refill on a reader's request took {:?}", asked.elapsed());
    assert!(asked.elapsed() < Duration::from_secs(5));
    assert_eq!(fleet.sim.token_state(token.value()), TokenState::Valid);
    assert_eq!(fleet.app().fetch_calls, 2, "one refill");
}

/// Regression (found by the chaos runner): after Redis loses its data the
/// fleet's generations must keep rising, or a client that saw generation N
/// refuses every newer token as "older" and waits forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generations_keep_rising_across_redis_data_loss() {
    let timing = Timing {
        token_ttl: Duration::from_secs(60),
        ..Timing::default()
    };
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(2);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    let client = fleet.client_builder().connect().await.unwrap();
    assert!(client.wait_events_up(Duration::from_secs(5)).await);
    let before = client.access_token(ID).await.unwrap();
    let mut conn = fleet.conn().await;
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.unwrap();
    // A third party kills our token; the service reports it and waits.
    fleet.sim.external_refresh(APPID).unwrap();
    client.invalidate(ID, before.value()).await.unwrap();
    let after = client
        .wait_for_newer(ID, before.generation(), Duration::from_secs(10))
        .await
        .expect("a newer token after the data loss");
    assert!(after.generation() > before.generation());
    assert_ne!(after.value(), before.value());
    assert_eq!(fleet.sim.token_state(after.value()), TokenState::Valid);
    assert_eq!(
        client.access_token(ID).await.unwrap().value(),
        after.value()
    );
}
