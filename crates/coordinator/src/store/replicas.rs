//! Which replicas run, with which config: each replica writes its entry
//! every few seconds ([`TokenStore::announce_replica`]); `wxtoken status`
//! reads them ([`TokenStore::replicas`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{StoreError, TokenStore, millis, script};

script!(ANNOUNCE, "replicas.lua");

/// A replica as it last announced itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaEntry {
    #[serde(default)]
    pub id: String,
    /// How many configs it has run: 1 at start, +1 per applied reload.
    pub generation: u64,
    /// A short digest of the config it runs: equal digests, equal configs.
    pub digest: String,
    pub seen_at_ms: u64,
}

impl TokenStore {
    /// Records that `replica` runs config `generation` / `digest` now, and
    /// forgets replicas unseen for `forget`.
    pub async fn announce_replica(
        &self,
        replica: &str,
        generation: u64,
        digest: &str,
        forget: Duration,
    ) -> Result<(), StoreError> {
        let mut c = self.conn().await?;
        let _: u64 = ANNOUNCE
            .key(self.keys().replicas())
            .arg(replica)
            .arg(generation)
            .arg(digest)
            .arg(millis(forget))
            .invoke_async(&mut c)
            .await?;
        Ok(())
    }

    /// The replicas that announced themselves lately, by id; junk entries
    /// are skipped.
    pub async fn replicas(&self) -> Result<Vec<ReplicaEntry>, StoreError> {
        let mut c = self.conn().await?;
        let key = self.keys().replicas();
        let mut out = Vec::new();
        let mut cursor = 0u64;
        loop {
            let page: Result<(u64, Vec<(String, String)>), redis::RedisError> = redis::cmd("HSCAN")
                .arg(&key)
                .arg(cursor)
                .arg("COUNT")
                .arg(100)
                .query_async(&mut c)
                .await;
            let (next, page) = match page {
                Ok(p) => p,
                // Another type at the key (a foreign writer): no replicas.
                Err(e) if e.code() == Some("WRONGTYPE") => return Ok(Vec::new()),
                Err(e) => return Err(e.into()),
            };
            out.extend(page.into_iter().filter_map(|(id, v)| {
                let mut e: ReplicaEntry = serde_json::from_str(&v).ok()?;
                e.id = id;
                Some(e)
            }));
            if next == 0 {
                break;
            }
            cursor = next;
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }
}
