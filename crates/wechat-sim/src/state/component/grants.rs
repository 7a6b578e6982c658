//! What happens to authorizers: a merchant authorizing, re-authorizing
//! (`updateauthorized`) or revoking (`unauthorized`) a component, a bulk
//! of them created at once for benchmarks; and the component calls that
//! spend what authorization gave: `api_query_auth` (code → first tokens),
//! `api_authorizer_token` (refresh token → access token) and
//! `api_get_authorizer_list` (the way back to every refresh token).
//!
//! Harsher readings taken here:
//! - With `refresh_token_rotation` (the default) every reply that carries
//!   `authorizer_refresh_token` carries a new one, and only the two most
//!   recently issued are accepted (61023 for older ones). WeChat documents
//!   a refresh token that never changes; SPEC §9 says "persist whatever
//!   comes back", which only the rotating reading tests.
//! - Re-authorization (`updateauthorized`) mints a new refresh token and
//!   kills the older ones ("用户重新授权后，之前的刷新令牌会失效"): a platform
//!   must exchange the new code (or list) to keep refreshing. Its access
//!   tokens keep living.
//! - Revocation (`unauthorized`) kills the refresh tokens (61023) AND the
//!   access tokens at once (40001), and drops the authorizer from lists.
//! - A code is single use (61009 the second time), lives `auth_code_ttl`
//!   (61010 after), and dies with a later (re-)authorization or revoke.
//! - Pages of `api_get_authorizer_list` are offsets over the live
//!   authorizers: a revoke between two pages shifts the rest by one.
//! - `count` outside 1..=500 is refused (40097) rather than clamped.
//! - An unknown `authorizer_appid` is 61023, like a wrong refresh token.

use rand::Rng;

use crate::errcode::WxError;
use crate::token::{Now, random_chars};

use super::ids::{AppId, AuthKey, parse_refresh_token, refresh_token};
use super::{AuthCode, MINUTE, World, present};

/// The most `api_get_authorizer_list` returns per page.
const MAX_PAGE: u64 = 500;

/// Why an admin action on a component or authorizer cannot happen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ComponentError {
    /// No component with this appid is configured.
    #[error("unknown component {0:?}")]
    UnknownComponent(String),
    /// The component has no such (live) authorizer.
    #[error("unknown or revoked authorizer {0:?}")]
    UnknownAuthorizer(String),
    /// Not an appid: empty, longer than 31 bytes, or not printable ASCII.
    #[error("bad authorizer appid {0:?}")]
    BadAppid(String),
    /// A replay was asked for before any genuine push was sent.
    #[error("component {0:?} has pushed nothing yet")]
    NothingPushed(String),
}

/// One (re-)authorization, as the admin API reports it: what the pushed
/// `authorized` / `updateauthorized` event carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Authorization {
    pub component_appid: String,
    pub authorizer_appid: String,
    /// `authorized` or `updateauthorized`.
    pub info_type: String,
    /// The single-use code `api_query_auth` exchanges.
    pub authorization_code: String,
    /// Unix seconds after which the code is 61010.
    pub code_expires_at: u64,
    /// The refresh token the authorization minted (what a list shows).
    pub refresh_token: String,
    /// Unix seconds of the authorization.
    pub create_time: u64,
}

/// `api_query_auth`'s `authorization_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizationInfo {
    pub(crate) authorizer_appid: String,
    pub(crate) grant: AuthorizerGrant,
}

/// A new authorizer access token and the refresh token to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizerGrant {
    pub(crate) access_token: String,
    pub(crate) expires_in: std::time::Duration,
    pub(crate) refresh_token: String,
}

/// One page of `api_get_authorizer_list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AuthorizerPage {
    pub(crate) total_count: u64,
    /// `(authorizer_appid, refresh_token, auth_time)`.
    pub(crate) list: Vec<(String, String, u64)>,
}

impl World {
    fn component_or(&self, component_appid: &str) -> Result<u16, ComponentError> {
        self.component_index(component_appid)
            .ok_or_else(|| ComponentError::UnknownComponent(component_appid.to_owned()))
    }

    /// A merchant authorizes `appid` for the component at `now` (a new
    /// authorizer, or a revoked one coming back: `authorized`; one still
    /// authorized: `updateauthorized`). Mints a refresh token and a code.
    pub(crate) fn authorize(
        &mut self,
        component_appid: &str,
        appid: &str,
        now: Now,
    ) -> Result<Authorization, ComponentError> {
        let c = self.component_or(component_appid)?;
        let id = AppId::new(appid).ok_or_else(|| ComponentError::BadAppid(appid.to_owned()))?;
        let book = self
            .components
            .book_mut(c)
            .ok_or_else(|| ComponentError::UnknownComponent(component_appid.to_owned()))?;
        let (index, info_type) = match book.authorizers.find(appid) {
            None => (book.authorizers.insert(id, now), "authorized"),
            Some(i) => {
                let was_revoked = book.authorizers.get(i).is_some_and(|a| a.revoked);
                book.authorizers.set_revoked(i, false);
                if let Some(a) = book.authorizers.get_mut(i) {
                    a.reauthorize(now);
                }
                let kind = if was_revoked {
                    "authorized"
                } else {
                    "updateauthorized"
                };
                (i, kind)
            }
        };
        Ok(self.issue_code(c, index, info_type, now))
    }

