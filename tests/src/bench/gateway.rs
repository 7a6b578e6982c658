//! Gateway overhead: a `wxtoken serve` replica's gateway (`/wx/shop/…`)
//! next to Debian's nginx doing a plain `proxy_pass` with a fixed token, in
//! front of the same wechat-sim, in one run on one machine.
//!
//! Per concurrency C (1 / 10 / 50) and per call (`GET getcallbackip`,
//! `POST message/custom/send`), the closed-loop loader of [`super::loadgen`]
//! runs against three targets: the simulator directly (the baseline, with
//! the token in the query), nginx, and the gateway. The targets take turns
//! in rounds (the order rotates each round) and the rounds are pooled, so a
//! burst of load from elsewhere on the machine lands on all three.
//! "Added p50" = p50 through the proxy − p50 direct. Every answer is
//! checked (HTTP 200 and a good body); any error fails the section.
//!
//! The fleet's token lives an hour: no refresh happens while measuring.
//!
//! Two layouts. `gateway`: loader (one thread), simulator (the bench's
//! runtime), nginx and the replica share the machine's cores, as the issue
//! asks. `gateway-pinned` ([`run_pinned`]): the bench process on core 0,
//! the proxy under test on core 1 with one worker (nginx
//! `worker_processes 1`, the replica `http.workers = 1`), as when the proxy
//! has a machine of its own: its CPU no longer competes with the loader's,
//! so "added p50" is the proxy's own time rather than shared-core queueing.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};

use super::Row;
use super::loadgen::{Sample, Target, load, probe, proc_cpu_split};
use super::nginx::{self, Nginx};
use super::pin;
use super::read_path::{group, wait_token, wxtoken_binary};
use crate::{API_KEY, Fleet, ID, SECRET, Timing};

/// How the processes sit on the cores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Everything shares every core.
    Shared,
    /// The bench on core 0, the proxy under test on core 1.
    Pinned,
}

impl Layout {
    fn section(self) -> &'static str {
        match self {
            Self::Shared => "gateway",
            Self::Pinned => "gateway-pinned",
        }
    }

    /// nginx's `worker_processes` and the replica's `http.workers`.
    fn workers(self) -> (&'static str, &'static str) {
        match self {
            Self::Shared => (nginx::WORKERS, "one per CPU (the default)"),
            Self::Pinned => ("1", "1"),
        }
    }
}
/// Targets (issue: gateway overhead next to nginx).
const RPS_TARGET: f64 = 1.0;
const ADDED_P50_TARGET_US: f64 = 100.0;

/// The calls measured: (label, API path, POST body).
const CALLS: [(&str, &str, Option<&str>); 2] = [
    ("GET getcallbackip", "cgi-bin/getcallbackip", None),
    (
        "POST message/custom/send",
        "cgi-bin/message/custom/send",
        Some(r#"{"touser":"oUser1","msgtype":"text","text":{"content":"hello"}}"#),
    ),
];

#[derive(Debug, Clone, Copy)]
struct Plan {
    concurrency: &'static [usize],
    rounds: usize,
    per_round: Duration,
    warm: Duration,
}

impl Plan {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                concurrency: &[10],
                rounds: 1,
                per_round: Duration::from_millis(400),
                warm: Duration::from_millis(200),
            }
        } else {
            Self {
                concurrency: &[1, 10, 50],
                rounds: 3,
                per_round: Duration::from_secs(2),
                warm: Duration::from_secs(1),
            }
        }
    }
}

/// Runs the section: `quick` ≈ 5 s, the full run ≈ 2.5 min.
pub async fn run(quick: bool) -> Result<(Vec<Row>, Value)> {
    run_in(quick, Layout::Shared).await
}

/// The `gateway-pinned` section: [`run`] with the bench on core 0 and each
/// proxy on core 1 (skipped on a single core).
pub async fn run_pinned(quick: bool) -> Result<(Vec<Row>, Value)> {
    let cores = pin::cores();
    if cores < 2 {
        let why = format!("skipped: {cores} core(s); pinning needs 2");
        return Ok((
            vec![Row::new(Layout::Pinned.section(), "gateway vs nginx", &why)],
            json!({ "skipped": why }),
        ));
    }
    let result = run_in(quick, Layout::Pinned).await;
    pin::unpin_self(cores)?;
    result
}

