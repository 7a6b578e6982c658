//! `upstream`: the only code that talks to WeChat — one HTTP client shared
//! by every credential kind, the bounded exchange, the token check a
//! reported value gets, and the error type every fetch returns.
//!
//! Kinds (`crate::kind`) build their own requests and read replies with
//! [`reply::parse_value`]; this module owns transport and limits. reqwest
//! errors print their URL, and token endpoints carry `secret=` in the query,
//! so every error is stripped with `without_url()` before it leaves this
//! module (SPEC §7). Nothing here retries, locks or counts quota.

pub mod conn;
pub mod proxy;
pub mod relay;
pub mod reply;

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use wxtoken_common::ErrorClass;

pub use reply::{
    Classify, Grant, json_reply, parse_reply, parse_value, sanitize, wechat_error, withhold_echo,
};

/// The most reply body we read; WeChat's token replies are ~200 bytes.
const MAX_BODY: usize = 64 * 1024;

/// Why a fetch failed. `Display` never contains a URL, secret or token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// WeChat answered `{"errcode": N, "errmsg": …}` with N ≠ 0; `class` is
    /// what the credential's kind makes of N.
    #[error("wechat errcode {errcode}: {errmsg}")]
    Wechat {
        errcode: i64,
        errmsg: String,
        class: ErrorClass,
    },
    #[error("upstream answered HTTP {status}")]
    Status { status: u16 },
    #[error("upstream timed out")]
    Timeout,
    #[error("could not reach upstream: {0}")]
    Connect(String),
    /// The body was not a reply we could use (garbage, too large, no value).
    #[error("unusable upstream reply: {0}")]
    Body(String),
    /// WeChat said the token the fetch carried (a ticket's parent) is bad:
    /// 40001 / 40014 / 42001. The parent is replaced and the fetch retried.
    #[error("wechat rejected the parent token (errcode {errcode})")]
    ParentRejected { errcode: i64 },
    /// The parent token (a ticket's access token) is not available now.
    #[error("the parent token is unavailable: {0}")]
    ParentUnavailable(String),
    /// A component has no verify ticket yet (WeChat pushes one every 10
    /// minutes; a push was requested).
    #[error("no component_verify_ticket yet: waiting for WeChat's push")]
    NoVerifyTicket,
    /// An authorizer has no refresh token in Redis: only an import
    /// (`api_get_authorizer_list`) or a new authorization gives one back.
    #[error("no refresh token stored for this authorizer: import the authorizer list")]
    NoRefreshToken,
    /// WeChat says the authorization is gone (61023: the merchant revoked
    /// it). The authorizer is marked revoked and no longer refreshed.
    #[error("the authorization was revoked (errcode {errcode})")]
    Revoked { errcode: i64 },
    /// A followed credential configured without its secret was asked to
    /// fetch (SPEC §12: `wxtoken promote` needs the secret in the config).
    #[error("no secret configured: a followed credential needs its secret to be promoted")]
    NoSecret,
}

impl FetchError {
    /// What the coordinator should do about it (SPEC §1, §8).
    pub fn class(&self) -> ErrorClass {
        match self {
            Self::Wechat { class, .. } => *class,
            // Retryable, not fatal: after a data loss the registry's rebuild
            // stores it moments later, and a fatal gate would hold the
            // authorizer for `fatal_cooldown`. No upstream call is made.
            Self::Revoked { .. } | Self::NoSecret => ErrorClass::Fatal,
            _ => ErrorClass::Retryable,
        }
    }

    /// A short code for status and metrics: the errcode, or the failure kind.
    pub fn code(&self) -> String {
        match self {
            Self::Wechat { errcode, .. }
            | Self::ParentRejected { errcode }
            | Self::Revoked { errcode } => errcode.to_string(),
            Self::NoVerifyTicket => "no_verify_ticket".into(),
            Self::NoRefreshToken => "no_refresh_token".into(),
            Self::NoSecret => "no_secret".into(),
            Self::Status { status } => format!("http_{status}"),
            Self::Timeout => "timeout".into(),
            Self::Connect(_) => "connect".into(),
            Self::Body(_) => "bad_reply".into(),
            Self::ParentUnavailable(_) => "parent_unavailable".into(),
        }
    }

