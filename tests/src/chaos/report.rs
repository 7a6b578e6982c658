//! Judging a chaos run: every failed use is classified against the
//! simulator's record of issued tokens, upstream fetches are compared with
//! the ideal plus what the injected faults can force, and logs and metrics
//! are scanned for secrets. The pass criteria are those of issue 7.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use wechat_sim::{Stats, TokenSource};

use super::{ChaosConfig, sha1};
use crate::{API_KEY, APPID, SECRET};

/// What one reader process saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReaderReport {
    /// `token`, `ticket` or `wecom` (see `bin/reader.rs`).
    #[serde(default = "token_kind")]
    pub kind: String,
    pub uses_ok: u64,
    pub uses_40001: u64,
    pub uses_42001: u64,
    pub unavailable: u64,
    pub other: u64,
    pub healed: u64,
    pub longest_gap_ms: u64,
    #[serde(default)]
    pub longest_gap_from_ms: u64,
    #[serde(default)]
    pub longest_gap_to_ms: u64,
    pub failures: Vec<FailedUse>,
}

fn token_kind() -> String {
    "token".into()
}

/// A use WeChat refused.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FailedUse {
    pub handed_out_at_ms: u64,
    pub errcode: i64,
    pub token_sha1: String,
    pub generation: u64,
}

/// The outcome of a chaos run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub seed: u64,
    pub duration_s: f64,
    pub replicas: usize,
    pub readers: usize,
    pub token_ttl_s: u64,
    pub overlap_s: u64,
    pub refresh_cycle_s: f64,
    pub ideal_fetches: u64,
    pub fleet_tokens_issued: u64,
    pub fetch_allowance: u64,
    pub upstream_calls: u64,
    pub upstream_failures: BTreeMap<String, u64>,
    pub max_concurrent_fetches: u64,
    pub uses_ok: u64,
    pub uses_40001: u64,
    pub uses_42001: u64,
    pub unavailable_reads: u64,
    pub healed_after_retry: u64,
    pub failed_uses_third_party_window: u64,
    pub failed_uses_orphan_window: u64,
    pub failed_uses_boundary: u64,
    pub stale_handouts: u64,
    pub faults_injected: BTreeMap<&'static str, u64>,
    pub quota_used: u64,
    pub longest_gap_ms: u64,
    /// When the longest gap started and ended, seconds after the run started.
    pub longest_gap_s: (f64, f64),
    pub secret_leaks: u64,
    /// When each upstream token was issued, seconds after the run started.
    pub issued_at_s: Vec<f64>,
    /// Tickets and WeCom tokens.
    pub kinds: super::kinds::KindsReport,
    pub violations: Vec<String>,
    pub passed: bool,
}

