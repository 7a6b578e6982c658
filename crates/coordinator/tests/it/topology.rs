//! Redis topologies (issue 6): the single-flight scenario through TLS with
//! a CA generated here, on a Sentinel deployment with a failover in the
//! middle, and on a 3-master Redis Cluster.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use wxtoken_testkit::{RedisServer, free_port, wait_until};

use crate::fleet::{Fleet, RedisSetup, SECRET, Settings, watch_reads};
use crate::pki::{Ca, write};

/// A CA and a server certificate for 127.0.0.1 / localhost, as PEM files in `dir`.
fn certificates(dir: &Path) -> (String, String, String) {
    let ca = Ca::new("wxtoken test CA");
    let server = ca.server();
    let path = |name: &str, pem: &str| write(dir, name, pem).display().to_string();
    (
        path("ca.pem", &ca.pem),
        path("server.pem", &server.cert),
        path("server.key", &server.key),
    )
}

/// The single-flight check shared by every topology: `n` replicas, a cold
/// start with one fetch, then `lifetimes` more with one fetch each and
/// readers that never see a bad token.
async fn single_flight(fleet: &mut Fleet, n: usize, lifetimes: u32) {
    for _ in 0..n {
        fleet.add_replica(SECRET).await;
    }
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.app().fetch_calls, 1, "cold start of {n} replicas");
    let cycle = fleet.settings.cycle();
    let (reads, app) = tokio::join!(
        watch_reads(fleet, cycle * lifetimes, Duration::from_millis(50)),
        fleet.wait_sim(cycle * (lifetimes + 3), "lifetimes", |a| a.fetch_ok
            > u64::from(lifetimes))
    );
    assert_eq!(app.fetch_calls, app.fetch_ok, "no wasted calls");
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!(
        (reads.1, reads.2),
        (0, 0),
        "reads missing / rejected: {reads:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_through_tls_with_a_private_ca() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let tls_port = free_port();
    let tls_redis = RedisServer::builder()
        .args(["--tls-port", &tls_port.to_string()])
        .args([
            "--tls-cert-file",
            &cert,
            "--tls-key-file",
            &key,
            "--tls-ca-cert-file",
            &ca,
        ])
        .args(["--tls-auth-clients", "no"])
        .spawn();
    let mut fleet = Fleet::new(Settings::default()).await;
    fleet.use_redis(RedisSetup {
        url: format!("rediss://127.0.0.1:{tls_port}"),
        mode: "standalone",
        sentinel_master: None,
        ca_file: Some(ca.clone()),
    });
    single_flight(&mut fleet, 4, 2).await;
    // The token really is in the TLS server, not in the fleet's plain one.
    let mut plain = tls_redis.client().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("*access_token")
        .query(&mut plain)
        .unwrap();
    assert_eq!(keys.len(), 1, "{keys:?}");
    // Without the CA the server's certificate is refused.
    let mut untrusted = Fleet::new(Settings::default()).await;
    let url = format!("rediss://127.0.0.1:{tls_port}");
    let config = untrusted.config_with(SECRET, &url);
    let store = wxtoken_coordinator::replica::build_store(&config).unwrap();
    assert!(
        store.ping().await.is_err(),
        "a certificate from an unknown CA was accepted"
    );
    untrusted.stop_all().await;
}

/// A `redis-server --sentinel` process, killed on drop.
struct Sentinel(Child, u16);

impl Sentinel {
    fn spawn(dir: &Path, master_port: u16) -> Self {
        let port = free_port();
        let conf = dir.join(format!("sentinel-{port}.conf"));
        std::fs::write(
            &conf,
            format!(
                "port {port}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {master_port} 1\n\
                 sentinel down-after-milliseconds mymaster 1000\nsentinel failover-timeout mymaster 5000\n"
            ),
        )
        .unwrap();
        let child = Command::new("redis-server")
            .arg(&conf)
            .arg("--sentinel")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server --sentinel");
        Self(child, port)
    }

    fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> redis::RedisResult<T> {
        let client = redis::Client::open(format!("redis://127.0.0.1:{}", self.1))?;
        let mut c = client.get_connection_with_timeout(Duration::from_secs(1))?;
        redis::cmd(args[0]).arg(&args[1..]).query(&mut c)
    }
}

