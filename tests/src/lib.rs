//! End-to-end test support: runs the real `wxtoken` binary as separate
//! processes (one per replica) against a testkit `redis-server` and an
//! in-process wechat-sim, so tests can SIGKILL, SIGSTOP and SIGTERM replicas
//! and read their logs.
//!
//! This crate only orchestrates processes; what a replica does is the
//! coordinator's business. `chaos` is the chaos runner behind
//! `cargo run -p wxtoken-e2e --bin chaos`.

pub mod bench;
pub mod chaos;
pub mod follow;
pub mod kinds;
pub mod sdk;
pub mod sdk_node;

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wechat_sim::{AppStats, SimConfig, SimHandle};
use wxtoken_client::keyspace::{self, StoredToken};
use wxtoken_common::{CredentialId, Keys};
use wxtoken_testkit::{RedisServer, random_prefix};

pub const APPID: &str = "wx00000000000000e2";
/// A recognisable secret, so log scans can look for it.
pub const SECRET: &str = "e2e-secret-Q9v7LmX2pT";
/// The app's stand-in secret (`compat_secret = { env = "E2E_COMPAT_SECRET" }`):
/// SDKs pointed at a replica are configured with this, not [`SECRET`].
pub const COMPAT_SECRET: &str = "e2e-sdk-stand-in-Wc83kRt";
/// The API key replicas accept (`[http] api_keys = { env = "E2E_API_KEYS" }`).
pub const API_KEY: &str = "e2e-api-key-Hq27Zr";
pub const ID: &str = "shop";
/// The WeCom corp of fleets with agents, and its agents: (id, agentid, secret).
pub const CORPID: &str = "ww00000000000000e2";
pub const AGENTS: [(&str, u64, &str); 2] = [
    ("hr", 1_000_002, "e2e-wecom-hr-Vb61sQ"),
    ("ops", 1_000_003, "e2e-wecom-ops-Lk55tW"),
];

/// The `wxtoken` binary, built once per test process.
///
/// Built with the same command, and so the same feature set, as
/// `cargo test --workspace` (README's test command), which makes this a
/// no-op there; `cargo build -p …` would resolve features differently and
/// recompile dependencies in the middle of the test run. A harness built in
/// release (the bench) gets a release `wxtoken` (`cargo build --release`).
/// `WXTOKEN_BIN` overrides it.
pub fn wxtoken_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(bin) = std::env::var("WXTOKEN_BIN") {
            return PathBuf::from(bin);
        }
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let exe = std::env::current_exe().expect("test exe path");
        // A release harness (the bench) measures a release replica.
        let release = exe.components().any(|c| c.as_os_str() == "release");
        let args: &[&str] = if release {
            &[
                "build",
                "-q",
                "--release",
                "-p",
                "wxtoken-coordinator",
                "--bin",
                "wxtoken",
            ]
        } else {
            &["test", "-q", "--workspace", "--no-run"]
        };
        let status = Command::new(cargo)
            .args(args)
            .stdout(Stdio::null())
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building wxtoken failed");
        // target/<profile>/deps/<test> or target/<profile>/<bin> → target/<profile>/wxtoken
        let parent = exe.parent().expect("exe dir");
        let bin = [parent, parent.parent().unwrap_or(parent)]
            .iter()
            .map(|d| d.join("wxtoken"))
            .find(|b| b.exists())
            .unwrap_or_else(|| parent.join("wxtoken"));
        assert!(bin.exists(), "no wxtoken binary at {}", bin.display());
        bin
    })
    .clone()
}

/// Scaled timing for one e2e fleet.
#[derive(Debug, Clone)]
pub struct Timing {
    pub token_ttl: Duration,
    pub overlap: Duration,
    pub refresh_ahead: Duration,
    pub lock_ttl: Duration,
    pub upstream_timeout: Duration,
    pub daily_budget: u64,
    pub fatal_cooldown: Duration,
    /// How long WeChat's acceptance of a reported token stands.
    pub verify_interval: Duration,
    /// Least time between two report-triggered refreshes.
    pub report_refresh_interval: Duration,
    /// The app's JS-SDK tickets (`tickets = [...]`).
    pub tickets: &'static [&'static str],
    /// WeCom agents of [`AGENTS`] with these tickets (`None`: no `[[wecom]]`).
    pub wecom: Option<&'static [&'static str]>,
    /// Life of tickets in the simulator (WeChat: 7200 s).
    pub ticket_ttl: Duration,
    /// Configure the component [`COMPONENT`]; the first replica serves its
    /// event URL on [`Fleet::event_port`].
    pub platform: bool,
}

