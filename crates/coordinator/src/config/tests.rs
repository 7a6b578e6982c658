//! Tests of config loading: the shipped examples, defaults, env overrides,
//! every refusal (by the exact key it names) and secret hygiene. The process
//! env is never touched: each test injects an [`Env`].

use std::io::Write;
use std::net::SocketAddr;

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

/// The files docker-compose.yml and deploy/k8s run with.
mod deploy;
/// Every refusal, by the exact key it names.
mod malformed;