async fn run_in(quick: bool, layout: Layout) -> Result<(Vec<Row>, Value)> {
    let section = layout.section();
    let mut rows = Vec::new();
    let Some(bin) = wxtoken_binary() else {
        rows.push(Row::new(
            section,
            "gateway vs nginx",
            "skipped: no wxtoken binary (cargo build --release -p wxtoken-coordinator \
             --bin wxtoken, or set WXTOKEN_BIN)",
        ));
        return Ok((rows, json!({ "skipped": "no wxtoken binary" })));
    };
    let nginx_bin = nginx::find()?;
    let plan = Plan::new(quick);

    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(3600),
        ..Timing::default()
    })
    .await;
    // Per-request debug logging would measure the log, not the gateway.
    let (nginx_workers, replica_workers) = layout.workers();
    let mut env = vec![("RUST_LOG", "warn")];
    if layout == Layout::Pinned {
        env.push(("WXTOKEN__HTTP__WORKERS", replica_workers));
    }
    let gateway = fleet.spawn_replica_env(SECRET, &env).http;
    let replica_pid = fleet
        .replicas
        .first()
        .map(|r| r.pid().as_raw().unsigned_abs());
    let token = wait_token(&fleet, Duration::from_secs(20)).await?;
    ensure!(
        token
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.~".contains(c)),
        "the token has characters nginx's config would need escaped"
    );
    let sim = fleet.sim.addr();
    let nginx_addr: SocketAddr = ([127, 0, 0, 1], wxtoken_testkit::free_port()).into();
    let nginx = tokio::task::spawn_blocking({
        let (bin, token) = (nginx_bin.clone(), token.clone());
        move || Nginx::start(&bin, nginx_addr, sim, &token, nginx_workers)
    })
    .await
    .context("nginx start task")??;

    let auth = format!("Authorization: Bearer {API_KEY}\r\n");
    let mut calls = Vec::new();
    for (label, path, body) in CALLS {
        let proxied = format!("/wx/{ID}/{path}");
        let targets = [
            Target::new(sim, &format!("/{path}?access_token={token}"), body, ""),
            Target::new(nginx.addr, &proxied, body, &auth),
            Target::new(gateway, &proxied, body, &auth),
        ];
        for (name, t) in NAMES.iter().zip(&targets) {
            let answer = probe_until(t, Duration::from_secs(15)).await;
            if let Err(e) = answer {
                let logs = match *name {
                    "nginx" => nginx.logs(),
                    _ => tail(&fleet.all_logs(), 20),
                };
                bail!("{label} via {name} does not work: {e:#}\n{logs}");
            }
        }
        calls.push((label, targets));
    }

    let cores = pin::cores();
    if layout == Layout::Pinned {
        // Both proxies on core 1, the loader and the simulator on core 0.
        pin::pin(None, 0)?;
        for pid in nginx.pids().into_iter().chain(replica_pid) {
            pin::pin(Some(pid), 1)?;
        }
    }
    let mut points = Vec::new();
    for (label, targets) in &calls {
        // Warm up connections, pools and allocators on all three.
        for t in targets {
            load(t, 10, plan.warm).await?;
        }
        for &c in plan.concurrency {
            let mut point = measure(targets, c, &plan, replica_pid, &nginx).await?;
            for (name, s) in NAMES.iter().zip(&point.samples) {
                if s.errors > 0 {
                    bail!(
                        "{label} via {name} at C={c}: {} errors of {} calls; first: {}",
                        s.errors,
                        s.requests() + s.errors,
                        s.first_error.as_deref().unwrap_or("?")
                    );
                }
            }
            point.rows(section, label, c, &mut rows);
            points.push(point.json(label, c));
        }
    }
    let replica_errors = fleet
        .all_logs()
        .lines()
        .filter(|l| l.contains("ERROR") || l.contains("panicked"))
        .count();
    let refreshes = fleet.app().fetch_ok;
    let nginx_version = nginx.version.clone();
    drop(nginx);
    drop(fleet);
    Ok((
        rows,
        json!({
            "quick": quick,
            "cores": cores,
            "layout": section,
            "replica_workers": replica_workers,
            "nginx": { "bin": nginx_bin.display().to_string(), "version": nginx_version, "worker_processes": nginx_workers },
            "wxtoken_bin": bin.display().to_string(),
            "rounds": plan.rounds,
            "seconds_per_round": plan.per_round.as_secs_f64(),
            "upstream_token_fetches_ok": refreshes,
            "replica_error_lines": replica_errors,
            "points": points,
        }),
    ))
}

const NAMES: [&str; 3] = ["direct", "nginx", "gateway"];

/// One C of one call: the pooled samples of direct, nginx and gateway, and
/// the CPU each proxy spent.
struct Point {
    samples: [Sample; 3],
    /// CPU µs per request of nginx (all processes) and of the replica.
    proxy_cpu_us: [Option<f64>; 2],
    /// Of which in the kernel (system time).
    proxy_sys_us: [Option<f64>; 2],
}

