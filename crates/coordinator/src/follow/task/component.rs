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

/// A followed component's authorizers committed at once (a snapshot, the
/// refill after a data loss).
const REFILL_CONCURRENCY: usize = 32;

/// Snapshot values kept before they are committed together.
const SNAPSHOT_BATCH: usize = 256;

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
        let own = &self.cred.cref;
        let all: Vec<CredentialRef> = self.last.keys().filter(|c| *c != own).cloned().collect();
        self.commit_authorizers(&all).await
    }

    /// A value of the primary's snapshot: kept with the others received
    /// since the last flush, which commits them [`REFILL_CONCURRENCY`] at
    /// a time (one by one, 10 000 authorizers took 4–6 s: three round
    /// trips each).
    pub(super) async fn snapshot_value(&mut self, cref: CredentialRef, v: Value) {
        if self
            .last
            .get(&cref)
            .is_some_and(|l| l.generation > v.generation)
        {
            return;
        }
        self.lag = v.lag;
        self.last.insert(cref.clone(), v);
        self.unsynced.push(cref);
        if self.unsynced.len() >= SNAPSHOT_BATCH {
            self.flush_snapshot().await;
        }
    }

    /// Registers the snapshot's new authorizers and commits its values
    /// kept so far.
    pub(super) async fn flush_snapshot(&mut self) {
        if let Some(m) = &mut self.mirror
            && let Err(e) = m.flush(&self.keepers.inner.store).await
        {
            debug!(credential = %self.cred.cref, error = %e, "followed registry write failed");
        }
        if self.unsynced.is_empty() {
            return;
        }
        let started = Instant::now();
        let batch = std::mem::take(&mut self.unsynced);
        let stored = self.commit_authorizers(&batch).await;
        debug!(credential = %self.cred.cref, received = batch.len(), stored, "followed: stored a part of the primary's snapshot");
        let lag = self.lag.map(|l| l + started.elapsed());
        self.show("connected", lag).await;
    }

    /// Commits the newest value received of each of `crefs` (authorizers
    /// of this component) that is still alive, [`REFILL_CONCURRENCY`] at a
    /// time. Returns how many were stored.
    async fn commit_authorizers(&mut self, crefs: &[CredentialRef]) -> usize {
        let now = Instant::now();
        let done: Vec<Refilled> = {
            let authorizers = self.authorizers();
            let mut work = Vec::with_capacity(crefs.len());
            for cref in crefs {
                if let Some(v) = self.last.get(cref).filter(|v| v.expires > now) {
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
        let mut stored = 0;
        for (cref, g, r) in done {
            self.keep_grant(&cref, g);
            match r {
                Ok(Some(_)) => stored += 1,
                Ok(None) => {}
                Err(e) => debug!(credential = %cref, error = %e, "followed value not stored"),
            }
        }
        stored
    }

    /// A followed component's authorizer listed by the primary (in its
    /// snapshot: registered with the snapshot's values, by
    /// [`Self::flush_snapshot`]).
    pub(super) async fn authorizer(&mut self, appid: &str, active: bool, snapshot: bool) {
        let Some(m) = &mut self.mirror else { return };
        match m
            .authorizer(&self.keepers.inner.store, appid, active, snapshot)
            .await
        {
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
