//! Whether a report justifies a refresh (invariant 7: no caller can spend
//! the upstream budget). A reported value is judged before anything is
//! spent: shown to WeChat with a cheap call ([`CheckBy::Call`]) or fetched
//! again ([`CheckBy::Fetch`]: WeChat hands out the same ticket while it is
//! valid), then at most one report-triggered refresh per
//! `report_refresh_interval`, never into `scheduled_reserve`.

use std::time::Instant;

use secrecy::SecretString;
use tracing::{debug, info, warn};

use super::{Proceed, RefreshOutcome, Refresher, Refusal};
use crate::kind::{CheckBy, Credential};
use crate::store::{Grant, QuotaTake, ReportCheck, StoreError};
use crate::upstream::Check;

impl Refresher {
    /// A reader reported the stored, fresh value. `Ok(proceed)`: quota was
    /// taken (outside the scheduled reserve) and, for a checked-by-call
    /// kind, the dead value dropped: go on and fetch. `Err(outcome)`: no
    /// refresh now.
    pub(super) async fn judge_report(
        &self,
        cred: &Credential,
        grant: &Grant,
        generation: u64,
        check: ReportCheck,
    ) -> Result<Result<Proceed, RefreshOutcome>, StoreError> {
        let cref = &cred.cref;
        let s = &self.settings;
        if check.verified {
            crate::metrics::report_refused(cred, Refusal::RecentlyVerified.as_str());
            return Ok(Err(RefreshOutcome::ReportRefused {
                reason: Refusal::RecentlyVerified,
            }));
        }
        let by_fetch = matches!(cred.kind.check(), CheckBy::Fetch);
        if let CheckBy::Call { url, rejects } = cred.kind.check() {
            // 1. Ask WeChat, within the day's check budget. A token WeChat
            //    accepts is not invalid, whoever says so.
            let day = self.store.quota_day(grant.now_ms);
            let verdict = match self
                .store
                .take_verify_quota(cref, day, s.verify_daily_budget)
                .await?
            {
                QuotaTake::Taken { .. } => {
                    let started = Instant::now();
                    let checked = self.upstream.check_token(&url, &check.token, rejects).await;
                    crate::metrics::upstream("get_api_domain_ip", started.elapsed());
                    crate::metrics::token_check(cred, checked.label());
                    Some(checked)
                }
                QuotaTake::OverBudget { used } => {
                    warn!(credential = %cref, used, "token check budget spent today; judging the report without asking WeChat");
                    None
                }
            };
            match &verdict {
                Some(Check::Accepted) => {
                    return self
                        .refuse(cred, generation, Refusal::TokenValid, true)
                        .await
                        .map(Err);
                }
                Some(Check::Rejected { errcode }) => {
                    info!(credential = %cref, generation, errcode, "WeChat rejects the reported value");
                }
                Some(Check::Unknown(e)) => {
                    warn!(credential = %cref, generation, error = %e, "could not check the reported value; a capped refresh follows");
                }
                None => {}
            }
        }
        // 2. At most one report-triggered refresh per interval, fleet-wide.
        if !check.spacing.is_zero() {
            crate::metrics::report_refused(cred, "spacing");
            debug!(credential = %cref, wait = ?check.spacing, "report-triggered refresh deferred by the spacing");
            return Ok(Err(RefreshOutcome::ReportDeferred {
                wait: check.spacing,
            }));
        }
        if !grant.gate.is_zero() {
            return Ok(Err(RefreshOutcome::Gated { wait: grant.gate }));
        }
        // 3. Never into the reserve kept for scheduled refreshes.
        let limits = cred.kind.limits(s);
        let period = self.store.period(limits.window, grant.now_ms);
        let budget = limits.budget.saturating_sub(s.reserve_of(limits.budget));
        let take = self.store.take_quota(cref, &period, budget).await?;
        if let QuotaTake::OverBudget { used } = take {
            warn!(credential = %cref, used, "report refused: the rest of the budget is the scheduled refreshes' reserve");
            return self
                .refuse(cred, generation, Refusal::Reserve, false)
                .await
                .map(Err);
        }
        let compare_with = if by_fetch {
            // The fetch itself is the check.
            Some(SecretString::from(
                secrecy::ExposeSecret::expose_secret(&check.token).to_owned(),
            ))
        } else {
            // 4. Readers wait for the new value rather than use the dead one.
            self.store.drop_token(cref, &check.token, true).await?;
            crate::metrics::invalidation(cred, "verified_report");
            None
        };
        Ok(Ok(Proceed {
            take,
            reported: true,
            compare_with,
        }))
    }

    /// Records and announces that a report of `generation` leads to no
    /// refresh. `verified`: WeChat accepted the value just now.
    pub(super) async fn refuse(
        &self,
        cred: &Credential,
        generation: u64,
        reason: Refusal,
        verified: bool,
    ) -> Result<RefreshOutcome, StoreError> {
        let verified_for = verified.then_some(self.settings.verify_interval);
        self.store
            .refuse_report(&cred.cref, generation, reason.as_str(), verified_for)
            .await?;
        crate::metrics::report_refused(cred, reason.as_str());
        if verified {
            info!(credential = %cred.cref, generation, "report refused: WeChat accepts the reported value");
        }
        Ok(RefreshOutcome::ReportRefused { reason })
    }
}