    /// A merchant re-authorizes (changes the permissions of) `appid`,
    /// which must be authorized now: `updateauthorized`.
    pub(crate) fn update_authorize(
        &mut self,
        component_appid: &str,
        appid: &str,
        now: Now,
    ) -> Result<Authorization, ComponentError> {
        self.live_authorizer(component_appid, appid)?;
        self.authorize(component_appid, appid, now)
    }

    /// A merchant revokes the component: refresh tokens 61023, access
    /// tokens 40001 at once, codes dead, out of the lists.
    pub(crate) fn unauthorize(
        &mut self,
        component_appid: &str,
        appid: &str,
        now: Now,
    ) -> Result<u64, ComponentError> {
        let key = self.live_authorizer(component_appid, appid)?;
        let comps = &mut self.components;
        let Some(book) = comps.book_mut(key.component) else {
            return Err(ComponentError::UnknownComponent(component_appid.to_owned()));
        };
        book.authorizers.set_revoked(key.index, true);
        book.codes.retain(|_, code| code.authorizer != key.index);
        if let Some(a) = book.authorizers.get(key.index) {
            for t in [a.token, a.token_prev].into_iter().flatten() {
                comps.auth_tokens.revoke(&t, now);
            }
        }
        Ok(now.unix_ms / 1000)
    }

    /// Creates `n` authorizers at once (`wx` + 16 hex digits, never an
    /// appid already there), each with a refresh token and nothing else:
    /// no code, no push. For 100 000-authorizer benchmarks.
    pub(crate) fn bulk_authorize(
        &mut self,
        component_appid: &str,
        n: usize,
        now: Now,
    ) -> Result<usize, ComponentError> {
        let c = self.component_or(component_appid)?;
        let Some(book) = self.components.book_mut(c) else {
            return Err(ComponentError::UnknownComponent(component_appid.to_owned()));
        };
        book.authorizers.reserve(n);
        let base = 0xb000_0000_0000_0000_u64 | (u64::from(c) << 40);
        let mut rng = rand::rng();
        let mut created = 0;
        while created < n {
            let id = AppId::hex(base + book.bulk_seq);
            book.bulk_seq += 1;
            if book.authorizers.insert_new(id, now, rng.random()) {
                created += 1;
            }
        }
        Ok(created)
    }

    /// `appid`'s key when it is a live authorizer of the component.
    fn live_authorizer(
        &self,
        component_appid: &str,
        appid: &str,
    ) -> Result<AuthKey, ComponentError> {
        let c = self.component_or(component_appid)?;
        let unknown = || ComponentError::UnknownAuthorizer(appid.to_owned());
        let book = self.components.book(c).ok_or_else(unknown)?;
        let index = book.authorizers.find(appid).ok_or_else(unknown)?;
        match book.authorizers.get(index) {
            Some(a) if !a.revoked => Ok(AuthKey {
                component: c,
                index,
            }),
            _ => Err(unknown()),
        }
    }

    fn issue_code(&mut self, c: u16, index: u32, info_type: &str, now: Now) -> Authorization {
        let ttl = self.components.rules.code_ttl;
        let code = format!("queryauthcode@@@{}", random_chars(&mut rand::rng(), 86));
        let expires = now.after(ttl);
        let book = &mut self.components.books[usize::from(c)];
        book.codes.retain(|_, old| old.authorizer != index);
        book.codes.insert(
            code.clone(),
            AuthCode {
                authorizer: index,
                expires,
                used: false,
            },
        );
        let (appid, refresh) = book
            .authorizers
            .get(index)
            .map(|a| (a.appid.as_str().to_owned(), refresh_token(a.refresh())))
            .unwrap_or_default();
        Authorization {
            component_appid: book.appid.clone(),
            authorizer_appid: appid,
            info_type: info_type.to_owned(),
            authorization_code: code,
            code_expires_at: expires.unix_ms / 1000,
            refresh_token: refresh,
            create_time: now.unix_ms / 1000,
        }
    }

