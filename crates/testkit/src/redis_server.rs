//! A real `redis-server` child process on a free 127.0.0.1 port, for tests.
//!
//! It owns the process's whole life: choosing the port, starting it without
//! persistence in its own temp dir, waiting until it answers, stopping,
//! restarting, freezing (SIGSTOP) and killing it on drop. It does not touch
//! the data inside (tests use their own key prefixes) and it does not fake
//! network faults between client and server: put a
//! [`FaultProxy`](crate::FaultProxy) in between for those.

mod freezer;
mod launch;

use std::ffi::OsString;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context as _, bail};
use tempfile::TempDir;

use self::freezer::Freezer;
use self::launch::{LaunchError, LaunchSpec};
use crate::isolation::free_port;

/// Env var naming the `redis-server` binary to run when the builder is not
/// given one with [`RedisServerBuilder::binary`]; default `redis-server`
/// (looked up on `PATH`).
pub const BINARY_ENV: &str = "WXTOKEN_REDIS_SERVER";

const DEFAULT_BINARY: &str = "redis-server";
const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports to try when another process binds ours between
/// [`free_port`] and redis-server's own bind.
const PORT_ATTEMPTS: usize = 5;
/// Tries of the same port in `start()`, where we cannot move to another one.
const RESTART_ATTEMPTS: usize = 5;
const RESTART_RETRY_DELAY: Duration = Duration::from_millis(100);

/// A real `redis-server` process on `127.0.0.1:`[`port`](Self::port),
/// killed (SIGKILL, then reaped) when dropped.
///
/// It runs with `--save "" --appendonly no` in its own temp dir, so nothing
/// survives a [`stop`](Self::stop) or [`restart`](Self::restart). Every method
/// takes `&self`: share a server as `Arc<RedisServer>` to stop or freeze it
/// from another task or thread mid-test. Do not keep one in a `static`:
/// statics are never dropped, and the process would outlive the tests.
#[derive(Debug)]
pub struct RedisServer {
    /// Binary, arguments and startup deadline: what `start()` needs to bring
    /// the same server back.
    spec: LaunchSpec,
    /// Fixed for the server's life, so clients and proxies built from
    /// [`url`](Self::url) stay valid across `restart()`.
    port: u16,
    /// The process; `None` while stopped. Behind a `Mutex` rather than
    /// `&mut self` methods so a shared server can be stopped from anywhere.
    /// Lock order: `child`, then the freezer's lock.
    child: Mutex<Option<Child>>,
    /// Which process we SIGSTOPped; told to forget before every kill so a
    /// delayed SIGCONT never reaches a recycled pid.
    freezer: Arc<Freezer>,
    /// `--dir` of the server and home of its log. Declared last: removed
    /// only after `Drop` has killed the process.
    dir: TempDir,
}

/// Options for [`RedisServer`], from [`RedisServer::builder`].
#[derive(Debug, Clone)]
pub struct RedisServerBuilder {
    binary: Option<PathBuf>,
    args: Vec<OsString>,
    port: Option<u16>,
    startup_timeout: Duration,
}

impl RedisServer {
    /// Starts a server with the default options and waits (up to 10 s) until
    /// it answers.
    ///
    /// # Panics
    ///
    /// If `redis-server` is missing (the message names the fix), exits early
    /// or never answers (the message includes its log tail).
    pub fn spawn() -> RedisServer {
        Self::builder().spawn()
    }

