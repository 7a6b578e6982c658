//! The platform chaos profile (issue 14): `wxtoken serve` replicas with one
//! component, each reaching Redis through its own fault proxy, while
//! merchants authorize and revoke all the time (one change every
//! `churn_every`, pushed to the event URL) and a seeded schedule kills
//! replicas (the event URL's one included), stops one past its lock,
//! restarts Redis empty, FLUSHes it, or blackholes a replica's Redis link.
//!
//! Pass criteria, after a settle time at the end:
//! - every authorizer WeChat counts as authorized and whose authorization
//!   the fleet heard has a valid token stored, and no merchant had to
//!   authorize again (nothing in the fleet revoked a live authorization);
//! - every revoked authorizer has no token and is not refreshed;
//! - no refresh token was refused for a live authorization (61023): none
//!   was lost or left stale;
//! - no secret, refresh token or token of the chain in any replica log.
//!
//! Concurrent fetches of one authorizer are reported, not judged (a process
//! stopped mid-call can overlap its successor; the stale fetch is then
//! replaced, see `wxtoken_stale_fetches_total`).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use wechat_sim::{PushOutcome, TokenState};
use wxtoken_testkit::{FaultProxy, ProxyMode};

use crate::{COMPONENT, COMPONENT_APPID, Fleet, SECRET, Timing};

/// What to run.
#[derive(Debug, Clone)]
pub struct PlatformChaos {
    pub duration: Duration,
    pub seed: u64,
    pub replicas: usize,
    pub fault_every: Duration,
    /// One authorization or revocation this often.
    pub churn_every: Duration,
}

impl PlatformChaos {
    pub fn new(duration: Duration, seed: u64) -> Self {
        Self {
            duration,
            seed,
            replicas: 3,
            fault_every: Duration::from_secs(8),
            churn_every: Duration::from_millis(100),
        }
    }
}

/// What happened and whether it passed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PlatformReport {
    pub seed: u64,
    pub duration_s: f64,
    pub faults: BTreeMap<&'static str, u64>,
    pub authorized: usize,
    pub revoked: usize,
    /// Authorizations whose push did not arrive (the event URL's replica
    /// was down): WeChat would retry; not judged.
    pub pushes_missed: usize,
    pub active_without_token: Vec<String>,
    pub revoked_with_token: Vec<String>,
    /// Live authorizations the fleet no longer keeps as active.
    pub reauthorized: Vec<String>,
    pub refresh_token_refusals: u64,
    pub max_concurrent_fetches_per_authorizer: u64,
    pub authorizer_calls: u64,
    pub logs_clean: bool,
    pub passed: bool,
}

impl PlatformReport {
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "{k:<48} {v}");
        };
        row(
            "seed / duration",
            format!("{} / {:.0} s", self.seed, self.duration_s),
        );
        row("faults", format!("{:?}", self.faults));
        row(
            "authorized / revoked / pushes missed",
            format!(
                "{} / {} / {}",
                self.authorized, self.revoked, self.pushes_missed
            ),
        );
        row(
            "active without a valid token",
            format!("{:?}", self.active_without_token),
        );
        row(
            "revoked with a token",
            format!("{:?}", self.revoked_with_token),
        );
        row(
            "live but not active in the registry",
            format!("{:?}", self.reauthorized),
        );
        row(
            "refresh tokens refused (61023)",
            self.refresh_token_refusals.to_string(),
        );
        row(
            "max concurrent fetches of one authorizer",
            self.max_concurrent_fetches_per_authorizer.to_string(),
        );
        row(
            "api_authorizer_token calls",
            self.authorizer_calls.to_string(),
        );
        row("logs clean", self.logs_clean.to_string());
        row("PASSED", self.passed.to_string());
        s
    }
}

const KINDS: [&str; 5] = [
    "sigkill_replica",
    "sigstop_replica",
    "redis_restart_empty",
    "redis_flushall",
    "blackhole_replica_redis_link",
];

fn appid(n: u64) -> String {
    format!("wx{:016x}", 0xc4a0_0000_u64 + n)
}

