//! The gateway's call series, whose handles are kept per worker so a
//! proxied call builds no labels.

use std::collections::HashMap;
use std::time::Duration;

use metrics::{counter, histogram};
use wxtoken_common::CredentialRef;

use super::{GATEWAY_CALLS_TOTAL, GATEWAY_SECONDS, labels};
use crate::kind::Credential;

/// One call through the gateway: by key, credential (an authorizer's
/// component), API path (`other` when WeChat did not know it, so callers
/// cannot mint series), WeChat's errcode (`-` for a reply without one) and
/// whether a refused token was healed by a retry. The handles of each
/// series are looked up in the recorder once and kept, so a call builds no
/// labels (the recorder never expires series: the handles stay valid).
///
/// Kept per worker thread (`crate::workers::lane`), so the workers never
/// wait on each other's lock; the handles of one series are the same
/// metric on every lane.
pub struct GatewaySeries {
    lanes: Box<[std::sync::Mutex<SeriesByHash>]>,
    hasher: foldhash::fast::RandomState,
}

impl Default for GatewaySeries {
    fn default() -> Self {
        Self {
            lanes: (0..=crate::workers::MAX_WORKERS)
                .map(|_| std::sync::Mutex::default())
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
        }
    }
}

impl std::fmt::Debug for GatewaySeries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewaySeries").finish_non_exhaustive()
    }
}

/// One worker's series, by the hash of their labels.
type SeriesByHash = HashMap<u64, Vec<Series>>;

struct Series {
    key: Box<str>,
    cred: CredentialRef,
    path: Box<str>,
    errcode: Option<i64>,
    healed: bool,
    calls: metrics::Counter,
    seconds: metrics::Histogram,
}

impl GatewaySeries {
    pub fn record(
        &self,
        key: &str,
        cred: &Credential,
        path: &str,
        errcode: Option<i64>,
        healed: bool,
        took: Duration,
    ) {
        use std::hash::BuildHasher;
        let hash = self
            .hasher
            .hash_one((key, &cred.cref, path, errcode, healed));
        let lane = crate::workers::lane() % self.lanes.len();
        let mut map = self.lanes[lane].lock().unwrap_or_else(|p| p.into_inner());
        let list = map.entry(hash).or_default();
        let found = list.iter().position(|s| {
            &*s.key == key
                && s.cred == cred.cref
                && &*s.path == path
                && s.errcode == errcode
                && s.healed == healed
        });
        let series = match found {
            Some(i) => &list[i],
            None => {
                let (calls, seconds) = gateway_handles(key, cred, path, errcode, healed);
                list.push(Series {
                    key: key.into(),
                    cred: cred.cref.clone(),
                    path: path.into(),
                    errcode,
                    healed,
                    calls,
                    seconds,
                });
                &list[list.len() - 1]
            }
        };
        series.calls.increment(1);
        series.seconds.record(took.as_secs_f64());
    }
}

fn gateway_handles(
    key: &str,
    cred: &Credential,
    path: &str,
    errcode: Option<i64>,
    healed: bool,
) -> (metrics::Counter, metrics::Histogram) {
    let (app, _) = labels(cred);
    let errcode = errcode.map_or_else(|| "-".to_owned(), |c| c.to_string());
    let healed = if healed { "true" } else { "false" };
    (
        counter!(GATEWAY_CALLS_TOTAL, "key" => key.to_owned(), "app" => app.clone(), "path" => path.to_owned(), "errcode" => errcode, "healed" => healed),
        histogram!(GATEWAY_SECONDS, "key" => key.to_owned(), "app" => app, "path" => path.to_owned()),
    )
}
