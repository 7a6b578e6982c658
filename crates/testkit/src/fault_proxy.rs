//! A TCP proxy with a fault switch, put between a process and Redis (or the
//! WeChat simulator) to fake network failures that `tc netem`, iptables and
//! toxiproxy would give on another machine: a partition (blackhole), resets,
//! and dropping every open connection at once.
//!
//! It owns its listener, its connections and the mode switch. It speaks no
//! protocol (bytes in, bytes out), does not delay or corrupt traffic, and
//! does not stop or freeze the upstream: use
//! [`RedisServer`](crate::RedisServer) for process faults.

use std::collections::HashMap;
use std::io;
use std::net::{Ipv4Addr, Shutdown, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

const BUFFER_BYTES: usize = 16 * 1024;

/// What the proxy does with traffic; switch with [`FaultProxy::set_mode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyMode {
    /// Forward both ways (the default).
    Pass,
    /// A network partition: connections are accepted and kept open, but no
    /// byte moves either way, on new and existing connections alike, and no
    /// upstream connection is opened for new ones. Clients see timeouts,
    /// never errors. Bytes sent meanwhile wait in the socket buffers; on
    /// the switch back to [`Pass`](Self::Pass) they are delivered late and in
    /// order, like a healed partition, and the connections work again.
    Blackhole,
    /// Every open connection is closed at once, and each new one is reset
    /// (RST) right after it is accepted: clients see a quick connection
    /// error (reset or EOF), never a timeout. For a genuine "connection
    /// refused", stop the upstream `RedisServer` instead.
    Refuse,
}

/// A TCP proxy on `127.0.0.1` to a fixed upstream address, with a fault
/// switch. Dropping it closes the listener and every connection.
///
/// Needs a tokio runtime: created with the async [`spawn`](Self::spawn);
/// everything else is sync and callable from any thread.
#[derive(Debug)]
pub struct FaultProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    shared: Arc<Shared>,
    /// The accept loop; aborted on drop, which closes the listener.
    accept: JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    /// The mode, as a `watch` so every connection wakes the moment it
    /// changes (a blackhole must stop traffic on open connections at once).
    mode: watch::Sender<ProxyMode>,
    /// Open connections by id. Holds what is needed to close one from
    /// outside its task, synchronously, so `connections()` and
    /// `drop_connections()` are exact the moment they return.
    open: Mutex<Open>,
}

#[derive(Debug, Default)]
struct Open {
    next_id: u64,
    by_id: HashMap<u64, OpenConnection>,
}

#[derive(Debug)]
struct OpenConnection {
    /// A second handle on the client socket: `shutdown` through it sends the
    /// client a FIN now, even while the task is parked in a blackhole.
    client: std::net::TcpStream,
    task: AbortHandle,
}

impl FaultProxy {
    /// Binds `127.0.0.1:0` and forwards each accepted connection to
    /// `upstream`, in [`ProxyMode::Pass`].
    ///
    /// # Panics
    ///
    /// If the loopback interface cannot be bound.
    pub async fn spawn(upstream: SocketAddr) -> FaultProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .unwrap_or_else(|e| panic!("FaultProxy cannot bind 127.0.0.1:0: {e}"));
        let addr = listener
            .local_addr()
            .unwrap_or_else(|e| panic!("FaultProxy cannot read its address: {e}"));
        let shared = Arc::new(Shared {
            mode: watch::Sender::new(ProxyMode::Pass),
            open: Mutex::default(),
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, Arc::clone(&shared)));
        tracing::debug!(%addr, %upstream, "fault proxy listening");
        FaultProxy {
            addr,
            upstream,
            shared,
            accept,
        }
    }

    /// Where clients connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Where connections are forwarded.
    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// `redis://127.0.0.1:PORT` for the proxy's own address.
    pub fn url_for_redis(&self) -> String {
        format!("redis://{}", self.addr)
    }

    pub fn mode(&self) -> ProxyMode {
        *self.shared.mode.borrow()
    }

    /// Switches mode; takes effect on open connections at once. Switching to
    /// [`ProxyMode::Refuse`] closes every open connection before returning.
    pub fn set_mode(&self, mode: ProxyMode) {
        let old = self.shared.mode.send_replace(mode);
        tracing::debug!(addr = %self.addr, ?old, new = ?mode, "fault proxy mode");
        if mode == ProxyMode::Refuse {
            self.drop_connections();
        }
    }

    /// Connections open now (accepted and not yet closed by either side),
    /// including blackholed ones.
    pub fn connections(&self) -> usize {
        self.shared.lock_open().by_id.len()
    }

    /// Closes every open connection now: clients get a FIN before this
    /// returns, upstream sockets close as their tasks end. New connections
    /// are accepted as the mode says.
    pub fn drop_connections(&self) {
        let dropped: Vec<OpenConnection> = self
            .shared
            .lock_open()
            .by_id
            .drain()
            .map(|(_, connection)| connection)
            .collect();
        for connection in &dropped {
            // Fails only if the client already closed; nothing to do then.
            let _ = connection.client.shutdown(Shutdown::Both);
            connection.task.abort();
        }
        if !dropped.is_empty() {
            tracing::debug!(addr = %self.addr, count = dropped.len(), "fault proxy dropped connections");
        }
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.drop_connections();
    }
}

