//! Every authorizer access token ever issued ([`AuthTokens`]), 40 bytes
//! each: its key, its authorizer and three moments as milliseconds since
//! the world's epoch. The same life as an app token (`token.rs`): dead of
//! whichever comes first, natural expiry (42001) or the moment it became
//! invalid (40001: superseded longer than the overlap ago, or revoked).
//!
//! Which token supersedes which is the authorizer's lineage
//! (`authorizers.rs`); this module keeps the records and judges one.
//! Times are `u32` milliseconds: a simulator run is at most 49 days.

use std::collections::HashMap;
use std::time::Duration;

use crate::stats::IssuedToken;
use crate::token::{Now, TokenSource, TokenState, millis};

use super::ids::{AuthKey, SecretKey, access_token, random_key};

/// "Never" for a `u32` moment.
const NEVER: u32 = u32::MAX;

#[derive(Debug, Clone, Copy)]
struct AuthTokenRecord {
    owner: AuthKey,
    issued_ms: u32,
    /// When a newer token of the authorizer was issued.
    superseded_ms: u32,
    /// From when it answers 40001 (only if before the natural expiry).
    invalid_ms: u32,
    /// Cut off before its overlap ended (a second successor, a revoke).
    revoked: bool,
}

/// All authorizer access tokens of all components.
#[derive(Debug)]
pub(crate) struct AuthTokens {
    epoch: Now,
    ttl_ms: u32,
    records: HashMap<SecretKey, AuthTokenRecord>,
}

fn ms_u32(d: Duration) -> u32 {
    u32::try_from(millis(d)).unwrap_or(NEVER - 1)
}

impl AuthTokens {
    pub(crate) fn new(epoch: Now, ttl: Duration) -> Self {
        Self {
            epoch,
            ttl_ms: ms_u32(ttl),
            records: HashMap::new(),
        }
    }

    /// `now` as milliseconds since the epoch.
    fn rel(&self, now: Now) -> u32 {
        ms_u32(now.at.saturating_duration_since(self.epoch.at))
    }

    /// The full life of a token, as `expires_in` reports it.
    pub(crate) fn ttl(&self) -> Duration {
        Duration::from_millis(u64::from(self.ttl_ms))
    }

    /// Mints a token for `owner` at `now`.
    pub(crate) fn mint(&mut self, owner: AuthKey, now: Now) -> SecretKey {
        let mut key = random_key();
        while self.records.contains_key(&key) {
            key = random_key();
        }
        let record = AuthTokenRecord {
            owner,
            issued_ms: self.rel(now),
            superseded_ms: NEVER,
            invalid_ms: NEVER,
            revoked: false,
        };
        self.records.insert(key, record);
        key
    }

    /// The verdict on `key` at `now`, and whose token it is.
    pub(crate) fn state(&self, key: &SecretKey, now: Now) -> Option<(TokenState, AuthKey)> {
        let r = self.records.get(key)?;
        let at = self.rel(now);
        let state = if at >= r.invalid_ms {
            TokenState::Invalid
        } else if at >= r.issued_ms.saturating_add(self.ttl_ms) {
            TokenState::Expired
        } else {
            TokenState::Valid
        };
        Some((state, r.owner))
    }

    /// The owner of the token with key `key`, if it was ever issued.
    pub(crate) fn owner(&self, key: &SecretKey) -> Option<AuthKey> {
        self.records.get(key).map(|r| r.owner)
    }

    /// A newer token was issued at `now`: this one works `overlap` more.
    pub(crate) fn supersede(&mut self, key: &SecretKey, now: Now, overlap: Duration) {
        let at = self.rel(now);
        let dies = at.saturating_add(ms_u32(overlap));
        if let Some(r) = self.records.get_mut(key) {
            if r.superseded_ms == NEVER {
                r.superseded_ms = at;
            }
            Self::die_at(r, dies, self.ttl_ms);
        }
    }

    /// Cut off at `now`; a token already dead keeps its cause of death.
    pub(crate) fn revoke(&mut self, key: &SecretKey, now: Now) -> bool {
        let valid = matches!(self.state(key, now), Some((TokenState::Valid, _)));
        let at = self.rel(now);
        match self.records.get_mut(key) {
            Some(r) => {
                if valid {
                    r.revoked = true;
                    Self::die_at(r, at, self.ttl_ms);
                }
                true
            }
            None => false,
        }
    }

    fn die_at(r: &mut AuthTokenRecord, at: u32, ttl_ms: u32) {
        if at < r.issued_ms.saturating_add(ttl_ms) && at < r.invalid_ms {
            r.invalid_ms = at;
        }
    }

    /// The public view of one token.
    pub(crate) fn to_issued(&self, key: &SecretKey) -> Option<IssuedToken> {
        let r = self.records.get(key)?;
        let unix = |ms: u32| (ms != NEVER).then(|| self.epoch.unix_ms + u64::from(ms));
        Some(IssuedToken {
            token: access_token(key),
            source: TokenSource::Authorizer,
            issued_at_ms: self.epoch.unix_ms + u64::from(r.issued_ms),
            expires_at_ms: self.epoch.unix_ms + u64::from(r.issued_ms) + u64::from(self.ttl_ms),
            superseded_at_ms: unix(r.superseded_ms),
            revoked_at_ms: if r.revoked { unix(r.invalid_ms) } else { None },
            invalid_from_ms: unix(r.invalid_ms),
        })
    }

    /// Tokens issued so far.
    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    /// Bytes the records take (an estimate from the table's capacity).
    pub(crate) fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<(SecretKey, AuthTokenRecord)>() + 1;
        self.records.capacity() * slot
    }

    /// Forgets every token.
    pub(crate) fn clear(&mut self) {
        self.records.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);
    const OWNER: AuthKey = AuthKey {
        component: 0,
        index: 7,
    };

    #[test]
    fn a_token_lives_its_ttl_and_dies_of_whichever_comes_first() {
        let t0 = Now::current();
        let mut book = AuthTokens::new(t0, 100 * S);
        let a = book.mint(OWNER, t0);
        assert_eq!(
            book.state(&a, t0.after(99 * S)),
            Some((TokenState::Valid, OWNER))
        );
        assert_eq!(
            book.state(&a, t0.after(100 * S)).unwrap().0,
            TokenState::Expired
        );
        let b = book.mint(OWNER, t0);
        book.supersede(&b, t0.after(10 * S), 5 * S);
        assert_eq!(
            book.state(&b, t0.after(14 * S)).unwrap().0,
            TokenState::Valid
        );
        assert_eq!(
            book.state(&b, t0.after(15 * S)).unwrap().0,
            TokenState::Invalid
        );
        let c = book.mint(OWNER, t0);
        book.supersede(&c, t0.after(98 * S), 5 * S);
        assert_eq!(
            book.state(&c, t0.after(100 * S)).unwrap().0,
            TokenState::Expired
        );
        assert!(book.revoke(&c, t0.after(101 * S)));
        assert_eq!(
            book.state(&c, t0.after(101 * S)).unwrap().0,
            TokenState::Expired
        );
        assert!(!book.revoke(&random_key(), t0));
        let issued = book.to_issued(&b).unwrap();
        assert_eq!(issued.invalid_from_ms, Some(t0.unix_ms + 15_000));
        assert_eq!(issued.superseded_at_ms, Some(t0.unix_ms + 10_000));
        assert_eq!(issued.revoked_at_ms, None);
        assert_eq!(issued.source, TokenSource::Authorizer);
        assert!(std::mem::size_of::<(SecretKey, AuthTokenRecord)>() <= 40);
    }
}
