//! One component's authorizers ([`Authorizers`]): the accounts that
//! authorized it, in authorization order, each with its refresh tokens,
//! its access-token lineage and whether it revoked. About 150 bytes per
//! authorizer (an inline appid, two refresh keys, two token keys, a slot
//! in the appid index), so 100 000 of them cost ~15 MB; the quota book and
//! ticket slots an authorizer needs only for app endpoints are boxed and
//! allocated on first use.
//!
//! Refresh tokens: an authorization mints one and forgets the older ones;
//! with rotation every successful exchange mints another, and the two most
//! recent are accepted. This module keeps that record and answers "is this
//! one accepted"; the calls that spend or mint are in `grants.rs`.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::quota::QuotaBook;
use crate::ticket::TicketSlot;
use crate::token::Now;

use super::ids::{AppId, SecretKey, random_key};

/// What an authorizer needs only once it calls app endpoints
/// (`get_api_domain_ip`, `getticket`) with its token.
#[derive(Debug, Default)]
pub(crate) struct AppSide {
    pub(crate) quota: QuotaBook,
    pub(crate) jsapi: TicketSlot,
    pub(crate) wx_card: TicketSlot,
}

/// One authorizer of one component.
#[derive(Debug)]
pub(crate) struct Authorizer {
    pub(crate) appid: AppId,
    /// The latest refresh token.
    refresh: SecretKey,
    /// The one before it, still accepted (rotation only).
    refresh_prev: Option<SecretKey>,
    /// Unauthorized: every refresh token refused, no longer listed.
    pub(crate) revoked: bool,
    /// Unix seconds of the latest authorization (`auth_time` in lists).
    pub(crate) auth_time: u32,
    /// The latest access token and the one before it (which gets the
    /// overlap); older ones are dead already.
    pub(crate) token: Option<SecretKey>,
    pub(crate) token_prev: Option<SecretKey>,
    /// Boxed so that an authorizer that never calls app endpoints pays 8
    /// bytes for it.
    pub(crate) app_side: Option<Box<AppSide>>,
}

impl Authorizer {
    fn new(appid: AppId, now: Now, refresh: SecretKey) -> Self {
        Self {
            appid,
            refresh,
            refresh_prev: None,
            revoked: false,
            auth_time: unix_secs(now),
            token: None,
            token_prev: None,
            app_side: None,
        }
    }

    /// The refresh token a list shows and a non-rotating exchange returns.
    pub(crate) fn refresh(&self) -> &SecretKey {
        &self.refresh
    }

    /// True when `key` is one of the accepted refresh tokens.
    pub(crate) fn accepts(&self, key: &SecretKey) -> bool {
        !self.revoked && (self.refresh == *key || self.refresh_prev.as_ref() == Some(key))
    }

    /// A new refresh token; the latest stays accepted, older ones die.
    pub(crate) fn rotate_refresh(&mut self) -> SecretKey {
        self.refresh_prev = Some(self.refresh);
        self.refresh = random_key();
        self.refresh
    }

    /// (Re-)authorization at `now`: one new refresh token, all older ones
    /// dead, not revoked any more.
    pub(crate) fn reauthorize(&mut self, now: Now) {
        self.refresh = random_key();
        self.refresh_prev = None;
        self.revoked = false;
        self.auth_time = unix_secs(now);
    }

    /// The app-side books, allocated on first use.
    pub(crate) fn app_side(&mut self) -> &mut AppSide {
        self.app_side.get_or_insert_with(Box::default)
    }
}

fn unix_secs(now: Now) -> u32 {
    u32::try_from(now.unix_ms / 1000).unwrap_or(u32::MAX)
}

/// A component's authorizers, in authorization order, with an appid index.
#[derive(Debug, Default)]
pub(crate) struct Authorizers {
    list: Vec<Authorizer>,
    index: HashMap<AppId, u32>,
    revoked: usize,
}

impl Authorizers {
    /// The position of `appid`, if it ever authorized.
    pub(crate) fn find(&self, appid: &str) -> Option<u32> {
        self.index.get(&AppId::new(appid)?).copied()
    }

