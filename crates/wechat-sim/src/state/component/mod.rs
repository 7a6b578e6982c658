//! The Open Platform (第三方平台) rules: per component ([`ComponentBook`])
//! its verify tickets, its component-token lineage and limits, its
//! authorization codes and its authorizers (`authorizers.rs`), whose
//! access tokens live in one compact book for all components
//! (`auth_tokens.rs`). The calls that create, use and revoke authorizers
//! are in `grants.rs`; compact names and token strings in `ids.rs`.
//!
//! Where WeChat's behaviour is uncertain the simulator takes the harsher
//! reading, stated where it is applied:
//! - Only the latest pushed verify ticket and the one before it buy
//!   component tokens (61006 for any older one, even inside its 12 h);
//!   a ticket counts as pushed when it is minted, delivered or not.
//! - Every `api_component_token` call issues a NEW component token; the
//!   previous one keeps working for `overlap`, any older one dies at once
//!   (the `cgi-bin/token` rule).
//! - A component token is refused by app endpoints (40001), and an app or
//!   authorizer token by component endpoints (61014).
//!
//! Like the rest of `state`, this is synchronous, takes the moment as an
//! argument, and knows nothing of HTTP, pushes, faults or counters.

use std::collections::HashMap;
use std::time::Duration;

use crate::config::SimConfig;
use crate::errcode::WxError;
use crate::quota::{SlidingWindow, quota_day};
use crate::token::{Now, TokenSource, TokenState, random_chars};

use super::{Grant, World, present};

mod auth_tokens;
mod authorizers;
mod grants;
mod ids;
mod view;

use auth_tokens::AuthTokens;
use authorizers::Authorizers;
pub use grants::{Authorization, ComponentError};
pub(crate) use grants::{AuthorizationInfo, AuthorizerGrant, AuthorizerPage};
pub(crate) use ids::AuthKey;

const MINUTE: Duration = Duration::from_secs(60);

/// `api_component_token` body fields (empty strings count as missing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ComponentTokenRequest<'a> {
    pub(crate) component_appid: Option<&'a str>,
    pub(crate) component_appsecret: Option<&'a str>,
    pub(crate) component_verify_ticket: Option<&'a str>,
}

/// The component rules' numbers (copied from `SimConfig`).
#[derive(Debug, Clone, Copy)]
struct ComponentRules {
    ticket_ttl: Duration,
    token_ttl: Duration,
    overlap: Duration,
    token_per_minute: u32,
    token_daily: u32,
    authorizer_per_minute: u32,
    code_ttl: Duration,
    rotation: bool,
}

/// One pushed verify ticket.
#[derive(Debug, Clone)]
struct VerifyTicket {
    value: String,
    pushed: Now,
}

/// One authorization code: single use, short-lived.
#[derive(Debug, Clone, Copy)]
struct AuthCode {
    authorizer: u32,
    expires: Now,
    used: bool,
}

/// One component: its secret, tickets, token lineage, limits, codes and
/// authorizers.
#[derive(Debug)]
pub(crate) struct ComponentBook {
    appid: String,
    secret: String,
    ticket: Option<VerifyTicket>,
    ticket_prev: Option<VerifyTicket>,
    token: Option<String>,
    token_prev: Option<String>,
    /// `(quota day, api_component_token calls that day)`.
    token_day: (u64, u32),
    token_window: SlidingWindow,
    /// Admitted `api_authorizer_token` calls, all authorizers together.
    authorizer_window: SlidingWindow,
    codes: HashMap<String, AuthCode>,
    authorizers: Authorizers,
    /// The next bulk-created appid's number.
    bulk_seq: u64,
    /// Authorizer access tokens issued for this component's authorizers.
    tokens_issued: u64,
}

