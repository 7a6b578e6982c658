//! Read path section: what one read costs through the client library, and
//! what the HTTP endpoint of a `wxtoken serve` replica delivers next to
//! `redis-benchmark` on the same machine, in one run.
//!
//! 1. `TokenClient::cached` and an `access_token` hit: ns per read on one
//!    thread (a tight timed loop, median of 5 runs).
//! 2. An `access_token` miss (no subscription, zero staleness: every call
//!    reads Redis, as in `crates/client/benches/read_path.rs`) next to a raw
//!    redis-rs `GET` on a multiplexed connection, interleaved in rounds.
//! 3. A fleet (redis-server, wechat-sim, one `wxtoken serve` replica): per
//!    concurrency C, `redis-benchmark -t get` on a key as large as the HTTP
//!    body, then `GET /v1/apps/shop/access_token` loaded by `wrk` when it is
//!    on PATH, else by a built-in closed loop on one thread (C keep-alive
//!    connections, raw HTTP/1.1: thread for thread what redis-benchmark is).
//!    Load generator and servers share the machine's cores; the CPU time per
//!    request of each server and load generator is reported alongside
//!    (`/proc`, 10 ms steps). redis-benchmark's GET reads `key:__rand_int__`,
//!    which it does not create: it is SET here to as many bytes as the body.
//!
//! Parts 1–2 use a private redis-server with a seeded token and do not need
//! the `wxtoken` binary; part 3 is skipped (a row says why) when the binary
//! or `redis-benchmark` is missing.

use std::hint::black_box;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxtoken_client::TokenClient;
use wxtoken_common::{CredentialId, Keys};
use wxtoken_testkit::RedisServer;

use super::Row;
use crate::{API_KEY, Fleet, ID, SECRET, Timing};

const SECTION: &str = "read path";
const PATH: &str = "/v1/apps/shop/access_token";
/// A WeChat-sized token (the seeded one of parts 1–2).
const TOKEN_LEN: usize = 136;
/// Targets (BENCHMARKS.md, issues 4 and 5).
const HIT_TARGET_NS: f64 = 100.0;
const MISS_TARGET_RATIO: f64 = 1.2;
const HTTP_TARGET_RATIO: f64 = 1.0;
const HTTP_TARGET_P99_MS: f64 = 2.0;

/// Runs the section: `quick` takes ≈ 10 s, the full run ≈ 90 s.
pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    let mut rows = Vec::new();
    let client = client_reads(quick, &mut rows)
        .await
        .context("read path: client reads")?;
    let http = http_vs_redis(quick, &mut rows)
        .await
        .context("read path: HTTP vs redis-benchmark")?;
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    Ok((
        rows,
        json!({ "quick": quick, "cores": cores, "client": client, "http_vs_redis": http }),
    ))
}

// ---------------------------------------------------------------- parts 1–2

