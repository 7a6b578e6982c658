//! What the refresh step is asked to do ([`Mode`]) and what it did
//! ([`RefreshOutcome`]); plain data the policy loop plans from.

use std::time::Duration;

use wxtoken_common::ErrorClass;

use crate::config::RefreshConfig;
use crate::store::{ClaimMode, Commit};
use crate::upstream::FetchError;

/// When the step may call upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Only if the value is missing or has at most `within` left (the
    /// policy's `lead + jitter`, so the step and the plan agree).
    Due { within: Duration },
    /// Even if the value looks fresh, when an operator's force request is
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
    pub(super) fn within(self) -> Duration {
        match self {
            Self::Due { within } | Self::Forced { within } | Self::Report { within, .. } => within,
        }
    }

    pub(super) fn claim(self, s: &RefreshConfig) -> ClaimMode {
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
    /// WeChat accepted the reported value just now.
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
    /// This replica fetched and stored a new value; `filled`: none was
    /// stored before (a first fill, or a refill after data loss).
    Refreshed {
        generation: u64,
        ttl: Duration,
        filled: bool,
    },
    /// After taking the lock the stored value was fresh: nothing to do.
    StillFresh { ttl: Duration },
    /// Another replica holds the lock.
    LockedElsewhere { lock_ttl: Option<Duration> },
    /// The fleet-wide back-off forbids calling upstream for `wait` more.
    Gated { wait: Duration },
    /// The fleet's budget for the period is spent; no call made.
    OverBudget { used: u64 },
    /// Upstream failed; the fleet is gated accordingly.
    Failed {
        class: ErrorClass,
        error: FetchError,
    },
    /// The fetched value was not stored: a newer one was (`Stale`), Redis lost
    /// its data (`EpochChanged`) or it had no life left.
    NotStored(Commit),
    /// The lock lapsed (or is about to) before upstream was called: no call made.
    LockLost,
    /// WeChat returned the value already stored (`stable_token` before its
    /// renew window, a ticket or WeCom token still valid): nothing committed.
    Unchanged { ttl: Duration },
    /// A report of the stored value led to no refresh.
    ReportRefused { reason: Refusal },
    /// A report of a value WeChat rejects (or that could not be checked)
    /// came within `report_refresh_interval` of the last report-triggered
    /// refresh: the refresh waits `wait`.
    ReportDeferred { wait: Duration },
    /// WeChat said the authorization is gone (61023): the authorizer is
    /// marked revoked, its token dropped (`generation` invalidated).
    Revoked { generation: u64 },
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
            Self::Revoked { .. } => "revoked",
        }
    }
}
