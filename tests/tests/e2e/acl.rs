//! deploy/redis-acl.conf on a real redis-server (issue 6): coordinator
//! replicas and the CLI work as the `wxtoken` user; a service using
//! `wxtoken_client` as `wxtoken-reader` reads the token and invalidates it
//! (one refresh follows); `wxtoken-readonly` reads but cannot invalidate; and
//! neither can write the token, the lock or anything outside the prefix.
//!
//! The file is used as shipped, with two substitutions: the placeholder
//! passwords become test passwords, and the key/channel prefix `wxtoken:`
//! becomes this fleet's random prefix (so parallel tests never share keys).
//! An `acl-test-admin` user is appended to read `ACL LOG`: after the allowed
//! work it must be empty, which proves that nothing the coordinator, the CLI
//! or the client library sends (including what redis-rs sends on connect) is
//! refused.

use std::process::Command;
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use wxtoken_client::keyspace::{self, Invalidation, StoredToken};
use wxtoken_client::{TokenClient, Verdict};
use wxtoken_common::Keys;
use wxtoken_e2e::{API_KEY, Fleet, ID, SECRET, Timing, wxtoken_bin};
use wxtoken_testkit::RedisServer;

const ACL_FILE: &str = include_str!("../../../deploy/redis-acl.conf");

const COORDINATOR: (&str, &str) = ("wxtoken", "acl-test-coordinator-Zq81");
const READER: (&str, &str) = ("wxtoken-reader", "acl-test-reader-Jm42");
const READONLY: (&str, &str) = ("wxtoken-readonly", "acl-test-readonly-Pw93");
const ADMIN: (&str, &str) = ("acl-test-admin", "acl-test-admin-Xk07");

/// The shipped ACL file with test passwords and `prefix` instead of `wxtoken:`.
fn acl_for(prefix: &str) -> String {
    let mut text = ACL_FILE.to_owned();
    for (placeholder, (_, password)) in [
        ("change-me-coordinator-password", COORDINATOR),
        ("change-me-reader-password", READER),
        ("change-me-readonly-password", READONLY),
    ] {
        let placeholder = format!(">{placeholder}");
        assert!(
            text.contains(&placeholder),
            "deploy/redis-acl.conf lost {placeholder}"
        );
        text = text.replace(&placeholder, &format!(">{password}"));
    }
    assert!(
        text.contains("~wxtoken:*"),
        "the ACL file's key prefix moved"
    );
    let text = text.replace("wxtoken:", &format!("{prefix}:"));
    let (admin, password) = ADMIN;
    format!("{text}\nuser {admin} on >{password} ~* &* +@all\n")
}

fn url(redis: &RedisServer, (user, password): (&str, &str)) -> String {
    format!("redis://{user}:{password}@{}", redis.addr())
}

async fn conn(url: &str) -> MultiplexedConnection {
    redis::Client::open(url)
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

/// Runs `cmd` and asserts Redis refused it for lack of permission.
async fn denied(c: &mut MultiplexedConnection, who: &str, cmd: &redis::Cmd) {
    let reply: redis::RedisResult<redis::Value> = cmd.query_async(c).await;
    match reply {
        Err(e) if is_noperm(&e) => {}
        other => panic!("{who} was allowed {cmd:?}: {other:?}"),
    }
}

fn is_noperm(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::NoPerm)
}

async fn acl_log(admin: &mut MultiplexedConnection) -> Vec<redis::Value> {
    redis::cmd("ACL")
        .arg("LOG")
        .query_async(admin)
        .await
        .expect("ACL LOG")
}

