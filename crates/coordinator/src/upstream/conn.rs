//! The gateway's connections to WeChat hosts: HTTP/1.1 (over TLS for an
//! `https` base) through hyper's `client::conn::http1`, driven by the task
//! that makes the call. There is no connection task and no pool task: the
//! caller polls the connection while it waits for the reply head
//! ([`Upstream::exchange`]) and while the reply body streams ([`Relay`]), so
//! a proxied call wakes one task, not three (the reply body: `relay.rs`). When the exchange is complete
//! and the connection can take another request it goes back to the
//! [`Pool`] idle; one that is mid-message (WeChat answered before reading
//! the whole request body), closed by the host or idle too long is dropped.
//!
//! It contacts only the origin of the base URL it is given (the gateway
//! builds that from a configured host), follows no redirects and never sees
//! a token apart from the request line it writes.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::uri::Scheme;
use axum::http::{HeaderValue, Request, Response, Uri};
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::FetchError;

/// An idle connection older than this is not used again (hosts close idle
/// keep-alive connections after a while; WeChat's front ends after ~60 s).
const IDLE_MAX: Duration = Duration::from_secs(30);

/// Where a base URL's calls go: one pool of connections per origin.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Origin {
    tls: bool,
    host: Box<str>,
    port: u16,
}

/// A base URL taken apart once: its origin, the `Host` header it needs and
/// the path prefix (empty, or `/qyapi` without a trailing slash).
#[derive(Debug, Clone)]
pub struct Base {
    pub origin: Origin,
    pub host_header: HeaderValue,
    pub prefix: Box<str>,
}