/// Replicas behind their proxies; the first listens on the event URL.
struct Replicas {
    proxies: BTreeMap<String, FaultProxy>,
    event_replica: String,
}

impl Replicas {
    async fn spawn(&mut self, fleet: &mut Fleet, event_url: bool) {
        let proxy = FaultProxy::spawn(fleet.redis.addr()).await;
        let url = proxy.url_for_redis();
        let listen = format!("127.0.0.1:{}", fleet.event_port);
        let mut env = vec![("WXTOKEN__REDIS__URL", url.as_str())];
        if event_url {
            env.push(("WXTOKEN__HTTP__LISTEN", listen.as_str()));
        }
        let r = fleet.spawn_replica_env(SECRET, &env);
        let id = r.replica_id.clone();
        if event_url {
            r.http = listen.parse().expect("an address");
            self.event_replica = id.clone();
        }
        self.proxies.insert(id, proxy);
    }
}

/// Runs the platform profile.
pub async fn run(cfg: PlatformChaos) -> anyhow::Result<PlatformReport> {
    let mut rng = StdRng::seed_from_u64(cfg.seed);
    let timing = Timing {
        token_ttl: Duration::from_secs(16),
        overlap: Duration::from_secs(4),
        refresh_ahead: Duration::from_secs(5),
        lock_ttl: Duration::from_secs(2),
        upstream_timeout: Duration::from_millis(800),
        daily_budget: 100_000,
        platform: true,
        ..Timing::default()
    };
    let settle = timing.token_ttl + Duration::from_secs(10);
    let mut fleet = Fleet::new(timing.clone()).await;
    let mut replicas = Replicas {
        proxies: BTreeMap::new(),
        event_replica: String::new(),
    };
    for i in 0..cfg.replicas.max(1) {
        replicas.spawn(&mut fleet, i == 0).await;
    }
    fleet.push_ticket().await;

    let started = Instant::now();
    let mut active: BTreeSet<String> = BTreeSet::new();
    let mut revoked: BTreeSet<String> = BTreeSet::new();
    let mut missed = 0_usize;
    let mut faults: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut next_fault = started + cfg.fault_every;
    let mut next_appid = 0_u64;
    let end = started + cfg.duration;
    while Instant::now() < end {
        // Churn: mostly new authorizations, some revocations.
        if active.len() < 10 || rng.random_bool(0.7) {
            let a = appid(next_appid);
            next_appid += 1;
            match fleet.sim.authorize(COMPONENT_APPID, &a).await {
                Ok((_, PushOutcome::Success { .. })) => {
                    active.insert(a);
                }
                Ok(_) => {
                    // Authorized at WeChat; the fleet never heard. Recovery
                    // imports would bring it in; it is not judged.
                    missed += 1;
                }
                Err(e) => anyhow::bail!("authorize: {e}"),
            }
        } else if let Some(a) = active
            .iter()
            .nth(rng.random_range(0..active.len()))
            .cloned()
        {
            // Pushed or not, WeChat now refuses its refresh token (61023).
            let _ = fleet.sim.unauthorize(COMPONENT_APPID, &a).await;
            active.remove(&a);
            revoked.insert(a);
        }
        if Instant::now() >= next_fault {
            let kind = KINDS[rng.random_range(0..KINDS.len())];
            eprintln!("[{:>6.1}s] fault: {kind}", started.elapsed().as_secs_f64());
            inject(kind, &timing, &mut fleet, &mut replicas, &mut rng).await;
            *faults.entry(kind).or_default() += 1;
            next_fault = Instant::now() + cfg.fault_every.mul_f64(rng.random_range(0.5..1.5));
        }
        tokio::time::sleep(cfg.churn_every).await;
    }
    eprintln!(
        "[{:>6.1}s] churn stops: {} active, {} revoked; settling {settle:?}",
        started.elapsed().as_secs_f64(),
        active.len(),
        revoked.len()
    );
    // Pushes missed while the event replica was down are what an operator's
    // import (or WeChat's retry) brings back; a revoked one's refresh dies
    // with 61023 by itself.
    tokio::time::sleep(settle).await;

    let component = wxtoken_common::CredentialId::parse(COMPONENT)?;
    let mut active_without_token = Vec::new();
    let mut reauthorized = Vec::new();
    for a in &active {
        match fleet.value_of(&format!("{COMPONENT}.{a}")).await {
            Some(t) if fleet.sim.token_state(&t.value) == TokenState::Valid => {}
            _ => active_without_token.push(a.clone()),
        }
        // The fleet must not have given up a live authorization (its
        // merchant would have to authorize again).
        let state = fleet.store().registered(&component, a).await.ok().flatten();
        if state.as_deref() != Some("active") {
            reauthorized.push(a.clone());
        }
    }
    let mut revoked_with_token = Vec::new();
    for a in &revoked {
        if fleet.value_of(&format!("{COMPONENT}.{a}")).await.is_some() {
            revoked_with_token.push(a.clone());
        }
    }
    let mut refusals = 0;
    let mut max_concurrent = 0;
    for a in &active {
        if let Some(s) = fleet.sim.authorizer_stats(COMPONENT_APPID, a) {
            refusals += s.refresh_token_refusals;
            max_concurrent = max_concurrent.max(s.max_concurrent_fetches);
        }
    }
    let calls = fleet
        .sim
        .stats()
        .component(COMPONENT_APPID)
        .and_then(|c| c.ok.get("api_authorizer_token").copied())
        .unwrap_or(0);
    let all: Vec<String> = active.iter().chain(&revoked).cloned().collect();
    let logs_clean = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        fleet.assert_logs_clean();
        fleet.assert_platform_logs_clean(&all);
    }))
    .is_ok();
    let passed = active_without_token.is_empty()
        && revoked_with_token.is_empty()
        && reauthorized.is_empty()
        && refusals == 0
        && logs_clean
        && !active.is_empty();
    Ok(PlatformReport {
        seed: cfg.seed,
        duration_s: started.elapsed().as_secs_f64(),
        faults,
        authorized: active.len(),
        revoked: revoked.len(),
        pushes_missed: missed,
        active_without_token,
        revoked_with_token,
        reauthorized,
        refresh_token_refusals: refusals,
        max_concurrent_fetches_per_authorizer: max_concurrent,
        authorizer_calls: calls,
        logs_clean,
        passed,
    })
}

