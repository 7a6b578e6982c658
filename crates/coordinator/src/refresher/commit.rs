//! The step's Redis side after a fetch: the fenced commit (with the life a
//! value shares with its siblings), handing a leader's value to the
//! credentials that follow it, a follower adopting its leader's value, and
//! a value WeChat issued outside a step (`store_issued`).

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, info, warn};
use wxtoken_common::CredentialRef;

use super::{RefreshOutcome, Refresher};
use crate::kind::{Credential, Fetched};
use crate::store::{Commit, CommitArgs, Grant, LockOwner, StoreError};

impl Refresher {
    pub(super) async fn commit(
        &self,
        cred: &Credential,
        grant: &Grant,
        owner: &LockOwner,
        fetched: &Fetched,
        reported: bool,
    ) -> Result<RefreshOutcome, StoreError> {
        let cref = &cred.cref;
        let expires = self.shared_life(cred, fetched).await;
        let args = CommitArgs {
            value: &fetched.value,
            expires,
            fetched_by: &self.replica_id,
            source: fetched.source,
            life: cred.kind.life(),
            settle: settle(cred, fetched.took),
            reported,
            filled: grant.token_ttl.is_none() && cred.kind.spreads_after_fill(),
            refresh_token: fetched
                .refresh_token
                .as_ref()
                .map(|rt| self.vault.sealed_refresh_token(&cref.id, rt)),
            keep_lock: false,
        };
        Ok(match self.store.commit(cref, grant, owner, &args).await? {
            Commit::Stored { generation, .. } => {
                let ttl = expires.saturating_duration_since(Instant::now());
                info!(credential = %cref, generation, replica = %self.replica_id, ttl_s = ttl.as_secs(), "refreshed");
                if cred.kind.follows().is_none() {
                    for follower in cred.kind.shares_value_with() {
                        self.hand_over(follower, cred, fetched, expires).await;
                    }
                }
                RefreshOutcome::Refreshed {
                    generation,
                    ttl,
                    filled: grant.token_ttl.is_none(),
                }
            }
            Commit::Same { .. } => {
                debug!(credential = %cref, "WeChat handed out the stored value again");
                RefreshOutcome::Unchanged {
                    ttl: grant.token_ttl.unwrap_or_default(),
                }
            }
            stale @ Commit::Stale { .. } if cred.kind.supersedes() => {
                // This replica stalled past its lock: another stored a value
                // meanwhile, and the one fetched here (issued later, for all
                // we know) cuts that one off after the overlap. The fleet
                // replaces it now: one extra call instead of readers meeting
                // 40001 later.
                crate::metrics::stale_fetch(cred);
                let by = format!("stale_fetch:{}", self.replica_id);
                if let Err(e) = self.store.force_request(cref, &by).await {
                    warn!(credential = %cref, error = %e, "could not ask for the stored value's replacement");
                }
                warn!(credential = %cref, "fetched a value after another replica stored one: replacing the stored value");
                RefreshOutcome::NotStored(stale)
            }
            other => {
                warn!(credential = %cref, outcome = ?other, "fetched value was not stored");
                RefreshOutcome::NotStored(other)
            }
        })
    }

    /// A value WeChat issued outside a refresh step (`api_query_auth`'s
    /// token, with its refresh token), committed under the credential's
    /// lock and fence like any fetch. `false` when the lock is held (that
    /// holder is fetching a newer one) or the commit was refused.
    pub async fn store_issued(
        &self,
        cred: &Credential,
        fetched: &Fetched,
    ) -> Result<bool, StoreError> {
        let cref = &cred.cref;
        let owner = LockOwner::new(&self.replica_id);
        let lock_ttl = self.settings.lock_ttl;
        let Some(grant) = self.store.lock_and_begin(cref, &owner, lock_ttl).await? else {
            return Ok(false);
        };
        let outcome = self.commit(cred, &grant, &owner, fetched, false).await;
        if !matches!(
            outcome,
            Ok(RefreshOutcome::Refreshed { .. }) | Ok(RefreshOutcome::NotStored(_))
        ) {
            let _ = self.store.release(cref, &owner).await;
        }
        Ok(matches!(outcome?, RefreshOutcome::Refreshed { .. }))
    }

