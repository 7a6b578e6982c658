//! Scenarios 8 and 9: compare-and-invalidate turns many reports of one bad
//! token into one refresh, and heals a token a third party killed.

use std::time::Duration;

use futures_util::future::join_all;
use wxtoken_client::keyspace::Invalidation;
use wxtoken_common::wire::Event;

use crate::fleet::{APPID, Fleet, Settings};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_invalidations_cause_exactly_one_refresh() {
    let settings = Settings {
        token_ttl: Duration::from_secs(20),
        ..Settings::default()
    };
    let fleet = Fleet::start(settings, 4).await;
    let bad = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let id = fleet.id();
    let results = join_all((0..100).map(|_| fleet.store.invalidate(&id, &bad.value))).await;
    let invalidated = results
        .iter()
        .filter(|r| matches!(r, Ok(Invalidation::Invalidated { .. })))
        .count();
    assert_eq!(invalidated, 1, "exactly one caller deleted the token");
    assert!(results.iter().all(|r| r.is_ok()));
    let fresh = fleet
        .wait_generation(bad.generation + 1, Duration::from_secs(5))
        .await;
    assert_ne!(fresh.value, bad.value);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 2, "one refresh for 100 reports");
    // Reporting the old token again changes nothing.
    let again = fleet
        .store
        .invalidate(&fleet.id(), &bad.value)
        .await
        .unwrap();
    assert_eq!(
        again,
        Invalidation::AlreadyReplaced {
            generation: fresh.generation
        }
    );
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
    fleet.sim.external_refresh(APPID).expect("external refresh");
    // After the overlap our stored token is dead: a service using it gets 40001.
    let dead =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
            fleet.sim.token_state(&ours.value) != wechat_sim::TokenState::Valid
        });
    assert!(dead, "the third party's refresh killed our token");
    let reported = fleet
        .store
        .invalidate(&fleet.id(), &ours.value)
        .await
        .unwrap();
    assert_eq!(
        reported,
        Invalidation::Invalidated {
            generation: ours.generation
        }
    );
    let healed = fleet
        .wait_generation(ours.generation + 1, Duration::from_secs(5))
        .await;
    assert_eq!(
        fleet.sim.token_state(&healed.value),
        wechat_sim::TokenState::Valid
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(fleet.app().fetch_calls, 2, "one fetch to heal");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_forced_refresh_is_served_once_by_the_fleet() {
    let settings = Settings {
        token_ttl: Duration::from_secs(20),
        ..Settings::default()
    };
    let fleet = Fleet::start(settings, 4).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let event = Event::RefreshRequested {
        generation: first.generation,
        reason: Some("test".into()),
        force: true,
    };
    assert_eq!(fleet.store.publish(&fleet.id(), &event).await.unwrap(), 4);
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
