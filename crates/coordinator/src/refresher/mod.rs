//! `refresher`: one credential's refresh, as a testable step
//! ([`Refresher::try_refresh`] → [`RefreshOutcome`]) and a thin policy loop
//! around it (`policy`), for any credential kind.
//!
//! The step is SPEC §5's protocol: lock, begin (fence + read again), gate,
//! quota (the kind's period and budget, and a shared limit when it has one),
//! fetch, fenced commit, release. It never sleeps and never loops; when to
//! call it again is the policy's business. Only the step calls a kind's
//! fetch, and only while holding the credential's lock with quota taken
//! (invariant 1); values reach Redis only through `store::commit`
//! (invariant 2). A report becomes a fetch only through `report.rs`
//! (invariant 7). The step never names a kind: what differs comes from the
//! [`Kind`](crate::kind::Kind).
//!
//! Here the step itself (lock, claim, decide); its upstream side in
//! `fetch.rs`, what follows a fetch in Redis in `commit.rs`, and a step that
//! ends without a value in `failure.rs`.

mod backoff;
mod books;
mod commit;
mod failure;
mod fetch;
mod outcome;
mod policy;
mod report;
mod schedule;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use tracing::{debug, info, warn};
use wxtoken_client::TokenClient;
use wxtoken_common::{CredentialRef, ErrorClass};

pub use backoff::Backoff;
pub use books::{HeldLocks, TtlBook};
pub use outcome::{Mode, RefreshOutcome, Refusal};
pub use policy::{LoopState, Plan, Refreshed, plan, turn};
pub use schedule::Schedule;

use commit::Follow;
use failure::NO_REFRESH_TOKEN_WAIT;

use crate::config::RefreshConfig;
use crate::kind::{Credential, Digest, Judgement, sha1_hex};
use crate::store::{
    Claim, ClaimArgs, FailureRecord, Gate, Grant, LockOwner, QuotaTake, StoreError, TokenStore,
    Verdict,
};
use crate::upstream::Upstream;
use crate::vault::Vault;

/// Refresh steps (and peeks) one replica runs at once. After a data loss every
/// credential is due together: 10 000 simultaneous upstream calls would open
/// as many connections to WeChat from one address (and as many buffers in
/// this process); 64 in flight refill 10 000 credentials in seconds.
pub const MAX_CONCURRENT_REFRESHES: usize = 64;

/// The per-replica refresh machinery shared by every credential's loop.
#[derive(Debug)]
pub struct Refresher {
    store: TokenStore,
    upstream: Upstream,
    /// The replica's read path: a ticket's fetch reads its parent token here
    /// (the cache, kept current by events) rather than from Redis.
    client: TokenClient,
    settings: RefreshConfig,
    /// Sealed secrets kinds fetch with (verify tickets, refresh tokens).
    vault: Vault,
    backoff: Backoff,
    replica_id: String,
    held: HeldLocks,
    /// Redis `TIME` of the last grant and when it arrived (see `redis_now_ms`).
    redis_clock: Mutex<Option<(u64, Instant)>>,
    /// Refresh steps in flight at once (see [`MAX_CONCURRENT_REFRESHES`]).
    slots: tokio::sync::Semaphore,
    ttls: Arc<TtlBook>,
}

/// How the lock holder goes on after the claim: the quota it took and why.
struct Proceed {
    take: QuotaTake,
    /// A report triggered this refresh (commit starts the report spacing).
    reported: bool,
    /// A value reported dead that the kind checks by fetching again: a
    /// fetch returning it proves it valid.
    compare_with: Option<SecretString>,
}

impl Refresher {
    pub fn new(
        store: TokenStore,
        upstream: Upstream,
        client: TokenClient,
        settings: RefreshConfig,
        vault: Vault,
        replica_id: String,
    ) -> Self {
        let backoff = Backoff {
            base: settings.backoff_base,
            max: settings.backoff_max,
            fatal_cooldown: settings.fatal_cooldown,
        };
        Self {
            store,
            upstream,
            client,
            settings,
            vault,
            backoff,
            replica_id,
            held: HeldLocks::default(),
            redis_clock: Mutex::new(None),
            slots: tokio::sync::Semaphore::new(MAX_CONCURRENT_REFRESHES),
            ttls: Arc::default(),
        }
    }

