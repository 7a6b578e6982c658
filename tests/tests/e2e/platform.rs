//! The open platform with `wxtoken serve` processes (issue 14): five
//! replicas keep a component and 1000 authorizers registered by pushes, at
//! one `api_authorizer_token` per life each; Redis then loses everything
//! twice (FLUSHALL, a restart without persistence) and the fleet rebuilds
//! every authorizer from `api_get_authorizer_list` — no merchant
//! authorizes again, no refresh token is lost, revoked ones stay out — and
//! no secret of the chain reaches a log.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wechat_sim::{Forgery, PushOutcome, TokenState};
use wxtoken_e2e::{COMPONENT, COMPONENT_APPID, Fleet, Timing};

const AUTHORIZERS: usize = 1000;

fn appid(n: usize) -> String {
    format!("wx{:016x}", 0xe2e0_0000_u64 + n as u64)
}

/// What the watcher task needs of the fleet: its Redis and key prefix.
struct FleetRef {
    client: redis::Client,
    keys: wxtoken_common::Keys,
}

impl FleetRef {
    fn of(fleet: &Fleet) -> Self {
        Self {
            client: fleet.redis.client(),
            keys: wxtoken_common::Keys::new(&fleet.prefix).unwrap(),
        }
    }

    async fn has_token(&self, c: &mut redis::aio::MultiplexedConnection, appid: &str) -> bool {
        let id = wxtoken_common::CredentialId::parse(&format!("{COMPONENT}.{appid}")).unwrap();
        redis::cmd("EXISTS")
            .arg(self.keys.access_token(&id))
            .query_async::<bool>(c)
            .await
            .unwrap_or(false)
    }
}

