//! Scenarios 8 and 9 under invariant 7: a report is checked with WeChat
//! before anything is spent. Many reports of a token WeChat rejects cause one
//! refresh; reports of a token WeChat accepts cause none; a token a third
//! party killed heals with one fetch; only a recorded force request (not a
//! forged event) replaces a fresh token.

use std::time::Duration;

use futures_util::future::join_all;
use wechat_sim::TokenState;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_common::wire::Event;

use crate::fleet::{APPID, Fleet, Settings};

fn long_lived() -> Settings {
    Settings {
        token_ttl: Duration::from_secs(20),
        ..Settings::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_reports_of_a_revoked_token_cause_one_check_and_one_refresh() {
    let fleet = Fleet::start(long_lived(), 4).await;
    let bad = fleet.wait_generation(1, Duration::from_secs(5)).await;
    assert!(fleet.sim.revoke(&bad.value), "WeChat cuts the token off");
    let id = fleet.id();
    let results = join_all((0..100).map(|_| fleet.store.report(&id, &bad.value))).await;
    // The first report wakes the fleet; reports that arrive after it
    // dropped the dead token find it gone.
    assert!(
        results.iter().all(|r| matches!(
            r,
            Ok(Invalidation::Reported { generation }) if *generation == bad.generation
        ) || matches!(r, Ok(Invalidation::AlreadyReplaced { .. }))),
        "{results:?}"
    );
    assert!(
        results
            .iter()
            .any(|r| matches!(r, Ok(Invalidation::Reported { .. })))
    );
    let fresh = fleet
        .wait_generation(bad.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(fresh.value, bad.value);
    assert_eq!(fleet.sim.token_state(&fresh.value), TokenState::Valid);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 2, "one refresh for 100 reports");
    assert_eq!(app.domain_ip_calls, 1, "one check with WeChat");
    // Reporting the old token again changes nothing.
    let again = fleet.store.report(&id, &bad.value).await.unwrap();
    assert_eq!(
        again,
        Invalidation::AlreadyReplaced {
            generation: fresh.generation
        }
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_of_a_token_wechat_accepts_spend_nothing_and_delete_nothing() {
    let fleet = Fleet::start(long_lived(), 4).await;
    let good = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let id = fleet.id();
    let first = fleet.store.report(&id, &good.value).await.unwrap();
    assert_eq!(
        first,
        Invalidation::Reported {
            generation: good.generation
        }
    );
    // The verdict lands in the meta hash: later reports are answered by the
    // script itself, without waking anyone.
    let answered = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            matches!(
                fleet.store.report(&id, &good.value).await,
                Ok(Invalidation::TokenValid { .. })
            )
        },
    )
    .await;
    assert!(
        answered,
        "the fleet refused the report: WeChat accepts the token"
    );
    let results = join_all((0..100).map(|_| fleet.store.report(&id, &good.value))).await;
    assert!(results.iter().all(|r| r.is_ok()));
    let stored = fleet.token().await.expect("the token is still stored");
    assert_eq!(stored.value, good.value);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 1, "no fetch for a token WeChat accepts");
    assert_eq!(
        app.domain_ip_calls, 1,
        "one check for every report in the window"
    );
    let status = fleet
        .store
        .status(&id, wxtoken_common::Window::Day)
        .await
        .unwrap();
    assert!(status.reports_refused >= 1, "{status:?}");
    assert_eq!(status.last_refusal_reason.as_deref(), Some("token_valid"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_third_party_refresh_is_healed_by_one_fetch() {
    let settings = Settings {
        token_ttl: Duration::from_secs(20),
        overlap: Duration::from_secs(1),
        ..Settings::default()
    };
    let fleet = Fleet::start(settings, 4).await;
    let ours = fleet.wait_generation(1, Duration::from_secs(5)).await;
    // A report while the token still works is refused (and the refusal
    // stands for verify_interval) ...
    let early = fleet.store.report(&fleet.id(), &ours.value).await.unwrap();
    assert!(matches!(early, Invalidation::Reported { .. }), "{early:?}");
    fleet.sim.external_refresh(APPID).expect("external refresh");
    // ... after the overlap our stored token is dead: a service using it gets 40001.
    let dead =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            fleet.sim.token_state(&ours.value) != TokenState::Valid
        });
    assert!(dead, "the third party's refresh killed our token");
    // Readers keep reporting; once the earlier verification lapses, the
    // next check finds the token dead and one fetch heals it.
    let healed = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let _ = fleet.store.report(&fleet.id(), &ours.value).await;
            fleet
                .token()
                .await
                .is_some_and(|t| t.generation > ours.generation)
        },
    )
    .await;
    assert!(healed, "the killed token was replaced");
    let fresh = fleet.token().await.unwrap();
    assert_eq!(fleet.sim.token_state(&fresh.value), TokenState::Valid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.app().fetch_calls, 2, "one fetch to heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_forced_refresh_is_served_once_and_a_forged_one_not_at_all() {
    let fleet = Fleet::start(long_lived(), 4).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    // Anybody with PUBLISH can send this event: it must cost nothing.
    let forged = Event::RefreshRequested {
        generation: u64::MAX / 2,
        reason: Some("forged".into()),
        force: true,
    };
    for _ in 0..20 {
        assert_eq!(fleet.store.publish(&fleet.id(), &forged).await.unwrap(), 4);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(fleet.app().fetch_calls, 1, "a forged force event fetched");
    assert_eq!(fleet.token().await.unwrap().value, first.value);
    // The operator's request is recorded where readers cannot write.
    let (generation, count, heard) = fleet
        .store
        .force_request(&fleet.id(), "alice@ops")
        .await
        .unwrap();
    assert_eq!((generation, count, heard), (first.generation, 1, 4));
    let second = fleet
        .wait_generation(first.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(second.value, first.value);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        fleet.app().fetch_calls,
        2,
        "4 replicas heard it, one fetched"
    );
}
