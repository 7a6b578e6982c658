//! WeChat's quota tools for an app: `openapi/quota/get` (how much of one
//! API's daily quota the account used today, whoever called it) and
//! `clear_quota/v2` (today's counters start again, with the appid and
//! appsecret; 10 resets per account per calendar month).
//!
//! Where WeChat's documentation is unclear the harsher reading is modelled:
//! - `quota/get` knows `/cgi-bin/token` and `/cgi-bin/stable_token` only
//!   (76021 for any other path, 76022 for `sns` paths, which WeChat
//!   documents as unsupported, and for a token that is not an app's own,
//!   e.g. an authorizer's).
//! - `clear_quota/v2` takes `appid` and `appsecret` in the JSON body (the
//!   documented Request Payload; one of WeChat's examples shows them in the
//!   query string, which is refused here as 41002). A wrong secret is 40125
//!   and spends no reset. The month is the calendar month in Asia/Shanghai.
//!   A reset clears every daily counter of the account (token, stable_token,
//!   force refreshes, tickets), as WeChat says it empties "the number of
//!   daily calls to the interfaces".

use crate::errcode::WxError;
use crate::token::{Now, TokenState};

use super::{Host, World, present};

/// Resets per account per calendar month (WeChat: 10, shared with the
/// token-authenticated `clear_quota`).
pub(crate) const MONTHLY_CLEARS: u32 = 10;

/// `quota` of an `openapi/quota/get` reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ApiQuota {
    pub(crate) daily_limit: u32,
    pub(crate) used: u32,
    pub(crate) remain: u32,
}

/// Resets used in one calendar month (`yyyymm`, Asia/Shanghai).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct MonthlyClears {
    month: u32,
    used: u32,
}

impl MonthlyClears {
    /// Resets used in the month of `now`.
    pub(super) fn used(self, now: Now) -> u32 {
        if self.month == shanghai_month(now.unix_ms) {
            self.used
        } else {
            0
        }
    }

    fn take(&mut self, now: Now) -> Result<(), WxError> {
        let month = shanghai_month(now.unix_ms);
        if self.month != month {
            *self = Self { month, used: 0 };
        }
        if self.used >= MONTHLY_CLEARS {
            return Err(WxError::ClearQuotaLimit);
        }
        self.used += 1;
        Ok(())
    }
}

/// `yyyymm` of the calendar month `unix_ms` falls in, in Asia/Shanghai.
pub(crate) fn shanghai_month(unix_ms: u64) -> u32 {
    let days = i64::try_from(crate::quota::quota_day(unix_ms)).unwrap_or(i64::MAX);
    // Days since 1970-01-01 to a civil date (H. Hinnant's `civil_from_days`).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u32::try_from(year * 100 + month).unwrap_or(0)
}

/// `clear_quota/v2` body fields (empty strings count as missing).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ClearRequest<'a> {
    pub(crate) appid: Option<&'a str>,
    pub(crate) appsecret: Option<&'a str>,
}

impl World {
    /// `POST cgi-bin/openapi/quota/get` with `token`: the owner app's use of
    /// `cgi_path`'s daily quota today. Returns the appid asked about too.
    pub(crate) fn api_quota(
        &self,
        token: &str,
        cgi_path: Option<&str>,
        now: Now,
    ) -> Result<(String, ApiQuota), WxError> {
        let (state, owner) = self.judge(token, Host::Wechat, now);
        match state {
            TokenState::Valid => {}
            TokenState::Expired => return Err(WxError::AccessTokenExpired),
            TokenState::Invalid | TokenState::Unknown => return Err(WxError::InvalidCredential),
        }
        let appid = owner.ok_or(WxError::InvalidCredential)?.to_owned();
        let path = present(cgi_path).ok_or(WxError::CgiPathNotFound)?;
        if path.contains("/sns/") {
            return Err(WxError::CgiPathNoPermission);
        }
        let book = self.apps.get(&appid).ok_or(WxError::CgiPathNoPermission)?;
        let (token_used, stable_used, _) = book.quota.used(now);
        let (daily_limit, used) = match path {
            "/cgi-bin/token" => (self.limits.daily, token_used),
            "/cgi-bin/stable_token" => (self.limits.stable_daily, stable_used),
            _ => return Err(WxError::CgiPathNotFound),
        };
        let quota = ApiQuota {
            daily_limit,
            used,
            remain: daily_limit.saturating_sub(used),
        };
        Ok((appid, quota))
    }

