//! A foreign writer's junk in our keys (SPEC §3: token, meta, lock, fence,
//! epoch, quota): wrong types, unparsable or out-of-range numbers, binary
//! garbage, huge values. This file holds the cases and the fixture, and the
//! fleet-level properties: a replica running on the junk neither crashes nor
//! spins, repairs what stands in its way, and stores a token once the junk
//! is deleted. `junk_calls` drives every read and write API on each case.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::MultiplexedConnection;
use secrecy::SecretString;
use wxtoken_client::TokenClient;
use wxtoken_common::{CredentialId, CredentialKeys, CredentialRef};
use wxtoken_coordinator::catalog::Catalog;
use wxtoken_coordinator::config::Config;
use wxtoken_coordinator::refresher::{Mode, RefreshOutcome, Refresher};
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_coordinator::store::{CommitArgs, LockOwner, TokenStore};
use wxtoken_coordinator::upstream::Upstream;

use super::{library_panics, watch_panics};
use crate::fleet::{Fleet, SECRET, Settings};

/// Per case, `;`-separated commands whose arguments are split on spaces:
/// `{T}` `{M}` `{L}` `{F}` `{E}` `{Q}` are the credential's token, meta,
/// lock, fence, epoch and today's quota keys; `\xNN` is a byte, `''` the
/// empty string, `1MB` a megabyte of `x`, `1MB9` a megabyte of `9`. Each
/// runs after a valid token was committed.
pub const CASES: &[(&str, &str)] = &[
    ("token is a hash", "DEL {T}; HSET {T} v x"),
    ("token is a list", "DEL {T}; RPUSH {T} a"),
    ("token is binary", r"SET {T} \xff\xfe\x00\x80 PX 60000"),
    ("token has no TTL", "SET {T} FOREIGN_NO_TTL"),
    ("token is empty", "SET {T} '' PX 60000"),
    ("token is 1 MB", "SET {T} 1MB PX 60000"),
    ("meta is a string", "DEL {M}; SET {M} x"),
    ("meta is a list", "DEL {M}; RPUSH {M} x"),
    ("generation=abc", "HSET {M} generation abc"),
    ("generation=-5", "HSET {M} generation -5"),
    ("generation=1e309", "HSET {M} generation 1e309"),
    ("generation=nan", "HSET {M} generation nan"),
    ("generation is 1 MB of digits", "HSET {M} generation 1MB9"),
    ("failures=u32::MAX", "HSET {M} failures 4294967295"),
    ("failures=-1", "HSET {M} failures -1"),
    ("gate=1e300", "HSET {M} next_attempt_at_ms 1e300"),
    (
        "gate=u64::MAX",
        "HSET {M} next_attempt_at_ms 18446744073709551615",
    ),
    (
        "meta fields junk",
        r"HSET {M} expires_at_ms soon fetched_at_ms -1 fetched_by \xff\xfe last_error_code x last_error_class doom last_error_at_ms 1e999 invalidated_sha1 \x00 force_day [] force_count nan force_last_at_ms inf",
    ),
    ("last_error_msg is 1 MB", "HSET {M} last_error_msg 1MB"),
    ("lock is a hash", "HSET {L} owner x"),
    ("lock has no TTL", "SET {L} foreign-writer"),
    ("lock has no TTL, no token", "SET {L} foreign; DEL {T}"),
    ("fence is a string", "SET {F} x"),
    ("fence is i64::MAX", "SET {F} 9223372036854775807"),
    ("fence is negative", "SET {F} -100"),
    ("fence behind the generation", "SET {F} 0"),
    ("fence deleted", "DEL {F}"),
    ("epoch is a list", "DEL {E}; RPUSH {E} x"),
    ("epoch is binary", r"SET {E} \xff\xfe"),
    ("quota is a hash", "HSET {Q} n 1"),
    ("quota is text", "SET {Q} abc"),
    ("quota is negative", "SET {Q} -5"),
];

/// One argument of the case language as bytes.
fn arg_bytes(arg: &str) -> Vec<u8> {
    match arg {
        "''" => Vec::new(),
        "1MB" => vec![b'x'; 1 << 20],
        "1MB9" => vec![b'9'; 1 << 20],
        _ => {
            let mut out = Vec::new();
            let mut rest = arg.as_bytes();
            while !rest.is_empty() {
                if let [b'\\', b'x', h, l, tail @ ..] = rest {
                    let hex = std::str::from_utf8(&[*h, *l]).unwrap().to_owned();
                    out.push(u8::from_str_radix(&hex, 16).unwrap());
                    rest = tail;
                } else {
                    out.push(rest[0]);
                    rest = &rest[1..];
                }
            }
            out
        }
    }
}

