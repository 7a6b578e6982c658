//! The Official Account / Mini Program token rules: `cgi-bin/token` (and
//! external refreshes), `stable_token` normal and forced, and the app-side
//! use endpoint with a quota of its own (`get_api_domain_ip`). See the
//! parent module for the lineage rules themselves.

use crate::errcode::WxError;
use crate::quota::QuotaBook;
use crate::ticket::TicketSlot;
use crate::token::{Now, TokenSource, TokenState};

use super::{Grant, Host, World, present};

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
pub(super) struct Lineage {
    current: Option<String>,
    previous: Option<String>,
}

/// One app: its secret, lineages, quotas and current tickets.
#[derive(Debug)]
pub(super) struct AppBook {
    pub(super) secret: String,
    token: Lineage,
    stable: Lineage,
    pub(super) quota: QuotaBook,
    /// `clear_quota` resets this calendar month (not cleared by a reset).
    pub(super) clears: super::openapi::MonthlyClears,
    pub(super) jsapi: TicketSlot,
    pub(super) wx_card: TicketSlot,
}

impl AppBook {
    pub(super) fn new(secret: &str) -> Self {
        Self {
            secret: secret.to_owned(),
            token: Lineage::default(),
            stable: Lineage::default(),
            quota: QuotaBook::default(),
            clears: Default::default(),
            jsapi: TicketSlot::default(),
            wx_card: TicketSlot::default(),
        }
    }

    pub(super) fn reset(&mut self) {
        *self = Self::new(&self.secret);
    }
}

impl World {
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

    /// `GET cgi-bin/get_api_domain_ip`: the token must be a valid app token
    /// (40001 / 42001 otherwise, as any API), then the call counts against
    /// the app's own daily quota for it (45009 when spent).
    pub(crate) fn domain_ip(&mut self, token: &str, now: Now) -> Result<(), WxError> {
        let (state, appid) = self.judge(token, Host::Wechat, now);
        let appid = appid.map(str::to_owned);
        match state {
            TokenState::Valid => {}
            TokenState::Expired => return Err(WxError::AccessTokenExpired),
            TokenState::Invalid | TokenState::Unknown => return Err(WxError::InvalidCredential),
        }
        let limits = self.limits;
        // An authorizer's token spends the authorizer's own quota.
        if let Some(key) = self.authorizer_of_token(token) {
            let side = self
                .authorizer_app_side(key)
                .ok_or(WxError::InvalidCredential)?;
            return side.quota.take_domain_ip(now, limits);
        }
        let book = appid
            .and_then(|a| self.apps.get_mut(&a))
            .ok_or(WxError::InvalidCredential)?;
        book.quota.take_domain_ip(now, limits)
    }

    fn lineage(&mut self, appid: &str, pick: fn(&mut AppBook) -> &mut Lineage) -> Lineage {
        self.apps
            .get_mut(appid)
            .map(|b| pick(b).clone())
            .unwrap_or_default()
    }

    /// Mints a token and makes it the lineage's current one.
    fn issue(
        &mut self,
        appid: &str,
        source: TokenSource,
        now: Now,
        pick: fn(&mut AppBook) -> &mut Lineage,
    ) -> Grant {
        let token = self.mint_token(appid, source, now);
        if let Some(book) = self.apps.get_mut(appid) {
            let lineage = pick(book);
            lineage.previous = lineage.current.replace(token.clone());
        }
        Grant {
            token,
            remaining: self.ttl,
            source,
        }
    }
}
