//! Per-app call budgets: the `cgi-bin/token` daily quota, the `stable_token`
//! daily and per-minute quotas, the force-refresh count and spacing, the
//! per-type `getticket` daily quota ([`QuotaBook`]); the quota day, which
//! turns at Asia/Shanghai midnight; and the [`SlidingWindow`] that counts
//! calls in the last minute (stable_token) or hour (WeCom ticket caps).
//!
//! A call that is refused does not use quota. This module counts and refuses;
//! it does not know about tokens or HTTP, and it reads no clock of its own
//! (every method takes the moment, so tests move time by hand).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

use crate::errcode::WxError;
use crate::token::Now;

/// Asia/Shanghai is UTC+8 all year (no DST since 1991).
const SHANGHAI_OFFSET_MS: u64 = 8 * 3600 * 1000;
const DAY_MS: u64 = 24 * 3600 * 1000;
const MINUTE: Duration = Duration::from_secs(60);

/// The quota day a wall-clock moment falls in: days since the epoch, counted
/// in Asia/Shanghai local time, so it changes at Shanghai midnight.
pub(crate) fn quota_day(unix_ms: u64) -> u64 {
    (unix_ms + SHANGHAI_OFFSET_MS) / DAY_MS
}

/// The limits one book enforces (copied from `SimConfig`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) daily: u32,
    pub(crate) stable_daily: u32,
    pub(crate) stable_per_minute: u32,
    pub(crate) force_daily: u32,
    pub(crate) force_spacing: Duration,
    pub(crate) domain_ip_daily: u32,
    pub(crate) ticket_daily: u32,
}

/// Calls admitted in the last `len` (a sliding window, so a client cannot
/// pass by straddling a boundary), and the most ever seen in one window.
#[derive(Debug, Clone, Default)]
pub(crate) struct SlidingWindow {
    calls: VecDeque<Instant>,
    max_seen: u64,
}

impl SlidingWindow {
    /// An empty window that remembers an earlier peak.
    pub(crate) fn with_peak(max_seen: u64) -> Self {
        Self {
            calls: VecDeque::new(),
            max_seen,
        }
    }

    fn prune(&mut self, now: Instant, len: Duration) {
        while self
            .calls
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= len)
        {
            self.calls.pop_front();
        }
    }

    /// True when one more call at `now` stays within `cap`.
    pub(crate) fn has_room(&mut self, now: Instant, len: Duration, cap: u32) -> bool {
        self.prune(now, len);
        self.calls.len() < cap as usize
    }

    /// Counts one admitted call (check [`SlidingWindow::has_room`] first).
    pub(crate) fn admit(&mut self, now: Instant) {
        self.calls.push_back(now);
        self.max_seen = self.max_seen.max(self.calls.len() as u64);
    }

    /// Calls admitted in the window ending at `now`.
    pub(crate) fn count(&self, now: Instant, len: Duration) -> u64 {
        let in_window = self
            .calls
            .iter()
            .filter(|t| now.saturating_duration_since(**t) < len)
            .count();
        in_window as u64
    }

    /// The most calls ever admitted within one window.
    pub(crate) fn max_seen(&self) -> u64 {
        self.max_seen
    }
}

/// One app's usage. Daily counters belong to `day` and reset when a call
/// arrives on a later quota day.
#[derive(Debug, Clone, Default)]
pub(crate) struct QuotaBook {
    day: u64,
    token_used: u32,
    stable_used: u32,
    force_used: u32,
    domain_ip_used: u32,
    /// `getticket` calls by ticket type name (`jsapi`, `wx_card`).
    tickets_used: BTreeMap<&'static str, u32>,
    /// Admitted stable_token calls in the last 60 s.
    stable_window: SlidingWindow,
    last_force: Option<Instant>,
}

impl QuotaBook {
    fn roll(&mut self, now: Now) {
        let day = quota_day(now.unix_ms);
        if day != self.day {
            self.day = day;
            self.token_used = 0;
            self.stable_used = 0;
            self.force_used = 0;
            self.domain_ip_used = 0;
            self.tickets_used.clear();
        }
    }