/// One credential under test.
pub struct Target {
    pub name: &'static str,
    script: &'static str,
    pub id: CredentialRef,
    pub keys: CredentialKeys,
    quota: String,
}

impl Target {
    fn all_keys(&self) -> Vec<&str> {
        let k = &self.keys;
        vec![&k.value, &k.meta, &k.lock, &k.fence, &k.epoch, &self.quota]
    }

    fn resolve(&self, arg: &str) -> Vec<u8> {
        let k = &self.keys;
        match arg {
            "{T}" => k.value.clone().into_bytes(),
            "{M}" => k.meta.clone().into_bytes(),
            "{L}" => k.lock.clone().into_bytes(),
            "{F}" => k.fence.clone().into_bytes(),
            "{E}" => k.epoch.clone().into_bytes(),
            "{Q}" => self.quota.clone().into_bytes(),
            other => arg_bytes(other),
        }
    }
}

/// A fleet without replicas and one credential per case.
pub struct Junk {
    pub fleet: Fleet,
    pub conn: MultiplexedConnection,
    pub targets: Vec<Target>,
    /// The fleet's config with one `[[apps]]` entry per target.
    pub config: Config,
}

impl Junk {
    pub async fn new() -> Self {
        let fleet = Fleet::new(Settings {
            token_ttl: Duration::from_secs(60),
            ..Settings::default()
        })
        .await;
        let conn = fleet
            .redis
            .client()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let store = &fleet.store;
        let day = store.quota_day(store.redis_time_ms().await.unwrap());
        let targets: Vec<Target> = CASES
            .iter()
            .enumerate()
            .map(|(i, (name, script))| {
                let id = CredentialRef::token(CredentialId::parse(&format!("junk{i:02}")).unwrap());
                let keys = store.keys().slot(&id);
                let quota = keys.quota(day);
                Target {
                    name,
                    script,
                    id,
                    keys,
                    quota,
                }
            })
            .collect();
        let mut config = fleet.config(SECRET);
        let template = config.apps.remove(0);
        for t in &targets {
            let mut app = template.clone();
            app.id = t.id.id.clone();
            config.apps.push(app);
        }
        Self {
            fleet,
            conn,
            targets,
            config,
        }
    }

    pub fn store(&self) -> TokenStore {
        self.fleet.store.clone()
    }

    /// A fresh client library (empty cache, no subscription).
    pub fn client(&self, wait: Duration) -> TokenClient {
        TokenClient::builder(&self.fleet.redis.url())
            .key_prefix(&self.fleet.prefix)
            .token_wait(wait)
            .subscribe(false)
            .build()
            .unwrap()
    }

    /// Deletes target `i`'s keys, commits a valid token, then writes its junk.
    pub async fn plant(&mut self, i: usize) {
        let store = self.store();
        let t = &self.targets[i];
        let _: () = redis::cmd("DEL")
            .arg(t.all_keys())
            .query_async(&mut self.conn)
            .await
            .unwrap();
        let owner = LockOwner::new("planter");
        let ttl = Duration::from_secs(60);
        assert!(store.try_lock(&t.id, &owner, ttl).await.unwrap());
        let grant = store.begin(&t.id, &owner).await.unwrap().unwrap();
        let token = SecretString::from(format!("VALID_{}", t.id));
        let args = CommitArgs::token(&token, ttl, "planter", "token");
        store.commit(&t.id, &grant, &owner, &args).await.unwrap();
        for command in t.script.split(';') {
            let mut cmd = redis::Cmd::new();
            command.split_whitespace().for_each(|a| {
                cmd.arg(t.resolve(a));
            });
            let _: redis::Value = cmd.query_async(&mut self.conn).await.unwrap();
        }
    }

    pub async fn delete(&mut self, i: usize) {
        let keys = self.targets[i].all_keys();
        let _: () = redis::cmd("DEL")
            .arg(keys)
            .query_async(&mut self.conn)
            .await
            .unwrap();
    }

    /// The token key's value if it is a plausible token with a TTL: the
    /// only thing any reader may hand out.
    pub async fn servable(&mut self, i: usize) -> Option<String> {
        let key = &self.targets[i].keys.value;
        let (value, pttl): (Option<Vec<u8>>, i64) = redis::pipe()
            .get(key)
            .pttl(key)
            .query_async(&mut self.conn)
            .await
            .ok()?;
        let value = String::from_utf8(value?).ok()?;
        let plausible = wxtoken_client::keyspace::is_plausible_token(&value);
        (pttl > 0 && plausible).then_some(value)
    }

