//! Hardening section (issue 12): what an attacker with one API key does to
//! one `wxtoken serve` replica, measured.
//!
//! 1. Report flood: 4 loops of `GET …/access_token` + `POST …/invalidate?wait=true`
//!    with the token just read: upstream fetches per minute under the loop,
//!    token checks made, share of reads served. (Before the fix: 1 799
//!    fetches in 2 s and no token for anyone afterwards.)
//! 2. Slowloris: a reader on a kept-alive connection reads the token in a
//!    closed loop, alone (baseline) and while N attackers drip request heads
//!    one byte every 500 ms and reconnect as soon as they are cut off: the
//!    reader's p50/p99 against its baseline (target p99 ≤ 2×), and how long
//!    an attacking connection lives (target: ≤ `header_read_timeout` + 10 %).
//! 3. Secret guessing: wrong secrets on `/cgi-bin/token` in a closed loop
//!    from one address: guesses answered per second (before: ~7 000).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::Row;
use crate::{API_KEY, APPID, Fleet, ID, SECRET, Timing};

const SECTION: &str = "hardening";
const HEADER_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(600),
        ..Timing::default()
    })
    .await;
    let timeout = format!("{}ms", HEADER_TIMEOUT.as_millis());
    let http_addr = fleet
        .spawn_replica_env(SECRET, &[("WXTOKEN__HTTP__HEADER_READ_TIMEOUT", &timeout)])
        .http;
    fleet.wait_generation(1, Duration::from_secs(20)).await;
    wait_ready(http_addr).await?;
    let mut rows = Vec::new();
    let flood = report_flood(&fleet, http_addr, quick, &mut rows).await?;
    let slowloris = slowloris(http_addr, quick, &mut rows).await?;
    let guessing = guessing(http_addr, quick, &mut rows).await?;
    fleet.assert_logs_clean();
    Ok((
        rows,
        json!({ "quick": quick, "report_flood": flood, "slowloris": slowloris, "guessing": guessing }),
    ))
}