impl Report {
    #[allow(clippy::too_many_arguments)]
    pub(super) fn judge(
        cfg: &ChaosConfig,
        elapsed: Duration,
        stats: &Stats,
        committed: &HashSet<String>,
        readers: Vec<ReaderReport>,
        faults: BTreeMap<&'static str, u64>,
        logs: &str,
        metrics: &str,
        started_ms: u64,
    ) -> Self {
        let t = &cfg.timing;
        let app = stats.app(APPID).cloned().unwrap_or_default();
        let mut violations = Vec::new();
        let cycle = t.token_ttl.saturating_sub(t.refresh_ahead);
        // Replicas refresh up to lead/10 early (jitter): the fastest honest pace.
        let fastest = cycle
            .saturating_sub(t.refresh_ahead / 10)
            .max(Duration::from_millis(1));
        let ideal = 1 + (elapsed.as_secs_f64() / fastest.as_secs_f64()).floor() as u64;
        let fleet_issued = app
            .issued
            .iter()
            .filter(|i| i.source != TokenSource::External)
            .count() as u64;
        let garbage = app.fetch_failed.get("garbage").copied().unwrap_or(0);
        // Each injected fault, and each reply lost in transit, may force one
        // refetch; a report flood may force none (invariant 7).
        let forcing: u64 = faults
            .iter()
            .filter(|(kind, _)| **kind != "report_flood")
            .map(|(_, n)| n)
            .sum();
        let allowance = ideal + forcing + garbage + 1;
        if fleet_issued > allowance {
            violations.push(format!(
                "{fleet_issued} tokens fetched, more than ideal {ideal} + forced = {allowance}"
            ));
        }
        // Fewer fetches than ideal is no virtue when readers went without a
        // token meanwhile: no injected fault stops the fleet for a whole
        // token lifetime (seed 11's report flood once starved it for 54 s).
        if let Some(r) = readers.iter().max_by_key(|r| r.longest_gap_ms)
            && Duration::from_millis(r.longest_gap_ms) > t.token_ttl
        {
            violations.push(format!(
                "a {} reader went {} ms without a valid token (longer than a token's life, {} ms)",
                r.kind,
                r.longest_gap_ms,
                t.token_ttl.as_millis()
            ));
        }
        if app.max_concurrent_fetches > 1 {
            violations.push(format!(
                "{} concurrent upstream fetches",
                app.max_concurrent_fetches
            ));
        }

        let overlap_ms = t.overlap.as_millis() as u64;
        let grace_ms = 3_000; // propagation + max_staleness (2 s) + slack
        let (mut third_party, mut orphan, mut boundary, mut stale) = (0, 0, 0, 0);
        let kinds = super::kinds::judge(cfg, elapsed, stats, &readers, &faults, &mut violations);
        let all_readers = readers.len();
        let readers: Vec<ReaderReport> =
            readers.into_iter().filter(|r| r.kind == "token").collect();
        for f in readers.iter().flat_map(|r| r.failures.iter()) {
            let Some(token) = app.issued.iter().find(|i| sha1(&i.token) == f.token_sha1) else {
                violations.push(format!(
                    "a reader used a token the simulator never issued (errcode {})",
                    f.errcode
                ));
                continue;
            };
            if f.handed_out_at_ms < token.dead_from_ms() {
                boundary += 1; // it died between the read and the use
                continue;
            }
            if f.errcode == 42001 || f.handed_out_at_ms >= token.expires_at_ms {
                stale += 1;
                violations.push(format!(
                    "an expired token (generation {}) was handed out",
                    f.generation
                ));
                continue;
            }
            let newer_committed = app.issued.iter().any(|i| {
                i.issued_at_ms > token.issued_at_ms
                    && committed.contains(&sha1(&i.token))
                    && i.issued_at_ms + grace_ms < f.handed_out_at_ms
            });
            if newer_committed {
                stale += 1;
                violations.push(format!(
                    "generation {} handed out {} ms after it died, though a newer token was stored (overlap {overlap_ms} ms)",
                    f.generation,
                    f.handed_out_at_ms - token.dead_from_ms()
                ));
                continue;
            }
            let successor = app
                .issued
                .iter()
                .filter(|i| i.issued_at_ms >= token.issued_at_ms && i.token != token.token)
                .min_by_key(|i| i.issued_at_ms);
            match successor.map(|s| s.source) {
                Some(TokenSource::External) => third_party += 1,
                _ => orphan += 1,
            }
        }

        let mut leaks = 0;
        for (what, text) in [("logs", logs), ("metrics", metrics)] {
            for secret in [SECRET, API_KEY] {
                if text.contains(secret) {
                    leaks += 1;
                    violations.push(format!("a secret or API key appears in the {what}"));
                }
            }
            for i in stats.apps.values().flat_map(|a| a.issued.iter()) {
                if text.contains(&i.token) {
                    leaks += 1;
                    violations.push(format!("a full token appears in the {what}"));
                }
            }
        }
        if logs.is_empty() {
            violations.push("the replicas logged nothing (log capture broken?)".into());
        }
        violations.dedup();

        let sum = |f: fn(&ReaderReport) -> u64| readers.iter().map(f).sum::<u64>();
        Self {
            seed: cfg.seed,
            duration_s: elapsed.as_secs_f64(),
            replicas: cfg.replicas,
            readers: all_readers,
            token_ttl_s: t.token_ttl.as_secs(),
            overlap_s: t.overlap.as_secs(),
            refresh_cycle_s: cycle.as_secs_f64(),
            ideal_fetches: ideal,
            fleet_tokens_issued: fleet_issued,
            fetch_allowance: allowance,
            upstream_calls: app.fetch_calls,
            upstream_failures: app.fetch_failed.clone(),
            max_concurrent_fetches: app.max_concurrent_fetches,
            uses_ok: sum(|r| r.uses_ok),
            uses_40001: sum(|r| r.uses_40001),
            uses_42001: sum(|r| r.uses_42001),
            unavailable_reads: sum(|r| r.unavailable),
            healed_after_retry: sum(|r| r.healed),
            failed_uses_third_party_window: third_party,
            failed_uses_orphan_window: orphan,
            failed_uses_boundary: boundary,
            stale_handouts: stale,
            faults_injected: faults,
            quota_used: app.quota_used_today,
            longest_gap_ms: readers.iter().map(|r| r.longest_gap_ms).max().unwrap_or(0),
            longest_gap_s: readers.iter().max_by_key(|r| r.longest_gap_ms).map_or(
                (0.0, 0.0),
                |r| {
                    let at = |ms: u64| (ms as f64 - started_ms as f64) / 1000.0;
                    (at(r.longest_gap_from_ms), at(r.longest_gap_to_ms))
                },
            ),
            secret_leaks: leaks,
            issued_at_s: app
                .issued
                .iter()
                .map(|i| (i.issued_at_ms as f64 - started_ms as f64) / 1000.0)
                .collect(),
            kinds,
            passed: violations.is_empty(),
            violations,
        }
    }

