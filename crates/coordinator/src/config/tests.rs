//! Tests of config loading: the shipped examples, defaults, env overrides,
//! every refusal (by the exact key it names) and secret hygiene. The process
//! env is never touched: each test injects an [`Env`].

use std::io::Write;

use proptest::prelude::*;
use secrecy::ExposeSecret;

use super::*;

const SPEC_EXAMPLE_TEXT: &str = include_str!("../../../../deploy/examples/wxtoken.toml");
const DEV_EXAMPLE: &str = include_str!("../../../../deploy/examples/dev.toml");
const SECRET: &str = "s3cr3t-value-42";
const MINIMAL: &str = "[[apps]]\nappid = 'wx0123456789abcdef'\nsecret = { env = 'SHOP_SECRET' }\n";

/// The SPEC example with its API key file pointed at a real temporary file
/// (API keys are read at load time, like app secrets).
static SPEC_EXAMPLE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let path = std::env::temp_dir().join(format!("wxtoken-test-api-keys-{}", std::process::id()));
    std::fs::write(&path, "key-one\nkey-two\n").unwrap();
    SPEC_EXAMPLE_TEXT.replace("/run/secrets/wxtoken_api_keys", &path.display().to_string())
});

fn parse(text: &str, vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: Env = vars
        .iter()
        .copied()
        .chain([("SHOP_SECRET", SECRET)])
        .collect();
    Config::from_toml_str(text, &env)
}

fn refused(text: &str, vars: &[(&str, &str)]) -> ConfigError {
    let e = parse(text, vars).map(|_| ()).expect_err(text);
    assert!(!e.to_string().contains(SECRET), "{e}");
    e
}

fn temp_file(contents: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(contents.as_bytes()).unwrap();
    file
}

fn app_with_file(path: &Path) -> String {
    format!(
        "[[apps]]\nappid = 'wx1'\nsecret = {{ file = {:?} }}\n",
        path.display().to_string()
    )
}

fn ids(c: &Config) -> Vec<(&str, &str, UpstreamApi)> {
    c.apps
        .iter()
        .map(|a| (a.id.as_str(), a.appid.as_str(), a.api))
        .collect()
}

