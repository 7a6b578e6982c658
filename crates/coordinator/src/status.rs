//! The status of a credential as operators see it (`wxtoken status`,
//! `GET /v1/apps`, `GET /v1/credentials`): what its kind says it is, joined
//! with what Redis holds. Never the value.

use wxtoken_common::wire::{AppStatus, Followed, ReportStatus};

use crate::config::RefreshConfig;
use crate::kind::Credential;
use crate::store::{StoreError, TokenStore};

/// The status of one credential.
pub async fn credential_status(
    store: &TokenStore,
    cred: &Credential,
    settings: &RefreshConfig,
) -> Result<AppStatus, StoreError> {
    let limits = cred.kind.limits(settings);
    let about = cred.kind.describe();
    let s = store.status(&cred.cref, limits.window).await?;
    let quota_check = match cred.kind.fetch_quota() {
        Some(_) => store.quota_check(&cred.cref).await?,
        None => None,
    };
    Ok(AppStatus {
        id: cred.cref.id.to_string(),
        appid: about.owner,
        api: about.api.into(),
        kind: cred.kind.name().into(),
        slot: cred.cref.slot.name().map(str::to_owned),
        agentid: about.agentid,
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
        daily_budget: limits.budget,
        quota_window: limits.window.name().into(),
        locked_by: s.locked_by,
        reports: ReportStatus {
            refused: s.reports_refused,
            last_refusal_reason: s.last_refusal_reason,
            last_refusal_at_ms: s.last_refusal_at_ms,
            verified_until_ms: s.verified_until_ms,
        },
        force_requests: s.force_requests,
        quota_check,
        followed: cred.follow.as_ref().map(|f| {
            s.follow.clone().unwrap_or_else(|| Followed {
                from: f.url.clone(),
                state: "not followed yet".into(),
                lag_ms: None,
                at_ms: None,
            })
        }),
    })
}

/// What the config says of a credential whose Redis keys cannot be read
/// (a foreign writer left data of the wrong type or shape there): listed
/// with nothing stored, so the other credentials' rows still show.
pub fn unreadable_status(cred: &Credential, settings: &RefreshConfig) -> AppStatus {
    let limits = cred.kind.limits(settings);
    let about = cred.kind.describe();
    AppStatus {
        id: cred.cref.id.to_string(),
        appid: about.owner,
        api: about.api.into(),
        kind: cred.kind.name().into(),
        slot: cred.cref.slot.name().map(str::to_owned),
        agentid: about.agentid,
        has_token: false,
        generation: None,
        ttl_ms: None,
        expires_at_ms: None,
        fetched_at_ms: None,
        fetched_by: None,
        source: None,
        last_error: None,
        quota_used_today: 0,
        daily_budget: limits.budget,
        quota_window: limits.window.name().into(),
        locked_by: None,
        reports: ReportStatus::default(),
        force_requests: 0,
        quota_check: None,
        followed: None,
    }
}
