//! Starting one `redis-server` process and knowing when it is ready.
//!
//! It owns the command line (no persistence, loopback only, our `--dir`),
//! the log file every start appends to, and the readiness probe, which also
//! makes sure the process that answers is ours and not another one that took
//! the port. It does not retry or choose ports: the caller decides what to do
//! with a [`LaunchError`].

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, anyhow};

use super::BINARY_ENV;

const READY_POLL: Duration = Duration::from_millis(10);
const PROBE_TIMEOUT: Duration = Duration::from_millis(500);
const LOG_FILE: &str = "redis-server.log";
const LOG_TAIL_LINES: usize = 25;

/// How to start the server's process: kept by the server so `start()` can
/// bring the same one back.
#[derive(Debug)]
pub(super) struct LaunchSpec {
    pub(super) binary: PathBuf,
    /// Extra arguments, after the defaults so they can override them.
    pub(super) args: Vec<OsString>,
    pub(super) startup_timeout: Duration,
}

/// Why one launch attempt failed.
#[derive(Debug)]
pub(super) enum LaunchError {
    /// The port was taken: worth another try (on another port if we may).
    PortInUse(anyhow::Error),
    Other(anyhow::Error),
}

impl LaunchSpec {
    /// Starts one process on `port` and waits until it answers as itself.
    pub(super) fn launch(&self, dir: &Path, port: u16) -> Result<Child, LaunchError> {
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG_FILE))
            .context("opening the redis-server log")
            .map_err(LaunchError::Other)?;
        // The log is appended to across restarts: remember where ours starts.
        let log_start = log.seek(SeekFrom::End(0)).unwrap_or(0);
        let log_err = log
            .try_clone()
            .context("duplicating the redis-server log handle")
            .map_err(LaunchError::Other)?;

        let mut command = Command::new(&self.binary);
        command
            .arg("--port")
            .arg(port.to_string())
            .args(["--bind", "127.0.0.1"])
            .args(["--save", ""])
            .args(["--appendonly", "no"])
            .args(["--daemonize", "no"])
            .arg("--dir")
            .arg(dir)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err);
        let mut child = command
            .spawn()
            .map_err(|e| LaunchError::Other(self.spawn_error(e)))?;
        let pid = child.id();
        tracing::debug!(port, pid, binary = %self.binary.display(), "redis-server starting");

        let deadline = Instant::now() + self.startup_timeout;
        loop {
            match child.try_wait() {
                Ok(None) => {}
                Ok(Some(status)) => {
                    let tail = log_tail(dir, log_start);
                    let e = anyhow!(
                        "redis-server ({}) on port {port} exited with {status} before answering; \
                         its log ends with:\n{tail}",
                        self.binary.display()
                    );
                    return Err(if tail.contains("Address already in use") {
                        LaunchError::PortInUse(e)
                    } else {
                        LaunchError::Other(e)
                    });
                }
                Err(e) => {
                    return Err(LaunchError::Other(
                        anyhow!(e).context("waiting for redis-server"),
                    ));
                }
            }
            match probe(port) {
                // Another process answered on our port (it was taken after
                // `free_port`): ours will exit with a bind error shortly.
                Probe::Answered(Some(other)) if other != pid => {}
                Probe::Answered(_) => {
                    tracing::debug!(port, pid, "redis-server ready");
                    return Ok(child);
                }
                Probe::NoAnswer => {}
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(LaunchError::Other(anyhow!(
                    "redis-server ({}) on port {port} did not answer within {:?}; \
                     its log ends with:\n{}",
                    self.binary.display(),
                    self.startup_timeout,
                    log_tail(dir, log_start)
                )));
            }
            std::thread::sleep(READY_POLL);
        }
    }

    fn spawn_error(&self, e: io::Error) -> anyhow::Error {
        let binary = self.binary.display();
        if matches!(
            e.kind(),
            io::ErrorKind::NotFound | io::ErrorKind::PermissionDenied
        ) {
            anyhow!(
                "cannot run redis-server `{binary}`: {e}. Tests need a real Redis: install it \
                 with `apt-get install -y redis-server`, or set {BINARY_ENV} to the path of a \
                 redis-server binary"
            )
        } else {
            anyhow!(e).context(format!("starting redis-server `{binary}`"))
        }
    }
}

enum Probe {
    /// It answered; with its `process_id` when `INFO` was allowed (ACLs or
    /// `requirepass` may refuse it, which still proves it is up).
    Answered(Option<u32>),
    NoAnswer,
}

/// One readiness check: `INFO server` with short timeouts.
fn probe(port: u16) -> Probe {
    let Ok(client) = redis::Client::open(format!("redis://127.0.0.1:{port}")) else {
        return Probe::NoAnswer;
    };
    let mut con = match client.get_connection_with_timeout(PROBE_TIMEOUT) {
        Ok(con) => con,
        Err(e) if is_server_reply(&e) => return Probe::Answered(None),
        Err(_) => return Probe::NoAnswer,
    };
    if con.set_read_timeout(Some(PROBE_TIMEOUT)).is_err() {
        return Probe::NoAnswer;
    }
    match redis::cmd("INFO").arg("server").query::<String>(&mut con) {
        Ok(info) => Probe::Answered(
            info.lines()
                .find_map(|line| line.strip_prefix("process_id:"))
                .and_then(|pid| pid.trim().parse().ok()),
        ),
        Err(e) if is_server_reply(&e) => Probe::Answered(None),
        Err(_) => Probe::NoAnswer,
    }
}

/// An error reply a ready server sends (NOAUTH, WRONGPASS, NOPERM, ERR), as
/// opposed to a connection failure, garbage, or `LOADING` (up but not ready).
fn is_server_reply(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    match e.kind() {
        ErrorKind::Server(ServerErrorKind::BusyLoading) => false,
        ErrorKind::Server(_) | ErrorKind::Extension | ErrorKind::AuthenticationFailed => true,
        _ => false,
    }
}

/// The last lines the process wrote since `start` (byte offset in the log).
fn log_tail(dir: &Path, start: u64) -> String {
    let mut text = String::new();
    let read = File::open(dir.join(LOG_FILE)).and_then(|mut file| {
        file.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        text = String::from_utf8_lossy(&bytes).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(log unreadable: {e})");
    }
    let lines: Vec<&str> = text.lines().collect();
    let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
    if tail.is_empty() {
        "(log empty)".to_owned()
    } else {
        tail.join("\n")
    }
}
