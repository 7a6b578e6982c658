//! How long the fleet waits after a failed fetch, per error class (SPEC §1).
//!
//! Pure functions of the failure count and Redis' clock, so the policy is
//! tested without sleeping. Gates are written to Redis by `store`, so eight
//! replicas back off as one.

use std::time::Duration;

use wxtoken_common::{ErrorClass, QuotaDay};

use crate::store::Gate;

/// The back-off settings from `[refresh]`.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
    pub fatal_cooldown: Duration,
}

impl Backoff {
    /// The gate after the `failures`-th consecutive failure of `class`, at
    /// Redis time `now_ms`, in quota day `day`. `unit` is a uniform random
    /// number in [0, 1) (injected so tests are deterministic).
    pub fn gate(
        &self,
        class: ErrorClass,
        failures: u32,
        now_ms: u64,
        day: QuotaDay,
        unit: f64,
    ) -> Gate {
        match class {
            ErrorClass::RateLimited => {
                let to_next_minute = 60_000 - now_ms % 60_000;
                Gate::For(Duration::from_millis(to_next_minute) + Duration::from_secs_f64(unit))
            }
            ErrorClass::QuotaExhausted => {
                Gate::Until(u64::try_from(day.next_start_unix_ms()).unwrap_or(u64::MAX))
            }
            ErrorClass::Fatal => Gate::For(self.fatal_cooldown),
            _ => Gate::For(self.retry_delay(failures, unit)),
        }
    }

    /// Exponential back-off with full jitter: uniform in [0, min(max, base·2^(n-1))],
    /// never below a quarter of `base` so a streak of tiny draws cannot storm.
    pub fn retry_delay(&self, failures: u32, unit: f64) -> Duration {
        let exp = failures.saturating_sub(1).min(20);
        let cap = self.base.saturating_mul(1 << exp).min(self.max);
        cap.mul_f64(unit.clamp(0.0, 1.0)).max(self.base / 4)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wxtoken_common::QuotaOffset;

    fn b() -> Backoff {
        Backoff {
            base: Duration::from_secs(1),
            max: Duration::from_secs(60),
            fatal_cooldown: Duration::from_secs(300),
        }
    }

    #[test]
    fn retry_delay_grows_and_caps() {
        assert_eq!(b().retry_delay(1, 1.0), Duration::from_secs(1));
        assert_eq!(b().retry_delay(2, 1.0), Duration::from_secs(2));
        assert_eq!(b().retry_delay(5, 1.0), Duration::from_secs(16));
        assert_eq!(b().retry_delay(7, 1.0), Duration::from_secs(60));
        assert_eq!(b().retry_delay(1000, 1.0), Duration::from_secs(60));
        assert_eq!(b().retry_delay(5, 0.0), Duration::from_millis(250));
        assert_eq!(b().retry_delay(5, 0.5), Duration::from_secs(8));
    }

    #[test]
    fn per_class_gates() {
        let day = QuotaDay::from_unix_ms(1_700_000_000_000, QuotaOffset::default());
        let now = 1_700_000_012_345;
        assert_eq!(
            b().gate(ErrorClass::Fatal, 3, now, day, 0.9),
            Gate::For(Duration::from_secs(300))
        );
        assert_eq!(
            b().gate(ErrorClass::RateLimited, 1, now, day, 0.0),
            Gate::For(Duration::from_millis(27_655))
        );
        assert_eq!(
            b().gate(ErrorClass::QuotaExhausted, 1, now, day, 0.5),
            Gate::Until(day.next_start_unix_ms() as u64)
        );
        assert_eq!(
            b().gate(ErrorClass::Retryable, 2, now, day, 1.0),
            Gate::For(Duration::from_secs(2))
        );
    }
}
