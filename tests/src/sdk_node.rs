//! The Node side of the `sdk` e2e test: co-wechat-api (the common Node
//! WeChat SDK) run unchanged by tests/sdk/co_wechat_worker.js, the
//! counterpart of tests/sdk/wechatpy_worker.py.
//!
//! Its packages (tests/sdk/package.json, pinned by package-lock.json) are
//! installed once with `npm ci` under the target directory
//! (`<target>/sdk-node`), next to a copy of the worker script so that
//! `node <script>` resolves them from `<target>/sdk-node/node_modules`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use anyhow::{Context, bail};

const INSTALL_HINT: &str = "apt-get install -y nodejs npm";
const WORKER: &str = "co_wechat_worker.js";

/// The tests/sdk directory (package.json, package-lock.json, the worker).
fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// `(node, worker script)`: run the worker as `node <script> args…`.
///
/// Installs co-wechat-api and its Redis client into `<target_dir>/sdk-node`
/// with `npm ci` the first time, and again only when
/// tests/sdk/package-lock.json changed (a stamp file holds the lock the
/// install came from); the worker script is copied there on every call.
pub fn co_wechat_api(target_dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
    // Tests of one process may ask at once; one installs, the others wait.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());

    let node = find_tool("node")?;
    let src = sdk_dir();
    let read = |name: &str| {
        let path = src.join(name);
        std::fs::read(&path).with_context(|| format!("reading {}", path.display()))
    };
    let package = read("package.json")?;
    let lock = read("package-lock.json")?;
    let script = read(WORKER)?;

    let dir = target_dir.join("sdk-node");
    let stamp = dir.join("wxtoken-package-lock.json");
    let installed = dir
        .join("node_modules")
        .join("co-wechat-api")
        .join("package.json")
        .is_file()
        && std::fs::read(&stamp).is_ok_and(|s| s == lock);
    if !installed {
        install(&node, &dir, &stamp, &package, &lock)?;
    }

    let worker = dir.join(WORKER);
    if std::fs::read(&worker).ok().as_deref() != Some(script.as_slice()) {
        // Written aside and renamed, so no worker ever reads half a script.
        let tmp = dir.join(format!("{WORKER}.tmp"));
        std::fs::write(&tmp, &script).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &worker)
            .with_context(|| format!("renaming {} to {}", tmp.display(), worker.display()))?;
    }
    Ok((node, worker))
}

/// `npm ci` of `package`/`lock` in `dir`, checked, then the stamp.
fn install(
    node: &Path,
    dir: &Path,
    stamp: &Path,
    package: &[u8],
    lock: &[u8],
) -> anyhow::Result<()> {
    let npm = find_tool("npm")?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // No stamp while the install is incomplete.
    match std::fs::remove_file(stamp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("removing {}", stamp.display())),
    }
    for (name, bytes) in [("package.json", package), ("package-lock.json", lock)] {
        let path = dir.join(name);
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    let mut ci = Command::new(&npm);
    ci.args(["ci", "--no-audit", "--no-fund", "--silent"])
        .current_dir(dir);
    run(ci, &format!("`npm ci` in {}", dir.display()))?;
    let mut check = Command::new(node);
    check
        .args(["-e", "require('co-wechat-api'); require('ioredis')"])
        .current_dir(dir);
    run(
        check,
        &format!("loading co-wechat-api and ioredis from {}", dir.display()),
    )?;
    std::fs::write(stamp, lock).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(())
}

/// Runs `cmd` to completion; an error with its output unless it succeeded.
fn run(mut cmd: Command, what: &str) -> anyhow::Result<Output> {
    let out = cmd
        .output()
        .with_context(|| format!("{what}: cannot run"))?;
    if !out.status.success() {
        bail!(
            "{what} failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(out)
}

/// `tool`'s absolute path on `PATH`, or an error saying how to install it.
fn find_tool(tool: &str) -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(tool))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
        .with_context(|| {
            format!(
                "`{tool}` is needed for the co-wechat-api test and is not on PATH: {INSTALL_HINT}"
            )
        })
}
