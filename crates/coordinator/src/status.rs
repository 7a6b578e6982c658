//! The status of a credential as operators see it (`wxtoken status`,
//! `GET /v1/apps`): its config joined with what Redis holds. Never the token.

use wxtoken_common::wire::{AppStatus, ReportStatus};

use crate::config::{AppConfig, UpstreamApi};
use crate::store::{StoreError, TokenStore};

/// The status of one credential as `status --json` and `GET /v1/apps` show it.
pub async fn app_status(
    store: &TokenStore,
    app: &AppConfig,
    budget: u64,
) -> Result<AppStatus, StoreError> {
    let s = store.status(&app.id).await?;
    Ok(AppStatus {
        id: app.id.to_string(),
        appid: app.appid.clone(),
        api: api_name(app.api).into(),
        has_token: s.token_ttl.is_some(),
        generation: s.generation,
        ttl_ms: s
            .token_ttl
            .map(|t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX)),
        expires_at_ms: s.expires_at_ms.filter(|_| s.token_ttl.is_some()),
        fetched_at_ms: s.fetched_at_ms,
        fetched_by: s.fetched_by,
        source: s.source,
        last_error: s.last_error,
        quota_used_today: s.quota_used_today,
        daily_budget: budget,
        locked_by: s.locked_by,
        reports: ReportStatus {
            refused: s.reports_refused,
            last_refusal_reason: s.last_refusal_reason,
            last_refusal_at_ms: s.last_refusal_at_ms,
            verified_until_ms: s.verified_until_ms,
        },
        force_requests: s.force_requests,
    })
}

pub fn api_name(api: UpstreamApi) -> &'static str {
    match api {
        UpstreamApi::Token => "token",
        UpstreamApi::StableToken => "stable_token",
    }
}
