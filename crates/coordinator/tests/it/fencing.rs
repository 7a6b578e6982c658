//! Scenarios 3 and 7 at step level: the fenced commit refuses stale
//! refreshers and writers from before a Redis data loss; a slow refresher
//! nobody overtook still stores its token.

use std::time::Duration;

use secrecy::SecretString;
use wxtoken_coordinator::refresher::{Mode, RefreshOutcome};
use wxtoken_coordinator::store::{Commit, CommitArgs, LockOwner};
use wxtoken_testkit::wait_until_async;

use crate::fleet::{Fleet, Settings};

async fn lock_lapses(fleet: &Fleet) {
    let id = fleet.id();
    let lapsed = wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            fleet
                .store
                .peek(&id)
                .await
                .map(|p| p.lock_ttl.is_none())
                .unwrap_or(false)
        },
    )
    .await;
    assert!(lapsed, "lock did not lapse");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refresher_stalled_past_its_lock_cannot_overwrite_the_newer_token() {
    let mut fleet = Fleet::new(Settings::default()).await;
    let (store, id) = (fleet.store.clone(), fleet.id());
    // Replica A takes the lock and its fence number, then stalls.
    let a = LockOwner::new("stalled");
    assert!(
        store
            .try_lock(&id, &a, fleet.settings.lock_ttl)
            .await
            .unwrap()
    );
    let grant_a = store.begin(&id, &a).await.unwrap().expect("granted");
    lock_lapses(&fleet).await;
    // Replica B refreshes for real in the meantime.
    fleet.add_replica(crate::fleet::SECRET).await;
    let newer = fleet
        .wait_generation(grant_a.fence + 1, Duration::from_secs(5))
        .await;
    // A wakes up and tries to store what it fetched.
    let late = SecretString::from("TOKEN_FROM_THE_STALLED_REPLICA");
    let commit = store
        .commit(
            &id,
            &grant_a,
            &a,
            &CommitArgs::token(&late, Duration::from_secs(60), "stalled", "token"),
        )
        .await
        .unwrap();
    assert_eq!(
        commit,
        Commit::Stale {
            generation: newer.generation
        }
    );
    let stored = fleet.token().await.expect("token kept");
    assert_eq!(stored.value, newer.value, "the newer token survives");
    let newest_issued = fleet.app().issued.last().map(|t| t.token.clone());
    assert_eq!(
        Some(stored.value),
        newest_issued,
        "stored token is the newest the sim issued"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_refresher_nobody_overtook_still_stores_its_token() {
    let fleet = Fleet::new(Settings::default()).await;
    let (store, id) = (fleet.store.clone(), fleet.id());
    let a = LockOwner::new("slow");
    assert!(
        store
            .try_lock(&id, &a, fleet.settings.lock_ttl)
            .await
            .unwrap()
    );
    let grant = store.begin(&id, &a).await.unwrap().expect("granted");
    lock_lapses(&fleet).await;
    let token = SecretString::from("SLOW_BUT_NEWEST");
    let commit = store
        .commit(
            &id,
            &grant,
            &a,
            &CommitArgs::token(&token, Duration::from_secs(60), "slow", "token"),
        )
        .await
        .unwrap();
    assert!(matches!(commit, Commit::Stored { generation, .. } if generation == grant.fence));
    assert_eq!(fleet.token().await.unwrap().value, "SLOW_BUT_NEWEST");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_epoch_guard_refuses_writers_from_before_a_redis_restart() {
    let mut fleet = Fleet::new(Settings::default()).await;
    let (store, id) = (fleet.store.clone(), fleet.id());
    let a = LockOwner::new("before-restart");
    assert!(
        store
            .try_lock(&id, &a, fleet.settings.lock_ttl)
            .await
            .unwrap()
    );
    let grant = store.begin(&id, &a).await.unwrap().expect("granted");
    fleet.redis.restart().expect("restart");
    let token = SecretString::from("FROM_BEFORE_THE_RESTART");
    // Nobody refilled yet: the epoch is gone, the write is refused.
    let commit = loop {
        match store
            .commit(
                &id,
                &grant,
                &a,
                &CommitArgs::token(&token, Duration::from_secs(60), "a", "token"),
            )
            .await
        {
            Ok(c) => break c,
            Err(e) if e.is_unavailable() => tokio::time::sleep(Duration::from_millis(50)).await,
            Err(e) => panic!("{e}"),
        }
    };
    assert_eq!(commit, Commit::EpochChanged);
    assert!(fleet.token().await.is_none());
    // A replica refills on the new epoch (its fence is seeded from the clock,
    // so it is above A's); A is refused by the epoch check either way.
    fleet.add_replica(crate::fleet::SECRET).await;
    let refilled = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let commit = store
        .commit(
            &id,
            &grant,
            &a,
            &CommitArgs::token(&token, Duration::from_secs(60), "a", "token"),
        )
        .await
        .unwrap();
    assert!(
        matches!(commit, Commit::EpochChanged | Commit::Stale { .. }),
        "{commit:?}"
    );
    assert_eq!(fleet.token().await.unwrap().value, refilled.value);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarted_empty_is_refilled_by_one_replica_with_one_fetch() {
    let fleet = Fleet::start(Settings::default(), 4).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    assert_eq!(fleet.app().fetch_calls, 1);
    fleet.redis.restart().expect("restart");
    fleet.wait_generation(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let app = fleet.app();
    assert_eq!(app.fetch_calls, 2, "one refill fetch after the restart");
    assert_eq!(app.max_concurrent_fetches, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_step_reports_still_fresh_and_locked_elsewhere() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let refresher = fleet.replicas[0].refresher().clone();
    let app = fleet.replicas[0]
        .catalog()
        .get(&fleet.id())
        .expect("configured")
        .clone();
    let due = Mode::Due {
        within: fleet.settings.refresh_ahead,
    };
    let outcome = refresher.try_refresh(&app, due).await.unwrap();
    assert!(
        matches!(outcome, RefreshOutcome::StillFresh { .. }),
        "{outcome:?}"
    );
    let holder = LockOwner::new("other");
    assert!(
        fleet
            .store
            .try_lock(&fleet.id(), &holder, Duration::from_secs(5))
            .await
            .unwrap()
    );
    let outcome = refresher.try_refresh(&app, due).await.unwrap();
    assert!(
        matches!(
            outcome,
            RefreshOutcome::LockedElsewhere { lock_ttl: Some(_) }
        ),
        "{outcome:?}"
    );
    assert_eq!(fleet.app().fetch_calls, 1);
}
