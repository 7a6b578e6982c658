//! Deployment configs: the files docker-compose.yml and deploy/k8s run
//! with must validate with the environment those deployments give them.

use std::net::SocketAddr;

use super::*;

const COMPOSE_YML: &str = include_str!("../../../../../docker-compose.yml");
const COMPOSE_TOML: &str = include_str!("../../../../../deploy/examples/compose.toml");
const REDIS_ACL: &str = include_str!("../../../../../deploy/redis-acl.conf");
const K8S_TOML: &str = include_str!("../../../../../deploy/k8s/wxtoken.toml");
const K8S_DEPLOYMENT: &str = include_str!("../../../../../deploy/k8s/deployment.yaml");

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
