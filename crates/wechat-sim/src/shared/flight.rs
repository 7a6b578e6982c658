//! Requests in flight on the endpoints faults apply to (token fetches and
//! ticket calls, on both hosts): counting each one's arrival and
//! concurrency, rolling its faults, and counting its outcome.
//!
//! A [`FlightGuard`] lives as long as the request's handler: dropping it
//! (handler done, or client gone and the handler future dropped) takes the
//! request out of the concurrency counts, so hung and cancelled requests are
//! accounted for. The rules a request runs are `state`'s; which fault fires
//! is `faults`' decision; carrying it out is `routes`'. Open Platform calls
//! ride the same guard; what they count is `component.rs`'s.

use crate::errcode::ApiError;
use crate::faults::FaultDecision;
use crate::state::{Grant, Host, World};
use crate::stats::{AppStats, Stats};
use crate::ticket::{TicketGrant, TicketKind};
use crate::token::{Now, TokenSource, TokenState};

use super::{Core, SimState, bump};

/// What kind of request is in flight, and whose.
#[derive(Debug)]
pub(super) enum Flight {
    /// A token fetch: `cgi-bin/token`, `stable_token`, WeCom `gettoken`.
    Fetch {
        /// The configured app (or WeCom agent) the request named.
        owner: Option<String>,
        /// The configured corp a WeCom request named.
        corp: Option<String>,
    },
    /// A ticket call with a token of `owner` (if the host knows it).
    Ticket {
        owner: Option<String>,
        /// The ticket type name, when the request asked for a known one;
        /// only then is the call counted in flight.
        kind: Option<&'static str>,
    },
    /// An Open Platform call (`cgi-bin/component/*`).
    Component(super::component::ComponentFlight),
}

/// Marks one request in flight until dropped.
#[derive(Debug)]
pub(crate) struct FlightGuard {
    state: SimState,
    pub(super) flight: Flight,
    /// What the faults were rolled for (appid or corpid), for log lines.
    label: Option<String>,
}

impl FlightGuard {
    /// The appid or corpid the faults were rolled for.
    pub(crate) fn label(&self) -> Option<&str> {
        self.label.as_deref()
    }

    fn app_stats<'a>(&self, stats: &'a mut Stats) -> Option<&'a mut AppStats> {
        let owner = match &self.flight {
            Flight::Fetch { owner, .. } | Flight::Ticket { owner, .. } => owner.as_deref(),
            Flight::Component(_) => None,
        };
        owner.and_then(|o| stats.apps.get_mut(o))
    }
}

impl Core {
    /// Rolls the faults for a request naming `fault_ids` (the first one
    /// labels its log lines) and marks it in flight.
    pub(super) fn enter(
        &mut self,
        flight: Flight,
        fault_ids: &[&str],
        state: &SimState,
    ) -> (FlightGuard, FaultDecision) {
        let decision = self.faults.decide_for(fault_ids);
        let guard = FlightGuard {
            state: state.clone(),
            flight,
            label: fault_ids.first().map(|s| (*s).to_owned()),
        };
        (guard, decision)
    }

    fn enter_fetch(&mut self, owner: Option<String>, corp: Option<String>) {
        let stats = &mut self.stats;
        stats.concurrent_fetches += 1;
        stats.max_concurrent_fetches = stats.max_concurrent_fetches.max(stats.concurrent_fetches);
        if let Some(app) = owner.as_deref().and_then(|a| stats.apps.get_mut(a)) {
            app.fetch_calls += 1;
            app.concurrent_fetches += 1;
            app.max_concurrent_fetches = app.max_concurrent_fetches.max(app.concurrent_fetches);
        }
        if let Some(corp) = corp.as_deref().and_then(|c| stats.corps.get_mut(c)) {
            corp.fetch_calls += 1;
        }
    }

    /// Counts one failure of the request `guard` stands for.
    pub(super) fn failed(&mut self, guard: &FlightGuard, cause: &str) {
        if let Flight::Component(flight) = &guard.flight {
            self.component_failed(flight, cause);
            return;
        }
        if let Flight::Fetch {
            corp: Some(corp), ..
        } = &guard.flight
            && let Some(corp) = self.stats.corps.get_mut(corp)
        {
            bump(&mut corp.fetch_failed, cause);
        }
        let is_ticket = matches!(guard.flight, Flight::Ticket { .. });
        if let Some(app) = guard.app_stats(&mut self.stats) {
            let map = if is_ticket {
                &mut app.ticket_failed
            } else {
                &mut app.fetch_failed
            };
            bump(map, cause);
        }
    }

    /// Counts a processed ticket call's outcome; `garbage` means the reply
    /// is lost, so it counts as failed whatever the rule said.
    pub(super) fn ticket_outcome<E: ApiError>(
        &mut self,
        guard: &FlightGuard,
        garbage: bool,
        result: &Result<TicketGrant, E>,
    ) {
        match result {
            _ if garbage => self.failed(guard, "garbage"),
            Ok(_) => {
                if let Some(app) = guard.app_stats(&mut self.stats) {
                    app.tickets_ok += 1;
                }
            }
            Err(e) => self.failed(guard, &e.errcode().to_string()),
        }
    }
}

