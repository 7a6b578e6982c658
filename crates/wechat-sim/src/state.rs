//! WeChat's token rules ([`World`]): who may fetch, which lineage a new token
//! joins, which older tokens it supersedes or revokes, and what a use endpoint
//! says about any token.
//!
//! Three lineages per app, isolated from one another as in WeChat:
//! - `cgi-bin/token` (and external refreshes): every successful call issues a
//!   new token; the previous one lives for `overlap` more, any older one dies
//!   at once.
//! - `stable_token`: normal mode returns the current token while more than
//!   `overlap` of it remains, then issues a new one (the old one works until
//!   its own expiry); `force_refresh` issues a new one and revokes the others.
//! - WeCom `gettoken`: the same token while it is valid, a new one after.
//!
//! This module is synchronous and takes the moment as an argument; it knows
//! nothing of HTTP, faults, locks or counters (see `shared` and `routes`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use crate::config::SimConfig;
use crate::errcode::WxError;
use crate::quota::{Limits, QuotaBook};
use crate::stats::IssuedToken;
use crate::token::{Now, TokenRecord, TokenSource, TokenState, random_token, token_prefix};

/// A token handed out by a fetch endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Grant {
    pub(crate) token: String,
    /// Time left on the token when handed out.
    pub(crate) remaining: Duration,
    /// Which rule produced it (for a reused stable/WeCom token: the call that
    /// asked, not the one that issued it).
    pub(crate) source: TokenSource,
}

/// `cgi-bin/token` query parameters (empty strings count as missing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct TokenRequest<'a> {
    pub(crate) grant_type: Option<&'a str>,
    pub(crate) appid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
}

/// `stable_token` JSON body fields.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StableRequest<'a> {
    pub(crate) grant_type: Option<&'a str>,
    pub(crate) appid: Option<&'a str>,
    pub(crate) secret: Option<&'a str>,
    pub(crate) force_refresh: bool,
}

/// The latest two tokens of one lineage (the older ones are dead already).
#[derive(Debug, Clone, Default)]
struct Lineage {
    current: Option<String>,
    previous: Option<String>,
}

#[derive(Debug)]
struct AppBook {
    secret: String,
    token: Lineage,
    stable: Lineage,
    wecom: Lineage,
    quota: QuotaBook,
    /// Every token issued for this app, oldest first (keys into `tokens`).
    issued: Vec<String>,
}

/// Every app's lineages, quotas and issued tokens.
#[derive(Debug)]
pub(crate) struct World {
    ttl: Duration,
    overlap: Duration,
    limits: Limits,
    apps: BTreeMap<String, AppBook>,
    tokens: HashMap<String, TokenRecord>,
}

fn present(v: Option<&str>) -> Option<&str> {
    v.filter(|s| !s.is_empty())
}

