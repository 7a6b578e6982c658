//! The watch endpoint (issue 17 item 1) from non-Rust clients: README's
//! Python example (`tests/watch/watch.py`, standard library only) follows a
//! real replica's token across refreshes and resumes with `Last-Event-ID`;
//! the Node example (`tests/watch/watch.mjs`) reads the current one.

use std::process::Command;
use std::time::Duration;

use wxtoken_e2e::{API_KEY, Fleet, ID, Timing};

fn script(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("watch")
        .join(name)
}

/// Runs README's Python example for `count` values; the JSON line of each.
fn watch(base: &str, count: u32, resume: Option<&str>) -> Vec<serde_json::Value> {
    run(
        Command::new("python3").arg(script("watch.py")),
        base,
        count,
        resume,
    )
}

fn run(cmd: &mut Command, base: &str, count: u32, resume: Option<&str>) -> Vec<serde_json::Value> {
    cmd.args([base, ID, API_KEY, &count.to_string()]);
    if let Some(id) = resume {
        cmd.arg(id);
    }
    let out = cmd.output().expect("the example runs");
    assert!(
        out.status.success(),
        "the watch example failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_client_follows_refreshes_and_resumes_with_last_event_id() {
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replicas(1);
    let first = fleet.wait_generation(1, Duration::from_secs(15)).await;
    let base = format!("http://{}", fleet.replicas[0].http);
    let ready = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            reqwest::get(format!("{base}/readyz"))
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    assert!(ready, "the replica never became ready");

    // The current value at once, then the next generation (a refresh every
    // ~3.5 s with 6 s tokens).
    let seen = tokio::task::spawn_blocking({
        let base = base.clone();
        move || watch(&base, 2, None)
    })
    .await
    .unwrap();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (a, b) = (&seen[0], &seen[1]);
    assert!(a["generation"].as_u64() >= Some(first.generation), "{a}");
    assert_eq!(a["id"], a["generation"].as_u64().unwrap().to_string());
    assert!(
        b["generation"].as_u64() > a["generation"].as_u64(),
        "{seen:?}"
    );
    assert_ne!(a["access_token"], b["access_token"]);
    let stored = fleet.token().await.expect("a token");
    assert!(stored.generation >= b["generation"].as_u64().unwrap());

    // Resume after the first: the next value sent is newer than it.
    let after = a["id"].as_str().unwrap().to_owned();
    let resumed = tokio::task::spawn_blocking({
        let base = base.clone();
        move || watch(&base, 1, Some(&after))
    })
    .await
    .unwrap();
    let r = &resumed[0];
    assert!(r["generation"].as_u64() > a["generation"].as_u64(), "{r}");
    eprintln!(
        "watch: python followed generations {} → {}; resumed after {} with {}",
        a["generation"], b["generation"], a["generation"], r["generation"]
    );

    // README's Node example (Node 18+, built-in fetch) gets the same value.
    let node = tokio::task::spawn_blocking({
        let base = base.clone();
        move || {
            run(
                Command::new("node").arg(script("watch.mjs")),
                &base,
                1,
                None,
            )
        }
    })
    .await
    .unwrap();
    let now = fleet.token().await.expect("a token");
    assert!(node[0]["generation"].as_u64() >= Some(r["generation"].as_u64().unwrap()));
    assert!(node[0]["generation"].as_u64() <= Some(now.generation));

    // README shows both examples as they are here.
    let readme = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"),
    )
    .unwrap();
    for name in ["watch.py", "watch.mjs"] {
        let text = std::fs::read_to_string(script(name)).unwrap();
        assert!(
            readme.contains(text.trim_end()),
            "README's copy of {name} differs"
        );
    }

    // Without a key: 401 before any stream.
    let r = reqwest::get(format!("{base}/v1/apps/{ID}/access_token/watch"))
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    fleet.assert_logs_clean();
}
