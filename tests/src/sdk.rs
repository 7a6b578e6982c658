//! Driving existing WeChat SDKs, unchanged, as fleets of worker processes:
//! wechatpy (tests/sdk/wechatpy_worker.py) and co-wechat-api
//! (tests/sdk/co_wechat_worker.js, installed by [`crate::sdk_node`]). Both
//! workers share one command line and print one JSON line at the end, so
//! one harness runs either: the `sdk` e2e test and the bench's
//! `alternative` section use it.
//!
//! A worker does its [`Work`] every `pause` for `duration`: it calls a real
//! API through its SDK (`GET cgi-bin/getcallbackip` on the simulator), or
//! (wechatpy only) gets the JS-SDK ticket through it, signs a page with it
//! and has the simulator verify the signature as `wx.config` would, or
//! (wechatpy only) sends a customer-service message through a
//! coordinator's drop-in API base (the `gateway` e2e test). It
//! fetches its token from `token_url` (a `wxtoken serve` replica's
//! WeChat-compatible `/cgi-bin/token`, or the simulator's own) and its
//! ticket from its API base (a replica's `/cgi-bin/ticket/getticket`, or
//! the simulator's), optionally sharing both with the other workers through
//! the SDK's own Redis store. [`Run::measure`] and [`TicketRun::measure`]
//! turn the workers' reports and the simulator's counters into one row.
//!
//! The Python environment is `WXTOKEN_SDK_PYTHON` (a python with the
//! packages of tests/sdk/requirements.txt) or a venv created under the
//! target directory (`<target>/sdk-venv`) with `python3 -m venv` + `pip`;
//! the Node packages go to `<target>/sdk-node` (`npm ci`).

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use serde_json::json;

use crate::{APPID, Fleet, SECRET};

/// WeChat's token (and JS-SDK ticket) lifetime, to scale the SDKs' refresh
/// margins by.
pub const REAL_TTL: Duration = Duration::from_secs(7200);

/// The ticket [`Work::Jsapi`] signs with: the simulator's stats key.
const TICKET_TYPE: &str = "jsapi";

/// An SDK the harness can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sdk {
    /// wechatpy (Python), `WeChatClient`.
    Wechatpy,
    /// co-wechat-api (Node), `API`.
    CoWechatApi,
}

impl Sdk {
    pub fn name(self) -> &'static str {
        match self {
            Self::Wechatpy => "wechatpy",
            Self::CoWechatApi => "co-wechat-api",
        }
    }

    /// How long before expiry the SDK refetches a token it fetched itself,
    /// at WeChat's real timings. wechatpy: `BaseWeChatClient.access_token`,
    /// `self.expires_at - timestamp > 60`; co-wechat-api: `getAccessToken`,
    /// `expireTime = Date.now() + (expires_in - 10) * 1000`.
    pub fn real_margin(self) -> Duration {
        match self {
            Self::Wechatpy => Duration::from_secs(60),
            Self::CoWechatApi => Duration::from_secs(10),
        }
    }

    /// [`Self::real_margin`] scaled like the token lifetime (7200 s → `ttl`).
    pub fn scaled_margin(self, ttl: Duration) -> Duration {
        self.real_margin()
            .mul_f64(ttl.as_secs_f64() / REAL_TTL.as_secs_f64())
    }

    /// The SDK's shared token store, as the worker's `--redis-url` uses it.
    pub fn redis_store(self) -> &'static str {
        match self {
            Self::Wechatpy => "RedisStorage",
            Self::CoWechatApi => "Redis getToken/saveToken",
        }
    }

    /// Installs what the worker needs (once; later calls check and reuse)
    /// and returns how to run it.
    pub fn runtime(self) -> anyhow::Result<SdkRuntime> {
        let (program, script) = match self {
            Self::Wechatpy => (sdk_python()?, sdk_dir().join("wechatpy_worker.py")),
            Self::CoWechatApi => crate::sdk_node::co_wechat_api(&target_dir())?,
        };
        Ok(SdkRuntime {
            sdk: self,
            program,
            script,
        })
    }
}

/// How to start one SDK's worker: `program script args…`.
#[derive(Debug, Clone)]
pub struct SdkRuntime {
    pub sdk: Sdk,
    /// `python` or `node`.
    pub program: PathBuf,
    /// The worker script.
    pub script: PathBuf,
}

