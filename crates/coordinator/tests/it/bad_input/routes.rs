//! Random requests against the router (one fleet, a few hundred cases):
//! random methods, paths (segments, percent-encodings, very long ids, `..`,
//! unicode), query strings, headers (random and huge `Authorization`) and
//! bodies (random bytes, huge and deeply nested JSON). Every answer is a 2xx,
//! an entry of the error table with its JSON body, or (under `/cgi-bin/`) a
//! WeChat-shaped reply; no body carries the app secret, the API key or a
//! token unless the request was entitled to it.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Method, Request, StatusCode, Uri};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use serde_json::Value;
use wxtoken_coordinator::http::error::ApiFailure;
use wxtoken_coordinator::http::router;

use super::{contains, library_panics, send, watch_panics};
use crate::fleet::{API_KEY, APPID, Fleet, ID, SECRET, Settings};

static SKIPPED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
const CASES: u32 = 600;

/// Stands for the stored token in generated bodies, replaced when sent.
const TOKEN_MARK: &str = "{TOKEN}";

#[derive(Debug, Clone)]
struct Req {
    method: String,
    path: String,
    query: Option<String>,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

fn pct(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                char::from(*b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => Just(ID.to_owned()),
        1 => prop::sample::select(vec!["..", ".", "", "%2e%2e", "sh%7Bop", "%00", "%FF%FE", "a%2Fb", API_KEY, SECRET, TOKEN_MARK])
            .prop_map(str::to_owned),
        2 => "[A-Za-z0-9_.-]{1,64}",
        1 => "[A-Za-z0-9_.-]{65,300}",
        1 => (1_usize..6000).prop_map(|n| "a".repeat(n)),
        1 => "\\PC{1,8}".prop_map(|s| pct(s.as_bytes())),
        1 => prop::collection::vec(any::<u8>(), 1..8).prop_map(|b| pct(&b)),
    ]
}

fn path() -> impl Strategy<Value = String> {
    let known = prop::sample::select(vec![
        "/v1/apps",
        "/cgi-bin/token",
        "/cgi-bin/stable_token",
        "/healthz",
        "/readyz",
        "/metrics",
        "/cgi-bin/getcallbackip",
    ]);
    prop_oneof![
        4 => segment().prop_map(|id| format!("/v1/apps/{id}/access_token")),
        2 => segment().prop_map(|id| format!("/v1/apps/{id}/access_token/invalidate")),
        4 => known.clone().prop_map(str::to_owned),
        1 => (known, prop::sample::select(vec!["/", "//", "/..", "/x", "%20"]))
            .prop_map(|(p, s)| format!("{p}{s}")),
        2 => prop::collection::vec(segment(), 0..6).prop_map(|s| format!("/{}", s.join("/"))),
    ]
}

fn query() -> impl Strategy<Value = Option<String>> {
    let key = prop::sample::select(vec![
        "grant_type",
        "appid",
        "secret",
        "wait",
        "force_refresh",
        "x",
        "",
    ]);
    let value = prop_oneof![
        prop::sample::select(vec![
            "client_credential",
            APPID,
            SECRET,
            "true",
            "1",
            "yes",
            "",
            "%FF",
            "%%"
        ])
        .prop_map(str::to_owned),
        "[a-z0-9]{0,12}",
        prop::collection::vec(any::<u8>(), 0..12).prop_map(|b| pct(&b)),
    ];
    prop_oneof![
        2 => Just(None),
        2 => Just(Some(format!("grant_type=client_credential&appid={APPID}&secret={SECRET}"))),
        3 => prop::collection::vec((key, value), 0..5).prop_map(|kv| {
            Some(kv.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&"))
        }),
        1 => "[a-z=&%]{0,40}".prop_map(Some),
    ]
}

fn authorization() -> impl Strategy<Value = Option<Vec<u8>>> {
    prop_oneof![
        2 => Just(None),
        3 => Just(Some(format!("Bearer {API_KEY}").into_bytes())),
        1 => Just(Some(format!("bearer   {API_KEY}  ").into_bytes())),
        1 => "[ -~]{0,40}".prop_map(|k| Some(format!("Bearer {k}").into_bytes())),
        1 => "[ -~]{0,40}".prop_map(|v| Some(v.into_bytes())),
        1 => prop::collection::vec(0x20_u8..=0xff, 0..40).prop_map(Some),
        1 => (1_usize..200_000).prop_map(|n| Some(format!("Bearer {}", "k".repeat(n)).into_bytes())),
    ]
}

fn headers() -> impl Strategy<Value = Vec<(String, Vec<u8>)>> {
    let content_type = prop::sample::select(vec![
        "application/json",
        "text/plain",
        "application/x-www-form-urlencoded",
        "junk/../",
    ]);
    (
        authorization(),
        prop::option::of(content_type),
        prop::collection::vec(
            (
                "[a-z][a-z0-9-]{0,20}",
                prop::collection::vec(0x20_u8..=0x7e, 0..64),
            ),
            0..4,
        ),
        prop::option::weighted(0.1, (1_usize..300_000).prop_map(|n| vec![b'h'; n])),
    )
        .prop_map(|(auth, ct, mut extra, huge)| {
            if let Some(a) = auth {
                extra.push(("authorization".into(), a));
            }
            if let Some(ct) = ct {
                extra.push(("content-type".into(), ct.as_bytes().to_vec()));
            }
            if let Some(h) = huge {
                extra.push(("x-huge".into(), h));
            }
            extra
        })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let stable = (
        prop::sample::select(vec![APPID, "wx0", ""]),
        prop::sample::select(vec![SECRET, "wrong", ""]),
        any::<bool>(),
        prop::sample::select(vec!["client_credential", "x"]),
    )
        .prop_map(|(appid, secret, force, grant)| {
            serde_json::json!({ "grant_type": grant, "appid": appid, "secret": secret, "force_refresh": force })
                .to_string()
                .into_bytes()
        });
    prop_oneof![
        3 => Just(Vec::new()),
        2 => prop::collection::vec(any::<u8>(), 0..2048),
        2 => prop::sample::select(vec![TOKEN_MARK, "x", "", "T T", "\u{0}"])
            .prop_map(|t| serde_json::json!({ "access_token": t }).to_string().into_bytes()),
        1 => Just(br#"{"access_token":42}"#.to_vec()),
        1 => Just(format!(r#"{{"access_token":"{}"}}"#, "t".repeat(3000)).into_bytes()),
        2 => stable,
        1 => (1_usize..300_000).prop_map(|n| format!("[{}1]", "1,".repeat(n / 2)).into_bytes()),
        1 => (1_usize..20_000).prop_map(|n| format!("{}{}", "[".repeat(n), "]".repeat(n)).into_bytes()),
        1 => (1_usize..5_000).prop_map(|n| format!("{}1{}", r#"{"a":"#.repeat(n), "}".repeat(n)).into_bytes()),
    ]
}

/// Requests a real caller sends (so the token paths, invalidation and force
/// refresh run too), with random extra headers.
fn well_formed() -> impl Strategy<Value = Req> {
    let bearer = (
        "authorization".to_owned(),
        format!("Bearer {API_KEY}").into_bytes(),
    );
    let token_body = prop::sample::select(vec![TOKEN_MARK, "x"]).prop_map(|t| {
        serde_json::json!({ "access_token": t })
            .to_string()
            .into_bytes()
    });
    let stable = any::<bool>().prop_map(|force| {
        serde_json::json!({ "grant_type": "client_credential", "appid": APPID, "secret": SECRET, "force_refresh": force })
            .to_string()
            .into_bytes()
    });
    let cases = prop_oneof![
        Just((
            "GET",
            format!("/v1/apps/{ID}/access_token"),
            None,
            true,
            Vec::new()
        ))
        .boxed(),
        (any::<bool>(), token_body)
            .prop_map(|(wait, body)| {
                (
                    "POST",
                    format!("/v1/apps/{ID}/access_token/invalidate"),
                    Some(format!("wait={wait}")),
                    true,
                    body,
                )
            })
            .boxed(),
        Just((
            "GET",
            "/cgi-bin/token".to_owned(),
            Some(format!(
                "grant_type=client_credential&appid={APPID}&secret={SECRET}"
            )),
            false,
            Vec::new()
        ))
        .boxed(),
        stable
            .prop_map(|body| (
                "POST",
                "/cgi-bin/stable_token".to_owned(),
                None,
                false,
                body
            ))
            .boxed(),
    ];
    (cases, headers()).prop_map(move |((method, path, query, auth, body), mut headers)| {
        headers.retain(|(n, _)| n != "authorization");
        if auth {
            headers.push(bearer.clone());
        }
        Req {
            method: method.to_owned(),
            path,
            query,
            headers,
            body,
        }
    })
}

fn request() -> impl Strategy<Value = Req> {
    prop_oneof![4 => random_request(), 1 => well_formed()]
}

fn random_request() -> impl Strategy<Value = Req> {
    let other = prop::sample::select(vec![
        "GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "BREW",
    ]);
    (
        path(),
        any::<prop::sample::Index>(),
        other,
        query(),
        headers(),
        body(),
    )
        .prop_map(|(path, pick, other, query, headers, body)| {
            // Mostly the method the route expects, so handlers run, else any.
            let fitting = if path.ends_with("/invalidate") || path == "/cgi-bin/stable_token" {
                "POST"
            } else {
                "GET"
            };
            let method = if pick.index(4) < 3 { fitting } else { other };
            Req {
                method: method.to_owned(),
                path,
                query,
                headers,
                body,
            }
        })
}

/// Every (status, code) of the error table.
fn table() -> Vec<(u16, &'static str)> {
    let all = [
        ApiFailure::Unauthorized,
        ApiFailure::Forbidden,
        ApiFailure::ApiClosed,
        ApiFailure::InvalidId(String::new()),
        ApiFailure::AppNotFound(String::new()),
        ApiFailure::InvalidJson(String::new()),
        ApiFailure::InvalidRequest(String::new()),
        ApiFailure::PayloadTooLarge,
        ApiFailure::NotFound,
        ApiFailure::MethodNotAllowed,
        ApiFailure::TokenUnavailable(String::new()),
        ApiFailure::RedisUnavailable(String::new()),
        ApiFailure::Timeout,
        ApiFailure::Internal(String::new()),
    ];
    all.iter()
        .map(|f| {
            let (s, c, _) = f.parts();
            (s.as_u16(), c)
        })
        .collect()
}

fn is_table_error(status: StatusCode, v: &Value, table: &[(u16, &str)]) -> bool {
    let code = v["error"]["code"].as_str().unwrap_or("");
    v["error"]["message"].is_string() && table.contains(&(status.as_u16(), code))
}

async fn check(
    r: &Router,
    fleet: &Fleet,
    req: Req,
    table: &[(u16, &str)],
) -> Result<(), TestCaseError> {
    let stored = fleet.token().await.map(|t| t.value).unwrap_or_default();
    let fill = |s: &str| s.replace(TOKEN_MARK, &stored);
    let target = match &req.query {
        Some(q) => format!("{}?{}", fill(&req.path), fill(q)),
        None => fill(&req.path),
    };
    let (Ok(uri), Ok(method)) = (
        target.parse::<Uri>(),
        Method::from_bytes(req.method.as_bytes()),
    ) else {
        SKIPPED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        return Ok(()); // not expressible as a request line: nothing to send
    };
    let body = fill(&String::from_utf8_lossy(&req.body)).into_bytes();
    let body = if contains(&req.body, TOKEN_MARK) {
        body
    } else {
        req.body.clone()
    };
    let mut builder = Request::builder().method(method.clone()).uri(uri);
    let mut bearer = None;
    for (name, value) in &req.headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            if name == "authorization" {
                bearer = v.to_str().ok().map(str::to_owned);
            }
            builder = builder.header(name.as_str(), v);
        }
    }
    let request = builder.body(Body::from(body.clone())).expect("request");
    let (status, out) = send(r, request).await;
    let shown = || {
        format!(
            "{} {} → {status} {}",
            req.method,
            target.chars().take(200).collect::<String>(),
            String::from_utf8_lossy(&out[..out.len().min(300)])
        )
    };
    let path = req.path.as_str();
    let json: Option<Value> = serde_json::from_slice(&out).ok();
    if method == Method::HEAD || path == "/metrics" && status.is_success() {
        // no JSON body to judge
    } else if path.starts_with("/cgi-bin/")
        && (path == "/cgi-bin/token" || path == "/cgi-bin/stable_token")
        && status == StatusCode::OK
    {
        let v = json.clone().unwrap_or_default();
        let wechat = (v["errcode"].is_i64() && v["errmsg"].is_string())
            || (v["access_token"].is_string() && v["expires_in"].is_i64());
        prop_assert!(wechat, "not WeChat-shaped: {}", shown());
    } else if status.is_success() {
        prop_assert!(json.is_some(), "2xx without JSON: {}", shown());
    } else {
        let v = json.clone().unwrap_or_default();
        prop_assert!(
            is_table_error(status, &v, table),
            "not from the error table: {}",
            shown()
        );
        if path.starts_with("/cgi-bin/") {
            prop_assert!(
                matches!(status.as_u16(), 404 | 405),
                "cgi-bin answered {}",
                shown()
            );
        }
    }
    // Hygiene: the secret and the API key only ever come back as an echo of
    // the request; a token only to a request entitled to one.
    let request_text = format!(
        "{target} {:?} {}",
        req.headers,
        String::from_utf8_lossy(&body)
    );
    for secret in [SECRET, API_KEY] {
        prop_assert!(
            !contains(&out, secret) || request_text.contains(secret),
            "{secret} leaked: {}",
            shown()
        );
    }
    let key_ok = bearer
        .as_deref()
        .and_then(|b| {
            b.strip_prefix("Bearer ")
                .or_else(|| b.strip_prefix("bearer "))
        })
        .map(str::trim)
        == Some(API_KEY);
    let entitled = (path.starts_with("/v1/apps/") && key_ok)
        || (path.starts_with("/cgi-bin/")
            && request_text.contains(SECRET)
            && request_text.contains(APPID));
    if !entitled {
        let issued: Vec<String> = fleet
            .app()
            .issued
            .into_iter()
            .map(|t| t.token)
            .chain([stored])
            .collect();
        for token in issued.iter().filter(|t| !t.is_empty()) {
            prop_assert!(
                !contains(&out, token) || request_text.contains(token.as_str()),
                "token leaked: {}",
                shown()
            );
        }
    }
    Ok(())
}

#[test]
fn random_requests_get_table_answers_and_leak_nothing() {
    watch_panics();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let settings = Settings {
        token_ttl: Duration::from_secs(60),
        ..Settings::default()
    };
    let (fleet, r) = rt.block_on(async {
        let fleet = Fleet::start(settings, 1).await;
        fleet.wait_generation(1, Duration::from_secs(5)).await;
        let state = fleet.replicas[0].http_state(&fleet.config(SECRET)).unwrap();
        (fleet, router(state, true))
    });
    let table = table();
    let mut runner = TestRunner::new(Config {
        cases: CASES,
        failure_persistence: None,
        ..Config::default()
    });
    let started = Instant::now();
    let result = runner.run(&request(), |req| {
        rt.block_on(check(&r, &fleet, req, &table))
    });
    eprintln!(
        "{} cases ({} skipped) in {:?}; sim fetches {}",
        CASES,
        SKIPPED.load(std::sync::atomic::Ordering::Relaxed),
        started.elapsed(),
        fleet.app().fetch_calls
    );
    rt.block_on(async move { drop(fleet) });
    if let Err(e) = result {
        panic!("{e}");
    }
    assert_eq!(library_panics(), Vec::<String>::new());
}
