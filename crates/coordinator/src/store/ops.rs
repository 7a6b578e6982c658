//! What operators and readers do to Redis through the coordinator: status,
//! reset, an operator's force, WeChat's force_refresh limits for the
//! compatible endpoint, the reader's calls (read, report, publish) and the
//! fleet marker.

use std::time::Duration;

use redis::AsyncCommands;
use wxtoken_client::keyspace::{self, Invalidation, StoredToken};
use wxtoken_common::wire::{Event, LastError};
use wxtoken_common::{CredentialRef, Window, meta};

use super::{
    ForceTake, StoreError, StoredStatus, TokenStore, millis, pttl, script, slot_field, truncate,
};

script!(RESET_GATE, "reset_gate.lua");
script!(LIFT_GATE, "lift_gate.lua");
script!(FORCE_TAKE, "force_take.lua");
script!(FORCE_REQUEST, "force_request.lua");

impl TokenStore {
    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Redis `TIME` in unix ms: the one clock the fleet agrees on.
    pub async fn redis_time_ms(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The fleet marker (`Keys::fleet_marker`): its value, set to `candidate`
    /// first when there is none. One GET while it is there.
    pub async fn fleet_marker(&self, candidate: &str) -> Result<String, StoreError> {
        let mut c = self.conn().await?;
        let key = self.keys.fleet_marker();
        if let Some(v) = c.get::<_, Option<String>>(&key).await? {
            return Ok(v);
        }
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut c)
            .await?;
        let v: Option<String> = c.get(&key).await?;
        Ok(v.unwrap_or_else(|| candidate.to_owned()))
    }