    pub fn store(&self) -> &TokenStore {
        &self.store
    }

    /// The fleet's value of `cref`, waiting up to `wait` for one when none
    /// is stored yet (a component token right after its first verify
    /// ticket); `None` if none came.
    pub async fn await_value(&self, cref: &CredentialRef, wait: Duration) -> Option<String> {
        let token = tokio::time::timeout(wait, self.client.value(cref)).await;
        token.ok()?.ok().map(|t| t.value().to_owned())
    }

    pub fn settings(&self) -> &RefreshConfig {
        &self.settings
    }

    /// The replica's read path (cache + events).
    pub fn client(&self) -> &TokenClient {
        &self.client
    }

    pub fn vault(&self) -> &Vault {
        &self.vault
    }

    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// What the loops last knew of each value's life.
    pub fn ttls(&self) -> &Arc<TtlBook> {
        &self.ttls
    }

    pub fn held_locks(&self) -> &HeldLocks {
        &self.held
    }

    /// One refresh attempt for `cred` (SPEC §5).
    pub async fn try_refresh(
        &self,
        cred: &Credential,
        mode: Mode,
    ) -> Result<RefreshOutcome, StoreError> {
        let cref = &cred.cref;
        // Only while no value is stored (a data loss, a new registration):
        // a steady-state refresh, made while the value lives, reads the
        // refresh token under the lock anyway.
        let no_value = !matches!(self.ttls.ttl(cref), Some(Some(ttl)) if !ttl.is_zero());
        if cred.kind.needs_refresh_token()
            && matches!(mode, Mode::Due { .. })
            && no_value
            && !self.vault.has_refresh_token(&cref.id).await?
        {
            debug!(credential = %cref, "no refresh token stored: not claiming until an authorization or import");
            let outcome = RefreshOutcome::Gated {
                wait: NO_REFRESH_TOKEN_WAIT,
            };
            crate::metrics::refresh(cred, "no_refresh_token");
            return Ok(outcome);
        }
        let owner = LockOwner::new(&self.replica_id);
        let limits = cred.kind.limits(&self.settings);
        let args = ClaimArgs {
            lock_ttl: self.settings.lock_ttl,
            within: mode.within(),
            mode: mode.claim(&self.settings),
            budget: limits.budget,
            period: self.store.period(limits.window, self.redis_now_ms().await?),
        };
        let (grant, verdict) = match self.store.claim(cref, &owner, &args).await? {
            Claim::Locked { lock_ttl } => {
                crate::metrics::lock(false);
                let outcome = RefreshOutcome::LockedElsewhere { lock_ttl };
                crate::metrics::refresh(cred, outcome.label());
                return Ok(outcome);
            }
            Claim::Granted { grant, verdict } => (grant, verdict),
        };
        crate::metrics::lock(true);
        let locked_at = Instant::now();
        self.note_redis_time(&grant);
        self.held.insert(cref, &owner);
        let outcome = self
            .with_lock(cred, mode, &owner, locked_at, grant, verdict)
            .await;
        // `commit` releases on its own; every other path releases here.
        let released = match &outcome {
            Ok(RefreshOutcome::Refreshed { .. }) | Ok(RefreshOutcome::NotStored(_)) => Ok(true),
            _ => self.store.release(cref, &owner).await,
        };
        if let Err(e) = released {
            warn!(credential = %cref, error = %e, "could not release the refresh lock; it expires by itself");
        }
        self.held.remove(cref);
        if let Ok(o) = &outcome {
            crate::metrics::refresh(cred, o.label());
        }
        outcome
    }

