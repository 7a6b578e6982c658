//! The simulator's shared state ([`SimState`]): the rules (`state::World`),
//! the counters (`stats::Stats`) and the fault dice (`faults::FaultPlan`)
//! behind one mutex, plus the shutdown signal that releases held requests.
//!
//! One `std::sync::Mutex` guards all three because every operation is short,
//! synchronous and touches more than one of them (a fetch rolls faults, runs
//! a rule and counts the outcome); it is never held across an `.await`.
//! This module counts and locks; the rules are in `state`, HTTP in `routes`.
//! Requests in flight and their fault rolls are in `flight.rs`; use
//! endpoints, ticket calls and signature checks in `uses.rs`; Open
//! Platform calls and their per-authorizer tallies in `component.rs`;
//! pushes to component event URLs in `push.rs` (forgeries and replays in
//! `forgery.rs`), and the merchant actions that cause them in
//! `authorization.rs`.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;

use crate::config::{ConfigError, SimConfig, agent_key};
use crate::errcode::WxError;
use crate::faults::{FaultPlan, Faults};
use crate::state::{Grant, World};
use crate::stats::{AppStats, CorpStats, Stats};
use crate::token::{Now, TokenState};

mod authorization;
mod component;
mod flight;
mod forgery;
mod openapi;
mod push;
mod uses;

pub(crate) use component::ComponentCall;
pub(crate) use flight::FlightGuard;
pub use forgery::Forgery;
pub use push::PushOutcome;
pub(crate) use uses::CheckRequest;

/// Cheap-to-clone handle on one simulator's state; what the router serves.
#[derive(Debug, Clone)]
pub struct SimState {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    core: Mutex<Core>,
    /// Flips to `true` on shutdown so hung and delayed replies let go and
    /// graceful shutdown can finish.
    shutdown: watch::Sender<bool>,
    /// The components' seals, event URLs and HTTP client: fixed at start,
    /// so pushes read them without the lock.
    pusher: push::Pusher,
}

#[derive(Debug)]
struct Core {
    world: World,
    stats: Stats,
    faults: FaultPlan,
    /// Per-authorizer counters, only for authorizers that were called
    /// (kept out of `stats` so that a snapshot of 100 000 stays small).
    tallies: component::Tallies,
    /// Each component's last genuine push, for a replay.
    last_push: std::collections::HashMap<u16, push::SentPush>,
}

/// The stats entries every configuration starts with: one per app, one per
/// WeCom agent, one per corp.
fn empty_stats(config: &SimConfig) -> Stats {
    let mut apps: std::collections::BTreeMap<String, AppStats> = config
        .apps
        .iter()
        .map(|a| (a.appid.clone(), AppStats::default()))
        .collect();
    let mut corps = std::collections::BTreeMap::new();
    for corp in &config.corps {
        let mut corp_stats = CorpStats::default();
        for agent in &corp.agents {
            apps.insert(agent_key(&corp.corpid, agent.agentid), AppStats::default());
            let id = agent.agentid.map(|a| a.to_string()).unwrap_or_default();
            corp_stats.agents.insert(id, Default::default());
        }
        corps.insert(corp.corpid.clone(), corp_stats);
    }
    Stats {
        apps,
        corps,
        ..Stats::default()
    }
}