#[test]
fn spec_example_parses_to_its_values() {
    let c = parse(&SPEC_EXAMPLE, &[]).unwrap();
    assert_eq!(c.redis.url.expose_secret(), "redis://127.0.0.1:6379/0");
    assert_eq!(
        (c.redis.mode, &*c.redis.key_prefix),
        (RedisMode::Standalone, "wxtoken")
    );
    assert_eq!(c.http.listen, SocketAddr::from(([127, 0, 0, 1], 8088)));
    assert!(SPEC_EXAMPLE_TEXT.contains(r#"api_keys = { file = "/run/secrets/wxtoken_api_keys" }"#));
    assert!(matches!(&c.http.api_keys, Some(SecretRef::File(_))));
    let keys: Vec<&str> = c.api_keys.iter().map(|k| k.expose_secret()).collect();
    assert_eq!(keys, ["key-one", "key-two"], "read at load, one per line");
    assert_eq!(c.refresh, RefreshConfig::default());
    assert_eq!(c.upstream.base_url, "https://api.weixin.qq.com");
    assert_eq!(
        ids(&c),
        [("shop", "wx0123456789abcdef", UpstreamApi::Token)]
    );
    assert_eq!(c.apps[0].secret().unwrap().expose_secret(), SECRET);
    assert_eq!(
        c.apps[0].secret_ref,
        Some(SecretRef::Env("SHOP_SECRET".into()))
    );
}

#[test]
fn dev_example_is_valid_with_short_timings() {
    let c = parse(DEV_EXAMPLE, &[]).unwrap();
    assert_eq!(c.upstream.base_url, "http://127.0.0.1:9000");
    let r = &c.refresh;
    let timings = [
        r.refresh_ahead,
        r.lock_ttl,
        r.upstream_timeout,
        r.poll_interval,
    ];
    assert_eq!(timings.map(|d| d.as_secs()), [10, 4, 1, 5]);
    assert_eq!(
        ids(&c),
        [("shop", "wx0000000000000001", UpstreamApi::Token)]
    );
}

#[test]
fn missing_sections_take_defaults() {
    let c = parse(MINIMAL, &[]).unwrap();
    assert_eq!(c.redis, RedisConfig::default());
    assert_eq!(c.http, HttpConfig::default());
    assert_eq!(c.refresh, RefreshConfig::default());
    assert_eq!(c.upstream, UpstreamConfig::default());
    assert_eq!([c.redis.pool_size, c.http.body_limit], [16, 65536]);
    assert_eq!(
        (c.refresh.lock_ttl, c.refresh.daily_budget),
        (Duration::from_secs(30), 1800)
    );
    assert_eq!(c.refresh.quota_day_offset.seconds_east(), 8 * 3600);
    assert_eq!(
        c.apps[0].id.as_str(),
        "wx0123456789abcdef",
        "id defaults to appid"
    );
}

#[test]
fn env_overrides_sections_apps_and_secret_refs() {
    let file = temp_file("from-file");
    let path = file.path().display().to_string();
    let vars = [
        ("WXTOKEN__REFRESH__LOCK_TTL", "20s"),
        ("wxtoken__redis__pool_size", "4"),
        ("WXTOKEN__REDIS__URL", "rediss://:pw@cache:6380"),
        ("WXTOKEN__APPS__0__APPID", "wx9999"),
        ("WXTOKEN__APPS__0__SECRET__ENV", "OTHER"),
        ("WXTOKEN__APPS__1__APPID", "wx2"),
        ("WXTOKEN__APPS__1__SECRET__FILE", &path),
        ("WXTOKEN__APPS__1__API", "stable_token"),
        ("WXTOKEN__REFRESH__REPLICA_ID", "7"),
        ("OTHER", "other-secret"),
    ];
    let c = parse(&SPEC_EXAMPLE, &vars).unwrap();
    assert_eq!(c.refresh.lock_ttl, Duration::from_secs(20));
    assert_eq!(c.redis.pool_size, 4, "integer coercion");
    assert_eq!(c.redis.url.expose_secret(), "rediss://:pw@cache:6380");
    assert_eq!(
        c.refresh.replica_id.as_deref(),
        Some("7"),
        "a number where text is wanted"
    );
    let two = [
        ("shop", "wx9999", UpstreamApi::Token),
        ("wx2", "wx2", UpstreamApi::StableToken),
    ];
    assert_eq!(ids(&c), two);
    assert_eq!(c.apps[0].secret().unwrap().expose_secret(), "other-secret");
    assert_eq!(c.apps[1].secret().unwrap().expose_secret(), "from-file");
}

#[test]
fn env_override_errors_name_the_variable() {
    let e = refused(MINIMAL, &[("WXTOKEN__REFRESH__LOCK_TT", "10s")]);
    assert_eq!(e.key, "refresh.lock_tt");
    assert!(
        e.message.contains("WXTOKEN__REFRESH__LOCK_TT") && e.message.contains("section `refresh`")
    );
    let e = refused(MINIMAL, &[("WXTOKEN__BOGUS__KEY", "1")]);
    assert_eq!(e.key, "bogus");
    assert!(e.message.contains("WXTOKEN__BOGUS__KEY"), "{e}");
    let e = refused(MINIMAL, &[("WXTOKEN__REFRESH__LOCK_TTL", "soon")]);
    assert_eq!(e.key, "refresh.lock_ttl");
    assert!(e.message.contains("WXTOKEN__REFRESH__LOCK_TTL"), "{e}");
    let e = refused(MINIMAL, &[("WXTOKEN__REFRESH__LOCK_TTL__X", "1")]);
    assert!(e.message.contains("WXTOKEN__REFRESH__LOCK_TTL__X"), "{e}");
    assert_eq!(refused(MINIMAL, &[("WXTOKEN__", "1")]).key, "WXTOKEN__");
}

/// TOML with ` | ` for newlines; `APP` is a valid `[[apps]]` entry.
const MALFORMED: &[(&str, &str)] = &[
    ("config", "[redis"),
    ("apps", "[refresh]"),
    ("refresh.lock_tt", "[refresh] | lock_tt = '1s' | APP"),
    ("apps[0].colour", "APP | colour = 1"),
    (
        "refresh.lock_ttl",
        "[refresh] | lock_ttl = '30 parsecs' | APP",
    ),
    ("refresh.lock_ttl", "[refresh] | lock_ttl = 30 | APP"),
    ("refresh.lock_ttl", "[refresh] | lock_ttl = '0s' | APP"),
    (
        "refresh.poll_interval",
        "[refresh] | poll_interval = '0s' | APP",
    ),
    (
        "refresh.upstream_timeout",
        "[refresh] | upstream_timeout = '0s' | APP",
    ),
    (
        "refresh.upstream_timeout",
        "[refresh] | upstream_timeout = '15s' | APP",
    ),
    (
        "refresh.refresh_ahead",
        "[refresh] | refresh_ahead = '31s' | APP",
    ),
    (
        "refresh.refresh_ahead",
        "[refresh] | refresh_ahead = '2h' | APP",
    ),
    ("refresh.daily_budget", "[refresh] | daily_budget = 0 | APP"),
    (
        "refresh.daily_budget",
        "[refresh] | daily_budget = 100001 | APP",
    ),
    (
        "refresh.quota_day_offset",
        "[refresh] | quota_day_offset = 'UTC+8' | APP",
    ),
    (
        "refresh.backoff_max",
        "[refresh] | backoff_max = '1ms' | APP",
    ),
    ("refresh.replica_id", "[refresh] | replica_id = 'a b' | APP"),
    ("redis.key_prefix", "[redis] | key_prefix = 'a{b}' | APP"),
    ("redis.url", "[redis] | url = 'http://:pw@host' | APP"),
    ("redis.mode", "[redis] | mode = 'ring' | APP"),
    ("redis.sentinel_master", "[redis] | mode = 'sentinel' | APP"),
    ("redis.pool_size", "[redis] | pool_size = 0 | APP"),
    (
        "redis.pool_wait_timeout",
        "[redis] | pool_wait_timeout = '0s' | APP",
    ),
    ("http.listen", "[http] | listen = 'localhost' | APP"),
    (
        "http.metrics_listen",
        "[http] | metrics_listen = '127.0.0.1:8088' | APP",
    ),
    ("http.api_keys", "[http] | api_keys = 'k1,k2' | APP"),
    (
        "upstream.base_url",
        "[upstream] | base_url = 'ftp://x' | APP",
    ),
    (
        "upstream.base_url",
        "[upstream] | base_url = 'not a url' | APP",
    ),
    (
        "apps[0].appid",
        "[[apps]] | appid = '' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "apps[0].id",
        "[[apps]] | appid = 'wx:1' | secret = { env = 'SHOP_SECRET' }",
    ),
    ("apps[0].id", "APP | id = 'a{b}'"),
    ("apps[0].api", "APP | api = 'ticket'"),
    (
        "apps[0].secret",
        "[[apps]] | appid = 'wx1' | secret = { env = 'NOPE' }",
    ),
    (
        "apps[0].secret",
        "[[apps]] | appid = 'wx1' | secret = { env = 'EMPTY' }",
    ),
    (
        "apps[0].secret",
        "[[apps]] | appid = 'wx1' | secret = { file = '/nonexistent/x' }",
    ),
    (
        "apps[0].secret",
        "[[apps]] | appid = 'wx1' | secret = { env = 'A', file = '/b' }",
    ),
    (
        "apps[0].secret",
        "[[apps]] | appid = 'wx1' | secret = 'plain'",
    ),
    ("apps[1].id", "APP | APP"),
    (
        "apps[2].id",
        "APP | id = 'a' | APP | id = 'b' | api = 'stable_token' | APP | id = 'b'",
    ),
    ("apps[1].appid", "APP | APP | id = 'twin'"),
    // Tickets and WeCom (issue 13).
    ("apps[0].tickets", "APP | tickets = 'jsapi'"),
    ("apps[0].tickets[0]", "APP | tickets = ['card']"),
    ("apps[0].tickets[0]", "APP | tickets = ['agent_config']"),
    ("apps[0].tickets[1]", "APP | tickets = ['jsapi', 'jsapi']"),
    (
        "wecom[0].corpid",
        "[[wecom]] | id = 'hr' | corpid = 'ww 1' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[0].corpid",
        "[[wecom]] | id = 'hr' | corpid = '' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[0].id",
        "[[wecom]] | id = 'h:r' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[0].id",
        "[[wecom]] | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[0].secret",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | secret = { env = 'NOPE' }",
    ),
    (
        "wecom[0].agentid",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | agentid = 'x' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[0].agentid",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' } | tickets = ['agent_config']",
    ),
    (
        "wecom[0].tickets[0]",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | agentid = 1 | secret = { env = 'SHOP_SECRET' } | tickets = ['wx_card']",
    ),
    (
        "wecom[0].colour",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' } | colour = 1",
    ),
    (
        "wecom[0].id",
        "APP | id = 'hr' | [[wecom]] | id = 'hr' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[1].id",
        "[[wecom]] | id = 'hr' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' } | [[wecom]] | id = 'hr' | corpid = 'ww2' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "wecom[1].secret",
        "[[wecom]] | id = 'a' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' } | [[wecom]] | id = 'b' | corpid = 'ww1' | secret = { env = 'SHOP_SECRET' }",
    ),
    (
        "upstream.wecom_base_url",
        "[upstream] | wecom_base_url = 'qyapi' | APP",
    ),
    (
        "refresh.ticket_daily_budget",
        "[refresh] | ticket_daily_budget = 0 | APP",
    ),
    (
        "refresh.wecom_ticket_hourly_per_agent",
        "[refresh] | wecom_ticket_hourly_per_agent = 101 | APP",
    ),
    (
        "refresh.wecom_ticket_hourly_per_corp",
        "[refresh] | wecom_ticket_hourly_per_corp = 401 | APP",
    ),
    (
        "refresh.scheduled_reserve",
        "[refresh] | scheduled_reserve = 1800 | APP",
    ),
    (
        "refresh.verify_interval",
        "[refresh] | verify_interval = '0s' | APP",
    ),
    (
        "http.header_read_timeout",
        "[http] | header_read_timeout = '0s' | APP",
    ),
    ("http.max_connections", "[http] | max_connections = 0 | APP"),
    ("http.workers", "[http] | workers = 65 | APP"),
];

#[test]
fn tickets_and_wecom_agents_parse() {
    let text = "[[apps]]\nid = 'shop'\nappid = 'wx0123456789abcdef'\nsecret = { env = 'SHOP_SECRET' }\ntickets = ['jsapi', 'wx_card']\n\
        [[wecom]]\nid = 'hr-portal'\ncorpid = 'ww0123456789abcdef'\nagentid = 1000002\nsecret = { env = 'HR' }\ntickets = ['jsapi', 'agent_config']\n\
        [[wecom]]\nid = 'contacts'\ncorpid = 'ww0123456789abcdef'\nsecret = { env = 'CONTACTS' }\n";
    let c = parse(
        text,
        &[("HR", "hr-secret"), ("CONTACTS", "contacts-secret")],
    )
    .unwrap();
    use wxtoken_common::TicketType;
    assert_eq!(c.apps[0].tickets, [TicketType::Jsapi, TicketType::WxCard]);
    assert_eq!(c.wecom.len(), 2);
    assert_eq!(c.wecom[0].agentid, Some(1_000_002));
    assert_eq!(
        c.wecom[0].tickets,
        [TicketType::Jsapi, TicketType::AgentConfig]
    );
    assert_eq!(c.wecom[1].agentid, None);
    assert_eq!(c.upstream.wecom_base_url, "https://qyapi.weixin.qq.com");
    assert!(!format!("{c:?}").contains("hr-secret"));
    assert!(!c.redacted_toml().contains("hr-secret"));
    let names: Vec<String> = crate::kind::credentials(&c)
        .iter()
        .map(|k| format!("{} {}", k.cref, k.kind.name()))
        .collect();
    assert_eq!(
        names,
        [
            "contacts wecom_token",
            "hr-portal wecom_token",
            "hr-portal/ticket:jsapi wecom_jsapi_ticket",
            "hr-portal/ticket:agent_config wecom_agent_config_ticket",
            "shop app_token",
            "shop/ticket:jsapi jsapi_ticket",
            "shop/ticket:wx_card wx_card_ticket",
        ]
    );
    // A WeCom-only config needs no [[apps]].
    let only = "[[wecom]]\nid = 'hr'\ncorpid = 'ww1'\nsecret = { env = 'HR' }\n";
    assert_eq!(parse(only, &[("HR", "x")]).unwrap().wecom.len(), 1);
}

#[test]
fn malformed_configs_name_their_key() {
    let app = "[[apps]] | appid = 'wx0123456789abcdef' | secret = { env = 'SHOP_SECRET' }";
    for (key, case) in MALFORMED {
        let text = case.replace("APP", app).replace(" | ", "\n");
        let e = refused(&text, &[("EMPTY", "")]);
        assert_eq!(&e.key, key, "{text}\n→ {e}");
        assert_eq!(e.to_string(), format!("config key `{key}`: {}", e.message));
    }
}

#[test]
fn refusals_explain_themselves() {
    let plain = refused("[[apps]]\nappid = 'wx1'\nsecret = 'hunter2'\n", &[]);
    assert!(plain.message.contains("{ env = ") && !plain.message.contains("hunter2"));
    let ahead = refused(&format!("[refresh]\nrefresh_ahead = '31s'\n{MINIMAL}"), &[]);
    assert!(ahead.message.contains("another replica"), "{ahead}");
    let unknown = refused(&format!("[refresh]\nlock_tt = '1s'\n{MINIMAL}"), &[]);
    assert!(unknown.message.contains("lock_tt"), "{unknown}");
    let missing = refused("[[apps]]\nappid = 'wx1'\nsecret = { env = 'NOPE' }\n", &[]);
    assert!(missing.message.contains("NOPE"), "{missing}");
    let url = refused(
        &format!("[redis]\nurl = 'http://:hunter2@h'\n{MINIMAL}"),
        &[],
    );
    assert!(!url.message.contains("hunter2"), "{url}");
    let syntax = refused("[[apps]]\nsecret = \"hunter2\n", &[]);
    assert!(syntax.message.contains("line 2") && !syntax.message.contains("hunter2"));
}

#[test]
fn secret_file_is_trimmed_and_empty_file_refused() {
    let file = temp_file(&format!("{SECRET}\n"));
    let c = parse(&app_with_file(file.path()), &[]).unwrap();
    assert_eq!(c.apps[0].secret().unwrap().expose_secret(), SECRET);
    let empty = temp_file("\n");
    let e = refused(&app_with_file(empty.path()), &[]);
    assert_eq!(e.key, "apps[0].secret");
    assert!(
        e.message.contains(&empty.path().display().to_string()),
        "{e}"
    );
}

#[test]
fn debug_and_redacted_toml_hide_secrets_but_show_references() {
    let url = "redis://user:hunter2@cache:6379/0?password=hunter3";
    let c = parse(&format!("[redis]\nurl = '{url}'\n{MINIMAL}"), &[]).unwrap();
    for shown in [format!("{c:?}"), c.redacted_toml()] {
        for hidden in [SECRET, "hunter2", "hunter3"] {
            assert!(!shown.contains(hidden), "{hidden} in {shown}");
        }
        assert!(
            shown.contains("SHOP_SECRET") && shown.contains("user:***@cache"),
            "{shown}"
        );
    }
    assert_eq!(
        c.redis.url.to_string(),
        "redis://user:***@cache:6379/0?password=***"
    );
}

#[test]
fn redacted_toml_round_trips() {
    let c = parse(&SPEC_EXAMPLE, &[("WXTOKEN__REFRESH__REPLICA_ID", "r1")]).unwrap();
    let text = c.redacted_toml();
    let again = parse(&text, &[]).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(
        (&again.redis, &again.http, &again.refresh),
        (&c.redis, &c.http, &c.refresh)
    );
    assert_eq!(again.apps[0].secret_ref, c.apps[0].secret_ref);
    assert!(
        text.contains("lock_ttl = \"30s\"") && text.contains("pool_size = 16"),
        "{text}"
    );
}

#[test]
fn api_keys_from_file_lines_and_env_commas() {
    let file = temp_file("k1\n\n  k2 \n");
    let env: Env = [("KEYS", "a, b,"), ("BLANK", " , ")].into_iter().collect();
    let http = |r: SecretRef| HttpConfig {
        api_keys: Some(r),
        ..HttpConfig::default()
    };
    let keys = http(SecretRef::File(file.path().into()))
        .api_keys_in(&env)
        .unwrap();
    assert_eq!(
        keys.iter().map(|k| k.expose_secret()).collect::<Vec<_>>(),
        ["k1", "k2"]
    );
    assert_eq!(
        http(SecretRef::Env("KEYS".into()))
            .api_keys_in(&env)
            .unwrap()
            .len(),
        2
    );
    let blank = http(SecretRef::Env("BLANK".into()))
        .api_keys_in(&env)
        .unwrap_err();
    assert_eq!(blank.key, "http.api_keys");
    assert!(HttpConfig::default().api_keys_in(&env).unwrap().is_empty());
}

#[test]
fn load_reads_the_named_file() {
    let secret = temp_file(SECRET);
    let file = temp_file(&app_with_file(secret.path()));
    assert_eq!(
        Config::load(Some(file.path())).unwrap().apps[0].id.as_str(),
        "wx1"
    );
    let missing = Config::load(Some(Path::new("/nonexistent/wxtoken.toml"))).unwrap_err();
    assert_eq!(missing.key, "config");
}

/// Lines of TOML-like text built from the schema's own words, and noise.
const TOMLISH: &str = "(\\[\\[?(redis|http|refresh|apps)\\]\\]?\n|(url|mode|lock_ttl|refresh_ahead|\
    secret|appid|id|api|pool_size|listen) = ('[a-z0-9:/.{}]{0,12}'|-?[0-9]{1,20}|\\{ env = \
    'SHOP_SECRET' \\}|true|\\[\\])\n|\\PC{0,12}\n){0,14}";

proptest! {
    #[test]
    fn arbitrary_toml_never_panics(text in TOMLISH) {
        let _ = parse(&text, &[]);
    }

    #[test]
    fn arbitrary_overrides_never_panic(name in "WXTOKEN__[A-Z_0-9]{0,20}", value in "\\PC{0,12}") {
        let _ = parse(MINIMAL, &[(&name, &value)]);
    }
}

// ---- Deployment configs: the files docker-compose.yml and deploy/k8s run with ----

const COMPOSE_YML: &str = include_str!("../../../../docker-compose.yml");
const COMPOSE_TOML: &str = include_str!("../../../../deploy/examples/compose.toml");
const REDIS_ACL: &str = include_str!("../../../../deploy/redis-acl.conf");
const K8S_TOML: &str = include_str!("../../../../deploy/k8s/wxtoken.toml");
const K8S_DEPLOYMENT: &str = include_str!("../../../../deploy/k8s/deployment.yaml");

/// `"${NAME:-default}"` → `default` (what compose substitutes when NAME is
/// unset, as in CI and a fresh checkout); other values as written, unquoted.
fn compose_value(raw: &str) -> String {
    let v = raw.trim();
    let v = v
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = String::new();
    let mut rest = v;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let end = rest[start..].find('}').expect("closed ${…}") + start;
        let inner = &rest[start + 2..end];
        let (_, default) = inner
            .split_once(":-")
            .unwrap_or_else(|| panic!("compose var ${{{inner}}} needs a :-default"));
        out.push_str(default);
        rest = &rest[end + 1..];
    }
    out.push_str(rest);
    out
}

/// The `KEY: value` lines of the top-level block `header` (e.g.
/// `x-coordinator-env: &coordinator-env`) of docker-compose.yml.
fn compose_block(header: &str) -> Vec<(String, String)> {
    let mut lines = COMPOSE_YML.lines().skip_while(|l| l.trim_end() != header);
    assert!(
        lines.next().is_some(),
        "docker-compose.yml has no `{header}` block (this test reads it)"
    );
    let vars: Vec<(String, String)> = lines
        .take_while(|l| l.is_empty() || l.starts_with(' '))
        .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
        .map(|l| {
            let (k, v) = l.trim().split_once(": ").expect("KEY: value");
            (k.to_owned(), compose_value(v))
        })
        .collect();
    assert!(!vars.is_empty(), "empty `{header}` block");
    vars
}

/// The quoted items of the one-line flow list that starts with `key: [` and
/// mentions `marker` (e.g. wechat-sim's `command:`).
fn compose_flow_list(key: &str, marker: &str) -> Vec<String> {
    let line = COMPOSE_YML
        .lines()
        .find(|l| l.trim_start().starts_with(&format!("{key}: [")) && l.contains(marker))
        .unwrap_or_else(|| panic!("no `{key}: [...]` line with {marker} in docker-compose.yml"));
    line.split('"')
        .skip(1)
        .step_by(2)
        .map(compose_value)
        .collect()
}

fn flag_value<'a>(args: &'a [String], flag: &str) -> &'a str {
    let i = args
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{flag} missing in {args:?}"));
    &args[i + 1]
}

