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
use wxtoken_client::keyspace::is_plausible_token as plausible_token;
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
            // At most MAX_CONCURRENT_REFRESHES calls are in flight; keep no
            // more idle connections than that.
            .pool_max_idle_per_host(crate::refresher::MAX_CONCURRENT_REFRESHES)
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
        let (status, body) = self.exchange(request).await?;
        parse_reply(status, &body)
            .map_err(|e| withhold_echo(e, &body, app.secret().expose_secret()))
    }
}

/// What WeChat said when shown a token ([`Upstream::check_token`]).
#[derive(Debug)]
pub enum Check {
    /// WeChat accepted it: the token is not invalid, whatever a reader saw.
    Accepted,
    /// WeChat rejected it: 40001 / 40014 (invalid, not latest) or 42001 (expired).
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

impl Upstream {
    /// Shows `token` to WeChat with the cheapest call that needs one,
    /// `GET cgi-bin/get_api_domain_ip` (WeChat's API-domain IP list; it works
    /// for official accounts, mini programs and WeCom, spends no
    /// `cgi-bin/token` quota, and answers 40001/40014/42001 for a token that
    /// is not the latest or expired). Its own daily quota is undocumented
    /// (about 1000, by WeChat's community answers), so callers bound how
    /// often they check (`[refresh] verify_interval`, `verify_daily_budget`).
    pub async fn check_token(&self, token: &SecretString) -> Check {
        let request = self
            .http
            .get(format!("{}/cgi-bin/get_api_domain_ip", self.base_url))
            .query(&[("access_token", token.expose_secret())]);
        let (status, body) = match self.exchange(request).await {
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
            Some(errcode) if wxtoken_common::is_token_rejected(errcode) => {
                Check::Rejected { errcode }
            }
            Some(errcode) if errcode != 0 => Check::Unknown(FetchError::Wechat {
                errcode,
                errmsg: sanitize(
                    object
                        .get("errmsg")
                        .and_then(serde_json::Value::as_str)
                        .unwrap_or(""),
                ),
            }),
            _ if object.contains_key("ip_list") => Check::Accepted,
            _ => Check::Unknown(FetchError::Body("no ip_list".into())),
        }
    }

    /// Sends `request` and reads the reply, at most [`MAX_BODY`] bytes.
    async fn exchange(
        &self,
        request: reqwest::RequestBuilder,
    ) -> Result<(u16, Vec<u8>), FetchError> {
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
        Ok((status, body))
    }
}

/// Some gateways echo the request (query string included) in their error
/// text: an errmsg from a reply that contains the appsecret is withheld, so
/// the secret never reaches errors, logs or the meta hash.
fn withhold_echo(error: FetchError, body: &[u8], secret: &str) -> FetchError {
    match error {
        FetchError::Wechat { errcode, errmsg }
            if !secret.is_empty()
                && (errmsg.contains(secret)
                    || body.windows(secret.len()).any(|w| w == secret.as_bytes())) =>
        {
            FetchError::Wechat {
                errcode,
                errmsg: "[errmsg withheld: the reply contained the appsecret]".into(),
            }
        }
        other => other,
    }
}

/// Turns an HTTP status and body into a grant or a classified error. Pure,
/// so every odd reply WeChat (or a proxy in front of it) can send is tested.
///
/// Fields are read one by one from a JSON object, so a wrong type in one
/// (an `errmsg` that is a number, an `access_token` that is an object) never
/// hides a non-zero `errcode` in another: the errcode decides the class.
/// Invalid UTF-8 is replaced, not fatal, for the same reason (a proxy that
/// re-encodes `errmsg`); a replaced character never passes as a token.
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Grant, FetchError> {
    let text = String::from_utf8_lossy(body);
    let object = match serde_json::from_str::<serde_json::Value>(&text) {
        Ok(serde_json::Value::Object(map)) => Some(map),
        _ => None,
    };
    let field = |name: &str| object.as_ref().and_then(|m| m.get(name));
    if let Some(errcode) = field("errcode").and_then(serde_json::Value::as_i64)
        && errcode != 0
    {
        return Err(FetchError::Wechat {
            errcode,
            errmsg: sanitize(
                field("errmsg")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or(""),
            ),
        });
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status { status });
    }
    if object.is_none() {
        return Err(FetchError::Body("not a JSON object".into()));
    }
    let Some(token) = field("access_token")
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.trim().is_empty())
    else {
        return Err(FetchError::Body("no access_token".into()));
    };
    if !plausible_token(token) {
        return Err(FetchError::Body(
            "access_token is not a plausible token".into(),
        ));
    }
    let expires_in = match field("expires_in") {
        Some(serde_json::Value::Number(n)) => n.as_i64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    match expires_in {
        Some(secs) if secs > 0 && secs <= MAX_EXPIRES_IN => Ok(Grant {
            token: SecretString::from(token.to_owned()),
            expires_in: Duration::from_secs(secs.unsigned_abs()),
        }),
        _ => Err(FetchError::Body(
            "expires_in missing or not a positive number of at most 30 days".into(),
        )),
    }
}