impl ComponentBook {
    fn new(appid: &str, secret: &str) -> Self {
        Self {
            appid: appid.to_owned(),
            secret: secret.to_owned(),
            ticket: None,
            ticket_prev: None,
            token: None,
            token_prev: None,
            token_day: (0, 0),
            token_window: SlidingWindow::default(),
            authorizer_window: SlidingWindow::default(),
            codes: HashMap::new(),
            authorizers: Authorizers::default(),
            bulk_seq: 0,
            tokens_issued: 0,
        }
    }

    fn tokens_today(&self, now: Now) -> u32 {
        if self.token_day.0 == quota_day(now.unix_ms) {
            self.token_day.1
        } else {
            0
        }
    }
}

/// Every component, and the access tokens of all their authorizers.
#[derive(Debug)]
pub(crate) struct Components {
    books: Vec<ComponentBook>,
    auth_tokens: AuthTokens,
    rules: ComponentRules,
}

impl Components {
    pub(crate) fn new(config: &SimConfig, epoch: Now) -> Self {
        Self {
            books: config
                .components
                .iter()
                .map(|c| ComponentBook::new(&c.component_appid, &c.secret))
                .collect(),
            auth_tokens: AuthTokens::new(epoch, config.authorizer_token_ttl),
            rules: ComponentRules {
                ticket_ttl: config.verify_ticket_ttl,
                token_ttl: config.component_token_ttl,
                overlap: config.overlap,
                token_per_minute: config.component_token_per_minute,
                token_daily: config.component_token_daily_quota,
                authorizer_per_minute: config.authorizer_token_per_minute,
                code_ttl: config.auth_code_ttl,
                rotation: config.refresh_token_rotation,
            },
        }
    }

    /// Forgets tickets, tokens, codes and authorizers; the components stay.
    pub(crate) fn reset(&mut self) {
        for book in &mut self.books {
            *book = ComponentBook::new(&book.appid, &book.secret);
        }
        self.auth_tokens.clear();
    }

    fn book(&self, c: u16) -> Option<&ComponentBook> {
        self.books.get(usize::from(c))
    }

    fn book_mut(&mut self, c: u16) -> Option<&mut ComponentBook> {
        self.books.get_mut(usize::from(c))
    }
}

impl World {
    /// The position of component `appid`, if configured.
    pub(crate) fn component_index(&self, appid: &str) -> Option<u16> {
        let i = self
            .components
            .books
            .iter()
            .position(|b| b.appid == appid)?;
        u16::try_from(i).ok()
    }

    /// The appid of component `c`.
    pub(crate) fn component_appid(&self, c: u16) -> Option<&str> {
        self.components.book(c).map(|b| b.appid.as_str())
    }

    /// `appid` and `secret` name a configured component: 41002 / 41004
    /// when missing, 61011 unknown, 40125 wrong secret.
    pub(crate) fn check_component(
        &self,
        appid: Option<&str>,
        secret: Option<&str>,
    ) -> Result<u16, WxError> {
        let appid = present(appid).ok_or(WxError::AppidMissing)?;
        let c = self
            .component_index(appid)
            .ok_or(WxError::InvalidComponent)?;
        let secret = present(secret).ok_or(WxError::SecretMissing)?;
        match self.components.book(c) {
            Some(book) if book.secret == secret => Ok(c),
            _ => Err(WxError::InvalidAppsecret),
        }
    }

    /// A new verify ticket for component `c`, pushed at `now`: it becomes
    /// the latest, the latest becomes the previous, any older one is no
    /// longer accepted.
    pub(crate) fn mint_verify_ticket(&mut self, c: u16, now: Now) -> Option<String> {
        let book = self.components.book_mut(c)?;
        let value = format!("ticket@@@{}", random_chars(&mut rand::rng(), 86));
        let fresh = VerifyTicket {
            value: value.clone(),
            pushed: now,
        };
        book.ticket_prev = book.ticket.replace(fresh);
        Some(value)
    }

    /// The latest verify ticket of component `c`.
    pub(crate) fn verify_ticket(&self, c: u16) -> Option<&str> {
        let book = self.components.book(c)?;
        book.ticket.as_ref().map(|t| t.value.as_str())
    }

