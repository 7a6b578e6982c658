//! Where `wxtoken demo` finds its Redis: the URL given with `--redis`, else
//! the default one if something answers there, else a private
//! `redis-server` this module starts on a free loopback port (no
//! persistence, its own temp dir, killed and removed when the demo ends).
//!
//! It never starts a server in place of an explicit `--redis URL`, and it
//! manages no Redis but its own.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;

/// The URL the demo tries when no `--redis` is given.
pub const DEFAULT_URL: &str = "redis://127.0.0.1:6379";
/// Overrides [`DEFAULT_URL`] (tests point it at a closed port); a URL set
/// here still falls back to a private server, unlike `--redis`.
pub const DEFAULT_URL_ENV: &str = "WXTOKEN_DEMO_DEFAULT_REDIS";

const INSTALL_HINT: &str =
    "install Redis (`apt-get install redis-server`, `brew install redis`) or pass --redis URL";

/// The Redis the demo runs against, and the server it started, if any.
pub struct DemoRedis {
    pub url: String,
    pub private: Option<PrivateRedis>,
}

/// A `redis-server` child of the demo. Killed on drop (`kill_on_drop`), its
/// directory removed; [`PrivateRedis::shutdown`] also waits for the exit.
pub struct PrivateRedis {
    child: tokio::process::Child,
    dir: PathBuf,
    pub port: u16,
}

impl PrivateRedis {
    pub async fn shutdown(mut self) {
        let _ = self.child.kill().await;
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `explicit` as given, else the default URL when a Redis answers there,
/// else a private server (said in one line on stdout).
pub async fn find(explicit: Option<&str>) -> anyhow::Result<DemoRedis> {
    if let Some(url) = explicit {
        return Ok(DemoRedis {
            url: url.to_owned(),
            private: None,
        });
    }
    let default = std::env::var(DEFAULT_URL_ENV).unwrap_or_else(|_| DEFAULT_URL.to_owned());
    if answers(&default, Duration::from_secs(1)).await {
        return Ok(DemoRedis {
            url: default,
            private: None,
        });
    }
    let Some(binary) = on_path("redis-server") else {
        anyhow::bail!(
            "no Redis answers at {default} and there is no `redis-server` on PATH: {INSTALL_HINT}"
        );
    };
    let private = start(&binary).await.with_context(|| {
        format!(
            "no Redis answers at {default}; starting {}",
            binary.display()
        )
    })?;
    let url = format!("redis://127.0.0.1:{}", private.port);
    println!(
        "no Redis at {default}: started a private redis-server at {url} (no persistence, stopped when the demo exits)"
    );
    Ok(DemoRedis {
        url,
        private: Some(private),
    })
}

/// Whether a PING to `url` is answered within `within`.
async fn answers(url: &str, within: Duration) -> bool {
    let Ok(client) = redis::Client::open(url) else {
        return false;
    };
    let ping = async {
        let mut c = client.get_multiplexed_async_connection().await?;
        redis::cmd("PING").query_async::<String>(&mut c).await
    };
    matches!(tokio::time::timeout(within, ping).await, Ok(Ok(_)))
}

fn on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts `binary` on a free port (a few tries: the port is picked by
/// binding port 0 and may be taken before the server binds it).
async fn start(binary: &Path) -> anyhow::Result<PrivateRedis> {
    let mut last = anyhow::anyhow!("did not start");
    for _ in 0..3 {
        match start_once(binary).await {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn start_once(binary: &Path) -> anyhow::Result<PrivateRedis> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .context("finding a free port")?
        .port();
    let dir =
        std::env::temp_dir().join(format!("wxtoken-demo-redis-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let child = tokio::process::Command::new(binary)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
        .args(["--loglevel", "warning", "--dir"])
        .arg(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let mut server = match child {
        Ok(child) => PrivateRedis { child, dir, port },
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).context("spawning redis-server");
        }
    };
    let url = format!("redis://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(status)) = server.child.try_wait() {
            anyhow::bail!("redis-server exited at once ({status})");
        }
        if answers(&url, Duration::from_millis(200)).await {
            return Ok(server);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.child.start_kill().ok();
    anyhow::bail!("redis-server did not answer on port {port} within 5 s")
}