impl Base {
    /// `http://host[:port][/prefix]` or `https://…`; anything else is refused.
    pub fn parse(base: &str) -> Result<Self, FetchError> {
        let bad = |m: &str| FetchError::Connect(format!("bad gateway base URL: {m}"));
        let uri: Uri = base.parse().map_err(|_| bad("not a URL"))?;
        let tls = match uri.scheme() {
            Some(s) if *s == Scheme::HTTPS => true,
            Some(s) if *s == Scheme::HTTP => false,
            _ => return Err(bad("not http or https")),
        };
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        if authority.as_str().contains('@') {
            return Err(bad("user info"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| bad("host"))?;
        let prefix = uri.path().trim_end_matches('/').into();
        Ok(Self {
            origin: Origin {
                tls,
                host: host.into(),
                port,
            },
            host_header,
            prefix,
        })
    }
}

/// A plain or TLS stream to a WeChat host.
enum Stream {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// The stream as the connection sees it. A host may answer before it has
/// read the whole request body (WeChat refusing a token on an upload) and
/// close: the writes that follow fail (`EPIPE`, `ECONNRESET`) while its
/// reply is already waiting to be read. hyper would give up on the write
/// error and lose the reply, so a failed write ends the writing here — the
/// rest of the body is discarded, reported as written — and the reply is
/// read as usual; `broken` keeps the connection from being used again.
struct Io {
    stream: Stream,
    broken: Arc<AtomicBool>,
}

impl Io {
    /// `Ok(n)` for a write the host will never read, once one failed.
    fn swallow(&self, result: std::io::Result<usize>, n: usize) -> std::io::Result<usize> {
        match result {
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::BrokenPipe | std::io::ErrorKind::ConnectionReset
                ) =>
            {
                self.broken.store(true, Ordering::Relaxed);
                Ok(n)
            }
            other => other,
        }
    }
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.broken.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(buf.len()));
        }
        let written = match &mut this.stream {
            Stream::Plain(s) => ready!(Pin::new(s).poll_write(cx, buf)),
            Stream::Tls(s) => ready!(Pin::new(s.as_mut()).poll_write(cx, buf)),
        };
        Poll::Ready(this.swallow(written, buf.len()))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        let total = bufs.iter().map(|b| b.len()).sum();
        if this.broken.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(total));
        }
        let written = match &mut this.stream {
            Stream::Plain(s) => ready!(Pin::new(s).poll_write_vectored(cx, bufs)),
            Stream::Tls(s) => ready!(Pin::new(s.as_mut()).poll_write_vectored(cx, bufs)),
        };
        Poll::Ready(this.swallow(written, total))
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Plain(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.broken.load(Ordering::Relaxed) {
            return Poll::Ready(Ok(()));
        }
        let flushed = match &mut this.stream {
            Stream::Plain(s) => ready!(Pin::new(s).poll_flush(cx)),
            Stream::Tls(s) => ready!(Pin::new(s.as_mut()).poll_flush(cx)),
        };
        Poll::Ready(this.swallow(flushed.map(|()| 0), 0).map(|_| ()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// What waits on an idle connection's socket.
enum Waiting {
    Nothing,
    /// The host closed it (or the socket failed).
    Closed,
    Bytes,
}

/// One HTTP/1.1 connection: the request side and the connection future,
/// which whoever holds it polls.
pub struct Upstream {
    /// The pool it goes back to.
    origin: Origin,
    send: http1::SendRequest<Body>,
    conn: http1::Connection<TokioIo<Io>, Body>,
    /// The connection future finished (closed or failed): never polled again.
    done: bool,
    /// A write failed (the host closed its side): never used again.
    broken: Arc<AtomicBool>,
    /// The same socket (a duplicate descriptor), to look for the host's
    /// close before reuse without waiting for the reactor to report it: a
    /// host that answered early closes right after its reply, and a call
    /// sent on that connection would fail.
    probe: std::net::TcpStream,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("done", &self.done)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// Moves the connection on (writes, reads) as far as it can now.
    pub(super) fn drive(&mut self, cx: &mut Context<'_>) {
        if !self.done && Pin::new(&mut self.conn).poll(cx).is_ready() {
            self.done = true;
        }
    }

    /// What the host sent since the connection went idle: one non-blocking
    /// peek at the socket.
    fn peek(&self) -> Waiting {
        match self.probe.peek(&mut [0_u8; 1]) {
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Waiting::Nothing,
            Err(_) | Ok(0) => Waiting::Closed,
            Ok(_) => Waiting::Bytes,
        }
    }

    /// Whether it may carry another request: open and idle.
    fn reusable(&mut self) -> bool {
        // A poll that wakes no one: lets the connection notice the end of
        // the exchange (or a close by the host) without arming this task.
        self.drive(&mut Context::from_waker(Waker::noop()));
        !self.done && !self.broken.load(Ordering::Relaxed) && self.send.is_ready()
    }

    /// Sends `req` and waits for the reply head, driving the connection.
    /// `Err((e, Some(req)))`: nothing was written, `req` may go elsewhere.
    pub async fn exchange(
        &mut self,
        req: Request<Body>,
    ) -> Result<Response<Incoming>, (hyper::Error, Option<Request<Body>>)> {
        let Self {
            send, conn, done, ..
        } = self;
        let mut reply = std::pin::pin!(send.try_send_request(req));
        std::future::poll_fn(|cx| {
            if !*done && Pin::new(&mut *conn).poll(cx).is_ready() {
                *done = true;
            }
            reply.as_mut().poll(cx)
        })
        .await
        .map_err(|mut e| {
            let req = e.take_message();
            (e.into_error(), req)
        })
    }
}

/// Idle connections by origin, and how to open new ones.
///
/// Kept per worker thread (`crate::workers::lane`): a connection's socket
/// belongs to the reactor of the runtime that opened it, and a call made
/// from another worker's runtime would be woken across threads (an
/// eventfd write and a context switch per call). Lane 0 is every thread
/// that is no worker (the main runtime, tests).
pub struct Pool {
    idle: Box<[Mutex<Idle>]>,
    max_idle: usize,
    connect_timeout: Duration,
    tls: tokio_rustls::TlsConnector,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

/// One lane's idle connections by origin: a list, as a fleet calls a
/// handful of hosts (comparing one origin costs less than hashing it).
type Idle = Vec<(Origin, Vec<(Box<Upstream>, Instant)>)>;

impl Pool {
    pub fn new(max_idle: usize, connect_timeout: Duration, tls: Arc<rustls::ClientConfig>) -> Self {
        Self {
            idle: (0..=crate::workers::MAX_WORKERS)
                .map(|_| Mutex::default())
                .collect(),
            max_idle,
            connect_timeout,
            tls: tokio_rustls::TlsConnector::from(tls),
        }
    }

    /// An idle connection to `origin` that is still open, if any.
    pub fn checkout(&self, origin: &Origin) -> Option<Box<Upstream>> {
        loop {
            let (mut up, since) = {
                let mut idle = self.lane();
                let (_, list) = idle.iter_mut().find(|(o, _)| o == origin)?;
                list.pop()?
            };
            if since.elapsed() >= IDLE_MAX {
                continue;
            }
            match up.peek() {
                // Nothing reached the socket since check-in, when it was
                // found reusable: nothing can have changed.
                Waiting::Nothing => return Some(up),
                Waiting::Closed => {}
                // Bytes on a TLS connection may be the TLS layer's own (a
                // session ticket), which the connection reads; over plain
                // HTTP they are unasked for.
                Waiting::Bytes if up.origin.tls && up.reusable() => return Some(up),
                Waiting::Bytes => {}
            }
        }
    }

    /// Puts `up` back idle if it can carry another request.
    pub(super) fn checkin(&self, mut up: Box<Upstream>) {
        if !up.reusable() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.lane();
        match idle.iter_mut().find(|(o, _)| *o == up.origin) {
            Some((_, list)) if list.len() >= self.max_idle => {}
            Some((_, list)) => list.push((up, now)),
            None => idle.push((up.origin.clone(), vec![(up, now)])),
        }
    }

    /// The calling thread's idle connections.
    fn lane(&self) -> std::sync::MutexGuard<'_, Idle> {
        let lane = crate::workers::lane() % self.idle.len();
        self.idle[lane].lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new connection to `origin` (TCP, then TLS for `https`), boxed: it
    /// moves between the pool, the call and the reply body, and the call's
    /// future need not hold the handshake's state.
    pub async fn connect(&self, origin: &Origin) -> Result<Box<Upstream>, FetchError> {
        Box::pin(self.open(origin)).await.map(Box::new)
    }

    async fn open(&self, origin: &Origin) -> Result<Upstream, FetchError> {
        let within = |what: &'static str| {
            move |_| FetchError::Connect(format!("{what} took longer than gateway.connect_timeout"))
        };
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((&*origin.host, origin.port)),
        )
        .await
        .map_err(within("connecting"))?
        .map_err(|e| FetchError::Connect(e.to_string()))?;
        let _ = tcp.set_nodelay(true);
        let failed = |e: std::io::Error| FetchError::Connect(e.to_string());
        let std = tcp.into_std().map_err(failed)?;
        let probe = std.try_clone().map_err(failed)?;
        let tcp = TcpStream::from_std(std).map_err(failed)?;
        let io = if origin.tls {
            let name = rustls::pki_types::ServerName::try_from(origin.host.to_string())
                .map_err(|e| FetchError::Connect(e.to_string()))?;
            let tls = tokio::time::timeout(self.connect_timeout, self.tls.connect(name, tcp))
                .await
                .map_err(within("the TLS handshake"))?
                .map_err(|e| FetchError::Connect(format!("TLS: {e}")))?;
            Stream::Tls(Box::new(tls))
        } else {
            Stream::Plain(tcp)
        };
        let broken = Arc::new(AtomicBool::new(false));
        let io = Io {
            stream: io,
            broken: broken.clone(),
        };
        let (send, conn) = http1::Builder::new()
            .handshake(TokioIo::new(io))
            .await
            .map_err(|e| FetchError::Connect(e.to_string()))?;
        crate::metrics::gateway_connect();
        Ok(Upstream {
            origin: origin.clone(),
            send,
            conn,
            done: false,
            broken,
            probe,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bases_are_taken_apart_once() {
        let b = Base::parse("https://api.weixin.qq.com").unwrap();
        assert_eq!(
            (b.origin.tls, &*b.origin.host, b.origin.port, &*b.prefix),
            (true, "api.weixin.qq.com", 443, "")
        );
        assert_eq!(b.host_header, "api.weixin.qq.com");
        let b = Base::parse("http://127.0.0.1:9/qyapi/").unwrap();
        assert_eq!(
            (b.origin.tls, &*b.origin.host, b.origin.port, &*b.prefix),
            (false, "127.0.0.1", 9, "/qyapi")
        );
        assert_eq!(b.host_header, "127.0.0.1:9");
        for bad in ["ftp://x", "api.weixin.qq.com", "http://u:p@x/"] {
            assert!(Base::parse(bad).is_err(), "{bad}");
        }
    }
}
