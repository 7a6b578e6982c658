//! Judging the tickets and WeCom tokens of a chaos run (issue 13): fetches
//! against the ideal plus what faults can force, never two at once, WeCom's
//! caps never reached, and no reader handed a ticket past its life or a
//! WeCom token after it expired. A WeCom token WeCom revoked early (the
//! `wecom_revoke` fault) may fail uses until the fleet heals it; that is
//! counted, not a violation.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;
use wechat_sim::Stats;

use super::report::ReaderReport;
use super::{ChaosConfig, sha1};
use crate::{AGENTS, APPID, CORPID};

/// What the run did with tickets and WeCom.
#[derive(Debug, Clone, Default, Serialize)]
pub struct KindsReport {
    pub ticket_calls: u64,
    pub tickets_issued: u64,
    pub ticket_ideal: u64,
    pub ticket_allowance: u64,
    pub max_concurrent_ticket_fetches: u64,
    pub ticket_uses_ok: u64,
    pub ticket_uses_refused: u64,
    pub stale_ticket_handouts: u64,
    pub ticket_boundary: u64,
    /// Per agent: gettoken calls.
    pub wecom_fetches: BTreeMap<String, u64>,
    pub wecom_ideal: u64,
    pub wecom_allowance: u64,
    pub wecom_max_concurrent_fetches: u64,
    pub wecom_uses_ok: u64,
    pub wecom_failed_uses_revoked: u64,
    pub stale_wecom_handouts: u64,
    pub wecom_cap_refusals: u64,
}

/// Judges the ticket and WeCom readers' reports; violations are appended.
pub(super) fn judge(
    cfg: &ChaosConfig,
    elapsed: Duration,
    stats: &Stats,
    readers: &[ReaderReport],
    faults: &BTreeMap<&'static str, u64>,
    violations: &mut Vec<String>,
) -> KindsReport {
    let t = &cfg.timing;
    let mut r = KindsReport::default();
    let forcing = faults.values().sum::<u64>();
    let app = stats.app(APPID).cloned().unwrap_or_default();
    if !t.tickets.is_empty() {
        r.ticket_calls = app.ticket_calls.get("jsapi").copied().unwrap_or(0);
        r.tickets_issued = app.tickets_issued.get("jsapi").copied().unwrap_or(0);
        r.ticket_ideal = 1 + (elapsed.as_secs_f64() / t.ticket_ttl.as_secs_f64()).floor() as u64;
        let lost = app.ticket_failed.values().sum::<u64>();
        r.ticket_allowance = r.ticket_ideal + forcing + lost + 1;
        r.max_concurrent_ticket_fetches = app
            .max_concurrent_ticket_fetches
            .get("jsapi")
            .copied()
            .unwrap_or(0);
        if r.tickets_issued > r.ticket_allowance {
            violations.push(format!(
                "{} tickets issued, more than ideal {} + forced = {}",
                r.tickets_issued, r.ticket_ideal, r.ticket_allowance
            ));
        }
        if r.max_concurrent_ticket_fetches > 1 {
            violations.push(format!(
                "{} concurrent getticket calls",
                r.max_concurrent_ticket_fetches
            ));
        }
    }
    for report in readers.iter().filter(|x| x.kind == "ticket") {
        r.ticket_uses_ok += report.uses_ok;
        for f in &report.failures {
            r.ticket_uses_refused += 1;
            let issued = app
                .issued_tickets
                .iter()
                .find(|i| sha1(&i.ticket) == f.token_sha1);
            match issued {
                // It expired between the read and the check: a boundary.
                Some(i) if f.handed_out_at_ms < i.expires_at_ms => r.ticket_boundary += 1,
                _ => {
                    r.stale_ticket_handouts += 1;
                    violations.push(format!(
                        "a ticket (generation {}) was handed out past its life (errcode {})",
                        f.generation, f.errcode
                    ));
                }
            }
        }
    }
    if t.wecom.is_some() {
        r.wecom_ideal = 1 + (elapsed.as_secs_f64() / t.token_ttl.as_secs_f64()).floor() as u64;
        for (agent, agentid, _) in AGENTS {
            let a = stats
                .agent(CORPID, Some(agentid))
                .cloned()
                .unwrap_or_default();
            let lost = a.fetch_failed.get("garbage").copied().unwrap_or(0);
            let allowance = r.wecom_ideal + forcing + lost + 1;
            r.wecom_allowance = r.wecom_allowance.max(allowance);
            r.wecom_max_concurrent_fetches =
                r.wecom_max_concurrent_fetches.max(a.max_concurrent_fetches);
            if a.wecom_fetch_ok > allowance {
                violations.push(format!(
                    "{agent}: {} WeCom tokens fetched, more than ideal {} + forced = {allowance}",
                    a.wecom_fetch_ok, r.wecom_ideal
                ));
            }
            r.wecom_fetches.insert(agent.to_owned(), a.fetch_calls);
        }
        if r.wecom_max_concurrent_fetches > 1 {
            violations.push(format!(
                "{} concurrent gettoken calls for one agent",
                r.wecom_max_concurrent_fetches
            ));
        }
        let corp = stats.corp(CORPID).cloned().unwrap_or_default();
        r.wecom_cap_refusals = corp.ticket_cap_refusals.values().sum();
        if r.wecom_cap_refusals > 0 {
            violations.push(format!(
                "WeCom refused {} ticket fetches over its caps",
                r.wecom_cap_refusals
            ));
        }
    }
    let wecom_issued: Vec<_> = AGENTS
        .iter()
        .filter_map(|(_, agentid, _)| stats.agent(CORPID, Some(*agentid)))
        .flat_map(|a| a.issued.iter())
        .collect();
    for report in readers.iter().filter(|x| x.kind == "wecom") {
        r.wecom_uses_ok += report.uses_ok;
        for f in &report.failures {
            match wecom_issued.iter().find(|i| sha1(&i.token) == f.token_sha1) {
                Some(i) if i.revoked_at_ms.is_some() => r.wecom_failed_uses_revoked += 1,
                Some(i) if f.handed_out_at_ms < i.dead_from_ms() => {
                    r.wecom_failed_uses_revoked += 1
                }
                _ => {
                    r.stale_wecom_handouts += 1;
                    violations.push(format!(
                        "a WeCom token (generation {}) was handed out after it expired (errcode {})",
                        f.generation, f.errcode
                    ));
                }
            }
        }
    }
    r
}
