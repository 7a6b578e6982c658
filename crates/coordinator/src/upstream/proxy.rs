//! The gateway's transport (SPEC §10): one call to a WeChat host with the
//! caller's method, path, query, headers and body, and the current token as
//! `access_token`. Bodies stream both ways; a small request body is kept so
//! the call can be made again, and a small JSON reply is read whole so the
//! caller can see WeChat's `errcode` (40001 / 40014 / 42001 → heal and
//! retry). Redirects are never followed and only the URL the caller built
//! from a configured host is contacted: this is not an open proxy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};

use super::FetchError;
use super::conn::{Base, Pool};
use super::relay::{Relay, read_within};
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

/// Bytes a token is written with as they are: letters, digits, `-`, `_`
/// (a subset of what form_urlencoded leaves unencoded, so a token spelled
/// either way is the same query).
const UNRESERVED: [bool; 256] = {
    let mut t = [false; 256];
    let mut b = 0;
    while b < 256 {
        t[b] = (b as u8).is_ascii_alphanumeric() || b == b'-' as usize || b == b'_' as usize;
        b += 1;
    }
    t
};

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

/// The gateway's WeChat client: its own connections (business calls must
/// not queue behind token fetches, nor the reverse), no redirects, driven
/// by the calling task (`conn.rs`).
#[derive(Debug, Clone)]
pub struct Proxy {
    pool: Arc<Pool>,
    /// Base URLs taken apart once (a handful: one per WeChat host the
    /// configured credentials use).
    bases: Arc<Mutex<HashMap<Box<str>, Arc<Base>>>>,
}

/// One call as the gateway makes it.
#[derive(Debug)]
pub struct Call<'a> {
    pub method: &'a Method,
    /// The credential's WeChat host ([`Proxy::base`]).
    pub base: &'a Base,
    /// The request target on that host with the caller's query, without
    /// `access_token` (built and checked by the gateway).
    pub target: &'a str,
    /// The caller's headers (hop-by-hop ones are dropped here).
    pub headers: &'a HeaderMap,
    /// `gateway.timeout` from the start of the call: a streamed reply is
    /// cut off there.
    pub deadline: tokio::time::Instant,
}

const USER_AGENT: HeaderValue =
    HeaderValue::from_static(concat!("wxtoken-gateway/", env!("CARGO_PKG_VERSION")));

impl Proxy {
    pub fn new(c: &GatewayConfig) -> Result<Self, FetchError> {
        use rustls_platform_verifier::BuilderVerifierExt;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_platform_verifier())
            .map_err(|e| FetchError::Connect(format!("TLS setup: {e}")))?
            .with_no_client_auth();
        Ok(Self::with_tls(c, tls))
    }

    /// [`Self::new`] with a TLS client config of its own (the hosts' roots:
    /// a test's CA); it speaks HTTP/1.1 only.
    pub fn with_tls(c: &GatewayConfig, mut tls: rustls::ClientConfig) -> Self {
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self {
            pool: Arc::new(Pool::new(
                c.pool_idle_per_host,
                c.connect_timeout,
                Arc::new(tls),
            )),
            bases: Arc::default(),
        }
    }

    /// `base` taken apart (once per distinct base).
    pub fn base(&self, base: &str) -> Result<Arc<Base>, FetchError> {
        let mut bases = self.bases.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(b) = bases.get(base) {
            return Ok(b.clone());
        }
        let parsed = Arc::new(Base::parse(base)?);
        // Bases come from the config: a reload may add some, never many.
        if bases.len() >= 64 {
            bases.clear();
        }
        bases.insert(base.into(), parsed.clone());
        Ok(parsed)
    }

    /// Makes `call` with `token` as `access_token` and the body `payload`
    /// holds (or `stream`, once).
    pub async fn send(
        &self,
        call: &Call<'_>,
        token: &str,
        payload: &Payload,
        stream: Option<Body>,
    ) -> Result<Answer, FetchError> {
        let mut target = String::with_capacity(call.target.len() + 14 + token.len() * 3);
        target.push_str(call.target);
        target.push(if call.target.contains('?') { '&' } else { '?' });
        target.push_str("access_token=");
        // WeChat's tokens are letters, digits, `-` and `_`: as they are.
        if token.bytes().all(|b| UNRESERVED[usize::from(b)]) {
            target.push_str(token);
        } else {
            target.extend(form_urlencoded::byte_serialize(token.as_bytes()));
        }
        // The error would not name the target (it carries the token).
        let uri = Uri::try_from(target)
            .map_err(|_| FetchError::Connect("the request target is not a valid URI".into()))?;
        let mut headers = passed(call.headers, &DROPPED_REQUEST);
        headers.insert(header::HOST, call.base.host_header.clone());
        headers.entry(header::USER_AGENT).or_insert(USER_AGENT);
        let mut req = Request::new(body_of(payload, stream));
        *req.method_mut() = call.method.clone();
        *req.uri_mut() = uri;
        *req.headers_mut() = headers;

        // A pooled connection first; if it turns out closed before the
        // request was written, the request goes on a new one.
        let origin = &call.base.origin;
        let mut pooled = self.pool.checkout(origin);
        let (reply, up) = loop {
            let reused = pooled.is_some();
            let mut up = match pooled.take() {
                Some(up) => up,
                None => self.pool.connect(origin).await?,
            };
            match up.exchange(req).await {
                Ok(reply) => break (reply, up),
                Err((_, Some(back))) if reused => req = back,
                Err((e, _)) => return Err(FetchError::Connect(format!("transport: {e}"))),
            }
        };
        let (parts, body) = reply.into_parts();
        let status = parts.status;
        let headers = passed(&parts.headers, &DROPPED_REPLY);
        let relay = Relay::new(body, up, self.pool.clone());
        if !is_json(&headers) {
            return Ok(Answer::Streaming {
                status,
                headers,
                body: Body::new(relay.until(call.deadline)),
            });
        }
        // Read a JSON reply until it ends or passes the peek limit.
        match read_within(relay, ERRCODE_PEEK).await {
            Ok(Ok(body)) => {
                let errcode = errcode_of(&body);
                Ok(Answer::Read {
                    status,
                    headers,
                    body,
                    errcode,
                })
            }
            Ok(Err(rest)) => Ok(Answer::Streaming {
                status,
                headers,
                body: Body::new(rest.until(call.deadline)),
            }),
            Err(e) => Err(FetchError::Connect(format!("reading the reply: {e}"))),
        }
    }
}

