//! Follow mode's fleets for tests and the bench (SPEC §12): a primary
//! [`Fleet`] with a key for its followers, and [`Follower`] fleets on Redis
//! servers of their own.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use wxtoken_client::keyspace::{self, StoredToken};
use wxtoken_common::{CredentialId, Keys};
use wxtoken_testkit::RedisServer;

use crate::{Fleet, ID, ReplicaProcess, SECRET, wxtoken_bin};

/// The key followers use at the primary: `token:read` + `token:invalidate`
/// on `shop` only.
pub const FOLLOW_KEY: &str = "e2e-follow-key-Nw47Tq";
pub const ALL_KEYS: &str = "e2e-api-key-Hq27Zr,e2e-follow-key-Nw47Tq";

/// The primary's config: the fleet's, plus the followers' scoped key.
pub fn primary(fleet: &mut Fleet, replicas: usize) {
    let text = format!(
        "{}\n[[http.keys]]\nname = \"staging\"\nkey = {{ env = \"E2E_FOLLOW_KEY\" }}\nids = [\"{ID}\"]\nallow = [\"token:read\", \"token:invalidate\"]\n",
        fleet.config_text()
    );
    std::fs::write(fleet.dir.path().join("wxtoken.toml"), text).expect("config");
    for _ in 0..replicas {
        fleet.spawn_replica_env(SECRET, &[("E2E_FOLLOW_KEY", FOLLOW_KEY)]);
    }
}

/// A fleet following `url` for `shop`, on a Redis of its own.
#[derive(Debug)]
pub struct Follower {
    pub name: &'static str,
    pub redis: RedisServer,
    pub dir: tempfile::TempDir,
    pub keys: Keys,
    pub replicas: Vec<ReplicaProcess>,
    pub config: PathBuf,
}

impl Follower {
    /// `secret`: also configure the appsecret (for `wxtoken promote`).
    pub fn new(name: &'static str, fleet: &Fleet, url: &str, secret: bool) -> Self {
        let redis = RedisServer::spawn();
        let dir = tempfile::tempdir().expect("tempdir");
        let prefix = format!("wxf{name}");
        let t = &fleet.timing;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        let text = format!(
            r#"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
command_timeout = "500ms"
connect_timeout = "500ms"

[refresh]
refresh_ahead = "{ahead}"
lock_ttl = "{lock}"
upstream_timeout = "{upstream}"
poll_interval = "1s"
loss_check_interval = "250ms"

[upstream]
base_url = "{base}"

[http]
listen = "127.0.0.1:0"
api_keys = {{ env = "E2E_API_KEYS" }}
token_wait = "3s"

[[apps]]
id = "{ID}"
appid = "{appid}"
{secret}follow = {{ url = "{url}", key = {{ env = "E2E_FOLLOW_KEY" }}, keepalive = "1s" }}
"#,
            redis = redis.url(),
            ahead = ms(t.refresh_ahead),
            lock = ms(t.lock_ttl),
            upstream = ms(t.upstream_timeout),
            base = fleet.sim.base_url(),
            appid = crate::APPID,
            secret = if secret {
                "secret = { env = \"E2E_SECRET\" }\n"
            } else {
                ""
            },
        );
        let config = dir.path().join("follower.toml");
        std::fs::write(&config, text).expect("config");
        Self {
            name,
            redis,
            dir,
            keys: Keys::new(&prefix).expect("prefix"),
            replicas: Vec::new(),
            config,
        }
    }

    pub fn env() -> Vec<(&'static str, &'static str)> {
        vec![
            // Readers' key, and the key a second-level follower uses here.
            ("E2E_API_KEYS", ALL_KEYS),
            ("E2E_FOLLOW_KEY", FOLLOW_KEY),
            ("E2E_SECRET", SECRET),
            ("RUST_LOG", "debug"),
        ]
    }

    pub fn spawn(&mut self, n: usize) {
        for _ in 0..n {
            let id = format!("{}{}", self.name, self.replicas.len() + 1);
            let r = ReplicaProcess::spawn(&self.config, &id, self.dir.path(), &Self::env());
            self.replicas.push(r);
        }
    }

    /// Waits until every replica's API answers `/readyz` (a replica
    /// stores a followed value before its listener is bound).
    pub async fn wait_ready(&self) {
        let http = reqwest::Client::new();
        for r in &self.replicas {
            let url = format!("http://{}/readyz", r.http);
            let ready = wxtoken_testkit::wait_until_async(
                Duration::from_secs(15),
                Duration::from_millis(20),
                || async {
                    http.get(&url)
                        .send()
                        .await
                        .is_ok_and(|r| r.status().is_success())
                },
            )
            .await;
            assert!(ready, "{}: {} never became ready", self.name, r.replica_id);
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.replicas[0].http)
    }

    async fn conn(&self) -> Option<redis::aio::MultiplexedConnection> {
        self.redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .ok()
    }

    pub async fn token(&self) -> Option<StoredToken> {
        let mut c = self.conn().await?;
        let id = CredentialId::parse(ID).expect("id");
        keyspace::read_token(&mut c, &self.keys, &id)
            .await
            .ok()
            .flatten()
    }

    pub async fn wait_token(&self, newer_than: u64, deadline: Duration) -> StoredToken {
        let until = Instant::now() + deadline;
        loop {
            if let Some(t) = self.token().await
                && t.generation > newer_than
            {
                return t;
            }
            assert!(
                Instant::now() < until,
                "{}: no value newer than {newer_than} within {deadline:?}",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        std::process::Command::new(wxtoken_bin())
            .args(args)
            .arg("--config")
            .arg(&self.config)
            .envs(Self::env())
            .output()
            .expect("wxtoken runs")
    }

    pub fn logs(&self) -> String {
        self.replicas.iter().map(ReplicaProcess::logs).collect()
    }

    pub async fn meta(&self, field: &str) -> Option<String> {
        let mut c = self.conn().await?;
        let cref = wxtoken_common::CredentialRef::token(CredentialId::parse(ID).ok()?);
        redis::cmd("HGET")
            .arg(self.keys.slot(&cref).meta)
            .arg(field)
            .query_async(&mut c)
            .await
            .ok()
            .flatten()
    }
}

/// A primary of one replica (token life `token_ttl`) and a fleet of
/// `replicas` following it directly (`secret`: with the appsecret, for
/// `promote`), both holding a value: the primary's first one.
pub async fn pair(
    token_ttl: Duration,
    name: &'static str,
    replicas: usize,
    secret: bool,
) -> (Fleet, Follower, StoredToken) {
    let mut fleet = Fleet::new(crate::Timing {
        token_ttl,
        ..crate::Timing::default()
    })
    .await;
    primary(&mut fleet, 1);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    let url = format!("http://{}", fleet.replicas[0].http);
    let mut f = Follower::new(name, &fleet, &url, secret);
    f.spawn(replicas);
    f.wait_ready().await;
    let held = f.wait_token(0, Duration::from_secs(15)).await;
    (fleet, f, held)
}
