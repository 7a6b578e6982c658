//! The gateway's transport (SPEC §10): one call to a WeChat host with the
//! caller's method, path, query, headers and body, and the current token as
//! `access_token`. Bodies stream both ways; a small request body is kept so
//! the call can be made again, and a small JSON reply is read whole so the
//! caller can see WeChat's `errcode` (40001 / 40014 / 42001 → heal and
//! retry). Redirects are never followed and only the URL the caller built
//! from a configured host is contacted: this is not an open proxy.

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, Method, StatusCode, header};
use futures_util::{StreamExt, TryStreamExt};
use secrecy::{ExposeSecret, SecretString};

use super::FetchError;
use crate::config::GatewayConfig;

/// The most of a JSON reply read to look for an `errcode` (WeChat's error
/// replies are ~100 bytes; business JSON replies are passed on as they come).
const ERRCODE_PEEK: usize = 64 * 1024;

/// Request headers never passed on: hop-by-hop ones (RFC 9110 §7.6.1), the
/// caller's own credentials for wxtoken, and what the transport sets.
const DROPPED_REQUEST: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::HOST,
    header::AUTHORIZATION,
    HeaderName::from_static("x-wxtoken-key"),
];

/// Reply headers never passed back.
const DROPPED_REPLY: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// A request body as the gateway holds it.
#[derive(Debug, Clone)]
pub enum Payload {
    /// Small enough to keep: the call can be made again.
    Kept(Bytes),
    /// Streamed through once.
    Streamed,
}

/// What WeChat answered.
#[derive(Debug)]
pub enum Answer {
    /// A JSON reply read whole, with its `errcode` (0 when it has none).
    Read {
        status: StatusCode,
        headers: HeaderMap,
        body: Bytes,
        errcode: i64,
    },
    /// Anything else (an image, a file, a large reply): passed on as it
    /// streams in.
    Streaming {
        status: StatusCode,
        headers: HeaderMap,
        body: Body,
    },
}

impl Answer {
    pub fn errcode(&self) -> Option<i64> {
        match self {
            Self::Read { errcode, .. } => Some(*errcode),
            Self::Streaming { .. } => None,
        }
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::Read { status, .. } | Self::Streaming { status, .. } => *status,
        }
    }

    /// The reply for the caller.
    pub fn into_response(self) -> axum::response::Response {
        let (status, headers, body) = match self {
            Self::Read {
                status,
                mut headers,
                body,
                ..
            } => {
                headers.remove(header::CONTENT_LENGTH);
                (status, headers, Body::from(body))
            }
            Self::Streaming {
                status,
                headers,
                body,
            } => (status, headers, body),
        };
        let mut response = axum::response::Response::new(body);
        *response.status_mut() = status;
        *response.headers_mut() = headers;
        response
    }
}

/// The gateway's WeChat client: its own pool (business calls must not
/// queue behind token fetches, nor the reverse), no redirects.
#[derive(Debug, Clone)]
pub struct Proxy {
    http: reqwest::Client,
}

/// One call as the gateway makes it.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: &'a Method,
    /// The WeChat URL with the caller's query, without `access_token`
    /// (built and checked by the gateway).
    pub url: &'a str,
    /// The caller's headers (hop-by-hop ones are dropped here).
    pub headers: &'a HeaderMap,
}