/// The headers of `from` that are passed on: all but `fixed` and those the
/// `Connection` header names. Built anew (a message has a handful of
/// headers; removing from a copy hashed every dropped name).
fn passed(from: &HeaderMap, fixed: &[HeaderName]) -> HeaderMap {
    let listed = from.contains_key(header::CONNECTION);
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if fixed.contains(name) || (listed && connection_lists(from, name)) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Whether the `Connection` header of `headers` names `name` (RFC 9110
/// §7.6.1: such headers are hop-by-hop too).
fn connection_lists(headers: &HeaderMap, name: &HeaderName) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|list| list.split(','))
        .any(|n| n.trim().eq_ignore_ascii_case(name.as_str()))
}

/// WeChat sends its errors as `application/json` or `text/plain`.
fn is_json(headers: &HeaderMap) -> bool {
    let starts = |t: &[u8], prefix: &str| {
        t.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
    };
    headers
        .get(header::CONTENT_TYPE)
        .map(HeaderValue::as_bytes)
        .is_some_and(|t| starts(t, "application/json") || starts(t, "text/plain"))
}

/// The reply's `errcode`, 0 when it has none (a business reply).
pub fn errcode_of(body: &[u8]) -> i64 {
    /// Only `errcode` is looked at; other fields are skipped unbuilt.
    #[derive(serde::Deserialize)]
    struct Reply {
        errcode: Option<i64>,
    }
    // A derived struct would also accept a JSON array: objects only.
    let object = body
        .iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{');
    // Without the key spelled out, and without escapes that could spell
    // it, there is nothing to parse (most business replies).
    if !object
        || (memchr::memmem::find(body, b"errcode").is_none()
            && memchr::memchr(b'\\', body).is_none())
    {
        return 0;
    }
    serde_json::from_slice::<Reply>(body)
        .ok()
        .and_then(|r| r.errcode)
        .unwrap_or(0)
}

/// The request body for one attempt.
fn body_of(payload: &Payload, stream: Option<Body>) -> Body {
    match (payload, stream) {
        (Payload::Kept(bytes), _) => Body::from(bytes.clone()),
        (Payload::Streamed, Some(body)) => body,
        (Payload::Streamed, None) => Body::empty(),
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
        // A key spelled with an escape is still the key.
        assert_eq!(errcode_of(br#"{"err\u0063ode":40001}"#), 40001);
        assert_eq!(errcode_of(br#"{"ip_list":["1.2.3.4"]}"#), 0);
    }

    #[test]
    fn hop_by_hop_headers_named_by_connection_are_dropped() {
        let mut original = HeaderMap::new();
        original.insert(header::CONNECTION, "close, X-Trace".parse().unwrap());
        original.insert("x-trace", "1".parse().unwrap());
        original.append("x-kept", "1".parse().unwrap());
        original.append("x-kept", "2".parse().unwrap());
        original.insert(header::AUTHORIZATION, "Bearer k".parse().unwrap());
        let h = passed(&original, &DROPPED_REQUEST);
        assert!(h.get("x-trace").is_none());
        assert!(h.get(header::CONNECTION).is_none());
        assert!(h.get(header::AUTHORIZATION).is_none());
        let kept: Vec<_> = h.get_all("x-kept").iter().collect();
        assert_eq!(kept, ["1", "2"], "repeated headers keep their order");
    }

    #[test]
    fn json_is_told_by_content_type() {
        let with = |t: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, t.parse().unwrap());
            is_json(&h)
        };
        assert!(with("application/json; encoding=utf-8"));
        assert!(with("Application/JSON"));
        assert!(!with("text/html"));
        assert!(with("text/plain"));
        assert!(!with("image/jpeg"));
        assert!(!is_json(&HeaderMap::new()));
    }
}
