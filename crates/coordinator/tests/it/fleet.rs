//! A test fleet: one redis-server, one wechat-sim, N replicas in-process,
//! with scaled time so a token lifetime takes seconds.

use std::time::{Duration, Instant};

use wechat_sim::{AppStats, Faults, SimConfig, SimHandle};
use wxtoken_client::keyspace::StoredToken;
use wxtoken_common::{CredentialId, CredentialRef};
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::replica::{ReplicaHandle, build_store};
use wxtoken_coordinator::store::TokenStore;
use wxtoken_testkit::{RedisServer, random_prefix};

pub const APPID: &str = "wx00000000000000a1";
pub const SECRET: &str = "sim-secret-7f3a9c1e5b";
pub const ID: &str = "shop";
pub const API_KEY: &str = "it-api-key-x8Lq";
pub const CORPID: &str = "ww000000000000c1";
/// Two WeCom agents of `CORPID`: (credential id, agentid, secret).
/// The open platform of `Settings::platform` (SPEC §9).
pub const COMPONENT: &str = "open1";
pub const COMPONENT_APPID: &str = "wx00000000000000c1";
pub const COMPONENT_SECRET: &str = "component-secret-9Hq2";
pub const COMPONENT_TOKEN: &str = "msgtoken-Lw8";
/// 43 characters of base64 (WeChat's EncodingAESKey shape).
pub const COMPONENT_AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
/// `[security] state_key`: 32 bytes of base64.
pub const STATE_KEY: &str = "q83vEjRWeJq83vEjRWeJq83vEjRWeJq83vEjRWeJq80=";

pub const AGENTS: [(&str, u64, &str); 2] = [
    ("hr", 1_000_002, "wecom-hr-secret-Qp3"),
    ("ops", 1_000_003, "wecom-ops-secret-Zx9"),
];

#[derive(Debug, Clone)]
pub struct Settings {
    pub token_ttl: Duration,
    pub overlap: Duration,
    pub refresh_ahead: Duration,
    pub lock_ttl: Duration,
    pub upstream_timeout: Duration,
    pub poll_interval: Duration,
    pub daily_budget: u64,
    pub fatal_cooldown: Duration,
    pub backoff_base: Duration,
    pub backoff_max: Duration,
    pub api: &'static str,
    pub sim_daily_quota: u32,
    pub report_refresh_interval: Duration,
    pub verify_interval: Duration,
    /// Raw TOML lines appended to `[refresh]` / `[http]`.
    pub extra_refresh: String,
    pub extra_http: String,
    /// The app's `tickets`.
    pub tickets: &'static [&'static str],
    /// Configure the WeCom agents of [`AGENTS`] with these `tickets`.
    pub wecom: Option<&'static [&'static str]>,
    /// Life of tickets in the simulator.
    pub ticket_ttl: Duration,
    /// WeCom's hourly caps in the simulator (per agent, per corp).
    pub sim_wecom_caps: (u32, u32),
    /// Configure the component [`COMPONENT`], its event URL served by the
    /// first replica ([`Fleet::serve_events`]).
    pub platform: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            token_ttl: Duration::from_secs(4),
            overlap: Duration::from_secs(2),
            refresh_ahead: Duration::from_millis(1500),
            lock_ttl: Duration::from_millis(1000),
            upstream_timeout: Duration::from_millis(400),
            poll_interval: Duration::from_secs(1),
            daily_budget: 1000,
            fatal_cooldown: Duration::from_secs(3),
            backoff_base: Duration::from_millis(100),
            backoff_max: Duration::from_millis(800),
            api: "token",
            sim_daily_quota: 2000,
            report_refresh_interval: Duration::from_millis(500),
            verify_interval: Duration::from_millis(500),
            extra_refresh: String::new(),
            extra_http: String::new(),
            tickets: &[],
            wecom: None,
            ticket_ttl: Duration::from_secs(4),
            sim_wecom_caps: (100, 400),
            platform: false,
        }
    }
}

impl Settings {
    /// One refresh cycle: token life minus the lead.
    pub fn cycle(&self) -> Duration {
        self.token_ttl - self.lead()
    }

