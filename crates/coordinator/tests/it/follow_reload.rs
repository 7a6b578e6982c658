//! A hot reload that turns `follow` on for a component this replica owned
//! (SPEC §11, §12): its authorizers stop being refreshed here at the next
//! registry sync — the primary's fleet refreshes them, and two fleets
//! refreshing one authorizer would kill each other's tokens — and their
//! values come from the primary.

use redis::AsyncCommands;
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_testkit::RedisServer;

use crate::fleet::COMPONENT;
use crate::follow_component::{
    PREFIX, SECRETS, SECRETS_ENV, appid, component_config, http_api, own_wechat, primary,
    same_as_primary,
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn turning_follow_on_by_reload_stops_refreshing_the_authorizers_here() {
    let fleet = primary(2).await;
    let addr = http_api(&fleet).await;
    // This replica's own WeChat, so nothing it tries reaches the primary's.
    let wechat = own_wechat().await;
    let redis = RedisServer::spawn();
    let owned = component_config(&redis, None, &wechat.base_url(), SECRETS, &SECRETS_ENV);
    let f = ReplicaHandle::start(&owned, "f1".into())
        .await
        .expect("replica starts");
    // It owns the component: its registry's authorizers are scheduled.
    let component = CredentialId::parse(COMPONENT).unwrap();
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    for n in 0..2 {
        let (): () = c
            .hset(
                Keys::new(PREFIX).unwrap().authorizers(&component),
                appid(n),
                "active",
            )
            .await
            .unwrap();
    }
    let registry = &f.platform().expect("the open platform runs").registry;
    registry.sync().await.unwrap();
    let authorizers: Vec<CredentialRef> = (0..2).map(|n| fleet.authorizer(&appid(n))).collect();
    for cref in &authorizers {
        assert!(f.schedule().contains(cref), "{cref} scheduled while owned");
    }

    // The operator turns `follow` on and reloads.
    let live = f.live_config(None, &owned, f.http_state(&owned).unwrap());
    let followed = component_config(
        &redis,
        Some(addr),
        &wechat.base_url(),
        SECRETS,
        &SECRETS_ENV,
    );
    let changes = live.apply(followed).expect("reloaded");
    let component_ref = CredentialRef::token(component.clone());
    assert_eq!(changes.changed, vec![component_ref.clone()]);
    registry.sync().await.unwrap();
    for cref in &authorizers {
        assert!(
            !f.schedule().contains(cref),
            "{cref} still refreshed here after follow was turned on"
        );
    }
    assert_eq!(f.catalog().authorizer_count(), 2, "readers still find them");
    // And their values (and the component's) come from the primary.
    for cref in authorizers.iter().chain([&component_ref]) {
        assert!(same_as_primary(&fleet, &redis, cref).await, "{cref}");
    }
}
