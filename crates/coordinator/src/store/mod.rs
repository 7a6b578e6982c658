//! `store`: everything the coordinator does to Redis — the lock, the fenced
//! scripts of SPEC §3, the fleet-wide back-off gate and status reads.
//!
//! Besides `wxtoken_common::Keys` this is the only module that knows key
//! names. Scripts are loaded once and run by EVALSHA (`redis::Script` reloads
//! them after NOSCRIPT, e.g. after a Redis restart). Every call has a timeout
//! (pool wait, connect, response). This module makes no policy decisions: it
//! reports what Redis said and lets `refresher` decide.

mod pool;

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::AsyncCommands;
use secrecy::{ExposeSecret, SecretString};
use wxtoken_client::connect::{ClientSource, PooledConn, RedisPool};
use wxtoken_client::keyspace::{self, Invalidation, StoredToken};
use wxtoken_common::wire::{Event, LastError};
use wxtoken_common::{CredentialId, ErrorClass, Keys, QuotaDay, QuotaOffset, meta};

pub use pool::{StoreError, connect_pool, target};

macro_rules! script {
    ($name:ident, $file:literal) => {
        static $name: LazyLock<redis::Script> =
            LazyLock::new(|| keyspace::script(include_str!($file)));
    };
    // With the coordinator's quota helper (`quota.lua`) prepended.
    ($name:ident, quota, $file:literal) => {
        static $name: LazyLock<redis::Script> = LazyLock::new(|| {
            keyspace::script(concat!(include_str!("quota.lua"), include_str!($file)))
        });
    };
}
script!(LOCK, "lock.lua");
script!(CLAIM, quota, "claim.lua");
script!(COMMIT, "commit.lua");
script!(RELEASE, "release.lua");
script!(QUOTA_TAKE, quota, "quota_take.lua");
script!(RECORD_FAILURE, "record_failure.lua");
script!(PEEK, "peek.lua");
script!(RESET_GATE, "reset_gate.lua");
script!(FORCE_TAKE, "force_take.lua");
script!(REFUSE_REPORT, "refuse_report.lua");
script!(DROP_TOKEN, "drop_token.lua");
script!(FORCE_REQUEST, "force_request.lua");

/// A duration as whole milliseconds for a script argument.
fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Quota counters live three days, long enough for `status` across midnight.
const QUOTA_KEY_TTL_MS: u64 = 3 * 86_400_000;

/// The coordinator's handle on Redis: a connection pool plus the key schema.
#[derive(Clone)]
pub struct TokenStore {
    pool: RedisPool,
    keys: Keys,
    quota_offset: QuotaOffset,
}

impl fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenStore")
            .field("keys", &self.keys)
            .finish_non_exhaustive()
    }
}

/// The identity of one lock attempt: `replica:nonce`, so a replica's late
/// release can never delete a lock that a later attempt of its own holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LockOwner(String);

impl LockOwner {
    pub fn new(replica_id: &str) -> Self {
        Self(format!("{replica_id}:{:016x}", rand::random::<u64>()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// What `peek` saw: enough to decide when to act next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peek {
    /// Time left on the stored token; `None` when there is none.
    pub token_ttl: Option<Duration>,
    pub generation: u64,
    /// Time the fleet-wide back-off still forbids upstream calls.
    pub gate: Duration,
    /// Time left on somebody's refresh lock; `None` when unlocked.
    pub lock_ttl: Option<Duration>,
    pub failures: u32,
    /// Besides the token's age, what asks for a refresh of the stored token.
    pub pending: Pending,
}

/// A request about the stored token that a replica must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pending {
    #[default]
    Nothing,
    /// An operator's force request is recorded for the stored generation.
    Force,
    /// A reader reported the stored generation and no verification of it stands.
    Report,
}

/// The grant `begin` / `claim` returns to the lock holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub epoch: String,
    pub fence: u64,
    /// Redis `TIME` when the grant was made (unix ms): the fleet's clock.
    pub now_ms: u64,
    /// When the grant arrived, by this replica's monotonic clock: `commit`
    /// dates the token `now_ms` + the time since, without asking Redis again.
    pub received: std::time::Instant,
    pub token_ttl: Option<Duration>,
    pub generation: u64,
    pub gate: Duration,
    pub failures: u32,
    /// An operator's force request made the (fresh) token due.
    pub forced: bool,
}

/// Why the claim is made: what, besides the token's age, may ask for a
/// refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClaimMode {
    /// Only the token's age.
    Due,
    /// An operator's force request, honoured only if the meta hash records
    /// one for the stored generation (`force_request`): a forged
    /// `refresh_requested` event makes this a plain due check.
    Force,
    /// A reader reported this generation as rejected by WeChat; `spacing`
    /// is the least time between two report-triggered refreshes.
    Report { generation: u64, spacing: Duration },
}