    /// A leader's new value, stored for a follower (under the follower's
    /// lock and fence, no upstream call). A follower whose lock is held is
    /// fetching for itself: left alone.
    async fn hand_over(
        &self,
        follower: &CredentialRef,
        leader: &Credential,
        fetched: &Fetched,
        expires: Instant,
    ) {
        let owner = LockOwner::new(&self.replica_id);
        let result = async {
            let lock_ttl = self.settings.lock_ttl;
            let Some(grant) = self
                .store
                .lock_and_begin(follower, &owner, lock_ttl)
                .await?
            else {
                return Ok(None);
            };
            let args = CommitArgs {
                value: &fetched.value,
                expires,
                fetched_by: &self.replica_id,
                source: "leader",
                life: leader.kind.life(),
                settle: fetched.took + SETTLE_MARGIN + FOLLOWER_GRACE,
                reported: false,
                filled: false,
                refresh_token: None,
                keep_lock: false,
            };
            self.store
                .commit(follower, &grant, &owner, &args)
                .await
                .map(Some)
        }
        .await;
        match result {
            Ok(Some(Commit::Stored { generation, .. })) => {
                debug!(credential = %follower, leader = %leader.cref, generation, "took the leader's value");
            }
            Ok(other) => {
                debug!(credential = %follower, outcome = ?other, "leader's value not handed over")
            }
            Err(e) => {
                let _ = self.store.release(follower, &owner).await;
                warn!(credential = %follower, error = %e, "could not hand the leader's value over");
            }
        }
    }

    /// A follower's step once due: the leader's value when it has one, a
    /// wait while the leader is getting one or has yet to try, else (the
    /// leader failing) `None`: fetch itself.
    pub(super) async fn follow(
        &self,
        leader: &CredentialRef,
    ) -> Result<Option<Follow>, StoreError> {
        let asked = Instant::now();
        if let Some(held) = self.store.read_value(leader).await?
            && held.ttl > MIN_ADOPTED_LIFE
        {
            let mut value = Fetched::new(SecretString::from(held.value), held.ttl, "leader");
            // Its life counts from before the read.
            value.sent = asked;
            return Ok(Some(Follow::Adopt(value)));
        }
        if let Some(lock) = self.store.lock_ttl(leader).await? {
            return Ok(Some(Follow::Wait(lock)));
        }
        if self.store.failing(leader).await? {
            return Ok(None);
        }
        Ok(Some(Follow::Wait(FOLLOWER_GRACE / 4)))
    }

    /// When `fetched` dies: its life counted from when the request was sent,
    /// no longer than that of a credential sharing the value that already
    /// holds it (it was issued when they got it).
    async fn shared_life(&self, cred: &Credential, fetched: &Fetched) -> Instant {
        let mut expires = fetched.sent + fetched.expires_in;
        for sibling in cred.kind.shares_value_with() {
            // One read, no waiting: this runs under the lock.
            let asked = Instant::now();
            if let Ok(Some(held)) = self.store.read_value(sibling).await
                && held.value == fetched.value.expose_secret()
            {
                debug!(credential = %cred.cref, sibling = %sibling, "a sibling holds this value: its life caps ours");
                expires = expires.min(asked + held.ttl);
            }
        }
        expires
    }
}

/// How long after a first-stored value's counted expiry WeChat's own may
/// lie: the life is counted from when the request was sent, WeChat's from
/// when it issued the value, before it answered. The margin covers the
/// rounding of `expires_in` and of Redis' clock to milliseconds.
const SETTLE_MARGIN: Duration = Duration::from_millis(50);

/// A follower's own fetch waits this much longer than its leader's, so the
/// leader, not both, calls WeChat when the shared value runs out.
const FOLLOWER_GRACE: Duration = Duration::from_secs(1);

/// A leader's value with less life than this is not adopted.
const MIN_ADOPTED_LIFE: Duration = Duration::from_millis(100);

/// What a follower does instead of fetching.
pub(super) enum Follow {
    Adopt(Fetched),
    Wait(Duration),
}

/// The settle time a commit of `cred` records (zero unless its life counts
/// from first storage).
fn settle(cred: &Credential, took: Duration) -> Duration {
    match cred.kind.life() {
        crate::store::Life::Reply => Duration::ZERO,
        crate::store::Life::FirstStored if cred.kind.follows().is_some() => {
            took + SETTLE_MARGIN + FOLLOWER_GRACE
        }
        crate::store::Life::FirstStored => took + SETTLE_MARGIN,
    }
}
