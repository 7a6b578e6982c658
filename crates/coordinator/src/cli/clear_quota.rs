//! `wxtoken clear-quota ID --yes`: WeChat's `clear_quota/v2` for the
//! credential's account (appid + appsecret, no token needed, so it works
//! when the day's quota is spent), then the fleet's own count of today
//! starts again. WeChat allows 10 resets per account per calendar month
//! (all ways of resetting together); the fleet counts the ones it made in
//! Redis (`P:{ID}:clear_quota:YYYYMM`) and explains 48006 when they are
//! spent. Refuses without `--yes`.

use anyhow::{Context, bail};

use crate::config::Config;
use crate::upstream::{FetchError, Upstream};

use super::ops::{connected_store, find};

/// WeChat's monthly allowance of quota resets per account.
pub const MONTHLY_RESETS: u64 = 10;

pub async fn clear_quota(config: &Config, id: &str, yes: bool) -> anyhow::Result<()> {
    let cred = find(config, id, None)?;
    let upstream = Upstream::new(config.refresh.upstream_timeout, 1).context("upstream")?;
    let Some(call) = cred.kind.clear_quota(&upstream) else {
        bail!(
            "{} is a {}: only app access tokens ([[apps]], with an appsecret) have a quota reset",
            cred.cref,
            cred.kind.name()
        );
    };
    let store = connected_store(config).await?;
    let now = store.redis_time_ms().await?;
    // WeChat's month is the calendar month in Asia/Shanghai.
    let day = wxtoken_common::QuotaDay::from_unix_ms(
        i64::try_from(now).unwrap_or(i64::MAX),
        wxtoken_common::QuotaOffset::default(),
    );
    let month = day.key_suffix()[..6].to_owned();
    let used = store.clear_quota_uses(&cred.cref, &month).await?;
    if !yes {
        bail!(
            "not resetting {}: a quota reset spends one of WeChat's {MONTHLY_RESETS} resets per account \
             and calendar month ({used} made by this fleet this month; resets made elsewhere, e.g. in \
             the admin console, count too). Run again with --yes to spend one.",
            cred.cref
        );
    }
    match call.await {
        Ok(()) => {
            let count = store.count_clear_quota(&cred.cref, &month).await?;
            let cleared = store.quota_cleared(&cred.cref).await?;
            println!(
                "WeChat cleared today's API quota of {} ({}); the fleet's own count ({cleared}) starts \
                 again too. Reset {count} of {MONTHLY_RESETS} this month by this fleet.",
                cred.cref,
                cred.kind.describe().owner
            );
            Ok(())
        }
        Err(FetchError::Wechat { errcode: 48006, .. }) => bail!(
            "WeChat refused (48006): this account has used all {MONTHLY_RESETS} quota resets of this \
             calendar month ({used} of them by this fleet; resets made elsewhere count too). Nothing \
             was cleared. The daily quota starts again at midnight Asia/Shanghai, and resets come \
             back on the 1st of next month."
        ),
        Err(e) => Err(anyhow::Error::new(e).context(format!(
            "clear_quota/v2 for {} failed; nothing was cleared",
            cred.cref
        ))),
    }
}
