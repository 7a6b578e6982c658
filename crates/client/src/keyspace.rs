//! Reads of the shared token and the report-by-value script (`invalidate`):
//! the only Redis operations a service needs (SPEC §3), shared with the
//! coordinator so there is one read path.
//!
//! This module speaks to any `redis::aio::ConnectionLike`; it owns no
//! connection, no cache and no retry policy.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use redis::aio::ConnectionLike;
use wxtoken_common::wire::Event;
use wxtoken_common::{CredentialId, CredentialRef, Keys, SlotKeys, meta};

/// Helpers every wxtoken script shares (`num`, `token_pttl`).
const PRELUDE: &str = include_str!("scripts/prelude.lua");

/// A Lua script with the shared prelude prepended; the coordinator's scripts
/// are built with it too, so the junk-tolerant number and token rules have
/// one definition.
pub fn script(body: &str) -> redis::Script {
    redis::Script::new(&format!("{PRELUDE}{body}"))
}

static INVALIDATE: LazyLock<redis::Script> =
    LazyLock::new(|| script(include_str!("scripts/invalidate.lua")));

/// The token as stored in Redis, read in one round trip.
#[derive(Clone, PartialEq, Eq)]
pub struct StoredToken {
    pub value: String,
    /// Time left on the key (`PTTL`), measured when the reply arrived.
    pub ttl: Duration,
    /// Fence number of the commit that wrote it (0 if the meta hash is gone).
    pub generation: u64,
}

impl fmt::Debug for StoredToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredToken")
            .field("value", &"[redacted]")
            .field("ttl", &self.ttl)
            .field("generation", &self.generation)
            .finish()
    }
}

/// The longest token the fleet stores; WeChat reserves 512 characters.
pub const MAX_TOKEN_LEN: usize = 2048;

/// What a stored token may look like: 1-2048 printable ASCII characters
/// (WeChat's are `[A-Za-z0-9_-]`). The coordinator commits nothing else, so
/// anything else in the token key is a foreign writer's junk: readers never
/// hand it out, and the coordinator's scripts treat it as no token (the
/// same rule in Lua) and replace it.
pub fn is_plausible_token(value: &str) -> bool {
    !value.is_empty() && value.len() <= MAX_TOKEN_LEN && value.bytes().all(|b| b.is_ascii_graphic())
}

/// `GET` + `PTTL` + `HGET generation`, pipelined: one round trip. `None` when
/// no token is stored (or it expires within the millisecond) or the key holds
/// no plausible token ([`is_plausible_token`]).
pub async fn read_token<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: &CredentialId,
) -> redis::RedisResult<Option<StoredToken>> {
    read_value(conn, &keys.credential(id)).await
}

/// [`read_token`] for any credential (an access token or a ticket).
pub async fn read_value<C: ConnectionLike>(
    conn: &mut C,
    keys: &SlotKeys,
) -> redis::RedisResult<Option<StoredToken>> {
    let (value, pttl, generation): (Option<String>, i64, Option<String>) = redis::pipe()
        .get(&keys.value)
        .pttl(&keys.value)
        .hget(&keys.meta, meta::GENERATION)
        .query_async(conn)
        .await?;
    Ok(match value {
        Some(value) if pttl > 0 && is_plausible_token(&value) => Some(StoredToken {
            value,
            ttl: Duration::from_millis(pttl.unsigned_abs()),
            generation: generation.and_then(|g| g.parse().ok()).unwrap_or(0),
        }),
        _ => None,
    })
}

/// What reporting a token (`invalidate`) did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Invalidation {
    /// The stored token is the reported one: a coordinator checks it with
    /// WeChat and refreshes only if WeChat rejects it (`invalidated`, then
    /// `refreshed`), else answers `report_refused`. `generation` is the
    /// reported token's.
    Reported { generation: u64 },
    /// The stored token is the reported one and a coordinator found WeChat
    /// accepting it moments ago: nothing will happen, keep using it.
    TokenValid { generation: u64 },
    /// The stored token is another one (or none): a refresh already happened
    /// or is under way. `generation` is the stored token's (0 if none).
    AlreadyReplaced { generation: u64 },
}

/// Reports `bad_token` as rejected by WeChat. Deletes nothing: a hundred
/// readers reporting one token cause one check (and at most one refresh), and
/// a reader reporting a token WeChat accepts causes none (invariant 7).
pub async fn invalidate<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    id: &CredentialId,
    bad_token: &str,
) -> redis::RedisResult<Invalidation> {
    report(conn, &keys.credential(id), bad_token).await
}

/// [`invalidate`] for any credential (a ticket a JS-SDK page found invalid).
pub async fn report<C: ConnectionLike>(
    conn: &mut C,
    keys: &SlotKeys,
    bad_value: &str,
) -> redis::RedisResult<Invalidation> {
    let (what, generation): (String, u64) = INVALIDATE
        .key(&keys.value)
        .key(&keys.meta)
        .key(&keys.events)
        .key(&keys.report)
        .arg(bad_value)
        .arg(keys.slot.name().unwrap_or(""))
        .invoke_async(conn)
        .await?;
    Ok(match what.as_str() {
        "reported" => Invalidation::Reported { generation },
        "token_valid" => Invalidation::TokenValid { generation },
        _ => Invalidation::AlreadyReplaced { generation },
    })
}

/// Publishes `event` on `cref`'s channel (with its `slot`, unless it is the
/// access token); returns how many subscribers got it.
pub async fn publish<C: ConnectionLike>(
    conn: &mut C,
    keys: &Keys,
    cref: &CredentialRef,
    event: &Event,
) -> redis::RedisResult<u64> {
    redis::cmd("PUBLISH")
        .arg(keys.events(&cref.id))
        .arg(event.to_json_in(cref.slot))
        .query_async(conn)
        .await
}
