//! The status page in a real browser (issue 16 item 1): Redis, the
//! simulator and one `wxtoken serve`, then `node tests/ui/status.mjs`
//! (playwright-core driving Debian's chromium) whose exit code is the
//! verdict: login, several credentials with one failing (its secret is
//! wrong at the simulator), a refresh in the live timeline within 2 s, no
//! token, ticket, secret or key in the DOM or the event stream. The
//! screenshot is kept at `<target>/ui-status.png` (CI's artefact).
//!
//! Chromium, node and npm are required (`.ci/run` installs them): missing,
//! the test fails and says how to install them.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wechat_sim::SimConfig;
use wxtoken_e2e::ReplicaProcess;
use wxtoken_e2e::sdk::target_dir;
use wxtoken_testkit::{RedisServer, random_prefix};

const SHOP_APPID: &str = "wxa1b2c3d4e5f6e001";
const ORDERS_APPID: &str = "wxa1b2c3d4e5f6e002";
const BROKEN_APPID: &str = "wxa1b2c3d4e5f6e003";
const SHOP_SECRET: &str = "e2e-ui-shop-secret-81fa";
const ORDERS_SECRET: &str = "e2e-ui-orders-secret-0c4d";
const BROKEN_REAL: &str = "e2e-ui-broken-real-9b2e";
const BROKEN_WRONG: &str = "e2e-ui-broken-wrong-5a7c";
const KEY: &str = "e2e-ui-all-access-key-3d9f";
const INSTALL_HINT: &str = "apt-get install -y chromium nodejs npm (bash .ci/run installs them)";

fn tool(name: &str) -> anyhow::Result<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .with_context(|| format!("`{name}` is needed for the status page test: {INSTALL_HINT}"))
}

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

/// The script to run: tests/ui/status.mjs when `npm ci` ran there (CI),
/// else a copy beside playwright-core installed by `npm ci` into
/// `<target>/ui-node` (again only when tests/ui/package-lock.json changed),
/// so `node` resolves the package from there.
fn install(target: &Path) -> anyhow::Result<PathBuf> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("ui");
    // `.ci/run` ran `npm ci` in tests/ui: use that install as it is.
    if src
        .join("node_modules/playwright-core/package.json")
        .is_file()
    {
        return Ok(src.join("status.mjs"));
    }
    let read = |name: &str| {
        std::fs::read(src.join(name)).with_context(|| format!("reading tests/ui/{name}"))
    };
    let (package, lock, script) = (
        read("package.json")?,
        read("package-lock.json")?,
        read("status.mjs")?,
    );
    let dir = target.join("ui-node");
    let stamp = dir.join("wxtoken-package-lock.json");
    let installed = dir
        .join("node_modules/playwright-core/package.json")
        .is_file()
        && std::fs::read(&stamp).is_ok_and(|s| s == lock);
    if !installed {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::remove_file(&stamp);
        std::fs::write(dir.join("package.json"), &package)?;
        std::fs::write(dir.join("package-lock.json"), &lock)?;
        let mut ci = Command::new(tool("npm")?);
        ci.args(["ci", "--no-audit", "--no-fund", "--silent"])
            .current_dir(&dir);
        run(ci, &format!("`npm ci` in {}", dir.display()))?;
        std::fs::write(&stamp, &lock)?;
    }
    let path = dir.join("status.mjs");
    std::fs::write(&path, script).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

fn config(redis: &str, sim: &str) -> String {
    format!(
        r#"
[redis]
url = "{redis}"
key_prefix = "{prefix}"
[refresh]
refresh_ahead = "1500ms"
lock_ttl = "1s"
upstream_timeout = "400ms"
poll_interval = "1s"
fatal_cooldown = "30s"
report_refresh_interval = "200ms"
verify_interval = "200ms"
[upstream]
base_url = "{sim}"
[http]
api_keys = {{ env = "UI_KEY" }}
[[apps]]
id = "shop"
appid = "{SHOP_APPID}"
secret = {{ env = "UI_SHOP" }}
tickets = ["jsapi"]
[[apps]]
id = "orders"
appid = "{ORDERS_APPID}"
secret = {{ env = "UI_ORDERS" }}
[[apps]]
id = "broken"
appid = "{BROKEN_APPID}"
secret = {{ env = "UI_BROKEN" }}
"#,
        prefix = random_prefix()
    )
}