    pub(crate) fn get(&self, index: u32) -> Option<&Authorizer> {
        self.list.get(index as usize)
    }

    pub(crate) fn get_mut(&mut self, index: u32) -> Option<&mut Authorizer> {
        self.list.get_mut(index as usize)
    }

    /// Adds `appid` (which must be new) authorized at `now`.
    pub(crate) fn insert(&mut self, appid: AppId, now: Now) -> u32 {
        let index = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        self.list.push(Authorizer::new(appid, now, random_key()));
        self.index.insert(appid, index);
        index
    }

    /// Adds `appid` with refresh token `refresh` unless it is there
    /// already (one hash lookup: the bulk path). True when added.
    pub(crate) fn insert_new(&mut self, appid: AppId, now: Now, refresh: SecretKey) -> bool {
        let index = u32::try_from(self.list.len()).unwrap_or(u32::MAX);
        match self.index.entry(appid) {
            Entry::Occupied(_) => false,
            Entry::Vacant(slot) => {
                slot.insert(index);
                self.list.push(Authorizer::new(appid, now, refresh));
                true
            }
        }
    }

    /// Makes room for `n` more without growing twice.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.list.reserve_exact(n);
        self.index.reserve(n);
    }

    /// Marks `index` revoked (counted once).
    pub(crate) fn set_revoked(&mut self, index: u32, revoked: bool) {
        if let Some(a) = self.list.get_mut(index as usize)
            && a.revoked != revoked
        {
            a.revoked = revoked;
            if revoked {
                self.revoked += 1;
            } else {
                self.revoked -= 1;
            }
        }
    }

    /// Authorizers ever added, and how many of them revoked.
    pub(crate) fn counts(&self) -> (usize, usize) {
        (self.list.len(), self.revoked)
    }

    /// The non-revoked authorizers from position `offset` among them,
    /// at most `count`, in authorization order.
    pub(crate) fn page(&self, offset: usize, count: usize) -> impl Iterator<Item = &Authorizer> {
        self.list
            .iter()
            .filter(|a| !a.revoked)
            .skip(offset)
            .take(count)
    }

    /// Bytes the authorizers take (from capacities; app-side boxes in use
    /// counted at their size).
    pub(crate) fn bytes(&self) -> usize {
        let slot = std::mem::size_of::<(AppId, u32)>() + 1;
        let boxed = self.list.iter().filter(|a| a.app_side.is_some()).count();
        self.list.capacity() * std::mem::size_of::<Authorizer>()
            + self.index.capacity() * slot
            + boxed * std::mem::size_of::<AppSide>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rotation_keeps_the_latest_two_and_reauthorization_none_older() {
        let now = Now::current();
        let mut book = Authorizers::default();
        let i = book.insert(AppId::new("wxA").unwrap(), now);
        assert_eq!(book.find("wxA"), Some(i));
        let a = book.get_mut(i).unwrap();
        let r0 = *a.refresh();
        let r1 = a.rotate_refresh();
        assert!(a.accepts(&r0) && a.accepts(&r1));
        let r2 = a.rotate_refresh();
        assert!(!a.accepts(&r0) && a.accepts(&r1) && a.accepts(&r2));
        a.reauthorize(now);
        assert!(!a.accepts(&r1) && !a.accepts(&r2));
        assert!(a.accepts(a.refresh()));
        book.set_revoked(i, true);
        book.set_revoked(i, true);
        assert_eq!(book.counts(), (1, 1));
        let r = *book.get(i).unwrap().refresh();
        assert!(
            !book.get(i).unwrap().accepts(&r),
            "a revoked one accepts nothing"
        );
        assert_eq!(book.page(0, 10).count(), 0);
        assert_eq!(book.find("wxB"), None);
    }

    #[test]
    fn an_authorizer_stays_small() {
        let size = std::mem::size_of::<Authorizer>();
        assert!(size <= 128, "{size} bytes");
    }
}
