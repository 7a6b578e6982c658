//! Open Platform calls in flight and what they count: per component the
//! calls, successes and failures by endpoint, the concurrency of token and
//! authorizer fetches and the refusals over the limits; per authorizer a
//! compact tally ([`AuthorizerTally`], ~70 bytes, only for authorizers that
//! were called at all). Also the admin steps that change authorizers
//! without HTTP (the pushes they cause are `push`'s).
//!
//! The rules are `state`'s; this module locks, counts and turns the
//! tallies into [`ComponentStats`] / [`AuthorizerStats`] snapshots.

use std::collections::{BTreeMap, HashMap};

use crate::errcode::{ApiError, WxError};
use crate::faults::FaultDecision;
use crate::state::{AuthKey, ComponentError, World};
use crate::stats::{AuthorizerStats, ComponentStats, MAX_ANOMALIES, endpoint};
use crate::token::Now;

use super::flight::Flight;
use super::{Core, FlightGuard, SimState, bump};

/// Which component endpoint a request is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ComponentCall {
    Token,
    StartPushTicket,
    CreatePreauthcode,
    QueryAuth,
    AuthorizerToken,
    AuthorizerList,
}

impl ComponentCall {
    /// The key of this endpoint in [`ComponentStats::calls`].
    pub(crate) fn endpoint(self) -> &'static str {
        match self {
            ComponentCall::Token => endpoint::COMPONENT_TOKEN,
            ComponentCall::StartPushTicket => endpoint::START_PUSH_TICKET,
            ComponentCall::CreatePreauthcode => endpoint::CREATE_PREAUTHCODE,
            ComponentCall::QueryAuth => endpoint::QUERY_AUTH,
            ComponentCall::AuthorizerToken => endpoint::AUTHORIZER_TOKEN,
            ComponentCall::AuthorizerList => endpoint::GET_AUTHORIZER_LIST,
        }
    }
}

/// One component request in flight.
#[derive(Debug)]
pub(crate) struct ComponentFlight {
    call: ComponentCall,
    /// The configured component the request named (its stats key).
    component: Option<String>,
    /// The known authorizer an `api_authorizer_token` named.
    authorizer: Option<AuthKey>,
}

/// One authorizer's counters (see [`AuthorizerStats`]). `u32`s: at 100 000
/// authorizers every byte here is 100 kB.
#[derive(Debug, Clone, Default)]
pub(super) struct AuthorizerTally {
    fetch_calls: u32,
    fetch_ok: u32,
    fetch_failed: BTreeMap<String, u64>,
    concurrent: u32,
    max_concurrent: u32,
    refusals: u32,
    pub(super) uses_ok: u32,
    pub(super) uses_invalid: u32,
    pub(super) uses_expired: u32,
    pub(super) domain_ip_calls: u32,
}

impl AuthorizerTally {
    fn is_anomaly(&self) -> bool {
        self.max_concurrent > 1 || self.refusals > 0
    }

    fn write_into(&self, stats: &mut AuthorizerStats) {
        stats.fetch_calls = self.fetch_calls.into();
        stats.fetch_ok = self.fetch_ok.into();
        stats.fetch_failed = self.fetch_failed.clone();
        stats.concurrent_fetches = self.concurrent.into();
        stats.max_concurrent_fetches = self.max_concurrent.into();
        stats.refresh_token_refusals = self.refusals.into();
        stats.uses_ok = self.uses_ok.into();
        stats.uses_invalid = self.uses_invalid.into();
        stats.uses_expired = self.uses_expired.into();
        stats.domain_ip_calls = self.domain_ip_calls.into();
    }
}

/// The per-authorizer tallies of every component.
pub(super) type Tallies = HashMap<AuthKey, AuthorizerTally>;

/// The stats entries every configuration starts with, one per component.
pub(super) fn empty_component_stats(world: &World) -> BTreeMap<String, ComponentStats> {
    (0..=u16::MAX)
        .map_while(|c| world.component_appid(c))
        .map(|appid| (appid.to_owned(), ComponentStats::default()))
        .collect()
}

