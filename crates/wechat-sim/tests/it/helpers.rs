//! Shared test plumbing: spawn a simulator, call its endpoints, poll with a
//! deadline. Logs are silent unless `TEST_LOG` is set.

use std::future::Future;
use std::sync::Once;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use wechat_sim::{SimConfig, SimHandle};

pub const APP: &str = "wx0123456789abcdef";
pub const SECRET: &str = "0123456789abcdef0123456789abcdef";
pub const APP_B: &str = "wxfedcba9876543210";
pub const SECRET_B: &str = "fedcba9876543210fedcba9876543210";
pub const CORP: &str = "ww0123456789abcdef";
pub const AGENT: u64 = 1000002;
pub const AGENT_SECRET: &str = "agent1000002-0123456789abcdefghijklmnopqrstu";
pub const AGENT_B: u64 = 1000003;
pub const AGENT_B_SECRET: &str = "agent1000003-0123456789abcdefghijklmnopqrstu";

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Two apps, WeChat's defaults otherwise; tests shrink time on top.
pub fn config() -> SimConfig {
    SimConfig::new().app(APP, SECRET).app(APP_B, SECRET_B)
}

/// [`config`] plus one corp with two agents.
pub fn wecom_config() -> SimConfig {
    config()
        .corp_agent(CORP, Some(AGENT), AGENT_SECRET)
        .corp_agent(CORP, Some(AGENT_B), AGENT_B_SECRET)
}

/// The `Stats.apps` key of a WeCom agent.
pub fn agent_key(agentid: u64) -> String {
    format!("{CORP}:{agentid}")
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber::fmt()
                .with_env_filter("debug")
                .with_test_writer()
                .init();
        }
    });
}

/// A running simulator and a client for it.
pub struct Wx {
    pub sim: SimHandle,
    pub http: reqwest::Client,
    pub base: String,
    /// `{base}/qyapi`: WeCom's base URL.
    pub wecom_base: String,
}

pub async fn start(config: SimConfig) -> Wx {
    init_logs();
    let sim = wechat_sim::spawn(config).await.expect("spawn simulator");
    let base = sim.base_url();
    let wecom_base = sim.wecom_base_url();
    let http = reqwest::Client::builder()
        .timeout(secs(10))
        .build()
        .expect("reqwest client");
    Wx {
        sim,
        http,
        base,
        wecom_base,
    }
}

/// The errcode of a reply (0 when absent, as on a token success).
pub fn errcode(v: &Value) -> i64 {
    v.get("errcode").and_then(Value::as_i64).unwrap_or(0)
}

pub fn expires_in(v: &Value) -> u64 {
    v["expires_in"].as_u64().expect("expires_in")
}

pub fn ticket(v: &Value) -> String {
    v["ticket"]
        .as_str()
        .unwrap_or_else(|| panic!("no ticket in {v}"))
        .to_owned()
}

pub fn access_token(v: &Value) -> String {
    v["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no access_token in {v}"))
        .to_owned()
}

