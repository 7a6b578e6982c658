//! The values the store's calls take and return: what a claim grants, what
//! a commit did, what `peek` and `status` saw. Plain data: no Redis here.

use std::fmt;
use std::time::Duration;

use secrecy::SecretString;
use wxtoken_common::wire::LastError;
use wxtoken_common::{ErrorClass, QuotaPeriod};

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

/// What a claim is for: how much life counts as fresh, why it is made,
/// and the quota it takes.
#[derive(Debug, Clone)]
pub struct ClaimArgs {
    pub lock_ttl: Duration,
    /// The value counts as fresh with more than this left.
    pub within: Duration,
    pub mode: ClaimMode,
    /// Calls allowed in `period` (and the one before, for hourly limits).
    pub budget: u64,
    pub period: QuotaPeriod,
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
    /// The period the caller named is not the current one by Redis' clock;
    /// take quota with [`TokenStore::take_quota`] for `Grant::now_ms`.
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
    /// A first-stored value that is stored already: nothing changed.
    Same {
        generation: u64,
        expires_at_ms: u64,
    },
    /// A first-stored value handed out again after its counted life ended:
    /// about to die, so not stored (no call for one settle time).
    Early {
        generation: u64,
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
    /// What the replica following this credential last wrote (SPEC §12).
    pub follow: Option<wxtoken_common::wire::Followed>,
}