    async fn commands_processed(&mut self) -> u64 {
        let info: String = redis::cmd("INFO")
            .arg("stats")
            .query_async(&mut self.conn)
            .await
            .unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("total_commands_processed:"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_on_junk_neither_spins_nor_stalls_and_recovers() {
    watch_panics();
    let mut junk = Junk::new().await;
    for i in 0..CASES.len() {
        junk.plant(i).await;
    }
    let replica = ReplicaHandle::start(&junk.config, "on-junk".into())
        .await
        .unwrap();
    assert!(replica.wait_events_up(Duration::from_secs(5)).await);
    // Measuring a rate: the fixed window is the point, not a synchronisation.
    let before = junk.commands_processed().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rate = (junk.commands_processed().await - before) / 2;
    eprintln!(
        "replica on junk: {rate} redis commands/s for {} credentials",
        CASES.len()
    );
    let bound = 40 * CASES.len() as u64;
    assert!(rate < bound, "the replica spins on junk: {rate} commands/s");
    assert_eq!(library_panics(), Vec::<String>::new());

    // It repaired what stood in its way: every credential has a servable token.
    let reader = junk.client(Duration::from_secs(5));
    for t in &junk.targets {
        let token = reader.access_token(t.id.id.as_str()).await;
        assert!(
            token.is_ok(),
            "{}: no token with the junk there: {token:?}",
            t.name
        );
    }
    // The junk is deleted: every credential gets a token from WeChat again.
    for i in 0..CASES.len() {
        junk.delete(i).await;
    }
    let reader = junk.client(Duration::from_secs(10));
    for t in &junk.targets {
        let token = reader.access_token(t.id.id.as_str()).await;
        let token = token.unwrap_or_else(|e| panic!("{}: no token after: {e}", t.name));
        let state = junk.fleet.sim.token_state(token.value());
        assert_ne!(state, wechat_sim::TokenState::Unknown, "{}", t.name);
    }
    replica.shutdown(Duration::from_secs(2)).await;
    assert_eq!(library_panics(), Vec::<String>::new());
}

/// A failed fetch on top of a failure count a foreign writer set to the edge
/// of `u32` (or below zero, or past any number) must not overflow the
/// back-off arithmetic (it did: `grant.failures + 1` on `u32::MAX`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_on_a_junk_failure_count_does_not_overflow() {
    watch_panics();
    let mut junk = Junk::new().await;
    let dead = format!("http://127.0.0.1:{}", wxtoken_testkit::free_port());
    let upstream = Upstream::new(Duration::from_millis(300), 4).unwrap();
    let refresh = junk.config.refresh.clone();
    let mut config = junk.config.clone();
    config.upstream.base_url = dead;
    let refresher = Arc::new(Refresher::new(
        junk.store(),
        upstream,
        junk.client(Duration::from_millis(300)),
        refresh,
        wxtoken_coordinator::vault::Vault::new(junk.store(), Default::default()),
        "r".into(),
    ));
    let app = Catalog::from_config(&config)
        .get(&junk.targets[0].id)
        .expect("junk00 is configured")
        .clone();
    let meta = junk.targets[0].keys.meta.clone();
    for count in ["4294967295", "4294967296", "-1", "1e309"] {
        let _: () = redis::cmd("HSET")
            .arg(&meta)
            .arg("failures")
            .arg(count)
            .arg("next_attempt_at_ms")
            .arg("0")
            .query_async(&mut junk.conn)
            .await
            .unwrap();
        let (r, a) = (refresher.clone(), app.clone());
        let within = Duration::from_secs(1);
        let step = tokio::spawn(async move { r.try_refresh(&a, Mode::Due { within }).await });
        let outcome = step
            .await
            .unwrap_or_else(|e| panic!("failures={count}: {e}"));
        eprintln!("failures={count}: {outcome:?}");
        let failed = matches!(outcome, Ok(RefreshOutcome::Failed { .. }));
        assert!(failed, "failures={count}: {outcome:?}");
        let status = junk
            .store()
            .status(&app.cref, wxtoken_common::Window::Day)
            .await
            .unwrap();
        assert!(status.failures >= 1, "{status:?}");
        assert!(status.gate < Duration::from_secs(60), "{status:?}");
    }
    assert_eq!(library_panics(), Vec::<String>::new());
}