/// Parts 1 and 2 on a private redis-server holding a seeded token.
async fn client_reads(quick: bool, rows: &mut Vec<Row>) -> Result<Value> {
    let redis = tokio::task::spawn_blocking(|| RedisServer::builder().try_spawn())
        .await
        .context("redis-server start task")??;
    let prefix = wxtoken_testkit::random_prefix();
    let keys = Keys::new(&prefix).context("key prefix")?;
    let id = CredentialId::parse(ID).context("credential id")?;
    let token_key = keys.access_token(&id);
    let mut raw = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .context("redis connection")?;
    let _: () = redis::cmd("SET")
        .arg(&token_key)
        .arg("T".repeat(TOKEN_LEN))
        .arg("PX")
        .arg(3_600_000)
        .query_async(&mut raw)
        .await
        .context("seeding the token")?;
    let _: () = redis::cmd("HSET")
        .arg(keys.meta(&id))
        .arg(wxtoken_common::meta::GENERATION)
        .arg(1)
        .query_async(&mut raw)
        .await
        .context("seeding the generation")?;

    // 1. Hits.
    let client = TokenClient::builder(&redis.url())
        .key_prefix(&prefix)
        .connect()
        .await
        .context("client connect")?;
    ensure!(
        client.wait_events_up(Duration::from_secs(5)).await,
        "the client's event subscription did not come up in 5 s"
    );
    client.access_token(ID).await.context("first read")?;
    ensure!(
        client.cached(ID).is_some(),
        "the token is not cached after a read"
    );
    let target = if quick {
        Duration::from_millis(200)
    } else {
        Duration::from_secs(2)
    };
    let hot = client.clone();
    let cached = tokio::task::spawn_blocking(move || {
        timed_runs(target, |n| {
            let mut misses = 0u64;
            let start = Instant::now();
            for _ in 0..n {
                if black_box(hot.cached(black_box(ID))).is_none() {
                    misses += 1;
                }
            }
            (start.elapsed(), misses)
        })
    })
    .await
    .context("cached-read thread")?;

    let hot = client.clone();
    let hit = tokio::spawn(async move { access_token_runs(&hot, target).await })
        .await
        .context("access_token task")?;

    let row = |what: &str, r: &Runs| {
        let mut value = format!(
            "{:.1} ns ({}/s)",
            r.median_ns,
            si(1e9 / r.median_ns.max(f64::MIN_POSITIVE))
        );
        if r.misses > 0 {
            value.push_str(&format!(", {} misses", r.misses));
        }
        Row::new(SECTION, what, value).target(
            format!("p50 ≤ {HIT_TARGET_NS:.0} ns"),
            r.median_ns <= HIT_TARGET_NS && r.misses == 0,
        )
    };
    rows.push(row(
        "client cached read, TokenClient::cached (1 thread, median of 5)",
        &cached,
    ));
    rows.push(row("client access_token hit (1 task, median of 5)", &hit));

    // 2. Misses next to a raw GET.
    let uncached = TokenClient::builder(&redis.url())
        .key_prefix(&prefix)
        .subscribe(false)
        .max_staleness(Duration::ZERO)
        .connect()
        .await
        .context("uncached client connect")?;
    let miss = miss_vs_raw(quick, &uncached, &mut raw, &token_key).await?;
    rows.push(Row::new(
        SECTION,
        "raw redis-rs GET, multiplexed connection (sequential, median of rounds)",
        format!(
            "{:.1} µs ({}/s)",
            miss.raw_us,
            si(1e6 / miss.raw_us.max(f64::MIN_POSITIVE))
        ),
    ));
    rows.push(
        Row::new(
            SECTION,
            "client miss, access_token (GET+PTTL+HGET, one round trip) / raw GET",
            format!(
                "{:.1} µs = {:.2} × raw GET (median of {} rounds; {:.2}–{:.2})",
                miss.miss_us, miss.ratio, miss.rounds, miss.round_min, miss.round_max
            ),
        )
        .target(
            format!("≤ {MISS_TARGET_RATIO} × raw GET"),
            miss.ratio <= MISS_TARGET_RATIO,
        ),
    );

    Ok(json!({
        "cached": cached.json(),
        "access_token_hit": hit.json(),
        "miss_vs_raw_get": miss.json,
    }))
}

/// Five timed runs of a loop of `n` reads; `f(n)` returns (elapsed, misses).
#[derive(Debug)]
struct Runs {
    reads_per_run: u64,
    ns: Vec<f64>,
    median_ns: f64,
    misses: u64,
}

impl Runs {
    fn json(&self) -> Value {
        json!({
            "reads_per_run": self.reads_per_run,
            "ns_per_read_runs": self.ns,
            "ns_per_read_median": self.median_ns,
            "reads_per_s_median": 1e9 / self.median_ns.max(f64::MIN_POSITIVE),
            "misses": self.misses,
        })
    }
}

const RUNS: usize = 5;

/// How many reads make one run last `target`, given a calibration batch.
fn reads_for(target: Duration, batch: u64, took: Duration) -> u64 {
    let ns = took.as_nanos().max(1) as f64 / batch as f64;
    ((target.as_nanos() as f64 / ns) as u64).max(1000)
}

fn timed_runs(target: Duration, mut f: impl FnMut(u64) -> (Duration, u64)) -> Runs {
    // Calibrate (and warm up) with batches growing to ≥ 20 ms.
    let mut batch = 10_000u64;
    let mut misses = 0;
    let took = loop {
        let (took, m) = f(batch);
        misses += m;
        if took >= Duration::from_millis(20) || batch >= 1 << 34 {
            break took;
        }
        batch *= 4;
    };
    let n = reads_for(target, batch, took);
    let mut ns = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (took, m) = f(n);
        misses += m;
        ns.push(took.as_nanos() as f64 / n as f64);
    }
    Runs {
        reads_per_run: n,
        median_ns: median(&ns),
        ns,
        misses,
    }
}

