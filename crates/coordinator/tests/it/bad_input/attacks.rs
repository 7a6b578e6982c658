//! Issue 12's attacks, kept fixed: what a caller with one API key, or a
//! service holding the reader ACL user, can do to the fleet's upstream
//! budget, its token and its connections.
//!
//! Before the fix the HTTP loop below made 1 799 upstream fetches in 2 s
//! (the whole daily budget) and left every reader without a token; 300
//! slowloris connections were held forever; `/cgi-bin/token` answered about
//! 7 000 wrong-secret guesses a second. Each test prints its numbers.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use wxtoken_client::keyspace::{self, Invalidation};
use wxtoken_common::Keys;
use wxtoken_common::wire::Event;
use wxtoken_coordinator::http::{ConnLimits, router, serve};

use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

/// Serves replica 0's API on a real loopback socket; dropping the sender stops it.
pub async fn serve_api(fleet: &Fleet, limits: ConnLimits) -> (SocketAddr, watch::Sender<bool>) {
    let state = fleet.replicas[0]
        .http_state(&fleet.config(SECRET))
        .expect("state");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = watch::channel(false);
    tokio::spawn(serve(
        listener,
        router(state, true),
        limits,
        None,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    (addr, stop)
}

pub fn limits(header_read_timeout: Duration, max_connections: usize) -> ConnLimits {
    ConnLimits {
        header_read_timeout,
        max_connections,
        name: "api",
        // The per-core workers, as a replica serves its API.
        workers: 2,
    }
}

fn long_lived() -> Settings {
    Settings {
        token_ttl: Duration::from_secs(60),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_report_flood_costs_no_fetch_and_the_token_stays_served() {
    let fleet = Fleet::start(long_lived(), 2).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (addr, _stop) = serve_api(&fleet, limits(Duration::from_secs(5), 1024)).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let (reads, reports, unserved) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let attack = Duration::from_secs(3);
    let loops = (0..4).map(|_| {
        let (http, base) = (http.clone(), base.clone());
        let (reads, reports, unserved) = (reads.clone(), reports.clone(), unserved.clone());
        let expected = first.value.clone();
        tokio::spawn(async move {
            while started.elapsed() < attack {
                let r = http
                    .get(format!("{base}/v1/apps/{ID}/access_token"))
                    .bearer_auth(API_KEY)
                    .send()
                    .await
                    .unwrap();
                reads.fetch_add(1, Ordering::Relaxed);
                if r.status() != 200 {
                    unserved.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                let v: serde_json::Value = r.json().await.unwrap();
                let token = v["access_token"].as_str().unwrap().to_owned();
                let r = http
                    .post(format!(
                        "{base}/v1/apps/{ID}/access_token/invalidate?wait=true"
                    ))
                    .bearer_auth(API_KEY)
                    .json(&serde_json::json!({ "access_token": token }))
                    .send()
                    .await
                    .unwrap();
                reports.fetch_add(1, Ordering::Relaxed);
                let status = r.status();
                let v: serde_json::Value = r.json().await.unwrap();
                assert_eq!(status, 200, "{v}");
                assert_eq!(v["access_token"], expected.as_str(), "{v}");
            }
        })
    });
    for l in loops.collect::<Vec<_>>() {
        l.await.unwrap();
    }
    let app = fleet.app();
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "http report flood: {} reads + {} reports in {took:.1} s; upstream fetches {} (1 before the flood), token checks {}, reads unserved {}",
        reads.load(Ordering::Relaxed),
        reports.load(Ordering::Relaxed),
        app.fetch_calls,
        app.domain_ip_calls,
        unserved.load(Ordering::Relaxed)
    );
    assert!(reports.load(Ordering::Relaxed) > 100, "the flood ran");
    assert_eq!(app.fetch_calls, 1, "a report flood fetched");
    assert_eq!(
        unserved.load(Ordering::Relaxed),
        0,
        "a reader went without a token"
    );
    // One check per verify_interval (500 ms) at most, plus the first.
    assert!(
        app.domain_ip_calls <= 3000 / 500 + 2,
        "{}",
        app.domain_ip_calls
    );
    assert_eq!(fleet.token().await.unwrap().value, first.value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_flooding_through_redis_costs_no_fetch_and_never_empties_the_key() {
    let fleet = Fleet::start(long_lived(), 2).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let keys = Keys::new(&fleet.prefix).unwrap();
    let id = fleet.id();
    let mut c = fleet
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let forged = [
        Event::RefreshRequested {
            generation: u64::MAX / 4,
            reason: None,
            force: true,
        },
        Event::RefreshRequested {
            generation: 0,
            reason: Some("no_token".into()),
            force: false,
        },
        Event::Reported {
            generation: first.generation,
        },
        Event::Invalidated {
            generation: first.generation,
        },
    ];
    let started = Instant::now();
    let (mut rounds, mut missing) = (0_u64, 0_u64);
    while started.elapsed() < Duration::from_secs(3) {
        let r = keyspace::invalidate(&mut c, &keys, &id.id, &first.value)
            .await
            .unwrap();
        assert!(
            matches!(
                r,
                Invalidation::Reported { .. } | Invalidation::TokenValid { .. }
            ),
            "{r:?}"
        );
        for e in &forged {
            keyspace::publish(&mut c, &keys, &id, e).await.unwrap();
        }
        match keyspace::read_token(&mut c, &keys, &id.id).await.unwrap() {
            Some(t) => assert_eq!(t.value, first.value),
            None => missing += 1,
        }
        rounds += 1;
    }
    let app = fleet.app();
    eprintln!(
        "redis report flood: {rounds} rounds (a report + 4 forged events each) in 3 s; upstream fetches {}, token checks {}, reads without a token {missing}",
        app.fetch_calls, app.domain_ip_calls
    );
    assert!(rounds > 100, "the flood ran");
    assert_eq!(missing, 0, "the token key was emptied");
    assert_eq!(app.fetch_calls, 1, "a reader's flood fetched");
    assert!(
        app.domain_ip_calls <= 3000 / 500 + 2,
        "{}",
        app.domain_ip_calls
    );
}

/// Chaos seed 11 found it: every forged "look again" event pushed the
/// credential's next turn another 250 ms out, so a 4 s flood (thousands of
/// events) starved the scheduled refresh for minutes and readers went 54 s
/// without a valid token. Now the flood costs at most four peeks a second
/// and the refresh comes when it is due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_forged_events_does_not_postpone_the_scheduled_refresh() {
    let fleet = Fleet::start(Settings::default(), 2).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let keys = Keys::new(&fleet.prefix).unwrap();
    let id = fleet.id();
    let mut c = fleet
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let forged = [
        Event::RefreshRequested {
            generation: first.generation,
            reason: Some("forged".into()),
            force: true,
        },
        Event::Reported {
            generation: first.generation,
        },
        Event::Invalidated {
            generation: first.generation,
        },
    ];
    // Flood past the moment the refresh is due (ttl 4 s, lead 1.5 s: at 2.5 s).
    let started = Instant::now();
    let mut events = 0_u64;
    while started.elapsed() < Duration::from_secs(3) {
        for e in &forged {
            keyspace::publish(&mut c, &keys, &id, e).await.unwrap();
            events += 1;
        }
    }
    // Due at 2.5 s (+ jitter ≤ 150 ms): the refresh must come while the
    // first token still lives (4 s), flood or not.
    let next = fleet
        .wait_generation(first.generation + 1, Duration::from_secs(1))
        .await;
    eprintln!(
        "forged event flood: {events} events in 3 s; the next token came {:?} after the first",
        started.elapsed()
    );
    assert!(events > 1000, "the flood ran: {events}");
    assert!(next.generation > first.generation);
    assert_eq!(fleet.app().max_concurrent_fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refreshes_for_genuinely_dead_tokens_are_spaced_and_stop_at_the_reserve() {
    let settings = Settings {
        token_ttl: Duration::from_secs(8),
        refresh_ahead: Duration::from_millis(1500),
        daily_budget: 8,
        report_refresh_interval: Duration::from_millis(400),
        extra_refresh: "scheduled_reserve = 3".into(),
        ..Settings::default()
    };
    let fleet = Fleet::start(settings, 2).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let id = fleet.id();
    // Someone with the secret keeps killing the fleet's token; readers
    // report every dead token at once.
    let started = Instant::now();
    let mut refused = false;
    while started.elapsed() < Duration::from_secs(6) {
        let Some(t) = fleet.token().await else {
            tokio::time::sleep(Duration::from_millis(20)).await;
            continue;
        };
        fleet.sim.revoke(&t.value);
        let _ = fleet.store.report(&id, &t.value).await;
        let status = fleet
            .store
            .status(&id, wxtoken_common::Window::Day)
            .await
            .unwrap();
        if status.last_refusal_reason.as_deref() == Some("reserve") {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let app = fleet.app();
    assert!(refused, "the reserve refused a report: {app:?}");
    // Initial fetch + report-triggered ones, never into the reserve (3 of 8).
    assert_eq!(app.fetch_ok, 5, "{app:?}");
    let issued: Vec<u64> = app.issued.iter().map(|t| t.issued_at_ms).collect();
    for pair in issued[1..].windows(2) {
        assert!(
            pair[1] - pair[0] >= 400,
            "report-triggered refreshes {} ms apart",
            pair[1] - pair[0]
        );
    }
    // The reserve is still there for the scheduled refresh: the dead token
    // is replaced when it is due, not left to expire.
    let before = fleet.token().await.map_or(0, |t| t.generation);
    let renewed = fleet
        .wait_generation(before + 1, Duration::from_secs(10))
        .await;
    assert_eq!(
        fleet.sim.token_state(&renewed.value),
        wechat_sim::TokenState::Valid
    );
    assert!(fleet.app().fetch_ok <= 8);
    eprintln!(
        "dead-token flood: {} fetches ({} report-triggered, then the reserve held; renewed on schedule)",
        fleet.app().fetch_ok,
        app.fetch_ok - 1
    );
}

/// Opens a connection and sends a request head one byte every `every`;
/// returns when the server closes it (how long that took) or `give_up`.
async fn slowloris(addr: SocketAddr, every: Duration, give_up: Duration) -> Option<Duration> {
    let mut s = TcpStream::connect(addr).await.ok()?;
    let started = Instant::now();
    let head = b"GET /v1/apps HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    for b in head.iter().cycle() {
        if started.elapsed() > give_up {
            return None;
        }
        if s.write_all(&[*b]).await.is_err() {
            return Some(started.elapsed());
        }
        let mut buf = [0u8; 512];
        match tokio::time::timeout(every, s.read(&mut buf)).await {
            Err(_) => {}
            Ok(Ok(0)) | Ok(Err(_)) => return Some(started.elapsed()),
            // An answer (a 4xx) also ends it; the next read sees the close.
            Ok(Ok(_)) => {}
        }
    }
    None
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_and_idle_connections_are_cut_off_while_readers_are_served() {
    let fleet = Fleet::start(long_lived(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let timeout = Duration::from_secs(1);
    let (addr, _stop) = serve_api(&fleet, limits(timeout, 400)).await;
    // A reader on a kept-alive connection, reading every 10 ms throughout.
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/apps/{ID}/access_token");
    let reader = {
        let (http, url) = (http.clone(), url.clone());
        tokio::spawn(async move {
            let (mut ok, mut bad) = (0_u64, 0_u64);
            let started = Instant::now();
            while started.elapsed() < Duration::from_secs(3) {
                match http.get(&url).bearer_auth(API_KEY).send().await {
                    Ok(r) if r.status() == 200 => ok += 1,
                    _ => bad += 1,
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            (ok, bad)
        })
    };
    let attackers: Vec<_> = (0..300)
        .map(|_| {
            tokio::spawn(slowloris(
                addr,
                Duration::from_millis(200),
                Duration::from_secs(8),
            ))
        })
        .collect();
    // An idle kept-alive connection: one request, then silence.
    let mut idle = TcpStream::connect(addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 4096];
    assert!(idle.read(&mut buf).await.unwrap() > 0, "healthz answered");
    let idle_started = Instant::now();
    let idle_closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match idle.read(&mut buf).await {
                Ok(0) | Err(_) => return idle_started.elapsed(),
                Ok(_) => {}
            }
        }
    })
    .await
    .expect("an idle keep-alive connection was held open");
    let mut closed_after = Vec::new();
    for a in attackers {
        closed_after.push(
            a.await
                .unwrap()
                .expect("a slowloris connection was held open"),
        );
    }
    let (ok, bad) = reader.await.unwrap();
    let slowest = closed_after.iter().max().copied().unwrap_or_default();
    eprintln!(
        "slowloris: 300 connections closed after at most {slowest:?} (header_read_timeout {timeout:?}); idle keep-alive closed after {idle_closed:?}; reader {ok} ok / {bad} failed"
    );
    assert!(slowest < timeout * 3, "{slowest:?}");
    assert!(
        idle_closed >= timeout / 2 && idle_closed < timeout * 3,
        "{idle_closed:?}"
    );
    assert_eq!(bad, 0, "the reader failed during the attack");
    assert!(ok > 50);
    assert_eq!(fleet.token().await.unwrap().value, first.value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_holds_new_clients_until_a_slot_frees() {
    let fleet = Fleet::start(long_lived(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (addr, _stop) = serve_api(&fleet, limits(Duration::from_secs(1), 5)).await;
    // Five silent connections fill the cap ...
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    // ... so a sixth client is not served until the header timeout frees one.
    let http = reqwest::Client::new();
    let started = Instant::now();
    let r = http
        .get(format!("http://{addr}/healthz"))
        .send()
        .await
        .unwrap();
    let waited = started.elapsed();
    assert_eq!(r.status(), 200);
    assert!(
        waited >= Duration::from_millis(500),
        "served at once despite the cap: {waited:?}"
    );
    assert!(waited < Duration::from_secs(4), "{waited:?}");
}

/// `/cgi-bin/token` from a chosen loopback address (127.0.0.0/8 all answer).
async fn token_from(addr: SocketAddr, from: IpAddr, secret: &str) -> i64 {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let mut s = socket.connect(addr).await.unwrap();
    let req = format!(
        "GET /cgi-bin/token?grant_type=client_credential&appid={APPID}&secret={secret} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut reply = Vec::new();
    s.read_to_end(&mut reply).await.unwrap();
    let text = String::from_utf8_lossy(&reply);
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["errcode"].as_i64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_guessing_is_limited_without_locking_out_the_right_secret() {
    let settings = Settings {
        extra_http: "secret_failures_per_minute = 10\nsecret_failures_per_minute_per_app = 30"
            .into(),
        ..long_lived()
    };
    let fleet = Fleet::start(settings, 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (addr, _stop) = serve_api(&fleet, limits(Duration::from_secs(5), 1024)).await;
    let guesser: IpAddr = "127.0.0.2".parse().unwrap();
    let (mut answered, mut limited) = (0, 0);
    let started = Instant::now();
    for i in 0..200 {
        match token_from(addr, guesser, &format!("guess-{i}")).await {
            40125 => answered += 1,
            45011 => limited += 1,
            other => panic!("unexpected errcode {other}"),
        }
    }
    let took = started.elapsed().as_secs_f64();
    eprintln!(
        "secret guessing from one address: 200 guesses in {took:.2} s, {answered} answered (40125), {limited} refused (45011)"
    );
    assert!(answered <= 12, "{answered} guesses answered");
    // The right secret from the guessing address is refused too (a refusal
    // must not tell a guesser it guessed right) ...
    assert_eq!(token_from(addr, guesser, SECRET).await, 45011);
    // ... but from any other address it is served at once.
    assert_eq!(
        token_from(addr, "127.0.0.3".parse().unwrap(), SECRET).await,
        0
    );
    // A distributed guess: 40 addresses, 2 guesses each.
    for a in 10..50 {
        let from: IpAddr = format!("127.0.1.{a}").parse().unwrap();
        for i in 0..2 {
            let _ = token_from(addr, from, &format!("distributed-{i}")).await;
        }
    }
    // Addresses that guessed are refused for this appid now ...
    assert_eq!(
        token_from(addr, "127.0.1.12".parse().unwrap(), "again").await,
        45011
    );
    // ... and a caller that never guessed still gets its token.
    assert_eq!(
        token_from(addr, "127.0.2.1".parse().unwrap(), SECRET).await,
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_calls_over_the_header_or_body_limits_are_refused_and_not_forwarded() {
    let fleet = Fleet::start(long_lived(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (addr, _stop) = serve_api(&fleet, limits(Duration::from_secs(5), 16)).await;
    let url = format!("http://{addr}/wx/{ID}/cgi-bin/message/custom/send");
    let message = r#"{"touser":"oUser1","msgtype":"text","text":{"content":"hi"}}"#;
    let client = reqwest::Client::new();

    // Headers past hyper's read buffer (400 KiB): 431, or the connection
    // closed before an answer; either way nothing reaches WeChat.
    let big = client
        .post(&url)
        .bearer_auth(API_KEY)
        .header("x-padding", "x".repeat(512 * 1024))
        .body(message)
        .send()
        .await;
    if let Ok(reply) = &big {
        assert_eq!(reply.status(), 431, "headers over the limit");
    }
    // A body declared over `[gateway] max_body`: 413 before it is read.
    let mut raw = TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "POST /wx/{ID}/cgi-bin/message/custom/send HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        (64_u64 << 20) + 1
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut reply = vec![0_u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), raw.read(&mut reply))
        .await
        .expect("an answer before the body")
        .unwrap();
    let reply = String::from_utf8_lossy(&reply[..n]);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("payload_too_large"), "{reply}");

    // And the same call within the limits goes through.
    let ok = client
        .post(&url)
        .bearer_auth(API_KEY)
        .body(message)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let stats = fleet.sim.stats();
    assert_eq!(
        stats.business_ok.get("/cgi-bin/message/custom/send"),
        Some(&1),
        "only the call within the limits was forwarded"
    );
}
