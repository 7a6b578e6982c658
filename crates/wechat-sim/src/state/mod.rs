//! WeChat's and WeCom's rules ([`World`]): who may fetch, which lineage a new
//! token joins, which older tokens it supersedes or revokes, what a use
//! endpoint says about any token, and which ticket a ticket call gets.
//!
//! Per Official Account / Mini Program (`lineage.rs`), three lineages,
//! isolated from one another as in WeChat:
//! - `cgi-bin/token` (and external refreshes): every successful call issues a
//!   new token; the previous one lives for `overlap` more, any older one dies
//!   at once.
//! - `stable_token`: normal mode returns the current token while more than
//!   `overlap` of it remains, then issues a new one (the old one works until
//!   its own expiry); `force_refresh` issues a new one and revokes the others.
//!
//! Per WeCom agent (`wecom.rs`): `gettoken` returns the same token while it
//! is valid and a new one after it expired or was revoked; no overlap rule.
//! Tickets (`tickets.rs` for apps, `wecom.rs` for corps and agents): one
//! current ticket per (owner, type), the same value while it is valid.
//!
//! The two hosts do not know each other's tokens ([`Host`]): a WeCom token is
//! unknown on api.weixin.qq.com and an app token unknown on qyapi.
//!
//! Per Open Platform component (`component/`): verify tickets, the
//! component-token lineage, authorization codes and authorizers, whose
//! access tokens the WeChat host's app endpoints accept as tokens of the
//! authorizer appid (kept in a compact book of their own, not in
//! `tokens`). A component token is accepted only by the component
//! endpoints.
//!
//! This module is synchronous and takes the moment as an argument; it knows
//! nothing of HTTP, faults, locks or counters (see `shared` and `routes`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::config::SimConfig;
use crate::quota::Limits;
use crate::stats::{IssuedTicket, IssuedToken};
use crate::token::{Now, TokenRecord, TokenSource, TokenState, random_token, token_prefix};

mod component;
mod lineage;
mod login;
mod openapi;
mod tickets;
mod wecom;

use component::Components;
pub(crate) use component::{
    AuthKey, AuthorizationInfo, AuthorizerGrant, AuthorizerPage, ComponentTokenRequest,
};
pub use component::{Authorization, ComponentError};

use lineage::AppBook;
pub(crate) use lineage::{StableRequest, TokenRequest};
pub(crate) use login::{CodeRequest, Exchange};
pub(crate) use openapi::{ApiQuota, ClearRequest};
pub(crate) use tickets::TicketOwner;
use wecom::CorpBook;
pub(crate) use wecom::split_agent_key;

/// A token handed out by a fetch endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) token: String,
    /// `expires_in` to report: the time left on the token (WeChat), or its
    /// full life whatever remains (WeCom, the harsher reading).
    pub(crate) remaining: Duration,
    /// Which rule produced it (for a reused stable/WeCom token: the call that
    /// asked, not the one that issued it).
    pub(crate) source: TokenSource,
}

/// Which API host a token is presented to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Host {
    /// api.weixin.qq.com: knows `cgi-bin/token`, `stable_token` and
    /// external tokens.
    Wechat,
    /// qyapi.weixin.qq.com (`/qyapi`): knows WeCom `gettoken` tokens.
    Wecom,
}

impl Host {
    fn knows(self, source: TokenSource) -> bool {
        match source {
            TokenSource::Wecom => self == Host::Wecom,
            // Only the component endpoints accept component tokens (the
            // harsher reading; they judge them themselves).
            TokenSource::Component => false,
            _ => self == Host::Wechat,
        }
    }
}

/// The ticket rules' numbers (copied from `SimConfig`).
#[derive(Debug, Clone, Copy)]
struct TicketRules {
    ttl: Duration,
    agent_hourly: u32,
    corp_hourly: u32,
    window: Duration,
}