    /// `POST cgi-bin/clear_quota/v2`: today's counters of the app start
    /// again, at most [`MONTHLY_CLEARS`] times a calendar month (48006).
    pub(crate) fn clear_quota_v2(
        &mut self,
        req: ClearRequest<'_>,
        now: Now,
    ) -> Result<(), WxError> {
        let appid = present(req.appid).ok_or(WxError::AppidMissing)?;
        let secret = present(req.appsecret).ok_or(WxError::SecretMissing)?;
        let book = self.apps.get_mut(appid).ok_or(WxError::InvalidAppid)?;
        if book.secret != secret {
            return Err(WxError::InvalidAppsecret);
        }
        book.clears.take(now)?;
        book.quota.clear();
        Ok(())
    }

    /// `clear_quota` resets `appid` used this calendar month.
    pub(crate) fn clears_used(&self, appid: &str, now: Now) -> u32 {
        self.apps.get(appid).map_or(0, |b| b.clears.used(now))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::SimConfig;
    use crate::state::TokenRequest;

    fn world() -> World {
        World::new(&SimConfig::new().app("wxA", "sA").app("wxB", "sB"))
    }

    fn fetch(w: &mut World, appid: &str, secret: &str, now: Now) -> String {
        let req = TokenRequest {
            grant_type: Some("client_credential"),
            appid: Some(appid),
            secret: Some(secret),
        };
        w.token(req, now).unwrap().token
    }

    #[test]
    fn calendar_month_in_shanghai() {
        // 2024-01-31T16:00:00Z is 2024-02-01 00:00 in Shanghai.
        assert_eq!(shanghai_month(1_706_716_799_999), 202_401);
        assert_eq!(shanghai_month(1_706_716_800_000), 202_402);
        // 2024-12-31T23:00:00Z is 2025-01-01 07:00 in Shanghai.
        assert_eq!(shanghai_month(1_735_686_000_000), 202_501);
        assert_eq!(shanghai_month(951_782_400_000), 200_002); // 2000-02-29T00:00Z
    }

    #[test]
    fn quota_get_counts_every_fetch_including_external_ones() {
        let mut w = world();
        let now = Now::current();
        let token = fetch(&mut w, "wxA", "sA", now);
        w.external_refresh("wxA", now).unwrap();
        let current = fetch(&mut w, "wxA", "sA", now);
        fetch(&mut w, "wxB", "sB", now);
        let (appid, q) = w.api_quota(&current, Some("/cgi-bin/token"), now).unwrap();
        assert_eq!(appid, "wxA");
        assert_eq!((q.daily_limit, q.used, q.remain), (2000, 3, 1997));
        // The first token was cut off by the third fetch: 40001.
        assert_eq!(
            w.api_quota(&token, Some("/cgi-bin/token"), now),
            Err(WxError::InvalidCredential)
        );
        assert_eq!(
            w.api_quota(&current, Some("/cgi-bin/nope"), now),
            Err(WxError::CgiPathNotFound)
        );
        assert_eq!(
            w.api_quota(&current, Some("/sns/oauth2/access_token"), now),
            Err(WxError::CgiPathNoPermission)
        );
        assert_eq!(
            w.api_quota(&current, None, now),
            Err(WxError::CgiPathNotFound)
        );
        let (_, stable) = w
            .api_quota(&current, Some("/cgi-bin/stable_token"), now)
            .unwrap();
        assert_eq!(stable.used, 0);
    }

    #[test]
    fn clear_quota_v2_resets_today_ten_times_a_month_then_48006() {
        let mut w = world();
        let now = Now::current();
        let ok = ClearRequest {
            appid: Some("wxA"),
            appsecret: Some("sA"),
        };
        let bad = ClearRequest {
            appsecret: Some("wrong"),
            ..ok
        };
        assert_eq!(w.clear_quota_v2(bad, now), Err(WxError::InvalidAppsecret));
        assert_eq!(
            w.clear_quota_v2(ClearRequest::default(), now),
            Err(WxError::AppidMissing)
        );
        for _ in 0..MONTHLY_CLEARS {
            fetch(&mut w, "wxA", "sA", now);
            assert_eq!(w.quota_used("wxA", now).0, 1);
            assert_eq!(w.clear_quota_v2(ok, now), Ok(()));
            assert_eq!(w.quota_used("wxA", now).0, 0);
        }
        assert_eq!(w.clears_used("wxA", now), MONTHLY_CLEARS);
        fetch(&mut w, "wxA", "sA", now);
        assert_eq!(w.clear_quota_v2(ok, now), Err(WxError::ClearQuotaLimit));
        assert_eq!(
            w.quota_used("wxA", now).0,
            1,
            "a refused reset clears nothing"
        );
        assert_eq!(w.clears_used("wxB", now), 0, "per account");
        let next_month = now.after(Duration::from_secs(32 * 24 * 3600));
        assert_eq!(w.clear_quota_v2(ok, next_month), Ok(()));
    }
}
