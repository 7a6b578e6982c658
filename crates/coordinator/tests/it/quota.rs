//! Shared limits reserved in chunks (`store/quota.rs`): replicas hand out
//! units of a component's per-minute limit without a Redis command each,
//! and all of them together never count more than the limit.

use redis::AsyncCommands;
use wxtoken_common::{Keys, Window};
use wxtoken_coordinator::kind::SharedLimit;
use wxtoken_coordinator::replica::build_store;
use wxtoken_coordinator::store::{QuotaTake, TokenStore};

use crate::fleet::{Fleet, SECRET, Settings};

/// A fixed minute, so the test never straddles a boundary.
const AT_MS: u64 = 1_800_000_000_000;

fn limit(budget: u64, reserve: u64) -> SharedLimit {
    SharedLimit {
        tag: "open1".into(),
        name: "authorizer_token".into(),
        window: Window::Minute,
        budget,
        what: "component open1's authorizers".into(),
        code: "component_rate",
        reserve,
    }
}

/// Takes until the store says over budget (at most `max`); returns how many
/// units it got.
async fn take_all(s: &TokenStore, l: &SharedLimit, at_ms: u64, max: u64) -> u64 {
    let period = s.period(l.window, at_ms);
    for got in 0..max {
        match s.take_shared_quota(l, &period).await.unwrap() {
            QuotaTake::Taken { .. } => {}
            QuotaTake::OverBudget { .. } => return got,
        }
    }
    max
}

#[tokio::test]
async fn replicas_reserve_chunks_and_never_count_past_the_limit() {
    let fleet = Fleet::start(Settings::default(), 0).await;
    let stores: Vec<TokenStore> = (0..3)
        .map(|_| build_store(&fleet.config(SECRET)).unwrap())
        .collect();
    let keys = Keys::new(&fleet.prefix).unwrap();
    let l = limit(20, 8);
    let period = stores[0].period(l.window, AT_MS);
    let counter = keys.shared_quota(&l.tag, &l.name, &period).unwrap();
    let client = redis::Client::open(fleet.redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let count = async |c: &mut redis::aio::MultiplexedConnection| -> u64 {
        c.get::<_, Option<u64>>(&counter)
            .await
            .unwrap()
            .unwrap_or(0)
    };

    // The first unit reserves a chunk; the next seven cost no command.
    assert!(matches!(
        stores[0].take_shared_quota(&l, &period).await.unwrap(),
        QuotaTake::Taken { .. }
    ));
    assert_eq!(count(&mut c).await, 8);
    assert_eq!(take_all(&stores[0], &l, AT_MS, 7).await, 7);
    assert_eq!(
        count(&mut c).await,
        8,
        "units from the reserve were counted again"
    );
    // A unit no call used goes back to the reserve, not to Redis.
    stores[0].give_back_shared(&l, &period).await.unwrap();
    assert_eq!(count(&mut c).await, 8);
    assert_eq!(take_all(&stores[0], &l, AT_MS, 1).await, 1);
    assert_eq!(count(&mut c).await, 8);

    // The second chunk, then another replica gets only what is left.
    assert_eq!(take_all(&stores[0], &l, AT_MS, 8).await, 8);
    assert_eq!(count(&mut c).await, 16);
    assert_eq!(take_all(&stores[1], &l, AT_MS, 100).await, 4);
    assert_eq!(take_all(&stores[2], &l, AT_MS, 100).await, 0);
    assert_eq!(count(&mut c).await, 20, "the limit was counted past");

    // A replica without a reserve gives a unit back to the counter.
    stores[2].give_back_shared(&l, &period).await.unwrap();
    assert_eq!(count(&mut c).await, 19);
    assert_eq!(take_all(&stores[2], &l, AT_MS, 100).await, 1);

    // The next minute counts the previous one too (a sliding limit): after
    // 20 units, none is left until the minute after.
    let next = AT_MS + 60_000;
    assert_eq!(take_all(&stores[1], &l, next, 100).await, 0);
    let later = AT_MS + 120_000;
    let fresh: u64 = {
        let mut got = 0;
        for s in &stores {
            got += take_all(s, &l, later, 100).await;
        }
        got
    };
    assert_eq!(fresh, 20, "a new minute with an empty previous one");
}

#[tokio::test]
async fn a_reserve_of_one_counts_every_unit() {
    let fleet = Fleet::start(Settings::default(), 0).await;
    let s = build_store(&fleet.config(SECRET)).unwrap();
    let keys = Keys::new(&fleet.prefix).unwrap();
    let l = limit(5, 1);
    let period = s.period(l.window, AT_MS);
    let counter = keys.shared_quota(&l.tag, &l.name, &period).unwrap();
    let client = redis::Client::open(fleet.redis.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    for expected in 1..=5_u64 {
        assert_eq!(take_all(&s, &l, AT_MS, 1).await, 1);
        let n: u64 = c.get(&counter).await.unwrap();
        assert_eq!(n, expected);
    }
    assert_eq!(take_all(&s, &l, AT_MS, 1).await, 0);
    s.give_back_shared(&l, &period).await.unwrap();
    let n: u64 = c.get(&counter).await.unwrap();
    assert_eq!(n, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_steps_of_one_replica_lose_no_reserved_unit() {
    let fleet = Fleet::start(Settings::default(), 0).await;
    let s = build_store(&fleet.config(SECRET)).unwrap();
    let l = limit(640, 8);
    let period = s.period(l.window, AT_MS);
    // 640 steps at once: many find the reserve empty together and each
    // reserves a chunk; every unit must still be handed out, none twice.
    let tasks: Vec<_> = (0..640)
        .map(|_| {
            let (s, l, p) = (s.clone(), l.clone(), period.clone());
            tokio::spawn(async move { s.take_shared_quota(&l, &p).await.unwrap() })
        })
        .collect();
    let mut taken = 0;
    for t in tasks {
        if matches!(t.await.unwrap(), QuotaTake::Taken { .. }) {
            taken += 1;
        }
    }
    assert_eq!(taken, 640, "units reserved by one replica were lost");
    assert_eq!(take_all(&s, &l, AT_MS, 1).await, 0);
}
