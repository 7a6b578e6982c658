//! The two component calls the registry makes (SPEC §9), in WeChat's
//! shapes: `api_query_auth` (an authorization code → the authorizer's first
//! token and refresh token) and `api_get_authorizer_list` (pages of ≤ 500
//! authorizers with their current refresh tokens: the only way back after
//! Redis lost them). Both carry the component token; replies are parsed
//! field by field and never logged.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};
use wxtoken_common::ErrorClass;

use crate::upstream::{FetchError, Upstream, parse_value, sanitize};

/// Authorizers per `api_get_authorizer_list` page (WeChat's maximum).
pub const PAGE: u64 = 500;

/// The largest `api_get_authorizer_list` reply read (a page of 500 is
/// ~100 KB; WeChat's refresh tokens are ~100 characters).
const LIST_REPLY_LIMIT: usize = 4 * 1024 * 1024;

/// How long one list page may take (the reply is ~100 KB).
const LIST_TIMEOUT: Duration = Duration::from_secs(15);

/// What `api_query_auth` returns.
pub struct Authorization {
    pub appid: String,
    pub access_token: SecretString,
    pub expires_in: Duration,
    pub refresh_token: SecretString,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization")
            .field("appid", &self.appid)
            .field("expires_in", &self.expires_in)
            .finish_non_exhaustive()
    }
}

/// One authorizer of a list page.
pub struct Listed {
    pub appid: String,
    pub refresh_token: SecretString,
}

fn wechat_error(v: &Value) -> Option<FetchError> {
    let errcode = v
        .get("errcode")
        .and_then(Value::as_i64)
        .filter(|c| *c != 0)?;
    Some(FetchError::Wechat {
        errcode,
        errmsg: sanitize(v.get("errmsg").and_then(Value::as_str).unwrap_or("")),
        class: wxtoken_common::classify_fetch_errcode(errcode),
    })
}

fn json_of(status: u16, body: &[u8]) -> Result<Value, FetchError> {
    let v: Value =
        serde_json::from_slice(body).map_err(|_| FetchError::Body("not a JSON object".into()))?;
    if let Some(e) = wechat_error(&v) {
        return Err(e);
    }
    if !(200..300).contains(&status) {
        return Err(FetchError::Status { status });
    }
    Ok(v)
}

/// `api_query_auth`: exchanges an authorization code.
pub async fn query_auth(
    upstream: &Upstream,
    base_url: &str,
    component_appid: &str,
    component_token: &SecretString,
    code: &str,
) -> Result<Authorization, FetchError> {
    let url = format!(
        "{base_url}/cgi-bin/component/api_query_auth?component_access_token={}",
        component_token.expose_secret()
    );
    let body = json!({"component_appid": component_appid, "authorization_code": code});
    let (status, reply) = upstream.post_json(&url, &body).await?;
    let v = json_of(status, &reply)?;
    let info = v
        .get("authorization_info")
        .ok_or_else(|| FetchError::Body("no authorization_info".into()))?;
    let text = |name: &str| {
        info.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .map(str::to_owned)
            .ok_or_else(|| FetchError::Body(format!("no {name}")))
    };
    let appid = text("authorizer_appid")?;
    let refresh_token = SecretString::from(text("authorizer_refresh_token")?);
    // The token and its life, through the same checks as every fetch.
    let inner = serde_json::to_vec(info).map_err(|e| FetchError::Body(e.to_string()))?;
    let grant = parse_value(200, &inner, "authorizer_access_token", |_| {
        ErrorClass::Retryable
    })?;
    Ok(Authorization {
        appid,
        access_token: grant.token,
        expires_in: grant.expires_in,
        refresh_token,
    })
}

/// One page of `api_get_authorizer_list`: the authorizers and the total.
pub async fn authorizer_list(
    upstream: &Upstream,
    base_url: &str,
    component_appid: &str,
    component_token: &SecretString,
    offset: u64,
) -> Result<(Vec<Listed>, u64), FetchError> {
    let url = format!(
        "{base_url}/cgi-bin/component/api_get_authorizer_list?component_access_token={}",
        component_token.expose_secret()
    );
    let body = json!({"component_appid": component_appid, "offset": offset, "count": PAGE});
    let (status, reply) = upstream
        .post_json_large(&url, &body, LIST_REPLY_LIMIT, LIST_TIMEOUT)
        .await?;
    let v = json_of(status, &reply)?;
    let total = v
        .get("total_count")
        .and_then(Value::as_u64)
        .ok_or_else(|| FetchError::Body("no total_count".into()))?;
    let list = v
        .get("list")
        .and_then(Value::as_array)
        .ok_or_else(|| FetchError::Body("no list".into()))?;
    let listed = list
        .iter()
        .filter_map(|e| {
            let appid = e.get("authorizer_appid")?.as_str()?.to_owned();
            let rt = e.get("refresh_token")?.as_str().filter(|t| !t.is_empty())?;
            Some(Listed {
                appid,
                refresh_token: SecretString::from(rt.to_owned()),
            })
        })
        .collect();
    Ok((listed, total))
}