/// The plaintext password (`>…`) and key patterns of `user NAME` in deploy/redis-acl.conf.
fn acl_user(name: &str) -> (String, Vec<String>) {
    let line = REDIS_ACL
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some(name) && l.starts_with("user "))
        .unwrap_or_else(|| panic!("no `user {name}` in deploy/redis-acl.conf"));
    let rules: Vec<&str> = line.split_whitespace().collect();
    let password = rules
        .iter()
        .find_map(|r| r.strip_prefix('>'))
        .expect("a >password")
        .to_owned();
    let keys = rules
        .iter()
        .filter_map(|r| r.strip_prefix('~'))
        .map(str::to_owned)
        .collect();
    (password, keys)
}

fn parse_owned(text: &str, vars: &[(String, String)]) -> Result<Config, ConfigError> {
    let env: Env = vars.iter().cloned().collect();
    Config::from_toml_str(text, &env)
}

/// docker-compose.yml runs three replicas with deploy/examples/compose.toml
/// and the env of its `x-coordinator-env` block plus one replica id each:
/// that exact combination must validate, with the values the stack relies on.
#[test]
fn compose_stack_config_validates_with_the_compose_environment() {
    let env = compose_block("x-coordinator-env: &coordinator-env");
    let get = |k: &str| {
        env.iter()
            .find(|(name, _)| name == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("x-coordinator-env lacks {k}"))
    };
    assert_eq!(get("WXTOKEN_CONFIG"), "/etc/wxtoken/wxtoken.toml");
    assert!(
        COMPOSE_YML.contains("./deploy/examples/compose.toml:/etc/wxtoken/wxtoken.toml:ro"),
        "coordinators must mount deploy/examples/compose.toml read-only at WXTOKEN_CONFIG"
    );

    let replica_ids: Vec<String> = COMPOSE_YML
        .lines()
        .filter_map(|l| l.trim().strip_prefix("WXTOKEN__REFRESH__REPLICA_ID: "))
        .map(compose_value)
        .collect();
    assert_eq!(replica_ids.len(), 3, "three coordinator replicas");
    let distinct: std::collections::BTreeSet<&String> = replica_ids.iter().collect();
    assert_eq!(distinct.len(), 3, "distinct replica ids: {replica_ids:?}");

    let sim = compose_flow_list("command", "--token-ttl");
    let (sim_appid, sim_secret) = flag_value(&sim, "--app")
        .split_once(':')
        .expect("APPID:SECRET");
    let sim_ttl = humantime::parse_duration(flag_value(&sim, "--token-ttl")).unwrap();
    let sim_quota: u64 = flag_value(&sim, "--daily-quota").parse().unwrap();
    assert_eq!(flag_value(&sim, "--listen"), "0.0.0.0:9000");

    let consumer_key = COMPOSE_YML
        .lines()
        .find_map(|l| l.trim().strip_prefix("WXTOKEN_API_KEY: "))
        .map(compose_value)
        .expect("the consumer's WXTOKEN_API_KEY");

    for id in &replica_ids {
        let mut vars = env.clone();
        vars.push(("WXTOKEN__REFRESH__REPLICA_ID".into(), id.clone()));
        let c = parse_owned(COMPOSE_TOML, &vars)
            .unwrap_or_else(|e| panic!("compose.toml with the compose env ({id}): {e}"));
        assert_eq!(c.refresh.replica_id.as_deref(), Some(id.as_str()));

        // Redis: the compose service `redis`, as the ACL file's `wxtoken` user.
        assert_eq!(c.redis.mode, RedisMode::Standalone);
        assert_eq!(c.redis.key_prefix, "wxtoken");
        let url = reqwest::Url::parse(c.redis.url.expose_secret()).unwrap();
        assert_eq!(
            (url.scheme(), url.host_str(), url.port(), url.path()),
            ("redis", Some("redis"), Some(6379), "/0")
        );
        let (password, key_patterns) = acl_user("wxtoken");
        assert_eq!(url.username(), "wxtoken");
        assert_eq!(
            url.password(),
            Some(password.as_str()),
            "password of deploy/redis-acl.conf"
        );
        assert!(
            key_patterns.contains(&format!("{}:*", c.redis.key_prefix)),
            "the ACL grants the prefix: {key_patterns:?}"
        );
        assert!(COMPOSE_YML.contains("./deploy/redis-acl.conf:/etc/redis/users.acl:ro"));

        // HTTP on 0.0.0.0:8088 (healthcheck, consumer), keys from env.
        assert_eq!(c.http.listen, SocketAddr::from(([0, 0, 0, 0], 8088)));
        assert_eq!(
            c.http.api_keys,
            Some(SecretRef::Env("WXTOKEN_API_KEYS".into()))
        );
        let keys: Vec<&str> = c.api_keys.iter().map(|k| k.expose_secret()).collect();
        assert_eq!(
            keys,
            [consumer_key.as_str()],
            "the consumer's key is accepted"
        );

        // Upstream: the compose service `wechat-sim`, with its app and secret.
        assert_eq!(c.upstream.base_url, "http://wechat-sim:9000");
        assert_eq!(
            ids(&c),
            [("shop", "wx00000000000000d1", UpstreamApi::Token)]
        );
        assert_eq!(c.apps[0].appid, sim_appid);
        assert_eq!(c.apps[0].secret().unwrap().expose_secret(), sim_secret);

        // One refresh per sim token lifetime, within the sim's quota.
        let r = &c.refresh;
        assert!(
            r.refresh_ahead < sim_ttl / 2,
            "refresh_ahead {:?} leaves most of a {sim_ttl:?} token's life",
            r.refresh_ahead
        );
        let lifetimes_per_day = 86_400 / (sim_ttl - r.refresh_ahead).as_secs();
        assert!(
            lifetimes_per_day < r.daily_budget && r.daily_budget <= sim_quota,
            "{lifetimes_per_day} refreshes/day, budget {}, sim quota {sim_quota}",
            r.daily_budget
        );
    }
}

