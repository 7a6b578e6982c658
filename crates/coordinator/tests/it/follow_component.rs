//! A followed component (issue 17, SPEC §12): a follower fleet on its own
//! Redis takes a third-party platform's component token and every
//! authorizer's token from the primary's `GET /v1/components/{id}/watch`,
//! mirrors its registry (authorized, revoked), refills itself after a data
//! loss, forwards its readers' reports — and never calls WeChat: it points
//! at a simulator of its own that must see nothing.

use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::Request;
use redis::AsyncCommands;
use tower::ServiceExt;
use wechat_sim::TokenState;
use wxtoken_client::keyspace;
use wxtoken_common::{CredentialId, CredentialRef, Keys};
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_testkit::RedisServer;

use crate::fleet::{
    API_KEY, COMPONENT, COMPONENT_AES_KEY, COMPONENT_APPID, COMPONENT_SECRET, COMPONENT_TOKEN,
    Fleet, SECRET, STATE_KEY, Settings,
};

pub(crate) const PREFIX: &str = "follower";

pub(crate) fn appid(n: usize) -> String {
    format!("wx{n:016x}")
}

pub(crate) async fn stored(redis: &RedisServer, cref: &CredentialRef) -> Option<(String, u64)> {
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    keyspace::read_value(&mut c, &Keys::new(PREFIX).unwrap().slot(cref))
        .await
        .ok()
        .flatten()
        .map(|t| (t.value, t.generation))
}

/// Polls until the follower holds the primary's current value of `cref`.
pub(crate) async fn same_as_primary(
    fleet: &Fleet,
    redis: &RedisServer,
    cref: &CredentialRef,
) -> bool {
    wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            let primary = fleet.store.read_value(cref).await.ok().flatten();
            let here = stored(redis, cref).await;
            matches!((primary, here), (Some(p), Some((v, g))) if p.value == v && p.generation == g)
        },
    )
    .await
}

pub(crate) async fn registry(redis: &RedisServer) -> std::collections::HashMap<String, String> {
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let component = CredentialId::parse(COMPONENT).unwrap();
    c.hgetall(Keys::new(PREFIX).unwrap().authorizers(&component))
        .await
        .unwrap()
}

/// Waits for the primary's next generation of `cref`; returns the one
/// before it.
async fn next_generation(fleet: &Fleet, cref: &CredentialRef) -> u64 {
    let g = fleet
        .store
        .read_value(cref)
        .await
        .unwrap()
        .unwrap()
        .generation;
    fleet
        .wait_value(cref.id.as_str(), g + 1, fleet.settings.cycle() * 3)
        .await;
    g
}

/// The follower: `[[components]]` with `follow` and no secret, its
/// upstream a simulator of its own (`wechat`).
async fn follower(
    redis: &RedisServer,
    primary: std::net::SocketAddr,
    wechat: &str,
) -> (ReplicaHandle, Config) {
    follower_with(redis, primary, wechat, "", &[]).await
}

/// [`follower`] with `extra` lines after the component's entry and `env`.
pub(crate) async fn follower_with(
    redis: &RedisServer,
    primary: std::net::SocketAddr,
    wechat: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> (ReplicaHandle, Config) {
    let config = component_config(redis, Some(primary), wechat, extra, env);
    let replica = ReplicaHandle::start(&config, "f1".into())
        .await
        .expect("follower starts");
    (replica, config)
}

/// A replica's config on `redis` with the component, followed from
/// `primary` when given, `extra` lines after its entry, and `env`.
pub(crate) fn component_config(
    redis: &RedisServer,
    primary: Option<std::net::SocketAddr>,
    wechat: &str,
    extra: &str,
    env: &[(&str, &str)],
) -> Config {
    let follow = primary.map_or_else(String::new, |p| {
        format!("follow = {{ url = \"http://{p}\", key = {{ env = \"FOLLOW_KEY\" }}, keepalive = \"1s\" }}\n")
    });
    let text = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"{PREFIX}\"\n\
         [refresh]\nrefresh_ahead = \"1500ms\"\nlock_ttl = \"1s\"\nupstream_timeout = \"400ms\"\nloss_check_interval = \"100ms\"\n\
         [upstream]\nbase_url = \"{wechat}\"\n\
         [http]\napi_keys = {{ env = \"FOLLOW_KEY\" }}\n\
         [[components]]\nid = \"{COMPONENT}\"\ncomponent_appid = \"{COMPONENT_APPID}\"\n{follow}{extra}",
        redis.url()
    );
    let env: Env = [("FOLLOW_KEY", API_KEY)]
        .iter()
        .chain(env)
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Config::from_toml_str(&text, &env).expect("component config")
}