    /// One `getticket` call of ticket type `kind`: 45009 once that type's
    /// daily quota is used up.
    pub(crate) fn take_ticket(
        &mut self,
        now: Now,
        kind: &'static str,
        limits: Limits,
    ) -> Result<(), WxError> {
        self.roll(now);
        let used = self.tickets_used.entry(kind).or_default();
        if *used >= limits.ticket_daily {
            return Err(WxError::DailyQuota);
        }
        *used += 1;
        Ok(())
    }

    /// `getticket` calls used on the quota day of `now`, by ticket type.
    pub(crate) fn tickets_used(&self, now: Now) -> BTreeMap<String, u64> {
        if quota_day(now.unix_ms) != self.day {
            return BTreeMap::new();
        }
        self.tickets_used
            .iter()
            .map(|(k, v)| ((*k).to_owned(), u64::from(*v)))
            .collect()
    }

    /// One `get_api_domain_ip` call: 45009 once its daily quota is used up.
    pub(crate) fn take_domain_ip(&mut self, now: Now, limits: Limits) -> Result<(), WxError> {
        self.roll(now);
        if self.domain_ip_used >= limits.domain_ip_daily {
            return Err(WxError::DailyQuota);
        }
        self.domain_ip_used += 1;
        Ok(())
    }

    /// `get_api_domain_ip` calls used on the quota day of `now`.
    pub(crate) fn domain_ip_used(&self, now: Now) -> u32 {
        if quota_day(now.unix_ms) == self.day {
            self.domain_ip_used
        } else {
            0
        }
    }

    /// One `cgi-bin/token` call (or external refresh): 45009 once the daily
    /// quota is used up.
    pub(crate) fn take_token(&mut self, now: Now, limits: Limits) -> Result<(), WxError> {
        self.roll(now);
        if self.token_used >= limits.daily {
            return Err(WxError::DailyQuota);
        }
        self.token_used += 1;
        Ok(())
    }

    /// One `stable_token` call: 45009 over the daily quota, 45011 over the
    /// per-minute quota.
    pub(crate) fn take_stable(&mut self, now: Now, limits: Limits) -> Result<(), WxError> {
        self.roll(now);
        if self.stable_used >= limits.stable_daily {
            return Err(WxError::DailyQuota);
        }
        if !self
            .stable_window
            .has_room(now.at, MINUTE, limits.stable_per_minute)
        {
            return Err(WxError::MinuteQuota);
        }
        self.stable_window.admit(now.at);
        self.stable_used += 1;
        Ok(())
    }

    /// One force refresh: 45011 when sooner than the spacing after the last
    /// one, 45009 over the daily count.
    pub(crate) fn take_force(&mut self, now: Now, limits: Limits) -> Result<(), WxError> {
        self.roll(now);
        if self
            .last_force
            .is_some_and(|t| now.at.saturating_duration_since(t) < limits.force_spacing)
        {
            return Err(WxError::MinuteQuota);
        }
        if self.force_used >= limits.force_daily {
            return Err(WxError::DailyQuota);
        }
        self.force_used += 1;
        self.last_force = Some(now.at);
        Ok(())
    }

    /// Like WeChat's `clear_quota`: today's counters start again.
    pub(crate) fn clear(&mut self) {
        *self = Self::default();
    }

