//! The step's upstream side: a kind's fetch, with its parent's current
//! value (a ticket's token) and one retry when WeChat says that parent is
//! bad. Runs only under the credential's lock with quota taken (invariant
//! 1: `Refresher::with_lock` calls it).

use std::time::{Duration, Instant};

use secrecy::SecretString;
use tracing::warn;
use wxtoken_common::{CredentialRef, QuotaPeriod};

use super::Refresher;
use crate::kind::{Credential, FetchCx, Fetched};
use crate::store::QuotaTake;
use crate::upstream::FetchError;

impl Refresher {
    /// The kind's fetch, with the parent's current value when it has one.
    /// When WeChat says the parent is bad (a getticket's 40001), the parent
    /// is dropped, the fleet's next one awaited, and the fetch retried once
    /// (with one more quota unit).
    pub(super) async fn fetch(
        &self,
        cred: &Credential,
        force: bool,
        locked_at: Instant,
        period: &QuotaPeriod,
    ) -> Result<Fetched, FetchError> {
        let parent = match cred.kind.parent() {
            Some(p) => Some((self.parent_value(&p, None).await?, p)),
            None => None,
        };
        let first = self
            .fetch_once(cred, parent.as_ref().map(|(t, _)| t), force)
            .await;
        let (Err(FetchError::ParentRejected { errcode }), Some((token, parent_ref))) =
            (&first, &parent)
        else {
            return first;
        };
        let dead = SecretString::from(token.value().to_owned());
        warn!(credential = %cred.cref, parent = %parent_ref, errcode, "WeChat rejected the parent token; replacing it");
        if let Err(e) = self.store.drop_token(parent_ref, &dead, false).await {
            return Err(FetchError::ParentUnavailable(format!("dropping it: {e}")));
        }
        crate::metrics::invalidation(cred, "parent_rejected");
        let budget = self.settings.lock_ttl.saturating_sub(locked_at.elapsed());
        let wait = budget.saturating_sub(self.settings.upstream_timeout * 2);
        let fresh = self
            .parent_value(parent_ref, Some((token.generation(), wait)))
            .await?;
        let limits = cred.kind.limits(&self.settings);
        match self
            .store
            .take_quota(&cred.cref, period, limits.budget)
            .await
        {
            Ok(QuotaTake::Taken { .. }) => {}
            Ok(QuotaTake::OverBudget { .. }) => return first,
            Err(e) => return Err(FetchError::ParentUnavailable(e.to_string())),
        }
        if self.lock_nearly_gone(locked_at) {
            return first;
        }
        self.fetch_once(cred, Some(&fresh), force).await
    }

    /// The parent's value: the current one, or one newer than a generation
    /// (waiting at most the given time).
    async fn parent_value(
        &self,
        parent: &CredentialRef,
        newer: Option<(u64, Duration)>,
    ) -> Result<wxtoken_client::Token, FetchError> {
        let token = match newer {
            // The parent's value if there is one now: a credential whose
            // parent has none (a component token being refilled) fails at
            // once instead of holding a step slot for `token_wait`.
            None => tokio::time::timeout(PARENT_WAIT, self.client.value(parent))
                .await
                .unwrap_or_else(|_| {
                    Err(wxtoken_client::ClientError::Unavailable {
                        id: parent.to_string(),
                        reason: "no value yet".into(),
                    })
                }),
            Some((generation, wait)) => {
                self.client
                    .wait_for_newer_value(parent, generation, wait)
                    .await
            }
        };
        token.map_err(|e| FetchError::ParentUnavailable(e.to_string()))
    }

    async fn fetch_once(
        &self,
        cred: &Credential,
        parent: Option<&wxtoken_client::Token>,
        force: bool,
    ) -> Result<Fetched, FetchError> {
        let parent = parent.map(|t| SecretString::from(t.value().to_owned()));
        let started = Instant::now();
        let result = cred
            .kind
            .fetch(FetchCx {
                upstream: &self.upstream,
                parent: parent.as_ref(),
                force,
                vault: Some(&self.vault),
            })
            .await;
        crate::metrics::upstream(cred.kind.api(), started.elapsed());
        result.map(|mut f| {
            f.sent = started;
            f.took = started.elapsed();
            f
        })
    }

    pub(super) fn lock_nearly_gone(&self, locked_at: Instant) -> bool {
        locked_at.elapsed() + self.settings.upstream_timeout >= self.settings.lock_ttl
    }
}

/// How long a fetch waits for its parent's current value (a cache miss
/// is one Redis read; longer means the parent has none).
const PARENT_WAIT: Duration = Duration::from_millis(250);
