//! Quota reconciliation (SPEC §11, `[refresh] quota_check_interval`): once
//! per interval, fleet-wide, one replica asks WeChat's `openapi/quota/get`
//! how many `cgi-bin/token` calls each app made today and compares that with
//! the fleet's own count (`P:{ID}:quota:YYYYMMDD`). More calls at WeChat than
//! in the fleet's count means someone else fetches tokens with the
//! appsecret — and each such fetch cuts the fleet's token off five minutes
//! later. The gap goes to the meta hash (status, `GET /v1/apps`), to
//! `wxtoken_quota_foreign_fetches` on every replica, and to one warning per
//! check that found one.
//!
//! Which credentials: those whose kind names a [`FetchQuota`]
//! (`Kind::fetch_quota`: `cgi-bin/token` apps; see there for why the other
//! kinds are skipped). Why it never reports a gap the fleet made itself:
//! - the fleet takes a quota unit *before* each call, and the fleet's count
//!   is read *after* WeChat's answer, so every fleet call WeChat counted is
//!   already in it (calls WeChat refused or never saw only make the fleet's
//!   count larger, which can hide a third party but never invent one);
//! - what `wxtoken reset` deleted from the fleet's count is added back
//!   (`quota_forgiven`); `wxtoken clear-quota` zeroes both sides;
//! - WeChat's day turns at midnight Asia/Shanghai: a check close to it
//!   (within [`DAY_GUARD`], or the interval when shorter) is skipped, and so
//!   is one during which Redis' day turned; a fleet whose
//!   `quota_day_offset` is not +08:00 counts other days than WeChat and is
//!   not reconciled at all (one warning at start).
//!
//! WeChat says its real-time counts may be off by up to 1 %; a gap is
//! reported as counted. This module decides nothing about refreshes.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, info, warn};
use wxtoken_common::wire::QuotaCheck;
use wxtoken_common::{QuotaDay, QuotaOffset};

use crate::catalog::Catalog;
use crate::kind::{Credential, FetchQuota};
use crate::store::TokenStore;
use crate::upstream::{FetchError, Upstream, json_reply, wechat_error};

/// Checks this close to WeChat's midnight are skipped: WeChat's clock and
/// Redis' may differ by this much, and WeChat's count may lag.
pub const DAY_GUARD: Duration = Duration::from_secs(120);

/// What one check of one credential found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppCheck {
    /// WeChat counts no more calls than the fleet made.
    Match(QuotaCheck),
    /// WeChat counts `foreign_fetches` calls the fleet did not make.
    Gap(QuotaCheck),
    /// No token stored to ask with.
    NoToken,
    /// Too close to WeChat's midnight, or Redis' day turned meanwhile.
    DayBoundary,
    /// WeChat's answer was no count (a replaced token, a timeout, …).
    Failed(String),
}

impl AppCheck {
    /// The `result` label of `wxtoken_quota_checks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Match(_) => "match",
            Self::Gap(_) => "gap",
            Self::NoToken => "no_token",
            Self::DayBoundary => "day_boundary",
            Self::Failed(_) => "failed",
        }
    }
}

/// One turn of the fleet's reconciliation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckOutcome {
    /// Another replica holds the interval's lease.
    LeasedElsewhere,
    /// The quota day offset differs from WeChat's: nothing is compared.
    OffsetDiffers,
    /// This replica checked, one entry per credential with a fetch quota.
    Checked(Vec<(String, AppCheck)>),
}

/// The reconciliation of one replica: the policy loop [`QuotaChecker::run`]
/// around the step [`QuotaChecker::check_once`].
#[derive(Debug, Clone)]
pub struct QuotaChecker {
    store: TokenStore,
    upstream: Upstream,
    catalog: Arc<Catalog>,
    /// The lease owner (the replica id).
    owner: String,
    interval: Duration,
}

