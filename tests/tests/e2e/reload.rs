//! Hot reload (issue 16): three `wxtoken serve` processes take a changed
//! config on SIGHUP — an app added, a secret changed, an app removed, an
//! invalid file refused — while readers hammer every replica's HTTP API.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use wxtoken_e2e::{API_KEY, Fleet, ID, Timing};

const SECOND_APPID: &str = "wx00000000000000a2";
const SECOND_SECRET: &str = "e2e-second-secret-Pn4";
const THIRD_APPID: &str = "wx00000000000000a3";
const THIRD_SECRET: &str = "e2e-third-secret-Jd8";

fn app_entry(id: &str, appid: &str, secret_file: &std::path::Path) -> String {
    format!(
        "\n[[apps]]\nid = \"{id}\"\nappid = \"{appid}\"\nsecret = {{ file = \"{}\" }}\n",
        secret_file.display()
    )
}

/// Polls `id`'s token on every replica until all serve one; the time it took.
async fn served_everywhere(
    http: &reqwest::Client,
    fleet: &Fleet,
    id: &str,
    deadline: Duration,
) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < deadline {
        let mut all = true;
        for r in &fleet.replicas {
            // A credential without a token holds a read for `token_wait`
            // (3 s): poll with short requests.
            let ok = http
                .get(format!("http://{}/v1/apps/{id}/access_token", r.http))
                .bearer_auth(API_KEY)
                .timeout(Duration::from_millis(100))
                .send()
                .await
                .is_ok_and(|r| r.status() == 200);
            all &= ok;
        }
        if all {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// The status every replica answers for `id` now.
async fn statuses(http: &reqwest::Client, fleet: &Fleet, id: &str) -> Vec<u16> {
    let mut out = Vec::new();
    for r in &fleet.replicas {
        let s = http
            .get(format!("http://{}/v1/apps/{id}/access_token", r.http))
            .bearer_auth(API_KEY)
            .send()
            .await
            .map_or(0, |r| r.status().as_u16());
        out.push(s);
    }
    out
}

fn hangup(fleet: &Fleet) {
    for r in &fleet.replicas {
        r.signal(Signal::SIGHUP);
    }
}

/// Every replica's config generation as `wxtoken status` prints it.
fn generations(fleet: &Fleet) -> Vec<String> {
    let out = fleet.cli(&["status"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .skip_while(|l| !l.starts_with("REPLICA"))
        .skip(1)
        .take_while(|l| !l.is_empty() && !l.starts_with("replicas run"))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_owned))
        .collect()
}

async fn wait_generations(fleet: &Fleet, want: &str, deadline: Duration) -> Vec<String> {
    let started = Instant::now();
    loop {
        let g = generations(fleet);
        if (g.len() == 3 && g.iter().all(|x| x == want)) || started.elapsed() > deadline {
            return g;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_take_a_changed_config_on_sighup_without_a_failed_read() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new_with(
        Timing {
            token_ttl: Duration::from_secs(120),
            ..Timing::default()
        },
        |sim| {
            sim.app(SECOND_APPID, SECOND_SECRET)
                .app(THIRD_APPID, THIRD_SECRET)
        },
    )
    .await;
    let base_config = fleet.config_text();
    let path = fleet.config_path();
    let second_secret = fleet.dir.path().join("second.secret");
    let third_secret = fleet.dir.path().join("third.secret");
    std::fs::write(&second_secret, SECOND_SECRET).unwrap();
    // Third starts with a stale secret (rotated in the console, say).
    std::fs::write(&third_secret, "rotated-away-secret").unwrap();
    fleet.spawn_replicas(3);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    let http = reqwest::Client::new();
    assert!(
        served_everywhere(&http, &fleet, ID, Duration::from_secs(10))
            .await
            .is_some()
    );
    assert_eq!(
        wait_generations(&fleet, "#1", Duration::from_secs(10)).await,
        ["#1", "#1", "#1"]
    );
    let fetches_before = fleet.app().fetch_calls;

    // Readers on every replica for the whole test: not one may fail.
    let stop = Arc::new(AtomicBool::new(false));
    let (reads, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let readers: Vec<_> = fleet
        .replicas
        .iter()
        .map(|r| {
            let url = format!("http://{}/v1/apps/{ID}/access_token", r.http);
            let (http, stop, reads, failed) =
                (http.clone(), stop.clone(), reads.clone(), failed.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    let ok = http
                        .get(&url)
                        .bearer_auth(API_KEY)
                        .send()
                        .await
                        .is_ok_and(|r| r.status() == 200);
                    reads.fetch_add(1, Ordering::Relaxed);
                    if !ok {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            })
        })
        .collect();

    // 1. Add two apps (one with a stale secret) and SIGHUP.
    let added = format!(
        "{base_config}{}{}",
        app_entry("second", SECOND_APPID, &second_secret),
        app_entry("third", THIRD_APPID, &third_secret)
    );
    std::fs::write(&path, &added).unwrap();
    hangup(&fleet);
    let took = served_everywhere(&http, &fleet, "second", Duration::from_secs(5)).await;
    eprintln!("reload: a new app served by all 3 replicas {took:?} after SIGHUP");
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(2)),
        "new app: {took:?}"
    );
    assert_eq!(
        statuses(&http, &fleet, "third").await,
        [503, 503, 503],
        "third is known but has no token"
    );
    assert_eq!(
        wait_generations(&fleet, "#2", Duration::from_secs(3)).await,
        ["#2", "#2", "#2"]
    );

    // 2. Change third's secret: the secret file alone (no SIGHUP).
    std::fs::write(&third_secret, THIRD_SECRET).unwrap();
    let took = served_everywhere(&http, &fleet, "third", Duration::from_secs(5)).await;
    eprintln!("reload: a changed secret served by all 3 replicas {took:?} after the file changed");
    assert!(
        took.is_some_and(|t| t <= Duration::from_secs(3)),
        "changed secret: {took:?}"
    );
    // Served everywhere can mean one replica fetched with the new secret and
    // the others read its token from Redis: each replica's own reload of
    // the secret file (a 1 s poll) is awaited before the next step, which
    // counts generations.
    assert_eq!(
        wait_generations(&fleet, "#3", Duration::from_secs(3)).await,
        ["#3", "#3", "#3"]
    );

    // 3. Remove second and SIGHUP: every replica forgets it.
    let removed = format!(
        "{base_config}{}",
        app_entry("third", THIRD_APPID, &third_secret)
    );
    std::fs::write(&path, &removed).unwrap();
    hangup(&fleet);
    let started = Instant::now();
    while statuses(&http, &fleet, "second").await != [404, 404, 404] {
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "second still served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let generation = wait_generations(&fleet, "#4", Duration::from_secs(3)).await;
    assert_eq!(generation, ["#4", "#4", "#4"]);

    // 4. An invalid file changes nothing.
    let invalid = removed.replace("daily_budget = 1000", "daily_budget = \"lots\"");
    assert_ne!(invalid, removed);
    std::fs::write(&path, invalid).unwrap();
    hangup(&fleet);
    let refused = wxtoken_testkit::wait_until_async(
        Duration::from_secs(3),
        Duration::from_millis(50),
        || async {
            fleet
                .replicas
                .iter()
                .all(|r| r.logs().contains("not reloaded"))
        },
    )
    .await;
    assert!(refused, "a replica did not log the refused reload");
    let logs = fleet.all_logs();
    let line = logs
        .lines()
        .find(|l| l.contains("not reloaded"))
        .unwrap_or_default();
    assert!(
        line.contains("refresh.daily_budget"),
        "the refusal names the key: {line}"
    );
    assert_eq!(statuses(&http, &fleet, "third").await, [200, 200, 200]);
    assert_eq!(statuses(&http, &fleet, ID).await, [200, 200, 200]);
    // The CLI reads the file too: put the valid one back (read again by the
    // file watch, it is the config in force: no new generation).
    std::fs::write(&path, &removed).unwrap();
    assert_eq!(
        generations(&fleet),
        ["#4", "#4", "#4"],
        "a refused file is no new config"
    );

    stop.store(true, Ordering::Relaxed);
    for r in readers {
        r.await.unwrap();
    }
    let (reads, failed) = (
        reads.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    eprintln!("reload: {reads} reads during 4 reloads, {failed} failed");
    assert!(reads > 100, "the readers ran: {reads}");
    assert_eq!(failed, 0, "reads failed during reloads");
    assert_eq!(
        fleet.app().fetch_calls,
        fetches_before,
        "a reload refetched an unchanged app"
    );
    let third = fleet
        .sim
        .stats()
        .app(THIRD_APPID)
        .cloned()
        .unwrap_or_default();
    assert_eq!(third.fetch_ok, 1, "one token for the re-secreted app");
    fleet.assert_logs_clean();
    let logs = fleet.all_logs();
    for s in [SECOND_SECRET, THIRD_SECRET] {
        assert!(!logs.contains(s), "a reloaded secret appears in the logs");
    }
}
