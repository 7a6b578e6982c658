//! Connections to Redis in any topology — standalone, Sentinel, Cluster,
//! with or without TLS — behind one small pool ([`RedisPool`]) that both the
//! client library and the coordinator use.
//!
//! Every connection has explicit connect and response timeouts. Connections
//! are multiplexed, so the pool hands the same few out concurrently; it does
//! not ping on checkout (that would double every round trip) but drops a
//! connection once a request on it failed at the transport level, so the
//! next checkout reconnects — re-resolving the master through Sentinel, or
//! letting the cluster client rediscover slots. Pub/sub needs a plain
//! connection to one node: [`ClientSource`] provides it for every topology.
//! This module knows nothing about keys or tokens.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, Pool, RecycleResult};
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::cluster::{ClusterClient, ClusterClientBuilder};
use redis::cluster_async::ClusterConnection;
use redis::sentinel::SentinelClient;
use redis::{Cmd, Pipeline, RedisFuture, Value};

mod target;

pub use target::{RedisTarget, Topology, split_urls};

/// One pooled connection: a multiplexed connection to one node, or a cluster
/// connection that routes by slot.
#[allow(missing_debug_implementations)]
pub enum RedisConn {
    Single(MultiplexedConnection),
    Cluster(ClusterConnection),
}

/// A connection plus a flag set when a request on it failed at the transport
/// level, so the pool drops it instead of handing it out again.
#[allow(missing_debug_implementations)]
pub struct TrackedConn {
    conn: RedisConn,
    broken: AtomicBool,
}

fn transport_failure(e: &redis::RedisError) -> bool {
    e.is_io_error()
        || e.is_connection_dropped()
        || e.is_timeout()
        || e.is_connection_refusal()
        || e.is_unrecoverable_error()
}

impl ConnectionLike for TrackedConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        Box::pin(async move {
            let r = match &mut self.conn {
                RedisConn::Single(c) => c.req_packed_command(cmd).await,
                RedisConn::Cluster(c) => c.req_packed_command(cmd).await,
            };
            if let Err(e) = &r
                && transport_failure(e)
            {
                self.broken.store(true, Ordering::Release);
            }
            r
        })
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        Box::pin(async move {
            let r = match &mut self.conn {
                RedisConn::Single(c) => c.req_packed_commands(cmd, offset, count).await,
                RedisConn::Cluster(c) => c.req_packed_commands(cmd, offset, count).await,
            };
            if let Err(e) = &r
                && transport_failure(e)
            {
                self.broken.store(true, Ordering::Release);
            }
            r
        })
    }

    fn get_db(&self) -> i64 {
        match &self.conn {
            RedisConn::Single(c) => c.get_db(),
            RedisConn::Cluster(c) => c.get_db(),
        }
    }
}

/// Creates connections for the pool, on the runtime that built it.
///
/// A multiplexed connection lives in a task spawned where it is created.
/// A pool built on one runtime may be used from others (the coordinator's
/// per-core HTTP workers): a connection created there would die with that
/// runtime while the rest of the process still holds it, so creation runs
/// on the pool's `home` runtime.
pub struct TopologyManager {
    target: RedisTarget,
    kind: Arc<Kind>,
    home: Option<tokio::runtime::Handle>,
}

enum Kind {
    Single(redis::Client),
    /// `SentinelClient` needs `&mut` to resolve; connections are created
    /// rarely, so a tokio mutex (held across the resolution) is fine.
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

impl fmt::Debug for TopologyManager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TopologyManager")
            .field("target", &self.target)
            .finish()
    }
}

impl TopologyManager {
    pub fn new(target: RedisTarget) -> redis::RedisResult<Self> {
        let first = target.urls.first().cloned().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Client, "no redis url given"))
        })?;
        let kind = match &target.topology {
            Topology::Standalone => Kind::Single(target.standalone_client(&first)?),
            Topology::Sentinel { master } => {
                Kind::Sentinel(tokio::sync::Mutex::new(target.sentinel_client(master)?))
            }
            Topology::Cluster => {
                let mut builder = ClusterClientBuilder::new(target.urls.clone())
                    .connection_timeout(target.connect_timeout)
                    .response_timeout(target.response_timeout);
                if let Some(certs) = target.certs()? {
                    builder = builder.certs(certs);
                }
                Kind::Cluster(builder.build()?)
            }
        };
        Ok(Self {
            target,
            kind: Arc::new(kind),
            home: tokio::runtime::Handle::try_current().ok(),
        })
    }
}

impl Kind {
    async fn connect(&self, target: &RedisTarget) -> Result<RedisConn, redis::RedisError> {
        let config = target.conn_config();
        Ok(match self {
            Kind::Single(client) => RedisConn::Single(
                client
                    .get_multiplexed_async_connection_with_config(&config)
                    .await?,
            ),
            Kind::Sentinel(client) => {
                let resolved = {
                    let mut sentinel = client.lock().await;
                    tokio::time::timeout(target.connect_timeout * 2, sentinel.async_get_client())
                        .await
                        .map_err(|_| {
                            redis::RedisError::from((
                                redis::ErrorKind::Io,
                                "sentinel did not answer in time",
                            ))
                        })??
                };
                RedisConn::Single(
                    resolved
                        .get_multiplexed_async_connection_with_config(&config)
                        .await?,
                )
            }
            Kind::Cluster(client) => RedisConn::Cluster(
                tokio::time::timeout(target.connect_timeout * 2, client.get_async_connection())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "cluster did not answer in time",
                        ))
                    })??,
            ),
        })
    }
}

impl managed::Manager for TopologyManager {
    type Type = TrackedConn;
    type Error = redis::RedisError;

