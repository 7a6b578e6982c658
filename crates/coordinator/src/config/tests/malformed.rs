//! Every refusal of a malformed config, by the exact key it names.

use super::refused;

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
fn malformed_configs_name_their_key() {
    let app = "[[apps]] | appid = 'wx0123456789abcdef' | secret = { env = 'SHOP_SECRET' }";
    for (key, case) in MALFORMED {
        let text = case.replace("APP", app).replace(" | ", "\n");
        let e = refused(&text, &[("EMPTY", "")]);
        assert_eq!(&e.key, key, "{text}\n→ {e}");
        assert_eq!(e.to_string(), format!("config key `{key}`: {}", e.message));
    }
}