impl QuotaChecker {
    pub fn new(
        store: TokenStore,
        upstream: Upstream,
        catalog: Arc<Catalog>,
        owner: String,
        interval: Duration,
    ) -> Self {
        Self {
            store,
            upstream,
            catalog,
            owner,
            interval,
        }
    }

    fn checked(&self) -> Vec<Arc<Credential>> {
        self.catalog
            .iter()
            // A followed app's fetches are its primary's: not reconciled here.
            .filter(|c| c.kind.fetch_quota().is_some() && c.follow.is_none())
            .collect()
    }

    /// Wakes every quarter interval (at most every 30 s): takes the lease
    /// if it lapsed and checks, then sets this replica's gauges from what
    /// the fleet's last check recorded.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        if self.checked().is_empty() {
            return;
        }
        if self.store.quota_offset() != QuotaOffset::default() {
            warn!(
                offset = %self.store.quota_offset(),
                "refresh.quota_day_offset differs from WeChat's (+08:00): quota reconciliation is off"
            );
            return;
        }
        let tick = (self.interval / 4).clamp(Duration::from_millis(50), Duration::from_secs(30));
        while !*shutdown.borrow() {
            match self.check_once().await {
                Ok(CheckOutcome::Checked(results)) => {
                    debug!(credentials = results.len(), "quota reconciliation done");
                }
                Ok(_) => {}
                Err(e) => debug!(error = %e, "quota reconciliation: redis unavailable"),
            }
            self.publish_gauges().await;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// The step: the lease, then every credential with a fetch quota.
    pub async fn check_once(&self) -> Result<CheckOutcome, crate::store::StoreError> {
        if self.store.quota_offset() != QuotaOffset::default() {
            return Ok(CheckOutcome::OffsetDiffers);
        }
        if !self
            .store
            .take_quota_check_lease(&self.owner, self.interval)
            .await?
        {
            return Ok(CheckOutcome::LeasedElsewhere);
        }
        let mut results = Vec::new();
        for cred in self.checked() {
            let Some(quota) = cred.kind.fetch_quota() else {
                continue;
            };
            let result = self.check_app(&cred, quota).await?;
            crate::metrics::quota_check(&cred, result.label());
            match &result {
                AppCheck::Gap(c) => warn!(
                    credential = %cred.cref,
                    appid = %cred.kind.describe().owner,
                    foreign_fetches = c.foreign_fetches,
                    wechat_count = c.upstream_used,
                    fleet_count = c.fleet_used,
                    "someone else fetched cgi-bin/token for this appid today: each such call cuts \
                     the fleet's token off 5 minutes later; find who else holds the appsecret \
                     (or reset it in the WeChat admin console)"
                ),
                AppCheck::Failed(why) => {
                    info!(credential = %cred.cref, reason = %why, "quota reconciliation: no count from WeChat");
                }
                _ => {}
            }
            results.push((cred.cref.to_string(), result));
        }
        Ok(CheckOutcome::Checked(results))
    }

    async fn check_app(
        &self,
        cred: &Credential,
        quota: FetchQuota<'_>,
    ) -> Result<AppCheck, crate::store::StoreError> {
        let before = self.store.redis_time_ms().await?;
        let guard = DAY_GUARD.min(self.interval);
        if near_midnight(before, guard) {
            return Ok(AppCheck::DayBoundary);
        }
        let day = self.store.quota_day(before);
        let Some(token) = self.store.read_value(&cred.cref).await? else {
            return Ok(AppCheck::NoToken);
        };
        let upstream_used = match self.ask(quota, &token.value).await {
            Ok(used) => used,
            Err(e) => return Ok(AppCheck::Failed(e.to_string())),
        };
        // Read after WeChat answered: every fleet call WeChat counted took
        // its unit before it was sent.
        let fleet_used = self.store.fleet_count(&cred.cref, day).await?;
        let after = self.store.redis_time_ms().await?;
        if self.store.quota_day(after) != day || near_midnight(after, guard) {
            return Ok(AppCheck::DayBoundary);
        }
        let check = QuotaCheck {
            foreign_fetches: upstream_used.saturating_sub(fleet_used),
            upstream_used,
            fleet_used,
            checked_at_ms: after,
        };
        self.store
            .record_quota_check(&cred.cref, day, &check)
            .await?;
        Ok(if check.foreign_fetches > 0 {
            AppCheck::Gap(check)
        } else {
            AppCheck::Match(check)
        })
    }

    /// `POST {base}/cgi-bin/openapi/quota/get?access_token=T` → `quota.used`.
    async fn ask(&self, quota: FetchQuota<'_>, token: &str) -> Result<u64, FetchError> {
        let url = format!("{}/cgi-bin/openapi/quota/get", quota.base_url);
        let body = serde_json::json!({ "cgi_path": quota.cgi_path });
        let (status, reply) = self
            .upstream
            .post_json_with_token(&url, token, &body)
            .await?;
        parse_quota(status, &reply)
    }

    /// Sets `wxtoken_quota_foreign_fetches` from the fleet's last check of
    /// today (0 before it), so every replica exports the same gap.
    async fn publish_gauges(&self) {
        let mut found = Vec::new();
        for cred in self.checked() {
            match self.store.quota_check(&cred.cref).await {
                Ok(check) => found.push((cred, check.map_or(0, |c| c.foreign_fetches))),
                Err(_) => return,
            }
        }
        let sum = found.iter().map(|(_, f)| f).sum();
        for (cred, foreign) in found {
            crate::metrics::quota_foreign(&cred, foreign, sum);
        }
    }
}