    pub async fn read_value(
        &self,
        cref: &CredentialRef,
    ) -> Result<Option<StoredToken>, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::read_value(&mut c, &self.keys.slot(cref)).await?)
    }

    /// How long the credential's refresh lock is held for still (`None`:
    /// nobody holds it).
    pub async fn lock_ttl(&self, cref: &CredentialRef) -> Result<Option<Duration>, StoreError> {
        let mut c = self.conn().await?;
        let ms: i64 = c.pttl(self.keys.slot(cref).lock).await?;
        Ok(pttl(ms))
    }

    /// True when the credential's refreshes are failing or gated (a failure
    /// recorded, or a back-off or spent budget in force).
    pub async fn failing(&self, cref: &CredentialRef) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let meta_key = self.keys.slot(cref).meta;
        let (failures, gate, (secs, _)): (Option<String>, Option<String>, (u64, u64)) =
            redis::pipe()
                .hget(&meta_key, meta::FAILURES)
                .hget(&meta_key, meta::NEXT_ATTEMPT_AT_MS)
                .cmd("TIME")
                .query_async(&mut c)
                .await?;
        // A foreign writer's junk reads as 0, as in the scripts.
        let number = |v: Option<String>| v.and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        Ok(number(failures) > 0 || number(gate) > secs * 1000)
    }

    /// A reader's report (`invalidate.lua`), as the CLI makes it.
    pub async fn report(
        &self,
        cref: &CredentialRef,
        bad_value: &str,
    ) -> Result<Invalidation, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::report(&mut c, &self.keys.slot(cref), bad_value).await?)
    }

    pub async fn publish(&self, cref: &CredentialRef, event: &Event) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::publish(&mut c, &self.keys, cref, event).await?)
    }

    /// An operator's force request (`wxtoken refresh --force`): recorded
    /// where readers cannot write, then announced. Returns (generation to
    /// replace, force requests so far, replicas that heard it).
    pub async fn force_request(
        &self,
        cref: &CredentialRef,
        by: &str,
    ) -> Result<(u64, u64, u64), StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        Ok(FORCE_REQUEST
            .key(&k.meta)
            .key(&k.events)
            .arg(truncate(by, 128))
            .arg(slot_field(cref.slot))
            .invoke_async(&mut c)
            .await?)
    }

    /// Who recorded the pending force request (`force_by`), for the log.
    pub async fn force_requester(&self, cref: &CredentialRef) -> Result<String, StoreError> {
        let mut c = self.conn().await?;
        let by: Option<String> = c.hget(self.keys.slot(cref).meta, meta::FORCE_BY).await?;
        Ok(by.unwrap_or_default())
    }

    /// Takes one of the fleet's force refreshes for today, if WeChat's
    /// `stable_token` limits allow (the compatible endpoint's `force_refresh`).
    pub async fn force_take(
        &self,
        cref: &CredentialRef,
        daily: u64,
        spacing: Duration,
    ) -> Result<ForceTake, StoreError> {
        let day = self.quota_day(self.redis_time_ms().await?);
        let mut c = self.conn().await?;
        let (tag, _n): (String, u64) = FORCE_TAKE
            .key(self.keys.slot(cref).meta)
            .arg(day.key_suffix())
            .arg(daily)
            .arg(millis(spacing))
            .invoke_async(&mut c)
            .await?;
        Ok(match tag.as_str() {
            "ok" => ForceTake::Taken,
            "too_soon" => ForceTake::TooSoon,
            _ => ForceTake::OverDaily,
        })
    }

    /// Lifts the back-off gate and the current period's quota count; asks
    /// for a refresh. Returns the quota count that was cleared.
    pub async fn reset_gate(
        &self,
        cref: &CredentialRef,
        window: Window,
    ) -> Result<u64, StoreError> {
        let period = self.period(window, self.redis_time_ms().await?);
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        Ok(RESET_GATE
            .key(&k.meta)
            .key(k.quota_in(&period))
            .key(&k.events)
            .arg(slot_field(cref.slot))
            .arg(period.key_suffix())
            .invoke_async(&mut c)
            .await?)
    }

    /// Lifts the fleet-wide back-off of `cref` (its definition changed: the
    /// old one's failures say nothing about the new) and wakes every
    /// replica's turn; the quota count stays.
    pub async fn lift_gate(&self, cref: &CredentialRef) -> Result<(), StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let _: u64 = LIFT_GATE
            .key(&k.meta)
            .key(&k.events)
            .arg(slot_field(cref.slot))
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// Upstream calls counted for the period of `window` containing Redis'
    /// now (an hourly limit counts the previous hour too).
    pub async fn quota_used(
        &self,
        cref: &CredentialRef,
        window: Window,
    ) -> Result<u64, StoreError> {
        let period = self.period(window, self.redis_time_ms().await?);
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let (now, before): (Option<u64>, Option<u64>) = redis::pipe()
            .get(k.quota_in(&period))
            .get(k.quota_in(&period.previous()))
            .query_async(&mut c)
            .await?;
        let before = if window.slides() { before } else { None };
        Ok(now.unwrap_or(0) + before.unwrap_or(0))
    }

    /// Everything `wxtoken status` shows, in two round trips; quota counts
    /// the period of `window`.
    pub async fn status(
        &self,
        cref: &CredentialRef,
        window: Window,
    ) -> Result<StoredStatus, StoreError> {
        let now = self.redis_time_ms().await?;
        let period = self.period(window, now);
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        type Reply = (
            i64,
            Vec<Option<String>>,
            Option<u64>,
            Option<u64>,
            Option<String>,
        );
        let (token_pttl, fields, quota, before, lock): Reply = redis::pipe()
            .pttl(&k.value)
            .cmd("HMGET")
            .arg(&k.meta)
            .arg(&[
                meta::GENERATION,
                meta::EXPIRES_AT_MS,
                meta::FETCHED_AT_MS,
                meta::FETCHED_BY,
                meta::SOURCE,
                meta::LAST_ERROR_CODE,
                meta::LAST_ERROR_MSG,
                meta::LAST_ERROR_AT_MS,
                meta::LAST_ERROR_CLASS,
                meta::NEXT_ATTEMPT_AT_MS,
                meta::FAILURES,
                meta::REPORTS_REFUSED,
                meta::LAST_REFUSAL_REASON,
                meta::LAST_REFUSAL_AT_MS,
                meta::VERIFIED_GENERATION,
                meta::VERIFIED_UNTIL_MS,
                meta::FORCE_REQUESTS,
                meta::FOLLOWED_FROM,
                meta::FOLLOW_STATE,
                meta::FOLLOW_LAG_MS,
                meta::FOLLOW_AT_MS,
            ])
            .get(k.quota_in(&period))
            .get(k.quota_in(&period.previous()))
            .get(&k.lock)
            .query_async(&mut c)
            .await?;
        let field = |i: usize| fields.get(i).cloned().flatten();
        let num = |i: usize| field(i).and_then(|v| v.parse::<u64>().ok());
        let last_error = field(5).map(|code| LastError {
            code,
            message: field(6).unwrap_or_default(),
            at_ms: num(7).unwrap_or(0),
            class: field(8).and_then(|c| serde_json::from_value(serde_json::Value::String(c)).ok()),
        });
        let before = if window.slides() { before } else { None };
        Ok(StoredStatus {
            token_ttl: pttl(token_pttl),
            generation: num(0),
            expires_at_ms: num(1),
            fetched_at_ms: num(2),
            fetched_by: field(3),
            source: field(4),
            last_error,
            quota_used_today: quota.unwrap_or(0) + before.unwrap_or(0),
            locked_by: lock,
            gate: Duration::from_millis(num(9).unwrap_or(0).saturating_sub(now)),
            failures: num(10).and_then(|f| u32::try_from(f).ok()).unwrap_or(0),
            reports_refused: num(11).unwrap_or(0),
            last_refusal_reason: field(12),
            last_refusal_at_ms: num(13),
            verified_until_ms: num(15)
                .filter(|until| *until > now && num(14) == num(0) && num(0).is_some()),
            force_requests: num(16).unwrap_or(0),
            follow: field(17).map(|from| wxtoken_common::wire::Followed {
                from,
                state: field(18).unwrap_or_default(),
                lag_ms: num(19),
                at_ms: num(20),
            }),
        })
    }
}