impl Proxy {
    pub fn new(c: &GatewayConfig) -> Result<Self, FetchError> {
        let http = reqwest::Client::builder()
            .connect_timeout(c.connect_timeout)
            .timeout(c.timeout)
            .pool_max_idle_per_host(c.pool_idle_per_host)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("wxtoken-gateway/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(FetchError::from_reqwest)?;
        Ok(Self { http })
    }

    /// Makes `call` with `token` as `access_token` and `body`.
    pub async fn send(
        &self,
        call: &Call<'_>,
        token: &SecretString,
        body: reqwest::Body,
    ) -> Result<Answer, FetchError> {
        let mut url = String::with_capacity(call.url.len() + 200);
        url.push_str(call.url);
        url.push(if call.url.contains('?') { '&' } else { '?' });
        url.push_str("access_token=");
        url.extend(form_urlencoded::byte_serialize(
            token.expose_secret().as_bytes(),
        ));
        let mut headers = call.headers.clone();
        for name in &DROPPED_REQUEST {
            headers.remove(name);
        }
        drop_connection_listed(&mut headers, call.headers);
        let reply = self
            .http
            .request(call.method.clone(), url)
            .headers(headers)
            .body(body)
            .send()
            .await
            .map_err(FetchError::from_reqwest)?;
        let status = reply.status();
        let mut headers = reply.headers().clone();
        for name in &DROPPED_REPLY {
            headers.remove(name);
        }
        drop_connection_listed(&mut headers, reply.headers());
        if !is_json(&headers) {
            return Ok(Answer::Streaming {
                status,
                headers,
                body: Body::from_stream(reply.bytes_stream().map_err(scrub)),
            });
        }
        // Read a JSON reply until it ends or passes the peek limit.
        let mut stream = reply.bytes_stream();
        let mut kept = Vec::new();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(FetchError::from_reqwest)?;
            kept.extend_from_slice(&chunk);
            if kept.len() > ERRCODE_PEEK {
                let head = futures_util::stream::iter([Ok(Bytes::from(kept))]);
                return Ok(Answer::Streaming {
                    status,
                    headers,
                    body: Body::from_stream(head.chain(stream.map_err(scrub))),
                });
            }
        }
        let body = Bytes::from(kept);
        let errcode = errcode_of(&body);
        Ok(Answer::Read {
            status,
            headers,
            body,
            errcode,
        })
    }
}

/// A transport error for the caller's stream, without the URL (it carries
/// the token).
fn scrub(e: reqwest::Error) -> std::io::Error {
    std::io::Error::other(e.without_url())
}

/// Headers the `Connection` header names are hop-by-hop too.
fn drop_connection_listed(headers: &mut HeaderMap, original: &HeaderMap) {
    for value in original.get_all(header::CONNECTION) {
        let Ok(list) = value.to_str() else { continue };
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            if let Ok(name) = HeaderName::try_from(name) {
                headers.remove(name);
            }
        }
    }
}

/// WeChat sends its errors as `application/json` or `text/plain`.
fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            let t = t.to_ascii_lowercase();
            t.starts_with("application/json") || t.starts_with("text/plain")
        })
}

/// The reply's `errcode`, 0 when it has none (a business reply).
pub fn errcode_of(body: &[u8]) -> i64 {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.as_object()?.get("errcode")?.as_i64())
        .unwrap_or(0)
}

/// The request body for one attempt.
pub fn body_of(payload: &Payload, stream: Option<Body>) -> reqwest::Body {
    match (payload, stream) {
        (Payload::Kept(bytes), _) => reqwest::Body::from(bytes.clone()),
        (Payload::Streamed, Some(body)) => reqwest::Body::wrap_stream(body.into_data_stream()),
        (Payload::Streamed, None) => reqwest::Body::from(Bytes::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errcodes_are_read_only_from_json_objects() {
        assert_eq!(errcode_of(br#"{"errcode":40001,"errmsg":"x"}"#), 40001);
        assert_eq!(errcode_of(br#"{"errcode":0,"errmsg":"ok"}"#), 0);
        assert_eq!(errcode_of(br#"{"media_id":"m"}"#), 0);
        assert_eq!(errcode_of(b"\xff\xd8 not json"), 0);
        assert_eq!(errcode_of(br#"[40001]"#), 0);
    }

    #[test]
    fn hop_by_hop_headers_named_by_connection_are_dropped() {
        let mut original = HeaderMap::new();
        original.insert(header::CONNECTION, "close, x-trace".parse().unwrap());
        original.insert("x-trace", "1".parse().unwrap());
        original.insert("x-kept", "1".parse().unwrap());
        let mut h = original.clone();
        drop_connection_listed(&mut h, &original);
        assert!(h.get("x-trace").is_none());
        assert!(h.get("x-kept").is_some());
    }

    #[test]
    fn json_is_told_by_content_type() {
        let with = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, t.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json; encoding=utf-8"));
        assert!(with("text/plain"));
        assert!(!with("image/jpeg"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
