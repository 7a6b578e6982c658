//! What a new user trips over (issue 16, items 5 and 6): the demo without a
//! Redis, error chains, read-only commands without secrets, colour codes in
//! piped logs, junk in one credential's keys, a `last_error` that outlives
//! the failure.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use wxtoken_common::{CredentialId, Keys};
use wxtoken_e2e::{API_KEY, Fleet, SECRET, Timing, wxtoken_bin};

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

fn listening(port: u16) -> bool {
    std::net::TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_millis(200),
    )
    .is_ok()
}

/// The next stdout line matching `want`, within `deadline`.
fn line_with(
    rx: &mpsc::Receiver<String>,
    seen: &mut String,
    want: &str,
    deadline: Duration,
) -> String {
    let until = Instant::now() + deadline;
    while let Some(left) = until.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) => {
                seen.push_str(&line);
                seen.push('\n');
                if line.contains(want) {
                    return line;
                }
            }
            Err(_) => break,
        }
    }
    panic!("no line with {want:?} within {deadline:?}; output so far:\n{seen}");
}

/// README's run command, unchanged, where nothing answers at the default
/// Redis URL: the demo starts its own redis-server, serves a token, and on
/// Ctrl-C stops it.
#[test]
fn the_demo_starts_a_private_redis_when_none_answers_at_the_default_url() {
    let default = format!("redis://127.0.0.1:{}", closed_port());
    let mut demo = Command::new(wxtoken_bin())
        .arg("demo")
        .env("WXTOKEN_DEMO_DEFAULT_REDIS", &default)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("demo starts");
    let stdout = demo.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = String::new();
    let said = line_with(
        &rx,
        &mut seen,
        "private redis-server",
        Duration::from_secs(20),
    );
    assert!(said.contains(&format!("no Redis at {default}")), "{said}");
    let url = said
        .split_whitespace()
        .find(|w| w.starts_with("redis://") && !w.contains(&default))
        .expect("the private server's URL")
        .to_owned();
    let port: u16 = url.rsplit(':').next().unwrap().parse().unwrap();
    let head = line_with(&rx, &mut seen, "(prefix ", Duration::from_secs(10));
    let prefix = head
        .split("(prefix ")
        .nth(1)
        .and_then(|p| p.strip_suffix(')'))
        .expect("prefix")
        .to_owned();
    line_with(
        &rx,
        &mut seen,
        "refreshed by replica-",
        Duration::from_secs(20),
    );

    // The token is in the private Redis, where any service would read it.
    let client = redis::Client::open(url.as_str()).unwrap();
    let mut c = client.get_connection().unwrap();
    let key = Keys::new(&prefix)
        .unwrap()
        .access_token(&CredentialId::parse("demo").unwrap());
    let token: Option<String> = redis::cmd("GET").arg(&key).query(&mut c).unwrap();
    assert!(token.is_some_and(|t| !t.is_empty()), "no token at {key}");
    drop(c);

    // Ctrl-C: a clean summary, exit 0, the private server gone.
    kill(Pid::from_raw(demo.id() as i32), Signal::SIGINT).unwrap();
    let summary = line_with(&rx, &mut seen, "summary:", Duration::from_secs(15));
    assert!(summary.contains("/ 0 rejected"), "{summary}");
    let exited =
        wxtoken_testkit::wait_until(Duration::from_secs(10), Duration::from_millis(50), || {
            matches!(demo.try_wait(), Ok(Some(_)))
        });
    if !exited {
        let _ = demo.kill();
    }
    assert!(exited, "the demo did not exit on SIGINT:\n{seen}");
    assert_eq!(demo.wait().unwrap().code(), Some(0), "{seen}");
    let gone =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(50), || {
            !listening(port)
        });
    assert!(gone, "the private redis-server on {port} outlived the demo");
    let dir = std::env::temp_dir().join(format!("wxtoken-demo-redis-{}-{port}", demo.id()));
    assert!(!dir.exists(), "{} left behind", dir.display());
}

