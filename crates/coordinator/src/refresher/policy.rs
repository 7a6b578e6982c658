//! The policy loop around [`Refresher::try_refresh`]: when to wake, when to
//! act, how long to sleep (SPEC §5).
//!
//! Each iteration reads the credential's state (`peek`), turns it into a
//! [`Plan`] with the pure [`plan`] function, and either sleeps (waking early on
//! events) or runs the step once. Back-off lives in Redis (the gate), so after
//! a failure the next `peek` shows it and the loop sleeps; the loop itself
//! keeps no failure state beyond a short pause when Redis is unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Mode, RefreshOutcome, Refresher};
use crate::config::RefreshConfig;
use crate::kind::Credential;
use crate::store::{Peek, Pending};
use crate::wake::WakeSignal;

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Refresh(Mode),
    Sleep(Duration),
}

/// Decides from a `peek`. `lead` is how long before expiry this credential
/// refreshes (its kind's lead); `jitter` (< lead / 10, re-drawn every
/// generation) spreads replicas so one wakes first and the rest find the
/// token fresh; `events_up` false caps sleeps at `poll_interval`. A pending
/// force request or report is acted on at once (unless gated or locked).
pub fn plan(
    peek: &Peek,
    s: &RefreshConfig,
    lead: Duration,
    jitter: Duration,
    events_up: bool,
) -> Plan {
    let cap = |d: Duration| if events_up { d } else { d.min(s.poll_interval) };
    if !peek.gate.is_zero() {
        return Plan::Sleep(cap(peek.gate + Duration::from_millis(10)));
    }
    let due_at = lead + jitter;
    let pending = match peek.pending {
        Pending::Force => Some(Mode::Forced { within: due_at }),
        Pending::Report => Some(Mode::Report {
            within: due_at,
            generation: peek.generation,
        }),
        Pending::Nothing => None,
    };
    if let Some(mode) = pending {
        return match peek.lock_ttl {
            Some(lock) => Plan::Sleep(cap(lock)),
            None => Plan::Refresh(mode),
        };
    }
    match peek.token_ttl {
        Some(ttl) if ttl > due_at => Plan::Sleep(cap(ttl - due_at)),
        _ => match peek.lock_ttl {
            // Someone is refreshing: their `refreshed` event wakes us sooner.
            Some(lock) => Plan::Sleep(cap(lock + Duration::from_millis(10))),
            None => Plan::Refresh(Mode::Due { within: due_at }),
        },
    }
}

fn draw_jitter(lead: Duration) -> Duration {
    (lead / 10).mul_f64(rand::random::<f64>())
}

/// Where the loop's next picture of its credential comes from.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Ask Redis (`peek`): at start, after other events, errors, or while
    /// events are down.
    Peek,
    /// Already known from a `refreshed` event or the loop's own last step:
    /// no Redis command. With events up this is how a replica follows the
    /// refreshes other replicas make.
    Known(Peek),
    /// The planned wake-up came: go straight to the claim, which re-reads
    /// everything under the lock in the same round trip.
    Claim,
}

/// A state known without asking Redis.
fn known(
    token_ttl: Option<Duration>,
    generation: u64,
    gate: Duration,
    lock_ttl: Option<Duration>,
) -> Next {
    Next::Known(Peek {
        token_ttl,
        generation,
        gate,
        lock_ttl,
        failures: 0,
        pending: Pending::Nothing,
    })
}

/// The state a step's outcome leaves behind, when it says enough.
fn known_after(outcome: &RefreshOutcome, generation: u64) -> Next {
    match outcome {
        RefreshOutcome::Refreshed { generation, ttl } => {
            known(Some(*ttl), *generation, Duration::ZERO, None)
        }
        RefreshOutcome::StillFresh { ttl } => known(Some(*ttl), generation, Duration::ZERO, None),
        RefreshOutcome::LockedElsewhere {
            lock_ttl: Some(lock),
        } => known(None, generation, Duration::ZERO, Some(*lock)),
        RefreshOutcome::Gated { wait } => known(None, generation, *wait, None),
        _ => Next::Peek,
    }
}

