//! Reloading what a replica reads from files while it runs (the key set,
//! the TLS certificate): on SIGHUP and when one of the files changes
//! (checked every second). A file that does not load is refused with the
//! offending key logged, and what was in force stays in force.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::config::ConfigError;

/// Something reloadable from files.
pub trait Reloadable: Send + Sync {
    /// What it is, for the log (`API keys`).
    fn what(&self) -> &'static str;
    /// When its files last changed; a change triggers [`Reloadable::reload`].
    fn stamp(&self) -> Vec<Option<SystemTime>>;
    /// Reads the files again and swaps the result in whole; on error
    /// nothing changes.
    fn reload(&self) -> Result<(), ConfigError>;
}

/// When `path` was last modified (`None`: it cannot be read).
pub fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// How often files are checked for a change.
const POLL: Duration = Duration::from_secs(1);

/// Reloads `target` on SIGHUP and when its stamp changes, until `stop`
/// turns true.
pub async fn watch<R: Reloadable + ?Sized>(
    target: &R,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    use tokio::signal::unix::{SignalKind, signal};
    let what = target.what();
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(what, error = %e, "cannot listen for SIGHUP; files are still watched");
            None
        }
    };
    let mut seen = target.stamp();
    let mut tick = tokio::time::interval(POLL);
    loop {
        let why = tokio::select! {
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => "SIGHUP",
            _ = tick.tick() => {
                let now = target.stamp();
                if now == seen {
                    continue;
                }
                "a file changed"
            }
            _ = stop.changed() => return,
        };
        // What this reload reads is what the next tick compares with: a
        // file written just before a SIGHUP is not reloaded twice.
        seen = target.stamp();
        match target.reload() {
            Ok(()) => tracing::info!(what, why, "reloaded"),
            Err(e) => tracing::warn!(
                what,
                why,
                key = %e.key,
                error = %e.message,
                "not reloaded; what was in force stays in force"
            ),
        }
    }
}
