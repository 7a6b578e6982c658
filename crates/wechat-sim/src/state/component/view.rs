//! Authorizers as the rest of the world sees them: their access tokens
//! judged by the app endpoints (the same valid / expired / superseded
//! states as app tokens, owned by the authorizer appid), the app-side
//! books those endpoints spend, and the read-only views `shared` turns
//! into stats.

use crate::stats::{AuthorizerStats, ComponentStats};
use crate::token::{Now, TokenState};

use super::authorizers::AppSide;
use super::ids::{AuthKey, parse_access_token, refresh_token};
use super::{MINUTE, World};

impl World {
    /// The authorizer `token` (an authorizer access token) belongs to.
    pub(crate) fn authorizer_of_token(&self, token: &str) -> Option<AuthKey> {
        self.components
            .auth_tokens
            .owner(&parse_access_token(token)?)
    }

    /// What an app endpoint says about authorizer token `token`, and the
    /// authorizer appid that owns it. `None`: not an authorizer token.
    pub(crate) fn judge_authorizer(&self, token: &str, now: Now) -> Option<(TokenState, &str)> {
        let key = parse_access_token(token)?;
        let (state, owner) = self.components.auth_tokens.state(&key, now)?;
        Some((state, self.authorizer_appid(owner)?))
    }

    /// Revokes authorizer token `token` at once; false if never issued.
    pub(crate) fn revoke_authorizer_token(&mut self, token: &str, now: Now) -> bool {
        parse_access_token(token).is_some_and(|k| self.components.auth_tokens.revoke(&k, now))
    }

    /// The quota book and ticket slots of authorizer `key`, allocated on
    /// first use.
    pub(crate) fn authorizer_app_side(&mut self, key: AuthKey) -> Option<&mut AppSide> {
        let book = self.components.book_mut(key.component)?;
        Some(book.authorizers.get_mut(key.index)?.app_side())
    }

    /// The app-side books of authorizer appid `appid` in the first
    /// component that has it (for signature checks, which name an appid).
    pub(crate) fn authorizer_app_side_by_appid(&self, appid: &str) -> Option<&AppSide> {
        self.components.books.iter().find_map(|b| {
            let a = b.authorizers.get(b.authorizers.find(appid)?)?;
            a.app_side.as_deref()
        })
    }

    /// The key of `appid` among the authorizers of `component_appid`.
    pub(crate) fn find_authorizer(&self, component_appid: &str, appid: &str) -> Option<AuthKey> {
        let component = self.component_index(component_appid)?;
        let index = self.components.book(component)?.authorizers.find(appid)?;
        Some(AuthKey { component, index })
    }

    /// What the world knows of authorizer `key` (the counters are
    /// `shared`'s to add).
    pub(crate) fn authorizer_view(&self, key: AuthKey) -> Option<AuthorizerStats> {
        let book = self.components.book(key.component)?;
        let a = book.authorizers.get(key.index)?;
        let tokens = &self.components.auth_tokens;
        Some(AuthorizerStats {
            authorizer_appid: a.appid.as_str().to_owned(),
            revoked: a.revoked,
            auth_time: u64::from(a.auth_time),
            refresh_token: refresh_token(a.refresh()),
            access_tokens: [a.token_prev, a.token]
                .iter()
                .flatten()
                .filter_map(|k| tokens.to_issued(k))
                .collect(),
            ..AuthorizerStats::default()
        })
    }

    /// Writes what the world knows of component `c` at `now` into `stats`.
    pub(crate) fn fill_component_stats(&self, c: u16, stats: &mut ComponentStats, now: Now) {
        let Some(book) = self.components.book(c) else {
            return;
        };
        stats.verify_ticket = book.ticket.as_ref().map(|t| t.value.clone());
        stats.token_quota_used_today = book.tokens_today(now).into();
        stats.max_token_calls_per_minute = book.token_window.max_seen();
        stats.authorizer_calls_last_minute = book.authorizer_window.count(now.at, MINUTE);
        stats.max_authorizer_calls_per_minute = book.authorizer_window.max_seen();
        let (total, revoked) = book.authorizers.counts();
        stats.authorizers = total as u64;
        stats.authorizers_revoked = revoked as u64;
        stats.authorizer_tokens_issued = book.tokens_issued;
        // This component's share of the one token table.
        let tokens = &self.components.auth_tokens;
        let share = tokens.bytes() as u64 * book.tokens_issued / tokens.len().max(1) as u64;
        stats.authorizer_bytes = book.authorizers.bytes() as u64 + share;
        stats.issued = self.issued(&book.appid);
    }
}
