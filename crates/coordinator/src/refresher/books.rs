//! Bookkeeping a replica keeps in memory beside its refresh steps: what each
//! loop last knew of its value's life ([`TtlBook`], for `/metrics`) and the
//! locks it holds now ([`HeldLocks`], for shutdown).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wxtoken_common::CredentialRef;

use crate::store::LockOwner;

/// What each refresh loop last knew of its value's life, for `/metrics`:
/// a scrape must not cost a Redis round trip per credential (with 10 000
/// credentials and a 15 s scrape interval that would be 40 000 commands a
/// minute per replica).
#[derive(Debug, Default)]
pub struct TtlBook(std::sync::RwLock<HashMap<CredentialRef, Option<Instant>>>);

impl TtlBook {
    /// The value of `cref` has `ttl` left now (`None`: there is none).
    pub fn note(&self, cref: &CredentialRef, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        if let Ok(mut m) = self.0.write() {
            match m.get_mut(cref) {
                Some(e) => *e = expires,
                None => {
                    m.insert(cref.clone(), expires);
                }
            }
        }
    }

    /// `None` when nothing is known yet; `Some(None)` when there is no value.
    pub fn ttl(&self, cref: &CredentialRef) -> Option<Option<Duration>> {
        let m = self.0.read().ok()?;
        let e = m.get(cref)?;
        Some(e.and_then(|at| at.checked_duration_since(Instant::now())))
    }
}

/// Locks this replica holds now, so shutdown can release them even if the
/// task that took one was cancelled mid-fetch. A std `Mutex`: it is never
/// held across an `.await`.
#[derive(Debug, Default, Clone)]
pub struct HeldLocks(Arc<Mutex<HashMap<CredentialRef, LockOwner>>>);

impl HeldLocks {
    pub(super) fn insert(&self, cref: &CredentialRef, owner: &LockOwner) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(cref.clone(), owner.clone());
        }
    }
    pub(super) fn remove(&self, cref: &CredentialRef) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(cref);
        }
    }
    /// Takes every entry (for shutdown).
    pub fn drain(&self) -> Vec<(CredentialRef, LockOwner)> {
        self.0
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }
}
