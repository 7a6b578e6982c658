//! Fault injection for the fetch and ticket endpoints: what can go wrong
//! ([`Faults`], the JSON body of `POST /__admin/faults`) and the seeded dice
//! that decide, call by call, whether it does ([`FaultPlan`]).
//!
//! Faults apply to the token fetches (`cgi-bin/token`, `stable_token`, WeCom
//! `gettoken`), the ticket calls (`getticket`, WeCom `get_jsapi_ticket`,
//! `ticket/get`), on both hosts, and every Open Platform call
//! (`cgi-bin/component/*`; `appid` may name the component or, for
//! `api_authorizer_token`, the authorizer). They never touch the plain use endpoints
//! (`getcallbackip`, `get_api_domain_ip`) or the admin API. This module only
//! decides; carrying a decision out (holding a hung request, postponing a
//! reply, truncating a body) is `routes`' job. A busy reply comes in the
//! host's shape (WeChat's with a rid, WeCom's bare).
//!
//! The kinds, for each call the faults apply to:
//! - `busy_rate`: reply `{"errcode":-1,"errmsg":"system error …"}`; no token
//!   issued, no quota used.
//! - `http_502_rate`: HTTP 502 with an nginx-style HTML body; nothing issued.
//! - `garbage_rate`: HTTP 200 with the real reply cut in half (unparsable
//!   JSON). The call WAS processed: the token (or ticket) is issued (and a
//!   token supersedes the previous one) and quota is used; only the reply is
//!   lost in transit. This is the dangerous real case: the fleet's token is
//!   replaced behind it.
//! - `hang_rate`: never answers; the request is held until the client goes
//!   away (or the simulator shuts down). Nothing issued.
//! - `delay` + `delay_rate`: the call is processed when it arrives (the token
//!   is issued then) and the REPLY is postponed by `delay`. Combines with the
//!   other kinds. `delay` is a humantime string in JSON (`"3s"`, `"250ms"`);
//!   `delay_rate` defaults to 1.0 when `delay` is set.
//!
//! Busy, 502, garbage and hang are exclusive: one uniform draw picks at most
//! one, in that order, so their rates should sum to at most 1.

use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// The faults to inject; all zero/`None` (the default) means none.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Share of calls answered with errcode -1 (system busy).
    pub busy_rate: f64,
    /// Share of calls answered with HTTP 502 and an HTML body.
    pub http_502_rate: f64,
    /// Share of calls whose token is issued but whose reply is truncated JSON.
    pub garbage_rate: f64,
    /// Share of calls that never get an answer.
    pub hang_rate: f64,
    /// How long to postpone replies (humantime in JSON: `"3s"`).
    #[serde(with = "humantime_serde")]
    pub delay: Option<Duration>,
    /// Share of calls whose reply is postponed; 1.0 when unset.
    pub delay_rate: Option<f64>,
    /// Apply to the next N matching fetch or ticket calls only, then clear
    /// themselves.
    /// `None`: until replaced.
    pub remaining: Option<u32>,
    /// Only calls naming this appid (or corpid) are affected; a ticket call
    /// names the appid (or corpid) of its token's owner; a component call
    /// its component appid and, for `api_authorizer_token`, the authorizer
    /// appid too.
    pub appid: Option<String>,
    /// Reseeds the decision RNG when these faults are installed.
    pub seed: Option<u64>,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Self::default()
    }

    /// Checks that every rate is within 0..=1 and the exclusive ones sum to
    /// at most 1.
    pub fn validate(&self) -> Result<(), String> {
        let rates = [
            ("busy_rate", self.busy_rate),
            ("http_502_rate", self.http_502_rate),
            ("garbage_rate", self.garbage_rate),
            ("hang_rate", self.hang_rate),
            ("delay_rate", self.delay_rate.unwrap_or(1.0)),
        ];
        for (name, r) in rates {
            if !(0.0..=1.0).contains(&r) {
                return Err(format!("{name} must be within 0..=1, got {r}"));
            }
        }
        let sum = self.busy_rate + self.http_502_rate + self.garbage_rate + self.hang_rate;
        if sum > 1.0 + 1e-9 {
            return Err(format!(
                "busy_rate + http_502_rate + garbage_rate + hang_rate must be <= 1, got {sum}"
            ));
        }
        Ok(())
    }
}

/// The exclusive fault picked for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultKind {
    Busy,
    Http502,
    Garbage,
    Hang,
}

/// What happens to one fetch or ticket call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct FaultDecision {
    pub(crate) kind: Option<FaultKind>,
    pub(crate) delay: Option<Duration>,
}

/// The installed faults and the RNG that rolls them.
#[derive(Debug)]
pub(crate) struct FaultPlan {
    faults: Faults,
    rng: StdRng,
    config_seed: Option<u64>,
}

