//! The error replies of both hosts: WeChat's ([`WxError`], body
//! `{"errcode":N,"errmsg":"… rid: …"}`) and WeCom's ([`WecomError`], body
//! `{"errcode":N,"errmsg":"…"}`), and the [`ApiError`] trait the shared fetch
//! machinery renders them through without naming either.
//!
//! Which request earns which code is decided by the rules (`state`, `quota`)
//! and the routes; this module only names and renders the codes. Like real
//! WeChat, a WeChat `errmsg` ends with a request id (` rid: …`), so clients
//! that match on `errmsg` text instead of `errcode` break here as they would
//! in production. The same number can mean different things on the two
//! hosts: 40001 is a bad token on WeChat but a bad secret on WeCom.
//!
//! The Open Platform codes (61005 ticket expired, 61006 ticket invalid,
//! 61009 / 61010 code invalid / expired, 61011 invalid component, 61014
//! not a component token, 61023 refresh token invalid) and their `errmsg`
//! texts are WeChat's, as WxJava's error table and its users' issue
//! threads quote them.

use std::fmt::Debug;

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
    /// 40002: missing or other `grant_type`.
    #[error("invalid grant_type")]
    InvalidGrantType,
    /// 40003: `touser` is not an openid (custom message).
    #[error("invalid openid")]
    InvalidOpenid,
    /// 40004: `type` of a media upload is not image, voice, video or thumb.
    #[error("invalid media type")]
    InvalidMediaType,
    /// 40008: `msgtype` of a custom message is missing or unknown.
    #[error("invalid message type")]
    InvalidMessageType,
    /// 40029: a login code never minted, of another app, or past its life.
    #[error("invalid code")]
    InvalidCode,
    /// 40030: an OAuth refresh token never issued (or of another app).
    #[error("invalid refresh_token")]
    InvalidRefreshToken,
    /// 40163: a login code exchanged before.
    #[error("code been used")]
    CodeUsed,
    /// 40226: the user is judged risky; the code is spent.
    #[error("high risk user")]
    RiskyUser,
    /// 41008: no code.
    #[error("missing code")]
    CodeMissing,
    /// 40013: unknown appid.
    #[error("invalid appid")]
    InvalidAppid,
    /// 40066: no such API path.
    #[error("invalid url")]
    InvalidUrl,
    /// 40097: invalid arguments (getticket `type`, jsapi_check input).
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
    /// 41005: a media upload without its `media` part.
    #[error("media data missing")]
    MediaDataMissing,
    /// 40169: `scene` of a mini-program code is missing or over 32 characters.
    #[error("invalid length for scene")]
    InvalidScene,
    /// 41004: no secret.
    #[error("appsecret missing")]
    SecretMissing,
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
    /// 48006: `clear_quota` after the account's 10 resets of the calendar
    /// month were spent.
    #[error("forbid to clear quota because of reaching the limit")]
    ClearQuotaLimit,
    /// 76021: `openapi/quota/get` for a `cgi_path` it does not know.
    #[error("cgi_path not found, please check")]
    CgiPathNotFound,
    /// 76022: `openapi/quota/get` for a `cgi_path` the token's account may
    /// not ask about (an `sns` path, another account's API).
    #[error("could not use this cgi_path,no permission")]
    CgiPathNoPermission,
    /// 61005: the verify ticket is past its life (12 h).
    #[error("component ticket is expired")]
    ComponentTicketExpired,
    /// 61006: not a ticket this component was pushed (or superseded).
    #[error("component ticket is invalid")]
    ComponentTicketInvalid,
    /// 61009: an authorization code never issued, already used, or of an
    /// authorizer that revoked since.
    #[error("code is invalid")]
    CodeInvalid,
    /// 61010: an authorization code past its life.
    #[error("code is expired")]
    CodeExpired,
    /// 61011: unknown component appid (or not the component of the token).
    #[error("invalid component")]
    InvalidComponent,
    /// 61014: a component API called with a token that is not a component
    /// token (an app or authorizer token).
    #[error("must use component token for component api")]
    MustUseComponentToken,
    /// 61023: the refresh token is not one of the authorizer's accepted
    /// ones, or the authorizer revoked (or never authorized) the component.
    #[error("refresh_token is invalid")]
    RefreshTokenInvalid,
}

