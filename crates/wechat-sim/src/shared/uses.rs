//! Calls that present a token (use endpoints and ticket calls, on both
//! hosts) and JS-SDK signature checks: judging the token as the host would
//! (41001 missing, invalid, 42001 expired), running the rule, and counting
//! the verdict.
//!
//! The codes differ by host: an invalid token is 40001 on WeChat and 40014
//! on WeCom ([`Refusal`] converts to either). An Open Platform authorizer's
//! token is judged like an app token of the authorizer appid, and counted
//! on the authorizer's tally instead of `Stats.apps`. The rules are
//! `state`'s.

use crate::errcode::{WecomError, WxError};
use crate::state::{Host, TicketOwner, split_agent_key};
use crate::ticket::{TicketGrant, TicketKind, jsapi_signature, url_without_fragment};
use crate::token::{Now, TokenState};

use super::{Core, FlightGuard, SimState, bump};

/// Why a host refused a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// No `access_token` (41001).
    Missing,
    /// Never issued for this host, revoked, or superseded (40001 / 40014).
    Invalid,
    /// Past its natural expiry (42001).
    Expired,
}

impl From<Refusal> for WxError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Missing => WxError::AccessTokenMissing,
            Refusal::Invalid => WxError::InvalidCredential,
            Refusal::Expired => WxError::AccessTokenExpired,
        }
    }
}

impl From<Refusal> for WecomError {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Missing => WecomError::AccessTokenMissing,
            Refusal::Invalid => WecomError::InvalidAccessToken,
            Refusal::Expired => WecomError::AccessTokenExpired,
        }
    }
}

/// One `/__admin/jsapi_check` request, parsed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CheckRequest<'a> {
    pub(crate) kind: TicketKind,
    pub(crate) owner: TicketOwner<'a>,
    pub(crate) url: &'a str,
    pub(crate) noncestr: &'a str,
    pub(crate) timestamp: &'a str,
    pub(crate) signature: &'a str,
}

impl Core {
    /// Judges `token` as `host` would and counts the verdict on its owner
    /// (or globally, when the host does not know the token). The owner on
    /// success.
    fn judge_use(&mut self, token: Option<&str>, host: Host, now: Now) -> Result<String, Refusal> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            self.stats.uses_missing += 1;
            return Err(Refusal::Missing);
        };
        let (state, owner) = self.world.judge(token, host, now);
        let Some(owner) = owner.map(str::to_owned) else {
            self.stats.uses_unknown_token += 1;
            return Err(Refusal::Invalid);
        };
        if let Some(key) = self.world.authorizer_of_token(token) {
            // An authorizer's use is counted on its compact tally.
            let tally = self.tallies.entry(key).or_default();
            let counter = match state {
                TokenState::Valid => &mut tally.uses_ok,
                TokenState::Expired => &mut tally.uses_expired,
                TokenState::Invalid | TokenState::Unknown => &mut tally.uses_invalid,
            };
            *counter += 1;
            return match state {
                TokenState::Valid => Ok(owner),
                TokenState::Expired => Err(Refusal::Expired),
                TokenState::Invalid | TokenState::Unknown => Err(Refusal::Invalid),
            };
        }
        let app = self.stats.apps.entry(owner.clone()).or_default();
        match state {
            TokenState::Valid => {
                app.uses_ok += 1;
                Ok(owner)
            }
            TokenState::Expired => {
                app.uses_expired += 1;
                Err(Refusal::Expired)
            }
            TokenState::Invalid | TokenState::Unknown => {
                app.uses_invalid += 1;
                Err(Refusal::Invalid)
            }
        }
    }

    fn app_ticket(
        &mut self,
        token: Option<&str>,
        kind: Option<TicketKind>,
        now: Now,
    ) -> Result<TicketGrant, WxError> {
        let owner = self.judge_use(token, Host::Wechat, now)?;
        let kind = kind.ok_or(WxError::InvalidArgs)?;
        match token.and_then(|t| self.world.authorizer_of_token(t)) {
            Some(key) => self.world.authorizer_ticket(key, kind, now),
            None => self.world.app_ticket(&owner, kind, now),
        }
    }

    fn wecom_ticket(
        &mut self,
        token: Option<&str>,
        kind: Result<TicketKind, WecomError>,
        now: Now,
    ) -> Result<TicketGrant, WecomError> {
        let owner = self.judge_use(token, Host::Wecom, now)?;
        let kind = kind?;
        let result = self.world.wecom_ticket(&owner, kind, now);
        if result == Err(WecomError::FreqOutOfLimit)
            && let Some((corpid, agentid)) = split_agent_key(&owner)
            && let Some(corp) = self.stats.corps.get_mut(corpid)
        {
            let ty = kind.type_name();
            bump(&mut corp.ticket_cap_refusals, ty);
            let agent = corp.agents.entry(agentid.to_owned()).or_default();
            bump(&mut agent.ticket_cap_refusals, ty);
        }
        result
    }
}

impl SimState {
    /// A single-use login code for `appid`'s user `openid` (`None`: no such app).
    pub fn login_code(&self, appid: &str, openid: &str, risky: bool) -> Option<String> {
        self.with_world(|w| w.mint_code(appid, openid, risky))
    }

