//! `refresher`: one credential's refresh, as a testable step
//! ([`Refresher::try_refresh`] → [`RefreshOutcome`]) and a thin policy loop
//! around it (`policy`).
//!
//! The step is SPEC §5's protocol: lock, begin (fence + read again), gate,
//! quota, fetch, fenced commit, release. It never sleeps and never loops;
//! when to call it again is the policy's business. Only the step calls
//! `upstream`, and only while holding the credential's lock with quota taken
//! (invariant 1); tokens reach Redis only through `store::commit` (invariant 2).

mod backoff;
mod policy;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::ExposeSecret;
use tracing::{debug, info, warn};
use wxtoken_common::{CredentialId, ErrorClass};

pub use backoff::Backoff;
pub use policy::{Plan, plan, run_credential};

use crate::config::{AppConfig, RefreshConfig, UpstreamApi};
use crate::store::{
    Claim, ClaimMode, Commit, FailureRecord, Gate, Grant, LockOwner, QuotaTake, ReportCheck,
    StoreError, TokenStore, Verdict,
};
use crate::upstream::{Check, FetchError, Upstream};

/// When the step may call upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only if the token is missing or has at most `within` left (the
    /// policy's `refresh_ahead + jitter`, so the step and the plan agree).
    Due { within: Duration },
    /// Even if the token looks fresh, when an operator's force request is
    /// recorded for the stored generation (`store::force_request`); without
    /// one, as `Due`. With `stable_token`, `force_refresh` is sent.
    Forced { within: Duration },
    /// A reader reported `generation` as rejected by WeChat: check it with
    /// WeChat, and refresh only if WeChat rejects it (or cannot say), at
    /// most once per `report_refresh_interval` and never into the
    /// scheduled reserve. Otherwise as `Due`.
    Report { within: Duration, generation: u64 },
}

impl Mode {
    fn within(self) -> Duration {
        match self {
            Self::Due { within } | Self::Forced { within } | Self::Report { within, .. } => within,
        }
    }

    fn claim(self, s: &RefreshConfig) -> ClaimMode {
        match self {
            Self::Due { .. } => ClaimMode::Due,
            Self::Forced { .. } => ClaimMode::Force,
            Self::Report { generation, .. } => ClaimMode::Report {
                generation,
                spacing: s.report_refresh_interval,
            },
        }
    }
}

/// Why a report led to no refresh.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// WeChat accepted the reported token just now.
    TokenValid,
    /// WeChat accepted it moments ago (`verify_interval`): not asked again.
    RecentlyVerified,
    /// The budget left today is the scheduled refreshes' reserve.
    Reserve,
}

impl Refusal {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::TokenValid => "token_valid",
            Self::RecentlyVerified => "recently_verified",
            Self::Reserve => "reserve",
        }
    }
}

/// What one `try_refresh` did.
#[derive(Debug)]
#[non_exhaustive]
pub enum RefreshOutcome {
    /// This replica fetched and stored a new token.
    Refreshed { generation: u64, ttl: Duration },
    /// After taking the lock the stored token was fresh: nothing to do.
    StillFresh { ttl: Duration },
    /// Another replica holds the lock.
    LockedElsewhere { lock_ttl: Option<Duration> },
    /// The fleet-wide back-off forbids calling upstream for `wait` more.
    Gated { wait: Duration },
    /// The fleet's daily budget is spent; no call made.
    OverBudget { used: u64 },
    /// Upstream failed; the fleet is gated accordingly.
    Failed {
        class: ErrorClass,
        error: FetchError,
    },
    /// The fetched token was not stored: a newer one was (`Stale`), Redis lost
    /// its data (`EpochChanged`) or it had no life left.
    NotStored(Commit),
    /// The lock lapsed (or is about to) before upstream was called: no call made.
    LockLost,
    /// `stable_token` normal mode returned the token already stored: nothing
    /// to commit; the fleet waits until WeChat's renew window opens.
    Unchanged { ttl: Duration },
    /// A report of the stored token led to no refresh.
    ReportRefused { reason: Refusal },
    /// A report of a token WeChat rejects (or that could not be checked)
    /// came within `report_refresh_interval` of the last report-triggered
    /// refresh: the refresh waits `wait`.
    ReportDeferred { wait: Duration },
}