    /// `(token, stable, force)` calls used on the quota day of `now`.
    pub(crate) fn used(&self, now: Now) -> (u32, u32, u32) {
        if quota_day(now.unix_ms) == self.day {
            (self.token_used, self.stable_used, self.force_used)
        } else {
            (0, 0, 0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            daily: 2,
            stable_daily: 5,
            stable_per_minute: 3,
            force_daily: 2,
            force_spacing: Duration::from_secs(30),
            domain_ip_daily: 2,
            ticket_daily: 2,
        }
    }

    #[test]
    fn quota_day_turns_at_shanghai_midnight() {
        // 2024-01-01T15:59:59.999Z is 23:59:59.999 in Shanghai.
        let before = 1_704_124_799_999;
        assert_eq!(quota_day(before) + 1, quota_day(before + 1));
        // UTC midnight is 08:00 in Shanghai: same quota day.
        let utc_midnight = 1_704_067_200_000; // 2024-01-01T00:00:00Z
        assert_eq!(quota_day(utc_midnight - 1), quota_day(utc_midnight));
    }

    #[test]
    fn token_quota_refuses_with_45009_and_resets_next_shanghai_day() {
        let mut q = QuotaBook::default();
        // 23:59:58 Shanghai.
        let now = Now {
            at: Instant::now(),
            unix_ms: 1_704_124_798_000,
        };
        assert_eq!(q.take_token(now, limits()), Ok(()));
        assert_eq!(q.take_token(now, limits()), Ok(()));
        assert_eq!(q.take_token(now, limits()), Err(WxError::DailyQuota));
        assert_eq!(q.used(now).0, 2, "refused calls use no quota");
        let tomorrow = now.after(Duration::from_secs(2));
        assert_eq!(q.used(tomorrow).0, 0);
        assert_eq!(q.take_token(tomorrow, limits()), Ok(()));
    }

    #[test]
    fn stable_per_minute_is_a_sliding_window() {
        let mut q = QuotaBook::default();
        let t0 = Now::current();
        for _ in 0..3 {
            assert_eq!(q.take_stable(t0, limits()), Ok(()));
        }
        assert_eq!(q.take_stable(t0, limits()), Err(WxError::MinuteQuota));
        let t1 = t0.after(Duration::from_secs(59));
        assert_eq!(q.take_stable(t1, limits()), Err(WxError::MinuteQuota));
        let t2 = t0.after(Duration::from_secs(60));
        assert_eq!(q.take_stable(t2, limits()), Ok(()));
        assert_eq!(q.take_stable(t2, limits()), Ok(()));
        // Daily stable quota (5) is now used up.
        let t3 = t0.after(Duration::from_secs(200));
        assert_eq!(q.take_stable(t3, limits()), Err(WxError::DailyQuota));
    }

    #[test]
    fn domain_ip_quota_refuses_with_45009() {
        let mut q = QuotaBook::default();
        let now = Now::current();
        assert_eq!(q.take_domain_ip(now, limits()), Ok(()));
        assert_eq!(q.take_domain_ip(now, limits()), Ok(()));
        assert_eq!(q.take_domain_ip(now, limits()), Err(WxError::DailyQuota));
        assert_eq!(q.domain_ip_used(now), 2);
        assert_eq!(q.used(now).0, 0, "token quota untouched");
    }

    #[test]
    fn ticket_quota_is_per_type_and_rolls_with_the_day() {
        let mut q = QuotaBook::default();
        let now = Now::current();
        assert_eq!(q.take_ticket(now, "jsapi", limits()), Ok(()));
        assert_eq!(q.take_ticket(now, "jsapi", limits()), Ok(()));
        assert_eq!(
            q.take_ticket(now, "jsapi", limits()),
            Err(WxError::DailyQuota)
        );
        assert_eq!(q.take_ticket(now, "wx_card", limits()), Ok(()));
        assert_eq!(q.tickets_used(now).get("jsapi"), Some(&2));
        let tomorrow = now.after(Duration::from_secs(24 * 3600));
        assert!(q.tickets_used(tomorrow).is_empty());
        assert_eq!(q.take_ticket(tomorrow, "jsapi", limits()), Ok(()));
    }

    #[test]
    fn sliding_window_counts_and_remembers_its_peak() {
        let mut w = SlidingWindow::default();
        let len = Duration::from_secs(60);
        let t0 = Instant::now();
        for i in 0..3 {
            assert!(w.has_room(t0 + Duration::from_secs(i), len, 3));
            w.admit(t0 + Duration::from_secs(i));
        }
        assert!(!w.has_room(t0 + Duration::from_secs(59), len, 3));
        assert_eq!(w.count(t0 + Duration::from_secs(60), len), 2);
        assert!(w.has_room(t0 + Duration::from_secs(60), len, 3));
        assert_eq!(w.max_seen(), 3);
    }

    #[test]
    fn force_refresh_spacing_then_daily_count() {
        let mut q = QuotaBook::default();
        let t0 = Now::current();
        assert_eq!(q.take_force(t0, limits()), Ok(()));
        let t1 = t0.after(Duration::from_secs(29));
        assert_eq!(q.take_force(t1, limits()), Err(WxError::MinuteQuota));
        let t2 = t0.after(Duration::from_secs(30));
        assert_eq!(q.take_force(t2, limits()), Ok(()));
        let t3 = t0.after(Duration::from_secs(61));
        assert_eq!(q.take_force(t3, limits()), Err(WxError::DailyQuota));
        q.clear();
        assert_eq!(q.take_force(t3, limits()), Ok(()));
    }
}