impl Wx {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// GET with query parameters; status and parsed JSON body.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> (StatusCode, Value) {
        self.get_url(self.url(path), query).await
    }

    /// GET on the WeCom base URL (`/qyapi…`); the parsed JSON body.
    pub async fn wecom(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let (status, v) = self
            .get_url(format!("{}{path}", self.wecom_base), query)
            .await;
        assert_eq!(status, 200, "WeCom answers errors with HTTP 200: {v}");
        v
    }

    /// WeCom `gettoken` for CORP with `secret`.
    pub async fn wecom_token(&self, secret: &str) -> Value {
        self.wecom(
            "/cgi-bin/gettoken",
            &[("corpid", CORP), ("corpsecret", secret)],
        )
        .await
    }

    /// A successful WeCom token of the agent with `secret`.
    pub async fn wecom_fetch(&self, secret: &str) -> String {
        let v = self.wecom_token(secret).await;
        assert_eq!(errcode(&v), 0, "{v}");
        access_token(&v)
    }

    /// Official Account `getticket` with `token` and `ty`.
    pub async fn ticket(&self, token: &str, ty: &str) -> Value {
        self.get(
            "/cgi-bin/ticket/getticket",
            &[("access_token", token), ("type", ty)],
        )
        .await
        .1
    }

    /// POST `/__admin/jsapi_check` with `body`: the parsed reply.
    pub async fn jsapi_check(&self, body: &Value) -> Value {
        let resp = self
            .http
            .post(self.url("/__admin/jsapi_check"))
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200);
        resp.json().await.expect("json")
    }

    async fn get_url(&self, url: String, query: &[(&str, &str)]) -> (StatusCode, Value) {
        let resp = self.http.get(url).query(query).send().await.expect("send");
        let status = resp.status();
        let body = resp.text().await.expect("body");
        let v = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
        (status, v)
    }

    /// `GET /cgi-bin/token` for `appid` with `secret`.
    pub async fn token(&self, appid: &str, secret: &str) -> Value {
        let q = [
            ("grant_type", "client_credential"),
            ("appid", appid),
            ("secret", secret),
        ];
        self.get("/cgi-bin/token", &q).await.1
    }

    /// A successful `cgi-bin/token` for APP.
    pub async fn fetch(&self) -> String {
        access_token(&self.token(APP, SECRET).await)
    }

    /// `POST /cgi-bin/stable_token` with a raw body.
    pub async fn stable_raw(&self, body: impl Into<reqwest::Body>) -> Value {
        let resp = self
            .http
            .post(self.url("/cgi-bin/stable_token"))
            .body(body)
            .send()
            .await
            .expect("send");
        resp.json().await.expect("json")
    }

    /// `POST /cgi-bin/stable_token` for APP.
    pub async fn stable(&self, force_refresh: bool) -> Value {
        let body = json!({
            "grant_type": "client_credential",
            "appid": APP,
            "secret": SECRET,
            "force_refresh": force_refresh,
        });
        self.stable_raw(body.to_string()).await
    }

    /// `GET /cgi-bin/getcallbackip?access_token=T`: 0 when accepted, else
    /// the errcode.
    pub async fn use_token(&self, token: &str) -> i64 {
        let (_, v) = self
            .get("/cgi-bin/getcallbackip", &[("access_token", token)])
            .await;
        if errcode(&v) == 0 {
            assert!(
                v["ip_list"].as_array().is_some_and(|l| !l.is_empty()),
                "{v}"
            );
        }
        errcode(&v)
    }
}

/// Polls `check` every 50 ms until it returns true; panics after `deadline`.
/// Returns the time it took.
pub async fn poll_until<F, Fut>(deadline: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(ms(50)).await;
    }
}

pub const COMPONENT: &str = "wx00000000000000c1";
pub const COMPONENT_SECRET: &str = "c1secret0123456789abcdef01234567";
pub const MSG_TOKEN: &str = "c1msgtoken";
pub const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
pub const AUTHORIZER: &str = "wx1234567890abcdef";
pub const AUTHORIZER_B: &str = "wxfedcba0987654321";

/// [`config`] plus one component (no event URL unless `event_url`).
pub fn component_config(event_url: Option<&str>) -> SimConfig {
    let mut c = wechat_sim::SimComponent::new(COMPONENT, COMPONENT_SECRET, MSG_TOKEN, AES_KEY);
    if let Some(url) = event_url {
        c = c.event_url(url);
    }
    config().component(c)
}

impl Wx {
    /// POST `path` with `query` and a JSON `body`; the parsed reply.
    pub async fn post_json(&self, path: &str, query: &[(&str, &str)], body: &Value) -> Value {
        let resp = self
            .http
            .post(self.url(path))
            .query(query)
            .body(body.to_string())
            .send()
            .await
            .expect("send");
        assert_eq!(resp.status(), 200, "WeChat answers with HTTP 200");
        let text = resp.text().await.expect("body");
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}"))
    }

    /// `api_component_token` for COMPONENT with `ticket`.
    pub async fn component_token_with(&self, ticket: &str) -> Value {
        let body = json!({
            "component_appid": COMPONENT,
            "component_appsecret": COMPONENT_SECRET,
            "component_verify_ticket": ticket,
        });
        self.post_json("/cgi-bin/component/api_component_token", &[], &body)
            .await
    }

    /// A successful component token, bought with the latest ticket.
    pub async fn component_token(&self) -> String {
        let ticket = self.sim.verify_ticket(COMPONENT).expect("a ticket");
        let v = self.component_token_with(&ticket).await;
        v["component_access_token"]
            .as_str()
            .unwrap_or_else(|| panic!("no component_access_token in {v}"))
            .to_owned()
    }

    /// POST `cgi-bin/component/{name}?component_access_token=T` with
    /// `body` (COMPONENT's appid added).
    pub async fn component_api(&self, name: &str, token: &str, mut body: Value) -> Value {
        body["component_appid"] = json!(COMPONENT);
        let path = format!("/cgi-bin/component/{name}");
        self.post_json(&path, &[("component_access_token", token)], &body)
            .await
    }

    /// `api_authorizer_token` for `appid` with `refresh`.
    pub async fn authorizer_token(&self, token: &str, appid: &str, refresh: &str) -> Value {
        let body = json!({"authorizer_appid": appid, "authorizer_refresh_token": refresh});
        self.component_api("api_authorizer_token", token, body)
            .await
    }
}
