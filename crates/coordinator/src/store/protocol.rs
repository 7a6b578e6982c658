//! The refresh protocol's Redis side (SPEC §3): lock, claim (lock + begin +
//! quota in one round trip), quota for any period, the fenced commit,
//! release, failures and the gate, and the verdicts on reports.

use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use wxtoken_common::{CredentialRef, meta};

use super::quota::quota_ttl_ms;
use super::{
    Claim, ClaimArgs, ClaimMode, Commit, FailureRecord, Gate, Grant, Life, LockOwner, Peek,
    Pending, ReportCheck, StoreError, TokenStore, Verdict, millis, pttl, script, slot_field,
    truncate,
};

script!(LOCK, "lock.lua");
script!(CLAIM, quota, "claim.lua");
script!(COMMIT, "commit.lua");
script!(RELEASE, "release.lua");
script!(RECORD_FAILURE, "record_failure.lua");
script!(PEEK, "peek.lua");
script!(REFUSE_REPORT, "refuse_report.lua");
script!(DROP_TOKEN, "drop_token.lua");

/// What a commit writes besides the value.
#[derive(Debug)]
pub struct CommitArgs<'a> {
    pub value: &'a SecretString,
    /// When the value dies (this process' clock). The commit turns it into
    /// an absolute Redis time (`PXAT`), so time spent reaching Redis is not
    /// added to the value's life.
    pub expires: Instant,
    pub fetched_by: &'a str,
    pub source: &'a str,
    pub life: Life,
    /// First-stored life: how long after the counted expiry WeChat's own may
    /// lie; no upstream call for this value until then (see commit.lua).
    pub settle: Duration,
    /// A report triggered this refresh (starts the report spacing).
    pub reported: bool,
    /// Announce the value as a fill to be spread (`refreshed` event's
    /// `filled`).
    pub filled: bool,
    /// A refresh token that came with the value, sealed, and the key it goes
    /// to: stored in the same fenced commit (SPEC §9).
    pub refresh_token: Option<(String, String)>,
    /// The lock stays held after the commit (a follower's, SPEC §12).
    pub keep_lock: bool,
}

impl<'a> CommitArgs<'a> {
    /// An access token whose life is `ttl` from now, as tools and tests
    /// commit one by hand.
    pub fn token(
        value: &'a SecretString,
        ttl: Duration,
        fetched_by: &'a str,
        source: &'a str,
    ) -> Self {
        Self {
            value,
            expires: Instant::now() + ttl,
            fetched_by,
            source,
            life: Life::Reply,
            settle: Duration::ZERO,
            reported: false,
            filled: false,
            refresh_token: None,
            keep_lock: false,
        }
    }
}

