//! Debian's nginx as the gateway section's reference proxy: found, given a
//! config of its own in a temporary prefix, run in the foreground as a
//! child process (no daemon, its own pid, temp and log paths, a loopback
//! port), and stopped when dropped.
//!
//! The config is a plain `proxy_pass`: `/wx/shop/<path>` goes to
//! `<path>?access_token=<fixed token>` on the simulator over a keep-alive
//! upstream pool, the caller's `Authorization` dropped — what the gateway
//! does, minus the token lookup and healing.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Where `.ci/run` unpacks the package, under the target directory.
const UNPACKED: &str = "nginx/usr/sbin/nginx";

/// nginx's worker processes. `auto` (one per core, Debian's default) is 2
/// here: as many as the gateway's tokio runtime has worker threads, so
/// neither proxy can use more of the 2 shared cores than the other.
pub const WORKERS: &str = "auto";

/// The nginx binary: `WXTOKEN_NGINX`, else `nginx` on `PATH` or in
/// `/usr/sbin`, else the package `.ci/run` unpacks into
/// `<target dir>/nginx` (`CARGO_TARGET_DIR`, or the bench binary's
/// `target/` directory).
pub fn find() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("WXTOKEN_NGINX") {
        let bin = PathBuf::from(bin);
        if !bin.is_file() {
            bail!("WXTOKEN_NGINX={} is not a file", bin.display());
        }
        return Ok(bin);
    }
    let mut candidates: Vec<PathBuf> = super::read_path::on_path("nginx").into_iter().collect();
    candidates.push(PathBuf::from("/usr/sbin/nginx"));
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        candidates.push(PathBuf::from(dir).join(UNPACKED));
    }
    if let Ok(exe) = std::env::current_exe() {
        // target/<profile>/bench → target/nginx/…
        candidates.extend(exe.ancestors().nth(2).map(|t| t.join(UNPACKED)));
    }
    candidates.into_iter().find(|p| p.is_file()).context(
        "nginx not found: set WXTOKEN_NGINX, install it, or unpack Debian's package as \
         .ci/run does (apt-get download nginx; dpkg -x nginx_*.deb target/nginx)",
    )
}

/// A running nginx; stopped (SIGTERM, then SIGKILL) on drop.
#[derive(Debug)]
pub struct Nginx {
    child: Child,
    pub addr: SocketAddr,
    pub version: String,
    _prefix: tempfile::TempDir,
}

impl Nginx {
    /// Starts `bin` on `addr` in front of `upstream` with `token`, with
    /// `workers` worker processes ([`WORKERS`], or a number).
    pub fn start(
        bin: &Path,
        addr: SocketAddr,
        upstream: SocketAddr,
        token: &str,
        workers: &str,
    ) -> Result<Self> {
        let version = version(bin)?;
        let prefix = tempfile::tempdir().context("nginx prefix dir")?;
        let p = prefix.path();
        std::fs::create_dir_all(p.join("tmp")).context("nginx temp dir")?;
        let conf = p.join("nginx.conf");
        std::fs::write(&conf, config(p, addr, upstream, token, workers))
            .context("writing nginx.conf")?;
        let log = std::fs::File::create(p.join("stderr.log")).context("nginx stderr log")?;
        let child = Command::new(bin)
            .arg("-p")
            .arg(p)
            .arg("-e")
            .arg(p.join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut nginx = Self {
            child,
            addr,
            version,
            _prefix: prefix,
        };
        nginx.wait_listening(Duration::from_secs(10))?;
        Ok(nginx)
    }

    fn wait_listening(&mut self, deadline: Duration) -> Result<()> {
        let until = Instant::now() + deadline;
        loop {
            if let Some(status) = self.child.try_wait().context("nginx status")? {
                bail!("nginx exited ({status}) at start:\n{}", self.logs());
            }
            if std::net::TcpStream::connect(self.addr).is_ok() {
                return Ok(());
            }
            if Instant::now() >= until {
                bail!(
                    "nginx did not listen on {} in {deadline:?}:\n{}",
                    self.addr,
                    self.logs()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Its error log and stderr.
    pub fn logs(&self) -> String {
        ["error.log", "stderr.log"]
            .iter()
            .map(|f| std::fs::read_to_string(self._prefix.path().join(f)).unwrap_or_default())
            .collect()
    }

    /// The master's and workers' process ids (for CPU accounting).
    pub fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let mut pids = vec![master];
        let children = format!("/proc/{master}/task/{master}/children");
        if let Ok(list) = std::fs::read_to_string(children) {
            pids.extend(
                list.split_whitespace()
                    .filter_map(|p| p.parse::<u32>().ok()),
            );
        }
        pids
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        // SIGTERM: the master stops its workers, then itself.
        if let Ok(pid) = i32::try_from(self.child.id()) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
        let until = Instant::now() + Duration::from_secs(3);
        while Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nginx -v`: "nginx/1.22.1".
fn version(bin: &Path) -> Result<String> {
    let out = Command::new(bin)
        .arg("-v")
        .output()
        .with_context(|| format!("running {} -v", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{} -v failed: {text}", bin.display());
    }
    Ok(text.trim().trim_start_matches("nginx version: ").to_owned())
}

/// The whole config: one server, a keep-alive upstream, no access log.
fn config(
    prefix: &Path,
    addr: SocketAddr,
    upstream: SocketAddr,
    token: &str,
    workers: &str,
) -> String {
    let p = prefix.display();
    format!(
        r#"worker_processes {workers};
pid {p}/nginx.pid;
error_log {p}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {p}/tmp/body;
    proxy_temp_path {p}/tmp/proxy;
    fastcgi_temp_path {p}/tmp/fastcgi;
    uwsgi_temp_path {p}/tmp/uwsgi;
    scgi_temp_path {p}/tmp/scgi;
    keepalive_requests 1000000;
    upstream sim {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen {addr};
        location /wx/shop/ {{
            rewrite ^/wx/shop/(.*)$ /$1?access_token={token} break;
            proxy_pass http://sim;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "";
        }}
    }}
}}
"#
    )
}