async fn inject(
    kind: &str,
    timing: &Timing,
    fleet: &mut Fleet,
    replicas: &mut Replicas,
    rng: &mut StdRng,
) {
    let ids: Vec<String> = replicas.proxies.keys().cloned().collect();
    let victim = ids[rng.random_range(0..ids.len())].clone();
    match kind {
        "sigkill_replica" => {
            if let Some(p) = fleet.replicas.iter().position(|r| r.replica_id == victim) {
                fleet.replicas[p].signal(Signal::SIGKILL);
                let _ = fleet.replicas[p].wait_exit(Duration::from_secs(2));
                fleet.replicas.remove(p);
            }
            replicas.proxies.remove(&victim);
            tokio::time::sleep(Duration::from_secs(1)).await;
            let event_url = victim == replicas.event_replica;
            replicas.spawn(fleet, event_url).await;
        }
        "sigstop_replica" => {
            if let Some(r) = fleet.replicas.iter().find(|r| r.replica_id == victim) {
                r.signal(Signal::SIGSTOP);
                tokio::time::sleep(timing.lock_ttl + Duration::from_secs(1)).await;
                r.signal(Signal::SIGCONT);
            }
        }
        "redis_restart_empty" => {
            let _ = fleet.redis.restart();
        }
        "redis_flushall" => {
            let mut c = fleet.conn().await;
            let _: Result<(), _> = redis::cmd("FLUSHALL").query_async(&mut c).await;
        }
        _ => {
            if let Some(p) = replicas.proxies.get(&victim) {
                p.set_mode(ProxyMode::Blackhole);
                tokio::time::sleep(Duration::from_secs(5)).await;
                p.set_mode(ProxyMode::Pass);
            }
        }
    }
}
