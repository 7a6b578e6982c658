//! 100 000 authorizers: bulk creation is fast and memory-cheap, the list
//! pages through all of them, and the stats snapshot stays small. Timings
//! and memory are printed (`--nocapture`), never asserted on wall time;
//! the simulator's own byte estimate is asserted per authorizer.

use std::time::Instant;

use serde_json::json;

use crate::helpers::*;

const N: usize = 100_000;

/// Resident set size of this process, from /proc (None elsewhere).
fn rss_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

#[tokio::test]
async fn bulk_create_100_000_authorizers_list_them_and_keep_stats_small() {
    let wx = start(component_config(None)).await;
    let rss_before = rss_bytes();
    let t = Instant::now();
    assert_eq!(wx.sim.bulk_authorize(COMPONENT, N).unwrap(), N);
    let created_in = t.elapsed();
    let rss_after = rss_bytes();
    let stats = wx.sim.stats();
    let c = &stats.components[COMPONENT];
    assert_eq!(c.authorizers, N as u64);
    let per = c.authorizer_bytes / N as u64;
    println!(
        "bulk_authorize({N}): {created_in:?}; simulator estimate {} bytes ({per} per authorizer); \
         RSS delta {:?} bytes (noisy: other tests share the process)",
        c.authorizer_bytes,
        rss_after.zip(rss_before).map(|(a, b)| a.saturating_sub(b)),
    );
    assert!(per <= 200, "{per} bytes per authorizer");

    let token = wx.component_token().await;
    let t = Instant::now();
    let mut listed = 0;
    let mut last = None;
    for offset in (0..N).step_by(500) {
        let body = json!({"offset": offset, "count": 500});
        let page = wx
            .component_api("api_get_authorizer_list", &token, body)
            .await;
        let list = page["list"].as_array().unwrap();
        listed += list.len();
        last = list.last().cloned();
    }
    println!(
        "listed {listed} authorizers in 200 pages: {:?}",
        t.elapsed()
    );
    assert_eq!(listed, N);
    let last = last.unwrap();
    let (appid, refresh) = (
        last["authorizer_appid"].as_str().unwrap(),
        last["refresh_token"].as_str().unwrap(),
    );
    assert_eq!(
        errcode(&wx.authorizer_token(&token, appid, refresh).await),
        0
    );

    let t = Instant::now();
    let json = wx
        .http
        .get(wx.url("/__admin/stats"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    println!(
        "/__admin/stats at {N} authorizers: {} bytes in {:?}",
        json.len(),
        t.elapsed()
    );
    assert!(json.len() < 64 * 1024, "{} bytes", json.len());
}
