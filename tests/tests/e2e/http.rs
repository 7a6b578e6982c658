//! The HTTP API of `wxtoken serve` processes over real sockets: two
//! replicas answer with the same shared token, SDK-style and JSON-style,
//! and logs never carry the query string's secret or the API key.

use std::time::Duration;

use wxtoken_e2e::{API_KEY, APPID, Fleet, SECRET, Timing};

async fn ready(http: &reqwest::Client, base: &str) {
    let ok = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    assert!(ok, "{base} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_serve_the_same_token_over_http() {
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(30),
        ..Timing::default()
    })
    .await;
    fleet.spawn_replicas(2);
    let stored = fleet.wait_generation(1, Duration::from_secs(10)).await;
    let http = reqwest::Client::new();
    for replica in &fleet.replicas {
        let base = format!("http://{}", replica.http);
        ready(&http, &base).await;
        let v: serde_json::Value = http
            .get(format!("{base}/v1/apps/shop/access_token"))
            .bearer_auth(API_KEY)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(v["access_token"], stored.value.as_str(), "{v}");
        let sdk: serde_json::Value = http
            .get(format!("{base}/cgi-bin/token"))
            .query(&[
                ("grant_type", "client_credential"),
                ("appid", APPID),
                ("secret", SECRET),
            ])
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(sdk["access_token"], stored.value.as_str(), "{sdk}");
        let unauthorized = http.get(format!("{base}/v1/apps")).send().await.unwrap();
        assert_eq!(unauthorized.status(), 401);
        let metrics = http
            .get(format!("{base}/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(metrics.contains("wxtoken_http_requests_total"));
    }
    assert_eq!(fleet.app().fetch_calls, 1, "HTTP reads never call upstream");
    // The container HEALTHCHECK command.
    let url = format!("http://{}/healthz", fleet.replicas[0].http);
    assert!(fleet.cli(&["healthcheck", "--url", &url]).status.success());
    let dead = format!("http://127.0.0.1:{}/healthz", wxtoken_testkit::free_port());
    assert_eq!(
        fleet.cli(&["healthcheck", "--url", &dead]).status.code(),
        Some(1)
    );
    fleet.assert_logs_clean();
}