/// `access_token` hits in a loop inside one task (the async twin of [`timed_runs`]).
async fn access_token_runs(client: &TokenClient, target: Duration) -> Runs {
    async fn lap(client: &TokenClient, n: u64) -> (Duration, u64) {
        let mut misses = 0u64;
        let start = Instant::now();
        for _ in 0..n {
            if black_box(client.access_token(black_box(ID)).await).is_err() {
                misses += 1;
            }
        }
        (start.elapsed(), misses)
    }
    let mut batch = 10_000u64;
    let mut misses = 0;
    let took = loop {
        let (took, m) = lap(client, batch).await;
        misses += m;
        if took >= Duration::from_millis(20) || batch >= 1 << 34 {
            break took;
        }
        batch *= 4;
    };
    let n = reads_for(target, batch, took);
    let mut ns = Vec::with_capacity(RUNS);
    for _ in 0..RUNS {
        let (took, m) = lap(client, n).await;
        misses += m;
        ns.push(took.as_nanos() as f64 / n as f64);
    }
    // A hit is counted as such only if the cache still serves the token.
    if client.cached(ID).is_none() {
        misses += 1;
    }
    Runs {
        reads_per_run: n,
        median_ns: median(&ns),
        ns,
        misses,
    }
}

struct MissVsRaw {
    raw_us: f64,
    miss_us: f64,
    ratio: f64,
    rounds: u32,
    round_min: f64,
    round_max: f64,
    json: Value,
}

/// Sequential misses and raw GETs, the same count of each, in alternating
/// rounds so drift (other load, frequency) hits both alike.
async fn miss_vs_raw(
    quick: bool,
    client: &TokenClient,
    raw: &mut redis::aio::MultiplexedConnection,
    token_key: &str,
) -> Result<MissVsRaw> {
    async fn raw_gets(
        raw: &mut redis::aio::MultiplexedConnection,
        key: &str,
        n: u64,
    ) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            let v: Option<String> = redis::cmd("GET")
                .arg(key)
                .query_async(raw)
                .await
                .context("raw GET")?;
            ensure!(black_box(v).is_some(), "raw GET found no token");
        }
        Ok(start.elapsed())
    }
    async fn misses(client: &TokenClient, n: u64) -> Result<Duration> {
        let start = Instant::now();
        for _ in 0..n {
            black_box(client.access_token(ID).await.context("client miss")?);
        }
        Ok(start.elapsed())
    }

    // Warm up both paths and calibrate on the slower one.
    let warm = 500;
    raw_gets(raw, token_key, warm).await?;
    let took = misses(client, warm).await?;
    ensure!(
        client.cached(ID).is_none(),
        "the miss client serves from its cache; the miss figure would be a hit"
    );
    let (rounds, per_round) = if quick {
        (6u32, Duration::from_millis(70))
    } else {
        (10, Duration::from_millis(300))
    };
    let n = reads_for(per_round, warm, took).max(200);
    let (mut raw_us, mut miss_us, mut round_ratios) = (Vec::new(), Vec::new(), Vec::new());
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    for round in 0..rounds {
        let (r, m) = if round % 2 == 0 {
            let r = raw_gets(raw, token_key, n).await?;
            (r, misses(client, n).await?)
        } else {
            let m = misses(client, n).await?;
            (raw_gets(raw, token_key, n).await?, m)
        };
        raw_us.push(us(r));
        miss_us.push(us(m));
        round_ratios.push(m.as_secs_f64() / r.as_secs_f64().max(f64::MIN_POSITIVE));
    }
    // Medians: one round disturbed by other load moves neither figure much.
    let ratio = median(&round_ratios);
    let round_min = round_ratios.iter().copied().fold(f64::INFINITY, f64::min);
    let round_max = round_ratios.iter().copied().fold(0.0, f64::max);
    let json = json!({
        "rounds": rounds,
        "ops_per_round_each": n,
        "raw_get_us_median": median(&raw_us),
        "client_miss_us_median": median(&miss_us),
        "ratio_median_of_rounds": ratio,
        "raw_get_us_rounds": raw_us,
        "client_miss_us_rounds": miss_us,
        "round_ratios": round_ratios,
    });
    Ok(MissVsRaw {
        raw_us: median(&raw_us),
        miss_us: median(&miss_us),
        ratio,
        rounds,
        round_min,
        round_max,
        json,
    })
}

// ------------------------------------------------------------------- part 3

