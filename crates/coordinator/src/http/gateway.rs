//! The gateway (SPEC §10): `ANY /wx/{id}/{*path}` calls WeChat for the
//! caller with the credential's current token, so services hold none. A
//! reply refusing the token (40001 / 40014 / 42001) is healed: the value is
//! reported (the fleet checks it and replaces it only if WeChat rejects
//! it), the newer token awaited, and the call made once more — when the
//! request body was small enough to keep (`[gateway] retry_body_limit`).
//!
//! The log line of a call names the key, the credential, the path and
//! WeChat's errcode; never the token, the query string or a body.

use std::time::Instant;

use axum::body::{Body, Bytes};
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, header};
use axum::response::Response;
use futures_util::StreamExt;
use tracing::{info, warn};
use wxtoken_client::{Invalidation, Token, Verdict};
use wxtoken_common::{Slot, is_token_rejected};

use super::HttpState;
use super::error::ApiFailure;
use super::keys::{ApiKey, ClientCert, Need};
use super::v1::{await_verdict, resolve, token_failure};
use crate::kind::Credential;
use crate::upstream::proxy::{Answer, Call, Payload};

/// The longest API path passed on.
const MAX_PATH: usize = 256;

pub async fn proxy(
    State(state): State<HttpState>,
    key: ApiKey,
    params: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let Path((raw, path)) = params.map_err(|e| ApiFailure::InvalidId(e.to_string()))?;
    let cred = resolve(&state, &raw, Slot::AccessToken)?;
    forward(&state, &cred, &key.name, &path, request).await
}

/// The gateway taken straight from the connection (`http::api`): the
/// checks [`proxy`]'s extractors make — the key may call `path` for `id`,
/// `id` is a credential — then the call.
pub(super) async fn direct(
    state: &HttpState,
    id: &str,
    path: &str,
    cert: Option<&ClientCert>,
    request: Request,
) -> Result<Response, ApiFailure> {
    let key = ApiKey::admit(state, request.headers(), cert, Need::Proxy(path), Some(id))?;
    let cred = resolve(state, id, Slot::AccessToken)?;
    forward(state, &cred, &key.name, path, request).await
}

/// Calls WeChat at `path` for `cred` with what `request` carries.
pub(super) async fn forward(
    state: &HttpState,
    cred: &Credential,
    key: &str,
    path: &str,
    request: Request,
) -> Result<Response, ApiFailure> {
    let started = Instant::now();
    let base = cred.kind.api_base().ok_or_else(|| {
        ApiFailure::WrongKind(format!(
            "{} has no access token for WeChat's business APIs",
            cred.cref
        ))
    })?;
    let base = state
        .gateway
        .base(base)
        .map_err(|e| ApiFailure::UpstreamUnavailable(e.to_string()))?;
    let target = target(&base.prefix, path, request.uri().query())?;
    let (parts, body) = request.into_parts();
    let (payload, stream) = payload(state, &parts.headers, body).await?;
    let call = Call {
        method: &parts.method,
        base: &base,
        target: &target,
        headers: &parts.headers,
        deadline: tokio::time::Instant::from_std(started) + state.gateway_config.timeout,
    };
    let token = current(state, cred).await?;
    let mut answer = send(state, &call, &token, &payload, stream).await?;
    let mut healed = false;
    if let Some(errcode) = answer.errcode().filter(|c| is_token_rejected(*c)) {
        if !matches!(payload, Payload::Kept(_)) {
            // The body is gone: WeChat's reply goes back as it is, and the
            // report heals the token for the next call.
            Box::pin(report(state, cred, &token)).await;
            warn!(credential = %cred.cref, %path, errcode, "WeChat refused the token of a streamed call; reported, not retried");
        } else {
            // Boxed, as every rare branch: the call's future stays small.
            match Box::pin(newer(state, cred, &token)).await {
                Some(fresh) => {
                    answer = send(state, &call, &fresh, &payload, None).await?;
                    healed = answer.errcode().is_none_or(|c| !is_token_rejected(c));
                    info!(credential = %cred.cref, %path, errcode, healed, "WeChat refused the token; retried with the newer one");
                }
                None => {
                    warn!(credential = %cred.cref, %path, errcode, "WeChat refused the token and no newer one came; its reply is passed on")
                }
            }
        }
    }
    let errcode = answer.errcode();
    // A path WeChat does not know (40066, or HTTP 404) is not a series.
    let known = answer.status() != axum::http::StatusCode::NOT_FOUND && errcode != Some(40066);
    let label = if known { path } else { "other" };
    state
        .gateway_series
        .record(key, cred, label, errcode, healed, started.elapsed());
    info!(
        key,
        credential = %cred.cref,
        %path,
        status = answer.status().as_u16(),
        errcode = errcode.map_or_else(|| "-".to_owned(), |c| c.to_string()),
        healed,
        ms = started.elapsed().as_millis() as u64,
        "gateway call"
    );
    Ok(answer.into_response())
}

/// The request target on the credential's host: its base path `prefix`,
/// `path`, and the caller's query without any `access_token` of its own.
/// Refuses paths that could leave the API (`..`, empty segments, any
/// character but letters, digits, `_`, `-`, `.` and `/`); the host is the
/// base's, never the caller's.
fn target(prefix: &str, path: &str, query: Option<&str>) -> Result<String, ApiFailure> {
    let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '/');
    let bad = path.is_empty()
        || path.len() > MAX_PATH
        || !path.chars().all(plain)
        || path
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..");
    if bad {
        return Err(ApiFailure::InvalidRequest(format!(
            "the API path must be 1-{MAX_PATH} characters of letters, digits, '_', '-', '.' in '/'-separated segments"
        )));
    }
    let prefix = prefix.trim_end_matches('/');
    let mut url = String::with_capacity(prefix.len() + path.len() + query.map_or(0, str::len) + 2);
    url.push_str(prefix);
    url.push('/');
    url.push_str(path);
    // The caller's pairs as they were encoded, but for any that decodes to
    // `access_token` (the fleet's token is added last, by the transport).
    let mut first = true;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let own_token = form_urlencoded::parse(pair.as_bytes())
            .next()
            .is_some_and(|(k, _)| k == "access_token");
        if !own_token {
            url.push(if first { '?' } else { '&' });
            url.push_str(pair);
            first = false;
        }
    }
    Ok(url)
}

