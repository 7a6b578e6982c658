//! Follow mode over TLS (issue 17 item 4): a follower reaches its primary
//! over HTTPS with a CA made here (`follow.ca`); without that CA it does not
//! connect and stores nothing. (The scoped follow key is in the e2e test.)

use std::time::Duration;

use wxtoken_client::keyspace;
use wxtoken_common::{CredentialId, Keys};
use wxtoken_coordinator::config::{Config, Env};
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_testkit::RedisServer;

use crate::fleet::{API_KEY, Fleet, ID, SECRET, Settings};
use crate::pki::{Ca, write};

/// A follower replica on a Redis of its own, following `url` for `shop`.
async fn follower(redis: &RedisServer, url: &str, ca: Option<&std::path::Path>) -> ReplicaHandle {
    let ca = ca.map_or_else(String::new, |p| {
        format!(", ca = {:?}", p.display().to_string())
    });
    let follow = format!(
        "follow = {{ url = \"{url}\", key = {{ env = \"FOLLOW_KEY\" }}, keepalive = \"1s\"{ca} }}"
    );
    start(
        redis,
        &format!("[[apps]]\nid = \"{ID}\"\nappid = \"wx0123456789abcdef\"\n{follow}\n"),
    )
    .await
    .0
}

/// A replica with `entries` (followed ones) on `redis`; its API takes
/// [`API_KEY`].
async fn start(redis: &RedisServer, entries: &str) -> (ReplicaHandle, Config) {
    let text = format!(
        "[redis]\nurl = \"{}\"\nkey_prefix = \"follower\"\n[refresh]\nrefresh_ahead = \"2s\"\nlock_ttl = \"1s\"\nupstream_timeout = \"400ms\"\n[http]\napi_keys = {{ env = \"FOLLOW_KEY\" }}\n{entries}",
        redis.url()
    );
    let env: Env = [("FOLLOW_KEY".to_owned(), API_KEY.to_owned())]
        .into_iter()
        .collect();
    let config = Config::from_toml_str(&text, &env).expect("follower config");
    let replica = ReplicaHandle::start(&config, "f1".into())
        .await
        .expect("follower starts");
    (replica, config)
}

async fn stored_value(
    redis: &RedisServer,
    cref: &wxtoken_common::CredentialRef,
) -> Option<(String, u64)> {
    let mut c = redis
        .client()
        .get_multiplexed_async_connection()
        .await
        .ok()?;
    let keys = Keys::new("follower").unwrap();
    keyspace::read_value(&mut c, &keys.slot(cref))
        .await
        .ok()
        .flatten()
        .map(|t| (t.value, t.generation))
}

async fn stored(redis: &RedisServer) -> Option<String> {
    let cref = wxtoken_common::CredentialRef::token(CredentialId::parse(ID).unwrap());
    stored_value(redis, &cref).await.map(|(value, _)| value)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_reaches_an_https_primary_with_its_own_ca_and_only_with_it() {
    let fleet = Fleet::start(Settings::default(), 1).await;
    let first = fleet.wait_generation(1, Duration::from_secs(5)).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("wxtoken follow CA");
    let server = ca.server();
    let mut config = fleet.config(SECRET);
    config.http.tls_cert = Some(write(dir.path(), "server.pem", &server.cert));
    config.http.tls_key = Some(write(dir.path(), "server.key", &server.key));
    let api = crate::tls::https_api(&fleet, &config).await;
    let url = format!("https://localhost:{}", api.port());
    let ca_file = write(dir.path(), "ca.pem", &ca.pem);

    // Without the CA: the primary's certificate is not trusted; nothing stored.
    let redis = RedisServer::spawn();
    let blind = follower(&redis, &url, None).await;
    let untrusted = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async {
            let s = wxtoken_coordinator::status::credential_status(
                blind.store(),
                &blind.catalog().iter().next().unwrap(),
                &wxtoken_coordinator::config::RefreshConfig::default(),
            )
            .await;
            s.ok().and_then(|s| s.followed).is_some_and(|f| {
                f.state
                    .starts_with("disconnected: cannot reach the primary")
            })
        },
    )
    .await;
    assert!(untrusted, "a follower without the CA should not connect");
    assert_eq!(stored(&redis).await, None);
    blind.shutdown(Duration::from_secs(1)).await;

    // With it: the primary's value, over TLS.
    let redis = RedisServer::spawn();
    let f = follower(&redis, &url, Some(&ca_file)).await;
    let got = wxtoken_testkit::wait_until_async(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { stored(&redis).await.as_deref() == Some(first.value.as_str()) },
    )
    .await;
    assert!(
        got,
        "the follower never stored the primary's value over TLS"
    );
    f.shutdown(Duration::from_secs(1)).await;
}

/// The primary's API on plain HTTP.
async fn http_api(fleet: &Fleet) -> (std::net::SocketAddr, tokio::sync::watch::Sender<bool>) {
    let config = fleet.config(SECRET);
    let state = fleet.replicas[0].http_state(&config).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(wxtoken_coordinator::http::serve(
        listener,
        wxtoken_coordinator::http::router(state, true),
        config.http.conn_limits(),
        None,
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        },
    ));
    (addr, stop)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tickets_and_wecom_agents_follow_with_their_entries() {
    let fleet = Fleet::start(
        Settings {
            tickets: &["jsapi"],
            wecom: Some(&["jsapi", "agent_config"]),
            ..Settings::default()
        },
        1,
    )
    .await;
    let names = [
        "shop",
        "shop/ticket:jsapi",
        "hr",
        "hr/ticket:jsapi",
        "hr/ticket:agent_config",
    ];
    for name in names {
        fleet.wait_value(name, 1, Duration::from_secs(10)).await;
    }
    let (addr, _stop) = http_api(&fleet).await;
    let follow = format!(
        "follow = {{ url = \"http://{addr}\", key = {{ env = \"FOLLOW_KEY\" }}, keepalive = \"1s\" }}"
    );
    let (_, agentid, _) = crate::fleet::AGENTS[0];
    let entries = format!(
        "[[apps]]\nid = \"{ID}\"\nappid = \"wx0123456789abcdef\"\ntickets = [\"jsapi\"]\n{follow}\n\n\
         [[wecom]]\nid = \"hr\"\ncorpid = \"{}\"\nagentid = {agentid}\ntickets = [\"jsapi\", \"agent_config\"]\n{follow}\n",
        crate::fleet::CORPID
    );
    let redis = RedisServer::spawn();
    let (f, config) = start(&redis, &entries).await;
    for name in names {
        let cref = fleet.cref(name);
        let same = wxtoken_testkit::wait_until_async(
            Duration::from_secs(10),
            Duration::from_millis(20),
            || async {
                let primary = fleet.store.read_value(&cref).await.ok().flatten();
                let here = stored_value(&redis, &cref).await;
                matches!((primary, here), (Some(p), Some((v, g))) if p.value == v && p.generation == g)
            },
        )
        .await;
        assert!(same, "{name} was not followed");
    }
    // The status page says where each comes from.
    let router = wxtoken_coordinator::http::router(f.http_state(&config).unwrap(), false);
    let page = tower::ServiceExt::oneshot(
        router,
        axum::http::Request::get("/ui")
            .header("authorization", format!("Bearer {API_KEY}"))
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(page.status(), 200);
    let html = axum::body::to_bytes(page.into_body(), 1 << 20)
        .await
        .unwrap();
    let html = String::from_utf8_lossy(&html);
    assert_eq!(
        html.matches(&format!("followed from http://{addr}"))
            .count(),
        names.len(),
        "{html}"
    );
    f.shutdown(Duration::from_secs(1)).await;
}