/// Result of one load run (either side).
#[derive(Debug, Clone, Copy)]
struct Load {
    rps: f64,
    p50_ms: f64,
    p99_ms: f64,
    requests: u64,
    /// CPU time of the server (wxtoken replica, redis-server) per request.
    server_cpu_us: Option<f64>,
    /// CPU time of the load generator per request.
    client_cpu_us: Option<f64>,
}

impl Load {
    fn new(rps: f64, p50_ms: f64, p99_ms: f64, requests: u64) -> Self {
        Self {
            rps,
            p50_ms,
            p99_ms,
            requests,
            server_cpu_us: None,
            client_cpu_us: None,
        }
    }

    fn json(&self) -> Value {
        json!({
            "rps": self.rps,
            "p50_ms": self.p50_ms,
            "p99_ms": self.p99_ms,
            "requests": self.requests,
            "server_cpu_us_per_request": self.server_cpu_us,
            "loader_cpu_us_per_request": self.client_cpu_us,
        })
    }

    fn text(&self) -> String {
        format!(
            "{} req/s, p50 {:.3} / p99 {:.3} ms",
            group(self.rps),
            self.p50_ms,
            self.p99_ms
        )
    }
}

/// Part 3: one replica's HTTP endpoint next to `redis-benchmark`.
async fn http_vs_redis(quick: bool, rows: &mut Vec<Row>) -> Result<Value> {
    let Some(bin) = wxtoken_binary() else {
        rows.push(Row::new(
            SECTION,
            "HTTP vs redis-benchmark",
            "skipped: no wxtoken binary (cargo build --release -p wxtoken-coordinator \
             --bin wxtoken, or set WXTOKEN_BIN)",
        ));
        return Ok(json!({ "skipped": "no wxtoken binary" }));
    };
    let redis_benchmark = on_path("redis-benchmark");
    let wrk = on_path("wrk");
    let (concurrency, secs): (&[usize], u64) = if quick { (&[10], 2) } else { (&[1, 10, 50], 8) };
    let duration = Duration::from_secs(secs);

    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(3600),
        ..Timing::default()
    })
    .await;
    // The fleet's replicas log at debug (per request); serve at warn as in production.
    let http = fleet
        .spawn_replica_env(SECRET, &[("RUST_LOG", "warn")])
        .http;
    let stored = wait_token(&fleet, Duration::from_secs(20)).await?;
    let body = match probe(http, &stored, Duration::from_secs(15)).await {
        Ok(body) => body,
        Err(e) => {
            let logs = fleet.all_logs();
            let tail: Vec<&str> = logs.lines().rev().take(20).collect();
            bail!(
                "{e:#}; replica log tail:\n{}",
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            );
        }
    };
    let body_len = body.len();

    // The key redis-benchmark's GET reads (it does not create it), holding as
    // many bytes as the HTTP body.
    let mut conn = fleet.conn().await;
    let _: () = redis::cmd("SET")
        .arg("key:__rand_int__")
        .arg("x".repeat(body_len))
        .query_async(&mut conn)
        .await
        .context("SET key:__rand_int__")?;

    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loader = match &wrk {
        Some(_) => "wrk -t2 (-t1 at C=1)",
        None => "built-in closed loop: 1 thread, C keep-alive HTTP/1.1 connections",
    };
    let request =
        format!("GET {PATH} HTTP/1.1\r\nHost: {http}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n");
    let load_http = async |c: usize, d: Duration| match &wrk {
        Some(wrk) => run_wrk(wrk, http, c, d).await,
        None => builtin_load_one_thread(http, &request, c, d).await,
    };
    // Warm up the server (connections, allocator) and the loader.
    let warm = if quick {
        Duration::from_millis(300)
    } else {
        Duration::from_secs(1)
    };
    load_http(10, warm).await?;

    let replica_pid = fleet
        .replicas
        .first()
        .and_then(|r| u32::try_from(r.pid().as_raw()).ok());
    let redis_pid = fleet.redis.pid();
    let mut points = Vec::new();
    if redis_benchmark.is_none() {
        rows.push(Row::new(
            SECTION,
            "redis-benchmark GET",
            "skipped: redis-benchmark not on PATH",
        ));
    }
    for &c in concurrency {
        let redis = match &redis_benchmark {
            Some(rb) => Some(
                run_redis_benchmark(rb, fleet.redis.port(), redis_pid, c, body_len, duration)
                    .await?,
            ),
            None => None,
        };
        let cpu0 = pid_cpu(replica_pid);
        let mut load = load_http(c, duration).await?;
        load.server_cpu_us = per_request(cpu0, pid_cpu(replica_pid), load.requests);
        if let Some(r) = &redis {
            rows.push(Row::new(
                SECTION,
                format!("C={c}: redis-benchmark -t get ({body_len} B value, 1 thread)"),
                r.text(),
            ));
        }
        rows.push(
            Row::new(
                SECTION,
                format!(
                    "C={c}: HTTP GET {PATH} (1 replica), {loader}; loader and servers share the {cores} cores"
                ),
                load.text(),
            )
            .target(
                format!("p99 ≤ {HTTP_TARGET_P99_MS} ms"),
                load.p99_ms <= HTTP_TARGET_P99_MS,
            ),
        );
        let ratio = redis.map(|r| load.rps / r.rps.max(f64::MIN_POSITIVE));
        if let Some(ratio) = ratio {
            rows.push(
                Row::new(
                    SECTION,
                    format!("C={c}: HTTP / redis-benchmark req/s"),
                    format!("{ratio:.2} ×"),
                )
                .target(
                    format!("≥ {HTTP_TARGET_RATIO:.1} × Redis GET"),
                    ratio >= HTTP_TARGET_RATIO,
                ),
            );
        }
        let us = |v: Option<f64>| v.map_or("?".to_owned(), |v| format!("{v:.1}"));
        rows.push(Row::new(
            SECTION,
            format!("C={c}: CPU per request, server / load generator"),
            format!(
                "wxtoken {} / loader {} µs; redis-server {} / redis-benchmark {} µs",
                us(load.server_cpu_us),
                us(load.client_cpu_us),
                us(redis.and_then(|r| r.server_cpu_us)),
                us(redis.and_then(|r| r.client_cpu_us)),
            ),
        ));
        points.push(json!({
            "concurrency": c,
            "redis_benchmark": redis.map(|r| r.json()),
            "http": load.json(),
            "http_over_redis_rps": ratio,
        }));
    }
    let errors = fleet
        .all_logs()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .count();
    drop(fleet);
    Ok(json!({
        "loader": loader,
        "wxtoken_bin": bin.display().to_string(),
        "duration_s": secs,
        "body_bytes": body_len,
        "replica_error_lines": errors,
        "points": points,
    }))
}