/// Without a Redis and without redis-server, the error says how to install
/// one, once, with no backtrace.
#[test]
fn the_demo_without_redis_server_names_the_install_command() {
    let empty = tempfile::tempdir().unwrap();
    let out = Command::new(wxtoken_bin())
        .arg("demo")
        .env(
            "WXTOKEN_DEMO_DEFAULT_REDIS",
            format!("redis://127.0.0.1:{}", closed_port()),
        )
        .env("PATH", empty.path())
        .env_remove("RUST_BACKTRACE")
        .env_remove("RUST_LIB_BACKTRACE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("apt-get install redis-server"), "{stderr}");
    assert!(stderr.contains("brew install redis"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}

/// "Connection refused" once, not once per layer of context; a backtrace
/// only with RUST_BACKTRACE. Also: `status` runs without the app secrets.
#[test]
fn cli_errors_print_each_cause_once_and_a_backtrace_only_when_asked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("c.toml");
    let text = format!(
        "[redis]\nurl = \"redis://127.0.0.1:{}/0\"\nconnect_timeout = \"500ms\"\n[[apps]]\nid = \"shop\"\nappid = \"wx1\"\nsecret = {{ env = \"E2E_NEVER_SET_SECRET\" }}\n",
        closed_port()
    );
    std::fs::write(&path, text).unwrap();
    let run = |backtrace: Option<&str>| {
        let mut cmd = Command::new(wxtoken_bin());
        cmd.args(["status", "--config"])
            .arg(&path)
            .env_remove("E2E_NEVER_SET_SECRET")
            .env_remove("RUST_BACKTRACE")
            .env_remove("RUST_LIB_BACKTRACE");
        if let Some(v) = backtrace {
            cmd.env("RUST_BACKTRACE", v);
        }
        cmd.output().unwrap()
    };
    let out = run(None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.starts_with("wxtoken: cannot reach redis"),
        "{stderr}"
    );
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    let out = run(Some("1"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("Connection refused").count(), 1, "{stderr}");
    assert!(stderr.trim().lines().count() > 3, "no backtrace: {stderr}");
}

/// `status` and `get` only read Redis: they run without the secrets in the
/// environment; a malformed file still exits 2 naming the key; `serve`
/// still needs every secret. A replica's log written to a file (not a
/// terminal) has no colour codes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_commands_need_no_secrets_and_piped_logs_no_colour() {
    let _heavy = crate::HEAVY.lock().await;
    // Long-lived tokens: the one read below is still the stored one.
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(30),
        ..Timing::default()
    })
    .await;
    fleet.spawn_replica_with(SECRET);
    let token = fleet.wait_generation(1, Duration::from_secs(15)).await;
    let bare = |args: &[&str], config: &std::path::Path| {
        let mut cmd = Command::new(wxtoken_bin());
        cmd.args(args).arg("--config").arg(config);
        for (k, _) in fleet.secret_env(SECRET) {
            cmd.env_remove(k);
        }
        cmd.output().unwrap()
    };
    let config = fleet.config_path();
    let out = bare(&["get", "shop"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), token.value);
    let out = bare(&["status", "--json"], &config);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status[0]["generation"], token.generation);
    let table = bare(&["status"], &config);
    let table = String::from_utf8_lossy(&table.stdout).to_string();
    // The 16-digit generation is shown by its tail in the table.
    let tail = format!("…{:06}", token.generation % 1_000_000);
    assert!(table.contains(&tail), "{table}");
    assert!(!table.contains(&token.generation.to_string()), "{table}");

    let out = bare(&["serve"], &config);
    assert_eq!(out.status.code(), Some(2), "serve without its secrets");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`apps[0].secret`"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(
        &bad,
        "[refresh]\nlock_tt = \"3s\"\n[[apps]]\nid = \"shop\"\nappid = \"wx1\"\nsecret = { env = \"E2E_SECRET\" }\n",
    )
    .unwrap();
    for command in ["status", "get"] {
        let args: &[&str] = if command == "get" {
            &["get", "shop"]
        } else {
            &["status"]
        };
        let out = bare(args, &bad);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{command}: {stderr}");
        assert!(stderr.contains("`refresh.lock_tt`"), "{command}: {stderr}");
    }

    let logs = fleet.all_logs();
    assert!(logs.contains("replica started"), "{logs}");
    assert!(!logs.contains('\u{1b}'), "ANSI escape codes in a piped log");
    fleet.assert_logs_clean();
}