/// The lock/quota half of the claim script (absent: plain `begin`).
struct ClaimArgs {
    lock_ttl: Duration,
    within: Duration,
    mode: ClaimMode,
    budget: u64,
    day: QuotaDay,
}

/// What `claim` decided.
#[derive(Debug)]
pub enum Claim {
    /// Another attempt holds the lock, for this long (`None`: unknown).
    Locked { lock_ttl: Option<Duration> },
    /// This attempt holds the lock.
    Granted { grant: Grant, verdict: Verdict },
}

/// What the claim found once it held the lock.
#[derive(Debug)]
pub enum Verdict {
    /// No refresh needed: the token has more than `within` left (and no
    /// force request or report applies).
    Fresh,
    /// The fleet-wide back-off still forbids upstream calls (`Grant::gate`).
    Gated,
    /// One unit of the day's quota is taken: call WeChat.
    Taken { used: u64 },
    /// The fleet's daily budget is spent.
    OverBudget { used: u64 },
    /// The quota day the caller named is not today's by Redis' clock; take
    /// quota with [`TokenStore::take_quota`] for the day of `Grant::now_ms`.
    WrongDay,
    /// The reported generation is the stored, fresh token: no quota taken.
    Report(ReportCheck),
}

/// What a lock holder needs to judge a report of the stored token.
pub struct ReportCheck {
    /// The stored token, to check with WeChat.
    pub token: SecretString,
    /// A coordinator checked this generation with WeChat and found it
    /// accepted, and that verification still stands.
    pub verified: bool,
    /// How long until a report may trigger another refresh
    /// (`report_refresh_interval` after the last one).
    pub spacing: Duration,
}

impl fmt::Debug for ReportCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReportCheck")
            .field("token", &"[redacted]")
            .field("verified", &self.verified)
            .field("spacing", &self.spacing)
            .finish()
    }
}

/// Result of `commit`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Stored {
        generation: u64,
        expires_at_ms: u64,
    },
    /// A newer token (this generation) is already stored.
    Stale {
        generation: u64,
    },
    /// Redis lost its data since `begin`: the epoch changed.
    EpochChanged,
    /// The token had no life left by the time it reached Redis.
    Expired,
}

/// Result of `force_take`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForceTake {
    Taken,
    /// The previous force refresh was less than the spacing ago (WeChat: 45011).
    TooSoon,
    /// The day's force refreshes are used up (WeChat: 45009).
    OverDaily,
}

/// Result of `take_quota`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaTake {
    Taken { used: u64 },
    OverBudget { used: u64 },
}

/// How long the fleet must wait after a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// From now (Redis time).
    For(Duration),
    /// Until this unix ms (Redis time), e.g. the next quota day.
    Until(u64),
}

/// A failure to remember in the meta hash (no secret, no token: the message
/// comes from WeChat's errmsg or our own classification).
#[derive(Debug, Clone)]
pub struct FailureRecord {
    pub code: String,
    pub message: String,
    pub class: ErrorClass,
    pub gate: Gate,
    /// Whether it raises the back-off exponent.
    pub counts: bool,
}

