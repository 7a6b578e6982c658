//! Tests of `FaultProxy`: forwarding, and each fault as a client sees it
//! (blackhole = timeout, refuse = quick error, drop = closed connection).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::{AsyncCommands, AsyncConnectionConfig, RedisResult};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use wxtoken_testkit::{FaultProxy, ProxyMode, RedisServer, random_prefix, wait_until_async};

const TIMEOUT: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(5);
const POLL: Duration = Duration::from_millis(10);

async fn connect(url: &str, timeout: Duration) -> RedisResult<MultiplexedConnection> {
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(timeout))
        .set_response_timeout(Some(timeout));
    redis::Client::open(url)?
        .get_multiplexed_async_connection_with_config(&config)
        .await
}

/// Connect and PING on a fresh connection: the whole path a client takes.
async fn fresh_ping(url: &str, timeout: Duration) -> RedisResult<String> {
    let mut con = connect(url, timeout).await?;
    redis::cmd("PING").query_async(&mut con).await
}

async fn raw_ping_reply(stream: &mut TcpStream, wait: Duration) -> Option<String> {
    let mut buf = [0; 64];
    match tokio::time::timeout(wait, stream.read(&mut buf)).await {
        Ok(Ok(n)) if n > 0 => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
        _ => None,
    }
}

/// Read until EOF or error; `true` if the connection closed within `wait`.
async fn closes_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0; 64];
    let end = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(end, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
}

async fn spawn_pair() -> (RedisServer, FaultProxy) {
    let redis = RedisServer::spawn();
    let proxy = FaultProxy::spawn(redis.addr()).await;
    (redis, proxy)
}

#[tokio::test]
async fn pass_forwards_redis_commands_and_counts_connections() {
    let (redis, proxy) = spawn_pair().await;
    assert_eq!(proxy.mode(), ProxyMode::Pass);
    assert_eq!(proxy.upstream(), redis.addr());
    assert_eq!(proxy.url_for_redis(), format!("redis://{}", proxy.addr()));
    assert_ne!(proxy.addr(), redis.addr());

    let mut con = connect(&proxy.url_for_redis(), TIMEOUT).await.unwrap();
    let key = format!("{}:k", random_prefix());
    let () = con.set(&key, "through the proxy").await.unwrap();
    let value: String = con.get(&key).await.unwrap();
    assert_eq!(value, "through the proxy");
    assert_eq!(proxy.connections(), 1);

    // Written through the proxy, visible directly.
    let mut direct = connect(&redis.url(), TIMEOUT).await.unwrap();
    let value: String = direct.get(&key).await.unwrap();
    assert_eq!(value, "through the proxy");

    drop(con);
    assert!(
        wait_until_async(PATIENCE, POLL, || async { proxy.connections() == 0 }).await,
        "a closed client connection is still counted: {}",
        proxy.connections()
    );
}

#[tokio::test]
async fn blackhole_gives_timeouts_not_errors_and_pass_recovers() {
    let (_redis, proxy) = spawn_pair().await;
    let url = proxy.url_for_redis();
    let mut existing = connect(&url, TIMEOUT).await.unwrap();
    let _: String = redis::cmd("PING").query_async(&mut existing).await.unwrap();

    proxy.set_mode(ProxyMode::Blackhole);
    assert_eq!(proxy.mode(), ProxyMode::Blackhole);

    let start = Instant::now();
    let err = redis::cmd("PING")
        .query_async::<String>(&mut existing)
        .await
        .unwrap_err();
    assert!(
        err.is_timeout(),
        "existing connection: expected a timeout, got {err:?}"
    );
    assert!(start.elapsed() >= TIMEOUT - Duration::from_millis(50));

    let err = fresh_ping(&url, TIMEOUT).await.unwrap_err();
    assert!(
        err.is_timeout(),
        "new connection: expected a timeout, got {err:?}"
    );
    assert!(!err.is_connection_refusal(), "{err:?}");

    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(fresh_ping(&url, TIMEOUT).await.unwrap(), "PONG");
}

#[tokio::test]
async fn blackholed_bytes_are_held_and_delivered_after_pass() {
    let (_redis, proxy) = spawn_pair().await;
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(
        raw_ping_reply(&mut stream, PATIENCE).await.as_deref(),
        Some("+PONG\r\n")
    );

    proxy.set_mode(ProxyMode::Blackhole);
    stream.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(
        raw_ping_reply(&mut stream, TIMEOUT).await,
        None,
        "blackhole forwarded"
    );
    assert_eq!(proxy.connections(), 1, "a blackholed connection stays open");

    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(
        raw_ping_reply(&mut stream, PATIENCE).await.as_deref(),
        Some("+PONG\r\n"),
        "the held PING was not delivered after Pass"
    );
}

#[tokio::test]
async fn refuse_closes_existing_connections_and_fails_new_ones_fast() {
    let (_redis, proxy) = spawn_pair().await;
    let url = proxy.url_for_redis();
    let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
    stream.write_all(b"PING\r\n").await.unwrap();
    assert_eq!(
        raw_ping_reply(&mut stream, PATIENCE).await.as_deref(),
        Some("+PONG\r\n")
    );

    proxy.set_mode(ProxyMode::Refuse);
    assert_eq!(proxy.connections(), 0);
    assert!(
        closes_within(&mut stream, Duration::from_secs(1)).await,
        "an open connection survived Refuse"
    );

    let start = Instant::now();
    let err = fresh_ping(&url, Duration::from_secs(3)).await.unwrap_err();
    assert!(
        !err.is_timeout(),
        "Refuse must fail fast, got a timeout: {err:?}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "Refuse took {:?} to fail",
        start.elapsed()
    );
    assert_eq!(proxy.connections(), 0);

    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(fresh_ping(&url, TIMEOUT).await.unwrap(), "PONG");
}

#[tokio::test]
async fn drop_connections_closes_every_open_connection_now() {
    let (_redis, proxy) = spawn_pair().await;
    let mut streams = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(proxy.addr()).await.unwrap();
        stream.write_all(b"PING\r\n").await.unwrap();
        assert!(raw_ping_reply(&mut stream, PATIENCE).await.is_some());
        streams.push(stream);
    }
    // One more, parked in a blackhole (its task reads nothing).
    proxy.set_mode(ProxyMode::Blackhole);
    streams.push(TcpStream::connect(proxy.addr()).await.unwrap());
    assert!(wait_until_async(PATIENCE, POLL, || async { proxy.connections() == 3 }).await);

    proxy.drop_connections();
    assert_eq!(proxy.connections(), 0);
    for stream in &mut streams {
        assert!(closes_within(stream, Duration::from_secs(1)).await);
    }

    proxy.set_mode(ProxyMode::Pass);
    assert_eq!(
        fresh_ping(&proxy.url_for_redis(), TIMEOUT).await.unwrap(),
        "PONG"
    );
}

#[tokio::test]
async fn dropping_the_proxy_stops_listening_and_closes_connections() {
    let (_redis, proxy) = spawn_pair().await;
    let addr: SocketAddr = proxy.addr();
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"PING\r\n").await.unwrap();
    assert!(raw_ping_reply(&mut stream, PATIENCE).await.is_some());

    drop(proxy);

    assert!(closes_within(&mut stream, Duration::from_secs(1)).await);
    assert!(
        wait_until_async(PATIENCE, POLL, || async {
            TcpStream::connect(addr).await.is_err()
        })
        .await,
        "the proxy still accepts connections after drop"
    );
}