/// Junk in one credential's keys: the list answers 200 with that entry
/// marked and the others intact, over HTTP and in `wxtoken status`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_lists_mark_a_credential_whose_keys_hold_junk() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new(Timing {
        token_ttl: Duration::from_secs(30),
        wecom: Some(&[]),
        ..Timing::default()
    })
    .await;
    let http = fleet.spawn_replica_with(SECRET).http;
    let token = fleet.wait_generation(1, Duration::from_secs(15)).await;
    let keys = Keys::new(&fleet.prefix).unwrap();
    let mut c = fleet.conn().await;
    // A hash where a string lock belongs: every read of the key fails.
    let _: () = redis::cmd("HSET")
        .arg(keys.lock(&CredentialId::parse("hr").unwrap()))
        .arg("junk")
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    let api = reqwest::Client::new();
    // A stored token does not mean the HTTP listener is up yet.
    let up = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || {
            let api = api.clone();
            async move {
                api.get(format!("http://{http}/healthz"))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success())
            }
        },
    )
    .await;
    assert!(up, "the replica's HTTP API did not come up");
    let logs = &fleet;
    let list = |path: &'static str| {
        let api = api.clone();
        async move {
            let resp = api
                .get(format!("http://{http}{path}"))
                .bearer_auth(API_KEY)
                .send()
                .await
                .unwrap_or_else(|e| panic!("{path}: {e}\n{}", logs.all_logs()));
            (
                resp.status(),
                resp.json::<Vec<serde_json::Value>>().await.unwrap(),
            )
        }
    };
    let (status, entries) = list("/v1/credentials").await;
    assert_eq!(status, 200);
    let by_id = |id: &str| entries.iter().find(|e| e["id"] == id).cloned().unwrap();
    let hr = by_id("hr");
    assert_eq!(hr["state"], "unreadable", "{hr}");
    assert_eq!(hr["error"]["code"], "unreadable_keys", "{hr}");
    let shop = by_id("shop");
    assert_eq!(shop["generation"], token.generation, "{shop}");
    assert!(shop.get("error").is_none() && shop.get("state").is_none());
    assert!(by_id("ops").get("error").is_none());

    // The same junk in the app's own keys: /v1/apps still answers.
    let _: () = redis::cmd("HSET")
        .arg(keys.lock(&fleet.id()))
        .arg("junk")
        .arg("1")
        .query_async(&mut c)
        .await
        .unwrap();
    let (status, entries) = list("/v1/apps").await;
    assert_eq!(status, 200);
    assert_eq!(entries[0]["state"], "unreadable");
    let out = fleet.cli(&["status"]);
    let table = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("unreadable keys"), "{table}");
}

/// A success after a failure clears `last_error`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_successful_refresh_clears_the_last_error() {
    let _heavy = crate::HEAVY.lock().await;
    let mut fleet = Fleet::new(Timing::default()).await;
    fleet.spawn_replica_with("a-wrong-secret-Qw27");
    fleet
        .wait_sim(Duration::from_secs(10), "the 40125", |a| {
            a.fetch_failed.contains_key("40125")
        })
        .await;
    let last_error = |fleet: &Fleet| {
        let out = fleet.cli(&["status", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v[0]["last_error"].clone()
    };
    let recorded =
        wxtoken_testkit::wait_until(Duration::from_secs(5), Duration::from_millis(100), || {
            last_error(&fleet)["code"] == "40125"
        });
    assert!(
        recorded,
        "the 40125 was not recorded: {}",
        last_error(&fleet)
    );
    drop(fleet.replicas.remove(0));
    fleet.spawn_replica_with(SECRET);
    fleet.wait_generation(1, Duration::from_secs(15)).await;
    assert!(last_error(&fleet).is_null(), "{}", last_error(&fleet));
}