/// The longest token life we believe (30 days); WeChat's is 7200 s.
const MAX_EXPIRES_IN: i64 = 30 * 86_400;

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

    #[test]
    fn an_echoed_secret_is_withheld() {
        let body = br#"{"errcode":40164,"errmsg":"invalid ip, GET /cgi-bin/token?secret=S3CRET-42 rid: 1"}"#;
        let e = withhold_echo(parse_reply(200, body).err().unwrap(), body, "S3CRET-42");
        assert!(!format!("{e} {e:?}").contains("S3CRET-42"), "{e}");
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = withhold_echo(parse_reply(200, body).err().unwrap(), body, "other");
        assert!(e.to_string().contains("invalid ip"));
    }

    // ---- Property: any status and body → a plausible grant or a classified error ----

    use proptest::prelude::*;

    /// A JSON value as text (maybe not valid JSON) and what it means to a reader.
    #[derive(Debug, Clone)]
    struct Field {
        text: Vec<u8>,
        /// The value as an i64 when it is a JSON integer that fits.
        int: Option<i64>,
        /// The value as a string (invalid UTF-8 replaced) when it is a JSON string.
        string: Option<String>,
    }

    fn raw(text: impl Into<Vec<u8>>) -> Field {
        Field {
            text: text.into(),
            int: None,
            string: None,
        }
    }

    fn int_field(n: i64) -> Field {
        Field {
            int: Some(n),
            ..raw(n.to_string())
        }
    }

    fn string_field(s: String) -> Field {
        Field {
            text: serde_json::to_vec(&s).unwrap(),
            int: None,
            string: Some(s),
        }
    }

    /// A string with raw invalid UTF-8 inside the quotes.
    fn broken_string(head: String, tail: String) -> Field {
        let mut text = serde_json::to_vec(&head).unwrap();
        text.pop();
        text.extend_from_slice(b"\xff\xfe\xc3");
        let tail_json = serde_json::to_vec(&tail).unwrap();
        text.extend_from_slice(&tail_json[1..]);
        let decoded = String::from_utf8_lossy(&text[1..text.len() - 1]).into_owned();
        Field {
            text,
            int: None,
            string: serde_json::from_str(&format!("\"{decoded}\"")).ok(),
        }
    }

    /// Arbitrary JSON, nested a few levels.
    fn any_json() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(serde_json::Value::from),
            "\\PC{0,12}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(4, 24, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }

    /// Values of the wrong type, or too large for any integer type.
    fn wrong_type() -> impl Strategy<Value = Field> {
        prop_oneof![
            Just(raw("null")),
            Just(raw("true")),
            Just(raw("[]")),
            Just(raw(r#"{"access_token":"T","expires_in":7200}"#)),
            Just(raw("1e400")),
            Just(raw("-1e400")),
            Just(raw("123456789012345678901234567890")),
            ((i64::MAX as u64 + 1)..=u64::MAX).prop_map(|n| raw(n.to_string())),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(|f| raw(format!("{f:?}"))),
            any_json().prop_map(|v| raw(v.to_string())),
        ]
    }

    fn errcode() -> impl Strategy<Value = Field> {
        prop_oneof![
            3 => prop::sample::select(vec![0_i64, -1, 40001, 40013, 40125, 40164, 45009, 45011, 89501])
                .prop_map(int_field),
            1 => any::<i64>().prop_map(int_field),
            1 => "-?[0-9]{1,6}".prop_map(string_field),
            1 => wrong_type(),
        ]
    }

    fn token() -> impl Strategy<Value = Field> {
        prop_oneof![
            4 => "[A-Za-z0-9_-]{1,200}".prop_map(string_field),
            1 => "[ -~]{0,40}".prop_map(string_field),
            1 => "\\PC{0,40}".prop_map(string_field),
            1 => "[\\s\\x00-\\x1f]{0,3}[A-Z]{1,4}[\\s\\x00-\\x1f]{0,3}".prop_map(string_field),
            1 => (2040_usize..2060).prop_map(|n| string_field("t".repeat(n))),
            1 => ("[A-Z]{0,8}", "[A-Z]{0,8}").prop_map(|(h, t)| broken_string(h, t)),
            1 => wrong_type(),
        ]
    }

    fn expires_in() -> impl Strategy<Value = Field> {
        prop_oneof![
            3 => prop::sample::select(vec![7200_i64, 1, 0, -1, -7200, 2_592_000, 2_592_001])
                .prop_map(int_field),
            1 => any::<i64>().prop_map(int_field),
            1 => "[ ]{0,2}-?[0-9]{1,8}[ ]{0,2}".prop_map(string_field),
            1 => "\\PC{0,10}".prop_map(string_field),
            1 => wrong_type(),
        ]
    }

    fn errmsg() -> impl Strategy<Value = Field> {
        prop_oneof![
            "\\PC{0,300}".prop_map(string_field),
            ".{0,40}".prop_map(string_field),
            ("[a-z ]{0,20}", "[a-z ]{0,20}").prop_map(|(h, t)| broken_string(h, t)),
            wrong_type(),
        ]
    }

    #[derive(Debug, Clone)]
    struct Object {
        errcode: Option<Field>,
        errmsg: Option<Field>,
        access_token: Option<Field>,
        expires_in: Option<Field>,
        extra: Vec<(String, serde_json::Value)>,
        /// Where the extra fields go among the known ones.
        order: u8,
    }

    impl Object {
        fn render(&self) -> Vec<u8> {
            let mut parts: Vec<Vec<u8>> = Vec::new();
            for (name, field) in [
                ("errcode", &self.errcode),
                ("errmsg", &self.errmsg),
                ("access_token", &self.access_token),
                ("expires_in", &self.expires_in),
            ] {
                if let Some(f) = field {
                    let mut p = format!("\"{name}\":").into_bytes();
                    p.extend_from_slice(&f.text);
                    parts.push(p);
                }
            }
            let at = usize::from(self.order) % (parts.len() + 1);
            for (k, v) in &self.extra {
                parts.insert(
                    at,
                    format!("{}:{v}", serde_json::Value::from(k.as_str())).into_bytes(),
                );
            }
            let mut out = b"{".to_vec();
            out.extend(parts.join(&b","[..]));
            out.push(b'}');
            out
        }
    }

    fn object() -> impl Strategy<Value = Object> {
        (
            prop::option::of(errcode()),
            prop::option::of(errmsg()),
            prop::option::weighted(0.8, token()),
            prop::option::weighted(0.8, expires_in()),
            prop::collection::vec(
                (
                    "(data|result|errmsg_|access_token_|Access_Token|nested)",
                    any_json(),
                ),
                0..3,
            ),
            any::<u8>(),
        )
            .prop_map(
                |(errcode, errmsg, access_token, expires_in, extra, order)| Object {
                    errcode,
                    errmsg,
                    access_token,
                    expires_in,
                    extra,
                    order,
                },
            )
    }

    fn status() -> impl Strategy<Value = u16> {
        prop_oneof![4 => Just(200_u16), 1 => 100_u16..600, 1 => any::<u16>()]
    }

    /// What `parse_reply` must do with a structured reply, worked out from the
    /// fields' meaning rather than from the parser.
    fn expected(status: u16, body: &[u8], o: &Object) -> Result<(String, i64), ErrorClass> {
        let valid_json = serde_json::from_str::<serde_json::Value>(&String::from_utf8_lossy(body))
            .is_ok_and(|v| v.is_object());
        if !valid_json {
            return Err(ErrorClass::Retryable);
        }
        if let Some(code) = o.errcode.as_ref().and_then(|f| f.int).filter(|c| *c != 0) {
            return Err(classify_fetch_errcode(code));
        }
        if !(200..300).contains(&status) {
            return Err(ErrorClass::Retryable);
        }
        let token = o.access_token.as_ref().and_then(|f| f.string.clone());
        let secs = o.expires_in.as_ref().and_then(|f| {
            f.int
                .or_else(|| f.string.as_ref().and_then(|s| s.trim().parse().ok()))
        });
        match (token, secs) {
            (Some(t), Some(secs))
                if (1..=2048).contains(&t.len())
                    && t.bytes().all(|b| (0x21..=0x7e).contains(&b))
                    && (1..=2_592_000).contains(&secs) =>
            {
                Ok((t, secs))
            }
            _ => Err(ErrorClass::Retryable),
        }
    }

    /// What holds for every reply, structured or not.
    fn check_invariants(
        status: u16,
        result: &Result<Grant, FetchError>,
    ) -> Result<(), TestCaseError> {
        match result {
            Ok(g) => {
                let t = g.token.expose_secret();
                prop_assert!((200..300).contains(&status), "grant on HTTP {}", status);
                prop_assert!(plausible_token(t), "implausible token {:?}", t);
                prop_assert!(
                    g.expires_in > Duration::ZERO && g.expires_in <= Duration::from_secs(2_592_000)
                );
                // `Debug` must not depend on the token at all (a bare
                // `!contains(t)` fails for a one-character token like "c",
                // which any text contains).
                let other = Grant {
                    token: SecretString::from(format!("{t}x")),
                    expires_in: g.expires_in,
                };
                prop_assert_eq!(format!("{g:?}"), format!("{other:?}"));
            }
            Err(e) => {
                let shown = e.to_string();
                match e {
                    FetchError::Wechat { errcode, errmsg } => {
                        prop_assert_ne!(*errcode, 0);
                        prop_assert_eq!(e.class(), classify_fetch_errcode(*errcode));
                        prop_assert!(errmsg.chars().count() <= 200);
                        prop_assert!(!errmsg.chars().any(char::is_control));
                    }
                    _ => {
                        prop_assert_eq!(e.class(), ErrorClass::Retryable, "{}", shown);
                        prop_assert!(shown.len() < 120, "{}", shown);
                    }
                }
            }
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        #[test]
        fn structured_replies_are_judged_by_their_fields(status in status(), o in object()) {
            let body = o.render();
            let result = parse_reply(status, &body);
            check_invariants(status, &result)?;
            let shown = String::from_utf8_lossy(&body).into_owned();
            match (expected(status, &body, &o), &result) {
                (Ok((token, secs)), Ok(g)) => {
                    prop_assert_eq!(g.token.expose_secret(), token.as_str(), "{}", shown);
                    prop_assert_eq!(g.expires_in, Duration::from_secs(secs.unsigned_abs()));
                }
                (Err(class), Err(e)) => prop_assert_eq!(e.class(), class, "{} → {}", shown, e),
                (want, got) => prop_assert!(false, "{} {}: expected {:?}, got {:?}", status, shown, want.map(|_| "grant"), got),
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(status in any::<u16>(), body in prop::collection::vec(any::<u8>(), 0..512)) {
            check_invariants(status, &parse_reply(status, &body))?;
        }

        #[test]
        fn arbitrary_json_never_panics(status in status(), v in any_json()) {
            let body = v.to_string().into_bytes();
            check_invariants(status, &parse_reply(status, &body))?;
        }

        #[test]
        fn mangled_valid_replies_never_panic(
            status in status(),
            cut in any::<prop::sample::Index>(),
            flip in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..4),
        ) {
            let mut body = br#"{"errcode":0,"errmsg":"ok","access_token":"85_ABCdef-123_xyz","expires_in":7200}"#.to_vec();
            for (i, b) in flip {
                let i = i.index(body.len());
                body[i] = b;
            }
            body.truncate(cut.index(body.len() + 1));
            check_invariants(status, &parse_reply(status, &body))?;
        }
    }

    #[test]
    fn huge_and_deep_replies() {
        let token = format!(
            r#"{{"access_token":"{}","expires_in":7200}}"#,
            "x".repeat(10 << 20)
        );
        assert!(parse_reply(200, token.as_bytes()).is_err());
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(
            parse_reply(200, deep.as_bytes()).err().unwrap().class(),
            ErrorClass::Retryable
        );
        let deep_obj = format!(
            r#"{{"errcode":40125,"x":{}{}}}"#,
            r#"{"a":"#.repeat(10_000),
            "}".repeat(10_000)
        );
        assert!(parse_reply(200, deep_obj.as_bytes()).is_err());
        // A wrong type next to a non-zero errcode does not hide it.
        let e = parse_reply(200, br#"{"errcode":40125,"errmsg":5,"access_token":{}}"#)
            .err()
            .unwrap();
        assert_eq!(e.class(), ErrorClass::Fatal);
        let e = parse_reply(200, b"{\"errcode\":45009,\"errmsg\":\"\xb7\xc7\xb7\xa8\"}")
            .err()
            .unwrap();
        assert_eq!(e.class(), ErrorClass::QuotaExhausted);
        assert!(
            parse_reply(
                200,
                "{\"access_token\":\"T\u{00e9}\",\"expires_in\":7200}".as_bytes()
            )
            .is_err()
        );
        assert!(parse_reply(200, b"{\"access_token\":\"T\xff\",\"expires_in\":7200}").is_err());
    }
}
