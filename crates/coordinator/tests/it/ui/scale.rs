//! The status page with 100 000 authorizers (open platform): one page of
//! rows, counts over all of them, prefix search and paging; timed.

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use wxtoken_coordinator::http::router;

use super::get;
use crate::fleet::{API_KEY, COMPONENT, Fleet, SECRET, Settings};

/// 100 000 authorizers (open platform): the page is one page of rows, with
/// counts over all of them, a prefix search and paging; timed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_thousand_authorizers_are_paged_searched_and_counted() {
    let fleet = Fleet::start(
        Settings {
            platform: true,
            ..Settings::default()
        },
        1,
    )
    .await;
    let replica = &fleet.replicas[0];
    let component = wxtoken_common::CredentialId::parse(COMPONENT).unwrap();
    const N: usize = 100_000;
    for n in 0..N {
        let added = replica
            .catalog()
            .add_authorizer(&component, &format!("wx{n:016x}"));
        assert!(added.is_ok_and(|(_, new)| new));
    }
    let r = router(replica.http_state(&fleet.config(SECRET)).unwrap(), false);
    let rows = |page: &str| page.matches("<tr data-id=").count();

    let started = Instant::now();
    let (status, page) = get(&r, "/ui", API_KEY).await;
    let first = started.elapsed();
    assert_eq!(status, StatusCode::OK);
    let total = replica.catalog().len() + N;
    assert!(
        page.contains(&format!(r#"<b id="count-matched">{total}</b>"#)),
        "counts over all"
    );
    assert!(page.contains(&format!("<b>{N}</b> authorizers")));
    assert_eq!(rows(&page), 50);
    let pages = total.div_ceil(50);
    assert!(page.contains(&format!("page 1 of {pages}")));
    assert!(
        page.len() < 256 * 1024,
        "a page of {} KiB",
        page.len() / 1024
    );

    let started = Instant::now();
    let (_, found) = get(&r, "/ui?q=open1.wx000000000000001", API_KEY).await;
    let search = started.elapsed();
    assert!(found.contains(r#"<b id="count-matched">16</b>"#));
    assert_eq!(rows(&found), 16);
    assert!(found.contains(r#"data-id="open1.wx000000000000001f""#));

    let (_, last) = get(&r, &format!("/ui?q=open1.&page={pages}"), API_KEY).await;
    assert_eq!(rows(&last), N - (N.div_ceil(50) - 1) * 50);
    assert!(
        last.contains(r#"data-id="open1.wx000000000001869f""#),
        "the last authorizer, by id"
    );
    println!("100 000 authorizers: first page {first:?}, prefix search {search:?}");
    // Generous for a debug build on a shared 2-core machine; typically far less.
    assert!(first < Duration::from_secs(5) && search < Duration::from_secs(5));
}
