//! [`Api`]: the service every connection of the API listener runs. Gateway
//! calls (`GET`/`POST /wx/{id}/{*path}`) go straight to the gateway; every
//! other request goes through the axum router.
//!
//! The gateway is the one route on a hot path (every WeChat call of the
//! fleet passes it), and the router's generic machinery cost it more than
//! the call itself: the handler's future boxed and copied by three layers,
//! the route service cloned per request, path parameters decoded into
//! allocated strings, extensions inserted. The direct path does what the
//! router, the `observe` middleware and the extractors did for that route —
//! the same key check ([`ApiKey::admit`]), id resolution, timeout, metrics
//! and log line — and nothing else. A request that is not exactly of the
//! route's shape (another method, an empty id or path) goes to the router,
//! which answers it as before.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::ConnectInfo;
use axum::http::{Method, Request};
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use percent_encoding::percent_decode_str;
use std::borrow::Cow;

use super::HttpState;
use super::error::ApiFailure;
use super::keys::{ClientCert, Need};

/// The API as one service: the router, and the state for the direct path.
#[derive(Clone)]
pub struct Api {
    router: Router,
    /// `None`: everything goes through the router (a router given as is).
    state: Option<HttpState>,
    /// The connection's peer and verified client certificate, when served
    /// by the listener ([`Api::for_connection`]).
    peer: Option<SocketAddr>,
    cert: Option<Arc<str>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("direct_gateway", &self.state.is_some())
            .finish_non_exhaustive()
    }
}

impl From<Router> for Api {
    fn from(router: Router) -> Self {
        Self {
            router,
            state: None,
            peer: None,
            cert: None,
        }
    }
}

impl Api {
    /// The router with the direct gateway path in front of it.
    pub fn new(state: HttpState, router: Router) -> Self {
        Self {
            router,
            state: Some(state),
            peer: None,
            cert: None,
        }
    }

    /// This service for one connection: every request carries its peer
    /// address (`ConnectInfo`) and client certificate (`ClientCert`).
    pub fn for_connection(&self, peer: SocketAddr, cert: Option<Arc<str>>) -> Self {
        Self {
            peer: Some(peer),
            cert,
            ..self.clone()
        }
    }
}

impl<B> tower::Service<Request<B>> for Api
where
    B: HttpBody<Data = Bytes> + Send + 'static,
    B::Error: Into<axum::BoxError>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        if let Some(state) = &self.state
            && let Some(split) = gateway_route(req.method(), req.uri().path())
        {
            let (state, cert) = (state.clone(), self.cert.clone().map(ClientCert));
            let req = req.map(Body::new);
            return Box::pin(async move { Ok(gateway(state, req, split, cert).await) });
        }
        if let Some(peer) = self.peer {
            req.extensions_mut().insert(ConnectInfo(peer));
        }
        if let Some(cn) = &self.cert {
            req.extensions_mut().insert(ClientCert(cn.clone()));
        }
        let mut router = self.router.clone();
        Box::pin(async move { tower::Service::call(&mut router, req).await })
    }
}

/// Where `/wx/{id}/{*path}` splits a request path: the id is
/// `path[4..at]`, the API path `path[at + 1..]`. `None` for any other
/// route, method or shape.
fn gateway_route(method: &Method, path: &str) -> Option<usize> {
    if method != Method::GET && method != Method::POST {
        return None;
    }
    let rest = path.strip_prefix("/wx/")?;
    let slash = rest.find('/')?;
    (slash > 0 && rest.len() > slash + 1).then_some(4 + slash)
}

/// A path parameter as axum decodes it: percent-decoded, UTF-8.
fn decoded(raw: &str) -> Option<Cow<'_, str>> {
    if raw.contains('%') {
        percent_decode_str(raw).decode_utf8().ok()
    } else {
        Some(Cow::Borrowed(raw))
    }
}

/// One gateway call: the key check, the id, the call under
/// `gateway.timeout`, then the request's metrics and log line.
async fn gateway(
    state: HttpState,
    req: Request<Body>,
    at: usize,
    cert: Option<ClientCert>,
) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    // The path lives in the URI, which the call takes along: its bytes
    // are shared, not copied.
    let uri = req.uri().clone();
    let raw = uri.path();
    let (id, path) = (decoded(&raw[4..at]), decoded(&raw[at + 1..]));
    let call = async {
        let (Some(id), Some(path)) = (id, path) else {
            // As the router's extractors: the key first, then the path.
            super::keys::ApiKey::admit(
                &state,
                req.headers(),
                cert.as_ref(),
                Need::Proxy(""),
                None,
            )?;
            return Err(ApiFailure::InvalidId(
                "Invalid URL: a path parameter is not UTF-8 once percent-decoded".into(),
            ));
        };
        super::gateway::direct(&state, &id, &path, cert.as_ref(), req).await
    };
    let response = match tokio::time::timeout(state.gateway_config.timeout, call).await {
        Ok(Ok(response)) => response,
        Ok(Err(failure)) => failure.into_response(),
        Err(_) => ApiFailure::Timeout.into_response(),
    };
    super::observe::gateway_request(
        &state,
        &method,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_gateways_shape_takes_the_direct_path() {
        let at = |m: &Method, p: &str| gateway_route(m, p);
        let p = "/wx/shop/cgi-bin/message/custom/send";
        let split = at(&Method::POST, p).unwrap();
        assert_eq!(
            (&p[4..split], &p[split + 1..]),
            ("shop", "cgi-bin/message/custom/send")
        );
        assert!(at(&Method::GET, "/wx/shop/x").is_some());
        for (m, p) in [
            (Method::PUT, "/wx/shop/x"),
            (Method::GET, "/wx/shop/"),
            (Method::GET, "/wx/shop"),
            (Method::GET, "/wx//x"),
            (Method::GET, "/wx/"),
            (Method::GET, "/v1/apps"),
            (Method::GET, "/wxx/shop/x"),
        ] {
            assert!(at(&m, p).is_none(), "{m} {p}");
        }
    }

    #[test]
    fn parameters_are_percent_decoded_as_the_router_does() {
        assert_eq!(decoded("sh%6Fp").as_deref(), Some("shop"));
        assert_eq!(decoded("cgi-bin/x").as_deref(), Some("cgi-bin/x"));
        assert_eq!(decoded("%2e%2e").as_deref(), Some(".."));
        assert!(decoded("%ff").is_none());
    }
}