impl WxError {
    /// The numeric `errcode`.
    pub(crate) fn code(self) -> i64 {
        match self {
            WxError::SystemBusy => -1,
            WxError::InvalidCredential => 40001,
            WxError::InvalidGrantType => 40002,
            WxError::InvalidOpenid => 40003,
            WxError::InvalidMediaType => 40004,
            WxError::InvalidMessageType => 40008,
            WxError::InvalidCode => 40029,
            WxError::InvalidRefreshToken => 40030,
            WxError::CodeUsed => 40163,
            WxError::RiskyUser => 40226,
            WxError::CodeMissing => 41008,
            WxError::InvalidAppid => 40013,
            WxError::InvalidUrl => 40066,
            WxError::InvalidArgs => 40097,
            WxError::InvalidAppsecret => 40125,
            WxError::AccessTokenMissing => 41001,
            WxError::AppidMissing => 41002,
            WxError::SecretMissing => 41004,
            WxError::MediaDataMissing => 41005,
            WxError::InvalidScene => 40169,
            WxError::AccessTokenExpired => 42001,
            WxError::RequireGet => 43001,
            WxError::RequirePost => 43002,
            WxError::DailyQuota => 45009,
            WxError::MinuteQuota => 45011,
            WxError::DataFormat => 47001,
            WxError::ClearQuotaLimit => 48006,
            WxError::CgiPathNotFound => 76021,
            WxError::CgiPathNoPermission => 76022,
            WxError::ComponentTicketExpired => 61005,
            WxError::ComponentTicketInvalid => 61006,
            WxError::CodeInvalid => 61009,
            WxError::CodeExpired => 61010,
            WxError::InvalidComponent => 61011,
            WxError::MustUseComponentToken => 61014,
            WxError::RefreshTokenInvalid => 61023,
        }
    }