/// Polls until every one of `appids` has a stored token WeChat accepts.
async fn all_served(fleet: &Fleet, appids: &[String], deadline: Duration, what: &str) -> Duration {
    let started = Instant::now();
    let mut pending: Vec<&String> = appids.iter().collect();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for a in pending {
            match fleet.value_of(&format!("{COMPONENT}.{a}")).await {
                Some(t) if fleet.sim.token_state(&t.value) == TokenState::Valid => {}
                _ => still.push(a),
            }
        }
        pending = still;
        if started.elapsed() >= deadline {
            let logs = fleet.all_logs();
            let interesting: Vec<&str> = logs
                .lines()
                .filter(|l| l.contains("WARN") || l.contains("INFO"))
                .filter(|l| {
                    !l.contains("push accepted")
                        && !l.contains("registered")
                        && !l.contains("refreshed")
                })
                .collect();
            let tail = &interesting[interesting.len().saturating_sub(40)..];
            eprintln!("{}", tail.join("\n"));
        }
        assert!(
            started.elapsed() < deadline,
            "{what}: {} authorizers not served within {deadline:?}",
            pending.len()
        );
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_processes_keep_1000_authorizers_and_rebuild_them_after_redis_loses_everything() {
    let timing = Timing {
        token_ttl: Duration::from_secs(20),
        overlap: Duration::from_secs(5),
        refresh_ahead: Duration::from_secs(6),
        platform: true,
        ..Timing::default()
    };
    let cycle = timing.token_ttl - timing.refresh_ahead;
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_platform_replicas(5);
    fleet.push_ticket().await;

    // 1000 merchants authorize while the fleet runs; each push registers
    // one. A watcher records when each one's token appears.
    let appids: Vec<String> = (0..AUTHORIZERS).map(appid).collect();
    let registered: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (registered, latencies, done) = (registered.clone(), latencies.clone(), done.clone());
        let fleet_ref = FleetRef::of(&fleet);
        tokio::spawn(async move {
            let mut served = std::collections::HashSet::new();
            let mut c = fleet_ref
                .client
                .get_multiplexed_async_connection()
                .await
                .expect("redis");
            loop {
                let pending: Vec<(String, Instant)> = registered
                    .lock()
                    .unwrap()
                    .iter()
                    .filter(|(a, _)| !served.contains(a))
                    .cloned()
                    .collect();
                if pending.is_empty() && done.load(Ordering::Relaxed) {
                    return;
                }
                for (a, at) in pending {
                    if fleet_ref.has_token(&mut c, &a).await {
                        latencies.lock().unwrap().push(at.elapsed());
                        served.insert(a);
                    }
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
    };
    let started = Instant::now();
    for a in &appids {
        let at = Instant::now();
        let (_, push) = fleet
            .sim
            .authorize(COMPONENT_APPID, a)
            .await
            .expect("authorize");
        assert!(matches!(push, PushOutcome::Success { .. }), "{a}: {push:?}");
        registered.lock().unwrap().push((a.clone(), at));
    }
    let pushed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    tokio::time::timeout(Duration::from_secs(30), watcher)
        .await
        .expect("every authorizer served within 30 s")
        .expect("watcher");
    let mut lat = latencies.lock().unwrap().clone();
    lat.sort();
    let p = |q: f64| lat[((lat.len() - 1) as f64 * q) as usize];
    eprintln!(
        "{AUTHORIZERS} authorizations pushed in {pushed:?}; registration → token: p50 {:?}, p99 {:?}, max {:?}",
        p(0.5),
        p(0.99),
        p(1.0)
    );
    assert_eq!(lat.len(), AUTHORIZERS);
    assert!(
        p(1.0) <= Duration::from_secs(2),
        "an authorizer waited {:?} for its token",
        p(1.0)
    );
    // Two lives: one api_authorizer_token per life (the first token is
    // api_query_auth's), never two at once.
    tokio::time::sleep(cycle * 2 + Duration::from_secs(1)).await;
    let (mut calls, mut max_calls) = (0, 0);
    for a in &appids {
        let s = fleet
            .sim
            .authorizer_stats(COMPONENT_APPID, a)
            .expect("known");
        assert_eq!(s.max_concurrent_fetches, 1, "{a}");
        assert_eq!(s.refresh_token_refusals, 0, "{a}");
        calls += s.fetch_calls;
        max_calls = max_calls.max(s.fetch_calls);
    }
    eprintln!("api_authorizer_token calls over two cycles: {calls} ({max_calls} at most for one)");
    assert!(
        max_calls <= 3,
        "{max_calls} calls for one authorizer in two cycles"
    );
    assert!(
        calls >= AUTHORIZERS as u64,
        "authorizers were not refreshed: {calls} calls"
    );

    // One merchant revokes: it must stay out through both rebuilds.
    let revoked = appids[0].clone();
    fleet
        .sim
        .unauthorize(COMPONENT_APPID, &revoked)
        .await
        .expect("unauthorize");
    let kept: Vec<String> = appids[1..].to_vec();
    let auth_times: Vec<u64> = kept
        .iter()
        .map(|a| {
            fleet
                .sim
                .authorizer_stats(COMPONENT_APPID, a)
                .unwrap()
                .auth_time
        })
        .collect();

    // FLUSHALL, then a restart without persistence.
    for wipe in ["FLUSHALL", "restart"] {
        if wipe == "FLUSHALL" {
            let mut c = fleet.conn().await;
            let (): () = redis::cmd("FLUSHALL")
                .query_async(&mut c)
                .await
                .expect("flushall");
        } else {
            fleet.redis.restart().expect("redis restarts");
        }
        let took = all_served(&fleet, &kept, Duration::from_secs(60), wipe).await;
        eprintln!(
            "{wipe}: {} authorizers served again after {took:?}",
            kept.len()
        );
        assert!(
            fleet
                .value_of(&format!("{COMPONENT}.{revoked}"))
                .await
                .is_none()
        );
        for (a, t) in kept.iter().zip(&auth_times) {
            let s = fleet.sim.authorizer_stats(COMPONENT_APPID, a).unwrap();
            assert_eq!(s.auth_time, *t, "{a} had to authorize again");
        }
        let mut c = fleet.conn().await;
        let keys = wxtoken_common::Keys::new(&fleet.prefix).unwrap();
        for a in &kept {
            let id = wxtoken_common::CredentialId::parse(&format!("{COMPONENT}.{a}")).unwrap();
            let rt: Option<String> = redis::cmd("GET")
                .arg(keys.refresh_token(&id))
                .query_async(&mut c)
                .await
                .unwrap();
            assert!(
                rt.is_some_and(|v| v.starts_with("v1:")),
                "{a}: refresh token lost"
            );
        }
    }
    // The operator's summary: every authorizer active and healthy (the
    // revoked one is not in WeChat's list, so the rebuilt registry has no
    // entry for it).
    let out = fleet.cli(&["status", "--component", COMPONENT, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(
        summary["active"],
        serde_json::json!(kept.len()),
        "{summary}"
    );
    assert_eq!(summary["failing"], serde_json::json!(0), "{summary}");
    let text = String::from_utf8_lossy(&fleet.cli(&["status", "--component", COMPONENT]).stdout)
        .into_owned();
    assert!(text.contains(&format!("{} active", kept.len())), "{text}");
    // Pushes a receiver must refuse are refused by the process too.
    for forgery in [
        Forgery::BadSignature,
        Forgery::StaleTimestamp,
        Forgery::WrongAppid,
    ] {
        let outcome = fleet
            .sim
            .push_forged(COMPONENT_APPID, forgery)
            .await
            .unwrap();
        assert!(
            matches!(outcome, PushOutcome::HttpError { status: 400 }),
            "{forgery:?}: {outcome:?}"
        );
    }
    let replay = fleet.sim.replay_last_push(COMPONENT_APPID).await.unwrap();
    assert!(
        matches!(replay, PushOutcome::HttpError { status: 400 }),
        "{replay:?}"
    );
    fleet.assert_logs_clean();
    fleet.assert_platform_logs_clean(&appids);
}