    /// False when the fetch failed before any call reached WeChat (no
    /// ticket, no refresh token, no parent value): its quota goes back.
    pub fn called_upstream(&self) -> bool {
        !matches!(
            self,
            Self::NoVerifyTicket
                | Self::NoRefreshToken
                | Self::ParentUnavailable(_)
                | Self::NoSecret
        )
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

/// What WeChat said when shown a value ([`Upstream::check_token`]).
#[derive(Debug)]
pub enum Check {
    /// WeChat accepted it: the value is not invalid, whatever a reader saw.
    Accepted,
    /// WeChat rejected it (40001 / 40014 / 42001, as the kind reads them).
    Rejected { errcode: i64 },
    /// No verdict (timeout, -1, 5xx, garbage, the check's own quota): the
    /// caller must not conclude either way.
    Unknown(FetchError),
}

impl Check {
    /// The `result` label of `wxtoken_token_checks_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Rejected { .. } => "rejected",
            Self::Unknown(_) => "unknown",
        }
    }
}

/// The WeChat client of one replica: one connection pool for every kind
/// and every upstream host.
#[derive(Debug, Clone)]
pub struct Upstream {
    http: reqwest::Client,
}

impl Upstream {
    /// `timeout` bounds the whole exchange (connect, send, read);
    /// `max_idle` is how many idle connections a host keeps (the number of
    /// refresh steps a replica runs at once).
    pub fn new(timeout: Duration, max_idle: usize) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .user_agent(concat!("wxtoken/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(max_idle)
            .build()
            .map_err(FetchError::from_reqwest)?;
        Ok(Self { http })
    }

    /// `GET url?query`: the status and at most 64 KiB of body.
    pub async fn get(
        &self,
        url: &str,
        query: &[(&str, &str)],
    ) -> Result<(u16, Vec<u8>), FetchError> {
        self.exchange(self.http.get(url).query(query), MAX_BODY)
            .await
    }

    /// `POST url` with a JSON body.
    pub async fn post_json(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        self.exchange(self.http.post(url).json(body), MAX_BODY)
            .await
    }

    /// `POST url?access_token=T` with a JSON body (WeChat's APIs that need a
    /// token, e.g. `openapi/quota/get`).
    pub async fn post_json_with_token(
        &self,
        url: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let request = self
            .http
            .post(url)
            .query(&[("access_token", token)])
            .json(body);
        self.exchange(request, MAX_BODY).await
    }

    /// `POST url` with a JSON body whose reply may be up to `max_body`
    /// bytes (`api_get_authorizer_list`: 500 authorizers with their refresh
    /// tokens are ~100 KB), and its own `timeout`.
    pub async fn post_json_large(
        &self,
        url: &str,
        body: &serde_json::Value,
        max_body: usize,
        timeout: Duration,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        self.exchange(self.http.post(url).json(body).timeout(timeout), max_body)
            .await
    }

    /// Shows `value` to WeChat at `url` (a call that needs a token and
    /// costs no token quota, e.g. `cgi-bin/get_api_domain_ip`); `rejects`
    /// says which errcodes mean "this token is bad" for the host.
    pub async fn check_token(
        &self,
        url: &str,
        value: &SecretString,
        rejects: fn(i64) -> bool,
    ) -> Check {
        let (status, body) = match self
            .get(url, &[("access_token", value.expose_secret())])
            .await
        {
            Ok(reply) => reply,
            Err(e) => return Check::Unknown(e),
        };
        let object = match serde_json::from_slice::<serde_json::Value>(&body) {
            Ok(serde_json::Value::Object(map)) => map,
            _ if !(200..300).contains(&status) => {
                return Check::Unknown(FetchError::Status { status });
            }
            _ => return Check::Unknown(FetchError::Body("not a JSON object".into())),
        };
        match object.get("errcode").and_then(serde_json::Value::as_i64) {
            Some(errcode) if rejects(errcode) => Check::Rejected { errcode },
            Some(errcode) if errcode != 0 => Check::Unknown(FetchError::Wechat {
                errcode,
                errmsg: reply::sanitize(
                    object
                        .get("errmsg")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                ),
                class: ErrorClass::Retryable,
            }),
            _ if object.contains_key("ip_list") => Check::Accepted,
            _ => Check::Unknown(FetchError::Body("no ip_list".into())),
        }
    }

    /// Sends `request` and reads the reply, at most [`MAX_BODY`] bytes.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
        max_body: usize,
    ) -> Result<(u16, Vec<u8>), FetchError> {
        let mut response = request.send().await.map_err(FetchError::from_reqwest)?;
        let status = response.status().as_u16();
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(FetchError::from_reqwest)? {
            if body.len() + chunk.len() > max_body {
                return Err(FetchError::Body(format!(
                    "reply larger than {max_body} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        Ok((status, body))
    }
}