    /// The `errmsg` text before the request id.
    pub(crate) fn message(self) -> &'static str {
        match self {
            WxError::SystemBusy => "system error",
            WxError::InvalidCredential => {
                "invalid credential, access_token is invalid or not latest"
            }
            WxError::InvalidGrantType => "invalid grant_type",
            WxError::InvalidOpenid => "invalid openid",
            WxError::InvalidMediaType => "invalid media type",
            WxError::InvalidMessageType => "invalid message type",
            WxError::InvalidCode => "invalid code",
            WxError::InvalidRefreshToken => "invalid refresh_token",
            WxError::CodeUsed => "code been used",
            WxError::RiskyUser => "high risk user",
            WxError::CodeMissing => "missing code",
            WxError::InvalidAppid => "invalid appid",
            WxError::InvalidUrl => "invalid url",
            WxError::InvalidArgs => "invalid args",
            WxError::InvalidAppsecret => "invalid appsecret",
            WxError::AccessTokenMissing => "access_token missing",
            WxError::AppidMissing => "appid missing",
            WxError::SecretMissing => "appsecret missing",
            WxError::MediaDataMissing => "media data missing",
            WxError::InvalidScene => "invalid length for scene",
            WxError::AccessTokenExpired => "access_token expired",
            WxError::RequireGet => "require GET method",
            WxError::RequirePost => "require POST method",
            WxError::DailyQuota => "reach max api daily quota limit",
            WxError::MinuteQuota => "api minute-quota reach limit",
            WxError::DataFormat => "data format error",
            WxError::ClearQuotaLimit => "forbid to clear quota because of reaching the limit",
            WxError::CgiPathNotFound => "cgi_path not found, please check",
            WxError::CgiPathNoPermission => "could not use this cgi_path,no permission",
            WxError::ComponentTicketExpired => "component ticket is expired",
            WxError::ComponentTicketInvalid => "component ticket is invalid",
            WxError::CodeInvalid => "code is invalid",
            WxError::CodeExpired => "code is expired",
            WxError::InvalidComponent => "invalid component",
            WxError::MustUseComponentToken => "must use component token for component api",
            WxError::RefreshTokenInvalid => "refresh_token is invalid",
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

/// An error reply either host can give: its number and its exact body.
/// Shared machinery (fault injection, outcome counting) goes through this.
pub(crate) trait ApiError: Copy + Debug {
    /// The numeric `errcode`.
    fn errcode(self) -> i64;
    /// The whole reply body.
    fn reply_body(self) -> String;
    /// What this host answers when a `busy` fault fires (errcode -1).
    fn busy() -> Self;
}

impl ApiError for WxError {
    fn errcode(self) -> i64 {
        self.code()
    }
    fn reply_body(self) -> String {
        self.body()
    }
    fn busy() -> Self {
        WxError::SystemBusy
    }
}

/// One WeCom (qyapi.weixin.qq.com) error reply.
///
/// Real WeCom appends `, hint: [...], from ip: ..., more info at ...` to
/// `errmsg`; the simulator answers the bare message (the agreed shape,
/// `{"errcode":45009,"errmsg":"api freq out of limit"}`). Clients must match
/// on `errcode` either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum WecomError {
    /// -1: system busy, retry later.
    #[error("system busy")]
    SystemBusy,
    /// 40001 on `gettoken`: the corpsecret matches no agent of the corp.
    #[error("invalid secret")]
    InvalidSecret,
    /// 40013: unknown corpid.
    #[error("invalid corpid")]
    InvalidCorpid,
    /// 40014: the access token is unknown to WeCom, or revoked.
    #[error("invalid access_token")]
    InvalidAccessToken,
    /// 40058: a parameter has an invalid value (`ticket/get` `type`).
    #[error("invalid parameter")]
    InvalidParameter,
    /// 41001: no `access_token`.
    #[error("access_token missing")]
    AccessTokenMissing,
    /// 41002: no corpid.
    #[error("corpid missing")]
    CorpidMissing,
    /// 41004: no corpsecret.
    #[error("corpsecret missing")]
    CorpsecretMissing,
    /// 42001: the token is past its natural expiry.
    #[error("access_token expired")]
    AccessTokenExpired,
    /// 45009: an hourly ticket cap (per agent or per corp) is full. On WeCom
    /// this is a rate limit, not a daily quota.
    #[error("api freq out of limit")]
    FreqOutOfLimit,
}

impl WecomError {
    /// The numeric `errcode`.
    pub(crate) fn code(self) -> i64 {
        match self {
            WecomError::SystemBusy => -1,
            WecomError::InvalidSecret => 40001,
            WecomError::InvalidCorpid => 40013,
            WecomError::InvalidAccessToken => 40014,
            WecomError::InvalidParameter => 40058,
            WecomError::AccessTokenMissing => 41001,
            WecomError::CorpidMissing => 41002,
            WecomError::CorpsecretMissing => 41004,
            WecomError::AccessTokenExpired => 42001,
            WecomError::FreqOutOfLimit => 45009,
        }
    }

    /// The reply body: `{"errcode":N,"errmsg":"…"}`.
    pub(crate) fn body(self) -> String {
        serde_json::json!({ "errcode": self.code(), "errmsg": self.to_string() }).to_string()
    }
}

impl ApiError for WecomError {
    fn errcode(self) -> i64 {
        self.code()
    }
    fn reply_body(self) -> String {
        self.body()
    }
    fn busy() -> Self {
        WecomError::SystemBusy
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

    #[test]
    fn wecom_body_is_bare_errcode_and_errmsg() {
        let v: serde_json::Value =
            serde_json::from_str(&WecomError::FreqOutOfLimit.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"errcode": 45009, "errmsg": "api freq out of limit"})
        );
        assert_eq!(WecomError::InvalidSecret.code(), 40001);
        assert_eq!(WecomError::InvalidAccessToken.code(), 40014);
    }
}