/// deploy/k8s/wxtoken.toml (the ConfigMap) with the env and mounts of
/// deploy/k8s/deployment.yaml.
#[test]
fn k8s_config_validates_with_the_deployment_environment() {
    let mount = "/run/secrets/wxtoken";
    for needed in [
        format!("mountPath: {mount}"),
        "mountPath: /etc/wxtoken".to_owned(),
        "name: WXTOKEN__REFRESH__REPLICA_ID".to_owned(),
        "fieldPath: metadata.name".to_owned(),
        "name: WXTOKEN__REDIS__URL".to_owned(),
        "containerPort: 8088".to_owned(),
        "value: /etc/wxtoken/wxtoken.toml".to_owned(),
    ] {
        assert!(
            K8S_DEPLOYMENT.contains(&needed),
            "deployment.yaml lacks `{needed}`"
        );
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("shop-secret"), "app-secret\n").unwrap();
    std::fs::write(dir.path().join("api-keys"), "key-1\nkey-2\n").unwrap();
    let text = K8S_TOML.replace(mount, &dir.path().display().to_string());
    for file in ["shop-secret", "api-keys"] {
        assert!(
            K8S_DEPLOYMENT.contains(&format!("path: {file}")),
            "deployment.yaml projects {file}"
        );
    }
    let vars = [
        (
            "WXTOKEN__REDIS__URL".to_owned(),
            "rediss://wxtoken:pw@redis.example.internal:6380/0".to_owned(),
        ),
        (
            "WXTOKEN__REFRESH__REPLICA_ID".to_owned(),
            "wxtoken-7d9f-abcde".to_owned(),
        ),
    ];
    let c = parse_owned(&text, &vars).unwrap_or_else(|e| panic!("k8s wxtoken.toml: {e}"));
    assert_eq!(c.redis.key_prefix, "wxtoken");
    assert!(c.redis.url.expose_secret().starts_with("rediss://wxtoken:"));
    assert_eq!(c.http.listen, SocketAddr::from(([0, 0, 0, 0], 8088)));
    assert_eq!(c.api_keys.len(), 2);
    assert_eq!(c.apps[0].secret().unwrap().expose_secret(), "app-secret");
    assert_eq!(c.refresh.replica_id.as_deref(), Some("wxtoken-7d9f-abcde"));
    assert_eq!(
        c.refresh,
        RefreshConfig {
            replica_id: c.refresh.replica_id.clone(),
            ..RefreshConfig::default()
        }
    );
    assert_eq!(c.upstream.base_url, "https://api.weixin.qq.com");
}