/// A follower's own WeChat: the same component as the primary's, so any
/// call the follower made would be counted there.
pub(crate) async fn own_wechat() -> wechat_sim::SimHandle {
    wechat_sim::spawn(
        wechat_sim::SimConfig::new().component(wechat_sim::SimComponent::new(
            COMPONENT_APPID,
            COMPONENT_SECRET,
            COMPONENT_TOKEN,
            COMPONENT_AES_KEY,
        )),
    )
    .await
    .unwrap()
}

/// The component's secrets as config lines after its entry (a follower
/// that may be promoted, or an owner), and the env they name.
pub(crate) const SECRETS: &str = "secret = { env = \"C_SECRET\" }\ntoken = { env = \"C_TOKEN\" }\n\
                   encoding_aes_key = { env = \"C_AES\" }\n\
                   [security]\nstate_key = { env = \"C_STATE\" }\n";
pub(crate) const SECRETS_ENV: [(&str, &str); 4] = [
    ("C_SECRET", COMPONENT_SECRET),
    ("C_TOKEN", COMPONENT_TOKEN),
    ("C_AES", COMPONENT_AES_KEY),
    ("C_STATE", STATE_KEY),
];

/// The primary's API on plain HTTP.
pub(crate) async fn http_api(fleet: &Fleet) -> std::net::SocketAddr {
    let config = fleet.config(SECRET);
    serve(fleet.replicas[0].http_state(&config).unwrap(), &config).await
}

/// Serves `state`'s API on a free loopback port.
pub(crate) async fn serve(
    state: wxtoken_coordinator::http::HttpState,
    config: &Config,
) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(wxtoken_coordinator::http::serve(
        listener,
        wxtoken_coordinator::http::router(state, true),
        config.http.conn_limits(),
        None,
        std::future::pending(),
    ));
    addr
}