    /// One of the replica's [`MAX_CONCURRENT_REFRESHES`] step slots. Taken
    /// before the lock, so a queued step holds no lock, other replicas pick
    /// up what this one has no slot for, and the waiting loop can give up
    /// when an event says the refresh is done (cancel-safe until the step
    /// starts).
    pub async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.slots.acquire().await.ok()
    }

    /// [`Self::try_refresh`] in a box: the step's future exists only while
    /// it runs, not in every sleeping loop.
    pub async fn refresh(
        &self,
        _slot: tokio::sync::SemaphorePermit<'_>,
        cred: &Credential,
        mode: Mode,
    ) -> Result<RefreshOutcome, StoreError> {
        Box::pin(self.try_refresh(cred, mode)).await
    }

    /// `peek` under the same bound as refresh steps: after a data loss or at
    /// start every credential's loop peeks at once, and each Redis call in
    /// flight holds ~11 KB (110 MB for 10 000 credentials, which the
    /// allocator then keeps).
    pub async fn peek(&self, cref: &CredentialRef) -> Result<crate::store::Peek, StoreError> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(StoreError::Reply("replica shutting down".into()));
        };
        Box::pin(self.store.peek(cref)).await
    }

    /// Redis' clock now, estimated from the last grant and this replica's
    /// monotonic clock (asked once at start); only used to name the quota
    /// period, which `claim` checks against Redis' own clock.
    async fn redis_now_ms(&self) -> Result<u64, StoreError> {
        let known = self.redis_clock.lock().ok().and_then(|c| *c);
        if let Some((ms, at)) = known {
            return Ok(ms + u64::try_from(at.elapsed().as_millis()).unwrap_or(0));
        }
        let ms = self.store.redis_time_ms().await?;
        if let Ok(mut c) = self.redis_clock.lock() {
            *c = Some((ms, Instant::now()));
        }
        Ok(ms)
    }

    fn note_redis_time(&self, grant: &Grant) {
        if let Ok(mut c) = self.redis_clock.lock() {
            *c = Some((grant.now_ms, grant.received));
        }
    }

    async fn with_lock(
        &self,
        cred: &Credential,
        mode: Mode,
        owner: &LockOwner,
        locked_at: Instant,
        grant: Grant,
        verdict: Verdict,
    ) -> Result<RefreshOutcome, StoreError> {
        let cref = &cred.cref;
        let limits = cred.kind.limits(&self.settings);
        let period = self.store.period(limits.window, grant.now_ms);
        let plan = match verdict {
            Verdict::Fresh => {
                let ttl = grant.token_ttl.unwrap_or_default();
                debug!(credential = %cref, ?ttl, "value already fresh after taking the lock");
                return Ok(RefreshOutcome::StillFresh { ttl });
            }
            Verdict::Gated => return Ok(RefreshOutcome::Gated { wait: grant.gate }),
            Verdict::Taken { used } => Proceed::due(QuotaTake::Taken { used }),
            Verdict::OverBudget { used } => Proceed::due(QuotaTake::OverBudget { used }),
            Verdict::WrongDay => {
                Proceed::due(self.store.take_quota(cref, &period, limits.budget).await?)
            }
            Verdict::Report(check) => {
                let Mode::Report { generation, .. } = mode else {
                    return Ok(RefreshOutcome::StillFresh {
                        ttl: grant.token_ttl.unwrap_or_default(),
                    });
                };
                match self.judge_report(cred, &grant, generation, check).await? {
                    Ok(plan) => plan,
                    Err(outcome) => return Ok(outcome),
                }
            }
        };
        if grant.forced {
            crate::metrics::forced_refresh(cred);
            let by = self.store.force_requester(cref).await.unwrap_or_default();
            info!(credential = %cref, by = %by, "refreshing a fresh value: an operator forced it");
        }
        match plan.take {
            QuotaTake::Taken { used } => crate::metrics::quota_used(cred, used),
            QuotaTake::OverBudget { used } => {
                let gate = Gate::Until(u64::try_from(period.end_unix_ms()).unwrap_or(u64::MAX));
                self.over_budget(cref, limits.budget, used, gate).await?;
                return Ok(RefreshOutcome::OverBudget { used });
            }
        }
        if let (Some(leader), Mode::Due { .. }) = (cred.kind.follows(), mode) {
            match self.follow(leader).await? {
                Some(Follow::Adopt(value)) => {
                    self.store.give_back(cref, &period).await?;
                    return self.commit(cred, &grant, owner, &value, false).await;
                }
                Some(Follow::Wait(lock_ttl)) => {
                    self.store.give_back(cref, &period).await?;
                    debug!(credential = %cref, leader = %leader, "the leader is fetching the shared value");
                    return Ok(RefreshOutcome::LockedElsewhere {
                        lock_ttl: Some(lock_ttl),
                    });
                }
                None => {
                    debug!(credential = %cref, leader = %leader, "the leader has no value: fetching it here");
                }
            }
        }
        let mut shared_taken = None;
        if let Some(shared) = &limits.shared {
            let shared_period = self.store.period(shared.window, grant.now_ms);
            let taken = self.store.take_shared_quota(shared, &shared_period).await?;
            if let QuotaTake::OverBudget { used } = taken {
                // Nothing was called: the credential's own unit goes back.
                self.store.give_back(cref, &period).await?;
                let until = u64::try_from(shared_period.end_unix_ms()).unwrap_or(u64::MAX);
                let record = FailureRecord {
                    code: shared.code.into(),
                    message: format!(
                        "the limit of {} fetches per {} for {} is reached",
                        shared.budget,
                        shared.window.name(),
                        shared.what
                    ),
                    class: ErrorClass::RateLimited,
                    gate: Gate::Until(until),
                    counts: false,
                };
                self.store.record_failure(cref, &record).await?;
                debug!(credential = %cref, used, limit = shared.code, "a shared limit is reached");
                return Ok(RefreshOutcome::OverBudget { used });
            }
            shared_taken = Some((shared, shared_period));
        }
        // A replica stalled since it took the lock must not call upstream: the
        // lock may already be someone else's, and a token WeChat issues after
        // theirs would kill theirs five minutes later.
        if self.lock_nearly_gone(locked_at) {
            warn!(credential = %cref, "lock nearly expired before the upstream call; not calling");
            // Nothing was called: the units go back.
            self.store.give_back(cref, &period).await?;
            if let Some((shared, p)) = &shared_taken {
                self.store.give_back_shared(shared, p).await?;
            }
            return Ok(RefreshOutcome::LockLost);
        }
        let force = grant.forced;
        let mut fetched = match self.fetch(cred, force, locked_at, &period).await {
            Ok(f) => f,
            Err(error) => {
                if !error.called_upstream() {
                    // Nothing reached WeChat: the units go back, so a
                    // credential waiting for its parent or its refresh
                    // token does not eat a limit others share.
                    self.store.give_back(cref, &period).await?;
                    if let Some((shared, p)) = &shared_taken {
                        self.store.give_back_shared(shared, p).await?;
                    }
                }
                return self.failed(cred, &grant, error).await;
            }
        };
        if let Some(reported) = &plan.compare_with
            && fetched.value.expose_secret() == reported.expose_secret()
        {
            // Fetched again, WeChat handed out the reported value: it is valid.
            return self
                .refuse(cred, grant.generation, Refusal::TokenValid, true)
                .await;
        }
        if cred.kind.judges() {
            let (stored, invalidated) = self.store.digest(cref).await?;
            let digest = Digest {
                stored_sha1: stored.as_deref().map(sha1_hex),
                invalidated_sha1: invalidated,
            };
            match cred.kind.judge(&fetched, &digest) {
                Judgement::Commit => {}
                Judgement::Force if !force => {
                    // Normal mode handed back the value a reader reported
                    // dead: only force_refresh gets a new one (SPEC §5).
                    warn!(credential = %cref, "the reported dead value came back; forcing a refresh");
                    if let QuotaTake::OverBudget { used } =
                        self.store.take_quota(cref, &period, limits.budget).await?
                    {
                        return Ok(RefreshOutcome::OverBudget { used });
                    }
                    fetched = match self.fetch(cred, true, locked_at, &period).await {
                        Ok(f) => f,
                        Err(error) => return self.failed(cred, &grant, error).await,
                    };
                }
                Judgement::Force => {}
                Judgement::Unchanged => {
                    let ttl = fetched.remaining();
                    let wait = (ttl / 2).max(Duration::from_secs(1));
                    let record = FailureRecord {
                        code: "unchanged".into(),
                        message: "WeChat returned the stored value; stable_renew_window is larger than WeChat's".into(),
                        class: ErrorClass::Retryable,
                        gate: Gate::For(wait),
                        counts: false,
                    };
                    self.store.record_failure(cref, &record).await?;
                    warn!(credential = %cref, ?ttl, "WeChat returned the stored value; waiting for its renew window");
                    return Ok(RefreshOutcome::Unchanged { ttl });
                }
            }
        }
        self.commit(cred, &grant, owner, &fetched, plan.reported)
            .await
    }
}

impl Proceed {
    fn due(take: QuotaTake) -> Self {
        Self {
            take,
            reported: false,
            compare_with: None,
        }
    }
}
