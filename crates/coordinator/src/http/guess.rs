//! Slows secret guessing on the WeChat-compatible token endpoints
//! (`/cgi-bin/token`, `/cgi-bin/stable_token`), which authenticate by the
//! app's own secret: failed checks are rate-limited per client address and
//! per appid (GCRA from `governor`), and a refused guess is answered with
//! WeChat's own per-minute limit reply (45011) without looking at the
//! secret, so a guesser learns nothing from it.
//!
//! - Per address: each address may fail `per_address` checks a minute (as a
//!   burst); beyond, everything it sends for any app is refused until its
//!   bucket has room again. IPv6 addresses count by /64, so rotating
//!   addresses inside one allocation does not reset the count.
//! - Per appid: when failures for one appid exceed `per_app` a minute (a
//!   distributed guess), the appid is "under attack" for a minute: addresses
//!   that failed a check within that minute are refused, addresses that did
//!   not are still checked. A caller holding the right secret never fails,
//!   so it is never refused by someone else's guessing; only a caller that
//!   shares its address with a guesser waits, at most until the guesser
//!   stops.
//!
//! Memory is bounded: at most [`MAX_TRACKED`] addresses are remembered,
//! pruned of stale entries (and, past that, forgotten) as they grow.
//! This module decides nothing about secrets; `compat` asks it first and
//! reports failures to it.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How long an appid stays "under attack", and how long an address counts
/// as having failed recently.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at most (each ~60 bytes).
const MAX_TRACKED: usize = 100_000;

/// An address as the limiter counts it: IPv4 as is, IPv6 by its /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Source(Option<IpAddr>);

impl Source {
    fn of(ip: Option<IpAddr>) -> Self {
        Self(ip.map(|ip| match ip {
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => {
                    let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                    IpAddr::V6(Ipv6Addr::from(prefix))
                }
            },
            v4 => v4,
        }))
    }
}

/// Whether a request may have its secret checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Check,
    /// Refused without looking at the secret; `scope` names the limit.
    Refused {
        scope: &'static str,
    },
}

#[derive(Debug, Default)]
struct Book {
    /// Addresses refused until then (their failure budget is spent).
    blocked: HashMap<Source, Instant>,
    /// The last failed check of each address.
    failed: HashMap<Source, Instant>,
    /// Appids under a distributed guess until then.
    attacked: HashMap<String, Instant>,
}

/// The limiter of one replica (guesses are counted per replica: a fleet of
/// N answers at most N times the configured rates).
#[derive(Debug)]
pub struct GuessLimiter {
    per_address: DefaultKeyedRateLimiter<Source>,
    per_app: DefaultKeyedRateLimiter<String>,
    /// A std `Mutex`: held for a few map operations, never across `.await`.
    book: Mutex<Book>,
}

fn per_minute(n: u32) -> Quota {
    let n = NonZeroU32::new(n.max(1)).unwrap_or(NonZeroU32::MIN);
    Quota::per_minute(n).allow_burst(n)
}

impl GuessLimiter {
    /// `per_address` / `per_app`: failed checks allowed a minute (and as a burst).
    pub fn new(per_address: u32, per_app: u32) -> Self {
        Self {
            per_address: RateLimiter::keyed(per_minute(per_address)),
            per_app: RateLimiter::keyed(per_minute(per_app)),
            book: Mutex::new(Book::default()),
        }
    }

    fn book(&self) -> std::sync::MutexGuard<'_, Book> {
        self.book.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Asks before the secret of `appid` is checked for a caller at `ip`.
    pub fn admit(&self, ip: Option<IpAddr>, appid: &str) -> Admission {
        let source = Source::of(ip);
        let now = Instant::now();
        let book = self.book();
        if book.blocked.get(&source).is_some_and(|until| *until > now) {
            return Admission::Refused { scope: "address" };
        }
        let attacked = book.attacked.get(appid).is_some_and(|until| *until > now);
        let failed_recently = book
            .failed
            .get(&source)
            .is_some_and(|at| now.duration_since(*at) < WINDOW);
        if attacked && failed_recently {
            return Admission::Refused { scope: "appid" };
        }
        Admission::Check
    }