    /// Runs a rule of the world (the code exchanges) under the lock.
    pub(crate) fn with_world<T>(&self, f: impl FnOnce(&mut crate::state::World) -> T) -> T {
        f(&mut self.lock().world)
    }

    /// A business call that succeeded (see `routes::business`); `upload`
    /// records a media upload's part.
    pub(crate) fn business_ok(&self, path: &'static str, upload: Option<crate::stats::Upload>) {
        let mut core = self.lock();
        *core.stats.business_ok.entry(path.to_owned()).or_default() += 1;
        if let Some(u) = upload {
            if core.stats.uploads.len() >= 64 {
                core.stats.uploads.remove(0);
            }
            core.stats.uploads.push(u);
        }
    }

    /// A plain use endpoint (`getcallbackip`, WeCom `get_api_domain_ip`)
    /// with `token` on `host`; counted on the token's owner.
    pub(crate) fn use_token<E: From<Refusal>>(
        &self,
        token: Option<&str>,
        host: Host,
    ) -> Result<(), E> {
        let mut core = self.lock();
        core.judge_use(token, host, Now::current())?;
        Ok(())
    }

    /// WeChat `get_api_domain_ip` with `token`: counted per app whatever the
    /// answer (not as a use), with a daily quota of its own.
    pub(crate) fn domain_ip(&self, token: Option<&str>) -> Result<(), WxError> {
        let mut core = self.lock();
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            core.stats.uses_missing += 1;
            return Err(WxError::AccessTokenMissing);
        };
        let now = Now::current();
        let appid = core
            .world
            .judge(token, Host::Wechat, now)
            .1
            .map(str::to_owned);
        let result = core.world.domain_ip(token, now);
        match (appid, core.world.authorizer_of_token(token)) {
            (Some(_), Some(key)) => core.tallies.entry(key).or_default().domain_ip_calls += 1,
            (Some(appid), None) => core.stats.apps.entry(appid).or_default().domain_ip_calls += 1,
            (None, _) => core.stats.uses_unknown_token += 1,
        }
        result
    }

    /// WeCom `get_api_domain_ip`: a use (no quota on WeCom), also counted in
    /// the agent's `domain_ip_calls`, whatever WeCom answers.
    pub(crate) fn wecom_domain_ip(&self, token: Option<&str>) -> Result<(), WecomError> {
        let mut core = self.lock();
        let now = Now::current();
        let owner = token
            .and_then(|t| core.world.judge(t, Host::Wecom, now).1)
            .map(str::to_owned);
        if let Some(app) = owner.and_then(|o| core.stats.apps.get_mut(&o)) {
            app.domain_ip_calls += 1;
        }
        core.judge_use(token, Host::Wecom, now)?;
        Ok(())
    }

    /// An Official Account `getticket` that no fault stopped: token first
    /// (41001 / 40001 / 42001), then the type (40097), then the rule.
    pub(crate) fn app_ticket(
        &self,
        guard: &FlightGuard,
        garbage: bool,
        token: Option<&str>,
        kind: Option<TicketKind>,
    ) -> Result<TicketGrant, WxError> {
        let mut core = self.lock();
        let result = core.app_ticket(token, kind, Now::current());
        core.ticket_outcome(guard, garbage, &result);
        result
    }

    /// A WeCom ticket call that no fault stopped: token first (41001 /
    /// 40014 / 42001), then the type (40058), then caps and the rule.
    pub(crate) fn wecom_ticket(
        &self,
        guard: &FlightGuard,
        garbage: bool,
        token: Option<&str>,
        kind: Result<TicketKind, WecomError>,
    ) -> Result<TicketGrant, WecomError> {
        let mut core = self.lock();
        let result = core.wecom_ticket(token, kind, Now::current());
        core.ticket_outcome(guard, garbage, &result);
        result
    }

    /// What the browser's `wx.config` / `wx.agentConfig` would verify: the
    /// signature must be made with the CURRENT, still-valid ticket over the
    /// url without its `#fragment`. Counted as `signatures_ok` / `_bad` on
    /// the app or agent; `Err` carries the reason.
    pub(crate) fn jsapi_check(&self, req: &CheckRequest<'_>) -> Result<(), &'static str> {
        let mut core = self.lock();
        let now = Now::current();
        let Some((owner, usable)) = core.world.signing_ticket(req.kind, req.owner, now) else {
            return Err("unknown app, corp or agent for this kind");
        };
        let verdict = match usable {
            Err(unusable) => Err(unusable.reason()),
            Ok(ticket) => {
                let url = url_without_fragment(req.url);
                let expected = jsapi_signature(ticket, req.noncestr, req.timestamp, url);
                if expected == req.signature {
                    Ok(())
                } else {
                    Err("signature mismatch")
                }
            }
        };
        if let Some(app) = core.stats.apps.get_mut(&owner) {
            match verdict {
                Ok(()) => app.signatures_ok += 1,
                Err(_) => app.signatures_bad += 1,
            }
        }
        verdict
    }
}
