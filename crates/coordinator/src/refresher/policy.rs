//! The policy around [`Refresher::try_refresh`]: when to act and how long
//! to wait (SPEC §5), one [`turn`] at a time.
//!
//! A turn reads the credential's state (`peek`, or what an event or the last
//! step said), turns it into a [`Plan`] with the pure [`plan`] function, and
//! either returns when to look again or runs the step once. Between turns a
//! credential is a [`LoopState`] in the replica's schedule (`schedule.rs`),
//! which owns the waiting. Back-off lives in Redis (the gate), so after a
//! failure the next `peek` shows it; the state keeps no failure record beyond
//! a short pause when Redis is unreachable.

use std::time::{Duration, Instant};

use tracing::{debug, warn};

use super::{Mode, RefreshOutcome, Refresher};
use crate::config::RefreshConfig;
use crate::kind::Credential;
use crate::store::{Peek, Pending};

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

/// Where the next picture of a credential comes from.
#[derive(Debug, Clone, Copy)]
enum Next {
    /// Ask Redis (`peek`): at start, after other events, errors, or while
    /// events are down.
    Peek,
    /// Already known from a `refreshed` event or the last step: no Redis
    /// command. With events up this is how a replica follows the refreshes
    /// other replicas make.
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
        RefreshOutcome::Refreshed {
            generation, ttl, ..
        } => known(Some(*ttl), *generation, Duration::ZERO, None),
        RefreshOutcome::StillFresh { ttl } => known(Some(*ttl), generation, Duration::ZERO, None),
        RefreshOutcome::LockedElsewhere {
            lock_ttl: Some(lock),
        } => known(None, generation, Duration::ZERO, Some(*lock)),
        RefreshOutcome::Gated { wait } => known(None, generation, *wait, None),
        _ => Next::Peek,
    }
}

/// A `refreshed` event as a credential's loop needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refreshed {
    pub generation: u64,
    pub ttl: Duration,
    /// A fill to spread (see `Kind::spreads_after_fill`).
    pub filled: bool,
    /// When the event arrived (the value had `ttl` left then).
    pub at: Instant,
}

/// Where in its second half-life a filled value is refreshed: the same
/// point on every replica for one generation (so the filler is not the one
/// that refreshes them all), different across credentials, plus each
/// replica's own [`draw_jitter`]: one replica, a random one, wakes first and
/// the others find the value fresh (its event) instead of claiming at the
/// same instant and losing the lock.
fn spread_jitter(ttl: Duration, generation: u64, lead: Duration) -> Duration {
    let mixed = generation.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
    ttl.mul_f64(mixed as f64 / (1_u64 << 53) as f64 / 2.0) + draw_jitter(lead)
}

/// The least time between two peeks that events anybody may publish cause.
const REQUESTED_PEEK_SPACING: Duration = Duration::from_millis(250);

/// One credential's loop between turns: what it knows and what it waits
/// for. Small (the schedule keeps one per credential: 100 000 of them).
#[derive(Debug)]
pub struct LoopState {
    jitter: Duration,
    seen_generation: u64,
    /// What the last peek found pending besides the value's age: a planned
    /// wake-up (gate, lock, report spacing) claims in that mode, not as a
    /// plain due check. A stale one is harmless: the claim re-reads Redis.
    pending_force: bool,
    pending_report: Option<u64>,
    redis_failures: u32,
    next: Next,
    /// The planned wake-up is the moment to claim (with events up, nothing
    /// changed meanwhile, or an event would have said so).
    claim_on_wake: bool,
    /// Events anybody with PUBLISH can send (refresh_requested, reported,
    /// invalidated) cost at most four peeks a second per credential.
    last_requested_peek: Option<Instant>,
    /// The next generation seen is a fill to spread (its event said so).
    spread_next: bool,
}

impl LoopState {
    pub fn new(cred: &Credential, s: &RefreshConfig) -> Self {
        Self {
            jitter: draw_jitter(cred.kind.lead(s)),
            seen_generation: 0,
            pending_force: false,
            pending_report: None,
            redis_failures: 0,
            next: Next::Peek,
            claim_on_wake: false,
            last_requested_peek: None,
            spread_next: false,
        }
    }

    /// An event for this credential (`refreshed` with the value's life, or
    /// one that only says "look again"). Returns when the next turn may run.
    pub fn on_event(&mut self, refreshed: Option<Refreshed>) -> Instant {
        let now = Instant::now();
        self.claim_on_wake = false;
        match refreshed {
            Some(r) if r.generation >= self.seen_generation => {
                self.spread_next = r.filled;
                self.next = known(
                    Some(r.ttl.saturating_sub(r.at.elapsed())),
                    r.generation,
                    Duration::ZERO,
                    None,
                );
                now
            }
            Some(_) => {
                self.next = Next::Peek;
                now
            }
            None => {
                self.next = Next::Peek;
                // A peek already planned (a burst of events) takes this
                // one along: each event of a flood pushing the plan another
                // 250 ms out would starve the credential (2 000 forged
                // events postponed a due refresh by minutes).
                if let Some(planned) = self.last_requested_peek.filter(|t| *t > now) {
                    return planned;
                }
                let at = self
                    .last_requested_peek
                    .map_or(now, |t| (t + REQUESTED_PEEK_SPACING).max(now));
                self.last_requested_peek = Some(at);
                at
            }
        }
    }