    /// A human-readable table.
    pub fn table(&self) -> String {
        let mut s = String::new();
        let mut row = |k: &str, v: String| {
            let _ = writeln!(s, "{k:<44} {v}");
        };
        row("seed", self.seed.to_string());
        row("duration", format!("{:.0} s", self.duration_s));
        row(
            "replicas / readers",
            format!("{} / {}", self.replicas, self.readers),
        );
        row(
            "token ttl / overlap / refresh cycle",
            format!(
                "{} s / {} s / {:.0} s",
                self.token_ttl_s, self.overlap_s, self.refresh_cycle_s
            ),
        );
        row(
            "upstream tokens fetched (ideal / allowed)",
            format!(
                "{} ({} / {})",
                self.fleet_tokens_issued, self.ideal_fetches, self.fetch_allowance
            ),
        );
        row(
            "upstream calls (incl. injected failures)",
            format!("{} {:?}", self.upstream_calls, self.upstream_failures),
        );
        row(
            "max concurrent fetches",
            self.max_concurrent_fetches.to_string(),
        );
        row(
            "uses ok / 40001 / 42001",
            format!(
                "{} / {} / {}",
                self.uses_ok, self.uses_40001, self.uses_42001
            ),
        );
        row("reads Unavailable", self.unavailable_reads.to_string());
        row(
            "failed uses: third-party / orphan / boundary",
            format!(
                "{} / {} / {}",
                self.failed_uses_third_party_window,
                self.failed_uses_orphan_window,
                self.failed_uses_boundary
            ),
        );
        row(
            "stale handouts (must be 0)",
            self.stale_handouts.to_string(),
        );
        row(
            "healed by invalidate + retry",
            self.healed_after_retry.to_string(),
        );
        let k = &self.kinds;
        row(
            "tickets issued / calls (ideal / allowed)",
            format!(
                "{} / {} ({} / {})",
                k.tickets_issued, k.ticket_calls, k.ticket_ideal, k.ticket_allowance
            ),
        );
        row(
            "ticket uses ok / boundary / stale (must be 0)",
            format!(
                "{} / {} / {}",
                k.ticket_uses_ok, k.ticket_boundary, k.stale_ticket_handouts
            ),
        );
        row(
            "WeCom tokens per agent (ideal / allowed)",
            format!(
                "{:?} ({} / {})",
                k.wecom_fetches, k.wecom_ideal, k.wecom_allowance
            ),
        );
        row(
            "WeCom uses ok / revoked window / stale (must be 0)",
            format!(
                "{} / {} / {}",
                k.wecom_uses_ok, k.wecom_failed_uses_revoked, k.stale_wecom_handouts
            ),
        );
        row(
            "WeCom cap refusals (must be 0)",
            k.wecom_cap_refusals.to_string(),
        );
        row("faults injected", format!("{:?}", self.faults_injected));
        row("quota used", self.quota_used.to_string());
        row(
            "longest time a reader had no valid token",
            format!("{} ms", self.longest_gap_ms),
        );
        row(
            "secrets/tokens in logs or metrics",
            self.secret_leaks.to_string(),
        );
        row(
            "verdict",
            if self.passed {
                "PASS".into()
            } else {
                format!("FAIL: {}", self.violations.join("; "))
            },
        );
        s
    }
}