async fn wait_ready(addr: SocketAddr) -> Result<()> {
    let http = reqwest::Client::new();
    let until = Instant::now() + Duration::from_secs(20);
    while Instant::now() < until {
        if http
            .get(format!("http://{addr}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    anyhow::bail!("the replica at {addr} never became ready")
}

async fn report_flood(
    fleet: &Fleet,
    addr: SocketAddr,
    quick: bool,
    rows: &mut Vec<Row>,
) -> Result<Value> {
    let duration = if quick {
        Duration::from_secs(2)
    } else {
        Duration::from_secs(20)
    };
    let before = fleet.app();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let (reads, served, reports) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let started = Instant::now();
    let loops: Vec<_> = (0..4)
        .map(|_| {
            let (http, base) = (http.clone(), base.clone());
            let (reads, served, reports) = (reads.clone(), served.clone(), reports.clone());
            tokio::spawn(async move {
                while started.elapsed() < duration {
                    reads.fetch_add(1, Ordering::Relaxed);
                    let Ok(r) = http
                        .get(format!("{base}/v1/apps/{ID}/access_token"))
                        .bearer_auth(API_KEY)
                        .send()
                        .await
                    else {
                        continue;
                    };
                    if r.status() != 200 {
                        continue;
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                    let Ok(v) = r.json::<Value>().await else {
                        continue;
                    };
                    let token = v["access_token"].as_str().unwrap_or_default().to_owned();
                    let _ = http
                        .post(format!(
                            "{base}/v1/apps/{ID}/access_token/invalidate?wait=true"
                        ))
                        .bearer_auth(API_KEY)
                        .json(&json!({ "access_token": token }))
                        .send()
                        .await;
                    reports.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    for l in loops {
        l.await.context("flood loop")?;
    }
    let secs = started.elapsed().as_secs_f64();
    let after = fleet.app();
    let fetches = after.fetch_calls - before.fetch_calls;
    let checks = after.domain_ip_calls - before.domain_ip_calls;
    let (reads, served, reports) = (
        reads.load(Ordering::Relaxed),
        served.load(Ordering::Relaxed),
        reports.load(Ordering::Relaxed),
    );
    let per_minute = fetches as f64 * 60.0 / secs;
    let served_share = served as f64 / reads.max(1) as f64;
    rows.push(
        Row::new(
            SECTION,
            format!("report flood ({reports} reports in {secs:.0} s): upstream fetches per minute"),
            format!("{per_minute:.1} (before the fix: ~54 000)"),
        )
        .target("0", fetches == 0),
    );
    rows.push(
        Row::new(
            SECTION,
            "report flood: reads served a token",
            format!("{:.2} %", served_share * 100.0),
        )
        .target("100 %", served == reads),
    );
    rows.push(Row::new(
        SECTION,
        "report flood: token checks (get_api_domain_ip)",
        format!("{checks} ({:.1} per minute)", checks as f64 * 60.0 / secs),
    ));
    Ok(json!({
        "seconds": secs, "reads": reads, "served": served, "reports": reports,
        "fetches": fetches, "fetches_per_minute": per_minute, "token_checks": checks,
    }))
}

/// The reader's latencies (ms) over `duration`: a closed loop on one
/// kept-alive connection.
async fn reader_latencies(addr: SocketAddr, duration: Duration) -> Result<Vec<f64>> {
    let http = reqwest::Client::new();
    let url = format!("http://{addr}/v1/apps/{ID}/access_token");
    let mut out = Vec::new();
    let started = Instant::now();
    while started.elapsed() < duration {
        let t = Instant::now();
        let r = http.get(&url).bearer_auth(API_KEY).send().await?;
        anyhow::ensure!(r.status() == 200, "reader got HTTP {}", r.status());
        r.bytes().await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(mut v: Vec<f64>) -> (f64, f64, usize) {
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), percentile(&v, 0.99), v.len())
}

/// One attacker: drips a request head one byte every 500 ms, reconnects
/// when cut off; records how long each connection lived.
async fn drip(addr: SocketAddr, stop: Arc<AtomicBool>, lived: Arc<std::sync::Mutex<Vec<f64>>>) {
    let head = b"GET /v1/apps HTTP/1.1\r\nHost: x\r\nX-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut s) = TcpStream::connect(addr).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let opened = Instant::now();
        let mut closed = false;
        for b in head.iter().cycle() {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if s.write_all(&[*b]).await.is_err() {
                closed = true;
                break;
            }
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(500), s.read(&mut buf)).await {
                Err(_) | Ok(Ok(1..)) => {}
                Ok(Ok(0)) | Ok(Err(_)) => {
                    closed = true;
                    break;
                }
            }
        }
        if closed && let Ok(mut l) = lived.lock() {
            l.push(opened.elapsed().as_secs_f64());
        }
    }
}

async fn slowloris(addr: SocketAddr, quick: bool, rows: &mut Vec<Row>) -> Result<Value> {
    let (window, attackers) = if quick {
        (Duration::from_secs(3), 100)
    } else {
        (Duration::from_secs(10), 300)
    };
    let (base_p50, base_p99, base_n) = summary(reader_latencies(addr, window).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let lived = Arc::new(std::sync::Mutex::new(Vec::new()));
    let tasks: Vec<_> = (0..attackers)
        .map(|_| tokio::spawn(drip(addr, stop.clone(), lived.clone())))
        .collect();
    // Let every attacker open its first connection before measuring.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let under = reader_latencies(addr, window).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let (p50, p99, n) = summary(under?);
    let mut lived = lived.lock().map(|l| l.clone()).unwrap_or_default();
    lived.sort_by(f64::total_cmp);
    let longest = lived.last().copied().unwrap_or(0.0);
    let ratio = p99 / base_p99.max(0.001);
    rows.push(
        Row::new(
            SECTION,
            format!("slowloris ×{attackers}: reader p99 against its baseline"),
            format!(
                "{ratio:.2}× ({p99:.2} ms vs {base_p99:.2} ms; p50 {p50:.2} vs {base_p50:.2} ms)"
            ),
        )
        .target("≤ 2×", ratio <= 2.0),
    );
    let limit = HEADER_TIMEOUT.as_secs_f64() * 1.1;
    rows.push(
        Row::new(
            SECTION,
            format!(
                "slowloris: longest-lived attacking connection ({} cut off)",
                lived.len()
            ),
            format!("{longest:.2} s (before the fix: held forever)"),
        )
        .target(
            format!("≤ {limit:.1} s"),
            longest <= limit && !lived.is_empty(),
        ),
    );
    Ok(json!({
        "attackers": attackers,
        "baseline": { "p50_ms": base_p50, "p99_ms": base_p99, "reads": base_n },
        "under_attack": { "p50_ms": p50, "p99_ms": p99, "reads": n },
        "p99_ratio": ratio,
        "connections_cut": lived.len(),
        "longest_connection_s": longest,
        "header_read_timeout_s": HEADER_TIMEOUT.as_secs_f64(),
    }))
}

async fn guessing(addr: SocketAddr, quick: bool, rows: &mut Vec<Row>) -> Result<Value> {
    let duration = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(5)
    };
    let http = reqwest::Client::new();
    let (mut answered, mut limited, mut other) = (0_u64, 0_u64, 0_u64);
    let started = Instant::now();
    let mut i = 0_u64;
    while started.elapsed() < duration {
        i += 1;
        let url = format!(
            "http://{addr}/cgi-bin/token?grant_type=client_credential&appid={APPID}&secret=guess-{i}"
        );
        let v: Value = http.get(url).send().await?.json().await?;
        match v["errcode"].as_i64() {
            Some(40125) => answered += 1,
            Some(45011) => limited += 1,
            _ => other += 1,
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let per_second = answered as f64 / secs;
    rows.push(
        Row::new(
            SECTION,
            format!(
                "secret guessing from one address ({} guesses in {secs:.0} s): answered per second",
                answered + limited
            ),
            format!("{per_second:.2} (before the fix: ~7 000)"),
        )
        .target(
            "≤ 10 a minute + burst",
            answered <= 10 + (secs / 6.0).ceil() as u64,
        ),
    );
    Ok(json!({
        "seconds": secs, "answered": answered, "limited": limited, "other": other,
        "answered_per_second": per_second,
    }))
}