impl TokenStore {
    pub async fn peek(&self, cref: &CredentialRef) -> Result<Peek, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let (token, generation, gate, lock, failures, pending): (i64, u64, u64, i64, u32, String) =
            PEEK.key(&k.value)
                .key(&k.meta)
                .key(&k.lock)
                .key(&k.report)
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
        cref: &CredentialRef,
        owner: &LockOwner,
        ttl: Duration,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let locked: u8 = LOCK
            .key(self.keys.slot(cref).lock)
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
        cref: &CredentialRef,
        owner: &LockOwner,
    ) -> Result<Option<Grant>, StoreError> {
        Ok(match self.run_claim(cref, owner, None, None).await? {
            Some(Claim::Granted { grant, .. }) => Some(grant),
            _ => None,
        })
    }

    /// Takes the lock of `cref` for `ttl` when it is free and begins, in
    /// one round trip, with no freshness verdict and no quota: the grant a
    /// value that needs no fetch is committed under (a followed
    /// component's authorizer, a value WeChat issued outside a step, a
    /// leader's value handed to its follower; the commit releases the
    /// lock). `None`: another holds the lock.
    pub async fn lock_and_begin(
        &self,
        cref: &CredentialRef,
        owner: &LockOwner,
        ttl: Duration,
    ) -> Result<Option<Grant>, StoreError> {
        Ok(match self.run_claim(cref, owner, None, Some(ttl)).await? {
            Some(Claim::Granted { grant, .. }) => Some(grant),
            _ => None,
        })
    }

    /// One round trip from "due" to "call WeChat": takes the lock, begins
    /// (epoch, fence), and unless the value is fresh (and `args.mode` asks
    /// for nothing else) or the fleet is gated, takes one unit of the
    /// period's quota. A report of the stored, fresh generation takes no
    /// quota: see [`Verdict::Report`].
    pub async fn claim(
        &self,
        cref: &CredentialRef,
        owner: &LockOwner,
        args: &ClaimArgs,
    ) -> Result<Claim, StoreError> {
        self.run_claim(cref, owner, Some(args), None)
            .await?
            .ok_or_else(|| StoreError::Reply("claim: lock lost while taking it".into()))
    }

    /// The claim script; `None` for args: plain `begin` (no freshness
    /// verdict, no quota; the lock must already hold `owner`, or is taken
    /// for `take` when free).
    async fn run_claim(
        &self,
        cref: &CredentialRef,
        owner: &LockOwner,
        args: Option<&ClaimArgs>,
        take: Option<Duration>,
    ) -> Result<Option<Claim>, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let candidate_epoch = format!(
            "{:016x}{:016x}",
            rand::random::<u64>(),
            rand::random::<u64>()
        );
        let mut script = CLAIM.key(&k.lock);
        script
            .key(&k.epoch)
            .key(&k.fence)
            .key(&k.meta)
            .key(&k.value)
            .arg(owner.as_str())
            .arg(candidate_epoch);
        match args {
            None => {
                let ttl = take.map_or_else(String::new, |t| millis(t).max(1).to_string());
                script.arg(ttl).arg("");
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
                let hourly = a.period.window().slides();
                script
                    .key(k.quota_in(&a.period))
                    .key(k.quota_in(&a.period.previous()))
                    .arg(millis(a.lock_ttl).max(1))
                    .arg(millis(a.within))
                    .arg(mode)
                    .arg(a.budget)
                    .arg(quota_ttl_ms(a.period.window()))
                    .arg(a.period.start_unix_ms())
                    .arg(a.period.end_unix_ms())
                    .arg(reported)
                    .arg(millis(spacing))
                    .arg(if hourly { "1" } else { "0" });
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

    /// The fenced write, of a value that dies at `args.expires`.
    pub async fn commit(
        &self,
        cref: &CredentialRef,
        grant: &Grant,
        owner: &LockOwner,
        args: &CommitArgs<'_>,
    ) -> Result<Commit, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        // Redis' clock now, from the grant's TIME: a little behind the real
        // one (the reply's trip), so the value expires early, never late.
        let now = Instant::now();
        let now_ms = grant
            .now_ms
            .saturating_add(millis(now.saturating_duration_since(grant.received)));
        let ttl = args.expires.saturating_duration_since(now);
        let mut script = COMMIT.key(&k.value);
        script
            .key(&k.meta)
            .key(&k.epoch)
            .key(&k.events)
            .key(&k.lock);
        if let Some((key, _)) = &args.refresh_token {
            script.key(key);
        }
        let (tag, a, b): (String, u64, Option<u64>) = script
            .arg(&grant.epoch)
            .arg(grant.fence)
            .arg(args.value.expose_secret())
            .arg(millis(ttl))
            .arg(args.fetched_by)
            .arg(args.source)
            .arg(owner.as_str())
            .arg(now_ms)
            .arg(match args.life {
                Life::Reply => "reply",
                Life::FirstStored => "first_stored",
            })
            .arg(slot_field(cref.slot))
            .arg(millis(args.settle))
            .arg(if args.reported { "1" } else { "0" })
            .arg(args.refresh_token.as_ref().map_or("", |(_, v)| v.as_str()))
            .arg(if args.filled { "1" } else { "0" })
            .arg(if args.keep_lock { "keep" } else { "" })
            .invoke_async(&mut c)
            .await?;
        Ok(match tag.as_str() {
            "ok" => Commit::Stored {
                generation: a,
                expires_at_ms: b.unwrap_or(0),
            },
            "same" => Commit::Same {
                generation: a,
                expires_at_ms: b.unwrap_or(0),
            },
            "stale" => Commit::Stale { generation: a },
            "early" => Commit::Early { generation: a },
            "epoch" => Commit::EpochChanged,
            _ => Commit::Expired,
        })
    }

    /// Compare-and-delete of the lock. True when this owner held it.
    pub async fn release(
        &self,
        cref: &CredentialRef,
        owner: &LockOwner,
    ) -> Result<bool, StoreError> {
        let mut c = self.conn().await?;
        let n: u64 = RELEASE
            .key(self.keys.slot(cref).lock)
            .arg(owner.as_str())
            .invoke_async(&mut c)
            .await?;
        Ok(n == 1)
    }

    /// Records a failure and gates the fleet; returns the consecutive-failure count.
    pub async fn record_failure(
        &self,
        cref: &CredentialRef,
        failure: &FailureRecord,
    ) -> Result<u32, StoreError> {
        let mut c = self.conn().await?;
        let gate = match failure.gate {
            Gate::For(d) => format!("rel:{}", d.as_millis()),
            Gate::Until(ms) => format!("abs:{ms}"),
        };
        let (failures, _next): (u32, u64) = RECORD_FAILURE
            .key(self.keys.slot(cref).meta)
            .arg(&failure.code)
            .arg(truncate(&failure.message, 200))
            .arg(failure.class.as_str())
            .arg(gate)
            .arg(if failure.counts { "1" } else { "0" })
            .invoke_async(&mut c)
            .await?;
        Ok(failures)
    }

    /// Records that a report of `generation` led to no refresh and tells the
    /// reporters. `verified_for`: WeChat accepted the value just now, and
    /// reports of it are answered `token_valid` for this long without
    /// asking WeChat again. Returns the count of refused reports.
    pub async fn refuse_report(
        &self,
        cref: &CredentialRef,
        generation: u64,
        reason: &str,
        verified_for: Option<Duration>,
    ) -> Result<u64, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        Ok(REFUSE_REPORT
            .key(&k.meta)
            .key(&k.events)
            .key(&k.report)
            .arg(generation)
            .arg(reason)
            .arg(verified_for.map_or(String::new(), |d| millis(d).to_string()))
            .arg(slot_field(cref.slot))
            .invoke_async(&mut c)
            .await?)
    }

    /// Compare-and-delete of a value WeChat rejected (verified, not merely
    /// reported); `reported`: a report triggered this, which starts the
    /// report spacing. `Some(generation)` of the dropped value, `None` when
    /// another value was stored already.
    pub async fn drop_token(
        &self,
        cref: &CredentialRef,
        dead: &SecretString,
        reported: bool,
    ) -> Result<Option<u64>, StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        let (what, generation): (String, u64) = DROP_TOKEN
            .key(&k.value)
            .key(&k.meta)
            .key(&k.events)
            .arg(dead.expose_secret())
            .arg(if reported { "1" } else { "0" })
            .arg(slot_field(cref.slot))
            .invoke_async(&mut c)
            .await?;
        Ok((what == "invalidated").then_some(generation))
    }

    /// For kinds that judge a fetched value: the stored value (if any) and
    /// the SHA-1 of the last one reported dead (if any).
    pub async fn digest(
        &self,
        cref: &CredentialRef,
    ) -> Result<(Option<String>, Option<String>), StoreError> {
        let k = self.keys.slot(cref);
        let mut c = self.conn().await?;
        Ok(redis::pipe()
            .get(&k.value)
            .hget(&k.meta, meta::INVALIDATED_SHA1)
            .query_async(&mut c)
            .await?)
    }
}
