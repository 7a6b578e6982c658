//! One issued token and how it dies: its record ([`TokenRecord`]), where it
//! came from ([`TokenSource`]), the verdict a use endpoint gives it
//! ([`TokenState`]), and random WeChat-looking token strings.
//!
//! A token dies of whichever comes first: its natural expiry (42001), or the
//! moment it became invalid (40001) because it was superseded longer than the
//! overlap ago, or revoked. This module applies that rule to one token;
//! which tokens get superseded or revoked when is the lineage logic in
//! `state`.

use std::fmt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::stats::IssuedToken;

/// Which call created a token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum TokenSource {
    /// `GET /cgi-bin/token`.
    Token,
    /// `POST /cgi-bin/stable_token` in normal mode.
    StableToken,
    /// `POST /cgi-bin/stable_token` with `force_refresh=true`.
    StableTokenForce,
    /// A third party calling `cgi-bin/token` behind the fleet's back
    /// (`/__admin/external_refresh`).
    External,
    /// WeCom `GET /qyapi/cgi-bin/gettoken` (or its root alias).
    Wecom,
    /// Open Platform `api_component_token`: a component access token,
    /// accepted only by `cgi-bin/component/*`.
    Component,
    /// Open Platform `api_query_auth` / `api_authorizer_token`: an
    /// authorizer access token, accepted by the app endpoints as a token
    /// of the authorizer appid.
    Authorizer,
}

impl TokenSource {
    /// The wire name: `token`, `stable_token`, `stable_token_force`,
    /// `external`, `wecom`, `component`, `authorizer`.
    pub fn as_str(self) -> &'static str {
        match self {
            TokenSource::Token => "token",
            TokenSource::StableToken => "stable_token",
            TokenSource::StableTokenForce => "stable_token_force",
            TokenSource::External => "external",
            TokenSource::Wecom => "wecom",
            TokenSource::Component => "component",
            TokenSource::Authorizer => "authorizer",
        }
    }
}

impl fmt::Display for TokenSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl PartialEq<str> for TokenSource {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for TokenSource {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// What a use endpoint would say about a token right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenState {
    /// Accepted.
    Valid,
    /// 40001: revoked, or superseded longer than the overlap ago.
    Invalid,
    /// 42001: past its natural expiry.
    Expired,
    /// 40001 as well: never issued by this simulator (or forgotten by a reset).
    Unknown,
}

/// One moment, read from both clocks: the monotonic one decides validity,
/// the wall clock is what gets reported (and what the quota day follows).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    pub(crate) at: Instant,
    pub(crate) unix_ms: u64,
}

impl Now {
    /// The current moment.
    pub(crate) fn current() -> Self {
        let unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        Self {
            at: Instant::now(),
            unix_ms,
        }
    }

    /// This moment moved `d` forward on both clocks.
    pub(crate) fn after(self, d: Duration) -> Self {
        Self {
            at: self.at + d,
            unix_ms: self.unix_ms + millis(d),
        }
    }
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `expires_in` as WeChat reports it: whole seconds, at least 1.
pub(crate) fn whole_seconds(d: Duration) -> u64 {
    d.as_secs().max(1)
}

/// Everything the simulator remembers about one issued token.
#[derive(Debug, Clone)]
pub(crate) struct TokenRecord {
    /// Whose token: the appid, or `corpid:agentid` for a WeCom agent (the
    /// key of its `Stats.apps` entry).
    pub(crate) owner: String,
    pub(crate) source: TokenSource,
    issued: Now,
    expires: Now,
    /// When a newer token of the same lineage was issued.
    superseded: Option<Now>,
    /// When the token was cut off before its overlap ended (force refresh,
    /// a second successor within the overlap, or an admin revoke).
    revoked: Option<Now>,
    /// From when the use endpoints answer 40001. Only set when that moment
    /// comes before the natural expiry: a token dies of whatever comes first.
    invalid_from: Option<Now>,
}

impl TokenRecord {
    pub(crate) fn new(owner: &str, source: TokenSource, now: Now, ttl: Duration) -> Self {
        Self {
            owner: owner.to_owned(),
            source,
            issued: now,
            expires: now.after(ttl),
            superseded: None,
            revoked: None,
            invalid_from: None,
        }
    }

    /// The verdict at `now`: 40001 beats 42001 only if the token became
    /// invalid before it expired.
    pub(crate) fn state(&self, now: Instant) -> TokenState {
        if self.invalid_from.is_some_and(|t| now >= t.at) {
            TokenState::Invalid
        } else if now >= self.expires.at {
            TokenState::Expired
        } else {
            TokenState::Valid
        }
    }

    /// Time left before natural expiry (zero once expired).
    pub(crate) fn remaining(&self, now: Instant) -> Duration {
        self.expires.at.saturating_duration_since(now)
    }

    /// A newer token of the same lineage was issued at `now`: this one keeps
    /// working for `overlap`, or until its own expiry if sooner.
    pub(crate) fn supersede(&mut self, now: Now, overlap: Duration) {
        if self.superseded.is_none() {
            self.superseded = Some(now);
        }
        self.die_at(now.after(overlap));
    }

