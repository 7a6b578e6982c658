//! Scenario 1 with processes: eight `wxtoken serve` processes make one
//! upstream call at cold start and one per token lifetime.

use std::time::Duration;

use wxtoken_e2e::{Fleet, Timing, watch_reads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_processes_make_one_fetch_per_token_lifetime() {
    let timing = Timing::default();
    let cycle = timing.token_ttl - timing.refresh_ahead;
    let mut fleet = Fleet::new(timing).await;
    fleet.spawn_replicas(8);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.app().fetch_calls, 1, "cold start of 8 processes");
    let (reads, app) = tokio::join!(
        watch_reads(&fleet, cycle * 3, Duration::from_millis(50)),
        fleet.wait_sim(cycle * 6, "4 tokens", |a| a.fetch_ok >= 4)
    );
    eprintln!(
        "8 processes: {} fetches for 4 lifetimes, reads {reads:?}",
        app.fetch_calls
    );
    assert_eq!(app.fetch_calls, 4);
    assert_eq!(app.max_concurrent_fetches, 1);
    assert_eq!((reads.1, reads.2), (0, 0), "missing / rejected reads");
    fleet.assert_logs_clean();
}

/// README's first command: the demo shows one fetch per lifetime.
#[test]
fn the_demo_runs_and_shows_one_fetch_per_lifetime() {
    let redis = wxtoken_testkit::RedisServer::spawn();
    let out = std::process::Command::new(wxtoken_e2e::wxtoken_bin())
        .args([
            "demo",
            "--redis",
            &redis.url(),
            "--token-ttl",
            "8s",
            "--lifetimes",
            "2",
        ])
        .output()
        .expect("demo runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("refreshed by replica-"), "{stdout}");
    let summary = stdout
        .lines()
        .find(|l| l.starts_with("summary:"))
        .expect("summary line");
    // "… N upstream fetches for M token lifetimes begun, max concurrent fetches 1, reader X ok / 0 rejected"
    let words: Vec<&str> = summary.split_whitespace().collect();
    let at = |w: &str| words.iter().position(|x| *x == w).expect(w);
    let fetches: u64 = words[at("upstream") - 1].parse().unwrap();
    let lifetimes: u64 = words[at("lifetimes") - 2].parse().unwrap();
    assert_eq!(fetches, lifetimes, "{summary}");
    assert!(summary.contains("max concurrent fetches 1"), "{summary}");
    assert!(summary.ends_with("/ 0 rejected"), "{summary}");
    // The demo cleaned up after itself.
    let mut c = redis.client().get_connection().unwrap();
    let keys: Vec<String> = redis::cmd("KEYS").arg("*").query(&mut c).unwrap();
    assert!(keys.is_empty(), "left keys behind: {keys:?}");
}
