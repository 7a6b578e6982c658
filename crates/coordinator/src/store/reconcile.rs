//! What the quota reconciliation (`crate::quota_check`) and `wxtoken
//! clear-quota` keep in Redis: the fleet-wide lease of the checking
//! replica, the result of the last check per credential (meta fields
//! `quota_check_*`), the count `wxtoken reset` forgave (so a reset fleet
//! counter is not mistaken for someone else's calls), and the monthly
//! count of `clear_quota` resets.

use std::time::Duration;

use redis::AsyncCommands;
use wxtoken_common::wire::QuotaCheck;
use wxtoken_common::{CredentialRef, QuotaDay, meta};

use super::{StoreError, TokenStore, millis, slot_field};

/// A month counter outlives its month (40 days): status early next month
/// still shows it, and it never grows without bound.
const MONTH_TTL: Duration = Duration::from_secs(40 * 24 * 3600);

impl TokenStore {
    /// `SET P:quota_check owner NX PX ttl`: true when this replica checks
    /// now. Never released, so the fleet checks once per `ttl`.
    pub async fn take_quota_check_lease(
        &self,
        owner: &str,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let set: Option<String> = redis::cmd("SET")
            .arg(self.keys.quota_check_lease())
            .arg(owner)
            .arg("NX")
            .arg("PX")
            .arg(millis(ttl).max(1))
            .query_async(&mut c)
            .await?;
        Ok(set.is_some())
    }

    /// The fleet's own count of `day`'s upstream calls for `cref`, plus
    /// what `wxtoken reset` cleared from it that day (WeChat still counts
    /// those calls).
    pub async fn fleet_count(
        &self,
        cref: &CredentialRef,
        day: QuotaDay,
    ) -> Result<u64, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let (count, forgiven_day, forgiven): (Option<String>, Option<String>, Option<String>) =
            redis::pipe()
                .get(k.quota(day))
                .hget(&k.meta, meta::QUOTA_FORGIVEN_DAY)
                .hget(&k.meta, meta::QUOTA_FORGIVEN)
                .query_async(&mut c)
                .await?;
        // A foreign writer's junk reads as 0, as in the scripts.
        let num = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let forgiven = if forgiven_day.as_deref() == Some(day.key_suffix().as_str()) {
            num(forgiven)
        } else {
            0
        };
        Ok(num(count) + forgiven)
    }

    /// Records the result of a check of `day`.
    pub async fn record_quota_check(
        &self,
        cref: &CredentialRef,
        day: QuotaDay,
        check: &QuotaCheck,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        // HSET with several pairs: the ACL of deploy/redis-acl.conf has no HMSET.
        let _: u64 = redis::cmd("HSET")
            .arg(self.keys.slot(cref).meta)
            .arg(meta::QUOTA_CHECK_DAY)
            .arg(day.key_suffix())
            .arg(meta::QUOTA_CHECK_UPSTREAM)
            .arg(check.upstream_used)
            .arg(meta::QUOTA_CHECK_FLEET)
            .arg(check.fleet_used)
            .arg(meta::QUOTA_CHECK_FOREIGN)
            .arg(check.foreign_fetches)
            .arg(meta::QUOTA_CHECK_AT_MS)
            .arg(check.checked_at_ms)
            .query_async(&mut c)
            .await?;
        Ok(())
    }

    /// The last check of `cref` if it counted today's quota day (Redis
    /// time); `None` before the day's first check.
    pub async fn quota_check(
        &self,
        cref: &CredentialRef,
    ) -> Result<Option<QuotaCheck>, StoreError> {
        let mut c = self.conn().await?;
        let ((secs, micros), fields): ((u64, u64), Vec<Option<String>>) = redis::pipe()
            .cmd("TIME")
            .cmd("HMGET")
            .arg(self.keys.slot(cref).meta)
            .arg(&[
                meta::QUOTA_CHECK_DAY,
                meta::QUOTA_CHECK_UPSTREAM,
                meta::QUOTA_CHECK_FLEET,
                meta::QUOTA_CHECK_FOREIGN,
                meta::QUOTA_CHECK_AT_MS,
            ])
            .query_async(&mut c)
            .await?;
        let today = self.quota_day(secs * 1000 + micros / 1000).key_suffix();
        let field = |i: usize| fields.get(i).cloned().flatten();
        if field(0).as_deref() != Some(today.as_str()) {
            return Ok(None);
        }
        let num = |i: usize| field(i).and_then(|v| v.parse::<u64>().ok());
        Ok(Some(QuotaCheck {
            upstream_used: num(1).unwrap_or(0),
            fleet_used: num(2).unwrap_or(0),
            foreign_fetches: num(3).unwrap_or(0),
            checked_at_ms: num(4).unwrap_or(0),
        }))
    }

    /// After WeChat cleared the account's counters (`clear_quota/v2`): the
    /// fleet's count of today starts again too (and nothing is forgiven:
    /// both sides are at zero), the back-off gate is lifted and a refresh
    /// requested, like `wxtoken reset`. Returns the count cleared.
    pub async fn quota_cleared(&self, cref: &CredentialRef) -> Result<u64, StoreError> {
        let day = self.quota_day(self.redis_time_ms().await?);
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let event = format!(
            "{{\"event\":\"refresh_requested\",\"reason\":\"quota_cleared\"{}}}",
            slot_field(cref.slot)
        );
        let (used, (), (), _): (Option<String>, (), (), u64) = redis::pipe()
            .atomic()
            .get(k.quota(day))
            .del(k.quota(day))
            .ignore()
            .hset_multiple(
                &k.meta,
                &[(meta::FAILURES, "0"), (meta::NEXT_ATTEMPT_AT_MS, "0")],
            )
            .hdel(
                &k.meta,
                &[
                    meta::QUOTA_FORGIVEN_DAY,
                    meta::QUOTA_FORGIVEN,
                    meta::QUOTA_CHECK_DAY,
                ],
            )
            .publish(&k.events, event)
            .query_async(&mut c)
            .await?;
        Ok(used.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// `clear_quota` resets counted for `cref` in `month` (`YYYYMM`).
    pub async fn clear_quota_uses(
        &self,
        cref: &CredentialRef,
        month: &str,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let n: Option<String> = c.get(self.keys.clear_quota_uses(&cref.id, month)).await?;
        Ok(n.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Counts one `clear_quota` reset in `month`; returns the month's count.
    pub async fn count_clear_quota(
        &self,
        cref: &CredentialRef,
        month: &str,
    ) -> Result<u64, StoreError> {
        let key = self.keys.clear_quota_uses(&cref.id, month);
        let mut c = self.conn().await?;
        let (n, _): (u64, bool) = redis::pipe()
            .incr(&key, 1)
            .pexpire(&key, i64::try_from(millis(MONTH_TTL)).unwrap_or(i64::MAX))
            .query_async(&mut c)
            .await?;
        Ok(n)
    }
}