    async fn create(&self) -> Result<TrackedConn, redis::RedisError> {
        let (kind, target) = (self.kind.clone(), self.target.clone());
        let conn = match &self.home {
            Some(home) => match home.spawn(async move { kind.connect(&target).await }).await {
                Ok(made) => made?,
                // The home runtime is gone: this one will do.
                Err(_) => self.kind.connect(&self.target).await?,
            },
            None => self.kind.connect(&self.target).await?,
        };
        Ok(TrackedConn {
            conn,
            broken: AtomicBool::new(false),
        })
    }

    async fn recycle(
        &self,
        conn: &mut TrackedConn,
        _: &Metrics,
    ) -> RecycleResult<redis::RedisError> {
        if conn.broken.load(Ordering::Acquire) {
            Err(managed::RecycleError::message("connection failed earlier"))
        } else {
            Ok(())
        }
    }
}

/// A pooled connection; usable wherever redis-rs wants a `ConnectionLike`.
#[allow(missing_debug_implementations)]
pub struct PooledConn(Object<TopologyManager>);

impl ConnectionLike for PooledConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        self.0.req_packed_command(cmd)
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        self.0.req_packed_commands(cmd, offset, count)
    }
    fn get_db(&self) -> i64 {
        self.0.get_db()
    }
}

/// Why no connection could be had.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("redis pool: {0}")]
    Pool(String),
}

/// A small pool of multiplexed connections to any topology.
#[derive(Clone)]
pub struct RedisPool {
    pool: Pool<TopologyManager>,
    source: ClientSource,
}

impl fmt::Debug for RedisPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisPool")
            .field("status", &self.pool.status())
            .finish()
    }
}

impl RedisPool {
    /// Builds the pool; connects lazily. `wait` bounds a checkout when all
    /// connections are in use or being created.
    pub fn new(target: RedisTarget, size: usize, wait: Duration) -> Result<Self, PoolError> {
        let source = ClientSource::new(&target)?;
        let create = target.connect_timeout * 2;
        let manager = TopologyManager::new(target)?;
        let pool = Pool::builder(manager)
            .max_size(size.max(1))
            .wait_timeout(Some(wait))
            .create_timeout(Some(create))
            .recycle_timeout(Some(wait))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| PoolError::Pool(e.to_string()))?;
        Ok(Self { pool, source })
    }

    pub async fn get(&self) -> Result<PooledConn, PoolError> {
        match self.pool.get().await {
            Ok(conn) => Ok(PooledConn(conn)),
            Err(managed::PoolError::Backend(e)) => Err(PoolError::Redis(e)),
            Err(e) => Err(PoolError::Pool(e.to_string())),
        }
    }

    /// Where pub/sub connections come from.
    pub fn client_source(&self) -> ClientSource {
        self.source.clone()
    }
}

/// Plain single-node clients for pub/sub. In a cluster, a regular PUBLISH
/// reaches every node, so any node will do; with Sentinel, the master.
#[derive(Clone)]
pub struct ClientSource(Arc<SourceKind>);

enum SourceKind {
    Fixed(Vec<redis::Client>),
    Sentinel(Box<tokio::sync::Mutex<SentinelClient>>, Duration),
}

impl fmt::Debug for ClientSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClientSource")
    }
}

impl ClientSource {
    fn new(target: &RedisTarget) -> redis::RedisResult<Self> {
        let kind = match &target.topology {
            Topology::Sentinel { master } => SourceKind::Sentinel(
                Box::new(tokio::sync::Mutex::new(target.sentinel_client(master)?)),
                target.connect_timeout * 2,
            ),
            _ => SourceKind::Fixed(
                target
                    .urls
                    .iter()
                    .map(|u| target.standalone_client(u))
                    .collect::<redis::RedisResult<_>>()?,
            ),
        };
        Ok(Self(Arc::new(kind)))
    }

    /// A fixed client (tests and simple setups).
    pub fn fixed(client: redis::Client) -> Self {
        Self(Arc::new(SourceKind::Fixed(vec![client])))
    }

    /// A client for the `attempt`-th connection try: rotates through cluster
    /// nodes, re-asks the Sentinels for the master.
    pub async fn client(&self, attempt: u64) -> redis::RedisResult<redis::Client> {
        match &*self.0 {
            SourceKind::Fixed(clients) => {
                let i = usize::try_from(attempt).unwrap_or(0) % clients.len().max(1);
                clients.get(i).cloned().ok_or_else(|| {
                    redis::RedisError::from((redis::ErrorKind::Client, "no redis url given"))
                })
            }
            SourceKind::Sentinel(sentinel, timeout) => {
                let mut s = sentinel.lock().await;
                tokio::time::timeout(*timeout, s.async_get_client())
                    .await
                    .map_err(|_| {
                        redis::RedisError::from((
                            redis::ErrorKind::Io,
                            "sentinel did not answer in time",
                        ))
                    })?
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pool built on one runtime and used from another (the coordinator's
    /// per-core HTTP workers): the connection the other runtime needed is
    /// created on the pool's own, and still works once the other is gone.
    #[test]
    fn connections_outlive_the_runtime_that_asked_for_them() {
        let server = wxtoken_testkit::RedisServer::spawn();
        let home = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let target = RedisTarget::standalone(&server.url());
        let pool = home
            .block_on(async { RedisPool::new(target, 1, Duration::from_secs(2)) })
            .unwrap();
        let other = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        other.block_on(async {
            let mut c = pool.get().await.unwrap();
            redis::cmd("SET")
                .arg("k")
                .arg("v")
                .query_async::<()>(&mut c)
                .await
                .unwrap();
        });
        drop(other);
        let got: String = home.block_on(async {
            let mut c = pool.get().await.unwrap();
            redis::cmd("GET")
                .arg("k")
                .query_async(&mut c)
                .await
                .unwrap()
        });
        assert_eq!(got, "v");
    }
}
