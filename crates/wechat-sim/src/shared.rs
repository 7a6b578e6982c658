//! The simulator's shared state ([`SimState`]): the rules (`state::World`),
//! the counters (`stats::Stats`) and the fault dice (`faults::FaultPlan`)
//! behind one mutex, plus the shutdown signal that releases held requests.
//!
//! One `std::sync::Mutex` guards all three because every operation is short,
//! synchronous and touches more than one of them (a fetch rolls faults, runs
//! a rule and counts the outcome); it is never held across an `.await`.
//! This module counts and locks; the rules are in `state`, HTTP in `routes`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::watch;

use crate::config::{ConfigError, SimConfig};
use crate::errcode::WxError;
use crate::faults::{FaultDecision, FaultPlan, Faults};
use crate::state::{Grant, World};
use crate::stats::{AppStats, Stats};
use crate::token::{Now, TokenSource, TokenState};

/// Cheap-to-clone handle on one simulator's state; what the router serves.
#[derive(Debug, Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Mutex<Core>,
    /// Lifetime of tickets handed out by `getticket` (the token TTL).
    ticket_ttl: Duration,
    /// Flips to `true` on shutdown so hung and delayed replies let go and
    /// graceful shutdown can finish.
    shutdown: watch::Sender<bool>,
}

#[derive(Debug)]
struct Core {
    world: World,
    stats: Stats,
    faults: FaultPlan,
}

/// How one use-endpoint call was judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UseKind {
    /// `getcallbackip` and other plain API calls.
    Call,
    /// `getticket`: also counts `tickets_ok` on success.
    Ticket,
}

impl SimState {
    /// Fresh state for `config`: no tokens, no faults.
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let stats = Stats {
            apps: config
                .apps
                .iter()
                .map(|a| (a.appid.clone(), AppStats::default()))
                .collect(),
            ..Stats::default()
        };
        let core = Core {
            world: World::new(&config),
            stats,
            faults: FaultPlan::new(config.seed),
        };
        Ok(Self {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                ticket_ttl: config.token_ttl,
                shutdown: watch::Sender::new(false),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Core> {
        // A panic elsewhere cannot leave the counters in a state worse than
        // "one request's update missing"; keep serving.
        self.inner
            .core
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A snapshot of the counters, quotas and issued tokens.
    pub fn stats(&self) -> Stats {
        let core = self.lock();
        let now = Now::current();
        let mut stats = core.stats.clone();
        for (appid, app) in &mut stats.apps {
            let (token, stable, force) = core.world.quota_used(appid, now);
            app.quota_used_today = token.into();
            app.stable_quota_used_today = stable.into();
            app.force_refresh_used_today = force.into();
            app.domain_ip_used_today = core.world.domain_ip_used(appid, now).into();
            app.issued = core.world.issued(appid);
        }
        stats
    }

    /// Replaces the injected faults.
    pub fn set_faults(&self, faults: Faults) {
        tracing::info!(?faults, "faults replaced");
        self.lock().faults.set(faults);
    }

    /// The faults in force now (`remaining` counts down as calls arrive).
    pub fn faults(&self) -> Faults {
        self.lock().faults.current().clone()
    }

    /// Forgets tokens, counters, quotas and faults. Requests in flight stay
    /// counted in `concurrent_fetches`, which restarts its high-water mark.
    pub fn reset(&self) {
        let mut core = self.lock();
        core.world.reset();
        core.faults.reset();
        let stats = &mut core.stats;
        for app in stats.apps.values_mut() {
            let concurrent = app.concurrent_fetches;
            *app = AppStats {
                concurrent_fetches: concurrent,
                max_concurrent_fetches: concurrent,
                ..AppStats::default()
            };
        }
        *stats = Stats {
            apps: std::mem::take(&mut stats.apps),
            concurrent_fetches: stats.concurrent_fetches,
            max_concurrent_fetches: stats.concurrent_fetches,
            ..Stats::default()
        };
        tracing::info!("simulator reset");
    }

    /// A third party fetches a new `cgi-bin/token` token behind the fleet's
    /// back. `None` for an unknown app or a used-up quota.
    pub fn external_refresh(&self, appid: &str) -> Option<String> {
        self.try_external_refresh(appid).ok().map(|g| g.token)
    }

    pub(crate) fn try_external_refresh(&self, appid: &str) -> Result<Grant, WxError> {
        self.lock().world.external_refresh(appid, Now::current())
    }

    /// What a use endpoint would answer for `token` now, without counting.
    pub fn token_state(&self, token: &str) -> TokenState {
        self.lock().world.token_state(token, Now::current()).0
    }

    /// Revokes `token` at once, as WeChat or WeCom may do early. False when
    /// the token was never issued.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().world.revoke_token(token, Now::current())
    }

    /// Clears today's quotas of `appid`, or of every app with `None`.
    /// False for an unknown appid.
    pub fn clear_quota(&self, appid: Option<&str>) -> bool {
        self.lock().world.clear_quota(appid)
    }

    /// Fetch entry: counts the call and its concurrency, rolls the faults.
    /// The guard must live as long as the request.
    pub(crate) fn begin_fetch(&self, named: Option<&str>) -> (FetchGuard, FaultDecision) {
        let mut core = self.lock();
        let known = named.filter(|a| core.world.knows(a)).map(str::to_owned);
        let stats = &mut core.stats;
        stats.concurrent_fetches += 1;
        stats.max_concurrent_fetches = stats.max_concurrent_fetches.max(stats.concurrent_fetches);
        if let Some(app) = known.as_deref().and_then(|a| stats.apps.get_mut(a)) {
            app.fetch_calls += 1;
            app.concurrent_fetches += 1;
            app.max_concurrent_fetches = app.max_concurrent_fetches.max(app.concurrent_fetches);
        }
        let decision = core.faults.decide(named);
        let guard = FetchGuard {
            state: self.clone(),
            appid: known,
        };
        (guard, decision)
    }

    /// Runs one fetch rule and counts its outcome; `garbage` means the reply
    /// will be lost, so the call counts as failed whatever the rule said.
    pub(crate) fn fetch(
        &self,
        guard: &FetchGuard,
        garbage: bool,
        rule: impl FnOnce(&mut World, Now) -> Result<Grant, WxError>,
    ) -> Result<Grant, WxError> {
        let mut core = self.lock();
        let result = rule(&mut core.world, Now::current());
        if let Some(app) = guard.app_stats(&mut core.stats) {
            match &result {
                _ if garbage => bump(&mut app.fetch_failed, "garbage"),
                Ok(grant) => {
                    app.fetch_ok += 1;
                    match grant.source {
                        TokenSource::Token | TokenSource::External => app.token_fetch_ok += 1,
                        TokenSource::StableToken => app.stable_fetch_ok += 1,
                        TokenSource::StableTokenForce => app.force_refreshes += 1,
                        TokenSource::Wecom => app.wecom_fetch_ok += 1,
                    }
                }
                Err(e) => bump(&mut app.fetch_failed, &e.code().to_string()),
            }
        }
        result
    }

    /// Counts a fetch that a fault answered without running the rule.
    pub(crate) fn fetch_failed(&self, guard: &FetchGuard, cause: &str) {
        let mut core = self.lock();
        if let Some(app) = guard.app_stats(&mut core.stats) {
            bump(&mut app.fetch_failed, cause);
        }
    }

    /// Judges a token presented to a use endpoint and counts the verdict.
    pub(crate) fn use_token(&self, token: Option<&str>, kind: UseKind) -> Result<(), WxError> {
        let mut core = self.lock();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            core.stats.uses_missing += 1;
            return Err(WxError::AccessTokenMissing);
        };
        let (state, appid) = core.world.token_state(token, Now::current());
        let Some(appid) = appid.map(str::to_owned) else {
            core.stats.uses_unknown_token += 1;
            return Err(WxError::InvalidCredential);
        };
        let app = core.stats.apps.entry(appid).or_default();
        match state {
            TokenState::Valid => {
                app.uses_ok += 1;
                if kind == UseKind::Ticket {
                    app.tickets_ok += 1;
                }
                Ok(())
            }
            TokenState::Expired => {
                app.uses_expired += 1;
                Err(WxError::AccessTokenExpired)
            }
            TokenState::Invalid | TokenState::Unknown => {
                app.uses_invalid += 1;
                Err(WxError::InvalidCredential)
            }
        }
    }

    /// `get_api_domain_ip` with `token`: counted per app whatever the answer.
    pub(crate) fn domain_ip(&self, token: Option<&str>) -> Result<(), WxError> {
        let mut core = self.lock();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            core.stats.uses_missing += 1;
            return Err(WxError::AccessTokenMissing);
        };
        let now = Now::current();
        let appid = core.world.token_state(token, now).1.map(str::to_owned);
        let result = core.world.domain_ip(token, now);
        match appid {
            Some(appid) => core.stats.apps.entry(appid).or_default().domain_ip_calls += 1,
            None => core.stats.uses_unknown_token += 1,
        }
        result
    }