impl Shared {
    fn lock_open(&self) -> MutexGuard<'_, Open> {
        // Only plain map operations happen under this lock; a poisoned one
        // is still consistent.
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, shared: Arc<Shared>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _peer)) => client,
            Err(e) => {
                // E.g. out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "fault proxy accept failed");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        if *shared.mode.borrow() == ProxyMode::Refuse {
            reset(client);
            continue;
        }
        if let Err(e) = register(client, upstream, &shared) {
            tracing::warn!(error = %e, "fault proxy could not take a connection");
        }
    }
}

/// Records the connection and starts its task.
fn register(client: TcpStream, upstream: SocketAddr, shared: &Arc<Shared>) -> io::Result<()> {
    let client = client.into_std()?;
    let handle = client.try_clone()?;
    let client = TcpStream::from_std(client)?;
    let mut open = shared.lock_open();
    let id = open.next_id;
    open.next_id += 1;
    // Spawned under the lock, so the task cannot deregister before it is
    // registered.
    let task = tokio::spawn(serve(client, upstream, Arc::clone(shared), id)).abort_handle();
    open.by_id.insert(
        id,
        OpenConnection {
            client: handle,
            task,
        },
    );
    Ok(())
}

/// Removes a connection from the open set when its task ends, however it
/// ends (finished, failed, or aborted).
struct Deregister {
    shared: Arc<Shared>,
    id: u64,
}

impl Drop for Deregister {
    fn drop(&mut self) {
        self.shared.lock_open().by_id.remove(&self.id);
    }
}

async fn serve(client: TcpStream, upstream: SocketAddr, shared: Arc<Shared>, id: u64) {
    let _deregister = Deregister {
        shared: Arc::clone(&shared),
        id,
    };
    let mut mode = shared.mode.subscribe();
    // A blackholed connection must not even reach upstream: connect only
    // once the mode allows traffic.
    if wait_for_pass(&mut mode).await.is_err() {
        reset(client);
        return;
    }
    let upstream = match TcpStream::connect(upstream).await {
        Ok(stream) => stream,
        Err(e) => {
            tracing::debug!(%upstream, error = %e, "fault proxy upstream connect failed");
            reset(client);
            return;
        }
    };
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    let (client_read, client_write) = client.into_split();
    let (upstream_read, upstream_write) = upstream.into_split();
    let outcome = tokio::try_join!(
        pump(client_read, upstream_write, mode.clone()),
        pump(upstream_read, client_write, mode),
    );
    if let Err(e) = outcome {
        tracing::trace!(error = %e, "fault proxy connection ended");
    }
}

/// Copies `from` → `to` while the mode is `Pass`; parks (reading nothing)
/// while it is `Blackhole`; fails on `Refuse`. Ends on EOF after passing the
/// half-close on.
async fn pump(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    mut mode: watch::Receiver<ProxyMode>,
) -> io::Result<()> {
    let mut buf = vec![0; BUFFER_BYTES];
    loop {
        wait_for_pass(&mut mode).await?;
        let n = tokio::select! {
            read = from.read(&mut buf) => read?,
            // Re-check the mode; `read` is cancel-safe, nothing is lost.
            changed = mode.changed() => {
                changed.map_err(|_| closed())?;
                continue;
            }
        };
        if n == 0 {
            return to.shutdown().await;
        }
        // Bytes read just before a switch to Blackhole wait for Pass too.
        wait_for_pass(&mut mode).await?;
        to.write_all(&buf[..n]).await?;
    }
}

/// Returns once the mode is `Pass`; fails if it is (or becomes) `Refuse`.
async fn wait_for_pass(mode: &mut watch::Receiver<ProxyMode>) -> io::Result<()> {
    let now = *mode
        .wait_for(|m| *m != ProxyMode::Blackhole)
        .await
        .map_err(|_| closed())?;
    match now {
        ProxyMode::Refuse => Err(io::Error::new(
            io::ErrorKind::ConnectionAborted,
            "fault proxy refusing",
        )),
        _ => Ok(()),
    }
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "fault proxy closed")
}

/// Closes with RST instead of FIN, so the peer sees "connection reset".
fn reset(stream: TcpStream) {
    // `set_linger` is deprecated because a non-zero linger blocks on drop;
    // zero linger never blocks (and `set_zero_linger` needs tokio 1.5x).
    #[allow(deprecated)]
    let _ = stream.set_linger(Some(Duration::ZERO));
    drop(stream);
}