/// The binary `crate::wxtoken_bin` would use, if it exists (it panics, or
/// builds a debug binary, otherwise).
pub(super) fn wxtoken_binary() -> Option<PathBuf> {
    if let Some(bin) = std::env::var_os("WXTOKEN_BIN") {
        let bin = PathBuf::from(bin);
        return bin.exists().then(crate::wxtoken_bin);
    }
    let exe = std::env::current_exe().ok()?;
    let parent = exe.parent()?;
    let found = [Some(parent), parent.parent()]
        .into_iter()
        .flatten()
        .any(|d| d.join("wxtoken").exists());
    found.then(crate::wxtoken_bin)
}

pub(super) fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Waits until the fleet has stored a token.
pub(super) async fn wait_token(fleet: &Fleet, deadline: Duration) -> Result<String> {
    let until = Instant::now() + deadline;
    loop {
        if let Some(t) = fleet.token().await {
            return Ok(t.value);
        }
        if Instant::now() >= until {
            bail!("the replica stored no token within {deadline:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks (retrying until `deadline`) that the endpoint answers 200 with the
/// stored token as JSON; returns the body.
async fn probe(addr: SocketAddr, token: &str, deadline: Duration) -> Result<Vec<u8>> {
    let until = Instant::now() + deadline;
    let request =
        format!("GET {PATH} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {API_KEY}\r\n\r\n");
    let mut last = anyhow::anyhow!("no attempt");
    while Instant::now() < until {
        let attempt = async {
            let mut conn = Conn::connect(addr).await?;
            let (status, body) = conn.roundtrip(request.as_bytes()).await?;
            ensure!(
                status == 200,
                "HTTP {status}: {}",
                String::from_utf8_lossy(&body)
            );
            let v: Value = serde_json::from_slice(&body).context("body is not JSON")?;
            ensure!(
                v["access_token"].as_str() == Some(token),
                "body does not hold the stored token: {v}"
            );
            Ok(body)
        };
        match attempt.await {
            Ok(body) => return Ok(body),
            Err(e) => last = e,
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Err(last.context(format!(
        "GET {PATH} on {addr} never answered 200 with the token"
    )))
}

/// One keep-alive HTTP/1.1 connection, one request in flight.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    async fn connect(addr: SocketAddr) -> Result<Self> {
        let stream = TcpStream::connect(addr)
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        stream.set_nodelay(true).context("TCP_NODELAY")?;
        Ok(Self {
            stream,
            buf: Vec::with_capacity(4096),
        })
    }

    /// Sends `request`, reads the full response; returns (status, body).
    async fn roundtrip(&mut self, request: &[u8]) -> Result<(u16, Vec<u8>)> {
        let (status, start, len) = self.exchange(request).await?;
        let body = self.buf[start..start + len].to_vec();
        self.buf.drain(..start + len);
        Ok((status, body))
    }

    /// The load loop's variant of [`Self::roundtrip`]: no body copy.
    async fn status_only(&mut self, request: &[u8]) -> Result<u16> {
        let (status, start, len) = self.exchange(request).await?;
        self.buf.drain(..start + len);
        Ok(status)
    }

    /// Writes `request` and reads until a whole response is buffered;
    /// returns (status, body offset, body length).
    async fn exchange(&mut self, request: &[u8]) -> Result<(u16, usize, usize)> {
        self.stream
            .write_all(request)
            .await
            .context("writing the request")?;
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        let (status, len) = super::loadgen::response_head(&self.buf[..head_end])?;
        while self.buf.len() < head_end + len {
            self.fill().await?;
        }
        Ok((status, head_end, len))
    }

    async fn fill(&mut self) -> Result<()> {
        let n = self
            .stream
            .read_buf(&mut self.buf)
            .await
            .context("reading the response")?;
        ensure!(n > 0, "the server closed the connection");
        Ok(())
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// C tasks, each on its own keep-alive connection, sending requests back to
/// back for `duration`; every response must be 200.
async fn builtin_load(
    addr: SocketAddr,
    request: &str,
    c: usize,
    duration: Duration,
) -> Result<Load> {
    let mut conns = Vec::with_capacity(c);
    for _ in 0..c {
        conns.push(Conn::connect(addr).await?);
    }
    let (go_tx, go_rx) = tokio::sync::watch::channel(None::<Instant>);
    let mut tasks = tokio::task::JoinSet::new();
    for mut conn in conns {
        let mut go = go_rx.clone();
        let request = request.as_bytes().to_vec();
        tasks.spawn(async move {
            let start = *go.wait_for(Option::is_some).await.context("start signal")?;
            let Some(start) = start else {
                bail!("no start instant");
            };
            let until = start + duration;
            let mut lat = Vec::with_capacity(1 << 16);
            let mut bad = 0u64;
            let mut end = Instant::now();
            while end < until {
                let t = end;
                if conn.status_only(&request).await? != 200 {
                    bad += 1;
                }
                end = Instant::now();
                lat.push(u32::try_from((end - t).as_nanos()).unwrap_or(u32::MAX));
            }
            anyhow::Ok((lat, bad, end))
        });
    }
    let start = Instant::now();
    go_tx.send_replace(Some(start));
    let mut lat = Vec::new();
    let mut bad = 0;
    let mut end = start;
    while let Some(done) = tasks.join_next().await {
        let (l, b, e) = done.context("load task")??;
        lat.extend(l);
        bad += b;
        end = end.max(e);
    }
    ensure!(bad == 0, "{bad} responses were not 200");
    lat.sort_unstable();
    let pct = |p: usize| {
        lat.get((lat.len() * p / 100).min(lat.len().saturating_sub(1)))
            .map_or(0.0, |&ns| f64::from(ns) / 1e6)
    };
    Ok(Load::new(
        lat.len() as f64 / (end - start).as_secs_f64().max(f64::MIN_POSITIVE),
        pct(50),
        pct(99),
        lat.len() as u64,
    ))
}

/// [`builtin_load`] on one dedicated thread with its own current-thread
/// runtime: thread for thread what redis-benchmark is.
async fn builtin_load_one_thread(
    addr: SocketAddr,
    request: &str,
    c: usize,
    duration: Duration,
) -> Result<Load> {
    let request = request.to_owned();
    tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("loader runtime")?;
        let cpu0 = cpu_of("/proc/thread-self/stat", false);
        let mut load = rt.block_on(builtin_load(addr, &request, c, duration))?;
        load.client_cpu_us =
            per_request(cpu0, cpu_of("/proc/thread-self/stat", false), load.requests);
        Ok(load)
    })
    .await
    .context("loader thread")?
}

/// `wrk -t2 -c C -d D --latency` (`-t1` when C = 1).
async fn run_wrk(wrk: &PathBuf, addr: SocketAddr, c: usize, duration: Duration) -> Result<Load> {
    let mut cmd = tokio::process::Command::new(wrk);
    cmd.args(["-t", &c.clamp(1, 2).to_string(), "-c", &c.to_string()])
        .arg("-d")
        .arg(format!("{}ms", duration.as_millis().max(1000)))
        .arg("--latency")
        .arg("-H")
        .arg(format!("Authorization: Bearer {API_KEY}"))
        .arg(format!("http://{addr}{PATH}"))
        .kill_on_drop(true);
    let cpu0 = cpu_of("/proc/self/stat", true);
    let out = tokio::time::timeout(duration * 2 + Duration::from_secs(10), cmd.output())
        .await
        .context("wrk did not finish in time")?
        .context("running wrk")?;
    let cpu1 = cpu_of("/proc/self/stat", true);
    let text = String::from_utf8_lossy(&out.stdout);
    ensure!(
        out.status.success(),
        "wrk failed: {}{}",
        text,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut load = parse_wrk(&text)?;
    load.client_cpu_us = per_request(cpu0, cpu1, load.requests);
    Ok(load)
}

fn parse_wrk(text: &str) -> Result<Load> {
    if let Some(l) = text
        .lines()
        .find(|l| l.contains("Non-2xx") || l.contains("Socket errors"))
    {
        bail!("wrk saw errors: {}", l.trim());
    }
    let field = |first: &str| {
        text.lines()
            .map(str::split_whitespace)
            .find_map(|mut w| (w.next() == Some(first)).then(|| w.next()).flatten())
            .with_context(|| format!("no {first:?} line in wrk output:\n{text}"))
    };
    let rps: f64 = field("Requests/sec:")?
        .parse()
        .context("wrk Requests/sec")?;
    let requests = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    Ok(Load::new(
        rps,
        wrk_ms(field("50%")?)?,
        wrk_ms(field("99%")?)?,
        requests,
    ))
}

/// wrk's latency ("123.45us", "1.23ms", "1.02s", "1.00m") in milliseconds.
fn wrk_ms(v: &str) -> Result<f64> {
    let (num, scale) = if let Some(n) = v.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1e3)
    } else if let Some(n) = v.strip_suffix('m') {
        (n, 60e3)
    } else {
        (v, 1.0)
    };
    Ok(num
        .parse::<f64>()
        .with_context(|| format!("wrk latency {v:?}"))?
        * scale)
}

/// `redis-benchmark -t get -c C -n N --csv`, N calibrated so the run lasts
/// about `duration`.
async fn run_redis_benchmark(
    bin: &PathBuf,
    port: u16,
    server_pid: Option<u32>,
    c: usize,
    body_len: usize,
    duration: Duration,
) -> Result<Load> {
    async fn once(
        bin: &PathBuf,
        port: u16,
        c: usize,
        n: u64,
        d: usize,
        limit: Duration,
    ) -> Result<Load> {
        let mut cmd = tokio::process::Command::new(bin);
        cmd.args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "get"])
            .args(["-c", &c.to_string(), "-n", &n.to_string()])
            .args(["-d", &d.to_string(), "--csv"])
            .kill_on_drop(true);
        let out = tokio::time::timeout(limit, cmd.output())
            .await
            .context("redis-benchmark did not finish in time")?
            .context("running redis-benchmark")?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "redis-benchmark failed: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut load = parse_redis_csv(&text)?;
        load.requests = n;
        Ok(load)
    }
    let calib_n = if c == 1 { 5_000 } else { 20_000 };
    let calib = once(bin, port, c, calib_n, body_len, Duration::from_secs(15)).await?;
    let n = ((calib.rps * duration.as_secs_f64()) as u64).clamp(10_000, 20_000_000);
    let (server0, client0) = (pid_cpu(server_pid), cpu_of("/proc/self/stat", true));
    let limit = duration * 3 + Duration::from_secs(10);
    let mut load = once(bin, port, c, n, body_len, limit).await?;
    load.server_cpu_us = per_request(server0, pid_cpu(server_pid), n);
    load.client_cpu_us = per_request(client0, cpu_of("/proc/self/stat", true), n);
    Ok(load)
}

/// Redis 7's `--csv`: a header line, then `"GET","rps","avg",…` (quoted).
fn parse_redis_csv(text: &str) -> Result<Load> {
    let split = |l: &str| -> Vec<String> {
        l.trim()
            .split(',')
            .map(|f| f.trim().trim_matches('"').to_owned())
            .collect()
    };
    let header = text
        .lines()
        .find(|l| l.contains("rps"))
        .map(split)
        .with_context(|| format!("no CSV header in redis-benchmark output:\n{text}"))?;
    let row = text
        .lines()
        .map(split)
        .find(|f| f.first().is_some_and(|t| t == "GET"))
        .with_context(|| format!("no GET row in redis-benchmark output:\n{text}"))?;
    let col = |name: &str| -> Result<f64> {
        let i = header
            .iter()
            .position(|h| h == name)
            .with_context(|| format!("no {name} column in {header:?}"))?;
        row.get(i)
            .and_then(|v| v.parse().ok())
            .with_context(|| format!("bad {name} in {row:?}"))
    };
    Ok(Load::new(
        col("rps")?,
        col("p50_latency_ms")?,
        col("p99_latency_ms")?,
        0,
    ))
}

// ------------------------------------------------------------------ helpers

/// User + system CPU time from a `/proc/…/stat` file: of the process or
/// thread itself, or (`children`) of its waited-for children. 10 ms steps.
fn cpu_of(stat: &str, children: bool) -> Option<Duration> {
    let text = std::fs::read_to_string(stat).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14–17 of proc(5): utime, stime, cutime, cstime (index 0 is field 3).
    let (a, b) = if children { (13, 14) } else { (11, 12) };
    let ticks = fields.get(a)?.parse::<u64>().ok()? + fields.get(b)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

fn pid_cpu(pid: Option<u32>) -> Option<Duration> {
    cpu_of(&format!("/proc/{}/stat", pid?), false)
}

/// µs of CPU per request between two readings.
fn per_request(before: Option<Duration>, after: Option<Duration>, requests: u64) -> Option<f64> {
    (requests > 0).then_some(())?;
    Some(after?.saturating_sub(before?).as_secs_f64() * 1e6 / requests as f64)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    match s.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

/// 15.0 M, 16.4 K, 950.
fn si(x: f64) -> String {
    if x >= 1e6 {
        format!("{:.1} M", x / 1e6)
    } else if x >= 1e3 {
        format!("{:.1} K", x / 1e3)
    } else {
        format!("{x:.0}")
    }
}

/// 105 000 (thousands grouped with spaces, as in BENCHMARKS.md).
pub(super) fn group(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(' ');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsers() {
        let csv = "\"test\",\"rps\",\"avg_latency_ms\",\"min_latency_ms\",\"p50_latency_ms\",\"p95_latency_ms\",\"p99_latency_ms\",\"max_latency_ms\"\n\"GET\",\"238095.23\",\"0.026\",\"0.008\",\"0.023\",\"0.047\",\"0.143\",\"0.631\"\n";
        let l = parse_redis_csv(csv).unwrap();
        assert_eq!((l.rps, l.p50_ms, l.p99_ms), (238095.23, 0.023, 0.143));
        let wrk = "Running 2s test @ http://127.0.0.1:1/v1/apps/shop/access_token
  2 threads and 10 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency   101.23us   50.00us   3.10ms   90.00%
    Req/Sec    50.00k     1.00k   52.00k    70.00%
  Latency Distribution
     50%   88.00us
     75%  100.00us
     90%  150.00us
     99%    1.56ms
  200000 requests in 2.00s, 50.00MB read
Requests/sec: 100000.50
Transfer/sec:     25.00MB
";
        let l = parse_wrk(wrk).unwrap();
        assert_eq!(l.rps, 100000.50);
        assert_eq!(l.requests, 200000);
        assert!((l.p50_ms - 0.088).abs() < 1e-9 && (l.p99_ms - 1.56).abs() < 1e-9);
        assert!(parse_wrk(&format!("{wrk}  Non-2xx or 3xx responses: 5\n")).is_err());
        assert_eq!(group(1234567.0), "1 234 567");
        assert_eq!(group(950.0), "950");
    }
}
