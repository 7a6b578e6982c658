//! `store`: everything the coordinator does to Redis — the lock, the fenced
//! scripts of SPEC §3, quota, reports, the fleet-wide back-off gate and
//! status reads — for any credential (an id and a slot: the access token or
//! a ticket).
//!
//! Besides `wxtoken_common::Keys` this is the only module that knows key
//! names. Scripts are loaded once and run by EVALSHA (`redis::Script` reloads
//! them after NOSCRIPT, e.g. after a Redis restart). Every call has a timeout
//! (pool wait, connect, response). This module makes no policy decisions: it
//! reports what Redis said and lets `refresher` decide. It never names a
//! credential kind: what differs between kinds reaches it as data (the quota
//! period, the life rule, the slot).
//!
//! `protocol.rs` holds the refresh protocol (claim, commit, quota, reports,
//! failures), `quota.rs` the quota counters, `ops.rs` what operators and readers do (status, reset, force,
//! reads); `types.rs` the values they exchange.

mod follow;
mod ops;
mod platform;
mod pool;
mod protocol;
mod quota;
mod reconcile;
mod replicas;
mod types;

use std::fmt;
use std::time::Duration;

use wxtoken_client::connect::{ClientSource, PooledConn, RedisPool};
use wxtoken_common::{Keys, QuotaDay, QuotaOffset, Slot};

pub use follow::{Hold, Received};
pub use platform::{ACTIVE, AuthorizerState, REVOKED, RegistryPage};
pub use pool::{StoreError, connect_pool, target};
pub use protocol::CommitArgs;
pub use replicas::ReplicaEntry;
pub use types::*;

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: std::sync::LazyLock<redis::Script> =
            std::sync::LazyLock::new(|| wxtoken_client::keyspace::script(include_str!($file)));
    };
    // With the coordinator's quota helper (`quota.lua`) prepended.
    ($name:ident, quota, $file:literal) => {
        static $name: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
            wxtoken_client::keyspace::script(concat!(
                include_str!("quota.lua"),
                include_str!($file)
            ))
        });
    };
}
pub(crate) use script;

/// A duration as whole milliseconds for a script argument.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The `slot` field scripts append to the events they publish: nothing for
/// the access token (Part I's events stay byte for byte), else
/// `,"slot":"ticket:jsapi"`.
fn slot_field(slot: Slot) -> String {
    slot.name()
        .map_or_else(String::new, |name| format!(",\"slot\":\"{name}\""))
}

/// How a committed value's life is counted (see `kind::Life`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Life {
    /// The fetch's `expires_in` is the remaining life.
    Reply,
    /// A value already stored keeps the life it got when first stored.
    FirstStored,
}

/// The coordinator's handle on Redis: a connection pool plus the key schema.
#[derive(Clone)]
pub struct TokenStore {
    pool: RedisPool,
    keys: Keys,
    quota_offset: QuotaOffset,
    reserves: quota::Reserves,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

fn pttl(ms: i64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs()))
}

/// Cuts `s` to at most `max` characters (WeChat errmsgs can be long).
fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}

impl TokenStore {
    /// Builds the pool; does not connect until first use (see [`Self::ping`]).
    pub fn new(pool: RedisPool, keys: Keys, quota_offset: QuotaOffset) -> Self {
        Self {
            pool,
            keys,
            quota_offset,
            reserves: quota::Reserves::default(),
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Where the pub/sub subscription connects (any topology).
    pub fn client_source(&self) -> ClientSource {
        self.pool.client_source()
    }

    pub fn quota_offset(&self) -> QuotaOffset {
        self.quota_offset
    }

    async fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().await?)
    }

    pub fn quota_day(&self, unix_ms: u64) -> QuotaDay {
        QuotaDay::from_unix_ms(
            i64::try_from(unix_ms).unwrap_or(i64::MAX),
            self.quota_offset,
        )
    }

    /// The period of `window` containing `unix_ms` (Redis time).
    pub fn period(
        &self,
        window: wxtoken_common::Window,
        unix_ms: u64,
    ) -> wxtoken_common::QuotaPeriod {
        window.at(
            i64::try_from(unix_ms).unwrap_or(i64::MAX),
            self.quota_offset,
        )
    }
}