impl Default for Timing {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(6),
            overlap: Duration::from_secs(3),
            refresh_ahead: Duration::from_millis(2500),
            lock_ttl: Duration::from_millis(1500),
            upstream_timeout: Duration::from_millis(600),
            daily_budget: 1000,
            fatal_cooldown: Duration::from_secs(3),
            verify_interval: Duration::from_secs(1),
            report_refresh_interval: Duration::from_secs(1),
            tickets: &[],
            wecom: None,
            ticket_ttl: Duration::from_secs(6),
            platform: false,
        }
    }
}

/// The open platform of `Timing::platform` (SPEC §9).
pub const COMPONENT: &str = "open1";
pub const COMPONENT_APPID: &str = "wx00000000000000c2";
pub const COMPONENT_SECRET: &str = "e2e-component-secret-Vb61";
pub const COMPONENT_TOKEN: &str = "e2e-msgtoken-Ys5";
pub const COMPONENT_AES_KEY: &str = "ZYXWVUTSRQPONMLKJIHGFEDCBA9876543210zyxwvut";
pub const STATE_KEY: &str = "d2h0b2tlbi1lMmUtc3RhdGUta2V5LTMyLWJ5dGVzISE=";

/// One `wxtoken serve` process.
#[derive(Debug)]
pub struct ReplicaProcess {
    pub replica_id: String,
    child: Child,
    pub log: PathBuf,
    /// Where its HTTP API listens.
    pub http: std::net::SocketAddr,
}

