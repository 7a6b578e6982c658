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
//! - TLS when the listener has a [`TlsListener`]: the handshake must finish
//!   within the header read timeout, and a verified client certificate's
//!   subject CN rides on every request of the connection ([`ClientCert`]).
//!
//! It knows nothing of routes; `router` builds those.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, warn};

use super::api::Api;
use super::tls::{TlsListener, client_cn};
use crate::workers::Workers;

/// Limits of one listener (from `[http]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnLimits {
    /// A client must send a complete request head within this, on a new
    /// connection and between requests on a kept-alive one.
    pub header_read_timeout: Duration,
    /// Connections open at once; beyond, new ones wait to be accepted.
    pub max_connections: usize,
    /// The metric label of this listener (`api`, `metrics`), and its
    /// worker threads' name.
    pub name: &'static str,
    /// Threads serving its connections, each with a runtime of its own
    /// (`crate::workers`); 0: the caller's runtime serves them.
    pub workers: usize,
}

/// How long shutdown waits for busy connections to finish their response.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(2);
/// Then for the worker threads to end.
const WORKERS_GRACE: Duration = Duration::from_millis(500);

/// Serves `router` on `listener` under `limits` (HTTPS when `tls` is set)
/// until `shutdown` resolves, then closes idle connections and lets busy
/// ones finish (at most 2 s).
pub async fn serve(
    listener: TcpListener,
    api: impl Into<Api>,
    limits: ConnLimits,
    tls: Option<Arc<TlsListener>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let api = api.into();
    let workers = match limits.workers {
        0 => None,
        n => Some(Workers::start(n, limits.name)?),
    };
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
        let conn = Conn {
            api: api.clone(),
            http: http.clone(),
            watcher: graceful.watcher(),
            peer,
            limits,
            permit,
            permits: permits.clone(),
        };
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        match &workers {
            None => {
                tokio::spawn(conn.start(stream, acceptor));
            }
            // The socket moves to the worker's own reactor.
            Some(workers) => match stream.into_std() {
                Ok(std) => workers.run(move || async move {
                    match TcpStream::from_std(std) {
                        Ok(stream) => conn.start(stream, acceptor).await,
                        Err(e) => debug!(listener = limits.name, error = %e, "cannot register an accepted connection"),
                    }
                }),
                Err(e) => debug!(listener = limits.name, error = %e, "cannot hand an accepted connection over"),
            },
        }
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
    if let Some(workers) = workers {
        workers.finish(WORKERS_GRACE).await;
    }
    Ok(())
}

/// One accepted connection and what serving it needs.
struct Conn {
    api: Api,
    http: Arc<hyper::server::conn::http1::Builder>,
    watcher: hyper_util::server::graceful::Watcher,
    peer: SocketAddr,
    limits: ConnLimits,
    permit: OwnedSemaphorePermit,
    permits: Arc<Semaphore>,
}

impl Conn {
    /// Serves the accepted `stream`: plain, or TLS through `acceptor` (the
    /// handshake bounded by the header read timeout).
    async fn start(self, stream: TcpStream, acceptor: Option<tokio_rustls::TlsAcceptor>) {
        let Some(acceptor) = acceptor else {
            return self.serve(stream, None).await;
        };
        let name = self.limits.name;
        let handshake = acceptor.accept(stream);
        match tokio::time::timeout(self.limits.header_read_timeout, handshake).await {
            Ok(Ok(stream)) => {
                let cn = client_cn(stream.get_ref().1);
                self.serve(stream, cn).await;
            }
            Ok(Err(e)) => {
                crate::metrics::connection_closed("tls_handshake");
                debug!(listener = name, error = %e, "TLS handshake failed");
            }
            Err(_) => {
                crate::metrics::connection_closed("tls_handshake");
                debug!(listener = name, "TLS handshake took too long");
            }
        }
    }

    /// Serves HTTP/1.1 on `io` (plain or TLS) until the connection ends.
    async fn serve<I>(self, io: I, cn: Option<Arc<str>>)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.api.for_connection(self.peer, cn);
        let conn = self.watcher.watch(
            self.http
                .serve_connection(TokioIo::new(io), TowerToHyperService::new(service)),
        );
        let name = self.limits.name;
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
        drop(self.permit);
        crate::metrics::connections_open(
            name,
            self.limits.max_connections - self.permits.available_permits(),
        );
    }
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