/// True when `unix_ms` is within `guard` of a midnight in Asia/Shanghai.
fn near_midnight(unix_ms: u64, guard: Duration) -> bool {
    let ms = i64::try_from(unix_ms).unwrap_or(i64::MAX);
    let day = QuotaDay::from_unix_ms(ms, QuotaOffset::default());
    let guard = i64::try_from(guard.as_millis()).unwrap_or(i64::MAX);
    ms - day.start_unix_ms() < guard || day.next_start_unix_ms() - ms <= guard
}

/// `quota.used` of a `quota/get` reply; WeChat's errcode otherwise.
pub fn parse_quota(status: u16, body: &[u8]) -> Result<u64, FetchError> {
    let reply = json_reply(status, body)?;
    match reply.get("errcode").and_then(serde_json::Value::as_i64) {
        Some(0) | None => reply
            .pointer("/quota/used")
            .and_then(serde_json::Value::as_u64)
            .ok_or_else(|| FetchError::Body("no quota.used".into())),
        Some(errcode) => Err(wechat_error(
            &reply,
            errcode,
            wxtoken_common::ErrorClass::Retryable,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_reply_is_read_or_refused() {
        let ok =
            br#"{"errcode":0,"errmsg":"ok","quota":{"daily_limit":2000,"used":7,"remain":1993}}"#;
        assert_eq!(parse_quota(200, ok), Ok(7));
        let e = parse_quota(200, br#"{"errcode":40001,"errmsg":"invalid credential"}"#);
        assert!(matches!(e, Err(FetchError::Wechat { errcode: 40001, .. })));
        assert!(parse_quota(502, b"<html>").is_err());
        assert!(parse_quota(200, br#"{"errcode":0}"#).is_err());
    }

    #[test]
    fn checks_near_shanghai_midnight_are_skipped() {
        // 2024-01-01T16:00:00Z is midnight in Shanghai.
        let midnight: u64 = 1_704_124_800_000;
        let guard = Duration::from_secs(120);
        assert!(near_midnight(midnight, guard));
        assert!(near_midnight(midnight - 60_000, guard));
        assert!(near_midnight(midnight + 119_000, guard));
        assert!(!near_midnight(midnight + 121_000, guard));
        assert!(!near_midnight(midnight - 121_000, guard));
        // UTC midnight is 08:00 in Shanghai: nothing special.
        assert!(!near_midnight(midnight - 16 * 3600 * 1000, guard));
    }
}