impl RefreshOutcome {
    /// The `outcome` label of `wxtoken_refresh_total`.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Refreshed { .. } => "refreshed",
            Self::StillFresh { .. } => "still_fresh",
            Self::LockedElsewhere { .. } => "locked_elsewhere",
            Self::Gated { .. } => "gated",
            Self::OverBudget { .. } => "over_budget",
            Self::Failed { class, .. } => match class {
                ErrorClass::Retryable => "failed_retryable",
                ErrorClass::RateLimited => "failed_rate_limited",
                ErrorClass::QuotaExhausted => "failed_quota_exhausted",
                _ => "failed_fatal",
            },
            Self::NotStored(_) => "not_stored",
            Self::LockLost => "lock_lost",
            Self::Unchanged { .. } => "unchanged",
            Self::ReportRefused { .. } => "report_refused",
            Self::ReportDeferred { .. } => "report_deferred",
        }
    }
}

/// What each refresh loop last knew of its token's life, for `/metrics`:
/// a scrape must not cost a Redis round trip per credential (with 10 000
/// credentials and a 15 s scrape interval that would be 40 000 commands a
/// minute per replica).
#[derive(Debug, Default)]
pub struct TtlBook(std::sync::RwLock<HashMap<CredentialId, Option<Instant>>>);

impl TtlBook {
    /// The token of `id` has `ttl` left now (`None`: there is none).
    pub fn note(&self, id: &CredentialId, ttl: Option<Duration>) {
        let expires = ttl.map(|t| Instant::now() + t);
        if let Ok(mut m) = self.0.write() {
            match m.get_mut(id) {
                Some(e) => *e = expires,
                None => {
                    m.insert(id.clone(), expires);
                }
            }
        }
    }

    /// `None` when nothing is known yet; `Some(None)` when there is no token.
    pub fn ttl(&self, id: &CredentialId) -> Option<Option<Duration>> {
        let m = self.0.read().ok()?;
        let e = m.get(id)?;
        Some(e.and_then(|at| at.checked_duration_since(Instant::now())))
    }
}

/// Locks this replica holds now, so shutdown can release them even if the
/// task that took one was cancelled mid-fetch. A std `Mutex`: it is never
/// held across an `.await`.
#[derive(Debug, Default, Clone)]
pub struct HeldLocks(Arc<Mutex<HashMap<CredentialId, LockOwner>>>);

impl HeldLocks {
    fn insert(&self, id: &CredentialId, owner: &LockOwner) {
        if let Ok(mut m) = self.0.lock() {
            m.insert(id.clone(), owner.clone());
        }
    }
    fn remove(&self, id: &CredentialId) {
        if let Ok(mut m) = self.0.lock() {
            m.remove(id);
        }
    }
    /// Takes every entry (for shutdown).
    pub fn drain(&self) -> Vec<(CredentialId, LockOwner)> {
        self.0
            .lock()
            .map(|mut m| m.drain().collect())
            .unwrap_or_default()
    }
}

/// The per-replica refresh machinery shared by every credential's loop.
#[derive(Debug)]
pub struct Refresher {
    store: TokenStore,
    upstream: Upstream,
    settings: RefreshConfig,
    backoff: Backoff,
    replica_id: String,
    held: HeldLocks,
    /// Redis `TIME` of the last grant and when it arrived (see `redis_now_ms`).
    redis_clock: Mutex<Option<(u64, Instant)>>,
    /// Refresh steps in flight at once (see [`MAX_CONCURRENT_REFRESHES`]).
    slots: tokio::sync::Semaphore,
    ttls: Arc<TtlBook>,
}

/// Refresh steps (and peeks) one replica runs at once. After a data loss every
/// credential is due together: 10 000 simultaneous upstream calls would open
/// as many connections to WeChat from one address (and as many buffers in
/// this process); 64 in flight refill 10 000 credentials in seconds.
pub const MAX_CONCURRENT_REFRESHES: usize = 64;