impl World {
    pub(crate) fn new(config: &SimConfig) -> Self {
        let apps = config
            .apps
            .iter()
            .map(|a| {
                let book = AppBook {
                    secret: a.secret.clone(),
                    token: Lineage::default(),
                    stable: Lineage::default(),
                    wecom: Lineage::default(),
                    quota: QuotaBook::default(),
                    issued: Vec::new(),
                };
                (a.appid.clone(), book)
            })
            .collect();
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
            },
            apps,
            tokens: HashMap::new(),
        }
    }

    /// True when `appid` is a configured app (or corp).
    pub(crate) fn knows(&self, appid: &str) -> bool {
        self.apps.contains_key(appid)
    }

    /// `GET /cgi-bin/token`.
    pub(crate) fn token(&mut self, req: TokenRequest<'_>, now: Now) -> Result<Grant, WxError> {
        if present(req.grant_type) != Some("client_credential") {
            return Err(WxError::InvalidGrantType);
        }
        let appid = present(req.appid).ok_or(WxError::AppidMissing)?;
        let secret = present(req.secret).ok_or(WxError::SecretMissing)?;
        let book = self.apps.get_mut(appid).ok_or(WxError::InvalidAppid)?;
        if book.secret != secret {
            return Err(WxError::InvalidAppsecret);
        }
        book.quota.take_token(now, self.limits)?;
        Ok(self.issue_in_token_lineage(appid, TokenSource::Token, now))
    }

    /// A third party calling `cgi-bin/token` with the app's secret: same
    /// lineage and quota as the fleet's calls.
    pub(crate) fn external_refresh(&mut self, appid: &str, now: Now) -> Result<Grant, WxError> {
        let book = self.apps.get_mut(appid).ok_or(WxError::InvalidAppid)?;
        book.quota.take_token(now, self.limits)?;
        Ok(self.issue_in_token_lineage(appid, TokenSource::External, now))
    }

    fn issue_in_token_lineage(&mut self, appid: &str, source: TokenSource, now: Now) -> Grant {
        let lineage = self.lineage(appid, |b| &mut b.token);
        // The one before the previous dies at once; the previous gets the overlap.
        self.revoke(lineage.previous.as_deref(), now);
        self.supersede(lineage.current.as_deref(), now);
        self.issue(appid, source, now, |b| &mut b.token)
    }

    /// `POST /cgi-bin/stable_token`.
    pub(crate) fn stable_token(
        &mut self,
        req: StableRequest<'_>,
        now: Now,
    ) -> Result<Grant, WxError> {
        if present(req.grant_type) != Some("client_credential") {
            return Err(WxError::InvalidGrantType);
        }
        let appid = present(req.appid).ok_or(WxError::AppidMissing)?;
        let secret = present(req.secret).ok_or(WxError::SecretMissing)?;
        let book = self.apps.get_mut(appid).ok_or(WxError::InvalidAppid)?;
        if book.secret != secret {
            return Err(WxError::InvalidAppsecret);
        }
        book.quota.take_stable(now, self.limits)?;
        let lineage = book.stable.clone();
        if req.force_refresh {
            book.quota.take_force(now, self.limits)?;
            self.revoke(lineage.previous.as_deref(), now);
            self.revoke(lineage.current.as_deref(), now);
            return Ok(self.issue(appid, TokenSource::StableTokenForce, now, |b| &mut b.stable));
        }
        // Normal mode looks only at the time left, never at revocation: a
        // revoked stable token keeps being returned until it nears expiry or
        // a force refresh replaces it (why SPEC §5 allows force_refresh).
        if let Some(current) = lineage.current.as_deref()
            && let Some(rec) = self.tokens.get(current)
        {
            let remaining = rec.remaining(now.at);
            if remaining > self.overlap {
                return Ok(Grant {
                    token: current.to_owned(),
                    remaining,
                    source: TokenSource::StableToken,
                });
            }
        }
        self.supersede(lineage.current.as_deref(), now);
        Ok(self.issue(appid, TokenSource::StableToken, now, |b| &mut b.stable))
    }

    /// WeCom `GET /cgi-bin/gettoken`.
    pub(crate) fn wecom_token(
        &mut self,
        corpid: Option<&str>,
        corpsecret: Option<&str>,
        now: Now,
    ) -> Result<Grant, WxError> {
        let corpid = present(corpid).ok_or(WxError::CorpidMissing)?;
        let corpsecret = present(corpsecret).ok_or(WxError::CorpsecretMissing)?;
        let book = self.apps.get(corpid).ok_or(WxError::InvalidCorpid)?;
        if book.secret != corpsecret {
            return Err(WxError::InvalidCorpsecret);
        }
        let lineage = book.wecom.clone();
        if let Some(current) = lineage.current.as_deref()
            && let Some(rec) = self.tokens.get(current)
            && rec.state(now.at) == TokenState::Valid
        {
            return Ok(Grant {
                token: current.to_owned(),
                remaining: rec.remaining(now.at),
                source: TokenSource::Wecom,
            });
        }
        self.supersede(lineage.current.as_deref(), now);
        Ok(self.issue(corpid, TokenSource::Wecom, now, |b| &mut b.wecom))
    }

    /// What a use endpoint says about `token`, and whose token it is.
    pub(crate) fn token_state(&self, token: &str, now: Now) -> (TokenState, Option<&str>) {
        match self.tokens.get(token) {
            None => (TokenState::Unknown, None),
            Some(rec) => (rec.state(now.at), Some(rec.appid.as_str())),
        }
    }

    /// `GET cgi-bin/get_api_domain_ip`: the token must be valid (40001 /
    /// 42001 otherwise, as any API), then the call counts against the app's
    /// own daily quota for it (45009 when spent).
    pub(crate) fn domain_ip(&mut self, token: &str, now: Now) -> Result<(), WxError> {
        let (state, appid) = self.token_state(token, now);
        let appid = appid.map(str::to_owned);
        match state {
            TokenState::Valid => {}
            TokenState::Expired => return Err(WxError::AccessTokenExpired),
            TokenState::Invalid | TokenState::Unknown => return Err(WxError::InvalidCredential),
        }
        let limits = self.limits;
        let book = appid
            .and_then(|a| self.apps.get_mut(&a))
            .ok_or(WxError::InvalidCredential)?;
        book.quota.take_domain_ip(now, limits)
    }

    /// `get_api_domain_ip` calls `appid` made today.
    pub(crate) fn domain_ip_used(&self, appid: &str, now: Now) -> u32 {
        self.apps
            .get(appid)
            .map_or(0, |b| b.quota.domain_ip_used(now))
    }

    /// Revokes one token at once (WeChat or WeCom cutting it off early).
    /// Returns false when the token was never issued.
    pub(crate) fn revoke_token(&mut self, token: &str, now: Now) -> bool {
        match self.tokens.get_mut(token) {
            Some(rec) => {
                rec.revoke(now);
                true
            }
            None => false,
        }
    }

    /// Clears today's quotas of one app, or of all apps with `None`.
    /// Returns false for an unknown appid.
    pub(crate) fn clear_quota(&mut self, appid: Option<&str>) -> bool {
        match appid {
            Some(id) => match self.apps.get_mut(id) {
                Some(book) => {
                    book.quota.clear();
                    true
                }
                None => false,
            },
            None => {
                self.apps.values_mut().for_each(|b| b.quota.clear());
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

    /// Every token issued for `appid`, oldest first.
    pub(crate) fn issued(&self, appid: &str) -> Vec<IssuedToken> {
        let Some(book) = self.apps.get(appid) else {
            return Vec::new();
        };
        book.issued
            .iter()
            .filter_map(|t| self.tokens.get(t).map(|r| r.to_issued(t)))
            .collect()
    }

    /// Forgets every token and quota; the apps stay.
    pub(crate) fn reset(&mut self) {
        self.tokens.clear();
        for book in self.apps.values_mut() {
            book.token = Lineage::default();
            book.stable = Lineage::default();
            book.wecom = Lineage::default();
            book.quota.clear();
            book.issued.clear();
        }
    }

    fn lineage(&mut self, appid: &str, pick: fn(&mut AppBook) -> &mut Lineage) -> Lineage {
        self.apps
            .get_mut(appid)
            .map(|b| pick(b).clone())
            .unwrap_or_default()
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

    /// Mints a token, makes it the lineage's current one and records it.
    fn issue(
        &mut self,
        appid: &str,
        source: TokenSource,
        now: Now,
        pick: fn(&mut AppBook) -> &mut Lineage,
    ) -> Grant {
        let mut token = random_token();
        while self.tokens.contains_key(&token) {
            token = random_token();
        }
        self.tokens.insert(
            token.clone(),
            TokenRecord::new(appid, source, now, self.ttl),
        );
        if let Some(book) = self.apps.get_mut(appid) {
            let lineage = pick(book);
            lineage.previous = lineage.current.replace(token.clone());
            book.issued.push(token.clone());
        }
        tracing::info!(
            appid,
            source = source.as_str(),
            token_prefix = token_prefix(&token),
            ttl_ms = crate::token::millis(self.ttl),
            "issued token"
        );
        Grant {
            token,
            remaining: self.ttl,
            source,
        }
    }
}

#[cfg(test)]
#[path = "state_tests.rs"]
mod tests;