    /// Redis may have changed without an event (a reconnection, data loss):
    /// look again at once.
    pub fn reread(&mut self) {
        self.claim_on_wake = false;
        self.next = Next::Peek;
    }

    /// The planned wake-up came (no event since it was planned).
    pub fn on_timer(&mut self, events_up: bool) {
        if self.claim_on_wake && events_up {
            self.next = Next::Claim;
        }
        self.claim_on_wake = false;
    }
}

/// One turn of a credential's loop: look (peek, or what an event or the
/// last step said), decide with [`plan`], and run the step if due. Returns
/// when the next turn is due, absent events. Never sleeps: waiting is the
/// schedule's business.
pub async fn turn(
    refresher: &Refresher,
    cred: &Credential,
    st: &mut LoopState,
    events_up: bool,
) -> Instant {
    let id = &cred.cref;
    let s = refresher.settings();
    let lead = cred.kind.lead(s);
    // A step's outcome usually says what to do next (sleep until due):
    // plan it in the same turn; a second step waits for the next turn.
    for round in 0..2 {
        let state = match std::mem::replace(&mut st.next, Next::Peek) {
            Next::Claim => Ok(None),
            Next::Known(peek) => Ok(Some(peek)),
            Next::Peek => refresher.peek(id).await.map(Some),
        };
        let decided = match state {
            Ok(None) => {
                st.redis_failures = 0;
                let within = lead + st.jitter;
                Plan::Refresh(match (st.pending_force, st.pending_report) {
                    (true, _) => Mode::Forced { within },
                    (false, Some(generation)) => Mode::Report { within, generation },
                    (false, None) => Mode::Due { within },
                })
            }
            Ok(Some(peek)) => {
                st.redis_failures = 0;
                refresher.ttls().note(id, peek.token_ttl);
                if peek.generation != st.seen_generation {
                    st.seen_generation = peek.generation;
                    st.jitter = match peek.token_ttl {
                        Some(ttl)
                            if std::mem::take(&mut st.spread_next)
                                && cred.kind.spreads_after_fill() =>
                        {
                            spread_jitter(ttl, peek.generation, lead)
                        }
                        _ => draw_jitter(lead),
                    };
                }
                st.claim_on_wake = events_up;
                st.pending_force = peek.pending == Pending::Force;
                st.pending_report = (peek.pending == Pending::Report).then_some(peek.generation);
                plan(&peek, s, lead, st.jitter, events_up)
            }
            Err(e) => {
                st.redis_failures += 1;
                warn!(%id, error = %e, "cannot read token state from redis");
                return Instant::now() + redis_pause(st.redis_failures);
            }
        };
        let mode = match decided {
            Plan::Sleep(d) => return Instant::now() + d,
            Plan::Refresh(_) if round > 0 => {
                st.next = Next::Peek;
                return Instant::now();
            }
            Plan::Refresh(mode) => mode,
        };
        st.claim_on_wake = false;
        match Box::pin(refresher.try_refresh(cred, mode)).await {
            Ok(o) => {
                debug!(%id, outcome = ?o, "refresh step");
                st.pending_force = false;
                st.pending_report = None;
                if let (RefreshOutcome::ReportDeferred { wait }, Mode::Report { generation, .. }) =
                    (&o, mode)
                {
                    // Claimed again (not re-read: the report key may lapse
                    // meanwhile) once the spacing ends.
                    st.pending_report = Some(generation);
                    st.next = Next::Claim;
                    return Instant::now() + *wait;
                }
                if let RefreshOutcome::Refreshed {
                    generation,
                    ttl,
                    filled: true,
                } = o
                    && cred.kind.spreads_after_fill()
                {
                    // Filled with many others (an import, a refill after
                    // data loss): the next refresh at a random point of the
                    // second half of this life, so the lives that follow
                    // are spread, not due together.
                    st.seen_generation = generation;
                    st.jitter = spread_jitter(ttl, generation, lead);
                }
                st.next = known_after(&o, st.seen_generation);
                if matches!(o, RefreshOutcome::LockLost | RefreshOutcome::NotStored(_)) {
                    // Do not spin if the same thing keeps happening.
                    return Instant::now() + Duration::from_millis(50);
                }
            }
            Err(e) => {
                st.redis_failures += 1;
                warn!(%id, error = %e, "refresh step failed on redis");
                return Instant::now() + redis_pause(st.redis_failures);
            }
        }
    }
    Instant::now()
}

fn redis_pause(failures: u32) -> Duration {
    Duration::from_millis(200 * u64::from(failures.min(25)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> RefreshConfig {
        config().refresh
    }

    fn config() -> crate::config::Config {
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
        crate::config::Config::from_toml_str(text, &env).unwrap()
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
    fn a_flood_of_events_plans_at_most_four_peeks_a_second_and_never_later() {
        let cred = crate::kind::credentials(&config()).remove(0);
        let mut st = LoopState::new(&cred, &settings());
        let start = Instant::now();
        let mut latest = start;
        for _ in 0..10_000 {
            latest = latest.max(st.on_event(None));
        }
        // Before the fix: 10 000 events planned the next peek ~42 minutes out.
        assert!(
            latest <= Instant::now() + REQUESTED_PEEK_SPACING,
            "a flood postponed the next peek by {:?}",
            latest.duration_since(start)
        );
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
