//! Follow mode (issue 17, SPEC §12) with real processes: a primary fleet, a
//! follower fleet on its own Redis and a second-level follower; and each
//! fault case — primary down, primary's token revoked, follower Redis
//! wiped, a blackholed network, `wxtoken promote`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use wxtoken_client::keyspace::StoredToken;
use wxtoken_common::{CredentialId, Keys};
use wxtoken_e2e::follow::{FOLLOW_KEY, Follower, pair, primary};
use wxtoken_e2e::{API_KEY, Fleet, ID, Timing, wxtoken_bin};
use wxtoken_testkit::RedisServer;
use wxtoken_testkit::{FaultProxy, ProxyMode};

/// Reads with `read` every 50 ms until `stop`; counts reads and those whose
/// value WeChat (the simulator of `fleet`) does not accept.
fn readers<F, Fut>(
    fleet: Arc<Fleet>,
    stop: Arc<AtomicBool>,
    read: F,
) -> tokio::task::JoinHandle<(u64, u64)>
where
    F: Fn() -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Option<StoredToken>> + Send,
{
    tokio::spawn(async move {
        let (mut reads, mut bad) = (0, 0);
        while !stop.load(Ordering::Relaxed) {
            reads += 1;
            match read().await {
                Some(t) if fleet.sim.token_state(&t.value) == wechat_sim::TokenState::Valid => {}
                _ => bad += 1,
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        (reads, bad)
    })
}

/// The instant each generation's `refreshed` event reached this test, on
/// one Redis.
fn commits(
    redis: &RedisServer,
    keys: &Keys,
) -> (
    Arc<std::sync::Mutex<BTreeMap<u64, Instant>>>,
    tokio::task::JoinHandle<()>,
) {
    let seen = Arc::new(std::sync::Mutex::new(BTreeMap::new()));
    let client = redis.client();
    let channel = keys.events(&CredentialId::parse(ID).expect("id"));
    let out = seen.clone();
    let task = tokio::spawn(async move {
        let mut ps = client.get_async_pubsub().await.expect("pubsub");
        ps.subscribe(&channel).await.expect("subscribe");
        let mut msgs = ps.on_message();
        while let Some(m) = msgs.next().await {
            let body: String = m.get_payload().unwrap_or_default();
            let v: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if v["event"] == "refreshed"
                && v.get("slot").is_none()
                && let Some(g) = v["generation"].as_u64()
            {
                out.lock().unwrap().entry(g).or_insert_with(Instant::now);
            }
        }
    });
    (seen, task)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_chain_never_calls_wechat_and_every_reader_holds_a_valid_token() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new(Timing::default()).await;
    let (primary_seen, p_task) = commits(&fleet.redis, &Keys::new(&fleet.prefix).unwrap());
    let t0 = Instant::now();
    primary(&mut fleet, 3);
    let first = fleet.wait_generation(1, Duration::from_secs(15)).await;
    let mut staging = Follower::new(
        "s",
        &fleet,
        &format!("http://{}", fleet.replicas[0].http),
        false,
    );
    staging.spawn(3);
    staging.wait_ready().await;
    staging.wait_token(0, Duration::from_secs(15)).await;
    let mut dev = Follower::new("d", &fleet, &staging.url(), false);
    dev.spawn(1);
    dev.wait_ready().await;
    dev.wait_token(0, Duration::from_secs(15)).await;
    let (staging_seen, s_task) = commits(&staging.redis, &staging.keys);
    let (dev_seen, d_task) = commits(&dev.redis, &dev.keys);

    let stop = Arc::new(AtomicBool::new(false));
    let fleet = Arc::new(fleet);
    let staging = Arc::new(staging);
    let dev = Arc::new(dev);
    let r_primary = readers(fleet.clone(), stop.clone(), {
        let f = fleet.clone();
        move || {
            let f = f.clone();
            async move { f.token().await }
        }
    });
    let r_staging = readers(fleet.clone(), stop.clone(), {
        let s = staging.clone();
        move || {
            let s = s.clone();
            async move { s.token().await }
        }
    });
    let r_dev = readers(fleet.clone(), stop.clone(), {
        let d = dev.clone();
        move || {
            let d = d.clone();
            async move { d.token().await }
        }
    });
    // Four lifetimes of 6 s tokens.
    tokio::time::sleep(Duration::from_secs(24)).await;
    stop.store(true, Ordering::Relaxed);
    let results = [
        ("primary", r_primary.await.unwrap()),
        ("staging", r_staging.await.unwrap()),
        ("dev", r_dev.await.unwrap()),
    ];
    for (name, (reads, bad)) in results {
        println!("{name}: {reads} reads, {bad} without a valid token");
        assert!(reads > 100, "{name}: {reads} reads");
        assert_eq!(bad, 0, "{name}: readers without a valid token");
    }

    // WeChat saw the primary's fetches only: every fetch is a generation
    // the primary committed, at most one per refresh period.
    let app = fleet.app();
    let committed = primary_seen.lock().unwrap().len() as u64;
    let period = fleet.timing.token_ttl - fleet.timing.refresh_ahead;
    // One fetch at start, then one per refresh period.
    let ideal = 1 + (t0.elapsed().as_millis() / period.as_millis()) as u64;
    println!(
        "wechat: {} fetch calls, {} ok; the primary committed {committed} generations (first {}); ideal {ideal} in {:?}",
        app.fetch_calls,
        app.fetch_ok,
        first.generation,
        t0.elapsed()
    );
    assert_eq!(app.fetch_calls, app.fetch_ok, "a failed fetch: {app:?}");
    assert_eq!(
        app.fetch_calls, committed,
        "every WeChat fetch is a generation the primary committed"
    );
    assert!(
        committed <= ideal + 1,
        "{committed} fetches for ideal {ideal}"
    );
    assert!(
        !staging.logs().contains("cgi-bin/token") && !dev.logs().contains("cgi-bin/token"),
        "a follower called WeChat"
    );

    // Lag: the primary's commit → the follower's commit, per generation.
    let lags = |seen: &BTreeMap<u64, Instant>| -> Vec<Duration> {
        let p = primary_seen.lock().unwrap();
        let mut v: Vec<Duration> = seen
            .iter()
            .filter_map(|(g, at)| p.get(g).map(|pa| at.saturating_duration_since(*pa)))
            .collect();
        v.sort();
        v
    };
    let s_lags = lags(&staging_seen.lock().unwrap());
    let d_lags = lags(&dev_seen.lock().unwrap());
    assert!(
        s_lags.len() >= 3 && d_lags.len() >= 3,
        "{s_lags:?} {d_lags:?}"
    );
    println!(
        "follower lag (primary commit → follower commit): staging n={} p50 {:?} p99 {:?} max {:?}; dev (second level) n={} p50 {:?} p99 {:?} max {:?}",
        s_lags.len(),
        percentile(&s_lags, 0.5),
        percentile(&s_lags, 0.99),
        s_lags.last().unwrap(),
        d_lags.len(),
        percentile(&d_lags, 0.5),
        percentile(&d_lags, 0.99),
        d_lags.last().unwrap(),
    );
    // The streams stayed up: keep-alives (1 s asked) kept every follower's
    // stream alive for the whole run.
    for (name, logs) in [("staging", staging.logs()), ("dev", dev.logs())] {
        assert!(!logs.contains("not following"), "{name} lost its stream");
    }
    // The follow key reads and reports `shop` at the primary, nothing else.
    let http = reqwest::Client::new();
    let primary_url = format!("http://{}", fleet.replicas[0].http);
    for path in [
        "/v1/apps",
        "/v1/credentials",
        "/v1/apps/shop/jsapi_signature",
    ] {
        let r = http
            .get(format!("{primary_url}{path}"))
            .bearer_auth(FOLLOW_KEY)
            .send()
            .await
            .unwrap();
        assert!(
            r.status() == 403 || r.status() == 405,
            "{path}: {}",
            r.status()
        );
    }

    // Status on the follower names the primary.
    let out = staging.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains(&format!(
            "shop: followed from http://{}",
            fleet.replicas[0].http
        )) && text.contains("connected"),
        "{text}"
    );
    for logs in [staging.logs(), dev.logs(), fleet.all_logs()] {
        for t in &fleet.sim.stats().app(wxtoken_e2e::APPID).unwrap().issued {
            assert!(!logs.contains(&t.token), "a token in the logs");
        }
        assert!(!logs.contains(FOLLOW_KEY), "the follow key in the logs");
    }
    p_task.abort();
    s_task.abort();
    d_task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_reported_at_the_follower_is_replaced_through_the_primary() {
    let (fleet, f, held) = pair(Duration::from_secs(60), "r", 1, false).await;
    assert_eq!(held.value, fleet.token().await.unwrap().value);
    let fetches = fleet.app().fetch_calls;

    // WeChat cuts the token off behind everyone's back; a follower reader
    // hits 40001 and reports it to its own fleet.
    assert!(fleet.sim.revoke(&held.value));
    let started = Instant::now();
    let reply = reqwest::Client::new()
        .post(format!(
            "{}/v1/apps/{ID}/access_token/invalidate?wait=true",
            f.url()
        ))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "access_token": held.value }))
        .send()
        .await;
    let reply = match reply {
        Ok(r) => r,
        Err(e) => panic!("report failed: {e:?}\n{}", f.logs()),
    };
    let body: serde_json::Value = reply.json().await.unwrap();
    let took = started.elapsed();
    let newer = f.wait_token(held.generation, Duration::from_secs(5)).await;
    println!(
        "report at the follower → new value there: {took:?} (answer {})",
        body["result"]
    );
    assert_eq!(body["result"], "invalidated", "{body}");
    assert_eq!(body["access_token"], newer.value.as_str());
    assert_eq!(
        fleet.sim.token_state(&newer.value),
        wechat_sim::TokenState::Valid
    );
    assert_eq!(
        fleet.app().fetch_calls,
        fetches + 1,
        "one refresh, by the primary"
    );
    let primary_now = fleet.token().await.unwrap();
    assert_eq!(
        primary_now.generation, newer.generation,
        "the primary's generation is the fence"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wiped_follower_redis_is_refilled_without_any_wechat_call() {
    let (fleet, f, held) = pair(Duration::from_secs(60), "w", 2, false).await;
    let fetches = fleet.app().fetch_calls;
    let mut times = Vec::new();
    for _ in 0..3 {
        let mut c = f
            .redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
        let wiped = Instant::now();
        let back = f.wait_token(0, Duration::from_secs(3)).await;
        times.push(wiped.elapsed());
        assert_eq!(back.value, held.value);
        assert_eq!(
            back.generation, held.generation,
            "the primary's generation again"
        );
    }
    println!("follower redis wiped → value back: {times:?}");
    assert_eq!(
        fleet.app().fetch_calls,
        fetches,
        "a wipe made a WeChat call"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blackholed_primary_is_detected_by_the_keepalive_and_followed_again() {
    let mut fleet = Fleet::new(Timing::default()).await;
    primary(&mut fleet, 1);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    let proxy = FaultProxy::spawn(fleet.replicas[0].http).await;
    let mut f = Follower::new("b", &fleet, &format!("http://{}", proxy.addr()), false);
    f.spawn(1);
    f.wait_ready().await;
    let held = f.wait_token(0, Duration::from_secs(15)).await;
    proxy.set_mode(ProxyMode::Blackhole);
    let cut = Instant::now();
    let detected = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(20),
        || async {
            f.meta("follow_state")
                .await
                .is_some_and(|s| s.starts_with("disconnected: no byte"))
        },
    )
    .await;
    let detect_time = cut.elapsed();
    assert!(
        detected,
        "the dead stream was never detected: {:?}",
        f.meta("follow_state").await
    );
    // Still blackholed: the reconnect's request gets no answer either, and
    // is given up too (a second "no byte" state, written after it).
    let first_state_at = f.meta("follow_at_ms").await;
    let retried = wxtoken_testkit::wait_until_async(
        Duration::from_secs(15),
        Duration::from_millis(50),
        || async { f.meta("follow_at_ms").await != first_state_at },
    )
    .await;
    assert!(retried, "the reconnect during the blackhole hung");
    proxy.set_mode(ProxyMode::Pass);
    let healed = Instant::now();
    let newer = f.wait_token(held.generation, Duration::from_secs(15)).await;
    println!(
        "blackhole detected after {detect_time:?} (keep-alive 1 s, limit 3 s); after the heal, generation {} followed in {:?}",
        newer.generation,
        healed.elapsed()
    );
    assert_eq!(
        fleet.sim.token_state(&newer.value),
        wechat_sim::TokenState::Valid
    );
    // A follower stuck on a silent primary still stops within 5 s.
    proxy.set_mode(ProxyMode::Blackhole);
    tokio::time::sleep(Duration::from_millis(500)).await;
    f.replicas[0].signal(nix::sys::signal::Signal::SIGTERM);
    let stopping = Instant::now();
    let exited = f.replicas[0].wait_exit(Duration::from_secs(5));
    println!(
        "SIGTERM while blackholed: exited after {:?}",
        stopping.elapsed()
    );
    assert!(exited.is_some_and(|s| s.success()), "{exited:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_the_primary_down_the_follower_serves_until_expiry_and_promote_is_explicit() {
    let (fleet, f, _) = pair(Timing::default().token_ttl, "p", 1, true).await;

    // Refused while the primary answers.
    let out = f.cli(&["promote", ID]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("answers") && err.contains("--force"), "{err}");

    // The primary goes away for good (SIGKILL: no goodbye).
    let fetches_before = Arc::new(AtomicU64::new(fleet.app().fetch_calls));
    let held = f.token().await.expect("a value");
    fleet.replicas[0].signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let http = reqwest::Client::new();
    let url = format!("{}/v1/apps/{ID}/access_token", f.url());
    let mut last_ok = None;
    let body = loop {
        let r = http.get(&url).bearer_auth(API_KEY).send().await.unwrap();
        if r.status() == 200 {
            let b: serde_json::Value = r.json().await.unwrap();
            assert_eq!(b["access_token"], held.value.as_str());
            last_ok = Some(killed.elapsed());
        } else {
            assert_eq!(r.status(), 503);
            break r.json::<serde_json::Value>().await.unwrap();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "served past expiry"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let served = last_ok.expect("served after the primary died");
    println!(
        "primary killed; follower served its token for {served:?} more (its TTL was {:?})",
        held.ttl
    );
    // Readers are handed a value until 1 s (the client's expiry margin)
    // before its real expiry.
    assert!(
        served + Duration::from_millis(1500) >= held.ttl,
        "stopped serving before expiry"
    );
    assert_eq!(body["error"]["code"], "token_unavailable", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "follows it from http://{}",
            fleet.replicas[0].http
        )),
        "{message}"
    );
    assert_eq!(
        fleet.app().fetch_calls,
        fetches_before.load(Ordering::Relaxed),
        "the follower fell back to WeChat by itself"
    );

    // Now promote: the follower fleet fetches from WeChat.
    let out = f.cli(&["promote", ID]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let promoted = Instant::now();
    let fresh = f.wait_token(held.generation, Duration::from_secs(10)).await;
    println!(
        "promote → a WeChat token at the former follower in {:?}",
        promoted.elapsed()
    );
    assert_eq!(
        fleet.sim.token_state(&fresh.value),
        wechat_sim::TokenState::Valid
    );
    assert!(f.logs().contains("promoted"), "the promotion is logged");
}

#[test]
fn a_follower_without_a_secret_cannot_be_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("f.toml");
    std::fs::write(
        &config,
        format!(
            "[[apps]]\nid = \"{ID}\"\nappid = \"wx0123456789abcdef\"\nfollow = {{ url = \"http://127.0.0.1:1\", key = {{ env = \"E2E_FOLLOW_KEY\" }} }}\n"
        ),
    )
    .unwrap();
    let out = std::process::Command::new(wxtoken_bin())
        .args(["promote", ID, "--config"])
        .arg(&config)
        .env("E2E_FOLLOW_KEY", FOLLOW_KEY)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("apps[0].secret"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn when_the_following_replica_dies_another_takes_over_and_forwards_reports() {
    let (fleet, f, _) = pair(Timing::default().token_ttl, "t", 2, false).await;
    let lock = f
        .keys
        .slot(&wxtoken_common::CredentialRef::token(
            CredentialId::parse(ID).unwrap(),
        ))
        .lock;
    let mut c = f
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let owner: String = redis::cmd("GET")
        .arg(&lock)
        .query_async(&mut c)
        .await
        .unwrap();
    let holder = owner.split(':').next().unwrap().to_owned();
    let (dead, alive) = if holder == "t1" { (0, 1) } else { (1, 0) };
    f.replicas[dead].signal(nix::sys::signal::Signal::SIGKILL);
    let killed = Instant::now();
    let before = f.token().await.unwrap();
    // The next generation (a refresh every 3.5 s) reaches the survivor.
    let newer = f
        .wait_token(before.generation, Duration::from_secs(12))
        .await;
    println!(
        "following replica killed; the survivor stored generation {} after {:?}",
        newer.generation,
        killed.elapsed()
    );
    let owner: String = redis::cmd("GET")
        .arg(&lock)
        .query_async(&mut c)
        .await
        .unwrap();
    assert!(owner.starts_with(&format!("t{}:", alive + 1)), "{owner}");

    // A report at the survivor is forwarded: it learnt the value it holds.
    assert!(fleet.sim.revoke(&newer.value));
    let reply = reqwest::Client::new()
        .post(format!(
            "http://{}/v1/apps/{ID}/access_token/invalidate?wait=true",
            f.replicas[alive].http
        ))
        .bearer_auth(API_KEY)
        .json(&serde_json::json!({ "access_token": newer.value }))
        .send()
        .await
        .unwrap();
    let body: serde_json::Value = reply.json().await.unwrap();
    assert_eq!(body["result"], "invalidated", "{body}");
    let replaced = f.wait_token(newer.generation, Duration::from_secs(5)).await;
    assert_eq!(
        fleet.sim.token_state(&replaced.value),
        wechat_sim::TokenState::Valid
    );
}