impl Drop for Sentinel {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_on_sentinel_survives_a_failover() {
    let dir = tempfile::tempdir().unwrap();
    let master = RedisServer::spawn();
    let replica = RedisServer::builder()
        .args(["--replicaof", "127.0.0.1", &master.port().to_string()])
        .spawn();
    let sentinel = Sentinel::spawn(dir.path(), master.port());
    let ready = wait_until(Duration::from_secs(15), Duration::from_millis(100), || {
        sentinel
            .query::<Vec<redis::Value>>(&["SENTINEL", "replicas", "mymaster"])
            .is_ok_and(|r| !r.is_empty())
    });
    assert!(ready, "sentinel never saw the replica");
    let mut fleet = Fleet::new(Settings::default()).await;
    fleet.use_redis(RedisSetup {
        url: format!("redis://127.0.0.1:{}", sentinel.1),
        mode: "sentinel",
        sentinel_master: Some("mymaster".into()),
        ca_file: None,
    });
    single_flight(&mut fleet, 8, 1).await;
    let before = fleet.app().fetch_calls;
    let generation = fleet.token().await.expect("token").generation;

    // Fail over to the replica in the middle of the run.
    let _: String = sentinel
        .query(&["SENTINEL", "failover", "mymaster"])
        .unwrap();
    let moved = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        sentinel
            .query::<Vec<String>>(&["SENTINEL", "get-master-addr-by-name", "mymaster"])
            .is_ok_and(|a| a.get(1).is_some_and(|p| p == &replica.port().to_string()))
    });
    assert!(moved, "failover did not happen");
    let failed_over = Instant::now();
    let cycle = fleet.settings.cycle();
    let (reads, _) = tokio::join!(
        watch_reads(&fleet, cycle * 3, Duration::from_millis(50)),
        fleet.wait_generation(generation + 2, cycle * 5)
    );
    let app = fleet.app();
    let lifetimes = (failed_over.elapsed().as_secs_f64() / cycle.as_secs_f64()).ceil() as u64;
    eprintln!(
        "sentinel failover: {} fetches after it over {lifetimes} cycles, reads {reads:?}",
        app.fetch_calls - before
    );
    assert!(
        app.fetch_calls - before <= lifetimes + 1,
        "at most one extra fetch"
    );
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!(reads.2, 0, "no invalid token handed out");
    // The new master holds the token now.
    let mut c = replica.client().get_connection().unwrap();
    let role: Vec<redis::Value> = redis::cmd("ROLE").query(&mut c).unwrap();
    assert_eq!(
        redis::from_redis_value::<String>(role[0].clone()).unwrap(),
        "master"
    );
}

/// Ports below 55535 (the cluster bus is port + 10000).
fn cluster_port() -> u16 {
    loop {
        let p = 20_000 + (rand::random::<u16>() % 30_000);
        if std::net::TcpListener::bind(("127.0.0.1", p)).is_ok()
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn single_flight_on_a_three_master_cluster() {
    let nodes: Vec<RedisServer> = (0..3)
        .map(|_| {
            let port = cluster_port();
            RedisServer::builder()
                .port(port)
                .args([
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    &format!("nodes-{port}.conf"),
                ])
                .args(["--cluster-node-timeout", "2000"])
                .spawn()
        })
        .collect();
    let addrs: Vec<String> = nodes
        .iter()
        .map(|n| format!("127.0.0.1:{}", n.port()))
        .collect();
    let status = Command::new("redis-cli")
        .args(["--cluster", "create"])
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .stdout(Stdio::null())
        .status()
        .expect("redis-cli");
    assert!(status.success(), "cluster create failed");
    let ok = wait_until(Duration::from_secs(20), Duration::from_millis(100), || {
        nodes.iter().all(|n| {
            n.client()
                .get_connection()
                .and_then(|mut c| redis::cmd("CLUSTER").arg("INFO").query::<String>(&mut c))
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    });
    assert!(ok, "cluster never became ok");
    let mut fleet = Fleet::new(Settings::default()).await;
    fleet.use_redis(RedisSetup {
        url: addrs
            .iter()
            .map(|a| format!("redis://{a}"))
            .collect::<Vec<_>>()
            .join(","),
        mode: "cluster",
        sentinel_master: None,
        ca_file: None,
    });
    single_flight(&mut fleet, 8, 2).await;
    // All of the credential's keys share one slot (hash tag), so exactly one
    // node holds them (the fleet marker `P:fleet` lives wherever its slot is).
    let holders = nodes
        .iter()
        .filter(|n| {
            let mut c = n.client().get_connection().unwrap();
            let keys: Vec<String> = redis::cmd("KEYS")
                .arg(format!("{}:{{{}}}:*", fleet.prefix, fleet.id()))
                .query(&mut c)
                .unwrap();
            !keys.is_empty()
        })
        .count();
    assert_eq!(holders, 1);
}
