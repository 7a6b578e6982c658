//! A hostile "WeChat" over real HTTP: a raw TCP server writing hand-made
//! HTTP/1.1 replies (10 MB bodies, invalid UTF-8, wrong JSON types, lying
//! Content-Length, a slowloris trickle, a reply that echoes the request).
//! `Upstream::fetch` must turn each into a retryable error within
//! `upstream_timeout`, without the secret in its text; a replica fed these
//! keeps the token it has, and keeps serving it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use wxtoken_common::ErrorClass;
use wxtoken_coordinator::http::router;
use wxtoken_coordinator::replica::ReplicaHandle;
use wxtoken_coordinator::upstream::{FetchError, Upstream};
use wxtoken_testkit::wait_until_async;

use super::{contains, library_panics, send, watch_panics};
use crate::fleet::{API_KEY, Fleet, ID, SECRET, Settings};

/// What the hostile server answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reply {
    /// 200, `Content-Length: 10485760`, a 10 MB token.
    Huge,
    /// 200, chunked, 10 MB of JSON whitespace and then a token.
    HugeChunked,
    /// 200, the token is invalid UTF-8.
    InvalidUtf8,
    /// 200, every field of the wrong JSON type.
    WrongTypes,
    /// 200, `expires_in` larger than any number type.
    HugeNumber,
    /// 200, `Content-Length: 400` and 20 bytes, then the connection closes.
    Truncated,
    /// 200, `Content-Length: 20` for a longer (valid) body.
    ShortLength,
    /// A valid reply, one byte every 100 ms, status line included.
    Slowloris,
    /// 200 `{"errcode":0}` and no token.
    NoToken,
    /// 200 with a WeChat error whose errmsg echoes the request line (secret included).
    EchoErrmsg,
    /// 500 with the request line (secret included) in an HTML body.
    Echo500,
    /// 200 with a 1 MB header (and a valid body).
    HugeHeader,
    /// Not HTTP at all.
    NotHttp,
    /// Accepts and closes at once.
    Close,
}

const ALL: [Reply; 14] = [
    Reply::Huge,
    Reply::HugeChunked,
    Reply::InvalidUtf8,
    Reply::WrongTypes,
    Reply::HugeNumber,
    Reply::Truncated,
    Reply::ShortLength,
    Reply::Slowloris,
    Reply::NoToken,
    Reply::EchoErrmsg,
    Reply::Echo500,
    Reply::HugeHeader,
    Reply::NotHttp,
    Reply::Close,
];

const VALID: &str = r#"{"access_token":"HOSTILE_VALID_TOKEN","expires_in":7200}"#;

struct Hostile {
    addr: std::net::SocketAddr,
    reply: Arc<Mutex<Reply>>,
    /// Request lines received, for checking the secret really was sent.
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Hostile {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Hostile {
    async fn spawn() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let reply = Arc::new(Mutex::new(Reply::Close));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (r, q) = (reply.clone(), requests.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let kind = *r.lock().unwrap();
                tokio::spawn(answer(sock, kind, q.clone()));
            }
        });
        Self {
            addr,
            reply,
            requests,
            task,
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn set(&self, reply: Reply) {
        *self.reply.lock().unwrap() = reply;
    }

    fn saw_secret(&self) -> bool {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .any(|l| l.contains(SECRET))
    }
}

/// A response head. `Connection: close`: the server answers one request
/// per connection, so the client must not pool it (a pooled connection the
/// server already closed would fail the next case as a transport error).
fn head(status: &str, extra: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nConnection: close\r\n{extra}\r\n"
    )
}

