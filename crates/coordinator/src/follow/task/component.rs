//! A followed component's side of the task: its authorizers' commits
//! (each under a grant taken once with its own lock), the refill after a
//! data loss (many at once) and the registry the primary lists.

use std::time::{Duration, Instant};

use futures_util::StreamExt;
use tracing::debug;
use wxtoken_common::CredentialRef;

use super::super::stream::Value;
use super::Task;
use crate::store::{Commit, Grant, LockOwner, Received, StoreError};

/// A followed component's authorizers refilled at once after a data loss.
const REFILL_CONCURRENCY: usize = 32;

impl Task {
    pub(super) fn authorizers(&self) -> Authorizers<'_> {
        Authorizers {
            store: self.store(),
            owner: &self.owner,
            replica: &self.keepers.inner.replica_id,
            lock_ttl: self.keepers.inner.settings.lock_ttl,
        }
    }

    pub(super) fn keep_grant(&mut self, cref: &CredentialRef, grant: Option<Grant>) {
        match grant {
            Some(g) => self.grants.insert(cref.clone(), g),
            None => self.grants.remove(cref),
        };
    }

    /// A component's authorizers after a data loss, [`REFILL_CONCURRENCY`]
    /// at a time. Returns how many were stored.
    pub(super) async fn refill_authorizers(&mut self) -> usize {
        let own = self.cred.cref.clone();
        let mut stored = 0;
        let now = Instant::now();
        let done: Vec<Refilled> = {
            let authorizers = self.authorizers();
            let mut work = Vec::with_capacity(self.last.len());
            for (cref, v) in &self.last {
                if *cref != own && v.expires > now {
                    work.push(refill_one(
                        authorizers,
                        cref,
                        v,
                        self.grants.get(cref).cloned(),
                    ));
                }
            }
            futures_util::stream::iter(work)
                .buffer_unordered(REFILL_CONCURRENCY)
                .collect()
                .await
        };
        for (cref, g, r) in done {
            self.keep_grant(&cref, g);
            match r {
                Ok(Some(_)) => stored += 1,
                Ok(None) => {}
                Err(e) => debug!(credential = %cref, error = %e, "follow refill failed"),
            }
        }
        stored
    }

    /// A followed component's authorizer listed by the primary.
    pub(super) async fn authorizer(&mut self, appid: &str, active: bool) {
        let Some(m) = &mut self.mirror else { return };
        match m.authorizer(&self.keepers.inner.store, appid, active).await {
            Ok(Some(gone)) => self.drop_value(&gone),
            Ok(None) => {}
            Err(e) => {
                debug!(credential = %self.cred.cref, error = %e, "followed registry write failed")
            }
        }
    }

    /// The primary's snapshot is whole.
    pub(super) async fn synced(&mut self) {
        let Some(m) = &mut self.mirror else { return };
        match m.synced(&self.keepers.inner.store).await {
            Ok(gone) => gone.iter().for_each(|c| self.drop_value(c)),
            Err(e) => {
                debug!(credential = %self.cred.cref, error = %e, "followed registry sync failed")
            }
        }
    }

    pub(super) fn drop_value(&mut self, cref: &CredentialRef) {
        self.last.remove(cref);
        self.grants.remove(cref);
    }
}

/// What an authorizer's commit needs (borrowed from the task, so a refill
/// runs many at once).
#[derive(Clone, Copy)]
pub(super) struct Authorizers<'a> {
    store: &'a crate::store::TokenStore,
    owner: &'a LockOwner,
    replica: &'a str,
    lock_ttl: Duration,
}

type Refilled = (
    CredentialRef,
    Option<Grant>,
    Result<Option<u64>, StoreError>,
);

async fn refill_one(
    a: Authorizers<'_>,
    cref: &CredentialRef,
    v: &Value,
    grant: Option<Grant>,
) -> Refilled {
    let (g, r) = commit_authorizer(a, cref, v, grant).await;
    (cref.clone(), g, r)
}

/// Commits `v` of a followed component's authorizer under `grant` (taken
/// with its lock when there is none, or after an epoch change: Redis lost
/// its data). Returns the grant to keep and the generation stored now.
pub(super) async fn commit_authorizer(
    a: Authorizers<'_>,
    cref: &CredentialRef,
    v: &Value,
    mut grant: Option<Grant>,
) -> (Option<Grant>, Result<Option<u64>, StoreError>) {
    let received = Received {
        value: &v.value,
        generation: v.generation,
        expires: v.expires,
    };
    for _ in 0..2 {
        let g = match grant.take() {
            Some(g) => g,
            None => match a.store.lock_and_begin(cref, a.owner, a.lock_ttl).await {
                Ok(Some(g)) => g,
                Ok(None) => return (None, Ok(None)),
                Err(e) => return (None, Err(e)),
            },
        };
        match a
            .store
            .follow_commit(cref, &g, a.owner, a.replica, &received, false)
            .await
        {
            Ok(Commit::Stored { generation, .. }) => return (Some(g), Ok(Some(generation))),
            Ok(Commit::EpochChanged) => {}
            Ok(_) => return (Some(g), Ok(None)),
            Err(e) => return (Some(g), Err(e)),
        }
    }
    (None, Ok(None))
}
