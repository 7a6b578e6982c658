//! `wxtoken promote` of a followed component (issue 17, SPEC §12): the
//! primary fleet is gone for good; the follower — its config given the
//! component's secrets, WeChat's event URL pointed at it — is promoted, takes
//! the component token over, imports every authorizer's refresh token from
//! `api_get_authorizer_list` (a follower never held them) and refreshes the
//! authorizers from WeChat itself.

use std::time::{Duration, Instant};

use wechat_sim::TokenState;
use wxtoken_common::{CredentialId, CredentialRef};

use crate::fleet::{COMPONENT, COMPONENT_APPID};
use crate::follow_component::{
    SECRETS, SECRETS_ENV, appid, follower_with, http_api, primary, same_as_primary, stored,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_promoted_component_imports_its_refresh_tokens_and_refreshes_its_authorizers() {
    let mut fleet = primary(2).await;
    let addr = http_api(&fleet).await;
    let redis = wxtoken_testkit::RedisServer::spawn();
    // The follower's config holds the component's secrets already (the
    // runbook: add them, reload, then promote); it still follows.
    let (f, config) =
        follower_with(&redis, addr, &fleet.sim.base_url(), SECRETS, &SECRETS_ENV).await;
    let component = CredentialRef::token(CredentialId::parse(COMPONENT).unwrap());
    let authorizers: Vec<CredentialRef> = (0..2).map(|n| fleet.authorizer(&appid(n))).collect();
    for cref in authorizers.iter().chain([&component]) {
        assert!(same_as_primary(&fleet, &redis, cref).await, "{cref}");
    }
    for cref in &authorizers {
        assert!(
            f.refresher()
                .vault()
                .refresh_token(&cref.id)
                .await
                .unwrap()
                .is_none(),
            "a follower holds no refresh token"
        );
    }

    // The primary fleet is gone; WeChat's event URL now reaches the follower.
    fleet.stop_all().await;
    fleet
        .serve_events_from(f.http_state(&config).unwrap())
        .await;
    let fetched = |n: usize| {
        fleet
            .sim
            .authorizer_stats(COMPONENT_APPID, &appid(n))
            .map_or(0, |a| a.fetch_ok)
    };
    let before: Vec<u64> = (0..2).map(fetched).collect();
    let promoted = Instant::now();
    f.store()
        .promote(&component.id, "it-operator")
        .await
        .unwrap();
    // Every authorizer gets its refresh token from the list, and is
    // refreshed by the former follower.
    let imported = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            for cref in &authorizers {
                if f.refresher()
                    .vault()
                    .refresh_token(&cref.id)
                    .await
                    .ok()
                    .flatten()
                    .is_none()
                {
                    return false;
                }
            }
            true
        },
    )
    .await;
    assert!(imported, "no refresh tokens imported after the promotion");
    let imported_after = promoted.elapsed();
    for cref in &authorizers {
        assert!(f.schedule().contains(cref), "{cref} is not refreshed here");
    }
    // The follow task hands the component over (at once, even while it
    // waits out its back-off from the dead primary).
    let handed_over = wxtoken_testkit::wait_until_async(
        Duration::from_secs(1),
        Duration::from_millis(10),
        || async { f.schedule().contains(&component) },
    )
    .await;
    assert!(handed_over, "the component is still followed");
    // WeChat pushes a verify ticket to its new event URL: the component
    // token is refreshable here from now on.
    fleet.push_ticket().await;
    let refreshed = wxtoken_testkit::wait_until_async(
        fleet.settings.cycle() * 3,
        Duration::from_millis(20),
        || async { (0..2).all(|n| fetched(n) > before[n]) },
    )
    .await;
    assert!(
        refreshed,
        "the promoted fleet did not refresh its authorizers"
    );
    for cref in &authorizers {
        let (value, _) = stored(&redis, cref).await.expect("a token");
        assert_eq!(fleet.sim.token_state(&value), TokenState::Valid, "{cref}");
    }
    println!(
        "refresh tokens imported {imported_after:?} after the promotion; authorizers refreshed by the promoted fleet {:?} after it",
        promoted.elapsed()
    );
    f.shutdown(Duration::from_secs(1)).await;
}
