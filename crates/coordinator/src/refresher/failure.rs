//! A step that ends without a value: the failure recorded in Redis with the
//! gate before the next attempt (the back-off of its error class), the
//! spent budget, and an authorization WeChat says is revoked.

use std::time::Duration;

use tracing::warn;
use wxtoken_common::{CredentialRef, ErrorClass};

use super::{RefreshOutcome, Refresher};
use crate::kind::Credential;
use crate::store::{FailureRecord, Gate, Grant, StoreError};
use crate::upstream::FetchError;

/// The gate of an authorizer without a refresh token (lifted early by the
/// registration or import that stores one).
pub(super) const NO_REFRESH_TOKEN_WAIT: Duration = Duration::from_secs(60);

impl Refresher {
    pub(super) async fn over_budget(
        &self,
        cref: &CredentialRef,
        budget: u64,
        used: u64,
        gate: Gate,
    ) -> Result<(), StoreError> {
        let record = FailureRecord {
            code: "daily_budget".into(),
            message: format!("fleet budget of {budget} upstream calls is spent for this period"),
            class: ErrorClass::QuotaExhausted,
            gate,
            counts: false,
        };
        self.store.record_failure(cref, &record).await?;
        warn!(credential = %cref, used, budget, "budget spent; no upstream calls until the next period");
        Ok(())
    }

    pub(super) async fn failed(
        &self,
        cred: &Credential,
        grant: &Grant,
        error: FetchError,
    ) -> Result<RefreshOutcome, StoreError> {
        let cref = &cred.cref;
        if let (FetchError::Revoked { .. }, Some((component, appid))) =
            (&error, cred.kind.authorizer_of())
        {
            let generation = self.store.revoke(component, appid, cref).await?;
            warn!(credential = %cref, "WeChat says the authorization was revoked (61023): no longer refreshed");
            return Ok(RefreshOutcome::Revoked { generation });
        }
        let class = error.class();
        let day = self.store.quota_day(grant.now_ms);
        let gate = if matches!(error, FetchError::NoRefreshToken) {
            // Only a registration or an import brings one, and either lifts
            // this gate and wakes the credential on every replica: until
            // then, turning it again is load for nothing (100 000 of them
            // after a data loss would starve the rebuild).
            Gate::For(NO_REFRESH_TOKEN_WAIT)
        } else {
            self.backoff.gate(
                class,
                grant.failures.saturating_add(1),
                grant.now_ms,
                day,
                rand::random::<f64>(),
            )
        };
        let record = FailureRecord {
            code: error.code(),
            message: error.to_string(),
            class,
            gate,
            counts: true,
        };
        self.store.record_failure(cref, &record).await?;
        warn!(credential = %cref, %class, code = %error.code(), error = %error, "upstream fetch failed");
        Ok(RefreshOutcome::Failed { class, error })
    }
}
