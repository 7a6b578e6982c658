//! Field names of the `P:{ID}:meta` hash (SPEC §3), shared by the writer
//! (the coordinator's commit script) and every reader.
//!
//! The hash never holds the token or the secret; it holds the fence number of
//! the stored token and the facts an operator needs in `wxtoken status`.

/// Fence number of the stored token; commits must carry a larger one.
pub const GENERATION: &str = "generation";
/// The Redis dataset lifetime the stored token was written in.
pub const EPOCH: &str = "epoch";
/// Unix ms (Redis `TIME`) at which the token expires.
pub const EXPIRES_AT_MS: &str = "expires_at_ms";
/// Unix ms (Redis `TIME`) at which the token was committed.
pub const FETCHED_AT_MS: &str = "fetched_at_ms";
/// Replica id of the committer.
pub const FETCHED_BY: &str = "fetched_by";
/// Upstream API the token came from: `token`, `stable_token`, ….
pub const SOURCE: &str = "source";
/// Last upstream error (code as text, message, Redis-time ms); cleared by a commit.
pub const LAST_ERROR_CODE: &str = "last_error_code";
pub const LAST_ERROR_MSG: &str = "last_error_msg";
pub const LAST_ERROR_AT_MS: &str = "last_error_at_ms";
/// Error class of the last error (`retryable`, `rate_limited`, `quota_exhausted`, `fatal`).
pub const LAST_ERROR_CLASS: &str = "last_error_class";
/// Consecutive upstream failures (the back-off exponent); reset by a commit.
pub const FAILURES: &str = "failures";
/// Unix ms (Redis `TIME`) before which no replica may call upstream: the
/// fleet-wide back-off gate, so N replicas back off as one.
pub const NEXT_ATTEMPT_AT_MS: &str = "next_attempt_at_ms";
/// SHA-1 of the last token reported invalid (never the token itself), so a
/// `stable_token` refresher can tell that normal mode returned that same token.
pub const INVALIDATED_SHA1: &str = "invalidated_sha1";
/// Generation of the token that was invalidated.
pub const INVALIDATED_GENERATION: &str = "invalidated_generation";

// ---- Reports (invariant 7: no caller can spend the upstream budget) ----

/// Generation of the stored token that a coordinator last checked with
/// WeChat and found accepted; reports of it are refused until
/// [`VERIFIED_UNTIL_MS`].
pub const VERIFIED_GENERATION: &str = "verified_generation";
/// Unix ms (Redis `TIME`) until which the verification of
/// [`VERIFIED_GENERATION`] stands.
pub const VERIFIED_UNTIL_MS: &str = "verified_until_ms";
/// Unix ms (Redis `TIME`) of the last refresh a report triggered: the next
/// one waits `report_refresh_interval`.
pub const REPORT_REFRESH_AT_MS: &str = "report_refresh_at_ms";
/// Unix ms (Redis clock) before which no upstream call may replace a value
/// whose life counts from first storage: WeChat's own expiry of it may lie
/// up to one fetch's round trip after the counted one.
pub const SETTLE_AT_MS: &str = "settle_at_ms";
/// Reports refused so far (all reasons), and the last reason and time.
pub const REPORTS_REFUSED: &str = "reports_refused";
pub const LAST_REFUSAL_REASON: &str = "last_refusal_reason";
pub const LAST_REFUSAL_AT_MS: &str = "last_refusal_at_ms";

// ---- Operator force (`wxtoken refresh --force`) ----

/// Generation a forced refresh must replace: written only by a coordinator
/// tool (readers' ACL users cannot write the meta hash). A replica refreshes
/// a fresh token only while the stored generation is at most this one.
pub const FORCE_GENERATION: &str = "force_generation";
/// Who asked for the force (free text from the CLI, e.g. `alice@ops-1`).
pub const FORCE_BY: &str = "force_by";
/// Unix ms (Redis `TIME`) of the force request.
pub const FORCE_AT_MS: &str = "force_at_ms";
/// Force requests made so far for this credential.
pub const FORCE_REQUESTS: &str = "force_requests";

/// The last quota reconciliation (`[refresh] quota_check_interval`): the
/// quota day it counted (`YYYYMMDD`), WeChat's `quota.used` for the fetch
/// endpoint, the fleet's own count, the gap (calls someone else made) and
/// when (Redis-time ms). Written by the checking replica, read by status.
pub const QUOTA_CHECK_DAY: &str = "quota_check_day";
pub const QUOTA_CHECK_UPSTREAM: &str = "quota_check_upstream";
pub const QUOTA_CHECK_FLEET: &str = "quota_check_fleet";
pub const QUOTA_CHECK_FOREIGN: &str = "quota_check_foreign";
pub const QUOTA_CHECK_AT_MS: &str = "quota_check_at_ms";
/// What `wxtoken reset` deleted from the fleet's quota counter
/// (`quota_forgiven`) and of which quota day (`quota_forgiven_day`): WeChat
/// still counts those calls, so the reconciliation adds them back.
pub const QUOTA_FORGIVEN_DAY: &str = "quota_forgiven_day";
pub const QUOTA_FORGIVEN: &str = "quota_forgiven";

// ---- Follow mode (SPEC §12) ----

/// The primary a followed credential comes from (its URL; never the key),
/// the follower's connection state (`connected` / `disconnected: …`), the
/// last value's lag (ms from the primary's send to the commit here, by the
/// two machines' clocks) and when the state was written (Redis-time ms).
/// Written by the replica that follows.
pub const FOLLOWED_FROM: &str = "followed_from";
pub const FOLLOW_STATE: &str = "follow_state";
pub const FOLLOW_LAG_MS: &str = "follow_lag_ms";
pub const FOLLOW_AT_MS: &str = "follow_at_ms";
/// `wxtoken promote ID`: when and by whom a followed credential was made a
/// primary (on the id's access-token meta, for the id's every slot).
pub const PROMOTED_AT_MS: &str = "promoted_at_ms";
pub const PROMOTED_BY: &str = "promoted_by";
