//! The accept loop every HTTP listener of the coordinator runs: HTTP/1.1
//! through hyper with the limits `axum::serve` does not have (it sets no
//! timer, so hyper's header timeout is off and a client may hold a
//! connection forever).
//!
//! - A header read timeout, which hyper arms whenever it waits for a request
//!   head: on a new connection and again between requests on a keep-alive
//!   one, so it is the idle timeout too. A slowloris client (one byte a
//!   second) or an idle one is cut off when it expires; request bodies and
//!   handlers are bounded by `[http] request_timeout` (the `observe`
//!   middleware) and the body limit.
//! - A cap on open connections: at the cap the loop stops accepting (new
//!   clients wait in the kernel's backlog) until one closes, so memory and
//!   file descriptors stay bounded whatever clients do.
//! - `ConnectInfo<SocketAddr>` on every request (the secret-guess limiter
//!   keys on the peer address) and graceful shutdown: idle connections close
//!   at once, busy ones after their response.
//!
//! It knows nothing of routes; `router` builds those.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tower::ServiceExt as _;
use tracing::{debug, warn};

/// Limits of one listener (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A client must send a complete request head within this, on a new
    /// connection and between requests on a kept-alive one.
    pub header_read_timeout: Duration,
    /// Connections open at once; beyond, new ones wait to be accepted.
    pub max_connections: usize,
    /// The metric label of this listener (`api`, `metrics`).
    pub name: &'static str,
}

/// How long shutdown waits for busy connections to finish their response.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);

/// Serves `router` on `listener` under `limits` until `shutdown` resolves,
/// then closes idle connections and lets busy ones finish (at most 2 s).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ConnLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    let http = Arc::new(http);
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    warn!(listener = limits.name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let open = limits.max_connections - permits.available_permits();
        crate::metrics::connections_open(limits.name, open);
        let service = router
            .clone()
            .map_request(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo(peer));
                req
            });
        let conn = graceful
            .watch(http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        let name = limits.name;
        let permits_left = permits.clone();
        let max = limits.max_connections;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                if e.is_timeout() {
                    crate::metrics::connection_closed("header_timeout");
                    debug!(
                        listener = name,
                        "connection closed: no complete request head in time"
                    );
                } else {
                    debug!(listener = name, error = %e, "connection ended with an error");
                }
            }
            drop(permit);
            crate::metrics::connections_open(name, max - permits_left.available_permits());
        });
    }
    drop(listener);
    if tokio::time::timeout(SHUTDOWN_GRACE, graceful.shutdown())
        .await
        .is_err()
    {
        debug!(
            listener = limits.name,
            "connections still busy at shutdown; dropping them"
        );
    }
    Ok(())
}

/// Extractor: the peer address of a request served by [`serve`]; `None`
/// in in-process router tests, which have no socket.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub Option<SocketAddr>);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        Ok(Self(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}
