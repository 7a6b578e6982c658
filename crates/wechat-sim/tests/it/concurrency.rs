//! `max_concurrent_fetches` counts requests truly in flight together.

use futures_util::future::join_all;
use wechat_sim::Faults;

use crate::helpers::*;

#[tokio::test]
async fn max_concurrent_fetches_counts_five_delayed_calls_as_five() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        delay: Some(ms(500)),
        ..Faults::none()
    });
    let tokens = join_all((0..5).map(|_| wx.fetch())).await;
    assert_eq!(tokens.len(), 5);
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.max_concurrent_fetches, 5);
    assert_eq!(app.concurrent_fetches, 0);
    assert_eq!(stats.max_concurrent_fetches, 5);
    assert_eq!(stats.concurrent_fetches, 0);
}

#[tokio::test]
async fn five_sequential_fetches_peak_at_one() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        delay: Some(ms(50)),
        ..Faults::none()
    });
    for _ in 0..5 {
        wx.fetch().await;
    }
    let stats = wx.sim.stats();
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_calls, 5);
    assert_eq!(app.max_concurrent_fetches, 1);
}

#[tokio::test]
async fn hung_fetch_abandoned_by_client_is_no_longer_counted() {
    let wx = start(config()).await;
    wx.sim.set_faults(Faults {
        hang_rate: 1.0,
        ..Faults::none()
    });
    let impatient = reqwest::Client::builder().timeout(ms(300)).build().unwrap();
    let calls = (0..3).map(|_| {
        impatient
            .get(wx.url("/cgi-bin/token"))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", APP),
                ("secret", SECRET),
            ])
            .send()
    });
    for r in join_all(calls).await {
        assert!(r.unwrap_err().is_timeout());
    }
    assert_eq!(wx.sim.stats().app(APP).unwrap().max_concurrent_fetches, 3);
    poll_until(secs(5), "abandoned requests to be decremented", || async {
        wx.sim.stats().app(APP).unwrap().concurrent_fetches == 0
    })
    .await;
    let stats = wx.sim.stats();
    assert_eq!(stats.concurrent_fetches, 0);
    let app = stats.app(APP).unwrap();
    assert_eq!(app.fetch_failed.get("hang"), Some(&3));
    assert!(app.issued.is_empty(), "a hung call issues nothing");
}
