//! Quota reconciliation (issue 16 item 4) against real processes: a third
//! party's `cgi-bin/token` call behind the fleet's back shows as a gap in
//! every replica's `/metrics` and in `wxtoken status`; a fleet alone never
//! shows one and checks once per interval fleet-wide; `wxtoken clear-quota`
//! refuses without `--yes`, resets through `clear_quota/v2` and explains
//! 48006 after ten resets.

use std::time::{Duration, Instant};

use wxtoken_e2e::{APPID, Fleet, ID, SECRET, Timing};

/// The check interval of these fleets.
const INTERVAL: Duration = Duration::from_secs(2);

fn spawn_checking(fleet: &mut Fleet, n: usize) {
    let interval = format!("{}ms", INTERVAL.as_millis());
    for _ in 0..n {
        fleet.spawn_replica_env(
            SECRET,
            &[("WXTOKEN__REFRESH__QUOTA_CHECK_INTERVAL", interval.as_str())],
        );
    }
}

async fn metrics(addr: std::net::SocketAddr) -> String {
    let http = reqwest::Client::new();
    match http.get(format!("http://{addr}/metrics")).send().await {
        Ok(r) => r.text().await.unwrap_or_default(),
        Err(_) => String::new(),
    }
}

/// The value of `wxtoken_quota_foreign_fetches` for the fleet's app.
fn foreign_gauge(metrics: &str) -> Option<f64> {
    let series = format!("wxtoken_quota_foreign_fetches{{app=\"{ID}\",kind=\"app_token\"}} ");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

fn status_json(fleet: &Fleet) -> serde_json::Value {
    let out = fleet.cli(&["status", "--json"]);
    assert!(out.status.success(), "status: {out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    rows.as_array()
        .and_then(|rows| rows.iter().find(|r| r["id"] == ID).cloned())
        .expect("the app's row")
}

async fn wait_for<T>(deadline: Duration, what: &str, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let until = Instant::now() + deadline;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < until,
            "timed out after {deadline:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_third_party_fetch_shows_as_a_gap_in_metrics_and_status_within_one_interval() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(30),
        overlap: Duration::from_secs(10),
        refresh_ahead: Duration::from_secs(5),
        ..Timing::default()
    })
    .await;
    spawn_checking(&mut fleet, 2);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    // Both replicas export the fleet's result once a check ran: no gap.
    for r in &fleet.replicas {
        let addr = r.http;
        wait_for(Duration::from_secs(10), "a gauge of 0", async || {
            foreign_gauge(&metrics(addr).await).filter(|v| *v == 0.0)
        })
        .await;
    }
    // The gauge reads 0 before any check is stored too: wait for the first
    // stored result (the fleet's one check per interval).
    let first = wait_for(INTERVAL * 3, "a stored quota check", async || {
        let row = status_json(&fleet);
        (!row["quota_check"].is_null()).then_some(row)
    })
    .await;
    assert_eq!(first["quota_check"]["foreign_fetches"], 0);

    fleet
        .sim
        .external_refresh(APPID)
        .expect("a third party fetches");
    let fetched = Instant::now();
    let addrs: Vec<_> = fleet.replicas.iter().map(|r| r.http).collect();
    for addr in addrs {
        wait_for(INTERVAL * 3, "the gap in /metrics", async || {
            foreign_gauge(&metrics(addr).await).filter(|v| *v == 1.0)
        })
        .await;
    }
    let took = fetched.elapsed();
    // One interval, plus the quarter-interval tick, plus a loaded machine.
    assert!(
        took < INTERVAL + INTERVAL / 4 + Duration::from_secs(1),
        "gap seen after {took:?}"
    );

    let row = status_json(&fleet);
    let check = &row["quota_check"];
    assert_eq!(check["foreign_fetches"], 1, "{row}");
    assert_eq!(
        check["upstream_used"].as_u64().unwrap(),
        check["fleet_used"].as_u64().unwrap() + 1
    );
    let text = fleet.cli(&["status"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("WARNING shop: 1 cgi-bin/token fetches today were not made by this fleet"),
        "{text}"
    );
    let logs = fleet.all_logs();
    assert!(
        logs.contains("someone else fetched cgi-bin/token"),
        "no warning logged"
    );
    fleet.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fleet_alone_shows_no_gap_and_checks_once_per_interval() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new(Timing::default()).await;
    spawn_checking(&mut fleet, 3);
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    wait_for(Duration::from_secs(10), "a first check", async || {
        (fleet.app().quota_get_calls > 0).then_some(())
    })
    .await;
    // Several refreshes (6 s tokens) and several checks by three replicas.
    let start = fleet.app().quota_get_calls;
    let window = INTERVAL * 4;
    let began = Instant::now();
    tokio::time::sleep(window).await;
    let checks = fleet.app().quota_get_calls - start;
    let elapsed = began.elapsed();
    let most = elapsed.as_millis() / INTERVAL.as_millis() + 1;
    assert!(
        (2..=u64::try_from(most).unwrap()).contains(&checks),
        "{checks} quota/get calls by 3 replicas in {elapsed:?} (interval {INTERVAL:?})"
    );
    assert!(
        fleet.app().token_fetch_ok >= 3,
        "the fleet refreshed meanwhile"
    );
    for r in &fleet.replicas {
        assert_eq!(foreign_gauge(&metrics(r.http).await), Some(0.0));
    }
    let row = status_json(&fleet);
    assert_eq!(row["quota_check"]["foreign_fetches"], 0, "{row}");
    assert!(!fleet.all_logs().contains("someone else fetched"));
}

#[tokio::test(flavor = "multi_thread")]
async fn clear_quota_needs_yes_resets_and_explains_48006_after_ten() {
    let fleet = Fleet::new(Timing::default()).await;
    fleet
        .sim
        .external_refresh(APPID)
        .expect("one fetch to clear");
    let out = fleet.cli(&["clear-quota", ID]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("--yes") && err.contains("10 resets"), "{err}");
    assert_eq!(fleet.app().quota_clears, 0, "nothing was called");
    assert_eq!(fleet.app().quota_used_today, 1);

    for n in 1..=10 {
        let out = fleet.cli(&["clear-quota", ID, "--yes"]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "reset {n}: {out:?}");
        assert!(text.contains(&format!("Reset {n} of 10")), "{text}");
    }
    let app = fleet.app();
    assert_eq!((app.quota_clears, app.quota_used_today), (10, 0));

    let out = fleet.cli(&["clear-quota", ID, "--yes"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("48006")
            && err.contains("all 10 quota resets")
            && err.contains("1st of next month"),
        "{err}"
    );
    assert_eq!(err.matches("48006").count(), 1, "explained once: {err}");
    assert!(!err.contains(SECRET) && !String::from_utf8_lossy(&out.stdout).contains(SECRET));
    assert_eq!(fleet.app().quota_clears_refused, 1);
}