    /// `POST cgi-bin/component/api_component_token`.
    pub(crate) fn component_token(
        &mut self,
        req: ComponentTokenRequest<'_>,
        now: Now,
    ) -> Result<Grant, WxError> {
        let c = self.check_component(req.component_appid, req.component_appsecret)?;
        let rules = self.components.rules;
        let book = self
            .components
            .book_mut(c)
            .ok_or(WxError::InvalidComponent)?;
        // A ticket missing from the body is "invalid", as WeChat answers
        // a `"component_verify_ticket": null`.
        let presented = present(req.component_verify_ticket);
        let ticket = [&book.ticket, &book.ticket_prev]
            .into_iter()
            .flatten()
            .find(|t| Some(t.value.as_str()) == presented)
            .ok_or(WxError::ComponentTicketInvalid)?;
        if now.at.saturating_duration_since(ticket.pushed.at) >= rules.ticket_ttl {
            return Err(WxError::ComponentTicketExpired);
        }
        let used = book.tokens_today(now);
        if used >= rules.token_daily {
            return Err(WxError::DailyQuota);
        }
        if !book
            .token_window
            .has_room(now.at, MINUTE, rules.token_per_minute)
        {
            return Err(WxError::MinuteQuota);
        }
        book.token_window.admit(now.at);
        book.token_day = (quota_day(now.unix_ms), used + 1);
        let (appid, current, previous) = (
            book.appid.clone(),
            book.token.clone(),
            book.token_prev.clone(),
        );
        // The one before the previous dies at once; the previous gets the
        // overlap (the `cgi-bin/token` rule).
        self.revoke(previous.as_deref(), now);
        if let Some(rec) = current.as_deref().and_then(|t| self.tokens.get_mut(t)) {
            rec.supersede(now, rules.overlap);
        }
        let token = self.mint_token_ttl(&appid, TokenSource::Component, now, rules.token_ttl);
        if let Some(book) = self.components.book_mut(c) {
            book.token_prev = book.token.replace(token.clone());
        }
        Ok(Grant {
            token,
            remaining: rules.token_ttl,
            source: TokenSource::Component,
        })
    }

    /// The component a component API call's `component_access_token`
    /// belongs to: 41001 missing, 61014 an app or authorizer token, 40001
    /// unknown / superseded past the overlap / revoked, 42001 expired;
    /// then the body's `component_appid` (41002 missing) must be that
    /// component (61011 otherwise).
    pub(crate) fn judge_component(
        &self,
        token: Option<&str>,
        claimed: Option<&str>,
        now: Now,
    ) -> Result<u16, WxError> {
        let token = present(token).ok_or(WxError::AccessTokenMissing)?;
        let owner = match self.tokens.get(token) {
            Some(rec) if rec.source == TokenSource::Component => match rec.state(now.at) {
                TokenState::Valid => rec.owner.as_str(),
                TokenState::Expired => return Err(WxError::AccessTokenExpired),
                TokenState::Invalid | TokenState::Unknown => {
                    return Err(WxError::InvalidCredential);
                }
            },
            Some(_) => return Err(WxError::MustUseComponentToken),
            None if self.authorizer_of_token(token).is_some() => {
                return Err(WxError::MustUseComponentToken);
            }
            None => return Err(WxError::InvalidCredential),
        };
        let claimed = present(claimed).ok_or(WxError::AppidMissing)?;
        if claimed != owner {
            return Err(WxError::InvalidComponent);
        }
        self.component_index(owner)
            .ok_or(WxError::InvalidCredential)
    }

    /// `api_create_preauthcode`: a pre-auth code and its life. Nothing
    /// uses it later (the authorization page is not simulated).
    pub(crate) fn create_preauthcode(&self) -> (String, Duration) {
        let code = format!("preauthcode@@@{}", random_chars(&mut rand::rng(), 64));
        (code, self.components.rules.code_ttl)
    }
}

#[cfg(test)]
mod tests;