/// The tests/sdk directory (requirements, package.json, the workers).
pub fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// Cargo's target directory: the nearest ancestor of the running
/// executable that holds cargo's `CACHEDIR.TAG` (test executables live in
/// `target/<profile>/deps/`, binaries in `target/<profile>/`), else
/// `CARGO_TARGET_DIR`, else `<workspace>/target`.
pub fn target_dir() -> PathBuf {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if let Ok(exe) = std::env::current_exe()
        && let Some(dir) = exe
            .ancestors()
            .skip(1)
            .find(|d| d.join("CACHEDIR.TAG").is_file())
    {
        return dir.to_path_buf();
    }
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace.join(dir),
        _ => workspace.join("target"),
    }
}

/// A python with wechatpy: `WXTOKEN_SDK_PYTHON`, or `<target>/sdk-venv`
/// (created, or recreated when tests/sdk/requirements.txt changed).
pub fn sdk_python() -> anyhow::Result<PathBuf> {
    // Callers of one process may ask at once; one installs, the others wait.
    static INSTALL: Mutex<()> = Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(|e| e.into_inner());

    if let Some(python) = std::env::var_os("WXTOKEN_SDK_PYTHON") {
        let python = PathBuf::from(python);
        check_imports(&python, "WXTOKEN_SDK_PYTHON")?;
        return Ok(python);
    }
    let requirements = sdk_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements)
        .with_context(|| format!("reading {}", requirements.display()))?;
    let venv = target_dir().join("sdk-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("wxtoken-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(python);
    }
    let _ = std::fs::remove_dir_all(&venv);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .context(
            "python3 is needed for the wechatpy workers: apt-get install -y python3 python3-venv, or set WXTOKEN_SDK_PYTHON",
        )?;
    if !out.status.success() {
        bail!(
            "`python3 -m venv {}` failed: apt-get install -y python3-venv (or set WXTOKEN_SDK_PYTHON)\n{}",
            venv.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .arg("-r")
        .arg(&requirements)
        .output()
        .context("running pip")?;
    if !out.status.success() {
        bail!(
            "pip install -r {} failed:\n{}{}",
            requirements.display(),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_imports(&python, "the new venv")?;
    std::fs::write(&stamp, wanted).with_context(|| format!("writing {}", stamp.display()))?;
    Ok(python)
}

/// An error unless `python` imports what the worker needs.
fn check_imports(python: &Path, what: &str) -> anyhow::Result<()> {
    let out = Command::new(python)
        .args(["-c", "from wechatpy import WeChatClient; import redis"])
        .output();
    match out {
        Ok(o) if o.status.success() => Ok(()),
        out => bail!(
            "{what} ({}) cannot import wechatpy and redis (pip install -r tests/sdk/requirements.txt): {}",
            python.display(),
            out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
                .unwrap_or_else(|e| e.to_string())
        ),
    }
}

/// What every worker of a run does.
#[derive(Debug, Clone)]
pub struct Workload {
    /// How long each worker works.
    pub duration: Duration,
    /// Each worker's pause between two uses.
    pub pause: Duration,
    /// The SDK's token refresh margin (usually [`Sdk::scaled_margin`]).
    pub margin: Duration,
    /// What one use is.
    pub work: Work,
}

/// What one use of a worker is (`--work`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Work {
    /// An API call, `GET cgi-bin/getcallbackip` on the simulator.
    Api,
    /// A `wx.config` signature: the jsapi ticket through the SDK
    /// (wechatpy's `client.jsapi.get_jsapi_ticket()`), a signature of a
    /// page URL with it, checked by the simulator's `/__admin/jsapi_check`.
    /// wechatpy only.
    Jsapi {
        /// One tick of wechatpy's whole-second ticket clock (`--tick`):
        /// `get_jsapi_ticket` keeps a ticket until `int(time.time())` passes
        /// `int(time.time()) + expires_in` taken when it was fetched, so up
        /// to a second past that; usually [`Work::jsapi_scaled`].
        tick: Duration,
    },
    /// A customer-service text message (wechatpy's
    /// `client.message.send_text`, `POST cgi-bin/message/custom/send`),
    /// usually through a coordinator's drop-in API base
    /// ([`WorkerSpec::pointed_at`]). wechatpy only.
    Send,
}

impl Work {
    /// Signatures, with wechatpy's ticket clock at [`scaled_tick`].
    pub fn jsapi_scaled(ticket_ttl: Duration) -> Self {
        Self::Jsapi {
            tick: scaled_tick(ticket_ttl),
        }
    }
}

/// wechatpy's one-second ticket clock tick scaled like its token margin:
/// by the ticket's lifetime over WeChat's 7200 s.
pub fn scaled_tick(ticket_ttl: Duration) -> Duration {
    Duration::from_secs(1).mul_f64(ticket_ttl.as_secs_f64() / REAL_TTL.as_secs_f64())
}

/// Where one worker fetches its token (and ticket), with which secret, and
/// the shared Redis store if any.
#[derive(Debug, Clone)]
pub struct WorkerSpec {
    pub token_url: String,
    /// The secret the SDK is configured with (`WECHAT_SECRET`): the
    /// appsecret ([`SECRET`], every constructor's), or the app's stand-in
    /// [`crate::COMPAT_SECRET`] for a coordinator ([`Self::with_secret`]).
    pub secret: &'static str,
    /// The SDK's API base (`…/cgi-bin/`); `None`: the fleet's simulator.
    pub api_base: Option<String>,
    /// (url, key prefix) of the SDK's Redis store (`--redis-url`).
    pub redis: Option<(String, String)>,
    /// `--session-base`: wechatpy's HTTP session rewrites WeChat's host to
    /// this (README's `ToCoordinator`), token and API URLs left as they are.
    pub session_base: Option<String>,
}

impl WorkerSpec {
    /// Fetching from `replica`'s WeChat-compatible `/cgi-bin/token`, no
    /// store; API calls go to the simulator.
    pub fn through(replica: &crate::ReplicaProcess) -> Self {
        Self {
            token_url: format!("http://{}/cgi-bin/token", replica.http),
            secret: SECRET,
            api_base: None,
            redis: None,
            session_base: None,
        }
    }

    /// The SDK's API base pointed at `replica` (token and
    /// `ticket/getticket` from the fleet), no store: what [`Work::Jsapi`]
    /// through wxtoken runs.
    pub fn pointed_at(replica: &crate::ReplicaProcess) -> Self {
        Self {
            api_base: Some(format!("http://{}/cgi-bin/", replica.http)),
            ..Self::through(replica)
        }
    }

    /// Fetching straight from the fleet's simulator, sharing the token (and
    /// the ticket) through the SDK's own store on the fleet's Redis.
    pub fn direct(fleet: &Fleet) -> Self {
        Self {
            token_url: format!("{}/cgi-bin/token", fleet.sim.base_url()),
            secret: SECRET,
            api_base: None,
            redis: Some((fleet.redis.url(), fleet.prefix.clone())),
            session_base: None,
        }
    }

    /// wechatpy as README shows it for the gateway: its own token URL and
    /// API base (WeChat's), its session rewriting WeChat's host to
    /// `replica`, so the token and every call go through the drop-in base.
    pub fn session_at(replica: &crate::ReplicaProcess) -> Self {
        Self {
            token_url: "https://api.weixin.qq.com/cgi-bin/token".to_owned(),
            api_base: Some("https://api.weixin.qq.com/cgi-bin/".to_owned()),
            session_base: Some(format!("http://{}", replica.http)),
            ..Self::through(replica)
        }
    }

    /// The same, with the SDK configured with `secret` instead.
    pub fn with_secret(self, secret: &'static str) -> Self {
        Self { secret, ..self }
    }
}

/// The JSON line one worker prints at the end. A use is an API call
/// ([`Work::Api`]) or a signature ([`Work::Jsapi`]).
#[derive(Debug, Default, Clone)]
pub struct WorkerReport {
    pub calls: u64,
    pub ok: u64,
    pub failed: u64,
    pub token_fetches: u64,
    /// Failed uses by errcode (or error name; a refused signature is
    /// `"refused: <the simulator's reason>"`).
    pub errors: BTreeMap<String, u64>,
    /// [`Work::Jsapi`]: refused signatures by the simulator's reason
    /// (`ticket expired`, `signature mismatch`: signed with a ticket that
    /// is no longer the current one).
    pub refused: BTreeMap<String, u64>,
    /// [`Work::Jsapi`]: every ticket the worker signed with, in order of
    /// first use.
    pub tickets: Vec<String>,
    /// [`Work::Jsapi`]: ticket fetches the SDK began (`get_ticket` calls, to
    /// wxtoken or the sim); the retries wechatpy makes inside one after a
    /// 40001 are not counted here (the simulator's `ticket_failed` has them).
    pub ticket_fetches: u64,
    /// [`Work::Jsapi`]: the longest `get_jsapi_ticket()` call.
    pub max_ticket_wait: Duration,
    /// [`Work::Send`]: replies refusing the token (40001 / 40014 / 42001)
    /// that reached the SDK, whether or not its own refetch-and-retry then
    /// healed them (so they are not in `failed`).
    pub token_rejections: u64,
}

/// `{"k": n, …}` as counts.
fn counts(v: &serde_json::Value, key: &str) -> anyhow::Result<BTreeMap<String, u64>> {
    let Some(map) = v.get(key) else {
        return Ok(BTreeMap::new());
    };
    map.as_object()
        .with_context(|| format!("{key} is not an object in {v}"))?
        .iter()
        .map(|(k, n)| {
            n.as_u64()
                .map(|n| (k.clone(), n))
                .with_context(|| format!("{key}.{k} is not a count in {v}"))
        })
        .collect()
}

impl WorkerReport {
    fn parse(line: &str) -> anyhow::Result<Self> {
        let v: serde_json::Value =
            serde_json::from_str(line).with_context(|| format!("report is not JSON: {line}"))?;
        let n = |k: &str| v[k].as_u64().with_context(|| format!("no {k} in {v}"));
        anyhow::ensure!(v["errors"].is_object(), "no errors in {v}");
        let tickets = match v.get("tickets") {
            None => Vec::new(),
            Some(t) => t
                .as_array()
                .with_context(|| format!("tickets is not a list in {v}"))?
                .iter()
                .map(|t| t.as_str().map(str::to_owned))
                .collect::<Option<_>>()
                .with_context(|| format!("a ticket is not a string in {v}"))?,
        };
        Ok(Self {
            calls: n("calls")?,
            ok: n("ok")?,
            failed: n("failed")?,
            token_fetches: n("token_fetches")?,
            errors: counts(&v, "errors")?,
            refused: counts(&v, "refused")?,
            tickets,
            ticket_fetches: v["ticket_fetches"].as_u64().unwrap_or(0),
            max_ticket_wait: Duration::from_secs_f64(
                v["max_ticket_wait_ms"].as_f64().unwrap_or(0.0).max(0.0) / 1000.0,
            ),
            token_rejections: v["token_rejections"].as_u64().unwrap_or(0),
        })
    }
}

/// The worker processes of one run; any still running when this is dropped
/// (an error, a failed assertion) are killed.
struct Workers(Vec<(Child, PathBuf, PathBuf)>);

impl Drop for Workers {
    fn drop(&mut self) {
        for (child, _, _) in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts one worker per spec, lets them all begin at once when every one
/// is set up (like a fleet after a deploy), and waits for all of them (each
/// runs for `workload.duration`). Their output goes to files in the fleet's
/// directory.
pub async fn run_workers(
    runtime: &SdkRuntime,
    fleet: &Fleet,
    workload: &Workload,
    specs: &[WorkerSpec],
) -> anyhow::Result<Vec<WorkerReport>> {
    let name = runtime.sdk.name();
    if matches!(workload.work, Work::Jsapi { .. } | Work::Send) && runtime.sdk != Sdk::Wechatpy {
        bail!("{name} workers have no {:?} work", workload.work);
    }
    let sim_api_base = format!("{}/cgi-bin/", fleet.sim.base_url());
    let secs = |d: Duration| d.as_secs_f64().to_string();
    let mut workers = Workers(Vec::new());
    let mut readies = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let out_path = fleet.dir.path().join(format!("{name}-{i}.out"));
        let err_path = fleet.dir.path().join(format!("{name}-{i}.err"));
        let ready = fleet.dir.path().join(format!("{name}-{i}.ready"));
        let file = |p: &Path| File::create(p).with_context(|| format!("creating {}", p.display()));
        let mut cmd = Command::new(&runtime.program);
        cmd.arg(&runtime.script)
            .args(["--appid", APPID])
            .args(["--token-url", &spec.token_url])
            .args([
                "--api-base",
                spec.api_base.as_deref().unwrap_or(&sim_api_base),
            ])
            .args(["--margin", &secs(workload.margin)])
            .args(["--duration", &secs(workload.duration)])
            .args(["--pause", &secs(workload.pause)])
            .arg("--ready-file")
            .arg(&ready)
            .env("WECHAT_SECRET", spec.secret)
            .stdin(Stdio::piped())
            .stdout(file(&out_path)?)
            .stderr(file(&err_path)?);
        if let Some(base) = &spec.session_base {
            cmd.args(["--session-base", base]);
        }
        if let Some((url, prefix)) = &spec.redis {
            cmd.args(["--redis-url", url, "--redis-prefix", prefix]);
        }
        if let Work::Jsapi { tick } = workload.work {
            cmd.args(["--work", "jsapi", "--tick", &secs(tick)])
                .arg("--check-url")
                .arg(format!("{}/__admin/jsapi_check", fleet.sim.base_url()));
        }
        if workload.work == Work::Send {
            cmd.args(["--work", "send"]);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {}", runtime.program.display()))?;
        workers.0.push((child, out_path, err_path));
        readies.push(ready);
    }
    let all_ready = wxtoken_testkit::wait_until_async(
        Duration::from_secs(60),
        Duration::from_millis(20),
        || async { readies.iter().all(|r| r.exists()) },
    )
    .await;
    if !all_ready {
        let stderr: Vec<String> = workers
            .0
            .iter()
            .map(|(_, _, err)| std::fs::read_to_string(err).unwrap_or_default())
            .filter(|e| !e.is_empty())
            .collect();
        bail!(
            "the {name} workers did not all start:\n{}",
            stderr.join("\n")
        );
    }
    for (child, _, _) in &mut workers.0 {
        let mut stdin = child.stdin.take().context("piped stdin")?;
        stdin
            .write_all(b"go\n")
            .with_context(|| format!("a {name} worker did not read its go"))?;
    }
    let until = Instant::now() + workload.duration + Duration::from_secs(60);
    let mut reports = Vec::new();
    for (child, out_path, err_path) in &mut workers.0 {
        let status = loop {
            if let Some(status) = child.try_wait().context("try_wait")? {
                break status;
            }
            if Instant::now() >= until {
                bail!("a {name} worker ran past its deadline");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
        if !status.success() {
            bail!("{name} worker failed: {status}\n{stderr}");
        }
        let line = stdout
            .lines()
            .last()
            .with_context(|| format!("a {name} worker printed no report\n{stderr}"))?;
        reports.push(WorkerReport::parse(line)?);
    }
    Ok(reports)
}

/// Now, in Unix milliseconds (the simulator's clock).
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// One measured run of SDK workers, from their reports and the simulator.
#[derive(Debug, Clone)]
pub struct Run {
    pub sdk: Sdk,
    pub mode: String,
    pub workers: usize,
    pub duration: Duration,
    /// The cycle `ideal` counts: the token's lifetime less the margin of
    /// whoever refreshes (the fleet's `refresh_ahead`, or the SDK's).
    pub cycle: Duration,
    /// From the first upstream fetch to the end of the workers.
    pub elapsed: Duration,
    /// The first fetch + one per refresh cycle of `elapsed`.
    pub ideal: u64,
    /// Upstream fetch requests (`fetch_calls`), failed ones included.
    pub fetches: u64,
    pub fetch_ok: u64,
    /// Failed fetches by cause (`"45009"`: the daily quota).
    pub fetch_failed: BTreeMap<String, u64>,
    pub max_concurrent: u64,
    /// API calls the workers made.
    pub calls: u64,
    /// API calls that returned the IP list to the worker.
    pub uses_ok: u64,
    /// Uses the simulator accepted (equals `uses_ok` unless a reply was lost).
    pub sim_uses_ok: u64,
    /// API calls that raised to the worker (after the SDK's own retry).
    pub failed: u64,
    pub errors: BTreeMap<String, u64>,
    /// Uses the simulator rejected (40001/42001), including those the SDK
    /// healed itself (refetch, retry) before its caller saw anything.
    pub rejected: u64,
    pub uses_invalid: u64,
    pub uses_expired: u64,
    /// Token requests the workers' SDKs made (to wxtoken or the sim).
    pub token_fetches: u64,
    /// The quota the simulator gives per day.
    pub daily_quota: u32,
    /// When the daily quota ran out (45009), after the first fetch: when
    /// the last token it allowed was issued.
    pub quota_out: Option<Duration>,
}

impl Run {
    /// Reads the simulator now (call it right after the workers ended).
    pub fn measure(
        sdk: Sdk,
        mode: impl Into<String>,
        fleet: &Fleet,
        cycle: Duration,
        workload: &Workload,
        reports: &[WorkerReport],
    ) -> anyhow::Result<Self> {
        let end = unix_ms();
        let app = fleet.app();
        let first = app
            .issued
            .first()
            .context("no token was issued")?
            .issued_at_ms;
        let elapsed = Duration::from_millis(end.saturating_sub(first));
        let cycles = u64::try_from(elapsed.as_millis() / cycle.as_millis().max(1))?;
        let mut errors = BTreeMap::new();
        for (k, n) in reports.iter().flat_map(|r| &r.errors) {
            *errors.entry(k.clone()).or_default() += n;
        }
        let quota_out = app
            .fetch_failed
            .contains_key("45009")
            .then(|| app.issued.last())
            .flatten()
            .map(|t| Duration::from_millis(t.issued_at_ms.saturating_sub(first)));
        Ok(Self {
            sdk,
            mode: mode.into(),
            workers: reports.len(),
            duration: workload.duration,
            cycle,
            elapsed,
            ideal: 1 + cycles,
            fetches: app.fetch_calls,
            fetch_ok: app.fetch_ok,
            fetch_failed: app.fetch_failed.clone(),
            max_concurrent: app.max_concurrent_fetches,
            calls: reports.iter().map(|r| r.calls).sum(),
            uses_ok: reports.iter().map(|r| r.ok).sum(),
            sim_uses_ok: app.uses_ok,
            failed: reports.iter().map(|r| r.failed).sum(),
            errors,
            rejected: app.uses_invalid + app.uses_expired,
            uses_invalid: app.uses_invalid,
            uses_expired: app.uses_expired,
            token_fetches: reports.iter().map(|r| r.token_fetches).sum(),
            // `Fleet` runs the simulator with WeChat's default quota.
            daily_quota: wechat_sim::SimConfig::default().daily_quota,
            quota_out,
        })
    }

    /// Upstream fetches per ideal fetch.
    pub fn ratio(&self) -> f64 {
        self.fetches as f64 / self.ideal.max(1) as f64
    }

    /// One paragraph for a log.
    pub fn summary(&self) -> String {
        format!(
            "{}, {}: {} workers × {:?}, {:.1} s from the first upstream fetch; \
             upstream fetches {} (ok {}, failed {:?}{}) vs ideal {} (cycle {:?}); \
             max concurrent fetches {}; API uses ok {}, failed {} {:?}; \
             rejected at the sim {} (40001: {}, 42001: {}); {} token fetches {}",
            self.sdk.name(),
            self.mode,
            self.workers,
            self.duration,
            self.elapsed.as_secs_f64(),
            self.fetches,
            self.fetch_ok,
            self.fetch_failed,
            self.quota_out.map_or(String::new(), |d| format!(
                ", daily quota gone {:.1} s after the first fetch",
                d.as_secs_f64()
            )),
            self.ideal,
            self.cycle,
            self.max_concurrent,
            self.uses_ok,
            self.failed,
            self.errors,
            self.rejected,
            self.uses_invalid,
            self.uses_expired,
            self.sdk.name(),
            self.token_fetches,
        )
    }

    /// A row of BENCHMARKS.md's SDK table.
    pub fn row(&self) -> String {
        format!(
            "| {} | {} | {} s ({:.1} s from the first fetch) | {} | {} | {:.2} | {} | {} | {} | {} |",
            self.mode,
            self.workers,
            self.duration.as_secs(),
            self.elapsed.as_secs_f64(),
            self.ideal,
            self.fetches,
            self.ratio(),
            self.uses_ok,
            self.failed,
            self.max_concurrent,
            self.rejected,
        )
    }

    /// All raw numbers.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "sdk": self.sdk.name(),
            "mode": self.mode,
            "workers": self.workers,
            "duration_s": self.duration.as_secs_f64(),
            "cycle_s": self.cycle.as_secs_f64(),
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ideal_fetches": self.ideal,
            "fetch_calls": self.fetches,
            "fetch_ok": self.fetch_ok,
            "fetch_failed": self.fetch_failed,
            "fetches_per_ideal": self.ratio(),
            "max_concurrent_fetches": self.max_concurrent,
            "calls": self.calls,
            "uses_ok": self.uses_ok,
            "sim_uses_ok": self.sim_uses_ok,
            "uses_failed": self.failed,
            "errors": self.errors,
            "uses_rejected_at_sim": self.rejected,
            "uses_invalid_40001": self.uses_invalid,
            "uses_expired_42001": self.uses_expired,
            "sdk_token_fetches": self.token_fetches,
            "daily_quota": self.daily_quota,
            "quota_exhausted_after_s": self.quota_out.map(|d| d.as_secs_f64()),
        })
    }
}

/// One measured run of [`Work::Jsapi`] workers, from their reports and the
/// simulator.
#[derive(Debug, Clone)]
pub struct TicketRun {
    pub mode: String,
    pub workers: usize,
    pub duration: Duration,
    /// The ticket's life (the simulator's `ticket_ttl`).
    pub ticket_ttl: Duration,
    /// wechatpy's ticket clock tick the workers ran with.
    pub tick: Duration,
    /// From the first ticket minted to the end of the workers.
    pub elapsed: Duration,
    /// The first ticket + one per ticket life of `elapsed`: WeChat hands out
    /// the same ticket while it is valid, so no fleet needs more.
    pub ideal: u64,
    /// getticket calls with a valid token (`ticket_calls["jsapi"]`), failed
    /// ones included.
    pub ticket_calls: u64,
    /// New tickets minted (`tickets_issued["jsapi"]`); a call beyond these
    /// got a ticket someone already had.
    pub tickets_issued: u64,
    /// Failed getticket calls by cause (`"45009"`: the daily ticket quota;
    /// `"40001"`, `"42001"`: the token was rejected, a call not in
    /// `ticket_calls`).
    pub ticket_failed: BTreeMap<String, u64>,
    /// getticket calls refused for their token (40001, 40014, 42001).
    pub ticket_token_rejected: u64,
    pub max_concurrent: u64,
    /// Signatures the workers made (uses).
    pub signatures: u64,
    /// Signatures the simulator accepted, as the workers counted them.
    pub signatures_ok: u64,
    /// The simulator's own counts (equal to the workers' unless a reply was
    /// lost).
    pub sim_signatures_ok: u64,
    pub sim_signatures_bad: u64,
    /// Refused signatures by the simulator's reason.
    pub refused: BTreeMap<String, u64>,
    /// Uses that failed before a signature was made or checked (no
    /// ticket: an errcode or error name), by cause.
    pub errors: BTreeMap<String, u64>,
    /// Distinct tickets the workers signed with, and how many of them the
    /// simulator never issued (must be 0).
    pub tickets_seen: usize,
    pub tickets_unknown: usize,
    /// Ticket fetches the workers' SDKs began (see
    /// [`WorkerReport::ticket_fetches`]).
    pub sdk_ticket_fetches: u64,
    /// The longest `get_jsapi_ticket()` of any worker.
    pub max_ticket_wait: Duration,
    /// Upstream token fetches (`fetch_calls`) and those the SDKs made.
    pub token_fetches: u64,
    pub sdk_token_fetches: u64,
    /// The simulator's getticket quota per type and day.
    pub ticket_quota: u32,
}

impl TicketRun {
    /// Reads the simulator now (call it right after the workers ended).
    pub fn measure(
        mode: impl Into<String>,
        fleet: &Fleet,
        workload: &Workload,
        reports: &[WorkerReport],
    ) -> anyhow::Result<Self> {
        let end = unix_ms();
        let Work::Jsapi { tick } = workload.work else {
            bail!("not a jsapi workload: {:?}", workload.work);
        };
        let app = fleet.app();
        let issued: Vec<_> = app
            .issued_tickets
            .iter()
            .filter(|t| t.kind == TICKET_TYPE)
            .collect();
        let first = issued.first().context("no ticket was issued")?.issued_at_ms;
        let elapsed = Duration::from_millis(end.saturating_sub(first));
        let ticket_ttl = fleet.timing.ticket_ttl;
        let lives = u64::try_from(elapsed.as_millis() / ticket_ttl.as_millis().max(1))?;
        let get = |m: &BTreeMap<String, u64>| m.get(TICKET_TYPE).copied().unwrap_or(0);
        let mut refused = BTreeMap::new();
        let mut errors = BTreeMap::new();
        for r in reports {
            for (k, n) in &r.refused {
                *refused.entry(k.clone()).or_default() += n;
            }
            for (k, n) in r.errors.iter().filter(|(k, _)| !k.starts_with("refused: ")) {
                *errors.entry(k.clone()).or_default() += n;
            }
        }
        let seen: std::collections::BTreeSet<&str> = reports
            .iter()
            .flat_map(|r| r.tickets.iter().map(String::as_str))
            .collect();
        let tickets_unknown = seen
            .iter()
            .filter(|t| !issued.iter().any(|i| i.ticket == **t))
            .count();
        Ok(Self {
            mode: mode.into(),
            workers: reports.len(),
            duration: workload.duration,
            ticket_ttl,
            tick,
            elapsed,
            ideal: 1 + lives,
            ticket_calls: get(&app.ticket_calls),
            tickets_issued: get(&app.tickets_issued),
            ticket_token_rejected: app
                .ticket_failed
                .iter()
                .filter(|(k, _)| k.parse().is_ok_and(wxtoken_common::is_token_rejected))
                .map(|(_, n)| n)
                .sum(),
            ticket_failed: app.ticket_failed.clone(),
            max_concurrent: get(&app.max_concurrent_ticket_fetches),
            signatures: reports.iter().map(|r| r.calls).sum(),
            signatures_ok: reports.iter().map(|r| r.ok).sum(),
            sim_signatures_ok: app.signatures_ok,
            sim_signatures_bad: app.signatures_bad,
            refused,
            errors,
            tickets_seen: seen.len(),
            tickets_unknown,
            sdk_ticket_fetches: reports.iter().map(|r| r.ticket_fetches).sum(),
            max_ticket_wait: reports
                .iter()
                .map(|r| r.max_ticket_wait)
                .max()
                .unwrap_or_default(),
            token_fetches: app.fetch_calls,
            sdk_token_fetches: reports.iter().map(|r| r.token_fetches).sum(),
            ticket_quota: wechat_sim::SimConfig::default().ticket_daily_quota,
        })
    }

    /// Signatures the simulator refused.
    pub fn refused_total(&self) -> u64 {
        self.refused.values().sum()
    }

    /// Uses that failed for any reason (refused, or no ticket).
    pub fn failed(&self) -> u64 {
        self.signatures.saturating_sub(self.signatures_ok)
    }

    /// getticket calls per ideal call.
    pub fn ratio(&self) -> f64 {
        self.ticket_calls as f64 / self.ideal.max(1) as f64
    }

    /// One paragraph for a log.
    pub fn summary(&self) -> String {
        format!(
            "wechatpy jsapi, {}: {} workers × {:?} (tick {:?}), {:.1} s from the first ticket; \
             getticket calls {} ({} new tickets, failed {:?}, {} more refused for their token) \
             vs ideal {} (life {:?}); \
             max concurrent getticket {}; signatures {} ok {}, refused {} {:?}, \
             other failures {:?} (sim: ok {}, bad {}); {} tickets seen ({} never issued); \
             wechatpy getticket calls {}, longest get_jsapi_ticket {:?}; \
             upstream token fetches {}, wechatpy token fetches {}",
            self.mode,
            self.workers,
            self.duration,
            self.tick,
            self.elapsed.as_secs_f64(),
            self.ticket_calls,
            self.tickets_issued,
            self.ticket_failed,
            self.ticket_token_rejected,
            self.ideal,
            self.ticket_ttl,
            self.max_concurrent,
            self.signatures,
            self.signatures_ok,
            self.refused_total(),
            self.refused,
            self.errors,
            self.sim_signatures_ok,
            self.sim_signatures_bad,
            self.tickets_seen,
            self.tickets_unknown,
            self.sdk_ticket_fetches,
            self.max_ticket_wait,
            self.token_fetches,
            self.sdk_token_fetches,
        )
    }

    /// All raw numbers.
    pub fn json(&self) -> serde_json::Value {
        json!({
            "sdk": Sdk::Wechatpy.name(),
            "work": "jsapi",
            "mode": self.mode,
            "workers": self.workers,
            "duration_s": self.duration.as_secs_f64(),
            "ticket_ttl_s": self.ticket_ttl.as_secs_f64(),
            "tick_ms": self.tick.as_secs_f64() * 1000.0,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "ideal_ticket_calls": self.ideal,
            "ticket_calls": self.ticket_calls,
            "tickets_issued": self.tickets_issued,
            "ticket_failed": self.ticket_failed,
            "ticket_calls_token_rejected": self.ticket_token_rejected,
            "ticket_calls_per_ideal": self.ratio(),
            "max_concurrent_ticket_fetches": self.max_concurrent,
            "signatures": self.signatures,
            "signatures_ok": self.signatures_ok,
            "signatures_refused": self.refused_total(),
            "refused_by_reason": self.refused,
            "other_failures": self.errors,
            "sim_signatures_ok": self.sim_signatures_ok,
            "sim_signatures_bad": self.sim_signatures_bad,
            "tickets_seen": self.tickets_seen,
            "tickets_seen_never_issued": self.tickets_unknown,
            "sdk_ticket_fetches": self.sdk_ticket_fetches,
            "max_ticket_wait_ms": self.max_ticket_wait.as_secs_f64() * 1000.0,
            "upstream_token_fetches": self.token_fetches,
            "sdk_token_fetches": self.sdk_token_fetches,
            "ticket_daily_quota": self.ticket_quota,
        })
    }
}

/// Waits until every replica of `fleet` answers `GET /readyz` with success,
/// at most `deadline` in all.
pub async fn wait_ready(fleet: &Fleet, deadline: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()?;
    let until = Instant::now() + deadline;
    for r in &fleet.replicas {
        let url = format!("http://{}/readyz", r.http);
        loop {
            let ok = http
                .get(&url)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ok {
                break;
            }
            if Instant::now() >= until {
                bail!("replica {} never became ready ({url})", r.replica_id);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(())
}
