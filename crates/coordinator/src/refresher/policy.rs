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

/// Runs one credential until `shutdown` turns true.
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
    while !*shutdown.borrow() {
        if let Some(f) = wake.borrow_and_update().force_if_generation {
            force = Some(force.map_or(f, |old| old.max(f)));
        }
        let next = match refresher.store().peek(id).await {
            Ok(peek) => {
                redis_failures = 0;
                if peek.generation != seen_generation {
                    seen_generation = peek.generation;
                    jitter = draw_jitter(lead);
                }
                if force.is_some_and(|f| peek.generation > f) {
                    force = None;
                }
                plan(&peek, &s, lead, jitter, force, *events_up.borrow())
            }
            Err(e) => {
                redis_failures += 1;
                warn!(%id, error = %e, "cannot read token state from redis");
                Plan::Sleep(Duration::from_millis(
                    200 * u64::from(redis_failures.min(25)),
                ))
            }
        };
        match next {
            Plan::Refresh(mode) => {
                let outcome = tokio::select! {
                    o = refresher.try_refresh(&app, mode) => o,
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
                    _ = tokio::time::sleep(d) => {}
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