impl Refresher {
    pub fn new(
        store: TokenStore,
        upstream: Upstream,
        settings: RefreshConfig,
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
            settings,
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

    pub fn settings(&self) -> &RefreshConfig {
        &self.settings
    }

    pub fn replica_id(&self) -> &str {
        &self.replica_id
    }

    /// What the loops last knew of each token's life.
    pub fn ttls(&self) -> &Arc<TtlBook> {
        &self.ttls
    }

    pub fn held_locks(&self) -> &HeldLocks {
        &self.held
    }

    /// One refresh attempt for `app` (SPEC §5).
    pub async fn try_refresh(
        &self,
        app: &AppConfig,
        mode: Mode,
    ) -> Result<RefreshOutcome, StoreError> {
        let id = &app.id;
        let owner = LockOwner::new(&self.replica_id);
        let day = self.store.quota_day(self.redis_now_ms().await?);
        let claim = self
            .store
            .claim(
                id,
                &owner,
                self.settings.lock_ttl,
                mode.within(),
                mode.claim(&self.settings),
                self.settings.daily_budget,
                day,
            )
            .await?;
        let (grant, verdict) = match claim {
            Claim::Locked { lock_ttl } => {
                crate::metrics::lock(false);
                let outcome = RefreshOutcome::LockedElsewhere { lock_ttl };
                crate::metrics::refresh(id, outcome.label());
                return Ok(outcome);
            }
            Claim::Granted { grant, verdict } => (grant, verdict),
        };
        crate::metrics::lock(true);
        let locked_at = Instant::now();
        self.note_redis_time(&grant);
        self.held.insert(id, &owner);
        let outcome = self
            .with_lock(app, mode, &owner, locked_at, grant, verdict)
            .await;
        // `commit` releases on its own; every other path releases here.
        let released = match &outcome {
            Ok(RefreshOutcome::Refreshed { .. }) | Ok(RefreshOutcome::NotStored(_)) => Ok(true),
            _ => self.store.release(id, &owner).await,
        };
        if let Err(e) = released {
            warn!(%id, error = %e, "could not release the refresh lock; it expires by itself");
        }
        self.held.remove(id);
        if let Ok(o) = &outcome {
            crate::metrics::refresh(id, o.label());
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

    /// [`Self::try_refresh`] in a box: the step's (~12 KB) future exists only
    /// while it runs, not in every sleeping loop.
    pub async fn refresh(
        &self,
        _slot: tokio::sync::SemaphorePermit<'_>,
        app: &AppConfig,
        mode: Mode,
    ) -> Result<RefreshOutcome, StoreError> {
        Box::pin(self.try_refresh(app, mode)).await
    }

    /// `peek` under the same bound as refresh steps: after a data loss or at
    /// start every credential's loop peeks at once, and each Redis call in
    /// flight holds ~11 KB (110 MB for 10 000 credentials, which the
    /// allocator then keeps).
    pub async fn peek(&self, id: &CredentialId) -> Result<crate::store::Peek, StoreError> {
        let Ok(_slot) = self.slots.acquire().await else {
            return Err(StoreError::Reply("replica shutting down".into()));
        };
        Box::pin(self.store.peek(id)).await
    }

    /// Redis' clock now, estimated from the last grant and this replica's
    /// monotonic clock (asked once at start); only used to name the quota
    /// day, which `claim` checks against Redis' own clock.
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
        app: &AppConfig,
        mode: Mode,
        owner: &LockOwner,
        locked_at: Instant,
        grant: Grant,
        verdict: Verdict,
    ) -> Result<RefreshOutcome, StoreError> {
        let id = &app.id;
        let day = self.store.quota_day(grant.now_ms);
        let take = match verdict {
            Verdict::Fresh => {
                let ttl = grant.token_ttl.unwrap_or_default();
                debug!(%id, ?ttl, "token already fresh after taking the lock");
                return Ok(RefreshOutcome::StillFresh { ttl });
            }
            Verdict::Gated => return Ok(RefreshOutcome::Gated { wait: grant.gate }),
            Verdict::Taken { used } => QuotaTake::Taken { used },
            Verdict::OverBudget { used } => QuotaTake::OverBudget { used },
            Verdict::WrongDay => {
                self.store
                    .take_quota(id, day, self.settings.daily_budget)
                    .await?
            }
            Verdict::Report(check) => {
                let Mode::Report { generation, .. } = mode else {
                    return Ok(RefreshOutcome::StillFresh {
                        ttl: grant.token_ttl.unwrap_or_default(),
                    });
                };
                match self.judge_report(id, &grant, generation, check).await? {
                    Ok(take) => take,
                    Err(outcome) => return Ok(outcome),
                }
            }
        };
        if grant.forced {
            crate::metrics::forced_refresh(id);
            let by = self.store.force_requester(id).await.unwrap_or_default();
            info!(%id, by = %by, "refreshing a fresh token: an operator forced it");
        }
        if let QuotaTake::Taken { used } = take {
            crate::metrics::quota_used(id, used);
        }
        if let QuotaTake::OverBudget { used } = take {
            let record = FailureRecord {
                code: "daily_budget".into(),
                message: format!(
                    "fleet daily budget of {} upstream calls is spent",
                    self.settings.daily_budget
                ),
                class: ErrorClass::QuotaExhausted,
                gate: Gate::Until(u64::try_from(day.next_start_unix_ms()).unwrap_or(u64::MAX)),
                counts: false,
            };
            self.store.record_failure(id, &record).await?;
            warn!(%id, used, budget = self.settings.daily_budget, "daily budget spent; no upstream calls until the next quota day");
            return Ok(RefreshOutcome::OverBudget { used });
        }
        // A replica stalled since it took the lock must not call upstream: the
        // lock may already be someone else's, and a token WeChat issues after
        // theirs would kill theirs five minutes later.
        if locked_at.elapsed() + self.settings.upstream_timeout >= self.settings.lock_ttl {
            warn!(%id, "lock nearly expired before the upstream call; not calling");
            return Ok(RefreshOutcome::LockLost);
        }
        let force = grant.forced && app.api == UpstreamApi::StableToken;
        let started = Instant::now();
        let result = self.upstream.fetch(app, force).await;
        crate::metrics::upstream(api_label(app.api), started.elapsed());
        let fetched = match result {
            Ok(fetched) => fetched,
            Err(error) => return self.failed(id, &grant, error).await,
        };
        let mut ttl = fetched.expires_in.saturating_sub(started.elapsed());
        let mut token = fetched.token;
        let mut source = match app.api {
            UpstreamApi::Token => "token",
            UpstreamApi::StableToken => "stable_token",
        };
        if app.api == UpstreamApi::StableToken && !force {
            let (stored, invalidated) = self.store.stable_check(id).await?;
            let digest = sha1_smol::Sha1::from(token.expose_secret()).hexdigest();
            if invalidated.as_deref() == Some(digest.as_str()) {
                // Normal mode handed back the token a reader reported invalid:
                // only force_refresh gets a new one (SPEC §5), within quota.
                warn!(%id, "stable_token returned the token reported invalid; forcing a refresh");
                if let QuotaTake::OverBudget { used } = self
                    .store
                    .take_quota(id, day, self.settings.daily_budget)
                    .await?
                {
                    return Ok(RefreshOutcome::OverBudget { used });
                }
                let started = Instant::now();
                let result = self.upstream.fetch(app, true).await;
                crate::metrics::upstream(api_label(app.api), started.elapsed());
                match result {
                    Ok(forced) => {
                        ttl = forced.expires_in.saturating_sub(started.elapsed());
                        token = forced.token;
                        source = "stable_token_force";
                    }
                    Err(error) => return self.failed(id, &grant, error).await,
                }
            } else if stored.as_deref() == Some(token.expose_secret()) {
                let wait = (ttl / 2).max(Duration::from_secs(1));
                let record = FailureRecord {
                    code: "stable_token_unchanged".into(),
                    message: "stable_token returned the stored token; stable_renew_window is larger than WeChat's".into(),
                    class: ErrorClass::Retryable,
                    gate: Gate::For(wait),
                    counts: false,
                };
                self.store.record_failure(id, &record).await?;
                warn!(%id, ?ttl, "stable_token returned the stored token; waiting for the renew window");
                return Ok(RefreshOutcome::Unchanged { ttl });
            }
        }
        let commit = self
            .store
            .commit(id, &grant, owner, &token, ttl, &self.replica_id, source)
            .await?;
        Ok(match commit {
            Commit::Stored { generation, .. } => {
                info!(%id, generation, replica = %self.replica_id, ttl_s = ttl.as_secs(), "refreshed");
                RefreshOutcome::Refreshed { generation, ttl }
            }
            other => {
                warn!(%id, outcome = ?other, "fetched token was not stored");
                RefreshOutcome::NotStored(other)
            }
        })
    }

    /// A reader reported the stored, fresh token: refresh only if that is
    /// justified (invariant 7). `Ok(take)`: quota was taken (outside the
    /// scheduled reserve) and the dead token dropped, go on and fetch;
    /// `Err(outcome)`: no refresh now.
    async fn judge_report(
        &self,
        id: &CredentialId,
        grant: &Grant,
        generation: u64,
        check: ReportCheck,
    ) -> Result<Result<QuotaTake, RefreshOutcome>, StoreError> {
        let s = &self.settings;
        if check.verified {
            crate::metrics::report_refused(id, Refusal::RecentlyVerified.as_str());
            return Ok(Err(RefreshOutcome::ReportRefused {
                reason: Refusal::RecentlyVerified,
            }));
        }
        let day = self.store.quota_day(grant.now_ms);
        // 1. Ask WeChat, within the day's check budget. A token WeChat
        //    accepts is not invalid, whoever says so.
        let verdict = match self
            .store
            .take_verify_quota(id, day, s.verify_daily_budget)
            .await?
        {
            QuotaTake::Taken { .. } => {
                let started = Instant::now();
                let checked = self.upstream.check_token(&check.token).await;
                crate::metrics::upstream("get_api_domain_ip", started.elapsed());
                crate::metrics::token_check(id, checked.label());
                Some(checked)
            }
            QuotaTake::OverBudget { used } => {
                warn!(%id, used, "token check budget spent today; judging the report without asking WeChat");
                None
            }
        };
        match &verdict {
            Some(Check::Accepted) => {
                self.store
                    .refuse_report(
                        id,
                        generation,
                        Refusal::TokenValid.as_str(),
                        Some(s.verify_interval),
                    )
                    .await?;
                crate::metrics::report_refused(id, Refusal::TokenValid.as_str());
                info!(%id, generation, "report refused: WeChat accepts the reported token");
                return Ok(Err(RefreshOutcome::ReportRefused {
                    reason: Refusal::TokenValid,
                }));
            }
            Some(Check::Rejected { errcode }) => {
                info!(%id, generation, errcode, "WeChat rejects the reported token");
            }
            Some(Check::Unknown(e)) => {
                warn!(%id, generation, error = %e, "could not check the reported token; a capped refresh follows");
            }
            None => {}
        }
        // 2. At most one report-triggered refresh per interval, fleet-wide.
        if !check.spacing.is_zero() {
            crate::metrics::report_refused(id, "spacing");
            debug!(%id, wait = ?check.spacing, "report-triggered refresh deferred by the spacing");
            return Ok(Err(RefreshOutcome::ReportDeferred {
                wait: check.spacing,
            }));
        }
        if !grant.gate.is_zero() {
            return Ok(Err(RefreshOutcome::Gated { wait: grant.gate }));
        }
        // 3. Never into the reserve kept for scheduled refreshes.
        let take = self.store.take_quota(id, day, s.report_budget()).await?;
        if let QuotaTake::OverBudget { used } = take {
            self.store
                .refuse_report(id, generation, Refusal::Reserve.as_str(), None)
                .await?;
            crate::metrics::report_refused(id, Refusal::Reserve.as_str());
            warn!(%id, used, reserve = s.reserve(), "report refused: the rest of today's budget is the scheduled refreshes' reserve");
            return Ok(Err(RefreshOutcome::ReportRefused {
                reason: Refusal::Reserve,
            }));
        }
        // 4. Readers wait for the new token rather than use the dead one.
        self.store.drop_token(id, &check.token, true).await?;
        crate::metrics::invalidation(id, "verified_report");
        Ok(Ok(take))
    }

    async fn failed(
        &self,
        id: &CredentialId,
        grant: &Grant,
        error: FetchError,
    ) -> Result<RefreshOutcome, StoreError> {
        let class = error.class();
        self.record(id, grant, &error, class).await?;
        warn!(%id, %class, code = %error.code(), error = %error, "upstream fetch failed");
        Ok(RefreshOutcome::Failed { class, error })
    }

    async fn record(
        &self,
        id: &CredentialId,
        grant: &Grant,
        error: &FetchError,
        class: ErrorClass,
    ) -> Result<(), StoreError> {
        let day = self.store.quota_day(grant.now_ms);
        let gate = self.backoff.gate(
            class,
            grant.failures.saturating_add(1),
            grant.now_ms,
            day,
            rand::random::<f64>(),
        );
        let record = FailureRecord {
            code: error.code(),
            message: error.to_string(),
            class,
            gate,
            counts: true,
        };
        self.store.record_failure(id, &record).await.map(|_| ())
    }
}

pub(crate) fn api_label(api: UpstreamApi) -> &'static str {
    match api {
        UpstreamApi::Token => "token",
        UpstreamApi::StableToken => "stable_token",
    }
}
