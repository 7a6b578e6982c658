//! WeChat-compatible endpoints, so existing SDKs (wechatpy, WxJava,
//! EasyWeChat, co-wechat-api) work unchanged with their API base pointed at
//! a coordinator: WeChat's token endpoints (`token`), its JS-SDK ticket
//! endpoint (`ticket`) and WeCom's token and ticket endpoints (`wecom`), in
//! WeChat's (and WeCom's) shapes and error codes, served from the fleet's
//! shared values — never one upstream call per request.

mod ticket;
mod token;
mod wecom;

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::response::{IntoResponse, Response};
use secrecy::ExposeSecret;
use wxtoken_common::Slot;
use wxtoken_common::wire::WechatError;

use super::HttpState;
use super::auth::secret_eq;
use crate::kind::{Credential, Family};

pub use ticket::getticket;
pub use token::{FORCE_DAILY, FORCE_SPACING, stable_token, stable_token_get, token};
pub use wecom::{wecom_agent_ticket, wecom_gettoken, wecom_jsapi_ticket};

/// A WeChat error reply (HTTP 200, like WeChat).
pub fn wx(errcode: i64, errmsg: &str) -> Response {
    Json(WechatError::new(errcode, errmsg)).into_response()
}

/// `expires_in` as SDKs should cache it: until the fleet refreshes (`lead`
/// before expiry), not until the value dies. WeChat kills the old token one
/// overlap after the refresh; an SDK caching it to its full life would hit
/// 40001 there whenever the lead exceeds the overlap (10 m vs 5 m by
/// default). Near expiry (the fleet is late) a quarter of what is left.
fn cache_for(ttl: Duration, lead: Duration) -> Duration {
    if lead.is_zero() {
        ttl
    } else if ttl > lead {
        ttl - lead
    } else {
        ttl / 4
    }
}

/// `expires_in` in whole seconds, one less than what is left: SDKs keep a
/// value through the second it expires in (wechatpy's `expires_at <
/// int(time.time())` uses it up to a second after `int(t) + expires_in`).
/// At least 1 (some SDKs take 0 for "no expiry").
fn whole_seconds(d: Duration) -> i64 {
    i64::try_from(d.as_secs().saturating_sub(1))
        .unwrap_or(i64::MAX)
        .max(1)
}

/// The credential of `family` whose current access token is `token`: the
/// proof of who calls a compatible ticket endpoint (constant-time compare).
async fn holder_of(state: &HttpState, token: &str, family: Family) -> Option<Arc<Credential>> {
    for cred in state.catalog.iter() {
        if cred.cref.slot != Slot::AccessToken || cred.kind.describe().family != family {
            continue;
        }
        if let Ok(current) = state.client.value(&cred.cref).await
            && secret_eq(token, current.value())
        {
            return Some(cred.clone());
        }
    }
    None
}

/// A ticket reply, `{"errcode":0,"errmsg":"ok","ticket":…,"expires_in":…}`.
fn ticket_reply(ticket: &wxtoken_client::Token) -> Response {
    Json(serde_json::json!({
        "errcode": 0,
        "errmsg": "ok",
        "ticket": ticket.value(),
        "expires_in": whole_seconds(ticket.ttl()),
    }))
    .into_response()
}

/// Constant-time equality of a given secret and a configured one.
fn secret_matches(given: &str, expected: &secrecy::SecretString) -> bool {
    secret_eq(given, expected.expose_secret())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    #[test]
    fn sdks_cache_until_the_fleet_refreshes() {
        let s = Duration::from_secs;
        assert_eq!(super::cache_for(s(7200), s(600)), s(6600));
        assert_eq!(super::cache_for(s(601), s(600)), s(1));
        assert_eq!(super::cache_for(s(400), s(600)), s(100));
        assert_eq!(super::cache_for(s(400), Duration::ZERO), s(400));
    }
}