impl Core {
    fn component_stats(&mut self, flight: &ComponentFlight) -> Option<&mut ComponentStats> {
        let appid = flight.component.as_deref()?;
        self.stats.components.get_mut(appid)
    }

    fn enter_component(&mut self, flight: &ComponentFlight) {
        let call = flight.call;
        if let Some(stats) = self.component_stats(flight) {
            bump(&mut stats.calls, call.endpoint());
            match call {
                ComponentCall::Token => {
                    stats.concurrent_token_fetches += 1;
                    stats.max_concurrent_token_fetches = stats
                        .max_concurrent_token_fetches
                        .max(stats.concurrent_token_fetches);
                }
                ComponentCall::AuthorizerToken => {
                    stats.concurrent_authorizer_fetches += 1;
                    stats.max_concurrent_authorizer_fetches = stats
                        .max_concurrent_authorizer_fetches
                        .max(stats.concurrent_authorizer_fetches);
                }
                _ => {}
            }
        }
        if let Some(key) = flight.authorizer {
            let tally = self.tallies.entry(key).or_default();
            tally.fetch_calls += 1;
            tally.concurrent += 1;
            tally.max_concurrent = tally.max_concurrent.max(tally.concurrent);
        }
    }

    /// The request `flight` is over (answered, or its client gone).
    pub(super) fn leave_component(&mut self, flight: &ComponentFlight) {
        let call = flight.call;
        if let Some(stats) = self.component_stats(flight) {
            match call {
                ComponentCall::Token => {
                    stats.concurrent_token_fetches =
                        stats.concurrent_token_fetches.saturating_sub(1);
                }
                ComponentCall::AuthorizerToken => {
                    stats.concurrent_authorizer_fetches =
                        stats.concurrent_authorizer_fetches.saturating_sub(1);
                }
                _ => {}
            }
        }
        if let Some(tally) = flight.authorizer.and_then(|k| self.tallies.get_mut(&k)) {
            tally.concurrent = tally.concurrent.saturating_sub(1);
        }
    }

    /// Counts one failure of `flight` with `cause`.
    pub(super) fn component_failed(&mut self, flight: &ComponentFlight, cause: &str) {
        let call = flight.call;
        if let Some(stats) = self.component_stats(flight) {
            let by_cause = stats.failed.entry(call.endpoint().to_owned()).or_default();
            bump(by_cause, cause);
        }
        if let Some(tally) = flight.authorizer.and_then(|k| self.tallies.get_mut(&k)) {
            bump(&mut tally.fetch_failed, cause);
        }
    }

    /// Counts what the rule answered `flight` (a refusal counts even when
    /// the reply is then lost), then its outcome.
    fn component_outcome<T>(
        &mut self,
        flight: &ComponentFlight,
        garbage: bool,
        result: &Result<T, WxError>,
    ) {
        let call = flight.call;
        if let (ComponentCall::AuthorizerToken, Err(e)) = (call, result) {
            let e = *e;
            if let Some(stats) = self.component_stats(flight) {
                match e {
                    WxError::RefreshTokenInvalid => stats.refresh_token_refusals += 1,
                    WxError::MinuteQuota => stats.authorizer_minute_refusals += 1,
                    _ => {}
                }
            }
            if e == WxError::RefreshTokenInvalid
                && let Some(tally) = flight.authorizer.and_then(|k| self.tallies.get_mut(&k))
            {
                tally.refusals += 1;
            }
        }
        match result {
            _ if garbage => self.component_failed(flight, "garbage"),
            Ok(_) => {
                if let Some(stats) = self.component_stats(flight) {
                    bump(&mut stats.ok, call.endpoint());
                }
                if let Some(tally) = flight.authorizer.and_then(|k| self.tallies.get_mut(&k)) {
                    tally.fetch_ok += 1;
                }
            }
            Err(e) => self.component_failed(flight, &e.errcode().to_string()),
        }
    }

