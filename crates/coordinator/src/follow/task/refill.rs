//! A follow task after its fleet's Redis lost data (or its lock lapsed):
//! the values it received go back into Redis, with no call to anyone.

use tracing::{debug, info};
use wxtoken_common::CredentialRef;

use super::Task;
use crate::store::Grant;

impl Task {
    /// After a data loss (or a lapsed lock): the values received before go
    /// back into Redis at once, with no call to anyone. A component's
    /// authorizers go 32 at a time (`component.rs`).
    pub(super) async fn refill(&mut self, grant: &mut Grant) {
        let own = self.cred.cref.clone();
        // A followed component's own value still stored: the dataset was
        // not lost, and its authorizers are not written again (a reconnect
        // loop would rewrite thousands of values each time).
        let intact = self.mirror.is_some() && self.stored_generation(&own).await.is_some();
        let mut stored = 0;
        if self.last.contains_key(&own) {
            match self.commit_last(grant, &own).await {
                Ok(Some(_)) => stored += 1,
                Ok(None) => {}
                Err(e) => debug!(credential = %own, error = %e, "follow refill failed"),
            }
        }
        if !intact {
            stored += self.refill_authorizers().await;
        }
        if stored > 0 {
            info!(credential = %self.cred.cref, stored, "follow: stored the last values received again (redis had lost them)");
        }
    }

    /// An event said the value of `cref` may be gone: refill if it is.
    pub(super) async fn recheck(&mut self, grant: &mut Grant, cref: &CredentialRef) {
        let stored = self.stored_generation(cref).await;
        let newest = self.last.get(cref).map(|v| v.generation);
        if newest.is_some() && stored < newest {
            if cref == &self.cred.cref {
                // The lock may have gone with the data: take it again first.
                let _ = self
                    .store()
                    .follow_hold(cref, &self.owner, self.keepers.inner.settings.lock_ttl)
                    .await;
            }
            if let Err(e) = self.commit_last(grant, cref).await {
                debug!(credential = %cref, error = %e, "follow refill failed");
            }
        }
    }

    /// The fleet's data may be gone: the registry and every value back.
    pub(super) async fn recheck_all(&mut self, grant: &mut Grant) {
        let own = self.cred.cref.clone();
        if self.stored_generation(&own).await.is_none() {
            let _ = self
                .store()
                .follow_hold(&own, &self.owner, self.keepers.inner.settings.lock_ttl)
                .await;
        }
        if let Some(m) = &mut self.mirror
            && let Err(e) = m.restore(&self.keepers.inner.store).await
        {
            debug!(credential = %own, error = %e, "followed registry restore failed");
        }
        self.refill(grant).await;
    }

    /// The generation of the value stored here, if one lives.
    async fn stored_generation(&self, cref: &CredentialRef) -> Option<u64> {
        match self.store().peek(cref).await {
            Ok(p) if p.token_ttl.is_some() && p.generation > 0 => Some(p.generation),
            _ => None,
        }
    }
}