/// Everything `status` shows about one credential.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredStatus {
    pub token_ttl: Option<Duration>,
    pub generation: Option<u64>,
    pub expires_at_ms: Option<u64>,
    pub fetched_at_ms: Option<u64>,
    pub fetched_by: Option<String>,
    pub source: Option<String>,
    pub last_error: Option<LastError>,
    pub quota_used_today: u64,
    pub locked_by: Option<String>,
    pub gate: Duration,
    pub failures: u32,
    /// Reports refused so far, and the last refusal's reason and time.
    pub reports_refused: u64,
    pub last_refusal_reason: Option<String>,
    pub last_refusal_at_ms: Option<u64>,
    /// Until when WeChat's acceptance of the stored token (checked after a
    /// report) stands, if it does.
    pub verified_until_ms: Option<u64>,
    /// Operator force requests so far.
    pub force_requests: u64,
}

fn pttl(ms: i64) -> Option<Duration> {
    (ms > 0).then(|| Duration::from_millis(ms.unsigned_abs()))
}

impl TokenStore {
    /// Builds the pool; does not connect until first use (see [`Self::ping`]).
    pub fn new(pool: RedisPool, keys: Keys, quota_offset: QuotaOffset) -> Self {
        Self {
            pool,
            keys,
            quota_offset,
        }
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    /// Where the pub/sub subscription connects (any topology).
    pub fn client_source(&self) -> ClientSource {
        self.pool.client_source()
    }

    pub fn quota_offset(&self) -> QuotaOffset {
        self.quota_offset
    }

    async fn conn(&self) -> Result<PooledConn, StoreError> {
        Ok(self.pool.get().await?)
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: String = redis::cmd("PING").query_async(&mut c).await?;
        Ok(())
    }

    /// Redis `TIME` in unix ms: the one clock the fleet agrees on.
    pub async fn redis_time_ms(&self) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut c).await?;
        Ok(secs * 1000 + micros / 1000)
    }

    /// The fleet marker (`Keys::fleet_marker`): its value, set to `candidate`
    /// first when there is none. One GET while it is there.
    pub async fn fleet_marker(&self, candidate: &str) -> Result<String, StoreError> {
        let mut c = self.conn().await?;
        let key = self.keys.fleet_marker();
        if let Some(v) = c.get::<_, Option<String>>(&key).await? {
            return Ok(v);
        }
        let _: Option<String> = redis::cmd("SET")
            .arg(&key)
            .arg(candidate)
            .arg("NX")
            .query_async(&mut c)
            .await?;
        let v: Option<String> = c.get(&key).await?;
        Ok(v.unwrap_or_else(|| candidate.to_owned()))
    }

    pub fn quota_day(&self, unix_ms: u64) -> QuotaDay {
        QuotaDay::from_unix_ms(
            i64::try_from(unix_ms).unwrap_or(i64::MAX),
            self.quota_offset,
        )
    }

    pub async fn peek(&self, id: &CredentialId) -> Result<Peek, StoreError> {
        let mut c = self.conn().await?;
        let (token, generation, gate, lock, failures, pending): (i64, u64, u64, i64, u32, String) =
            PEEK.key(self.keys.access_token(id))
                .key(self.keys.meta(id))
                .key(self.keys.lock(id))
                .key(self.keys.report(id))
                .invoke_async(&mut c)
                .await?;
        Ok(Peek {
            token_ttl: pttl(token),
            generation,
            gate: Duration::from_millis(gate),
            lock_ttl: pttl(lock),
            failures,
            pending: match pending.as_str() {
                "force" => Pending::Force,
                "report" => Pending::Report,
                _ => Pending::Nothing,
            },
        })
    }

    /// `SET lock owner NX PX ttl` (the lock script, which also gives a lock
    /// without expiry, never one of ours, the lock TTL): true when this
    /// attempt now holds the lock.
    pub async fn try_lock(
        &self,
        id: &CredentialId,
        owner: &LockOwner,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let locked: u8 = LOCK
            .key(self.keys.lock(id))
            .arg(owner.as_str())
            .arg(millis(ttl).max(1))
            .invoke_async(&mut c)
            .await?;
        Ok(locked == 1)
    }

    /// `begin` for a holder that took the lock with [`Self::try_lock`]: `None`
    /// when the lock no longer holds `owner`.
    pub async fn begin(
        &self,
        id: &CredentialId,
        owner: &LockOwner,
    ) -> Result<Option<Grant>, StoreError> {
        Ok(match self.run_claim(id, owner, None).await? {
            Some(Claim::Granted { grant, .. }) => Some(grant),
            _ => None,
        })
    }

    /// One round trip from "due" to "call WeChat": takes the lock for
    /// `lock_ttl`, begins (epoch, fence), and unless the token has more than
    /// `within` left (and `mode` asks for nothing else) or the fleet is
    /// gated, takes one unit of `day`'s quota (at most `budget`). A report of
    /// the stored, fresh generation takes no quota: see [`Verdict::Report`].
    #[allow(clippy::too_many_arguments)]
    pub async fn claim(
        &self,
        id: &CredentialId,
        owner: &LockOwner,
        lock_ttl: Duration,
        within: Duration,
        mode: ClaimMode,
        budget: u64,
        day: QuotaDay,
    ) -> Result<Claim, StoreError> {
        let args = ClaimArgs {
            lock_ttl,
            within,
            mode,
            budget,
            day,
        };
        self.run_claim(id, owner, Some(&args))
            .await?
            .ok_or_else(|| StoreError::Reply("claim: lock lost while taking it".into()))
    }

    /// The claim script; `None` for args: plain `begin` (the lock must
    /// already hold `owner`; no freshness verdict, no quota).
    async fn run_claim(
        &self,
        id: &CredentialId,
        owner: &LockOwner,
        args: Option<&ClaimArgs>,
    ) -> Result<Option<Claim>, StoreError> {
        let mut c = self.conn().await?;
        let candidate_epoch = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let mut script = CLAIM.key(self.keys.lock(id));
        script
            .key(self.keys.epoch(id))
            .key(self.keys.fence(id))
            .key(self.keys.meta(id))
            .key(self.keys.access_token(id))
            .arg(owner.as_str())
            .arg(candidate_epoch);
        match args {
            None => {
                script.arg("").arg("");
            }
            Some(a) => {
                let (mode, reported, spacing) = match a.mode {
                    ClaimMode::Due => ("due", 0, Duration::ZERO),
                    ClaimMode::Force => ("force", 0, Duration::ZERO),
                    ClaimMode::Report {
                        generation,
                        spacing,
                    } => ("report", generation, spacing),
                };
                script
                    .key(self.keys.quota(id, a.day))
                    .arg(millis(a.lock_ttl).max(1))
                    .arg(millis(a.within))
                    .arg(mode)
                    .arg(a.budget)
                    .arg(QUOTA_KEY_TTL_MS)
                    .arg(a.day.start_unix_ms())
                    .arg(a.day.next_start_unix_ms())
                    .arg(reported)
                    .arg(millis(spacing));
            }
        }
        let reply: redis::Value = script.invoke_async(&mut c).await?;
        let received = std::time::Instant::now();
        let parsed: Vec<redis::Value> = redis::from_redis_value(reply)?;
        let tag: String = match parsed.first() {
            Some(v) => redis::from_redis_value_ref(v)?,
            None => return Err(StoreError::Reply("claim returned nothing".into())),
        };
        match tag.as_str() {
            "ok" => {}
            "locked" => {
                let (_, held): (String, i64) =
                    redis::from_redis_value(redis::Value::Array(parsed))?;
                return Ok(Some(Claim::Locked {
                    lock_ttl: pttl(held),
                }));
            }
            _ => return Ok(None),
        }
        let (head, report) = if parsed.len() > 11 {
            let mut head = parsed;
            let tail = head.split_off(11);
            (head, Some(tail))
        } else {
            (parsed, None)
        };
        let (_, epoch, fence, now_ms, token, generation, gate, failures, verdict, used, forced): (
            String,
            String,
            u64,
            u64,
            i64,
            u64,
            u64,
            u32,
            String,
            u64,
            u8,
        ) = redis::from_redis_value(redis::Value::Array(head))?;
        let verdict = match (verdict.as_str(), report) {
            ("report", Some(tail)) => {
                let (value, verified, spacing): (String, u8, u64) =
                    redis::from_redis_value(redis::Value::Array(tail))?;
                Verdict::Report(ReportCheck {
                    token: SecretString::from(value),
                    verified: verified == 1,
                    spacing: Duration::from_millis(spacing),
                })
            }
            ("fresh" | "none", _) => Verdict::Fresh,
            ("gated", _) => Verdict::Gated,
            ("ok", _) => Verdict::Taken { used },
            ("over", _) => Verdict::OverBudget { used },
            _ => Verdict::WrongDay,
        };
        Ok(Some(Claim::Granted {
            grant: Grant {
                epoch,
                fence,
                now_ms,
                received,
                token_ttl: pttl(token),
                generation,
                gate: Duration::from_millis(gate),
                failures,
                forced: forced == 1,
            },
            verdict,
        }))
    }

    pub async fn take_quota(
        &self,
        id: &CredentialId,
        day: QuotaDay,
        budget: u64,
    ) -> Result<QuotaTake, StoreError> {
        self.take_from(self.keys.quota(id, day), budget).await
    }

    /// One unit of `day`'s token-check budget (the cheap WeChat call that
    /// verifies a reported token).
    pub async fn take_verify_quota(
        &self,
        id: &CredentialId,
        day: QuotaDay,
        budget: u64,
    ) -> Result<QuotaTake, StoreError> {
        self.take_from(self.keys.verify_quota(id, day), budget)
            .await
    }

    async fn take_from(&self, key: String, budget: u64) -> Result<QuotaTake, StoreError> {
        let mut c = self.conn().await?;
        let (tag, used): (String, u64) = QUOTA_TAKE
            .key(key)
            .arg(budget)
            .arg(QUOTA_KEY_TTL_MS)
            .invoke_async(&mut c)
            .await?;
        Ok(if tag == "ok" {
            QuotaTake::Taken { used }
        } else {
            QuotaTake::OverBudget { used }
        })
    }

    /// The fenced write. `ttl` is the token's remaining life.
    #[allow(clippy::too_many_arguments)]
    pub async fn commit(
        &self,
        id: &CredentialId,
        grant: &Grant,
        owner: &LockOwner,
        token: &SecretString,
        ttl: Duration,
        fetched_by: &str,
        source: &str,
    ) -> Result<Commit, StoreError> {
        let mut c = self.conn().await?;
        let (tag, a, b): (String, u64, Option<u64>) = COMMIT
            .key(self.keys.access_token(id))
            .key(self.keys.meta(id))
            .key(self.keys.epoch(id))
            .key(self.keys.events(id))
            .key(self.keys.lock(id))
            .arg(&grant.epoch)
            .arg(grant.fence)
            .arg(token.expose_secret())
            .arg(millis(ttl))
            .arg(fetched_by)
            .arg(source)
            .arg(owner.as_str())
            .arg(
                grant
                    .now_ms
                    .saturating_add(millis(grant.received.elapsed())),
            )
            .invoke_async(&mut c)
            .await?;
        Ok(match tag.as_str() {
            "ok" => Commit::Stored {
                generation: a,
                expires_at_ms: b.unwrap_or(0),
            },
            "stale" => Commit::Stale { generation: a },
            "epoch" => Commit::EpochChanged,
            _ => Commit::Expired,
        })
    }

    /// Compare-and-delete of the lock. True when this owner held it.
    pub async fn release(&self, id: &CredentialId, owner: &LockOwner) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n: u64 = RELEASE
            .key(self.keys.lock(id))
            .arg(owner.as_str())
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Records that a report of `generation` led to no refresh and tells the
    /// reporters. `verified_for`: WeChat accepted the token just now, and
    /// reports of it are answered `token_valid` for this long without
    /// asking WeChat again. Returns the count of refused reports.
    pub async fn refuse_report(
        &self,
        id: &CredentialId,
        generation: u64,
        reason: &str,
        verified_for: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        Ok(REFUSE_REPORT
            .key(self.keys.meta(id))
            .key(self.keys.events(id))
            .key(self.keys.report(id))
            .arg(generation)
            .arg(reason)
            .arg(verified_for.map_or(String::new(), |d| millis(d).to_string()))
            .invoke_async(&mut c)
            .await?)
    }

    /// Compare-and-delete of a token WeChat rejected (verified, not merely
    /// reported); `reported`: a report triggered this, which starts the
    /// report spacing. `Some(generation)` of the dropped token, `None` when
    /// another token was stored already.
    pub async fn drop_token(
        &self,
        id: &CredentialId,
        dead: &SecretString,
        reported: bool,
    ) -> Result<Option<u64>, StoreError> {
        let mut c = self.conn().await?;
        let (what, generation): (String, u64) = DROP_TOKEN
            .key(self.keys.access_token(id))
            .key(self.keys.meta(id))
            .key(self.keys.events(id))
            .arg(dead.expose_secret())
            .arg(if reported { "1" } else { "0" })
            .invoke_async(&mut c)
            .await?;
        Ok((what == "invalidated").then_some(generation))
    }

    /// An operator's force request (`wxtoken refresh --force`): recorded
    /// where readers cannot write, then announced. Returns (generation to
    /// replace, force requests so far, replicas that heard it).
    pub async fn force_request(
        &self,
        id: &CredentialId,
        by: &str,
    ) -> Result<(u64, u64, u64), StoreError> {
        let mut c = self.conn().await?;
        Ok(FORCE_REQUEST
            .key(self.keys.meta(id))
            .key(self.keys.events(id))
            .arg(truncate(by, 128))
            .invoke_async(&mut c)
            .await?)
    }

    /// Who recorded the pending force request (`force_by`), for the log.
    pub async fn force_requester(&self, id: &CredentialId) -> Result<String, StoreError> {
        let mut c = self.conn().await?;
        let by: Option<String> = c.hget(self.keys.meta(id), meta::FORCE_BY).await?;
        Ok(by.unwrap_or_default())
    }

    /// Takes one of the fleet's force refreshes for today, if the limits allow.
    pub async fn force_take(
        &self,
        id: &CredentialId,
        daily: u64,
        spacing: Duration,
    ) -> Result<ForceTake, StoreError> {
        let day = self.quota_day(self.redis_time_ms().await?);
        let mut c = self.conn().await?;
        let (tag, _n): (String, u64) = FORCE_TAKE
            .key(self.keys.meta(id))
            .arg(day.key_suffix())
            .arg(daily)
            .arg(millis(spacing))
            .invoke_async(&mut c)
            .await?;
        Ok(match tag.as_str() {
            "ok" => ForceTake::Taken,
            "too_soon" => ForceTake::TooSoon,
            _ => ForceTake::OverDaily,
        })
    }

    /// Records a failure and gates the fleet; returns the consecutive-failure count.
    pub async fn record_failure(
        &self,
        id: &CredentialId,
        failure: &FailureRecord,
    ) -> Result<u32, StoreError> {
        let mut c = self.conn().await?;
        let gate = match failure.gate {
            Gate::For(d) => format!("rel:{}", d.as_millis()),
            Gate::Until(ms) => format!("abs:{ms}"),
        };
        let (failures, _next): (u32, u64) = RECORD_FAILURE
            .key(self.keys.meta(id))
            .arg(&failure.code)
            .arg(truncate(&failure.message, 200))
            .arg(failure.class.as_str())
            .arg(gate)
            .arg(if failure.counts { "1" } else { "0" })
            .invoke_async(&mut c)
            .await?;
        Ok(failures)
    }

    /// For `stable_token` refreshes: the stored token (if any) and the SHA-1 of
    /// the last token reported invalid (if any).
    pub async fn stable_check(
        &self,
        id: &CredentialId,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let mut c = self.conn().await?;
        Ok(redis::pipe()
            .get(self.keys.access_token(id))
            .hget(self.keys.meta(id), meta::INVALIDATED_SHA1)
            .query_async(&mut c)
            .await?)
    }

    pub async fn read_token(&self, id: &CredentialId) -> Result<Option<StoredToken>, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::read_token(&mut c, &self.keys, id).await?)
    }

    pub async fn invalidate(
        &self,
        id: &CredentialId,
        bad_token: &str,
    ) -> Result<Invalidation, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::invalidate(&mut c, &self.keys, id, bad_token).await?)
    }

    pub async fn publish(&self, id: &CredentialId, event: &Event) -> Result<u64, StoreError> {
        let mut c = self.conn().await?;
        Ok(keyspace::publish(&mut c, &self.keys, id, event).await?)
    }

    /// Lifts the back-off gate and today's quota count; asks for a refresh.
    /// Returns the quota count that was cleared.
    pub async fn reset_gate(&self, id: &CredentialId) -> Result<u64, StoreError> {
        let day = self.quota_day(self.redis_time_ms().await?);
        let mut c = self.conn().await?;
        Ok(RESET_GATE
            .key(self.keys.meta(id))
            .key(self.keys.quota(id, day))
            .key(self.keys.events(id))
            .invoke_async(&mut c)
            .await?)
    }

    /// Quota calls recorded for the quota day containing Redis' now.
    pub async fn quota_used_today(&self, id: &CredentialId) -> Result<u64, StoreError> {
        let day = self.quota_day(self.redis_time_ms().await?);
        let mut c = self.conn().await?;
        let used: Option<u64> = c.get(self.keys.quota(id, day)).await?;
        Ok(used.unwrap_or(0))
    }

    /// Everything `wxtoken status` shows, in two round trips.
    pub async fn status(&self, id: &CredentialId) -> Result<StoredStatus, StoreError> {
        let now = self.redis_time_ms().await?;
        let day = self.quota_day(now);
        let mut c = self.conn().await?;
        let (token_pttl, fields, quota, lock): (
            i64,
            Vec<Option<String>>,
            Option<u64>,
            Option<String>,
        ) = redis::pipe()
            .pttl(self.keys.access_token(id))
            .cmd("HMGET")
            .arg(self.keys.meta(id))
            .arg(&[
                meta::GENERATION,
                meta::EXPIRES_AT_MS,
                meta::FETCHED_AT_MS,
                meta::FETCHED_BY,
                meta::SOURCE,
                meta::LAST_ERROR_CODE,
                meta::LAST_ERROR_MSG,
                meta::LAST_ERROR_AT_MS,
                meta::LAST_ERROR_CLASS,
                meta::NEXT_ATTEMPT_AT_MS,
                meta::FAILURES,
                meta::REPORTS_REFUSED,
                meta::LAST_REFUSAL_REASON,
                meta::LAST_REFUSAL_AT_MS,
                meta::VERIFIED_GENERATION,
                meta::VERIFIED_UNTIL_MS,
                meta::FORCE_REQUESTS,
            ])
            .get(self.keys.quota(id, day))
            .get(self.keys.lock(id))
            .query_async(&mut c)
            .await?;
        let field = |i: usize| fields.get(i).cloned().flatten();
        let num = |i: usize| field(i).and_then(|v| v.parse::<u64>().ok());
        let last_error = field(5).map(|code| LastError {
            code,
            message: field(6).unwrap_or_default(),
            at_ms: num(7).unwrap_or(0),
            class: field(8).and_then(|c| serde_json::from_value(serde_json::Value::String(c)).ok()),
        });
        Ok(StoredStatus {
            token_ttl: pttl(token_pttl),
            generation: num(0),
            expires_at_ms: num(1),
            fetched_at_ms: num(2),
            fetched_by: field(3),
            source: field(4),
            last_error,
            quota_used_today: quota.unwrap_or(0),
            locked_by: lock,
            gate: Duration::from_millis(num(9).unwrap_or(0).saturating_sub(now)),
            failures: num(10).and_then(|f| u32::try_from(f).ok()).unwrap_or(0),
            reports_refused: num(11).unwrap_or(0),
            last_refusal_reason: field(12),
            last_refusal_at_ms: num(13),
            verified_until_ms: num(15)
                .filter(|until| *until > now && num(14) == num(0) && num(0).is_some()),
            force_requests: num(16).unwrap_or(0),
        })
    }
}

/// Cuts `s` to at most `max` characters (WeChat errmsgs can be long).
fn truncate(s: &str, max: usize) -> String {
    s.chars().filter(|c| !c.is_control()).take(max).collect()
}