impl ReplicaProcess {
    /// Starts `wxtoken serve --config <config>` as `replica_id`, logging to
    /// `<dir>/<replica_id>.log`, its HTTP API on a free loopback port; `env`
    /// is applied last (a later pair overrides an earlier one).
    pub fn spawn(
        config: &std::path::Path,
        replica_id: &str,
        dir: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Self {
        let log = dir.join(format!("{replica_id}.log"));
        let out = File::create(&log).expect("log file");
        let err = out.try_clone().expect("log file");
        let http: std::net::SocketAddr = ([127, 0, 0, 1], wxtoken_testkit::free_port()).into();
        let child = Command::new(wxtoken_bin())
            .args(["serve", "--config"])
            .arg(config)
            .env("WXTOKEN__HTTP__LISTEN", http.to_string())
            .env("WXTOKEN__REFRESH__REPLICA_ID", replica_id)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .expect("wxtoken serve starts");
        Self {
            replica_id: replica_id.to_owned(),
            child,
            log,
            http,
        }
    }

    pub fn pid(&self) -> Pid {
        Pid::from_raw(i32::try_from(self.child.id()).expect("pid fits"))
    }

    pub fn signal(&self, signal: Signal) {
        kill(self.pid(), signal).expect("signal delivered");
    }

    /// Waits for exit, at most `timeout`; `None` if still running.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn logs(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ReplicaProcess {
    fn drop(&mut self) {
        let _ = kill(self.pid(), Signal::SIGCONT);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Redis + sim + a config file; replicas are added as processes.
#[derive(Debug)]
pub struct Fleet {
    pub redis: RedisServer,
    pub sim: SimHandle,
    pub dir: tempfile::TempDir,
    pub prefix: String,
    pub timing: Timing,
    pub replicas: Vec<ReplicaProcess>,
    keys: Keys,
    logs_seen: Vec<PathBuf>,
    /// The first replica's HTTP port: the component's event URL.
    pub event_port: u16,
}

impl Fleet {
    pub async fn new(timing: Timing) -> Self {
        Self::new_with(timing, |sim| sim).await
    }

    /// [`Self::new`] with more of the simulator (apps of its own, say).
    pub async fn new_with(timing: Timing, more: impl FnOnce(SimConfig) -> SimConfig) -> Self {
        wxtoken_testkit::init_tracing();
        let redis = RedisServer::spawn();
        let mut sim = SimConfig::new()
            .app(APPID, SECRET)
            .token_ttl(timing.token_ttl)
            .overlap(timing.overlap)
            .ticket_ttl(timing.ticket_ttl);
        for (_, agentid, secret) in AGENTS {
            sim = sim.corp_agent(CORPID, Some(agentid), secret);
        }
        let event_port = wxtoken_testkit::free_port();
        if timing.platform {
            sim = sim
                .component(
                    wechat_sim::SimComponent::new(
                        COMPONENT_APPID,
                        COMPONENT_SECRET,
                        COMPONENT_TOKEN,
                        COMPONENT_AES_KEY,
                    )
                    .event_url(format!(
                        "http://127.0.0.1:{event_port}/wechat/components/{COMPONENT}/events"
                    )),
                )
                .component_token_ttl(timing.token_ttl)
                .authorizer_token_ttl(timing.token_ttl)
                .authorizer_token_per_minute(1_000_000);
        }
        let sim = wechat_sim::spawn(more(sim)).await.expect("sim");
        let prefix = random_prefix();
        let keys = Keys::new(&prefix).expect("prefix");
        Self {
            redis,
            sim,
            dir: tempfile::tempdir().expect("tempdir"),
            prefix,
            timing,
            replicas: Vec::new(),
            keys,
            logs_seen: Vec::new(),
            event_port,
        }
    }

    /// The TOML config replicas run with; the secret comes from env
    /// `E2E_SECRET`, the app's stand-in [`COMPAT_SECRET`] from
    /// `E2E_COMPAT_SECRET`.
    pub fn config_text(&self) -> String {
        let t = &self.timing;
        let ms = |d: Duration| format!("{}ms", d.as_millis());
        format!(
            r#"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
command_timeout = "500ms"
connect_timeout = "500ms"
pool_wait_timeout = "500ms"

[refresh]
refresh_ahead = "{ahead}"
lock_ttl = "{lock}"
upstream_timeout = "{upstream}"
poll_interval = "1s"
daily_budget = {budget}
fatal_cooldown = "{fatal}"
verify_interval = "{verify}"
report_refresh_interval = "{report}"
backoff_base = "100ms"
backoff_max = "1s"

[upstream]
base_url = "{base}"
wecom_base_url = "{wecom_base}"

[http]
listen = "127.0.0.1:0"
api_keys = {{ env = "E2E_API_KEYS" }}
token_wait = "3s"

[[apps]]
id = "{ID}"
appid = "{APPID}"
secret = {{ env = "E2E_SECRET" }}
compat_secret = {{ env = "E2E_COMPAT_SECRET" }}
tickets = [{tickets}]
{wecom}{platform}"#,
            redis = self.redis.url(),
            prefix = self.prefix,
            ahead = ms(t.refresh_ahead),
            lock = ms(t.lock_ttl),
            upstream = ms(t.upstream_timeout),
            budget = t.daily_budget,
            fatal = ms(t.fatal_cooldown),
            verify = ms(t.verify_interval),
            report = ms(t.report_refresh_interval),
            base = self.sim.base_url(),
            wecom_base = self.sim.wecom_base_url(),
            tickets = quoted(t.tickets),
            platform = if t.platform {
                format!(
                    "\n[[components]]\nid = \"{COMPONENT}\"\ncomponent_appid = \"{COMPONENT_APPID}\"\nsecret = {{ env = \"E2E_COMPONENT_SECRET\" }}\ntoken = {{ env = \"E2E_COMPONENT_TOKEN\" }}\nencoding_aes_key = {{ env = \"E2E_COMPONENT_AES\" }}\n\n[security]\nstate_key = {{ env = \"E2E_STATE_KEY\" }}\n"
                )
            } else {
                String::new()
            },
            wecom = t.wecom.map_or_else(String::new, |tickets| {
                AGENTS
                    .iter()
                    .map(|(id, agentid, _)| {
                        format!(
                            "\n[[wecom]]\nid = \"{id}\"\ncorpid = \"{CORPID}\"\nagentid = {agentid}\nsecret = {{ env = \"E2E_WECOM_{}\" }}\ntickets = [{}]\n",
                            id.to_uppercase(),
                            quoted(tickets)
                        )
                    })
                    .collect()
            }),
        )
    }

    /// The environment every replica and CLI run of this fleet gets.
    pub fn secret_env(&self, secret: &str) -> Vec<(String, String)> {
        let mut env = vec![
            ("E2E_SECRET".to_owned(), secret.to_owned()),
            ("E2E_COMPAT_SECRET".to_owned(), COMPAT_SECRET.to_owned()),
            ("E2E_API_KEYS".to_owned(), API_KEY.to_owned()),
        ];
        for (id, _, secret) in AGENTS {
            env.push((
                format!("E2E_WECOM_{}", id.to_uppercase()),
                secret.to_owned(),
            ));
        }
        for (k, v) in [
            ("E2E_COMPONENT_SECRET", COMPONENT_SECRET),
            ("E2E_COMPONENT_TOKEN", COMPONENT_TOKEN),
            ("E2E_COMPONENT_AES", COMPONENT_AES_KEY),
            ("E2E_STATE_KEY", STATE_KEY),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }
        env
    }

    /// Starts `n` replicas, the first one listening on [`Self::event_port`]
    /// (the component's event URL).
    pub fn spawn_platform_replicas(&mut self, n: usize) {
        let listen = format!("127.0.0.1:{}", self.event_port);
        self.spawn_replica_env(SECRET, &[("WXTOKEN__HTTP__LISTEN", listen.as_str())]);
        for _ in 1..n {
            self.spawn_replica_with(SECRET);
        }
    }

    /// Pushes a new verify ticket until the first replica accepts it (it
    /// may still be starting).
    pub async fn push_ticket(&self) {
        let until = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let outcome = self
                .sim
                .push_verify_ticket(COMPONENT_APPID)
                .await
                .expect("component known");
            if matches!(outcome, wechat_sim::PushOutcome::Success { .. }) {
                return;
            }
            assert!(
                std::time::Instant::now() < until,
                "verify ticket push never accepted: {outcome:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The stored value of any credential id (an authorizer: `open1.wx…`).
    pub async fn value_of(&self, id: &str) -> Option<StoredToken> {
        let id = CredentialId::parse(id).ok()?;
        let mut c = self.conn().await;
        wxtoken_client::keyspace::read_token(&mut c, &self.keys, &id)
            .await
            .ok()
            .flatten()
    }

    /// The open platform's secrets never reach a log: the component's
    /// secret, message token and AES key, verify tickets, and the refresh
    /// and access tokens of `authorizers`.
    pub fn assert_platform_logs_clean(&self, authorizers: &[String]) {
        let logs = self.all_logs();
        for secret in [
            COMPONENT_SECRET,
            COMPONENT_TOKEN,
            COMPONENT_AES_KEY,
            STATE_KEY,
        ] {
            assert!(
                !logs.contains(secret),
                "a component secret appears in the logs"
            );
        }
        if let Some(t) = self.sim.verify_ticket(COMPONENT_APPID) {
            assert!(!logs.contains(&t), "a verify ticket appears in the logs");
        }
        for a in authorizers {
            let Some(s) = self.sim.authorizer_stats(COMPONENT_APPID, a) else {
                continue;
            };
            assert!(
                !logs.contains(&s.refresh_token),
                "a refresh token appears in the logs"
            );
            for t in &s.access_tokens {
                assert!(
                    !logs.contains(&t.token),
                    "an authorizer token appears in the logs"
                );
            }
        }
    }

    pub fn config_path(&self) -> PathBuf {
        let path = self.dir.path().join("wxtoken.toml");
        if !path.exists() {
            std::fs::write(&path, self.config_text()).expect("write config");
        }
        path
    }

    /// Starts `wxtoken serve` with `secret` (debug logging, to give secrets
    /// every chance to leak into the logs the tests scan).
    pub fn spawn_replica_with(&mut self, secret: &str) -> &mut ReplicaProcess {
        self.spawn_replica_env(secret, &[])
    }

    /// Like [`Self::spawn_replica_with`], with extra environment (e.g. a
    /// `WXTOKEN__REDIS__URL` through a fault proxy).
    pub fn spawn_replica_env(&mut self, secret: &str, env: &[(&str, &str)]) -> &mut ReplicaProcess {
        let n = self.logs_seen.len() + 1;
        let replica_id = format!("p{n}");
        let config = self.config_path();
        let owned = self.secret_env(secret);
        let mut all_env: Vec<(&str, &str)> = owned
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        all_env.push(("RUST_LOG", "debug"));
        all_env.extend_from_slice(env);
        let replica = ReplicaProcess::spawn(&config, &replica_id, self.dir.path(), &all_env);
        self.logs_seen.push(replica.log.clone());
        self.replicas.push(replica);
        self.replicas.last_mut().expect("just pushed")
    }

    pub fn spawn_replicas(&mut self, n: usize) {
        for _ in 0..n {
            self.spawn_replica_with(SECRET);
        }
    }

    pub fn replica(&mut self, replica_id: &str) -> Option<&mut ReplicaProcess> {
        self.replicas
            .iter_mut()
            .find(|r| r.replica_id == replica_id)
    }

    pub fn id(&self) -> CredentialId {
        CredentialId::parse(ID).expect("id")
    }

    pub fn app(&self) -> AppStats {
        self.sim.stats().app(APPID).cloned().unwrap_or_default()
    }

    pub async fn conn(&self) -> redis::aio::MultiplexedConnection {
        self.redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .expect("redis connection")
    }

    pub async fn token(&self) -> Option<StoredToken> {
        let mut c = self.conn().await;
        keyspace::read_token(&mut c, &self.keys, &self.id())
            .await
            .ok()
            .flatten()
    }

    /// The owner of the refresh lock (`replica:nonce`), if locked.
    pub async fn lock_owner(&self) -> Option<String> {
        let mut c = self.conn().await;
        redis::cmd("GET")
            .arg(self.keys.lock(&self.id()))
            .query_async(&mut c)
            .await
            .ok()
            .flatten()
    }

    pub async fn wait_generation(&self, generation: u64, deadline: Duration) -> StoredToken {
        let until = Instant::now() + deadline;
        loop {
            if let Some(t) = self.token().await
                && t.generation >= generation
            {
                return t;
            }
            assert!(
                Instant::now() < until,
                "no token of generation {generation} within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_sim(
        &self,
        deadline: Duration,
        what: &str,
        f: impl Fn(&AppStats) -> bool,
    ) -> AppStats {
        let until = Instant::now() + deadline;
        loop {
            let app = self.app();
            if f(&app) {
                return app;
            }
            assert!(
                Instant::now() < until,
                "timed out waiting for {what}: {app:?}"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// The coordinator's config for this fleet, parsed in-process.
    pub fn config(&self) -> wxtoken_coordinator::config::Config {
        let env: wxtoken_coordinator::config::Env = self.secret_env(SECRET).into_iter().collect();
        wxtoken_coordinator::config::Config::from_toml_str(&self.config_text(), &env)
            .expect("fleet config")
    }

    /// An in-process store on this fleet's Redis (for tests that act as a
    /// coordinator themselves, e.g. to time a commit).
    pub fn store(&self) -> wxtoken_coordinator::store::TokenStore {
        wxtoken_coordinator::replica::build_store(&self.config()).expect("store")
    }

    /// A client library instance on this fleet's Redis and prefix.
    pub fn client_builder(&self) -> wxtoken_client::TokenClientBuilder {
        wxtoken_client::TokenClient::builder(&self.redis.url())
            .key_prefix(&self.prefix)
            .command_timeout(Duration::from_millis(300))
            .connect_timeout(Duration::from_millis(300))
    }

    /// Runs the `wxtoken` CLI against this fleet's config.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(wxtoken_bin())
            .args(args)
            .arg("--config")
            .arg(self.config_path())
            .envs(self.secret_env(SECRET))
            .output()
            .expect("wxtoken runs")
    }

    /// Every log line of every replica this fleet ran, concatenated.
    pub fn all_logs(&self) -> String {
        self.logs_seen
            .iter()
            .map(|p| std::fs::read_to_string(p).unwrap_or_default())
            .collect()
    }

    /// Invariant 3: no secret and no issued token in any replica's log.
    pub fn assert_logs_clean(&self) {
        let logs = self.all_logs();
        assert!(!logs.is_empty(), "replicas logged nothing");
        assert!(!logs.contains(SECRET), "the appsecret appears in the logs");
        assert!(
            !logs.contains(COMPAT_SECRET),
            "the stand-in secret appears in the logs"
        );
        assert!(!logs.contains(API_KEY), "an API key appears in the logs");
        for (_, _, secret) in AGENTS {
            assert!(!logs.contains(secret), "a WeCom secret appears in the logs");
        }
        let stats = self.sim.stats();
        for t in stats.apps.values().flat_map(|a| a.issued.iter()) {
            assert!(
                !logs.contains(&t.token),
                "an access token appears in the logs"
            );
        }
        for t in stats.apps.values().flat_map(|a| a.issued_tickets.iter()) {
            assert!(!logs.contains(&t.ticket), "a ticket appears in the logs");
        }
    }
}

/// `["a", "b"]` → `"a", "b"` for a TOML array.
fn quoted(items: &[&str]) -> String {
    items
        .iter()
        .map(|t| format!("\"{t}\""))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Reads the stored token every `every` for `total`; returns (reads, missing, rejected).
pub async fn watch_reads(fleet: &Fleet, total: Duration, every: Duration) -> (u64, u64, u64) {
    let until = Instant::now() + total;
    let (mut reads, mut missing, mut rejected) = (0, 0, 0);
    while Instant::now() < until {
        reads += 1;
        match fleet.token().await {
            None => missing += 1,
            Some(t) if fleet.sim.token_state(&t.value) != wechat_sim::TokenState::Valid => {
                rejected += 1
            }
            Some(_) => {}
        }
        tokio::time::sleep(every).await;
    }
    (reads, missing, rejected)
}
