//! `upstream`: the WeChat token endpoints (`cgi-bin/token`, `cgi-bin/stable_token`)
//! over reqwest, and the parser that turns any reply into a token or a
//! classified [`FetchError`].
//!
//! Only this module sends an appsecret anywhere. reqwest errors print their
//! URL, and `cgi-bin/token` carries `secret=` in its query, so every error is
//! stripped with `without_url()` before it leaves this module (SPEC §7).
//! This module does not retry, lock or count quota: `refresher` does.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use wxtoken_common::{ErrorClass, classify_fetch_errcode};

use crate::config::{AppConfig, UpstreamApi};

/// The most reply body we read; WeChat's token replies are ~200 bytes.
const MAX_BODY: usize = 64 * 1024;

/// A token WeChat issued.
pub struct Grant {
    pub token: SecretString,
    /// `expires_in` as WeChat said it, counted from when it answered.
    pub expires_in: Duration,
}

impl fmt::Debug for Grant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grant")
            .field("token", &"[redacted]")
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// Why a fetch failed. `Display` never contains a URL, secret or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// WeChat answered `{"errcode": N, "errmsg": …}` with N ≠ 0.
    #[error("wechat errcode {errcode}: {errmsg}")]
    Wechat { errcode: i64, errmsg: String },
    #[error("upstream answered HTTP {status}")]
    Status { status: u16 },
    #[error("upstream timed out")]
    Timeout,
    #[error("could not reach upstream: {0}")]
    Connect(String),
    /// The body was not a token reply we could use (garbage, too large, no token).
    #[error("unusable upstream reply: {0}")]
    Body(String),
}

impl FetchError {
    /// What the coordinator should do about it (SPEC §1).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Wechat { errcode, .. } => classify_fetch_errcode(*errcode),
            _ => ErrorClass::Retryable,
        }
    }

    /// A short code for status and metrics: the errcode, or the failure kind.
    pub fn code(&self) -> String {
        match self {
            Self::Wechat { errcode, .. } => errcode.to_string(),
            Self::Status { status } => format!("http_{status}"),
            Self::Timeout => "timeout".into(),
            Self::Connect(_) => "connect".into(),
            Self::Body(_) => "bad_reply".into(),
        }
    }

    fn from_reqwest(e: reqwest::Error) -> Self {
        let e = e.without_url();
        if e.is_timeout() {
            Self::Timeout
        } else if e.is_connect() {
            Self::Connect(e.to_string())
        } else {
            Self::Connect(format!("transport: {e}"))
        }
    }
}

/// The WeChat token API client for one base URL.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
    base_url: String,
}

impl Upstream {
    /// `timeout` bounds the whole exchange (connect, send, read).
    pub fn new(base_url: &str, timeout: Duration) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("wxtoken/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(FetchError::from_reqwest)?;
        Ok(Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        })
    }

    /// Fetches a token for `app` with its configured API. `force_refresh`
    /// only matters for `stable_token`.
    pub async fn fetch(&self, app: &AppConfig, force_refresh: bool) -> Result<Grant, FetchError> {
        let request = match app.api {
            UpstreamApi::Token => self
                .http
                .get(format!("{}/cgi-bin/token", self.base_url))
                .query(&[
                    ("grant_type", "client_credential"),
                    ("appid", app.appid.as_str()),
                    ("secret", app.secret().expose_secret()),
                ]),
            UpstreamApi::StableToken => self
                .http
                .post(format!("{}/cgi-bin/stable_token", self.base_url))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": app.appid,
                    "secret": app.secret().expose_secret(),
                    "force_refresh": force_refresh,
                })),
        };
        let mut response = request.send().await.map_err(FetchError::from_reqwest)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            if body.len() + chunk.len() > MAX_BODY {
                return Err(FetchError::Body(format!(
                    "reply larger than {MAX_BODY} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        parse_reply(status, &body)
    }
}

#[derive(Deserialize)]
struct Reply {
    #[serde(default)]
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

/// Turns an HTTP status and body into a grant or a classified error. Pure,
/// so every odd reply WeChat (or a proxy in front of it) can send is tested.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Grant, FetchError> {
    let parsed: Option<Reply> = serde_json::from_slice(body).ok();
    if let Some(Reply {
        errcode: Some(errcode),
        errmsg,
        ..
    }) = &parsed
        && *errcode != 0
    {
        return Err(FetchError::Wechat {
            errcode: *errcode,
            errmsg: sanitize(errmsg.as_deref().unwrap_or("")),
        });
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status { status });
    }
    let Some(reply) = parsed else {
        return Err(FetchError::Body("not a JSON object".into()));
    };
    let token = reply.access_token.filter(|t| !t.trim().is_empty());
    let Some(token) = token else {
        return Err(FetchError::Body("no access_token".into()));
    };
    if token.len() > 2048 || token.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(FetchError::Body(
            "access_token is not a plausible token".into(),
        ));
    }
    let expires_in = match reply.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match expires_in {
        Some(secs) if secs > 0 && secs <= 30 * 86_400 => Ok(Grant {
            token: SecretString::from(token),
            expires_in: Duration::from_secs(secs.unsigned_abs()),
        }),
        _ => Err(FetchError::Body(
            "expires_in missing or not a positive number".into(),
        )),
    }
}