    pub fn lead(&self) -> Duration {
        if self.api == "stable_token" {
            self.refresh_ahead.min(self.overlap.mul_f64(0.8))
        } else {
            self.refresh_ahead
        }
    }
}

/// A Redis deployment other than the fleet's own standalone server.
#[derive(Debug, Clone)]
pub struct RedisSetup {
    pub url: String,
    pub mode: &'static str,
    pub sentinel_master: Option<String>,
    pub ca_file: Option<String>,
}

pub struct Fleet {
    pub redis: RedisServer,
    /// When set, replicas and `store` use this deployment instead of `redis`.
    pub setup: Option<RedisSetup>,
    pub sim: SimHandle,
    pub prefix: String,
    pub settings: Settings,
    pub replicas: Vec<ReplicaHandle>,
    pub store: TokenStore,
    /// Where the component's event URL is served (`Settings::platform`).
    pub event_port: u16,
    events_server: Option<tokio::task::JoinHandle<()>>,
}

fn ms(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

impl Fleet {
    /// Redis + sim, no replicas yet.
    pub async fn new(settings: Settings) -> Self {
        wxtoken_testkit::init_tracing();
        wxtoken_coordinator::metrics::install();
        let redis = RedisServer::spawn();
        let mut sim_config = SimConfig::new()
            .app(APPID, SECRET)
            .token_ttl(settings.token_ttl)
            .overlap(settings.overlap)
            .daily_quota(settings.sim_daily_quota)
            .ticket_ttl(settings.ticket_ttl)
            .wecom_ticket_agent_hourly(settings.sim_wecom_caps.0)
            .wecom_ticket_corp_hourly(settings.sim_wecom_caps.1);
        for (_, agentid, secret) in AGENTS {
            sim_config = sim_config.corp_agent(CORPID, Some(agentid), secret);
        }
        let event_port = wxtoken_testkit::free_port();
        if settings.platform {
            sim_config = sim_config
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
                .component_token_ttl(settings.token_ttl)
                .authorizer_token_ttl(settings.token_ttl);
        }
        let sim = wechat_sim::spawn(sim_config).await.expect("sim starts");
        let prefix = random_prefix();
        let mut fleet = Self {
            redis,
            setup: None,
            sim,
            prefix,
            settings,
            replicas: Vec::new(),
            store: build_store(&dummy_config()).expect("store"),
            event_port,
            events_server: None,
        };
        fleet.store = build_store(&fleet.config(SECRET)).expect("store");
        fleet
    }

    /// Redis + sim + `n` replicas.
    pub async fn start(settings: Settings, n: usize) -> Self {
        let mut fleet = Self::new(settings).await;
        for _ in 0..n {
            fleet.add_replica(SECRET).await;
        }
        fleet
    }

    /// Points replicas (added from now on) and `store` at another deployment.
    pub fn use_redis(&mut self, setup: RedisSetup) {
        self.setup = Some(setup);
        self.store = build_store(&self.config(SECRET)).expect("store");
    }

    pub fn config_with(&self, secret: &str, redis_url: &str) -> Config {
        let s = &self.settings;
        let extra = match &self.setup {
            Some(setup) => {
                let mut lines = format!("mode = \"{}\"\n", setup.mode);
                if let Some(m) = &setup.sentinel_master {
                    lines += &format!("sentinel_master = \"{m}\"\n");
                }
                if let Some(ca) = &setup.ca_file {
                    lines += &format!("ca_file = \"{ca}\"\n");
                }
                lines
            }
            None => String::new(),
        };
        let text = format!(
            r#"
            [redis]
            url = "{redis}"
            key_prefix = "{prefix}"
            {extra}
            command_timeout = "500ms"
            connect_timeout = "500ms"
            pool_wait_timeout = "500ms"
            [refresh]
            refresh_ahead = "{ahead}"
            lock_ttl = "{lock}"
            upstream_timeout = "{upstream}"
            poll_interval = "{poll}"
            daily_budget = {budget}
            fatal_cooldown = "{fatal}"
            backoff_base = "{bb}"
            backoff_max = "{bm}"
            stable_renew_window = "{window}"
            report_refresh_interval = "{rri}"
            verify_interval = "{vi}"
            {extra_refresh}
            [upstream]
            base_url = "{base}"
            wecom_base_url = "{wecom_base}"
            [http]
            api_keys = {{ env = "TEST_API_KEYS" }}
            token_wait = "1s"
            request_timeout = "1500ms"
            body_limit = 65536
            {extra_http}
            [[apps]]
            id = "{ID}"
            appid = "{APPID}"
            secret = {{ env = "TEST_SECRET" }}
            api = "{api}"
            tickets = [{tickets}]
            {wecom}
            {platform}
            "#,
            redis = redis_url,
            prefix = self.prefix,
            ahead = ms(s.refresh_ahead),
            lock = ms(s.lock_ttl),
            upstream = ms(s.upstream_timeout),
            poll = ms(s.poll_interval),
            budget = s.daily_budget,
            fatal = ms(s.fatal_cooldown),
            bb = ms(s.backoff_base),
            bm = ms(s.backoff_max),
            window = ms(s.overlap),
            rri = ms(s.report_refresh_interval),
            vi = ms(s.verify_interval),
            extra_refresh = s.extra_refresh,
            extra_http = s.extra_http,
            base = self.sim.base_url(),
            wecom_base = self.sim.wecom_base_url(),
            api = s.api,
            tickets = s
                .tickets
                .iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(", "),
            platform = if s.platform {
                format!(
                    "[[components]]\nid = \"{COMPONENT}\"\ncomponent_appid = \"{COMPONENT_APPID}\"\nsecret = {{ env = \"TEST_COMPONENT_SECRET\" }}\ntoken = {{ env = \"TEST_COMPONENT_TOKEN\" }}\nencoding_aes_key = {{ env = \"TEST_COMPONENT_AES\" }}\n[security]\nstate_key = {{ env = \"TEST_STATE_KEY\" }}\n"
                )
            } else {
                String::new()
            },
            wecom = s.wecom.map_or_else(String::new, |tickets| {
                let tickets = tickets
                    .iter()
                    .map(|t| format!("\"{t}\""))
                    .collect::<Vec<_>>()
                    .join(", ");
                AGENTS
                    .iter()
                    .map(|(id, agentid, _)| {
                        format!(
                            "[[wecom]]\nid = \"{id}\"\ncorpid = \"{CORPID}\"\nagentid = {agentid}\nsecret = {{ env = \"TEST_WECOM_{id}\" }}\ntickets = [{tickets}]\n"
                        )
                    })
                    .collect::<String>()
            }),
        );
        let mut env: Vec<(String, String)> = vec![
            ("TEST_SECRET".into(), secret.into()),
            ("TEST_API_KEYS".into(), API_KEY.into()),
        ];
        for (id, _, secret) in AGENTS {
            env.push((format!("TEST_WECOM_{id}"), secret.into()));
        }
        for (k, v) in [
            ("TEST_COMPONENT_SECRET", COMPONENT_SECRET),
            ("TEST_COMPONENT_TOKEN", COMPONENT_TOKEN),
            ("TEST_COMPONENT_AES", COMPONENT_AES_KEY),
            ("TEST_STATE_KEY", STATE_KEY),
        ] {
            env.push((k.into(), v.into()));
        }
        let env: Env = env.into_iter().collect();
        Config::from_toml_str(&text, &env).expect("test config is valid")
    }

    pub fn config(&self, secret: &str) -> Config {
        let url = self
            .setup
            .as_ref()
            .map_or_else(|| self.redis.url(), |s| s.url.clone());
        self.config_with(secret, &url)
    }

    pub async fn add_replica(&mut self, secret: &str) {
        let n = self.replicas.len() + 1;
        let replica = ReplicaHandle::start(&self.config(secret), format!("r{n}"))
            .await
            .expect("replica starts");
        assert!(
            replica.wait_events_up(Duration::from_secs(5)).await,
            "events up"
        );
        self.replicas.push(replica);
    }

    /// Serves the first replica's HTTP API on [`Fleet::event_port`] (the
    /// component's event URL the simulator pushes to).
    pub async fn serve_events(&mut self) {
        let state = self.replicas[0]
            .http_state(&self.config(SECRET))
            .expect("http state");
        self.serve_events_from(state).await;
    }

    /// Serves `state`'s API on [`Fleet::event_port`] instead (WeChat's
    /// event URL pointed at another fleet).
    pub async fn serve_events_from(&mut self, state: wxtoken_coordinator::http::HttpState) {
        if let Some(old) = self.events_server.take() {
            old.abort();
            let _ = old.await;
        }
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", self.event_port))
            .await
            .expect("event port");
        let app = wxtoken_coordinator::http::router(state, true);
        self.events_server = Some(tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        }));
    }

    /// A new verify ticket pushed by the simulator; asserts it was accepted.
    pub async fn push_ticket(&self) {
        let outcome = self
            .sim
            .push_verify_ticket(COMPONENT_APPID)
            .await
            .expect("component known");
        assert!(
            matches!(outcome, wechat_sim::PushOutcome::Success { .. }),
            "verify ticket push: {outcome:?}"
        );
    }

    /// The credential of authorizer `appid`.
    pub fn authorizer(&self, appid: &str) -> CredentialRef {
        self.cref(&format!("{COMPONENT}.{appid}"))
    }

    pub async fn stop_all(&mut self) {
        for r in self.replicas.drain(..) {
            r.shutdown(Duration::from_secs(2)).await;
        }
    }

    /// The fleet's one credential: the app's access token.
    pub fn id(&self) -> CredentialRef {
        CredentialRef::token(CredentialId::parse(ID).unwrap())
    }

    /// Any credential of the fleet by name (`shop`, `hr/ticket:jsapi`).
    pub fn cref(&self, name: &str) -> CredentialRef {
        match name.split_once('/') {
            Some((id, slot)) => CredentialRef {
                id: CredentialId::parse(id).unwrap(),
                slot: wxtoken_common::Slot::parse(Some(slot)).expect("a slot"),
            },
            None => CredentialRef::token(CredentialId::parse(name).unwrap()),
        }
    }

    /// What the simulator counted for WeCom agent `id` of [`AGENTS`].
    pub fn agent(&self, id: &str) -> AppStats {
        let (_, agentid, _) = AGENTS.iter().find(|(a, _, _)| *a == id).expect("an agent");
        self.sim
            .stats()
            .agent(CORPID, Some(*agentid))
            .cloned()
            .unwrap_or_default()
    }

    /// Polls until `name`'s value has a generation ≥ `generation`.
    pub async fn wait_value(&self, name: &str, generation: u64, deadline: Duration) -> StoredToken {
        let cref = self.cref(name);
        let until = Instant::now() + deadline;
        loop {
            if let Ok(Some(t)) = self.store.read_value(&cref).await
                && t.generation >= generation
            {
                return t;
            }
            assert!(
                Instant::now() < until,
                "no {name} of generation {generation} within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn app(&self) -> AppStats {
        self.sim.stats().app(APPID).cloned().unwrap_or_default()
    }

    pub fn set_faults(&self, faults: Faults) {
        self.sim.set_faults(faults);
    }

    pub async fn token(&self) -> Option<StoredToken> {
        self.store.read_value(&self.id()).await.ok().flatten()
    }

    /// Polls until a token with generation ≥ `generation` is stored.
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

    /// Polls `f` on the sim's app stats until it holds.
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
                "timed out waiting for: {what}; sim stats: fetch_calls={} ok={} failed={:?}",
                app.fetch_calls,
                app.fetch_ok,
                app.fetch_failed
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn dummy_config() -> Config {
    let text = r#"
        [[apps]]
        appid = "wx0"
        secret = { env = "S" }
    "#;
    let env: Env = [("S", "x")].into_iter().collect();
    Config::from_toml_str(text, &env).expect("dummy config")
}

/// Samples the stored token every `every` for `total`, checking each read
/// token against the simulator. Returns (reads, missing, rejected).
pub async fn watch_reads(fleet: &Fleet, total: Duration, every: Duration) -> (u64, u64, u64) {
    let until = Instant::now() + total;
    let (mut reads, mut missing, mut rejected) = (0, 0, 0);
    while Instant::now() < until {
        reads += 1;
        match fleet.token().await {
            None => missing += 1,
            Some(t) => {
                if fleet.sim.token_state(&t.value) != wechat_sim::TokenState::Valid {
                    rejected += 1;
                }
            }
        }
        tokio::time::sleep(every).await;
    }
    (reads, missing, rejected)
}