async fn wait_token(
    c: &mut MultiplexedConnection,
    keys: &Keys,
    fleet: &Fleet,
    newer_than: u64,
) -> StoredToken {
    let until = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(Some(t)) = keyspace::read_token(c, keys, &fleet.id()).await
            && t.generation > newer_than
        {
            return t;
        }
        assert!(
            Instant::now() < until,
            "no token newer than generation {newer_than}; replica logs:\n{}",
            fleet.all_logs()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// `wxtoken ARGS` against the fleet's config, as the `wxtoken` ACL user.
fn cli(fleet: &Fleet, redis_url: &str, args: &[&str]) -> String {
    let out = Command::new(wxtoken_bin())
        .args(args)
        .arg("--config")
        .arg(fleet.config_path())
        .envs(fleet.secret_env(SECRET))
        .env("WXTOKEN__REDIS__URL", redis_url)
        .output()
        .expect("wxtoken runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "wxtoken {args:?} failed: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acl_users_can_do_their_job_and_nothing_more() {
    // Long tokens: the only refreshes are the first one and the invalidation's
    // (and a lock that outlives any stall on a loaded machine).
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(120),
        refresh_ahead: Duration::from_secs(10),
        lock_ttl: Duration::from_secs(6),
        upstream_timeout: Duration::from_secs(2),
        ..Timing::default()
    })
    .await;
    let acl_path = fleet.dir.path().join("users.acl");
    std::fs::write(&acl_path, acl_for(&fleet.prefix)).unwrap();
    // Swap in a server that runs the ACL file, before any config or replica
    // refers to the fleet's Redis.
    fleet.redis = RedisServer::builder()
        .arg("--aclfile")
        .arg(&acl_path)
        .spawn();
    let coordinator_url = url(&fleet.redis, COORDINATOR);
    let reader_url = url(&fleet.redis, READER);
    let readonly_url = url(&fleet.redis, READONLY);
    let keys = Keys::new(&fleet.prefix).unwrap();
    let id = fleet.id();

    // The default user is off: no anonymous access.
    let anonymous: redis::RedisResult<String> = async {
        let mut c = fleet
            .redis
            .client()
            .get_multiplexed_async_connection()
            .await?;
        redis::cmd("PING").query_async(&mut c).await
    }
    .await;
    assert!(
        anonymous
            .as_ref()
            .is_err_and(|e| e.to_string().contains("NOAUTH")),
        "{anonymous:?}"
    );
    let mut admin = conn(&url(&fleet.redis, ADMIN)).await;
    let _: () = redis::cmd("ACL")
        .arg("LOG")
        .arg("RESET")
        .query_async(&mut admin)
        .await
        .unwrap();

    // --- wxtoken: two replicas refresh through the lock, fence and scripts.
    for _ in 0..2 {
        fleet.spawn_replica_env(SECRET, &[("WXTOKEN__REDIS__URL", &coordinator_url)]);
    }
    let mut coordinator = conn(&coordinator_url).await;
    let first = wait_token(&mut coordinator, &keys, &fleet, 0).await;
    assert_eq!(fleet.app().fetch_ok, 1, "one fetch for the first token");
    let http = reqwest::Client::new();
    for replica in &fleet.replicas {
        let base = format!("http://{}", replica.http);
        let ready = wxtoken_testkit::wait_until_async(
            Duration::from_secs(10),
            Duration::from_millis(50),
            || async {
                http.get(format!("{base}/readyz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            },
        )
        .await;
        assert!(
            ready,
            "{base}/readyz never answered 200 as the wxtoken user"
        );
        let v: serde_json::Value = http
            .get(format!("{base}/v1/apps/{ID}/access_token"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["access_token"], first.value.as_str(), "{v}");
    }
    // The operator CLI as the same user: status, refresh (PUBLISH), reset (script).
    let status = cli(&fleet, &coordinator_url, &["status", "--json"]);
    assert!(status.contains("\"generation\": 1"), "{status}");
    cli(&fleet, &coordinator_url, &["refresh", ID]);
    cli(&fleet, &coordinator_url, &["reset", ID]);

    // --- wxtoken-reader: the client library reads, invalidates, gets the next token.
    let reader = TokenClient::builder(&reader_url)
        .key_prefix(&fleet.prefix)
        .connect()
        .await
        .expect("the reader connects");
    assert!(
        reader.wait_events_up(Duration::from_secs(5)).await,
        "PSUBSCRIBE as the reader"
    );
    let token = reader.access_token(ID).await.expect("the reader reads");
    assert_eq!(
        (token.value(), token.generation()),
        (first.value.as_str(), first.generation)
    );
    // A report of a token WeChat accepts is checked and refused: nothing
    // is deleted, nothing fetched.
    let done = reader
        .invalidate(ID, token.value())
        .await
        .expect("invalidate");
    assert_eq!(
        done,
        Invalidation::Reported {
            generation: first.generation
        }
    );
    let verdict = reader
        .wait_for_verdict(ID, first.generation, Duration::from_secs(10))
        .await
        .expect("a verdict on the report");
    assert!(
        matches!(&verdict, Verdict::Refused { reason, .. } if reason == "token_valid"),
        "{verdict:?}"
    );
    assert_eq!(
        fleet.app().fetch_ok,
        1,
        "no fetch for a token WeChat accepts"
    );
    // Once WeChat really rejects it, the report leads to one refresh.
    assert!(fleet.sim.revoke(token.value()));
    let fresh = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(100),
        || async {
            match reader.invalidate(ID, token.value()).await {
                Ok(Invalidation::Reported { generation }) => matches!(
                    reader
                        .wait_for_verdict(ID, generation, Duration::from_secs(5))
                        .await,
                    Ok(Verdict::Replaced(_))
                ),
                Ok(Invalidation::AlreadyReplaced { generation }) => generation > first.generation,
                _ => false,
            }
        },
    )
    .await;
    assert!(fresh, "a refresh follows the report of a revoked token");
    let fresh = reader
        .wait_for_newer(ID, token.generation(), Duration::from_secs(10))
        .await
        .expect("the refreshed token");
    assert_ne!(fresh.value(), token.value());
    assert_eq!(
        fleet.app().fetch_ok,
        2,
        "exactly one refresh for the revoked token"
    );
    let again = reader.invalidate(ID, token.value()).await.unwrap();
    assert!(
        matches!(again, Invalidation::AlreadyReplaced { .. }),
        "{again:?}"
    );
    // What a non-Rust service does by hand with the same user.
    let mut r = conn(&reader_url).await;
    let stored = keyspace::read_token(&mut r, &keys, &id).await.unwrap();
    assert_eq!(stored.map(|t| t.value), Some(fresh.value().to_owned()));
    let fields: Vec<Option<String>> = redis::cmd("HMGET")
        .arg(keys.meta(&id))
        .arg("generation")
        .arg("fetched_by")
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(fields[0], Some(fresh.generation().to_string()));
    let receivers: u64 = redis::cmd("PUBLISH")
        .arg(keys.events(&id))
        .arg(r#"{"event":"refresh_requested","generation":0,"reason":"acl_test"}"#)
        .query_async(&mut r)
        .await
        .unwrap();
    assert!(
        receivers >= 2,
        "replicas and the reader are subscribed: {receivers}"
    );

    // --- wxtoken-readonly: reads and subscribes, cannot invalidate or publish.
    let readonly = TokenClient::builder(&readonly_url)
        .key_prefix(&fleet.prefix)
        .connect()
        .await
        .expect("the read-only user connects");
    assert!(readonly.wait_events_up(Duration::from_secs(5)).await);
    let seen = readonly
        .access_token(ID)
        .await
        .expect("the read-only user reads");
    assert_eq!(seen.value(), fresh.value());

    // Everything above was allowed: nothing was refused, not even silently
    // (e.g. a command redis-rs sends on connect and ignores the reply of).
    let log = acl_log(&mut admin).await;
    assert!(
        log.is_empty(),
        "refused commands during allowed work: {log:?}"
    );

    // --- What each user may not do.
    let invalidated = readonly.invalidate(ID, seen.value()).await;
    assert!(
        invalidated.is_err(),
        "read-only invalidated: {invalidated:?}"
    );
    let mut ro = conn(&readonly_url).await;
    let outside = format!("not-{}:x", fleet.prefix);
    let lock = keys.lock(&id);
    let token_key = keys.access_token(&id);
    let meta = keys.meta(&id);
    // The open platform's secrets (SPEC §9): readers cannot read them.
    let authorizer = wxtoken_common::CredentialId::parse("open1.wx00000000000000d1").unwrap();
    let component = wxtoken_common::CredentialId::parse("open1").unwrap();
    let refresh_token = keys.refresh_token(&authorizer);
    let verify_ticket = keys.verify_ticket(&component);
    for (who, c) in [("wxtoken-reader", &mut r), ("wxtoken-readonly", &mut ro)] {
        denied(c, who, redis::cmd("GET").arg(&refresh_token)).await;
        denied(c, who, redis::cmd("GET").arg(&verify_ticket)).await;
        denied(
            c,
            who,
            redis::cmd("HGET")
                .arg(keys.authorizers(&component))
                .arg("wx1"),
        )
        .await;
        denied(c, who, redis::cmd("SET").arg(&token_key).arg("forged")).await;
        // Readers cannot empty the token key or scribble on the meta hash
        // (a report only writes the report key).
        denied(c, who, redis::cmd("DEL").arg(&token_key)).await;
        denied(
            c,
            who,
            redis::cmd("HSET")
                .arg(&meta)
                .arg("generation")
                .arg("999999999999999"),
        )
        .await;
        denied(
            c,
            who,
            redis::cmd("HSET")
                .arg(&meta)
                .arg("force_generation")
                .arg("999999999999999"),
        )
        .await;
        denied(c, who, redis::cmd("DEL").arg(&lock)).await;
        denied(
            c,
            who,
            redis::cmd("SET").arg(&lock).arg("me").arg("PX").arg(60_000),
        )
        .await;
        denied(c, who, redis::cmd("DEL").arg(&meta)).await;
        denied(c, who, redis::cmd("INCR").arg(keys.fence(&id))).await;
        denied(c, who, redis::cmd("SET").arg(keys.epoch(&id)).arg("x")).await;
        denied(c, who, redis::cmd("GET").arg(&outside)).await;
        denied(c, who, redis::cmd("SET").arg(&outside).arg("x")).await;
        denied(c, who, redis::cmd("HSET").arg(&outside).arg("f").arg("v")).await;
        denied(c, who, &redis::cmd("FLUSHALL")).await;
        denied(c, who, redis::cmd("KEYS").arg("*")).await;
        denied(c, who, redis::cmd("CONFIG").arg("GET").arg("maxmemory")).await;
        denied(c, who, redis::cmd("EVAL").arg("return 1").arg(0)).await;
        denied(c, who, redis::cmd("PUBLISH").arg("elsewhere").arg("x")).await;
        denied(c, who, redis::cmd("CLIENT").arg("LIST")).await;
    }
    denied(
        &mut ro,
        "wxtoken-readonly",
        redis::cmd("PUBLISH").arg(keys.events(&id)).arg("{}"),
    )
    .await;
    denied(
        &mut ro,
        "wxtoken-readonly",
        redis::cmd("SET").arg(keys.report(&id)).arg("1"),
    )
    .await;
    // The reader's script rights cover the invalidate script's keys only.
    let sha: String = redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg("return redis.call('DEL', KEYS[1])")
        .query_async(&mut r)
        .await
        .unwrap();
    denied(
        &mut r,
        "wxtoken-reader",
        redis::cmd("EVALSHA").arg(&sha).arg(1).arg(&lock),
    )
    .await;
    let mut c = conn(&coordinator_url).await;
    for cmd in [
        redis::cmd("FLUSHALL"),
        redis::cmd("KEYS").arg("*").clone(),
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("maxmemory-policy")
            .arg("allkeys-lru")
            .clone(),
        redis::cmd("GET").arg(&outside).clone(),
        redis::cmd("EVAL").arg("return 1").arg(0).clone(),
        redis::cmd("SHUTDOWN").arg("NOSAVE").clone(),
    ] {
        denied(&mut c, "wxtoken", &cmd).await;
    }
    let mut other = redis::Client::open(reader_url.as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let sub = other.subscribe("elsewhere").await;
    assert!(
        sub.as_ref().is_err_and(is_noperm),
        "the reader subscribed outside the prefix: {sub:?}"
    );

    // Nothing was damaged by the refused writes; the fleet is still healthy.
    let after = wait_token(&mut coordinator, &keys, &fleet, 0).await;
    assert_eq!(after.value, fresh.value());
    assert_eq!(fleet.app().fetch_ok, 2);
    fleet.assert_logs_clean();
    let logs = fleet.all_logs();
    for (_, password) in [COORDINATOR, READER, READONLY] {
        assert!(
            !logs.contains(password),
            "a Redis password appears in the logs"
        );
    }
}