/// Until shop, shop/jsapi and orders hold values and broken has failed.
async fn settled(base: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let list: Option<Vec<serde_json::Value>> = match http
            .get(format!("{base}/v1/credentials"))
            .bearer_auth(KEY)
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => r.json().await.ok(),
            _ => None,
        };
        let list = list.unwrap_or_default();
        let has = |id: &str, slot: Option<&str>, what: &str| {
            list.iter().any(|c| {
                c["id"] == id
                    && c["slot"].as_str() == slot
                    && if what == "token" {
                        c["has_token"] == true
                    } else {
                        c["last_error"].is_object()
                    }
            })
        };
        if has("shop", None, "token")
            && has("shop", Some("ticket:jsapi"), "token")
            && has("orders", None, "token")
            && has("broken", None, "error")
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("credentials did not settle in 20 s: {list:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_in_chromium_shows_a_refresh_live_and_no_secret() {
    // A browser is as heavy as an SDK fleet on 2 cores: take turns with them.
    let _heavy = crate::HEAVY.lock().await;
    wxtoken_testkit::init_tracing();
    let chromium = std::env::var("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|_| tool("chromium"))
        .expect("chromium");
    let node = tool("node").expect("node");
    let target = target_dir();
    let script = install(&target).expect("playwright-core installs");

    let redis = RedisServer::spawn();
    let sim = wechat_sim::spawn(
        SimConfig::new()
            .app(SHOP_APPID, SHOP_SECRET)
            .app(ORDERS_APPID, ORDERS_SECRET)
            .app(BROKEN_APPID, BROKEN_REAL)
            .token_ttl(Duration::from_secs(300))
            .overlap(Duration::from_secs(10))
            .ticket_ttl(Duration::from_secs(300)),
    )
    .await
    .expect("sim starts");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("ui.toml");
    std::fs::write(&path, config(&redis.url(), &sim.base_url())).expect("config written");
    let env = [
        ("UI_KEY", KEY),
        ("UI_SHOP", SHOP_SECRET),
        ("UI_ORDERS", ORDERS_SECRET),
        ("UI_BROKEN", BROKEN_WRONG),
    ];
    let mut replica = ReplicaProcess::spawn(&path, "r1", dir.path(), &env);
    let base = format!("http://{}", replica.http);
    if let Err(e) = settled(&base).await {
        panic!("{e:#}\nreplica log:\n{}", replica.logs());
    }

    let screenshot = target.join("ui-status.png");
    let _ = std::fs::remove_file(&screenshot);
    let forbidden = [SHOP_SECRET, ORDERS_SECRET, BROKEN_REAL, BROKEN_WRONG].join("\n");
    let mut cmd = Command::new(node);
    cmd.arg(&script)
        .args([base.as_str(), KEY, sim.base_url().as_str()])
        .arg(&screenshot)
        .env("CHROMIUM", &chromium)
        .env("UI_FORBIDDEN", forbidden);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .expect("join")
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    replica.signal(nix::sys::signal::Signal::SIGTERM);
    let _ = replica.wait_exit(Duration::from_secs(10));
    assert!(
        out.status.success(),
        "status.mjs failed ({}):\n{stdout}{stderr}\nreplica log:\n{}",
        out.status,
        replica.logs()
    );
    println!("{stdout}");
    assert!(stdout.contains("\"ok\":true"), "{stdout}");
    assert!(
        screenshot.is_file(),
        "no screenshot at {}",
        screenshot.display()
    );
    let logs = replica.logs();
    for secret in [SHOP_SECRET, ORDERS_SECRET, BROKEN_WRONG, KEY] {
        assert!(!logs.contains(secret), "the replica's log holds a secret");
    }
}
