//! The watch endpoints through a replica's API on a real socket: a ticket
//! followed across a refresh, resume, and refused requests (the Python
//! client against real processes is tests/tests/e2e/watch.rs).

use std::time::Duration;

use futures_util::StreamExt;

use crate::bad_input::attacks::{limits, serve_api};
use crate::fleet::{API_KEY, Fleet, ID, Settings};

/// The `data` of the next SSE event of `kind` on `body`.
async fn next_event(
    body: &mut (impl futures_util::Stream<Item = reqwest::Result<axum::body::Bytes>> + Unpin),
    buf: &mut String,
    kind: &str,
) -> (String, serde_json::Value) {
    loop {
        if let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|l| l.strip_prefix(&format!("{name}:")))
                    .map(|v| v.trim_start().to_owned())
            };
            if field("event").as_deref() == Some(kind) {
                let data = field("data").expect("data");
                return (
                    field("id").expect("id"),
                    serde_json::from_str(&data).unwrap(),
                );
            }
            continue;
        }
        let chunk = tokio::time::timeout(Duration::from_secs(10), body.next())
            .await
            .expect("an event within 10 s")
            .expect("the stream goes on")
            .unwrap();
        buf.push_str(&String::from_utf8_lossy(&chunk));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_is_followed_across_refreshes_and_bad_requests_are_refused() {
    let fleet = Fleet::start(
        Settings {
            tickets: &["jsapi"],
            ..Settings::default()
        },
        1,
    )
    .await;
    fleet.wait_generation(1, Duration::from_secs(5)).await;
    let (addr, _stop) = serve_api(&fleet, limits(Duration::from_secs(5), 64)).await;
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let url = format!("{base}/v1/apps/{ID}/tickets/jsapi/watch");
    let r = http.get(&url).bearer_auth(API_KEY).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let mut body = r.bytes_stream();
    let mut buf = String::new();
    let (id1, first) = next_event(&mut body, &mut buf, "ticket").await;
    assert_eq!(first["generation"].to_string(), id1);
    assert!(first["ticket"].as_str().is_some_and(|t| !t.is_empty()));
    // Tickets live 4 s here: the next one arrives on the same stream.
    let (_, second) = next_event(&mut body, &mut buf, "ticket").await;
    assert!(second["generation"].as_u64() > first["generation"].as_u64());
    assert_ne!(second["ticket"], first["ticket"]);

    // Resumed after the first: the first event sent is newer.
    let r = http
        .get(&url)
        .bearer_auth(API_KEY)
        .header("Last-Event-ID", &id1)
        .send()
        .await
        .unwrap();
    let mut body = r.bytes_stream();
    let (_, resumed) = next_event(&mut body, &mut String::new(), "ticket").await;
    assert!(resumed["generation"].as_u64() > first["generation"].as_u64());

    // Refused: no key, a garbage Last-Event-ID, an unknown id, a ticket type
    // the app does not keep.
    let token_url = format!("{base}/v1/apps/{ID}/access_token/watch");
    let r = http.get(&token_url).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = http
        .get(&token_url)
        .bearer_auth(API_KEY)
        .header("Last-Event-ID", "yesterday")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    let r = http
        .get(format!("{base}/v1/apps/nobody/access_token/watch"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = http
        .get(format!("{base}/v1/apps/{ID}/tickets/wx_card/watch"))
        .bearer_auth(API_KEY)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_client_error(), "{}", r.status());
}