/// Runs one credential until `shutdown` turns true.
///
/// A replica runs one of these per credential, mostly asleep: the Redis and
/// upstream futures are boxed so a sleeping loop holds ~1 KB, not the ~13 KB
/// of a refresh step, and at most `MAX_CONCURRENT_REFRESHES` of them exist
/// at once (see `Refresher::peek`).
///
/// Steady state costs one Redis round trip per refresh for the replica that
/// wins it (the claim; then the commit) and none for the others: they learn
/// the new token's life from its `refreshed` event.
pub async fn run_credential(
    refresher: Arc<Refresher>,
    cred: Arc<Credential>,
    mut wake: watch::Receiver<WakeSignal>,
    mut events_up: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = &cred.cref;
    let s = refresher.settings().clone();
    let lead = cred.kind.lead(&s);
    let mut jitter = draw_jitter(lead);
    let mut seen_generation = 0;
    // What the last peek found pending besides the token's age: a planned
    // wake-up (gate, lock, report spacing) claims in that mode, not as a
    // plain due check. A stale one is harmless: the claim re-reads Redis.
    let mut pending_force = false;
    let mut pending_report: Option<u64> = None;
    let mut redis_failures = 0_u32;
    let mut next = Next::Peek;
    let mut last_seq = 0;
    // Events anybody with PUBLISH can send (refresh_requested, reported,
    // invalidated) cost at most four peeks a second per credential.
    let mut last_requested_peek: Option<Instant> = None;
    while !*shutdown.borrow() {
        let signal = *wake.borrow_and_update();
        if signal.seq != last_seq {
            last_seq = signal.seq;
            next = match signal.refreshed {
                Some(r) if r.generation >= seen_generation => known(
                    Some(r.ttl.saturating_sub(r.at.elapsed())),
                    r.generation,
                    Duration::ZERO,
                    None,
                ),
                _ => Next::Peek,
            };
            if signal.requested {
                if let Some(wait) = last_requested_peek
                    .map(|at| REQUESTED_PEEK_SPACING.saturating_sub(at.elapsed()))
                    .filter(|w| !w.is_zero())
                {
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = shutdown.changed() => break,
                    }
                }
                last_requested_peek = Some(Instant::now());
            }
        }
        let events = *events_up.borrow();
        let state = match std::mem::replace(&mut next, Next::Peek) {
            Next::Claim => Ok(None),
            Next::Known(peek) => Ok(Some(peek)),
            Next::Peek => refresher.peek(id).await.map(Some),
        };
        let mut claim_on_wake = false;
        let decided = match state {
            Ok(None) => {
                redis_failures = 0;
                let within = lead + jitter;
                Plan::Refresh(match (pending_force, pending_report) {
                    (true, _) => Mode::Forced { within },
                    (false, Some(generation)) => Mode::Report { within, generation },
                    (false, None) => Mode::Due { within },
                })
            }
            Ok(Some(peek)) => {
                redis_failures = 0;
                refresher.ttls().note(id, peek.token_ttl);
                if peek.generation != seen_generation {
                    seen_generation = peek.generation;
                    jitter = draw_jitter(lead);
                }
                claim_on_wake = events;
                pending_force = peek.pending == Pending::Force;
                pending_report = (peek.pending == Pending::Report).then_some(peek.generation);
                plan(&peek, &s, lead, jitter, events)
            }
            Err(e) => {
                redis_failures += 1;
                warn!(%id, error = %e, "cannot read token state from redis");
                Plan::Sleep(Duration::from_millis(
                    200 * u64::from(redis_failures.min(25)),
                ))
            }
        };
        match decided {
            Plan::Refresh(mode) => {
                // Waiting for a slot (many credentials due together) is the
                // one moment a `refreshed` event can still spare the claim.
                let slot = tokio::select! {
                    s = refresher.slot() => s,
                    r = wake.changed() => if r.is_err() { break } else { continue },
                    _ = shutdown.changed() => break,
                };
                let Some(slot) = slot else { break };
                let outcome = tokio::select! {
                    o = refresher.refresh(slot, &cred, mode) => o,
                    _ = shutdown.changed() => break,
                };
                match outcome {
                    Ok(o) => {
                        debug!(%id, outcome = ?o, "refresh step");
                        if matches!(o, RefreshOutcome::LockLost | RefreshOutcome::NotStored(_)) {
                            // Do not spin if the same thing keeps happening.
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        pending_force = false;
                        pending_report = None;
                        if let (
                            RefreshOutcome::ReportDeferred { wait },
                            Mode::Report { generation, .. },
                        ) = (&o, mode)
                        {
                            // Claimed again (not re-read: the report key may
                            // lapse meanwhile) once the spacing ends.
                            pending_report = Some(generation);
                            tokio::select! {
                                _ = tokio::time::sleep(*wait) => next = Next::Claim,
                                r = wake.changed() => if r.is_err() { break },
                                _ = shutdown.changed() => {}
                            }
                            continue;
                        }
                        next = known_after(&o, seen_generation);
                    }
                    Err(e) => {
                        redis_failures += 1;
                        warn!(%id, error = %e, "refresh step failed on redis");
                        tokio::time::sleep(Duration::from_millis(
                            200 * u64::from(redis_failures.min(25)),
                        ))
                        .await;
                    }
                }
            }
            Plan::Sleep(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {
                        if claim_on_wake && *events_up.borrow() {
                            next = Next::Claim;
                        }
                    }
                    r = wake.changed() => if r.is_err() { break },
                    _ = events_up.changed() => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
    debug!(%id, "refresh loop stopped");
}

/// The least time between two peeks that events anybody may publish cause.
const REQUESTED_PEEK_SPACING: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RefreshConfig {
        let text = r#"
            [refresh]
            refresh_ahead = "10s"
            lock_ttl = "4s"
            upstream_timeout = "1s"
            poll_interval = "3s"
            [[apps]]
            appid = "wx1"
            secret = { env = "S" }
        "#;
        let env: crate::config::Env = [("S", "x")].into_iter().collect();
        crate::config::Config::from_toml_str(text, &env)
            .map(|c| c.refresh)
            .unwrap()
    }

    fn peek(token: Option<u64>, lock: Option<u64>, gate: u64, generation: u64) -> Peek {
        Peek {
            token_ttl: token.map(Duration::from_secs),
            generation,
            gate: Duration::from_secs(gate),
            lock_ttl: lock.map(Duration::from_secs),
            failures: 0,
            pending: Pending::Nothing,
        }
    }

    fn with(pending: Pending, p: Peek) -> Peek {
        Peek { pending, ..p }
    }

    #[test]
    fn sleeps_until_due_then_refreshes() {
        let s = settings();
        let j = Duration::from_millis(500);
        let lead = s.refresh_ahead;
        assert_eq!(
            plan(&peek(Some(60), None, 0, 1), &s, lead, j, true),
            Plan::Sleep(Duration::from_millis(49_500))
        );
        assert_eq!(
            plan(&peek(Some(10), None, 0, 1), &s, lead, j, true),
            Plan::Refresh(Mode::Due {
                within: Duration::from_millis(10_500)
            })
        );
        assert_eq!(
            plan(&peek(None, None, 0, 1), &s, lead, j, true),
            Plan::Refresh(Mode::Due {
                within: Duration::from_millis(10_500)
            })
        );
    }

    #[test]
    fn polls_only_while_events_are_down() {
        let s = settings();
        let p = peek(Some(60), None, 0, 1);
        assert_eq!(
            plan(&p, &s, s.refresh_ahead, Duration::ZERO, false),
            Plan::Sleep(Duration::from_secs(3))
        );
    }

    #[test]
    fn waits_for_a_lock_holder_and_respects_the_gate() {
        let s = settings();
        let lead = s.refresh_ahead;
        assert_eq!(
            plan(&peek(None, Some(2), 0, 1), &s, lead, Duration::ZERO, true),
            Plan::Sleep(Duration::from_millis(2010))
        );
        assert_eq!(
            plan(&peek(None, None, 5, 1), &s, lead, Duration::ZERO, true),
            Plan::Sleep(Duration::from_millis(5010))
        );
        // A recorded force request does not bypass the gate either.
        let forced = with(Pending::Force, peek(Some(60), None, 5, 1));
        assert_eq!(
            plan(&forced, &s, lead, Duration::ZERO, true),
            Plan::Sleep(Duration::from_millis(5010))
        );
    }

    #[test]
    fn a_recorded_force_request_or_report_is_acted_on_at_once() {
        let s = settings();
        let lead = s.refresh_ahead;
        let within = lead;
        assert_eq!(
            plan(
                &with(Pending::Force, peek(Some(60), None, 0, 3)),
                &s,
                lead,
                Duration::ZERO,
                true
            ),
            Plan::Refresh(Mode::Forced { within })
        );
        assert_eq!(
            plan(
                &with(Pending::Report, peek(Some(60), None, 0, 3)),
                &s,
                lead,
                Duration::ZERO,
                true
            ),
            Plan::Refresh(Mode::Report {
                within,
                generation: 3
            })
        );
        // ... unless someone holds the lock (their outcome wakes us).
        assert_eq!(
            plan(
                &with(Pending::Report, peek(Some(60), Some(2), 0, 3)),
                &s,
                lead,
                Duration::ZERO,
                true
            ),
            Plan::Sleep(Duration::from_secs(2))
        );
    }
}
