//! The `wxtoken` command line: malformed configs exit 2 naming the key;
//! `status` shows errors and quota; `get`, `invalidate`, `check-config`.

use std::process::Command;
use std::time::Duration;

use wxtoken_e2e::{Fleet, SECRET, Timing, wxtoken_bin};

const GOOD_APP: &str =
    "[[apps]]\nid = \"shop\"\nappid = \"wx1\"\nsecret = { env = \"E2E_SECRET\" }\n";

/// (config text, the key its error must name)
fn malformed() -> Vec<(String, &'static str)> {
    let with = |extra: &str| format!("{extra}\n{GOOD_APP}");
    vec![
        ("this is = = not toml".into(), "config"),
        ("[redis]\nurl = \"redis://127.0.0.1\"\n".into(), "apps"),
        (with("[refresh]\nlock_tt = \"30s\""), "refresh.lock_tt"),
        (
            with("[refresh]\nlock_ttl = \"thirty seconds\""),
            "refresh.lock_ttl",
        ),
        (
            with("[refresh]\nlock_ttl = \"10s\"\nupstream_timeout = \"6s\""),
            "refresh.upstream_timeout",
        ),
        (
            with("[refresh]\nrefresh_ahead = \"5s\""),
            "refresh.refresh_ahead",
        ),
        (with("[refresh]\ndaily_budget = 0"), "refresh.daily_budget"),
        (
            with("[refresh]\npoll_interval = \"0s\""),
            "refresh.poll_interval",
        ),
        (
            with("[redis]\nurl = \"http://127.0.0.1:6379\""),
            "redis.url",
        ),
        (with("[redis]\nmode = \"sharded\""), "redis.mode"),
        (with("[redis]\nkey_prefix = \"a{b}\""), "redis.key_prefix"),
        (
            with("[upstream]\nbase_url = \"ftp://x\""),
            "upstream.base_url",
        ),
        (
            "[[apps]]\nappid = \"wx1\"\nsecret = \"plain-text-secret\"\n".into(),
            "apps[0].secret",
        ),
        (
            "[[apps]]\nappid = \"wx1\"\nsecret = { env = \"E2E_UNSET_VARIABLE\" }\n".into(),
            "apps[0].secret",
        ),
        (
            "[[apps]]\nid = \"bad id!\"\nappid = \"wx1\"\nsecret = { env = \"E2E_SECRET\" }\n"
                .into(),
            "apps[0].id",
        ),
        (
            format!("{GOOD_APP}{}", GOOD_APP.replace("wx1", "wx2")),
            "apps[1].id",
        ),
        (
            "[[apps]]\nappid = \"wx1\"\nsecret = { env = \"E2E_SECRET\" }\napi = \"v2\"\n".into(),
            "apps[0].api",
        ),
        (with("[http]\nlisten = \"not an address\""), "http.listen"),
        (
            with("[[wecom]]\nid = \"hr\"\ncorpid = \"ww 1\"\nsecret = { env = \"E2E_SECRET\" }"),
            "wecom[0].corpid",
        ),
        (
            with("[[wecom]]\ncorpid = \"ww1\"\nsecret = { env = \"E2E_SECRET\" }"),
            "wecom[0].id",
        ),
        (
            with(
                "[[wecom]]\nid = \"hr\"\ncorpid = \"ww1\"\nsecret = { env = \"E2E_SECRET\" }\ntickets = [\"agent_config\"]",
            ),
            "wecom[0].agentid",
        ),
        (
            GOOD_APP.replace("E2E_SECRET\" }", "E2E_SECRET\" }\ntickets = [\"card\"]"),
            "apps[0].tickets[0]",
        ),
    ]
}