    /// `api_query_auth` for component `c`: 61009 unknown / used / dead
    /// code, 61010 expired; else the code is spent and the authorizer gets
    /// a new access token (and, rotating, a new refresh token).
    pub(crate) fn query_auth(
        &mut self,
        c: u16,
        code: Option<&str>,
        now: Now,
    ) -> Result<AuthorizationInfo, WxError> {
        let code = present(code).ok_or(WxError::CodeInvalid)?;
        let book = self
            .components
            .book_mut(c)
            .ok_or(WxError::InvalidComponent)?;
        let entry = book.codes.get_mut(code).ok_or(WxError::CodeInvalid)?;
        if entry.used {
            return Err(WxError::CodeInvalid);
        }
        if now.at >= entry.expires.at {
            return Err(WxError::CodeExpired);
        }
        entry.used = true;
        let key = AuthKey {
            component: c,
            index: entry.authorizer,
        };
        let grant = self
            .grant_authorizer(key, now)
            .ok_or(WxError::CodeInvalid)?;
        let appid = self.authorizer_appid(key).unwrap_or_default().to_owned();
        Ok(AuthorizationInfo {
            authorizer_appid: appid,
            grant,
        })
    }

    /// `api_authorizer_token` for component `c`: 45011 when the
    /// component's minute window is full (checked first: a refused call
    /// spends nothing), 61023 unless the refresh token is one of the live
    /// authorizer's accepted ones.
    pub(crate) fn authorizer_token(
        &mut self,
        c: u16,
        appid: Option<&str>,
        refresh: Option<&str>,
        now: Now,
    ) -> Result<AuthorizerGrant, WxError> {
        let appid = present(appid).ok_or(WxError::AppidMissing)?;
        let cap = self.components.rules.authorizer_per_minute;
        let book = self
            .components
            .book_mut(c)
            .ok_or(WxError::InvalidComponent)?;
        if !book.authorizer_window.has_room(now.at, MINUTE, cap) {
            return Err(WxError::MinuteQuota);
        }
        let presented = present(refresh).and_then(parse_refresh_token);
        let index = book
            .authorizers
            .find(appid)
            .ok_or(WxError::RefreshTokenInvalid)?;
        let accepted = book
            .authorizers
            .get(index)
            .zip(presented)
            .is_some_and(|(a, k)| a.accepts(&k));
        if !accepted {
            return Err(WxError::RefreshTokenInvalid);
        }
        book.authorizer_window.admit(now.at);
        self.grant_authorizer(
            AuthKey {
                component: c,
                index,
            },
            now,
        )
        .ok_or(WxError::RefreshTokenInvalid)
    }

    /// A new access token for `key` (the previous one gets the overlap,
    /// any older one dies at once) and the refresh token to keep (a new
    /// one when rotating).
    fn grant_authorizer(&mut self, key: AuthKey, now: Now) -> Option<AuthorizerGrant> {
        let (overlap, rotation) = (
            self.components.rules.overlap,
            self.components.rules.rotation,
        );
        let comps = &mut self.components;
        let book = comps.books.get_mut(usize::from(key.component))?;
        book.tokens_issued += 1;
        let a = book.authorizers.get_mut(key.index)?;
        if let Some(old) = a.token_prev {
            comps.auth_tokens.revoke(&old, now);
        }
        if let Some(current) = a.token {
            comps.auth_tokens.supersede(&current, now, overlap);
        }
        let fresh = comps.auth_tokens.mint(key, now);
        a.token_prev = a.token.replace(fresh);
        let refresh = if rotation {
            a.rotate_refresh()
        } else {
            *a.refresh()
        };
        Some(AuthorizerGrant {
            access_token: super::ids::access_token(&fresh),
            expires_in: comps.auth_tokens.ttl(),
            refresh_token: refresh_token(&refresh),
        })
    }

    /// `api_get_authorizer_list` for component `c`: the CURRENT refresh
    /// token of every live authorizer, `count` (1..=500, else 40097) from
    /// `offset`.
    pub(crate) fn authorizer_list(
        &self,
        c: u16,
        offset: u64,
        count: u64,
    ) -> Result<AuthorizerPage, WxError> {
        if !(1..=MAX_PAGE).contains(&count) {
            return Err(WxError::InvalidArgs);
        }
        let book = self.components.book(c).ok_or(WxError::InvalidComponent)?;
        let (total, revoked) = book.authorizers.counts();
        let offset = usize::try_from(offset).unwrap_or(usize::MAX);
        let list = book
            .authorizers
            .page(offset, count as usize)
            .map(|a| {
                (
                    a.appid.as_str().to_owned(),
                    refresh_token(a.refresh()),
                    u64::from(a.auth_time),
                )
            })
            .collect();
        Ok(AuthorizerPage {
            total_count: (total - revoked) as u64,
            list,
        })
    }

    pub(crate) fn authorizer_appid(&self, key: AuthKey) -> Option<&str> {
        let book = self.components.book(key.component)?;
        book.authorizers.get(key.index).map(|a| a.appid.as_str())
    }
}