/// Every app's and corp's lineages, quotas, tickets and issued tokens.
#[derive(Debug)]
pub(crate) struct World {
    ttl: Duration,
    overlap: Duration,
    limits: Limits,
    ticket_rules: TicketRules,
    apps: BTreeMap<String, AppBook>,
    corps: BTreeMap<String, CorpBook>,
    tokens: HashMap<String, TokenRecord>,
    /// Every token issued, by owner (appid or `corpid:agentid`), oldest first.
    issued: BTreeMap<String, Vec<String>>,
    /// Every ticket minted, by the owner whose call minted it, oldest first.
    issued_tickets: BTreeMap<String, Vec<IssuedTicket>>,
    /// Open Platform components, their authorizers and authorizer tokens.
    components: Components,
    /// Login codes and OAuth refresh tokens (`login.rs`).
    logins: login::Logins,
}

pub(crate) fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

impl World {
    pub(crate) fn new(config: &SimConfig) -> Self {
        Self {
            ttl: config.token_ttl,
            overlap: config.overlap,
            limits: Limits {
                daily: config.daily_quota,
                stable_daily: config.stable_daily_quota,
                stable_per_minute: config.stable_per_minute,
                force_daily: config.force_refresh_daily,
                force_spacing: config.force_refresh_spacing,
                domain_ip_daily: config.domain_ip_daily_quota,
                ticket_daily: config.ticket_daily_quota,
            },
            ticket_rules: TicketRules {
                ttl: config.ticket_ttl,
                agent_hourly: config.wecom_ticket_agent_hourly,
                corp_hourly: config.wecom_ticket_corp_hourly,
                window: config.wecom_ticket_window,
            },
            apps: config
                .apps
                .iter()
                .map(|a| (a.appid.clone(), AppBook::new(&a.secret)))
                .collect(),
            corps: config
                .corps
                .iter()
                .map(|c| (c.corpid.clone(), CorpBook::new(c)))
                .collect(),
            tokens: HashMap::new(),
            issued: BTreeMap::new(),
            issued_tickets: BTreeMap::new(),
            // The epoch authorizer token times count from.
            components: Components::new(config, Now::current()),
            logins: login::Logins::default(),
        }
    }

    /// True when `appid` is a configured app.
    pub(crate) fn knows(&self, appid: &str) -> bool {
        self.apps.contains_key(appid)
    }

    /// What any endpoint says about `token`, and whose token it is, on
    /// either host (the admin view).
    pub(crate) fn token_state(&self, token: &str, now: Now) -> (TokenState, Option<&str>) {
        match self.tokens.get(token) {
            None => self.judge_authorizer_or_unknown(token, now),
            Some(rec) => (rec.state(now.at), Some(rec.owner.as_str())),
        }
    }

    fn judge_authorizer_or_unknown(&self, token: &str, now: Now) -> (TokenState, Option<&str>) {
        match self.judge_authorizer(token, now) {
            Some((state, appid)) => (state, Some(appid)),
            None => (TokenState::Unknown, None),
        }
    }

    /// What an endpoint of `host` says about `token`: a token of the other
    /// host is unknown here.
    pub(crate) fn judge(&self, token: &str, host: Host, now: Now) -> (TokenState, Option<&str>) {
        match self.tokens.get(token) {
            Some(rec) if host.knows(rec.source) => (rec.state(now.at), Some(rec.owner.as_str())),
            None if host == Host::Wechat => self.judge_authorizer_or_unknown(token, now),
            _ => (TokenState::Unknown, None),
        }
    }

    /// Revokes one token at once (WeChat or WeCom cutting it off early).
    /// Returns false when the token was never issued.
    pub(crate) fn revoke_token(&mut self, token: &str, now: Now) -> bool {
        match self.tokens.get_mut(token) {
            Some(rec) => {
                rec.revoke(now);
                true
            }
            None => self.revoke_authorizer_token(token, now),
        }
    }

