//! Turning any reply WeChat (or a proxy in front of it) can send into a
//! value and its life, or a classified [`FetchError`]: pure, so every odd
//! reply is tested (`reply/tests.rs`, with proptests).
//!
//! Fields are read one by one from a JSON object, so a wrong type in one
//! never hides a non-zero `errcode` in another: the errcode decides, and the
//! caller's kind says what it means ([`Classify`]). An `errmsg` that echoes
//! the request (and so a secret) is withheld.

use std::fmt;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use wxtoken_client::keyspace::is_plausible_token as plausible_token;
use wxtoken_common::{ErrorClass, classify_fetch_errcode};

use super::FetchError;

/// How a kind reads an `errcode` of its fetch endpoint.
pub type Classify = fn(i64) -> ErrorClass;

/// A value WeChat issued.
pub struct Grant {
    /// The access token or ticket.
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

/// Parses a token endpoint's reply (`access_token`, classified as SPEC §1).
pub fn parse_reply(status: u16, body: &[u8]) -> Result<Grant, FetchError> {
    parse_value(status, body, "access_token", classify_fetch_errcode)
}

/// Some gateways echo the request (query string included) in their error
/// text: an errmsg from a reply that contains the appsecret is withheld, so
/// the secret never reaches errors, logs or the meta hash.
pub fn withhold_echo(error: FetchError, body: &[u8], secret: &SecretString) -> FetchError {
    let secret = secret.expose_secret();
    match error {
        FetchError::Wechat {
            errcode,
            errmsg,
            class,
        } if !secret.is_empty()
            && (errmsg.contains(secret)
                || body.windows(secret.len()).any(|w| w == secret.as_bytes())) =>
        {
            FetchError::Wechat {
                errcode,
                errmsg: "[errmsg withheld: the reply contained the appsecret]".into(),
                class,
            }
        }
        other => other,
    }
}

/// Turns an HTTP status and body into the value in `field` (`access_token`,
/// `ticket`) or an error classified by `classify`.
///
/// Fields are read one by one from a JSON object, so a wrong type in one
/// (an `errmsg` that is a number, a value that is an object) never hides a
/// non-zero `errcode` in another: the errcode decides the class. Invalid
/// UTF-8 is replaced, not fatal, for the same reason (a proxy that
/// re-encodes `errmsg`); a replaced character never passes as a value.
pub fn parse_value(
    status: u16,
    body: &[u8],
    field_name: &str,
    classify: Classify,
) -> Result<Grant, FetchError> {
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
            class: classify(errcode),
        });
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status { status });
    }
    if object.is_none() {
        return Err(FetchError::Body("not a JSON object".into()));
    }
    let Some(token) = field(field_name)
        .and_then(serde_json::Value::as_str)
        .filter(|t| !t.trim().is_empty())
    else {
        return Err(FetchError::Body(format!("no {field_name}")));
    };
    if !plausible_token(token) {
        return Err(FetchError::Body(format!(
            "{field_name} is not a plausible value"
        )));
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
pub fn sanitize(s: &str) -> String {
    s.chars().filter(|c| !c.is_control()).take(200).collect()
}

/// A small WeChat reply as JSON: not JSON is a retryable body error on a
/// 2xx, else the HTTP status.
pub fn json_reply(status: u16, body: &[u8]) -> Result<serde_json::Value, FetchError> {
    serde_json::from_slice(body).map_err(|_| {
        if (200..300).contains(&status) {
            FetchError::Body("not JSON".into())
        } else {
            FetchError::Status { status }
        }
    })
}

/// WeChat's `errcode` in `reply` as an error of `class` (its `errmsg`
/// sanitized).
pub fn wechat_error(reply: &serde_json::Value, errcode: i64, class: ErrorClass) -> FetchError {
    FetchError::Wechat {
        errcode,
        errmsg: sanitize(
            reply
                .get("errmsg")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(""),
        ),
        class,
    }
}

#[cfg(test)]
mod tests;