/// A primary fleet of one replica (its event URL served) with `n`
/// authorizers, each with a token.
pub(crate) async fn primary(n: usize) -> Fleet {
    let mut fleet = Fleet::start(
        Settings {
            platform: true,
            ..Settings::default()
        },
        1,
    )
    .await;
    fleet.serve_events().await;
    fleet.push_ticket().await;
    fleet.wait_value(COMPONENT, 1, Duration::from_secs(5)).await;
    for n in 0..n {
        fleet
            .sim
            .authorize(COMPONENT_APPID, &appid(n))
            .await
            .unwrap();
        let id = fleet.authorizer(&appid(n)).id;
        fleet
            .wait_value(id.as_str(), 1, Duration::from_secs(3))
            .await;
    }
    fleet
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_component_mirrors_every_authorizer_and_never_calls_wechat() {
    let fleet = primary(3).await;
    let wechat = own_wechat().await;
    let addr = http_api(&fleet).await;
    let redis = RedisServer::spawn();
    let started = Instant::now();
    let (f, config) = follower(&redis, addr, &wechat.base_url()).await;
    let component = CredentialRef::token(CredentialId::parse(COMPONENT).unwrap());
    assert!(
        same_as_primary(&fleet, &redis, &component).await,
        "component token"
    );
    for n in 0..3 {
        let cref = fleet.authorizer(&appid(n));
        assert!(same_as_primary(&fleet, &redis, &cref).await, "{cref}");
    }
    println!(
        "component + 3 authorizers followed {:?} after start",
        started.elapsed()
    );
    // The status page says where the component comes from.
    let page = wxtoken_coordinator::http::router(f.http_state(&config).unwrap(), false)
        .oneshot(
            Request::get("/ui")
                .header("authorization", format!("Bearer {API_KEY}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    assert!(
        String::from_utf8_lossy(&html).contains(&format!("followed from http://{addr}")),
        "the status page does not say the component is followed"
    );
    // A chain: a second-level follower follows this follower.
    let dev_redis = RedisServer::spawn();
    let staging = serve(f.http_state(&config).unwrap(), &config).await;
    let (dev, _) = follower(&dev_redis, staging, &wechat.base_url()).await;
    for cref in [0, 1, 2]
        .iter()
        .map(|n| fleet.authorizer(&appid(*n)))
        .chain([component.clone()])
    {
        assert!(
            same_as_primary(&fleet, &dev_redis, &cref).await,
            "second level: {cref}"
        );
    }
    // Every follower replica knows the ids (its readers ask for them) and
    // refreshes none of them.
    assert!(
        wxtoken_testkit::wait_until_async(
            Duration::from_secs(2),
            Duration::from_millis(10),
            || async { f.catalog().authorizer_count() == 3 }
        )
        .await
    );
    for n in 0..3 {
        assert!(!f.schedule().contains(&fleet.authorizer(&appid(n))));
    }
    assert!(!f.schedule().contains(&component));

    // A merchant authorizes at the primary: here within the second.
    let t = Instant::now();
    fleet
        .sim
        .authorize(COMPONENT_APPID, &appid(3))
        .await
        .unwrap();
    let newcomer = fleet.authorizer(&appid(3));
    fleet
        .wait_value(newcomer.id.as_str(), 1, Duration::from_secs(3))
        .await;
    assert!(same_as_primary(&fleet, &redis, &newcomer).await);
    println!(
        "a new authorization reached the follower in {:?}",
        t.elapsed()
    );
    // The primary commits the token before it registers the authorizer:
    // the registry entry may come a moment after the value.
    let registered = wxtoken_testkit::wait_until_async(
        Duration::from_secs(2),
        Duration::from_millis(10),
        || async { registry(&redis).await.get(&appid(3)).map(String::as_str) == Some("active") },
    )
    .await;
    assert!(
        registered,
        "the new authorization is not in the follower's registry"
    );

    // A merchant revokes at the primary: gone here too.
    fleet
        .sim
        .unauthorize(COMPONENT_APPID, &appid(0))
        .await
        .unwrap();
    let revoked = fleet.authorizer(&appid(0));
    assert!(
        wxtoken_testkit::wait_until_async(
            Duration::from_secs(3),
            Duration::from_millis(10),
            || async {
                stored(&redis, &revoked).await.is_none()
                    && registry(&redis).await.get(&appid(0)).map(String::as_str) == Some("revoked")
            }
        )
        .await,
        "the revocation was not mirrored"
    );

    // The primary's next generations arrive as they are committed.
    let a1 = fleet.authorizer(&appid(1));
    next_generation(&fleet, &a1).await;
    assert!(
        same_as_primary(&fleet, &redis, &a1).await,
        "a newer generation"
    );
    assert!(
        same_as_primary(&fleet, &dev_redis, &a1).await,
        "a newer generation, second level"
    );

    // A reader here finds the token dead (revoked behind the fleets'
    // backs): the report goes to the primary, which refreshes; the new
    // value comes back.
    let (dead, g) = stored(&redis, &a1).await.unwrap();
    assert!(fleet.sim.revoke(&dead));
    let router = wxtoken_coordinator::http::router(f.http_state(&config).unwrap(), false);
    let report = router
        .oneshot(
            Request::post(format!("/v1/apps/{}/access_token/invalidate", a1.id))
                .header("authorization", format!("Bearer {API_KEY}"))
                .header("content-type", "application/json")
                .body(Body::from(
                    serde_json::json!({ "access_token": dead }).to_string(),
                ))
                .unwrap(),
        )
        .await
        .unwrap();
    assert!(report.status().is_success(), "{}", report.status());
    let healed = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(10),
        || async {
            matches!(stored(&redis, &a1).await, Some((v, g2)) if g2 > g
            && fleet.sim.token_state(&v) == TokenState::Valid)
        },
    )
    .await;
    assert!(healed, "the follower's report did not heal the token");

    // The follower's Redis loses everything: refilled from what it
    // received, registry included, without a call to anyone.
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut c).await.unwrap();
    let wiped = Instant::now();
    let all: Vec<CredentialRef> = [1, 2, 3]
        .iter()
        .map(|n| fleet.authorizer(&appid(*n)))
        .chain([component.clone()])
        .collect();
    let refilled = wxtoken_testkit::wait_until_async(
        Duration::from_secs(1),
        Duration::from_millis(5),
        || async {
            for cref in &all {
                if stored(&redis, cref).await.is_none() {
                    return false;
                }
            }
            registry(&redis)
                .await
                .values()
                .filter(|s| *s == "active")
                .count()
                == 3
        },
    )
    .await;
    assert!(refilled, "not refilled within 1 s of the wipe");
    println!(
        "follower redis refilled {:?} after FLUSHALL",
        wiped.elapsed()
    );
    for cref in &all {
        let (v, _) = stored(&redis, cref).await.unwrap();
        assert_eq!(fleet.sim.token_state(&v), TokenState::Valid, "{cref}");
    }

    // Nothing reached the follower's WeChat.
    let seen = wechat.stats();
    let calls = &seen.component(COMPONENT_APPID).unwrap().calls;
    assert!(calls.is_empty(), "the follower called WeChat: {calls:?}");
    dev.shutdown(Duration::from_secs(1)).await;
    f.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_component_watch_needs_token_read_on_the_authorizers_too() {
    use sha2::Digest;
    let fleet = primary(1).await;
    let narrow = "narrow-key-0123456789";
    let sha: String = sha2::Sha256::digest(narrow.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.toml");
    std::fs::write(
        &file,
        format!(
            "[[keys]]\nname = \"component-only\"\nsha256 = \"{sha}\"\nids = [\"{COMPONENT}\"]\nallow = [\"token:read\"]\n"
        ),
    )
    .unwrap();
    let mut config = fleet.config(SECRET);
    config.http.keys_file = Some(file);
    let router =
        wxtoken_coordinator::http::router(fleet.replicas[0].http_state(&config).unwrap(), false);
    let get = |path: &str, key: &str| {
        Request::get(path)
            .header("authorization", format!("Bearer {key}"))
            .body(Body::empty())
            .unwrap()
    };
    let watch = format!("/v1/components/{COMPONENT}/watch");
    // The component's id alone does not open its authorizers' tokens.
    let refused = router.clone().oneshot(get(&watch, narrow)).await.unwrap();
    assert_eq!(refused.status(), 403);
    let unknown = router
        .clone()
        .oneshot(get("/v1/components/nope/watch", API_KEY))
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
    let ok = router.oneshot(get(&watch, API_KEY)).await.unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["content-type"], "text/event-stream");
    // The snapshot, then a new authorization: its `authorizer` event and
    // its value name the authorizer's own id.
    let mut body = ok.into_body().into_data_stream();
    let mut text = String::new();
    let parse = |text: &str| -> Vec<serde_json::Value> {
        text.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str(d).ok())
            .collect()
    };
    let mut read_until = async |text: &mut String, done: &dyn Fn(&str) -> bool| {
        let until = Instant::now() + Duration::from_secs(5);
        while !done(text) {
            let left = until.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, futures_util::StreamExt::next(&mut body)).await {
                Ok(Some(Ok(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
                _ => panic!("the stream never got there: {text}"),
            }
        }
    };
    read_until(&mut text, &|t| t.contains("event: synced")).await;
    fleet
        .sim
        .authorize(COMPONENT_APPID, &appid(7))
        .await
        .unwrap();
    let newcomer = format!("{COMPONENT}.{}", appid(7));
    let stored = fleet.wait_value(&newcomer, 1, Duration::from_secs(3)).await;
    let registered =
        |d: &serde_json::Value| d["appid"] == appid(7).as_str() && d["state"] == "active";
    let valued = |d: &serde_json::Value| d["access_token"] == stored.value.as_str();
    read_until(&mut text, &|t| {
        let data = parse(t);
        data.iter().any(registered) && data.iter().any(valued)
    })
    .await;
    let data = parse(&text);
    for found in [
        data.iter().find(|d| registered(d)),
        data.iter().find(|d| valued(d)),
    ] {
        assert_eq!(found.unwrap()["id"], newcomer.as_str(), "{text}");
    }
    assert!(
        data.iter()
            .any(|d| d["id"] == format!("{COMPONENT}.{}", appid(0)).as_str()),
        "the snapshot lists the authorizer there was"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_followed_component_rides_out_a_refusing_and_a_silent_primary() {
    let fleet = primary(2).await;
    let wechat = wechat_sim::spawn(wechat_sim::SimConfig::new())
        .await
        .unwrap();
    // Between the fleets: a proxy that can refuse or swallow every byte.
    let proxy = wxtoken_testkit::FaultProxy::spawn(http_api(&fleet).await).await;
    let redis = RedisServer::spawn();
    let (f, _) = follower(&redis, proxy.addr(), &wechat.base_url()).await;
    let a0 = fleet.authorizer(&appid(0));
    let a1 = fleet.authorizer(&appid(1));
    assert!(same_as_primary(&fleet, &redis, &a1).await);

    // The primary goes away: what the follower holds stays served.
    proxy.set_mode(wxtoken_testkit::ProxyMode::Refuse);
    let away = Instant::now();
    let held = stored(&redis, &a0).await.expect("held");
    // Meanwhile the primary forgets authorizer 0 (its registry entry is
    // gone, as after a rebuild that no longer lists it) and a merchant
    // authorizes a third account.
    let mut c = fleet
        .redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let component = CredentialId::parse(COMPONENT).unwrap();
    let _: () = c
        .hdel(
            Keys::new(&fleet.prefix).unwrap().authorizers(&component),
            appid(0),
        )
        .await
        .unwrap();
    fleet
        .sim
        .authorize(COMPONENT_APPID, &appid(2))
        .await
        .unwrap();
    let a2 = fleet.authorizer(&appid(2));
    fleet
        .wait_value(a2.id.as_str(), 1, Duration::from_secs(3))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        stored(&redis, &a0).await,
        Some(held),
        "kept while the primary is away"
    );
    assert!(
        stored(&redis, &a2).await.is_none(),
        "nothing arrives from an absent primary"
    );

    // Back: the follower reconnects, and the snapshot brings the newcomer
    // and drops what the primary no longer lists.
    proxy.set_mode(wxtoken_testkit::ProxyMode::Pass);
    let back = Instant::now();
    assert!(
        same_as_primary(&fleet, &redis, &a2).await,
        "the newcomer after the reconnect"
    );
    let dropped = wxtoken_testkit::wait_until_async(
        Duration::from_secs(3),
        Duration::from_millis(10),
        || async {
            stored(&redis, &a0).await.is_none()
                && registry(&redis).await.get(&appid(0)).map(String::as_str) == Some("revoked")
        },
    )
    .await;
    assert!(
        dropped,
        "an authorizer the primary no longer lists is still held"
    );
    println!(
        "primary away {:?}; resynced {:?} after it came back",
        back - away,
        back.elapsed()
    );

    // A blackhole (no byte either way, nothing closed): the keep-alive
    // (1 s asked) finds the stream dead, and after the heal the follower
    // catches up with what the primary refreshed meanwhile.
    proxy.set_mode(wxtoken_testkit::ProxyMode::Blackhole);
    let holed = Instant::now();
    let state_key = Keys::new(PREFIX)
        .unwrap()
        .slot(&CredentialRef::token(component.clone()))
        .meta;
    let fc = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let detected = wxtoken_testkit::wait_until_async(
        Duration::from_secs(6),
        Duration::from_millis(20),
        || async {
            let state: Option<String> = fc.clone().hget(&state_key, "follow_state").await.unwrap();
            state.is_some_and(|s| s.contains("no byte"))
        },
    )
    .await;
    assert!(detected, "a silent stream was not given up");
    let detected_after = holed.elapsed();
    let g = next_generation(&fleet, &a1).await;
    proxy.set_mode(wxtoken_testkit::ProxyMode::Pass);
    let healed = Instant::now();
    let caught_up = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(10),
        || async { matches!(stored(&redis, &a1).await, Some((_, g2)) if g2 > g) },
    )
    .await;
    assert!(caught_up, "no newer generation after the blackhole healed");
    println!(
        "blackhole detected after {detected_after:?}; caught up {:?} after the heal",
        healed.elapsed()
    );
    assert!(
        wechat.stats().components.is_empty()
            || wechat
                .stats()
                .components
                .values()
                .all(|c| c.calls.is_empty())
    );
    f.shutdown(Duration::from_secs(1)).await;
}
