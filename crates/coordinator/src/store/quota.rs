//! Quota counters (SPEC §3): a credential's own budget per period, the
//! token-check budget, and limits several credentials share, which a replica
//! may reserve in chunks ([`Reserves`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use redis::AsyncCommands;
use wxtoken_common::{CredentialRef, QuotaDay, QuotaPeriod, Window};

use super::{QuotaTake, StoreError, TokenStore, script};
use crate::kind::SharedLimit;

script!(QUOTA_TAKE, quota, "quota_take.lua");
script!(QUOTA_RESERVE, quota, "quota_reserve.lua");

/// Quota counters live three periods, long enough for `status` across the
/// boundary and for the previous hour an hourly limit also counts.
pub(super) fn quota_ttl_ms(window: Window) -> u64 {
    u64::try_from(3 * window.length_ms()).unwrap_or(u64::MAX)
}

/// Units of shared limits this replica reserved and has not used yet, by
/// counter key (the key names the period, so units never outlive theirs).
/// One replica reserves one chunk at a time: steps that find the reserve
/// empty together wait for that chunk instead of each counting one.
#[derive(Debug, Clone, Default)]
pub struct Reserves {
    held: Arc<Mutex<HashMap<String, Held>>>,
    reserving: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug)]
struct Held {
    left: u64,
    /// The fleet's count when the units were reserved (for metrics).
    used: u64,
}

impl Reserves {
    /// One unit of `key`'s reserve, if any is left.
    fn take(&self, key: &str) -> Option<u64> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let h = held.get_mut(key).filter(|h| h.left > 0)?;
        h.left -= 1;
        Some(h.used)
    }

    /// Adds `left` reserved units to `key`'s reserve (steps that found it
    /// empty at the same moment each reserved a chunk: every unit is kept);
    /// a reserve of another period of the same limit ends (its key differs
    /// only in the period suffix).
    fn hold(&self, key: String, left: u64, used: u64) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(h) = held.get_mut(&key) {
            h.left += left;
            h.used = h.used.max(used);
            return;
        }
        let stem = stem(&key);
        held.retain(|k, _| self::stem(k) != stem);
        held.insert(key, Held { left, used });
    }

    /// Returns an unused unit to `key`'s reserve; false when none is held.
    fn put_back(&self, key: &str) -> bool {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        match held.get_mut(key) {
            Some(h) => {
                h.left += 1;
                true
            }
            None => false,
        }
    }
}

/// A counter key without its period suffix (`…:quota:NAME:`).
fn stem(key: &str) -> &str {
    key.rsplit_once(':').map_or(key, |(stem, _)| stem)
}

impl TokenStore {
    /// One unit of `cref`'s quota in `period` (an hourly period also counts
    /// the hour before: see `quota.lua`).
    pub async fn take_quota(
        &self,
        cref: &CredentialRef,
        period: &QuotaPeriod,
        budget: u64,
    ) -> Result<QuotaTake, StoreError> {
        let k = self.keys.slot(cref);
        let previous = period
            .window()
            .slides()
            .then(|| k.quota_in(&period.previous()));
        self.take_from(k.quota_in(period), previous, period.window(), budget)
            .await
    }

    /// One unit of `day`'s token-check budget (the cheap WeChat call that
    /// verifies a reported token).
    pub async fn take_verify_quota(
        &self,
        cref: &CredentialRef,
        day: QuotaDay,
        budget: u64,
    ) -> Result<QuotaTake, StoreError> {
        let key = self.keys.slot(cref).verify_quota(day);
        self.take_from(key, None, Window::Day, budget).await
    }

    /// One unit of a limit several credentials share (`limit.tag`'s counter
    /// `limit.name`), in `period` and, for a sliding window, the one before.
    /// Taken from this replica's reserve when it holds units of `period`;
    /// else `limit.reserve` units are reserved in one script.
    pub async fn take_shared_quota(
        &self,
        limit: &SharedLimit,
        period: &QuotaPeriod,
    ) -> Result<QuotaTake, StoreError> {
        let key = |p: &QuotaPeriod| {
            self.keys
                .shared_quota(&limit.tag, &limit.name, p)
                .ok_or_else(|| StoreError::Reply(format!("{:?} cannot be a key tag", limit.tag)))
        };
        let current = key(period)?;
        if let Some(used) = self.reserves.take(&current) {
            return Ok(QuotaTake::Taken { used });
        }
        let _one_at_a_time = if limit.reserve > 1 {
            let guard = self.reserves.reserving.lock().await;
            if let Some(used) = self.reserves.take(&current) {
                return Ok(QuotaTake::Taken { used });
            }
            Some(guard)
        } else {
            None
        };
        let previous = if period.window().slides() {
            Some(key(&period.previous())?)
        } else {
            None
        };
        let mut c = self.conn().await?;
        let mut script = QUOTA_RESERVE.key(&current);
        if let Some(previous) = previous {
            script.key(previous);
        }
        let (got, used): (u64, u64) = script
            .arg(limit.budget)
            .arg(quota_ttl_ms(period.window()))
            .arg(limit.reserve.max(1))
            .invoke_async(&mut c)
            .await?;
        if got == 0 {
            return Ok(QuotaTake::OverBudget { used });
        }
        if limit.reserve > 1 {
            self.reserves.hold(current, got - 1, used);
        }
        Ok(QuotaTake::Taken { used })
    }

    /// Gives back a unit of a shared limit that no call used: to this
    /// replica's reserve while `period` lasts, else to the counter.
    pub async fn give_back_shared(
        &self,
        limit: &SharedLimit,
        period: &QuotaPeriod,
    ) -> Result<(), StoreError> {
        let Some(key) = self.keys.shared_quota(&limit.tag, &limit.name, period) else {
            return Ok(());
        };
        if self.reserves.put_back(&key) {
            return Ok(());
        }
        let mut c = self.conn().await?;
        let _: i64 = c.decr(key, 1).await?;
        Ok(())
    }

    /// Gives back a unit taken in `period` that no call used.
    pub async fn give_back(
        &self,
        cref: &CredentialRef,
        period: &QuotaPeriod,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: i64 = c.decr(self.keys.slot(cref).quota_in(period), 1).await?;
        Ok(())
    }

    async fn take_from(
        &self,
        key: String,
        previous: Option<String>,
        window: Window,
        budget: u64,
    ) -> Result<QuotaTake, StoreError> {
        let mut c = self.conn().await?;
        let mut script = QUOTA_TAKE.key(key);
        if let Some(previous) = previous {
            script.key(previous);
        }
        let (tag, used): (String, u64) = script
            .arg(budget)
            .arg(quota_ttl_ms(window))
            .invoke_async(&mut c)
            .await?;
        Ok(if tag == "ok" {
            QuotaTake::Taken { used }
        } else {
            QuotaTake::OverBudget { used }
        })
    }
}