    /// Writes the counters of component `c` (`appid`) and the tallies of
    /// its authorizers into `stats`, on top of what the world knows.
    pub(super) fn fill_component(&self, c: u16, stats: &mut ComponentStats, now: Now) {
        self.world.fill_component_stats(c, stats, now);
        stats.anomalies.clear();
        stats.anomalies_omitted = 0;
        stats.max_concurrent_fetches_per_authorizer = 0;
        let mut anomalies: Vec<AuthKey> = Vec::new();
        for (key, tally) in self.tallies.iter().filter(|(k, _)| k.component == c) {
            stats.max_concurrent_fetches_per_authorizer = stats
                .max_concurrent_fetches_per_authorizer
                .max(tally.max_concurrent.into());
            if tally.is_anomaly() {
                anomalies.push(*key);
            }
        }
        anomalies.sort_unstable();
        stats.anomalies_omitted = anomalies.len().saturating_sub(MAX_ANOMALIES) as u64;
        for key in anomalies.into_iter().take(MAX_ANOMALIES) {
            if let Some(view) = self.authorizer_stats(key) {
                stats.anomalies.insert(view.authorizer_appid.clone(), view);
            }
        }
    }

    /// One authorizer's full entry: the world's view plus its tally.
    pub(super) fn authorizer_stats(&self, key: AuthKey) -> Option<AuthorizerStats> {
        let mut view = self.world.authorizer_view(key)?;
        if let Some(tally) = self.tallies.get(&key) {
            tally.write_into(&mut view);
        }
        Some(view)
    }
}

impl SimState {
    /// A component call naming `component_appid` (and, for
    /// `api_authorizer_token`, `authorizer_appid`): counted, faults rolled
    /// for both names.
    pub(crate) fn begin_component(
        &self,
        call: ComponentCall,
        component_appid: Option<&str>,
        authorizer_appid: Option<&str>,
    ) -> (FlightGuard, FaultDecision) {
        let mut core = self.lock();
        let known = component_appid.filter(|c| core.world.component_index(c).is_some());
        let authorizer = known
            .zip(authorizer_appid)
            .filter(|_| call == ComponentCall::AuthorizerToken)
            .and_then(|(c, a)| core.world.find_authorizer(c, a));
        let flight = ComponentFlight {
            call,
            component: known.map(str::to_owned),
            authorizer,
        };
        core.enter_component(&flight);
        let ids: Vec<&str> = component_appid
            .into_iter()
            .chain(authorizer_appid)
            .collect();
        core.enter(Flight::Component(flight), &ids, self)
    }

    /// Runs one component rule that no fault stopped and counts its
    /// outcome; `garbage` means the reply will be lost.
    pub(crate) fn component_call<T>(
        &self,
        guard: &FlightGuard,
        garbage: bool,
        rule: impl FnOnce(&mut World, Now) -> Result<T, WxError>,
    ) -> Result<T, WxError> {
        let mut core = self.lock();
        let result = rule(&mut core.world, Now::current());
        if let Flight::Component(flight) = &guard.flight {
            core.component_outcome(flight, garbage, &result);
        }
        result
    }

    /// The latest verify ticket of `component_appid`.
    pub fn verify_ticket(&self, component_appid: &str) -> Option<String> {
        let core = self.lock();
        let c = core.world.component_index(component_appid)?;
        core.world.verify_ticket(c).map(str::to_owned)
    }

    /// One authorizer's full entry (`None`: unknown component or
    /// authorizer).
    pub fn authorizer_stats(
        &self,
        component_appid: &str,
        authorizer_appid: &str,
    ) -> Option<AuthorizerStats> {
        let core = self.lock();
        let key = core
            .world
            .find_authorizer(component_appid, authorizer_appid)?;
        core.authorizer_stats(key)
    }

    /// Creates `n` authorizers of `component_appid` at once, without codes
    /// or pushes (appids `wx` + 16 hex digits; read them back with
    /// `api_get_authorizer_list`). Returns how many were created.
    pub fn bulk_authorize(&self, component_appid: &str, n: usize) -> Result<usize, ComponentError> {
        let created = self
            .lock()
            .world
            .bulk_authorize(component_appid, n, Now::current())?;
        tracing::info!(component_appid, created, "bulk-created authorizers");
        Ok(created)
    }
}
