//! Scenarios 4–6: fatal errors, retryable storms and quota limits cost a
//! bounded number of upstream calls across the whole fleet.

use std::time::Duration;

use wechat_sim::Faults;
use wxtoken_common::{ErrorClass, QuotaDay, QuotaOffset};

use crate::fleet::{Fleet, SECRET, Settings, watch_reads};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_costs_one_fetch_per_fatal_cooldown_and_the_old_token_is_served() {
    let settings = Settings {
        token_ttl: Duration::from_secs(5),
        fatal_cooldown: Duration::from_secs(3),
        ..Settings::default()
    };
    let mut fleet = Fleet::start(settings, 1).await;
    let good = fleet.wait_generation(1, Duration::from_secs(5)).await;
    fleet.stop_all().await;
    // The secret was rotated in WeChat but not in our config: 4 replicas now
    // hold a wrong one.
    for _ in 0..4 {
        fleet.add_replica("a-secret-that-was-rotated-away").await;
    }
    // The old token keeps being served until its real expiry.
    let served = fleet.token().await.expect("old token still served");
    assert_eq!(served.value, good.value);
    let observe = Duration::from_secs(8);
    tokio::time::sleep(observe).await;
    let app = fleet.app();
    let wrong = app.fetch_failed.get("40125").copied().unwrap_or(0);
    eprintln!(
        "wrong secret: {wrong} fetches with 40125 in {observe:?} (fatal_cooldown 3s), 4 replicas"
    );
    assert!(wrong >= 1, "the replicas did try");
    assert!(wrong <= 3, "{wrong} fetches in 8 s with a 3 s cooldown");
    assert_eq!(app.fetch_calls, 1 + wrong);
    let status = fleet
        .store
        .status(&fleet.id(), wxtoken_common::Window::Day)
        .await
        .unwrap();
    let last = status.last_error.expect("error recorded");
    assert_eq!(last.code, "40125");
    assert_eq!(last.class, Some(ErrorClass::Fatal));
    assert!(
        last.message.contains("invalid appsecret"),
        "{}",
        last.message
    );
    assert!(
        !last.message.contains("rotated-away"),
        "secret leaked into status"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn half_of_fetches_busy_still_refresh_with_bounded_extra_calls() {
    let settings = Settings::default();
    let cycle = settings.cycle();
    let fleet = Fleet::new(settings).await;
    fleet.set_faults(Faults {
        busy_rate: 0.5,
        seed: Some(7),
        ..Faults::default()
    });
    let mut fleet = fleet;
    for _ in 0..8 {
        fleet.add_replica(SECRET).await;
    }
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    let lifetimes = 6;
    let (reads, app) = tokio::join!(
        watch_reads(&fleet, cycle * lifetimes, Duration::from_millis(50)),
        fleet.wait_sim(cycle * (lifetimes + 4), "7 successful refreshes", |a| a
            .fetch_ok
            >= 7)
    );
    let busy = app.fetch_failed.get("-1").copied().unwrap_or(0);
    eprintln!(
        "50% busy: {} calls for {} tokens ({} answered -1), max concurrent {}, reads {:?}",
        app.fetch_calls, app.fetch_ok, busy, app.max_concurrent_fetches, reads
    );
    assert_eq!(
        app.max_concurrent_fetches, 1,
        "backoff is fleet-wide: never two calls at once"
    );
    assert_eq!(app.fetch_calls, app.fetch_ok + busy);
    // With p = 0.5 a success costs 2 calls on average; allow 3x + slack.
    assert!(
        app.fetch_calls <= 3 * app.fetch_ok + 3,
        "{} calls for {} tokens",
        app.fetch_calls,
        app.fetch_ok
    );
    assert_eq!(reads.2, 0, "a reader got a token WeChat rejects");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daily_budget_stops_upstream_calls_for_the_quota_day() {
    let settings = Settings {
        daily_budget: 3,
        ..Settings::default()
    };
    let cycle = settings.cycle();
    let fleet = Fleet::start(settings, 3).await;
    fleet
        .wait_sim(cycle * 4, "3 fetches", |a| a.fetch_calls >= 3)
        .await;
    tokio::time::sleep(cycle * 2).await;
    assert_eq!(fleet.app().fetch_calls, 3, "no call past the budget");
    let status = fleet
        .store
        .status(&fleet.id(), wxtoken_common::Window::Day)
        .await
        .unwrap();
    assert_eq!(status.quota_used_today, 3);
    let last = status.last_error.expect("budget error recorded");
    assert_eq!(last.code, "daily_budget");
    assert_eq!(last.class, Some(ErrorClass::QuotaExhausted));
    assert!(
        status.gate > Duration::ZERO,
        "gated until the next quota day"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_45009_gates_the_fleet_until_the_next_quota_day() {
    let settings = Settings {
        sim_daily_quota: 2,
        ..Settings::default()
    };
    let cycle = settings.cycle();
    let fleet = Fleet::start(settings, 3).await;
    fleet
        .wait_sim(cycle * 4, "the 45009", |a| {
            a.fetch_failed.contains_key("45009")
        })
        .await;
    tokio::time::sleep(cycle * 2).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 3, "2 tokens, one 45009, then silence");
    let status = fleet
        .store
        .status(&fleet.id(), wxtoken_common::Window::Day)
        .await
        .unwrap();
    let last = status.last_error.expect("recorded");
    assert_eq!(
        (last.code.as_str(), last.class),
        ("45009", Some(ErrorClass::QuotaExhausted))
    );
    let now = fleet.store.redis_time_ms().await.unwrap();
    let day = QuotaDay::from_unix_ms(now as i64, QuotaOffset::default());
    let expected = Duration::from_millis(day.next_start_unix_ms() as u64 - now);
    let diff = status.gate.abs_diff(expected);
    assert!(
        diff < Duration::from_secs(5),
        "gate {:?} vs next quota day in {expected:?}",
        status.gate
    );
}