    /// A check failed: a wrong secret for `appid` (`Some`), or an unknown
    /// appid (`None`: counted against the address only).
    pub fn failed(&self, ip: Option<IpAddr>, appid: Option<&str>) {
        let source = Source::of(ip);
        let now = Instant::now();
        let clock = DefaultClock::default();
        let address_wait = self
            .per_address
            .check_key(&source)
            .err()
            .map(|nu| nu.wait_time_from(clock.now()));
        let app_wait = appid.and_then(|a| {
            self.per_app
                .check_key(&a.to_owned())
                .err()
                .map(|nu| (a, nu.wait_time_from(clock.now())))
        });
        let mut book = self.book();
        book.failed.insert(source, now);
        if let Some(wait) = address_wait {
            book.blocked.insert(source, now + wait);
        }
        if let Some((appid, wait)) = app_wait {
            book.attacked
                .insert(appid.to_owned(), now + wait.max(WINDOW));
        }
        if book.failed.len() > MAX_TRACKED || book.blocked.len() > MAX_TRACKED {
            self.prune(&mut book, now);
        }
    }

    fn prune(&self, book: &mut Book, now: Instant) {
        book.failed.retain(|_, at| now.duration_since(*at) < WINDOW);
        book.blocked.retain(|_, until| *until > now);
        book.attacked.retain(|_, until| *until > now);
        if book.failed.len() > MAX_TRACKED {
            // More guessing addresses than we keep: forget them (fail open
            // on memory, the per-address rate still holds for the blocked).
            book.failed.clear();
        }
        if book.blocked.len() > MAX_TRACKED {
            book.blocked.clear();
        }
        self.per_address.retain_recent();
        self.per_app.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn an_address_that_keeps_guessing_is_refused_others_are_not() {
        let g = GuessLimiter::new(3, 1000);
        for _ in 0..3 {
            assert_eq!(g.admit(ip("10.0.0.1"), "wx1"), Admission::Check);
            g.failed(ip("10.0.0.1"), Some("wx1"));
        }
        assert_eq!(g.admit(ip("10.0.0.1"), "wx1"), Admission::Check);
        g.failed(ip("10.0.0.1"), Some("wx1"));
        assert_eq!(
            g.admit(ip("10.0.0.1"), "wx1"),
            Admission::Refused { scope: "address" }
        );
        assert_eq!(
            g.admit(ip("10.0.0.1"), "wx2"),
            Admission::Refused { scope: "address" },
            "the address is refused for every app"
        );
        assert_eq!(g.admit(ip("10.0.0.2"), "wx1"), Admission::Check);
    }

    #[test]
    fn a_distributed_guess_refuses_guessers_not_clean_callers() {
        let g = GuessLimiter::new(1000, 5);
        for i in 0..10 {
            let a = ip(&format!("10.0.1.{i}"));
            assert_eq!(g.admit(a, "wx1"), Admission::Check);
            g.failed(a, Some("wx1"));
        }
        // Every guessing address is refused for this app now ...
        assert_eq!(
            g.admit(ip("10.0.1.3"), "wx1"),
            Admission::Refused { scope: "appid" }
        );
        // ... a caller that never failed is still checked, and other apps
        // are not under attack.
        assert_eq!(g.admit(ip("192.168.7.7"), "wx1"), Admission::Check);
        assert_eq!(g.admit(ip("10.0.1.3"), "wx2"), Admission::Check);
    }

    #[test]
    fn ipv6_counts_by_its_64_prefix() {
        let g = GuessLimiter::new(2, 1000);
        for i in 1..=3 {
            g.failed(ip(&format!("2001:db8:1:2::{i:x}")), Some("wx1"));
        }
        assert_eq!(
            g.admit(ip("2001:db8:1:2::ffff"), "wx1"),
            Admission::Refused { scope: "address" }
        );
        assert_eq!(g.admit(ip("2001:db8:1:3::1"), "wx1"), Admission::Check);
        assert_eq!(
            Source::of(ip("::ffff:10.0.0.1")),
            Source::of(ip("10.0.0.1"))
        );
    }

    #[test]
    fn unknown_appids_count_against_the_address_only() {
        let g = GuessLimiter::new(2, 1);
        for _ in 0..3 {
            g.failed(ip("10.0.0.9"), None);
        }
        assert_eq!(
            g.admit(ip("10.0.0.9"), "wx1"),
            Admission::Refused { scope: "address" }
        );
        assert_eq!(g.admit(ip("10.0.0.8"), "wx1"), Admission::Check);
    }
}