/// Reads the request head, then answers `kind`. Write errors (the client
/// gave up) end the connection quietly.
async fn answer(mut sock: TcpStream, kind: Reply, requests: Arc<Mutex<Vec<String>>>) {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    while !contains(&buf, "\r\n\r\n") && buf.len() < 64 << 10 {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    let line =
        String::from_utf8_lossy(buf.split(|b| *b == b'\r').next().unwrap_or_default()).into_owned();
    requests.lock().unwrap().push(line.clone());
    let _ = write_reply(&mut sock, kind, &line).await;
}

async fn write_reply(sock: &mut TcpStream, kind: Reply, line: &str) -> std::io::Result<()> {
    let simple = |body: &[u8]| {
        let mut out = head("200 OK", &format!("Content-Length: {}\r\n", body.len())).into_bytes();
        out.extend_from_slice(body);
        out
    };
    match kind {
        Reply::Huge => {
            let total = 10 << 20;
            sock.write_all(head("200 OK", &format!("Content-Length: {total}\r\n")).as_bytes())
                .await?;
            sock.write_all(br#"{"access_token":""#).await?;
            let filler = vec![b'x'; 64 << 10];
            let mut sent = 17;
            while sent + filler.len() < total - 20 {
                sock.write_all(&filler).await?;
                sent += filler.len();
            }
            let tail = format!(r#"","expires_in":7200}}{}"#, " ".repeat(total - sent - 20));
            sock.write_all(tail.as_bytes()).await?;
        }
        Reply::HugeChunked => {
            sock.write_all(head("200 OK", "Transfer-Encoding: chunked\r\n").as_bytes())
                .await?;
            let filler = vec![b' '; 64 << 10];
            for _ in 0..160 {
                sock.write_all(format!("{:x}\r\n", filler.len()).as_bytes())
                    .await?;
                sock.write_all(&filler).await?;
                sock.write_all(b"\r\n").await?;
            }
            sock.write_all(format!("{:x}\r\n{VALID}\r\n0\r\n\r\n", VALID.len()).as_bytes())
                .await?;
        }
        Reply::InvalidUtf8 => {
            sock.write_all(&simple(b"{\"access_token\":\"\xff\xfe\xc3(T\",\"expires_in\":7200}"))
                .await?
        }
        Reply::WrongTypes => {
            sock.write_all(&simple(
                br#"{"errcode":"40001","errmsg":7,"access_token":{"value":"T"},"expires_in":[7200]}"#,
            ))
            .await?
        }
        Reply::HugeNumber => {
            sock.write_all(&simple(
                br#"{"access_token":"T","expires_in":1e400,"errcode":184467440737095516160}"#,
            ))
            .await?
        }
        Reply::Truncated => {
            sock.write_all(head("200 OK", "Content-Length: 400\r\n").as_bytes())
                .await?;
            sock.write_all(br#"{"access_token":"ABC"#).await?;
            sock.shutdown().await?;
        }
        Reply::ShortLength => {
            sock.write_all(head("200 OK", "Content-Length: 20\r\n").as_bytes())
                .await?;
            sock.write_all(VALID.as_bytes()).await?;
        }
        Reply::Slowloris => {
            for b in simple(VALID.as_bytes()) {
                sock.write_all(&[b]).await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Reply::NoToken => sock.write_all(&simple(br#"{"errcode":0,"errmsg":"ok"}"#)).await?,
        Reply::EchoErrmsg => {
            let body = serde_json::json!({ "errcode": -1, "errmsg": format!("system error, request: {line}") });
            sock.write_all(&simple(body.to_string().as_bytes())).await?
        }
        Reply::Echo500 => {
            let body = format!("<html>upstream error for {line}</html>");
            let mut out = head(
                "500 Internal Server Error",
                &format!("Content-Length: {}\r\n", body.len()),
            );
            out.push_str(&body);
            sock.write_all(out.as_bytes()).await?
        }
        Reply::HugeHeader => {
            let extra = format!(
                "X-Junk: {}\r\nContent-Length: {}\r\n",
                "j".repeat(1 << 20),
                VALID.len()
            );
            sock.write_all(head("200 OK", &extra).as_bytes()).await?;
            sock.write_all(VALID.as_bytes()).await?;
        }
        Reply::NotHttp => sock.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await?,
        Reply::Close => {}
    }
    sock.flush().await
}

fn assert_no_secret(e: &FetchError, what: Reply) {
    let shown = format!("{e} {e:?}");
    assert!(
        !shown.contains(SECRET) && !shown.contains("secret="),
        "{what:?}: secret in error: {shown}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_replies_are_retryable_errors_within_the_timeout() {
    watch_panics();
    let hostile = Hostile::spawn().await;
    let timeout = Duration::from_millis(400);
    let up = Upstream::new(timeout, 4).unwrap();
    let app = crate::upstream::app_at(&hostile.url(), "token", SECRET);
    for kind in ALL {
        hostile.set(kind);
        let started = Instant::now();
        let e = crate::upstream::fetch(&up, &app, false)
            .await
            .err()
            .unwrap_or_else(|| panic!("{kind:?} gave a grant"));
        let took = started.elapsed();
        eprintln!("{kind:?}: {} ({e}) in {took:?}", e.code());
        assert_eq!(e.class(), ErrorClass::Retryable, "{kind:?}: {e}");
        assert!(
            took < timeout + Duration::from_millis(500),
            "{kind:?} took {took:?}"
        );
        assert_no_secret(&e, kind);
        match kind {
            Reply::Huge | Reply::HugeChunked => assert_eq!(e.code(), "bad_reply", "{kind:?}"),
            Reply::Slowloris => assert_eq!(e.code(), "timeout"),
            Reply::EchoErrmsg => assert_eq!(e.code(), "-1"),
            Reply::Echo500 => assert_eq!(e.code(), "http_500"),
            _ => {}
        }
    }
    assert!(hostile.saw_secret(), "the requests carried the secret");
    assert_eq!(library_panics(), Vec::<String>::new());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_upstream_never_replaces_the_stored_token() {
    watch_panics();
    let mut fleet = Fleet::start(
        Settings {
            token_ttl: Duration::from_secs(60),
            ..Settings::default()
        },
        1,
    )
    .await;
    let stored = fleet.wait_generation(1, Duration::from_secs(5)).await;
    fleet.stop_all().await;
    let sim_fetches = fleet.app().fetch_calls;

    let hostile = Hostile::spawn().await;
    let mut config = fleet.config(SECRET);
    config.upstream.base_url = hostile.url();
    let replica = ReplicaHandle::start(&config, "hostile".into())
        .await
        .unwrap();
    assert!(replica.wait_events_up(Duration::from_secs(5)).await);
    let id = fleet.id();
    let r = router(replica.http_state(&config).unwrap(), false);

    for kind in ALL {
        hostile.set(kind);
        let before = fleet
            .store
            .status(&id, wxtoken_common::Window::Day)
            .await
            .unwrap()
            .failures;
        fleet.store.force_request(&id, "bad_input").await.unwrap();
        let recorded = wait_until_async(Duration::from_secs(5), Duration::from_millis(20), || {
            let store = &fleet.store;
            let id = &id;
            async move {
                store
                    .status(id, wxtoken_common::Window::Day)
                    .await
                    .is_ok_and(|s| s.failures > before && s.last_error.is_some())
            }
        })
        .await;
        assert!(recorded, "{kind:?}: no failure recorded");
        let status = fleet
            .store
            .status(&id, wxtoken_common::Window::Day)
            .await
            .unwrap();
        let last = status.last_error.expect("last error");
        eprintln!("{kind:?}: recorded {} {}", last.code, last.message);
        assert_eq!(last.class, Some(ErrorClass::Retryable), "{kind:?}");
        assert!(!last.message.contains(SECRET), "{kind:?}: {}", last.message);
        assert_eq!(status.generation, Some(stored.generation), "{kind:?}");
        // The old token is still stored, unchanged, and still served.
        let now = fleet.token().await.expect("token kept");
        assert_eq!(
            (now.value.as_str(), now.generation),
            (stored.value.as_str(), stored.generation),
            "{kind:?}"
        );
        let served = replica.client().access_token(ID).await.unwrap();
        assert_eq!(served.value(), stored.value, "{kind:?}");
    }
    let req = Request::get(format!("/v1/apps/{ID}/access_token"))
        .header("authorization", format!("Bearer {API_KEY}"))
        .body(Body::empty())
        .unwrap();
    let (status, body) = send(&r, req).await;
    assert_eq!(status, StatusCode::OK);
    assert!(contains(&body, &stored.value), "HTTP serves the old token");
    assert!(hostile.requests.lock().unwrap().len() >= ALL.len());
    assert_eq!(
        fleet.app().fetch_calls,
        sim_fetches,
        "nobody called the sim"
    );
    replica.shutdown(Duration::from_secs(2)).await;
    assert_eq!(library_panics(), Vec::<String>::new());
}