    /// How long a `getticket` ticket lives.
    pub(crate) fn ticket_ttl(&self) -> Duration {
        self.inner.ticket_ttl
    }

    /// A receiver that sees `true` once shutdown began.
    pub(crate) fn shutdown_signal(&self) -> watch::Receiver<bool> {
        self.inner.shutdown.subscribe()
    }

    /// Tells held requests and the server to let go.
    pub(crate) fn begin_shutdown(&self) {
        self.inner.shutdown.send_replace(true);
    }
}

fn bump(map: &mut std::collections::BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

/// Marks one fetch request in flight; dropping it (handler done, or client
/// gone and the handler future dropped) takes it out of the concurrency count.
#[derive(Debug)]
pub(crate) struct FetchGuard {
    state: SimState,
    /// The configured app the request named, if any.
    appid: Option<String>,
}

impl FetchGuard {
    fn app_stats<'a>(&self, stats: &'a mut Stats) -> Option<&'a mut AppStats> {
        self.appid.as_deref().and_then(|a| stats.apps.get_mut(a))
    }
}

impl Drop for FetchGuard {
    fn drop(&mut self) {
        let mut core = self.state.lock();
        let stats = &mut core.stats;
        stats.concurrent_fetches = stats.concurrent_fetches.saturating_sub(1);
        if let Some(app) = self.app_stats(stats) {
            app.concurrent_fetches = app.concurrent_fetches.saturating_sub(1);
        }
    }
}

/// Waits until `rx` sees shutdown (or its sender is gone).
pub(crate) async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    // An Err means the sender (the state) is gone: nothing left to wait for.
    let _ = rx.wait_for(|down| *down).await;
}