fn rng_from(seed: Option<u64>) -> StdRng {
    match seed {
        Some(s) => StdRng::seed_from_u64(s),
        None => StdRng::from_os_rng(),
    }
}

impl FaultPlan {
    pub(crate) fn new(config_seed: Option<u64>) -> Self {
        Self {
            faults: Faults::default(),
            rng: rng_from(config_seed),
            config_seed,
        }
    }

    /// Replaces the faults; a seed in them restarts the dice.
    pub(crate) fn set(&mut self, faults: Faults) {
        if let Some(seed) = faults.seed {
            self.rng = StdRng::seed_from_u64(seed);
        }
        self.faults = faults;
    }

    pub(crate) fn current(&self) -> &Faults {
        &self.faults
    }

    /// No faults, dice back at the configured seed.
    pub(crate) fn reset(&mut self) {
        self.faults = Faults::default();
        self.rng = rng_from(self.config_seed);
    }

    /// Rolls for one call naming every id in `ids` (a component call names
    /// its component appid and, when it has one, its authorizer appid): an
    /// `appid` filter matches when any of them is it.
    pub(crate) fn decide_for(&mut self, ids: &[&str]) -> FaultDecision {
        let f = &self.faults;
        if f.remaining == Some(0) {
            return FaultDecision::default();
        }
        if let Some(only) = f.appid.as_deref()
            && !ids.contains(&only)
        {
            return FaultDecision::default();
        }
        let draw: f64 = self.rng.random();
        let mut edge = 0.0;
        let mut kind = None;
        for (k, rate) in [
            (FaultKind::Busy, f.busy_rate),
            (FaultKind::Http502, f.http_502_rate),
            (FaultKind::Garbage, f.garbage_rate),
            (FaultKind::Hang, f.hang_rate),
        ] {
            edge += rate;
            if draw < edge {
                kind = Some(k);
                break;
            }
        }
        let delay = match f.delay {
            Some(d) if self.rng.random::<f64>() < f.delay_rate.unwrap_or(1.0) => Some(d),
            _ => None,
        };
        if let Some(n) = self.faults.remaining {
            if n <= 1 {
                self.faults = Faults::default();
            } else {
                self.faults.remaining = Some(n - 1);
            }
        }
        FaultDecision { kind, delay }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_with_humantime_delay() {
        let f: Faults =
            serde_json::from_str(r#"{"busy_rate":0.5,"delay":"250ms","remaining":3}"#).unwrap();
        assert_eq!(f.delay, Some(Duration::from_millis(250)));
        assert_eq!(f.remaining, Some(3));
        assert_eq!(f.hang_rate, 0.0);
        let back: Faults = serde_json::from_str(&serde_json::to_string(&f).unwrap()).unwrap();
        assert_eq!(back, f);
        assert!(serde_json::from_str::<Faults>(r#"{"busy":1}"#).is_err());
    }

    #[test]
    fn validate_rejects_bad_rates() {
        let f = Faults {
            busy_rate: 0.7,
            hang_rate: 0.7,
            ..Faults::none()
        };
        assert!(f.validate().is_err());
        let f = Faults {
            delay_rate: Some(1.5),
            ..Faults::none()
        };
        assert!(f.validate().is_err());
        assert!(Faults::none().validate().is_ok());
    }

    #[test]
    fn remaining_counts_matching_calls_then_clears() {
        let mut p = FaultPlan::new(Some(1));
        p.set(Faults {
            busy_rate: 1.0,
            remaining: Some(2),
            appid: Some("wxA".into()),
            ..Faults::none()
        });
        assert_eq!(p.decide_for(&["wxB"]).kind, None);
        assert_eq!(p.decide_for(&[]).kind, None);
        assert_eq!(p.decide_for(&["wxA"]).kind, Some(FaultKind::Busy));
        assert_eq!(p.decide_for(&["wxA"]).kind, Some(FaultKind::Busy));
        assert_eq!(p.decide_for(&["wxA"]).kind, None);
        assert_eq!(p.current(), &Faults::none());
    }

    #[test]
    fn same_seed_same_decisions() {
        let faults = Faults {
            busy_rate: 0.3,
            hang_rate: 0.3,
            delay: Some(Duration::from_millis(5)),
            delay_rate: Some(0.5),
            seed: Some(42),
            ..Faults::none()
        };
        let roll = |faults: &Faults| {
            let mut p = FaultPlan::new(None);
            p.set(faults.clone());
            (0..64).map(|_| p.decide_for(&["wx"])).collect::<Vec<_>>()
        };
        let a = roll(&faults);
        assert_eq!(a, roll(&faults));
        assert!(a.iter().any(|d| d.kind.is_none()));
        assert!(a.iter().any(|d| d.kind == Some(FaultKind::Hang)));
        assert!(a.iter().any(|d| d.delay.is_none()));
    }
}
