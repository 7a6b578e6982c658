//! The follower's side of the protocol (SPEC §12): the lock a replica holds
//! while it follows a credential, the commit of what the primary sends
//! (through `commit.lua`, the primary's generation as the fence), the state
//! `wxtoken status` shows, and `wxtoken promote`'s marker.

use std::time::{Duration, Instant};

use redis::AsyncCommands;
use secrecy::SecretString;
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef, meta};

use super::{
    Commit, CommitArgs, Grant, Life, LockOwner, StoreError, TokenStore, millis, script, truncate,
};

script!(FOLLOW_HOLD, "follow_hold.lua");

/// What [`TokenStore::follow_hold`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    /// This owner held the lock: extended.
    Extended,
    /// The lock was free: this owner holds it now.
    Taken,
    /// Another replica follows.
    Elsewhere,
}

/// A value the primary sent.
#[derive(Debug)]
pub struct Received<'a> {
    pub value: &'a SecretString,
    /// The primary's generation: the fence.
    pub generation: u64,
    /// When it dies, by this process' clock.
    pub expires: Instant,
}

impl TokenStore {
    /// Takes or extends the follow lock of `cref` for `ttl`.
    pub async fn follow_hold(
        &self,
        cref: &CredentialRef,
        owner: &LockOwner,
        ttl: Duration,
    ) -> Result<Hold, StoreError> {
        let mut c = self.conn().await?;
        let held: u8 = FOLLOW_HOLD
            .key(self.keys.slot(cref).lock)
            .arg(owner.as_str())
            .arg(millis(ttl).max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(match held {
            2 => Hold::Extended,
            1 => Hold::Taken,
            _ => Hold::Elsewhere,
        })
    }

    /// Commits what the primary sent: stored only when the epoch is
    /// `grant`'s and the primary's generation is newer than the stored one
    /// (a reconnect never stores an older value). `keep_lock`: the lock
    /// stays with `owner` (a followed credential's), else it is released
    /// (an authorizer's, taken by `lock_and_begin`).
    pub async fn follow_commit(
        &self,
        cref: &CredentialRef,
        grant: &Grant,
        owner: &LockOwner,
        fetched_by: &str,
        received: &Received<'_>,
        keep_lock: bool,
    ) -> Result<Commit, StoreError> {
        let fenced = Grant {
            fence: received.generation,
            ..grant.clone()
        };
        let args = CommitArgs {
            expires: received.expires,
            life: Life::Reply,
            keep_lock,
            ..CommitArgs::token(received.value, Duration::ZERO, fetched_by, "follow")
        };
        self.commit(cref, &fenced, owner, &args).await
    }

    /// Records the follower's state for `wxtoken status` (one HSET).
    pub async fn follow_state(
        &self,
        cref: &CredentialRef,
        from: &str,
        state: &str,
        lag: Option<Duration>,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let now = self.redis_time_ms().await?;
        let mut fields = vec![
            (meta::FOLLOWED_FROM, truncate(from, 256)),
            (meta::FOLLOW_STATE, truncate(state, 256)),
            (meta::FOLLOW_AT_MS, now.to_string()),
        ];
        if let Some(lag) = lag {
            fields.push((meta::FOLLOW_LAG_MS, millis(lag).to_string()));
        }
        let _: () = c.hset_multiple(self.keys.slot(cref).meta, &fields).await?;
        Ok(())
    }

    /// Who promoted `id` (`wxtoken promote`), if anyone did.
    pub async fn promoted(&self, id: &CredentialId) -> Result<Option<String>, StoreError> {
        let mut c = self.conn().await?;
        let meta_key = self.keys.slot(&CredentialRef::token(id.clone())).meta;
        Ok(c.hget(meta_key, meta::PROMOTED_BY).await?)
    }

    /// Marks `id` promoted and tells the fleet: the replica that follows it
    /// stops, and the id's credentials are refreshed from WeChat.
    pub async fn promote(&self, id: &CredentialId, by: &str) -> Result<(), StoreError> {
        let now = self.redis_time_ms().await?;
        let cref = CredentialRef::token(id.clone());
        {
            let mut c = self.conn().await?;
            let fields = [
                (meta::PROMOTED_BY, truncate(by, 128)),
                (meta::PROMOTED_AT_MS, now.to_string()),
            ];
            let _: () = c.hset_multiple(self.keys.slot(&cref).meta, &fields).await?;
        }
        let wake = Event::RefreshRequested {
            generation: 0,
            reason: Some("promoted".into()),
            force: false,
        };
        self.publish(&cref, &wake).await?;
        Ok(())
    }
}