#[test]
fn malformed_configs_exit_2_and_name_the_offending_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = malformed();
    assert!(cases.len() >= 12);
    for (i, (text, key)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.toml"));
        std::fs::write(&path, text).unwrap();
        for command in ["check-config", "serve"] {
            let out = Command::new(wxtoken_bin())
                .args([command, "--config"])
                .arg(&path)
                .env("E2E_SECRET", SECRET)
                .env_remove("E2E_UNSET_VARIABLE")
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                out.status.code(),
                Some(2),
                "case {i} ({key}) `{command}`: {stderr}"
            );
            assert!(
                stderr.contains(&format!("`{key}`")),
                "case {i}: expected key `{key}` in: {stderr}"
            );
            assert!(
                !stderr.contains(SECRET) && !stderr.contains("plain-text-secret"),
                "secret in error: {stderr}"
            );
        }
    }
    // An environment override that names no key is an error too.
    let path = dir.path().join("good.toml");
    std::fs::write(&path, GOOD_APP).unwrap();
    let out = Command::new(wxtoken_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("E2E_SECRET", SECRET)
        .env("WXTOKEN__REFRESH__LOCK_TT", "3s")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("WXTOKEN__REFRESH__LOCK_TT"));
    // No config at all.
    let out = Command::new(wxtoken_bin())
        .arg("serve")
        .env_remove("WXTOKEN_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_prints_the_resolved_config_with_secrets_redacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    std::fs::write(
        &path,
        format!("[redis]\nurl = \"redis://:hunter2@127.0.0.1:6379/0\"\n{GOOD_APP}"),
    )
    .unwrap();
    let out = Command::new(wxtoken_bin())
        .args(["check-config", "--config"])
        .arg(&path)
        .env("E2E_SECRET", SECRET)
        .env("WXTOKEN__REFRESH__LOCK_TTL", "20s")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("E2E_SECRET"),
        "shows the secret's reference: {stdout}"
    );
    assert!(stdout.contains("20s"), "env override applied: {stdout}");
    assert!(
        stdout.contains("refresh_ahead"),
        "defaults filled in: {stdout}"
    );
    assert!(
        !stdout.contains(SECRET) && !stdout.contains("hunter2"),
        "secret printed: {stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_get_and_invalidate_work_against_a_running_fleet() {
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(30),
        ..Timing::default()
    })
    .await;
    fleet.spawn_replicas(2);
    let token = fleet.wait_generation(1, Duration::from_secs(10)).await;

    let out = fleet.cli(&["get", "shop"]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token.value);
    let out = fleet.cli(&["get", "nope"]);
    assert_eq!(out.status.code(), Some(2), "unknown id is a usage error");

    let out = fleet.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status[0]["generation"], token.generation);
    assert_eq!(status[0]["quota_used_today"], 1);
    assert!(
        status[0].get("access_token").is_none(),
        "status never shows the token"
    );
    assert!(!String::from_utf8_lossy(&out.stdout).contains(&token.value));

    // A report of a token WeChat accepts is checked and refused.
    let out = fleet.cli(&["invalidate", "shop", "--token", &token.value]);
    let said = format!("reported generation {}", token.generation);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&said));
    let refused =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            let out = fleet.cli(&["status", "--json"]);
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
            v[0]["reports"]["last_refusal_reason"] == "token_valid"
        });
    assert!(refused, "the report of a valid token was refused");
    assert_eq!(fleet.app().fetch_calls, 1);
    // Once WeChat rejects it, the next report (after the check lapses) refreshes.
    assert!(fleet.sim.revoke(&token.value));
    let reported =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            let out = fleet.cli(&["invalidate", "shop", "--token", &token.value]);
            String::from_utf8_lossy(&out.stdout).contains(&said)
        });
    assert!(reported);
    let fresh = fleet
        .wait_generation(token.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(fresh.value, token.value);
    let out = fleet.cli(&["invalidate", "shop", "--token", &token.value]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("no longer stored"));

    let out = fleet.cli(&["refresh", "shop", "--force", "--by", "alice@ops"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("requested by alice@ops"));
    fleet
        .wait_generation(fresh.generation + 1, Duration::from_secs(5))
        .await;
    // The replica that replaced the fresh token logged who asked.
    let logged =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            fleet.all_logs().contains("alice@ops")
        });
    assert!(logged, "the forced refresh was not logged with who asked");

    let table = String::from_utf8_lossy(&fleet.cli(&["status"]).stdout).to_string();
    assert!(
        table.contains("shop") && table.contains("3/1000"),
        "{table}"
    );
    fleet.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_shows_a_fatal_error_and_a_spent_budget() {
    let mut fleet = Fleet::new(Timing {
        daily_budget: 2,
        ..Timing::default()
    })
    .await;
    fleet.spawn_replica_with("a-wrong-secret-Zx81");
    fleet
        .wait_sim(Duration::from_secs(10), "the 40125", |a| {
            a.fetch_failed.contains_key("40125")
        })
        .await;
    let table = String::from_utf8_lossy(&fleet.cli(&["status"]).stdout).to_string();
    assert!(
        table.contains("40125") && table.contains("fatal"),
        "{table}"
    );
    assert!(!table.contains("a-wrong-secret-Zx81"));
    // Fix the secret (replace the replica), let it spend the budget of 2.
    drop(fleet.replicas.remove(0));
    fleet.spawn_replica_with(SECRET);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    let out = fleet.cli(&["reset", "shop"]);
    assert!(out.status.success());
    let cycle = fleet.timing.token_ttl - fleet.timing.refresh_ahead;
    fleet
        .wait_sim(cycle * 4, "2 calls after the reset", |a| a.fetch_calls >= 4)
        .await;
    tokio::time::sleep(cycle * 2).await;
    let out = fleet.cli(&["status", "--json"]);
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status[0]["quota_used_today"], 2);
    assert_eq!(status[0]["last_error"]["code"], "daily_budget");
    assert_eq!(status[0]["last_error"]["class"], "quota_exhausted");
    fleet.assert_logs_clean();
}