    /// Clears today's quotas of one app (or the ticket windows of one corp),
    /// or of all with `None`. Returns false for an unknown id.
    pub(crate) fn clear_quota(&mut self, id: Option<&str>) -> bool {
        match id {
            Some(id) => {
                if let Some(book) = self.apps.get_mut(id) {
                    book.quota.clear();
                    true
                } else if let Some(corp) = self.corps.get_mut(id) {
                    corp.clear_windows();
                    true
                } else {
                    false
                }
            }
            None => {
                self.apps.values_mut().for_each(|b| b.quota.clear());
                self.corps.values_mut().for_each(CorpBook::clear_windows);
                true
            }
        }
    }

    /// `(cgi-bin/token, stable_token, force_refresh)` quota used today.
    pub(crate) fn quota_used(&self, appid: &str, now: Now) -> (u32, u32, u32) {
        self.apps
            .get(appid)
            .map_or((0, 0, 0), |b| b.quota.used(now))
    }

    /// `get_api_domain_ip` calls `appid` made today.
    pub(crate) fn domain_ip_used(&self, appid: &str, now: Now) -> u32 {
        self.apps
            .get(appid)
            .map_or(0, |b| b.quota.domain_ip_used(now))
    }

    /// `getticket` quota `appid` used today, by type.
    pub(crate) fn tickets_used(&self, appid: &str, now: Now) -> BTreeMap<String, u64> {
        self.apps
            .get(appid)
            .map(|b| b.quota.tickets_used(now))
            .unwrap_or_default()
    }

    /// Every token issued for `owner` (appid or `corpid:agentid`), oldest
    /// first.
    pub(crate) fn issued(&self, owner: &str) -> Vec<IssuedToken> {
        let Some(tokens) = self.issued.get(owner) else {
            return Vec::new();
        };
        tokens
            .iter()
            .filter_map(|t| self.tokens.get(t).map(|r| r.to_issued(t)))
            .collect()
    }

    /// Every ticket minted by `owner`'s calls, oldest first.
    pub(crate) fn issued_tickets(&self, owner: &str) -> Vec<IssuedTicket> {
        self.issued_tickets.get(owner).cloned().unwrap_or_default()
    }

    /// Forgets every token, ticket and quota, and every authorizer; the
    /// apps, corps and components stay.
    pub(crate) fn reset(&mut self) {
        self.tokens.clear();
        self.issued.clear();
        self.issued_tickets.clear();
        self.apps.values_mut().for_each(AppBook::reset);
        self.corps.values_mut().for_each(CorpBook::reset);
        self.components.reset();
    }

    fn supersede(&mut self, token: Option<&str>, now: Now) {
        if let Some(rec) = token.and_then(|t| self.tokens.get_mut(t)) {
            rec.supersede(now, self.overlap);
        }
    }

    fn revoke(&mut self, token: Option<&str>, now: Now) {
        if let Some(t) = token {
            self.revoke_token(t, now);
        }
    }

    /// Mints a token for `owner` and records it; placing it in a lineage is
    /// the caller's job.
    fn mint_token(&mut self, owner: &str, source: TokenSource, now: Now) -> String {
        self.mint_token_ttl(owner, source, now, self.ttl)
    }

    /// [`World::mint_token`] with a life of its own (component tokens).
    fn mint_token_ttl(
        &mut self,
        owner: &str,
        source: TokenSource,
        now: Now,
        ttl: Duration,
    ) -> String {
        let mut token = random_token();
        while self.tokens.contains_key(&token) {
            token = random_token();
        }
        self.tokens
            .insert(token.clone(), TokenRecord::new(owner, source, now, ttl));
        self.issued
            .entry(owner.to_owned())
            .or_default()
            .push(token.clone());
        tracing::info!(
            appid = owner,
            source = source.as_str(),
            token_prefix = token_prefix(&token),
            ttl_ms = crate::token::millis(ttl),
            "issued token"
        );
        token
    }

    /// Records a ticket minted by `owner`'s call.
    fn record_ticket(&mut self, owner: &str, ticket: &IssuedTicket) {
        tracing::info!(
            appid = owner,
            kind = ticket.kind,
            ticket_prefix = token_prefix(&ticket.ticket),
            "issued ticket"
        );
        self.issued_tickets
            .entry(owner.to_owned())
            .or_default()
            .push(ticket.clone());
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod wecom_tests;
