//! WeChat's error replies: every `errcode` the simulator can return, its
//! `errmsg`, and the exact JSON body `{"errcode":N,"errmsg":"… rid: …"}`.
//!
//! Which request earns which code is decided by the rules (`state`, `quota`)
//! and the routes; this module only names and renders the codes. Like real
//! WeChat, `errmsg` ends with a request id (` rid: …`), so clients that match
//! on `errmsg` text instead of `errcode` break here as they would in
//! production.

use rand::Rng;

/// One WeChat error reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WxError {
    /// -1: "system error", WeChat's "system busy, retry later".
    #[error("system busy")]
    SystemBusy,
    /// 40001 on a use endpoint: never issued, revoked, or superseded longer
    /// than the overlap ago.
    #[error("invalid credential")]
    InvalidCredential,
    /// 40001 on WeCom `gettoken`: wrong corpsecret.
    #[error("invalid corpsecret")]
    InvalidCorpsecret,
    /// 40002: missing or other `grant_type`.
    #[error("invalid grant_type")]
    InvalidGrantType,
    /// 40013: unknown appid.
    #[error("invalid appid")]
    InvalidAppid,
    /// 40013 on WeCom `gettoken`: unknown corpid.
    #[error("invalid corpid")]
    InvalidCorpid,
    /// 40066: no such API path.
    #[error("invalid url")]
    InvalidUrl,
    /// 40097: invalid arguments (getticket `type`).
    #[error("invalid args")]
    InvalidArgs,
    /// 40125: wrong secret.
    #[error("invalid appsecret")]
    InvalidAppsecret,
    /// 41001: no `access_token` on a use endpoint.
    #[error("access_token missing")]
    AccessTokenMissing,
    /// 41002: no appid.
    #[error("appid missing")]
    AppidMissing,
    /// 41002 on WeCom: no corpid.
    #[error("corpid missing")]
    CorpidMissing,
    /// 41004: no secret.
    #[error("appsecret missing")]
    SecretMissing,
    /// 41004 on WeCom: no corpsecret.
    #[error("corpsecret missing")]
    CorpsecretMissing,
    /// 42001: the token is past its natural expiry.
    #[error("access_token expired")]
    AccessTokenExpired,
    /// 43001: a GET-only endpoint was called with another method.
    #[error("require GET method")]
    RequireGet,
    /// 43002: `stable_token` was called with another method than POST.
    #[error("require POST method")]
    RequirePost,
    /// 45009: the daily quota of this API is used up.
    #[error("reach max api daily quota limit")]
    DailyQuota,
    /// 45011: too many calls this minute, or force refreshes too close.
    #[error("api minute-quota reach limit")]
    MinuteQuota,
    /// 47001: the POST body is not the JSON WeChat expects.
    #[error("data format error")]
    DataFormat,
}

impl WxError {
    /// The numeric `errcode`.
    pub(crate) fn code(self) -> i64 {
        match self {
            WxError::SystemBusy => -1,
            WxError::InvalidCredential | WxError::InvalidCorpsecret => 40001,
            WxError::InvalidGrantType => 40002,
            WxError::InvalidAppid | WxError::InvalidCorpid => 40013,
            WxError::InvalidUrl => 40066,
            WxError::InvalidArgs => 40097,
            WxError::InvalidAppsecret => 40125,
            WxError::AccessTokenMissing => 41001,
            WxError::AppidMissing | WxError::CorpidMissing => 41002,
            WxError::SecretMissing | WxError::CorpsecretMissing => 41004,
            WxError::AccessTokenExpired => 42001,
            WxError::RequireGet => 43001,
            WxError::RequirePost => 43002,
            WxError::DailyQuota => 45009,
            WxError::MinuteQuota => 45011,
            WxError::DataFormat => 47001,
        }
    }

    /// The `errmsg` text before the request id.
    pub(crate) fn message(self) -> &'static str {
        match self {
            WxError::SystemBusy => "system error",
            WxError::InvalidCredential => {
                "invalid credential, access_token is invalid or not latest"
            }
            WxError::InvalidCorpsecret => "invalid credential, corpsecret is invalid",
            WxError::InvalidGrantType => "invalid grant_type",
            WxError::InvalidAppid => "invalid appid",
            WxError::InvalidCorpid => "invalid corpid",
            WxError::InvalidUrl => "invalid url",
            WxError::InvalidArgs => "invalid args",
            WxError::InvalidAppsecret => "invalid appsecret",
            WxError::AccessTokenMissing => "access_token missing",
            WxError::AppidMissing => "appid missing",
            WxError::CorpidMissing => "corpid missing",
            WxError::SecretMissing => "appsecret missing",
            WxError::CorpsecretMissing => "corpsecret missing",
            WxError::AccessTokenExpired => "access_token expired",
            WxError::RequireGet => "require GET method",
            WxError::RequirePost => "require POST method",
            WxError::DailyQuota => "reach max api daily quota limit",
            WxError::MinuteQuota => "api minute-quota reach limit",
            WxError::DataFormat => "data format error",
        }
    }

    /// The reply body, exactly as WeChat shapes it.
    pub(crate) fn body(self) -> String {
        serde_json::json!({
            "errcode": self.code(),
            "errmsg": format!("{} rid: {}", self.message(), request_id()),
        })
        .to_string()
    }
}

/// A WeChat-looking request id: `xxxxxxxx-xxxxxxxx-xxxxxxxx` in hex.
fn request_id() -> String {
    let mut rng = rand::rng();
    format!(
        "{:08x}-{:08x}-{:08x}",
        rng.random::<u32>(),
        rng.random::<u32>(),
        rng.random::<u32>()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_wechat_shape_and_rid() {
        let v: serde_json::Value = serde_json::from_str(&WxError::InvalidAppsecret.body()).unwrap();
        assert_eq!(v["errcode"], 40125);
        let msg = v["errmsg"].as_str().unwrap();
        assert!(msg.starts_with("invalid appsecret rid: "), "{msg}");
        assert_eq!(v.as_object().unwrap().len(), 2);
    }
}