    /// Options: extra arguments, another binary, a fixed port.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder {
            binary: None,
            args: Vec::new(),
            port: None,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
        }
    }

    /// `redis://127.0.0.1:PORT`, without a database number.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr())
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The server's `--dir`: its working directory and where its log lives.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The pid of the running process; `None` while stopped or after it
    /// exited on its own (e.g. a `SHUTDOWN` command).
    pub fn pid(&self) -> Option<u32> {
        let mut child = self.lock_child();
        running_child(&mut child).map(|running| running.id())
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    /// A sync client for [`url`](Self::url). Connections are made lazily, as
    /// usual with `redis::Client`.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("RedisServer::url is a valid redis url")
    }

    /// Kills the process (SIGKILL, even if frozen) and reaps it. When this
    /// returns, the port refuses connections. Does nothing if already stopped.
    pub fn stop(&self) {
        let mut child = self.lock_child();
        self.kill_locked(&mut child);
    }

    /// Starts the server again on the same port, with the same arguments
    /// and dir, and waits until it answers. Its data starts empty unless
    /// persistence was enabled through extra arguments, or a `SAVE` left a
    /// `dump.rdb` behind.
    ///
    /// Fails if it is already running, or if the port stays taken by
    /// another process.
    pub fn start(&self) -> anyhow::Result<()> {
        let mut child = self.lock_child();
        if let Some(running) = running_child(&mut child) {
            bail!(
                "redis-server on port {} is already running (pid {})",
                self.port,
                running.id()
            );
        }
        let mut attempt = 1;
        let started = loop {
            match self.spec.launch(self.dir.path(), self.port) {
                Ok(started) => break started,
                Err(LaunchError::PortInUse(e)) if attempt < RESTART_ATTEMPTS => {
                    tracing::debug!(port = self.port, attempt, error = %e, "port taken, retrying");
                    attempt += 1;
                    std::thread::sleep(RESTART_RETRY_DELAY);
                }
                Err(LaunchError::PortInUse(e) | LaunchError::Other(e)) => {
                    return Err(e.context(format!("restarting redis-server on port {}", self.port)));
                }
            }
        };
        *child = Some(started);
        Ok(())
    }

    /// [`stop`](Self::stop) then [`start`](Self::start): same port, same url,
    /// empty data, a new pid. Models a Redis restart without persistence.
    pub fn restart(&self) -> anyhow::Result<()> {
        self.stop();
        self.start()
    }

    /// Freezes the process now (SIGSTOP) and continues it (SIGCONT) after
    /// `duration`, from a background thread; returns at once. While frozen
    /// the port still accepts TCP connections (the kernel completes the
    /// handshake) but nothing is answered: clients see timeouts, as with a
    /// long GC pause or a stalled VM. A later `freeze`, `thaw`, `pause`,
    /// `stop` or drop cancels the pending SIGCONT.
    ///
    /// # Panics
    ///
    /// If the server is not running.
    pub fn pause(&self, duration: Duration) {
        let mut child = self.lock_child();
        let pid = self.running_pid(&mut child, "pause");
        tracing::debug!(port = self.port, pid, ?duration, "pausing redis-server");
        self.freezer.pause(pid, duration);
    }

    /// Freezes the process (SIGSTOP) until [`thaw`](Self::thaw), `stop`,
    /// `restart` or drop.
    ///
    /// # Panics
    ///
    /// If the server is not running.
    pub fn freeze(&self) {
        let mut child = self.lock_child();
        let pid = self.running_pid(&mut child, "freeze");
        tracing::debug!(port = self.port, pid, "freezing redis-server");
        self.freezer.freeze(pid);
    }

    /// Continues a frozen process (SIGCONT); does nothing if none is frozen.
    pub fn thaw(&self) {
        self.freezer.thaw();
    }

    fn running_pid(&self, child: &mut Option<Child>, what: &str) -> u32 {
        match running_child(child) {
            Some(running) => running.id(),
            None => panic!(
                "cannot {what} redis-server on port {}: it is not running",
                self.port
            ),
        }
    }

    fn kill_locked(&self, child: &mut Option<Child>) {
        self.freezer.forget();
        if let Some(mut running) = child.take() {
            let pid = running.id();
            // Kill fails only if it already exited; wait reaps it either way.
            let _ = running.kill();
            if let Err(e) = running.wait() {
                tracing::warn!(pid, error = %e, "could not reap redis-server");
            }
            tracing::debug!(port = self.port, pid, "redis-server stopped");
        }
    }

    fn lock_child(&self) -> MutexGuard<'_, Option<Child>> {
        // A test that panicked while holding the lock leaves a consistent
        // `Option<Child>`; Drop must still be able to kill it.
        self.child.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let mut child = self.lock_child();
        self.kill_locked(&mut child);
    }
}

/// The child if it is still running; reaps and clears it if it exited.
fn running_child(child: &mut Option<Child>) -> Option<&mut Child> {
    if let Some(running) = child
        && !matches!(running.try_wait(), Ok(None))
    {
        *child = None;
    }
    child.as_mut()
}

impl RedisServerBuilder {
    /// One extra `redis-server` argument, placed after the defaults so it
    /// can override them (`--save 60 1`, `--appendonly yes`). Do not pass
    /// `--port`, `--bind` or `--dir`: the server owns those.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Several extra arguments, as [`arg`](Self::arg).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// The `redis-server` binary to run. Default: env
    /// [`BINARY_ENV`] (`WXTOKEN_REDIS_SERVER`) if set, else `redis-server`
    /// on `PATH`.
    pub fn binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.binary = Some(path.into());
        self
    }

    /// A fixed port instead of a free one. There is no retry on another port
    /// then: spawning fails if the port is taken.
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How long to wait for the first answer (default 10 s).
    pub fn startup_timeout(mut self, timeout: Duration) -> Self {
        self.startup_timeout = timeout;
        self
    }

    /// Starts the server and waits until it answers.
    ///
    /// # Panics
    ///
    /// As [`try_spawn`](Self::try_spawn) fails, with its full message.
    pub fn spawn(self) -> RedisServer {
        self.try_spawn().unwrap_or_else(|e| panic!("{e:#}"))
    }

    /// Starts the server and waits until it answers. When the port chosen
    /// turns out to be taken, tries fresh ports a few times.
    pub fn try_spawn(self) -> anyhow::Result<RedisServer> {
        let binary = self
            .binary
            .or_else(|| std::env::var_os(BINARY_ENV).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_BINARY));
        let spec = LaunchSpec {
            binary,
            args: self.args,
            startup_timeout: self.startup_timeout,
        };
        let dir = tempfile::Builder::new()
            .prefix("wxtoken-redis-")
            .tempdir()
            .context("creating a temp dir for redis-server")?;
        let attempts = if self.port.is_some() {
            1
        } else {
            PORT_ATTEMPTS
        };
        let mut attempt = 1;
        loop {
            let port = self.port.unwrap_or_else(free_port);
            match spec.launch(dir.path(), port) {
                Ok(child) => {
                    return Ok(RedisServer {
                        spec,
                        port,
                        child: Mutex::new(Some(child)),
                        freezer: Arc::default(),
                        dir,
                    });
                }
                Err(LaunchError::PortInUse(e)) if attempt < attempts => {
                    tracing::debug!(port, attempt, error = %e, "port taken, trying another");
                    attempt += 1;
                }
                Err(LaunchError::PortInUse(e) | LaunchError::Other(e)) => return Err(e),
            }
        }
    }
}