async fn measure(
    targets: &[Target; 3],
    c: usize,
    plan: &Plan,
    replica_pid: Option<u32>,
    nginx: &Nginx,
) -> Result<Point> {
    let mut samples: [Sample; 3] = Default::default();
    let mut cpu = [(Duration::ZERO, Duration::ZERO); 2];
    let cpu_of = |i: usize| -> Option<(Duration, Duration)> {
        let stat = |p: u32| proc_cpu_split(&format!("/proc/{p}/stat"));
        match i {
            1 => nginx
                .pids()
                .into_iter()
                .map(stat)
                .try_fold((Duration::ZERO, Duration::ZERO), |(u, s), one| {
                    one.map(|(du, ds)| (u + du, s + ds))
                }),
            2 => stat(replica_pid?),
            _ => None,
        }
    };
    for round in 0..plan.rounds {
        for k in 0..3 {
            let i = (round + k) % 3;
            let before = cpu_of(i);
            let s = load(&targets[i], c, plan.per_round).await?;
            if let (Some(a), Some(b)) = (before, cpu_of(i)) {
                cpu[i - 1].0 += b.0.saturating_sub(a.0);
                cpu[i - 1].1 += b.1.saturating_sub(a.1);
            }
            samples[i].merge(s);
        }
    }
    let per = |i: usize, t: Duration| {
        let n = samples[i + 1].requests();
        (n > 0 && !t.is_zero()).then(|| t.as_secs_f64() * 1e6 / n as f64)
    };
    let proxy_cpu_us = [0, 1].map(|i| per(i, cpu[i].0 + cpu[i].1));
    let proxy_sys_us = [0, 1].map(|i| per(i, cpu[i].1));
    Ok(Point {
        samples,
        proxy_cpu_us,
        proxy_sys_us,
    })
}

impl Point {
    fn rows(&mut self, section: &'static str, label: &str, c: usize, rows: &mut Vec<Row>) {
        let direct_p50 = self.samples[0].pct_us(50.0);
        for (i, s) in self.samples.iter_mut().enumerate() {
            let (p50, p99) = (s.pct_us(50.0), s.pct_us(99.0));
            let mut value = format!("{} req/s, p50 {p50:.0} / p99 {p99:.0} µs", group(s.rps()),);
            if i > 0 {
                value.push_str(&format!(", added p50 {:+.0} µs", p50 - direct_p50));
            }
            if let Some(cpu) = i.checked_sub(1).and_then(|j| self.proxy_cpu_us[j]) {
                value.push_str(&format!(", {cpu:.1} µs CPU/req"));
            }
            if let Some(sys) = i.checked_sub(1).and_then(|j| self.proxy_sys_us[j]) {
                value.push_str(&format!(" ({sys:.1} µs in the kernel)"));
            }
            let what = match i {
                0 => "direct to wechat-sim (baseline)".to_owned(),
                1 => "nginx proxy_pass".to_owned(),
                _ => "wxtoken gateway (1 replica)".to_owned(),
            };
            rows.push(Row::new(section, format!("C={c} {label}: {what}"), value));
        }
        let ratio = self.samples[2].rps() / self.samples[1].rps().max(f64::MIN_POSITIVE);
        rows.push(
            Row::new(
                section,
                format!("C={c} {label}: gateway / nginx req/s"),
                format!("{ratio:.2} ×"),
            )
            .target(format!("≥ {RPS_TARGET:.1} ×"), ratio >= RPS_TARGET),
        );
        let added = self.samples[2].pct_us(50.0) - direct_p50;
        rows.push(
            Row::new(
                section,
                format!("C={c} {label}: gateway added p50"),
                format!("{added:.0} µs"),
            )
            .target(
                format!("≤ {ADDED_P50_TARGET_US:.0} µs"),
                added <= ADDED_P50_TARGET_US,
            ),
        );
    }

    fn json(&mut self, label: &str, c: usize) -> Value {
        let direct_p50 = self.samples[0].pct_us(50.0);
        let mut out = serde_json::Map::new();
        for (i, name) in NAMES.iter().enumerate() {
            let s = &mut self.samples[i];
            let p50 = s.pct_us(50.0);
            out.insert(
                (*name).to_owned(),
                json!({
                    "rps": s.rps(),
                    "requests": s.requests(),
                    "errors": s.errors,
                    "p50_us": p50,
                    "p99_us": s.pct_us(99.0),
                    "added_p50_us": (i > 0).then_some(p50 - direct_p50),
                    "proxy_cpu_us_per_request": i.checked_sub(1).and_then(|j| self.proxy_cpu_us[j]),
                    "proxy_sys_us_per_request": i.checked_sub(1).and_then(|j| self.proxy_sys_us[j]),
                    "loader_cpu_us_per_request": s.loader_cpu.as_secs_f64() * 1e6 / s.requests().max(1) as f64,
                }),
            );
        }
        out.insert("call".into(), json!(label));
        out.insert("concurrency".into(), json!(c));
        out.insert(
            "gateway_over_nginx_rps".into(),
            json!(self.samples[2].rps() / self.samples[1].rps().max(f64::MIN_POSITIVE)),
        );
        Value::Object(out)
    }
}

/// Retries [`probe`] until it succeeds or `deadline` passes (a proxy may
/// still be starting).
async fn probe_until(t: &Target, deadline: Duration) -> Result<String> {
    let until = std::time::Instant::now() + deadline;
    loop {
        match probe(t).await {
            Ok(body) => return Ok(body),
            Err(e) if std::time::Instant::now() >= until => return Err(e),
            Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