    /// A newer token replaced this one without an overlap rule (WeCom: the
    /// old one is already dead, expired or revoked). Only recorded.
    pub(crate) fn replaced(&mut self, now: Now) {
        if self.superseded.is_none() {
            self.superseded = Some(now);
        }
    }

    /// Cut the token off at `now`, whatever overlap it had left. A token
    /// already dead (invalid or expired) keeps its cause of death.
    pub(crate) fn revoke(&mut self, now: Now) {
        if self.state(now.at) == TokenState::Valid {
            self.revoked = Some(now);
            self.die_at(now);
        }
    }

    fn die_at(&mut self, at: Now) {
        if at.at < self.expires.at && self.invalid_from.is_none_or(|t| at.at < t.at) {
            self.invalid_from = Some(at);
        }
    }

    /// The public, serializable view of this record.
    pub(crate) fn to_issued(&self, token: &str) -> IssuedToken {
        IssuedToken {
            token: token.to_owned(),
            source: self.source,
            issued_at_ms: self.issued.unix_ms,
            expires_at_ms: self.expires.unix_ms,
            superseded_at_ms: self.superseded.map(|t| t.unix_ms),
            revoked_at_ms: self.revoked.map(|t| t.unix_ms),
            invalid_from_ms: self.invalid_from.map(|t| t.unix_ms),
        }
    }
}

pub(crate) const TOKEN_ALPHABET: &[u8; 64] =
    b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";

/// A random WeChat-looking access token: `NN_` then 128 chars of
/// `[A-Za-z0-9_-]` (real ones are ~130-160 chars of that alphabet).
pub(crate) fn random_token() -> String {
    let mut rng = rand::rng();
    let mut s = format!("{}_", rng.random_range(80..100));
    s.push_str(&random_chars(&mut rng, 128));
    s
}

/// A random ticket (86 chars of `[A-Za-z0-9_-]`, like WeChat's).
pub(crate) fn random_ticket() -> String {
    random_chars(&mut rand::rng(), 86)
}

pub(crate) fn random_chars(rng: &mut impl Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from(TOKEN_ALPHABET[rng.random_range(0..TOKEN_ALPHABET.len())]))
        .collect()
}

/// At most the first 6 chars of a token: all a log line may show.
pub(crate) fn token_prefix(token: &str) -> &str {
    token.get(..6).unwrap_or(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn superseded_token_lives_for_the_overlap_then_is_invalid() {
        let t0 = Now::current();
        let mut r = TokenRecord::new("wx", TokenSource::Token, t0, 100 * S);
        r.supersede(t0.after(10 * S), 5 * S);
        assert_eq!(r.state(t0.after(14 * S).at), TokenState::Valid);
        assert_eq!(r.state(t0.after(15 * S).at), TokenState::Invalid);
        assert_eq!(r.state(t0.after(200 * S).at), TokenState::Invalid);
    }

    #[test]
    fn superseded_near_expiry_dies_of_expiry() {
        let t0 = Now::current();
        let mut r = TokenRecord::new("wx", TokenSource::StableToken, t0, 10 * S);
        r.supersede(t0.after(8 * S), 5 * S);
        assert_eq!(r.state(t0.after(9 * S).at), TokenState::Valid);
        assert_eq!(r.state(t0.after(10 * S).at), TokenState::Expired);
        assert_eq!(r.to_issued("x").invalid_from_ms, None);
    }

    #[test]
    fn revoke_is_immediate_and_does_not_resurrect() {
        let t0 = Now::current();
        let mut r = TokenRecord::new("wx", TokenSource::StableToken, t0, 10 * S);
        r.revoke(t0.after(S));
        assert_eq!(r.state(t0.after(S).at), TokenState::Invalid);
        // A later supersede must not move the moment of death.
        r.supersede(t0.after(2 * S), 5 * S);
        assert_eq!(r.state(t0.after(S).at), TokenState::Invalid);
        let issued = r.to_issued("x");
        assert_eq!(issued.revoked_at_ms, Some(t0.unix_ms + 1000));
        assert_eq!(issued.invalid_from_ms, Some(t0.unix_ms + 1000));
        assert_eq!(issued.superseded_at_ms, Some(t0.unix_ms + 2000));
    }

    #[test]
    fn revoking_an_expired_token_keeps_it_expired() {
        let t0 = Now::current();
        let mut r = TokenRecord::new("wx", TokenSource::Token, t0, 10 * S);
        r.revoke(t0.after(11 * S));
        assert_eq!(r.state(t0.after(12 * S).at), TokenState::Expired);
        assert_eq!(r.to_issued("x").revoked_at_ms, None);
    }

    #[test]
    fn tokens_look_like_wechat_tokens_and_differ() {
        let a = random_token();
        let b = random_token();
        assert_ne!(a, b);
        assert!(a.len() >= 100, "{}", a.len());
        assert!(
            a.bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        );
        assert_eq!(token_prefix(&a).len(), 6);
        assert_eq!(token_prefix("abc"), "abc");
    }

    #[test]
    fn expires_in_is_whole_seconds_at_least_one() {
        assert_eq!(whole_seconds(Duration::from_millis(3999)), 3);
        assert_eq!(whole_seconds(Duration::from_millis(10)), 1);
        assert_eq!(whole_seconds(Duration::ZERO), 1);
    }
}
