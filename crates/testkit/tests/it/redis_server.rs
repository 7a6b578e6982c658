//! Tests of `RedisServer`: a real process that starts, answers, stops,
//! restarts empty, freezes, and dies with its handle.

use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::kill;
use nix::unistd::Pid;
use redis::{AsyncConnectionConfig, Commands, RedisResult};
use wxtoken_testkit::{BINARY_ENV, RedisServer, init_tracing, random_prefix, wait_until};

const SHORT: Duration = Duration::from_millis(300);

fn ping(server: &RedisServer) -> RedisResult<String> {
    let mut con = server.client().get_connection_with_timeout(SHORT)?;
    con.set_read_timeout(Some(SHORT))?;
    redis::cmd("PING").query(&mut con)
}

fn config_get(server: &RedisServer, name: &str) -> String {
    let mut con = server.client().get_connection().unwrap();
    let pair: (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg(name)
        .query(&mut con)
        .unwrap();
    pair.1
}

#[test]
fn spawn_answers_ping_on_its_own_port_without_persistence() {
    init_tracing();
    let a = RedisServer::spawn();
    let b = RedisServer::spawn();

    assert_eq!(ping(&a).unwrap(), "PONG");
    assert_eq!(ping(&b).unwrap(), "PONG");
    assert_ne!(a.port(), b.port());
    assert_ne!(a.pid(), b.pid());
    assert_eq!(a.url(), format!("redis://127.0.0.1:{}", a.port()));
    assert_eq!(a.addr().port(), a.port());
    assert!(a.is_running());

    assert_eq!(config_get(&a, "save"), "");
    assert_eq!(config_get(&a, "appendonly"), "no");
    assert_eq!(
        std::path::Path::new(&config_get(&a, "dir"))
            .canonicalize()
            .unwrap(),
        a.dir().canonicalize().unwrap()
    );
}

#[test]
fn drop_kills_the_process_and_frees_the_port() {
    let server = RedisServer::spawn();
    let addr = server.addr();
    let pid = server.pid().expect("running");
    assert!(TcpStream::connect_timeout(&addr, SHORT).is_ok());

    drop(server);

    assert!(
        TcpStream::connect_timeout(&addr, SHORT).is_err(),
        "the port still answers after drop"
    );
    let raw = Pid::from_raw(i32::try_from(pid).unwrap());
    assert_eq!(
        kill(raw, None),
        Err(Errno::ESRCH),
        "pid {pid} still exists (zombie?)"
    );
}

#[test]
fn restart_empties_the_data_and_keeps_the_port() {
    let server = RedisServer::spawn();
    let key = format!("{}:k", random_prefix());
    let client = server.client();
    let mut con = client.get_connection().unwrap();
    let _: () = con.set(&key, "v").unwrap();
    let url = server.url();
    let old_pid = server.pid();

    server.restart().unwrap();

    assert_eq!(server.url(), url);
    assert_ne!(server.pid(), old_pid);
    let mut con = client.get_connection().unwrap();
    let value: Option<String> = con.get(&key).unwrap();
    assert_eq!(value, None, "restart kept the data");
}

#[test]
fn stop_refuses_connections_and_start_brings_the_same_port_back() {
    let server = RedisServer::spawn();
    let client = server.client();

    server.stop();
    assert!(!server.is_running());
    assert_eq!(server.pid(), None);
    let Err(err) = client.get_connection_with_timeout(SHORT) else {
        panic!("connected to a stopped server");
    };
    assert!(err.is_connection_refusal(), "expected refusal, got {err:?}");
    server.stop(); // stopping twice is fine

    server.start().unwrap();
    assert!(server.is_running());
    assert_eq!(ping(&server).unwrap(), "PONG");

    let err = server.start().unwrap_err();
    assert!(format!("{err:#}").contains("already running"), "{err:#}");
    assert_eq!(
        ping(&server).unwrap(),
        "PONG",
        "a refused start broke the server"
    );
}

#[test]
fn pause_times_out_commands_then_thaws_by_itself() {
    let server = RedisServer::spawn();
    let mut con = server.client().get_connection().unwrap();
    con.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();

    let start = Instant::now();
    server.pause(Duration::from_millis(800));
    assert!(
        start.elapsed() < Duration::from_millis(200),
        "pause blocked"
    );

    let err = redis::cmd("PING").query::<String>(&mut con).unwrap_err();
    assert!(
        err.is_timeout(),
        "expected a timeout while paused, got {err:?}"
    );

    let back = wait_until(Duration::from_secs(5), Duration::from_millis(20), || {
        ping(&server).is_ok()
    });
    assert!(back, "the server never answered again after the pause");
    assert!(
        start.elapsed() >= Duration::from_millis(700),
        "answered after {:?}, before the pause ended",
        start.elapsed()
    );
}

#[tokio::test]
async fn freeze_times_out_async_commands_until_thaw() {
    let server = RedisServer::spawn();
    let config = AsyncConnectionConfig::new()
        .set_connection_timeout(Some(SHORT))
        .set_response_timeout(Some(SHORT));
    let mut con = server
        .client()
        .get_multiplexed_async_connection_with_config(&config)
        .await
        .unwrap();

    server.freeze();
    let err = redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .unwrap_err();
    assert!(
        err.is_timeout(),
        "expected a timeout while frozen, got {err:?}"
    );
    let err = redis::cmd("PING")
        .query_async::<String>(&mut con)
        .await
        .unwrap_err();
    assert!(err.is_timeout(), "froze only for one command: {err:?}");

    server.thaw();
    let pong: String = redis::cmd("PING").query_async(&mut con).await.unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
fn stop_kills_a_frozen_server_and_cancels_a_pending_thaw() {
    let server = RedisServer::spawn();
    server.pause(Duration::from_secs(60));
    let start = Instant::now();
    server.restart().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(
        ping(&server).unwrap(),
        "PONG",
        "the restarted server is frozen"
    );

    server.freeze();
    server.stop();
    assert!(!server.is_running());
}

#[test]
fn builder_args_reach_the_server() {
    let plain = RedisServer::spawn();
    let mut con = plain.client().get_connection().unwrap();
    let refused = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(0)
        .query::<()>(&mut con);
    assert!(refused.is_err(), "DEBUG is enabled without the flag");

    let debug = RedisServer::builder()
        .arg("--enable-debug-command")
        .arg("local")
        .args(["--maxmemory-policy", "noeviction"])
        .spawn();
    let mut con = debug.client().get_connection().unwrap();
    let () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(0)
        .query(&mut con)
        .unwrap();
    assert_eq!(config_get(&debug, "maxmemory-policy"), "noeviction");

    debug.restart().unwrap();
    let mut con = debug.client().get_connection().unwrap();
    let () = redis::cmd("DEBUG")
        .arg("SLEEP")
        .arg(0)
        .query(&mut con)
        .unwrap();
}

#[test]
fn a_server_that_requires_auth_is_ready_too() {
    let server = RedisServer::builder()
        .args(["--requirepass", "s3cret"])
        .spawn();
    let err = ping(&server).unwrap_err();
    assert!(!err.is_io_error(), "expected an auth error, got {err:?}");

    let client =
        redis::Client::open(format!("redis://:s3cret@127.0.0.1:{}", server.port())).unwrap();
    let mut con = client.get_connection().unwrap();
    let pong: String = redis::cmd("PING").query(&mut con).unwrap();
    assert_eq!(pong, "PONG");
}

#[test]
#[should_panic(expected = "apt-get install -y redis-server")]
fn a_missing_binary_panics_with_the_install_hint() {
    RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .spawn();
}

#[test]
fn a_missing_binary_error_names_the_env_var() {
    let err = RedisServer::builder()
        .binary("/nonexistent/redis-server")
        .try_spawn()
        .unwrap_err();
    let message = format!("{err:#}");
    assert!(message.contains(BINARY_ENV), "{message}");
    assert!(message.contains("/nonexistent/redis-server"), "{message}");
}

#[test]
#[should_panic(expected = "Bad directive")]
fn a_bad_argument_panics_with_the_log_tail() {
    RedisServer::builder().arg("--no-such-option").spawn();
}

#[test]
fn a_taken_fixed_port_fails_fast_with_the_reason() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let start = Instant::now();
    let err = RedisServer::builder().port(port).try_spawn().unwrap_err();
    assert!(
        format!("{err:#}").contains("Address already in use"),
        "{err:#}"
    );
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "{:?}",
        start.elapsed()
    );
}