/// errmsg goes to logs and status: keep it short and printable.
fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn success() {
        let g = parse_reply(200, br#"{"access_token":"ACCESS_TOKEN","expires_in":7200}"#).unwrap();
        assert_eq!(g.token.expose_secret(), "ACCESS_TOKEN");
        assert_eq!(g.expires_in, Duration::from_secs(7200));
        assert!(!format!("{g:?}").contains("ACCESS_TOKEN"));
        let g = parse_reply(
            200,
            br#"{"errcode":0,"errmsg":"ok","access_token":"T","expires_in":"7200"}"#,
        )
        .unwrap();
        assert_eq!(g.expires_in, Duration::from_secs(7200));
    }

    #[test]
    fn wechat_errors_are_classified() {
        let e = parse_reply(
            200,
            br#"{"errcode":40125,"errmsg":"invalid appsecret rid: 1"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.class(), ErrorClass::Fatal);
        assert_eq!(e.code(), "40125");
        let e = parse_reply(200, br#"{"errcode":-1,"errmsg":"system error"}"#)
            .err()
            .unwrap();
        assert_eq!(e.class(), ErrorClass::Retryable);
        let e = parse_reply(
            200,
            br#"{"errcode":45009,"errmsg":"reach max api daily quota limit"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.class(), ErrorClass::QuotaExhausted);
        let e = parse_reply(
            200,
            br#"{"errcode":45011,"errmsg":"api minute-quota reach limit"}"#,
        )
        .err()
        .unwrap();
        assert_eq!(e.class(), ErrorClass::RateLimited);
    }

    #[test]
    fn odd_replies_are_retryable() {
        let cases: &[(u16, &[u8])] = &[
            (502, b"<html>Bad Gateway</html>"),
            (500, b""),
            (200, b"{\"access_token\":\"T\",\"expi"),
            (200, b"null"),
            (200, b"[]"),
            (200, br#"{"access_token":"","expires_in":7200}"#),
            (200, br#"{"access_token":"T","expires_in":0}"#),
            (200, br#"{"access_token":"T","expires_in":-5}"#),
            (200, br#"{"access_token":"T"}"#),
            (200, br#"{"access_token":42,"expires_in":7200}"#),
            (200, br#"{"access_token":"T T","expires_in":7200}"#),
            (200, br#"{"access_token":"T","expires_in":{"a":1}}"#),
            (200, b"\xff\xfe\x00garbage"),
            (404, br#"{"access_token":"T","expires_in":7200}"#),
        ];
        for (status, body) in cases {
            let e = parse_reply(*status, body)
                .err()
                .unwrap_or_else(|| panic!("{status} {body:?} parsed"));
            assert_eq!(e.class(), ErrorClass::Retryable, "{status} {body:?}: {e}");
        }
    }

    #[test]
    fn errcode_wins_over_http_status() {
        let e = parse_reply(500, br#"{"errcode":40164,"errmsg":"invalid ip"}"#)
            .err()
            .unwrap();
        assert_eq!(e.class(), ErrorClass::Fatal);
    }

    #[test]
    fn errmsg_is_sanitized() {
        let long = format!(
            r#"{{"errcode":40013,"errmsg":"{}\n\u0007x"}}"#,
            "a".repeat(500)
        );
        let FetchError::Wechat { errmsg, .. } = parse_reply(200, long.as_bytes()).err().unwrap()
        else {
            panic!()
        };
        assert_eq!(errmsg.len(), 200);
        assert!(!errmsg.contains('\n'));
    }
}