impl SimState {
    /// A WeChat fetch naming `appid`: counts it, rolls the faults.
    pub(crate) fn begin_fetch(&self, appid: Option<&str>) -> (FlightGuard, FaultDecision) {
        let mut core = self.lock();
        let owner = appid.filter(|a| core.world.knows(a)).map(str::to_owned);
        core.enter_fetch(owner.clone(), None);
        core.enter(Flight::Fetch { owner, corp: None }, appid.as_slice(), self)
    }

    /// A WeCom gettoken naming `corpid` and `secret`: counted on the corp
    /// and on the agent the secret belongs to; faults rolled for the corpid.
    pub(crate) fn begin_wecom_fetch(
        &self,
        corpid: Option<&str>,
        secret: Option<&str>,
    ) -> (FlightGuard, FaultDecision) {
        let mut core = self.lock();
        let corp = corpid
            .filter(|c| core.world.knows_corp(c))
            .map(str::to_owned);
        let owner = corp
            .as_deref()
            .zip(secret)
            .and_then(|(c, s)| core.world.agent_for_secret(c, s))
            .map(str::to_owned);
        core.enter_fetch(owner.clone(), corp.clone());
        core.enter(Flight::Fetch { owner, corp }, corpid.as_slice(), self)
    }

    /// A ticket call presenting `token` to `host`: in flight (by type) for
    /// the token's owner, `ticket_calls` counted when the token is valid;
    /// faults rolled for the owner's appid (WeChat) or corpid (WeCom).
    pub(crate) fn begin_ticket(
        &self,
        token: Option<&str>,
        host: Host,
        kind: Option<TicketKind>,
    ) -> (FlightGuard, FaultDecision) {
        let mut core = self.lock();
        let now = Now::current();
        let (state, owner) = match token.filter(|t| !t.is_empty()) {
            Some(t) => {
                let (state, owner) = core.world.judge(t, host, now);
                (state, owner.map(str::to_owned))
            }
            None => (TokenState::Unknown, None),
        };
        let fault_key = match (host, owner.as_deref()) {
            (Host::Wecom, Some(o)) => crate::state::split_agent_key(o).map(|(corp, _)| corp),
            (_, o) => o,
        }
        .map(str::to_owned);
        let kind = kind.map(TicketKind::type_name);
        if let (Some(app), Some(ty)) = (
            owner.as_deref().and_then(|o| core.stats.apps.get_mut(o)),
            kind,
        ) {
            let now_in = app
                .concurrent_ticket_fetches
                .entry(ty.to_owned())
                .or_default();
            *now_in += 1;
            let now_in = *now_in;
            let max = app
                .max_concurrent_ticket_fetches
                .entry(ty.to_owned())
                .or_default();
            *max = (*max).max(now_in);
            if state == TokenState::Valid {
                bump(&mut app.ticket_calls, ty);
            }
        }
        core.enter(
            Flight::Ticket { owner, kind },
            fault_key.as_deref().as_slice(),
            self,
        )
    }

    /// Runs one fetch rule and counts its outcome; `garbage` means the reply
    /// will be lost, so the call counts as failed whatever the rule said.
    pub(crate) fn fetch<E: ApiError>(
        &self,
        guard: &FlightGuard,
        garbage: bool,
        rule: impl FnOnce(&mut World, Now) -> Result<Grant, E>,
    ) -> Result<Grant, E> {
        let mut core = self.lock();
        let result = rule(&mut core.world, Now::current());
        match &result {
            _ if garbage => core.failed(guard, "garbage"),
            Ok(grant) => {
                if let Some(app) = guard.app_stats(&mut core.stats) {
                    app.fetch_ok += 1;
                    match grant.source {
                        TokenSource::Token | TokenSource::External => app.token_fetch_ok += 1,
                        TokenSource::StableToken => app.stable_fetch_ok += 1,
                        TokenSource::StableTokenForce => app.force_refreshes += 1,
                        TokenSource::Wecom => app.wecom_fetch_ok += 1,
                        // Component calls are counted by `component.rs`.
                        TokenSource::Component | TokenSource::Authorizer => {}
                    }
                }
            }
            Err(e) => core.failed(guard, &e.errcode().to_string()),
        }
        result
    }

    /// Counts a request that a fault answered without running the rule.
    pub(crate) fn flight_failed(&self, guard: &FlightGuard, cause: &str) {
        self.lock().failed(guard, cause);
    }
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut core = self.state.lock();
        if let Flight::Component(flight) = &self.flight {
            core.leave_component(flight);
            return;
        }
        let stats = &mut core.stats;
        if let Flight::Fetch { .. } = self.flight {
            stats.concurrent_fetches = stats.concurrent_fetches.saturating_sub(1);
        }
        let ticket_kind = match self.flight {
            Flight::Ticket { kind, .. } => Some(kind),
            Flight::Fetch { .. } | Flight::Component(_) => None,
        };
        if let Some(app) = self.app_stats(stats) {
            match ticket_kind {
                None => app.concurrent_fetches = app.concurrent_fetches.saturating_sub(1),
                Some(Some(ty)) => {
                    if let Some(n) = app.concurrent_ticket_fetches.get_mut(ty) {
                        *n = n.saturating_sub(1);
                    }
                }
                Some(None) => {}
            }
        }
    }
}
