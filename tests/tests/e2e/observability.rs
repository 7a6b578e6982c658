//! What operators load next to the fleet: every `wxtoken_*` name in the
//! Grafana dashboard and the alert rules is a metric the coordinator
//! defines, and a live replica's `/metrics` passes `promtool check metrics`.
//!
//! promtool comes from Debian's `prometheus` package unpacked under
//! `target/prometheus` (`.ci/run` does it; nothing is installed), or
//! `$WXTOKEN_PROMTOOL`, or PATH. Without it the test fails, naming the
//! command that gets it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use wxtoken_coordinator::metrics::{ALL, MetricType};
use wxtoken_e2e::{Fleet, SECRET, Timing};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every `wxtoken_…` token in `text`.
fn names_in(text: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("wxtoken_") {
        let before = rest[..at].chars().next_back();
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.push(tail[..end].to_owned());
        }
        rest = &tail[end..];
    }
    names
}

/// True when `name` is a series the coordinator exports.
fn defined(name: &str) -> bool {
    ALL.iter().any(|(metric, kind, _)| {
        name == *metric
            || (*kind == MetricType::Histogram
                && ["_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s) == Some(metric)))
    })
}

#[test]
fn dashboard_and_alerts_use_only_defined_metrics() {
    for file in [
        "deploy/grafana/wxtoken.json",
        "deploy/prometheus/alerts.yaml",
        "deploy/prometheus/alerts.test.yaml",
    ] {
        let text = std::fs::read_to_string(repo().join(file)).expect(file);
        let names = names_in(&text);
        assert!(names.len() >= 8, "{file}: only {names:?}");
        let unknown: Vec<_> = names.iter().filter(|n| !defined(n)).collect();
        assert!(
            unknown.is_empty(),
            "{file} uses undefined metrics: {unknown:?}"
        );
    }
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(repo().join("deploy/grafana/wxtoken.json")).expect("dashboard"),
    )
    .expect("the dashboard is JSON");
    assert!(dashboard["panels"].as_array().is_some_and(|p| p.len() >= 8));
}

#[test]
fn the_name_check_catches_an_unknown_metric() {
    assert!(defined("wxtoken_upstream_request_duration_seconds_bucket"));
    assert!(!defined("wxtoken_refresh_total_bucket"), "not a histogram");
    assert!(!defined("wxtoken_token_ttl"));
    assert_eq!(
        names_in("rate(wxtoken_refresh_total[5m]) / my_wxtoken_x"),
        ["wxtoken_refresh_total"]
    );
}

fn promtool() -> PathBuf {
    let candidates = [
        std::env::var_os("WXTOKEN_PROMTOOL").map(PathBuf::from),
        Some(repo().join("target/prometheus/usr/bin/promtool")),
        Some(PathBuf::from("promtool")),
    ];
    for c in candidates.into_iter().flatten() {
        if Command::new(&c)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
        {
            return c;
        }
    }
    panic!(
        "promtool not found: run `bash .ci/run` (need_promtool), or `apt-get download prometheus && \
         dpkg -x prometheus_*.deb target/prometheus`, or set WXTOKEN_PROMTOOL"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_live_replicas_metrics_pass_promtool_check_metrics() {
    let promtool = promtool();
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replica_env(
        SECRET,
        &[("WXTOKEN__REFRESH__QUOTA_CHECK_INTERVAL", "500ms")],
    );
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    let url = format!("http://{}/metrics", fleet.replicas[0].http);
    let http = reqwest::Client::new();
    // Wait until the series of every subsystem exist (a refresh, a lock,
    // a quota check, the Redis probe, HTTP traffic).
    let until = Instant::now() + Duration::from_secs(15);
    let body = loop {
        let body = match http.get(&url).send().await {
            Ok(r) => r.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        };
        let wanted = [
            "wxtoken_refresh_total",
            "wxtoken_lock_attempts_total",
            "wxtoken_quota_foreign_fetches",
            "wxtoken_redis_up",
            "wxtoken_token_ttl_seconds",
            "wxtoken_http_requests_total",
            "wxtoken_upstream_request_duration_seconds_bucket",
        ];
        if wanted.iter().all(|w| body.contains(w)) {
            break body;
        }
        assert!(Instant::now() < until, "metrics incomplete: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let check = |text: &str| {
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool runs");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(text.as_bytes())
            .expect("metrics piped");
        child.wait_with_output().expect("promtool finishes")
    };
    let out = check(&body);
    assert!(
        out.status.success(),
        "promtool check metrics complained:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // The check can fail: a counter without the _total suffix is refused.
    let bad =
        check("# HELP wxtoken_bad A bad counter.\n# TYPE wxtoken_bad counter\nwxtoken_bad 1\n");
    assert!(
        !bad.status.success(),
        "promtool accepted a malformed counter: {bad:?}"
    );
}
