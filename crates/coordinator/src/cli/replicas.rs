//! The replicas part of `wxtoken status`: which replicas announced
//! themselves lately and which config each runs.

use crate::store::{ReplicaEntry, TokenStore};

/// Prints one line per replica seen in the last two minutes: its config
/// generation and digest (replicas with different digests run different
/// configs: a reload that reached some of them only).
pub async fn print(store: &TokenStore) -> anyhow::Result<()> {
    let replicas = store.replicas().await?;
    let now = store.redis_time_ms().await?;
    println!();
    if replicas.is_empty() {
        println!("replicas: none seen in the last two minutes");
        return Ok(());
    }
    println!("{:<32} {:>6} {:<14} SEEN", "REPLICA", "CONFIG", "DIGEST");
    for r in &replicas {
        println!("{}", line(r, now));
    }
    let digests: std::collections::BTreeSet<&str> =
        replicas.iter().map(|r| r.digest.as_str()).collect();
    if digests.len() > 1 {
        println!(
            "replicas run {} different configs: send SIGHUP to the ones behind (or restart them)",
            digests.len()
        );
    }
    Ok(())
}

fn line(r: &ReplicaEntry, now_ms: u64) -> String {
    let ago = now_ms.saturating_sub(r.seen_at_ms) / 1000;
    format!(
        "{:<32} {:>6} {:<14} {ago}s ago",
        r.id,
        format!("#{}", r.generation),
        r.digest
    )
}