impl SimState {
    /// Fresh state for `config`: no tokens, no faults.
    pub fn new(config: SimConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let world = World::new(&config);
        let mut stats = empty_stats(&config);
        stats.components = component::empty_component_stats(&world);
        let mut core = Core {
            world,
            stats,
            faults: FaultPlan::new(config.seed),
            tallies: component::Tallies::default(),
            last_push: Default::default(),
        };
        core.mint_first_tickets();
        Ok(Self {
            inner: Arc::new(Inner {
                core: Mutex::new(core),
                shutdown: watch::Sender::new(false),
                pusher: push::Pusher::new(&config),
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

    /// A snapshot of the counters, quotas, windows, issued tokens and tickets.
    pub fn stats(&self) -> Stats {
        let core = self.lock();
        let now = Now::current();
        let mut stats = core.stats.clone();
        for (owner, app) in &mut stats.apps {
            let (token, stable, force) = core.world.quota_used(owner, now);
            app.quota_used_today = token.into();
            app.stable_quota_used_today = stable.into();
            app.force_refresh_used_today = force.into();
            app.domain_ip_used_today = core.world.domain_ip_used(owner, now).into();
            app.clears_used_this_month = core.world.clears_used(owner, now).into();
            app.ticket_quota_used_today = core.world.tickets_used(owner, now);
            app.issued = core.world.issued(owner);
            app.issued_tickets = core.world.issued_tickets(owner);
            app.tickets_issued.clear();
            for t in &app.issued_tickets {
                *app.tickets_issued.entry(t.kind.clone()).or_default() += 1;
            }
        }
        for (corpid, corp) in &mut stats.corps {
            core.world.fill_corp_stats(corpid, corp, now);
        }
        for (appid, component) in &mut stats.components {
            if let Some(c) = core.world.component_index(appid) {
                core.fill_component(c, component, now);
            }
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

    /// Forgets tokens, tickets, counters, quotas, windows and faults, and
    /// every authorizer; each component gets a fresh verify ticket (not
    /// pushed until the next tick). Requests in flight stay counted in
    /// `concurrent_fetches` (and `concurrent_ticket_fetches`, and the
    /// components' concurrency), whose high-water marks restart there.
    pub fn reset(&self) {
        let mut core = self.lock();
        core.world.reset();
        core.faults.reset();
        let stats = &mut core.stats;
        for app in stats.apps.values_mut() {
            let concurrent = app.concurrent_fetches;
            let tickets = std::mem::take(&mut app.concurrent_ticket_fetches);
            *app = AppStats {
                concurrent_fetches: concurrent,
                max_concurrent_fetches: concurrent,
                max_concurrent_ticket_fetches: tickets.clone(),
                concurrent_ticket_fetches: tickets,
                ..AppStats::default()
            };
        }
        for corp in stats.corps.values_mut() {
            let agents = corp.agents.keys().map(|k| (k.clone(), Default::default()));
            *corp = CorpStats {
                agents: agents.collect(),
                ..CorpStats::default()
            };
        }
        for component in stats.components.values_mut() {
            let (token, authorizer) = (
                component.concurrent_token_fetches,
                component.concurrent_authorizer_fetches,
            );
            *component = crate::stats::ComponentStats {
                concurrent_token_fetches: token,
                max_concurrent_token_fetches: token,
                concurrent_authorizer_fetches: authorizer,
                max_concurrent_authorizer_fetches: authorizer,
                ..Default::default()
            };
        }
        *stats = Stats {
            apps: std::mem::take(&mut stats.apps),
            corps: std::mem::take(&mut stats.corps),
            components: std::mem::take(&mut stats.components),
            concurrent_fetches: stats.concurrent_fetches,
            max_concurrent_fetches: stats.concurrent_fetches,
            ..Stats::default()
        };
        // Authorizers are gone; requests in flight find no tally to leave.
        core.tallies.clear();
        core.last_push.clear();
        core.mint_first_tickets();
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

    /// What a use endpoint of the token's own host would answer for `token`
    /// now, without counting.
    pub fn token_state(&self, token: &str) -> TokenState {
        self.lock().world.token_state(token, Now::current()).0
    }

    /// Revokes `token` (app or WeCom) at once, as WeChat or WeCom may do
    /// early. False when the token was never issued.
    pub fn revoke(&self, token: &str) -> bool {
        self.lock().world.revoke_token(token, Now::current())
    }

    /// Clears today's quotas of app `id` (or empties the ticket windows of
    /// corp `id`), or of every app and corp with `None`. False for an
    /// unknown id.
    pub fn clear_quota(&self, id: Option<&str>) -> bool {
        self.lock().world.clear_quota(id)
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

impl Core {
    /// Every component's first verify ticket, as if pushed at start: the
    /// push loops deliver it on their first tick.
    fn mint_first_tickets(&mut self) {
        for c in 0..=u16::MAX {
            if self.mint_ticket(c).is_none() {
                break;
            }
        }
    }
}

fn bump(map: &mut std::collections::BTreeMap<String, u64>, key: &str) {
    *map.entry(key.to_owned()).or_default() += 1;
}

/// Waits until `rx` sees shutdown (or its sender is gone).
pub(crate) async fn until_shutdown(mut rx: watch::Receiver<bool>) {
    // An Err means the sender (the state) is gone: nothing left to wait for.
    let _ = rx.wait_for(|down| *down).await;
}