/// Keeps a body that fits `retry_body_limit` (declared by its length, or
/// none at all); streams a larger one, refusing what passes `max_body`.
async fn payload(
    state: &HttpState,
    headers: &HeaderMap,
    body: Body,
) -> Result<(Payload, Option<Body>), ApiFailure> {
    let g = &state.gateway_config;
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    let chunked = headers.contains_key(header::TRANSFER_ENCODING);
    if length.is_some_and(|n| n > g.max_body) {
        return Err(ApiFailure::PayloadTooLarge);
    }
    let keep = match length {
        Some(n) => n <= g.retry_body_limit,
        None => !chunked,
    };
    if keep {
        let bytes: Bytes = axum::body::to_bytes(body, g.retry_body_limit)
            .await
            .map_err(|_| ApiFailure::PayloadTooLarge)?;
        return Ok((Payload::Kept(bytes), None));
    }
    // Counted as it streams: a chunked body past max_body is cut off.
    let max = g.max_body;
    let mut seen = 0_usize;
    let limited = body.into_data_stream().map(move |chunk| {
        let chunk = chunk?;
        seen += chunk.len();
        if seen > max {
            return Err(axum::Error::new(std::io::Error::other(
                "request body over gateway.max_body",
            )));
        }
        Ok(chunk)
    });
    Ok((Payload::Streamed, Some(Body::from_stream(limited))))
}

async fn current(state: &HttpState, cred: &Credential) -> Result<Token, ApiFailure> {
    state.client.value(&cred.cref).await.map_err(token_failure)
}

async fn send(
    state: &HttpState,
    call: &Call<'_>,
    token: &Token,
    payload: &Payload,
    stream: Option<Body>,
) -> Result<Answer, ApiFailure> {
    state
        .gateway
        .send(call, token.value(), payload, stream)
        .await
        .map_err(|e| ApiFailure::UpstreamUnavailable(e.to_string()))
}

/// After WeChat refused `dead`: reports it and waits for the fleet's
/// verdict. The token to retry with, or `None` when the fleet keeps `dead`
/// (WeChat accepted it when checked) or nothing newer came in time.
async fn newer(state: &HttpState, cred: &Credential, dead: &Token) -> Option<Token> {
    let token = match report(state, cred, dead).await? {
        Invalidation::Reported { generation } => {
            match await_verdict(state, cred, generation).await {
                Ok(Verdict::Replaced(t)) => t,
                Ok(Verdict::Refused { token: Some(t), .. }) => t,
                _ => current(state, cred).await.ok()?,
            }
        }
        // Another report (or refresh) got there first: the newer value may
        // not have reached this replica's cache yet, so wait for it rather
        // than hand WeChat's 40001 back.
        Invalidation::AlreadyReplaced { .. } => state
            .client
            .wait_for_newer_value(&cred.cref, dead.generation(), state.token_wait)
            .await
            .ok()?,
        _ => current(state, cred).await.ok()?,
    };
    (token.value() != dead.value()).then_some(token)
}

/// Reports `dead` to the fleet (compare-and-invalidate: only if it is
/// still the stored value, and only replaced if WeChat rejects it).
async fn report(state: &HttpState, cred: &Credential, dead: &Token) -> Option<Invalidation> {
    let reported = state.client.report(&cred.cref, dead.value()).await.ok()?;
    crate::metrics::invalidation(cred, "gateway");
    Some(reported)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "";

    #[test]
    fn the_target_keeps_the_host_and_replaces_the_callers_token() {
        let u = target(
            BASE,
            "cgi-bin/message/custom/send",
            Some("access_token=MINE&x=1"),
        )
        .unwrap();
        assert_eq!(u, "/cgi-bin/message/custom/send?x=1");
        let u = target("/qyapi", "cgi-bin/user/get", None).unwrap();
        assert_eq!(u, "/qyapi/cgi-bin/user/get");
        // Encoded spellings of the caller's own token go too; the rest keeps
        // its encoding.
        let u = target(
            BASE,
            "cgi-bin/user/info",
            Some("openid=o%2B1&access%5Ftoken=T&&lang=zh_CN&access_token"),
        )
        .unwrap();
        assert_eq!(u, "/cgi-bin/user/info?openid=o%2B1&lang=zh_CN");
        // Always origin-form: a path, never a host of its own.
        for built in [&u, &target(BASE, "a.b/c-d_e", None).unwrap()] {
            let parsed: axum::http::Uri = built.parse().unwrap();
            assert_eq!(parsed.host(), None, "{built}");
            assert!(built.starts_with('/'), "{built}");
        }
    }

    #[test]
    fn paths_that_could_leave_the_api_are_refused() {
        for bad in [
            "",
            "../admin",
            "cgi-bin/../../x",
            "cgi-bin//x",
            "@evil.example/x",
            "cgi-bin/x?y",
            "cgi-bin/%2e%2e/x",
            "cgi-bin/x#f",
            "a:b",
        ] {
            assert!(target(BASE, bad, None).is_err(), "{bad}");
        }
        assert!(target(BASE, &"a".repeat(MAX_PATH + 1), None).is_err());
    }
}
