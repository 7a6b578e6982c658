//! The policy loop around [`Refresher::try_refresh`]: when to wake, when to
//! act, how long to sleep (SPEC §5).
//!
//! Each iteration reads the credential's state (`peek`), turns it into a
//! [`Plan`] with the pure [`plan`] function, and either sleeps (waking early on
//! events) or runs the step once. Back-off lives in Redis (the gate), so after
//! a failure the next `peek` shows it and the loop sleeps; the loop itself
//! keeps no failure state beyond a short pause when Redis is unreachable.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{debug, warn};

use super::{Mode, RefreshOutcome, Refresher};
use crate::config::{AppConfig, RefreshConfig};
use crate::store::Peek;
use crate::wake::WakeSignal;

/// What the loop does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plan {
    Refresh(Mode),
    Sleep(Duration),
}

/// Decides from a `peek`. `lead` is how long before expiry this credential
/// refreshes ([`RefreshConfig::lead_for`]); `jitter` (< lead / 10, re-drawn every
/// generation) spreads replicas so one wakes first and the rest find the
/// token fresh; `events_up` false caps sleeps at `poll_interval`.
pub fn plan(
    peek: &Peek,
    s: &RefreshConfig,
    lead: Duration,
    jitter: Duration,
    force: Option<u64>,
    events_up: bool,
) -> Plan {
    let cap = |d: Duration| if events_up { d } else { d.min(s.poll_interval) };
    if !peek.gate.is_zero() {
        return Plan::Sleep(cap(peek.gate + Duration::from_millis(10)));
    }
    if let Some(if_generation) = force
        && peek.generation <= if_generation
    {
        return match peek.lock_ttl {
            Some(lock) => Plan::Sleep(cap(lock)),
            None => Plan::Refresh(Mode::Forced { if_generation }),
        };
    }
    let due_at = lead + jitter;
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
    app: Arc<AppConfig>,
    mut wake: watch::Receiver<WakeSignal>,
    mut events_up: watch::Receiver<bool>,
    mut shutdown: watch::Receiver<bool>,
) {
    let id = &app.id;
    let s = refresher.settings().clone();
    let lead = s.lead_for(app.api);
    let mut jitter = draw_jitter(lead);
    let mut seen_generation = 0;
    let mut force: Option<u64> = None;
    let mut redis_failures = 0_u32;
    let mut next = Next::Peek;
    let mut last_seq = 0;
    while !*shutdown.borrow() {
        let signal = *wake.borrow_and_update();
        if signal.seq != last_seq {
            last_seq = signal.seq;
            if let Some(f) = signal.force_if_generation {
                force = Some(force.map_or(f, |old| old.max(f)));
            }
            next = match signal.refreshed {
                Some(r) if force.is_none() && r.generation >= seen_generation => known(
                    Some(r.ttl.saturating_sub(r.at.elapsed())),
                    r.generation,
                    Duration::ZERO,
                    None,
                ),
                _ => Next::Peek,
            };
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
                Plan::Refresh(match force {
                    Some(if_generation) => Mode::Forced { if_generation },
                    None => Mode::Due {
                        within: lead + jitter,
                    },
                })
            }
            Ok(Some(peek)) => {
                redis_failures = 0;
                refresher.ttls().note(id, peek.token_ttl);
                if peek.generation != seen_generation {
                    seen_generation = peek.generation;
                    jitter = draw_jitter(lead);
                }
                if force.is_some_and(|f| peek.generation > f) {
                    force = None;
                }
                claim_on_wake = events;
                plan(&peek, &s, lead, jitter, force, events)
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
                    o = refresher.refresh(slot, &app, mode) => o,
                    _ = shutdown.changed() => break,
                };
                match outcome {
                    Ok(o) => {
                        debug!(%id, outcome = ?o, "refresh step");
                        if matches!(mode, Mode::Forced { .. })
                            && !matches!(o, RefreshOutcome::LockedElsewhere { .. })
                        {
                            force = None;
                        }
                        if matches!(o, RefreshOutcome::LockLost | RefreshOutcome::NotStored(_)) {
                            // Do not spin if the same thing keeps happening.
                            tokio::time::sleep(Duration::from_millis(50)).await;
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
        }
    }

    #[test]
    fn sleeps_until_due_then_refreshes() {
        let s = settings();
        let j = Duration::from_millis(500);
        assert_eq!(
            plan(
                &peek(Some(60), None, 0, 1),
                &s,
                s.refresh_ahead,
                j,
                None,
                true
            ),
            Plan::Sleep(Duration::from_millis(49_500))
        );
        assert_eq!(
            plan(
                &peek(Some(10), None, 0, 1),
                &s,
                s.refresh_ahead,
                j,
                None,
                true
            ),
            Plan::Refresh(Mode::Due {
                within: Duration::from_millis(10_500)
            })
        );
        assert_eq!(
            plan(&peek(None, None, 0, 1), &s, s.refresh_ahead, j, None, true),
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
            plan(&p, &s, s.refresh_ahead, Duration::ZERO, None, false),
            Plan::Sleep(Duration::from_secs(3))
        );
    }

    #[test]
    fn waits_for_a_lock_holder_and_respects_the_gate() {
        let s = settings();
        assert_eq!(
            plan(
                &peek(None, Some(2), 0, 1),
                &s,
                s.refresh_ahead,
                Duration::ZERO,
                None,
                true
            ),
            Plan::Sleep(Duration::from_millis(2010))
        );
        assert_eq!(
            plan(
                &peek(None, None, 5, 1),
                &s,
                s.refresh_ahead,
                Duration::ZERO,
                None,
                true
            ),
            Plan::Sleep(Duration::from_millis(5010))
        );
        // A forced request does not bypass the gate either.
        assert_eq!(
            plan(
                &peek(Some(60), None, 5, 1),
                &s,
                s.refresh_ahead,
                Duration::ZERO,
                Some(1),
                true
            ),
            Plan::Sleep(Duration::from_millis(5010))
        );
    }

    #[test]
    fn force_applies_only_until_a_newer_generation_exists() {
        let s = settings();
        assert_eq!(
            plan(
                &peek(Some(60), None, 0, 3),
                &s,
                s.refresh_ahead,
                Duration::ZERO,
                Some(3),
                true
            ),
            Plan::Refresh(Mode::Forced { if_generation: 3 })
        );
        assert_eq!(
            plan(
                &peek(Some(60), None, 0, 4),
                &s,
                s.refresh_ahead,
                Duration::ZERO,
                Some(3),
                true
            ),
            Plan::Sleep(Duration::from_secs(50))
        );
    }
}
