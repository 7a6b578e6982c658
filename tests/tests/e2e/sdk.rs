//! Issue 5, "prove it" 3: an existing SDK, unchanged. Twenty wechatpy
//! processes (tests/sdk/wechatpy_worker.py) call a real API through wechatpy
//! (`client.misc.get_wechat_ips()` → the sim's `cgi-bin/getcallbackip`) for
//! 60 s, fetching their token from two `wxtoken serve` replicas'
//! WeChat-compatible `GET /cgi-bin/token`. The fleet makes one upstream
//! fetch per refresh cycle and no API use fails.
//!
//! For comparison, the same twenty workers then fetch straight from the
//! simulator, sharing the token through wechatpy's own `RedisStorage` (what
//! wechatpy fleets run today); those figures are printed, not asserted.
//! BENCHMARKS.md records both.
//!
//! The Python environment is `WXTOKEN_SDK_PYTHON` (a python with the
//! packages of tests/sdk/requirements.txt) or a venv this test creates under
//! the target directory (`target/sdk-venv`) with `python3 -m venv` + `pip`.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wxtoken_e2e::{APPID, Fleet, SECRET, Timing};

const WORKERS: usize = 20;
/// How long each worker calls the API.
const DURATION: Duration = Duration::from_secs(60);
/// Each worker's pause between two API calls.
const PAUSE: Duration = Duration::from_millis(100);
/// WeChat's token lifetime, to scale wechatpy's refresh margin by.
const REAL_TTL: Duration = Duration::from_secs(7200);
/// wechatpy refetches a token it fetched itself when less than this remains
/// (`BaseWeChatClient.access_token`: `self.expires_at - timestamp > 60`).
const WECHATPY_MARGIN: Duration = Duration::from_secs(60);

/// Several lifetimes in 60 s. `refresh_ahead` > `overlap`, as in production
/// (10 min and WeChat's 5 min).
fn timing() -> Timing {
    Timing {
        token_ttl: Duration::from_secs(12),
        overlap: Duration::from_secs(3),
        refresh_ahead: Duration::from_secs(4),
        ..Timing::default()
    }
}

/// wechatpy's 60 s margin scaled like the token lifetime (7200 s → `ttl`).
fn scaled_margin(ttl: Duration) -> Duration {
    WECHATPY_MARGIN.mul_f64(ttl.as_secs_f64() / REAL_TTL.as_secs_f64())
}

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("sdk")
}

/// A python with wechatpy: `WXTOKEN_SDK_PYTHON`, or `target/sdk-venv`
/// (created, or recreated when tests/sdk/requirements.txt changed).
fn sdk_python() -> PathBuf {
    if let Some(python) = std::env::var_os("WXTOKEN_SDK_PYTHON") {
        let python = PathBuf::from(python);
        assert_imports(&python, "WXTOKEN_SDK_PYTHON");
        return python;
    }
    let requirements = sdk_dir().join("requirements.txt");
    let wanted = std::fs::read_to_string(&requirements).expect("tests/sdk/requirements.txt");
    let exe = std::env::current_exe().expect("test exe path");
    // target/<profile>/deps/<test> → target/sdk-venv
    let target = exe
        .parent()
        .and_then(Path::parent)
        .and_then(Path::parent)
        .expect("target dir");
    let venv = target.join("sdk-venv");
    let python = venv.join("bin").join("python");
    let stamp = venv.join("wxtoken-requirements.txt");
    if python.exists() && std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return python;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let out = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is needed for the wechatpy test ({e}): apt-get install -y python3 python3-venv, or set WXTOKEN_SDK_PYTHON"
            )
        });
    assert!(
        out.status.success(),
        "`python3 -m venv {}` failed: apt-get install -y python3-venv (or set WXTOKEN_SDK_PYTHON)\n{}",
        venv.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = Command::new(&python)
        .args(["-m", "pip", "install", "-q", "--disable-pip-version-check"])
        .arg("-r")
        .arg(&requirements)
        .output()
        .expect("pip runs");
    assert!(
        out.status.success(),
        "pip install -r {} failed:\n{}{}",
        requirements.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_imports(&python, "the new venv");
    std::fs::write(&stamp, wanted).expect("write venv stamp");
    python
}

/// Fails unless `python` imports what the worker needs.
fn assert_imports(python: &Path, what: &str) {
    let out = Command::new(python)
        .args(["-c", "from wechatpy import WeChatClient; import redis"])
        .output();
    let ok = out.as_ref().is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{what} ({}) cannot import wechatpy and redis (pip install -r tests/sdk/requirements.txt): {}",
        python.display(),
        out.map(|o| String::from_utf8_lossy(&o.stderr).into_owned())
            .unwrap_or_else(|e| e.to_string())
    );
}

/// Where one worker fetches its token, and the shared Redis session if any.
struct WorkerSpec {
    token_url: String,
    /// (url, key prefix) of wechatpy's `RedisStorage`.
    redis: Option<(String, String)>,
}

/// The JSON line one worker prints at the end.
#[derive(Debug, Default)]
struct WorkerReport {
    calls: u64,
    ok: u64,
    failed: u64,
    token_fetches: u64,
    errors: BTreeMap<String, u64>,
}

/// The worker processes of one run; any still running when this is dropped
/// (a failed assertion) are killed.
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
/// runs for `DURATION`).
async fn run_workers(
    python: &Path,
    fleet: &Fleet,
    margin: Duration,
    specs: &[WorkerSpec],
) -> Vec<WorkerReport> {
    let script = sdk_dir().join("wechatpy_worker.py");
    let api_base = format!("{}/cgi-bin/", fleet.sim.base_url());
    let secs = |d: Duration| d.as_secs_f64().to_string();
    let mut workers = Workers(Vec::new());
    let mut readies = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        let out_path = fleet.dir.path().join(format!("wechatpy-{i}.out"));
        let err_path = fleet.dir.path().join(format!("wechatpy-{i}.err"));
        let ready = fleet.dir.path().join(format!("wechatpy-{i}.ready"));
        let mut cmd = Command::new(python);
        cmd.arg(&script)
            .args(["--appid", APPID])
            .args(["--token-url", &spec.token_url])
            .args(["--api-base", &api_base])
            .args(["--margin", &secs(margin)])
            .args(["--duration", &secs(DURATION)])
            .args(["--pause", &secs(PAUSE)])
            .arg("--ready-file")
            .arg(&ready)
            .env("WECHAT_SECRET", SECRET)
            .stdin(Stdio::piped())
            .stdout(File::create(&out_path).expect("stdout file"))
            .stderr(File::create(&err_path).expect("stderr file"));
        if let Some((url, prefix)) = &spec.redis {
            cmd.args(["--redis-url", url, "--redis-prefix", prefix]);
        }
        let child = cmd.spawn().expect("python starts");
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
        panic!(
            "the wechatpy workers did not all start:\n{}",
            stderr.join("\n")
        );
    }
    for (child, _, _) in &mut workers.0 {
        let mut stdin = child.stdin.take().expect("piped stdin");
        stdin.write_all(b"go\n").expect("worker reads its go");
    }
    let until = Instant::now() + DURATION + Duration::from_secs(60);
    let mut reports = Vec::new();
    for (child, out_path, err_path) in &mut workers.0 {
        let status = loop {
            if let Some(status) = child.try_wait().expect("try_wait") {
                break status;
            }
            assert!(
                Instant::now() < until,
                "a wechatpy worker ran past its deadline"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        let stdout = std::fs::read_to_string(out_path).unwrap_or_default();
        let stderr = std::fs::read_to_string(err_path).unwrap_or_default();
        assert!(
            status.success(),
            "wechatpy worker failed: {status}\n{stderr}"
        );
        let line = stdout.lines().last().expect("a report line");
        let v: serde_json::Value = serde_json::from_str(line).expect("report is JSON");
        let n = |k: &str| v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"));
        let errors = v["errors"]
            .as_object()
            .expect("errors")
            .iter()
            .map(|(k, n)| (k.clone(), n.as_u64().expect("a count")))
            .collect();
        reports.push(WorkerReport {
            calls: n("calls"),
            ok: n("ok"),
            failed: n("failed"),
            token_fetches: n("token_fetches"),
            errors,
        });
    }
    reports
}

fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970");
    u64::try_from(since.as_millis()).expect("fits")
}

/// One measured run: a row of BENCHMARKS.md's table.
#[derive(Debug)]
struct Run {
    mode: &'static str,
    /// From the first upstream fetch to the end of the workers.
    elapsed: Duration,
    /// The first fetch + one per refresh cycle of `elapsed`.
    ideal: u64,
    fetches: u64,
    max_concurrent: u64,
    /// API calls that returned the IP list to the worker.
    uses_ok: u64,
    /// API calls that raised to the worker (after wechatpy's own retry).
    failed: u64,
    errors: BTreeMap<String, u64>,
    /// Uses the simulator rejected (40001/42001), including those wechatpy
    /// healed itself (`auto_retry`: refetch, retry once) before its caller
    /// saw anything.
    rejected: u64,
}

impl Run {
    fn measure(
        mode: &'static str,
        fleet: &Fleet,
        cycle: Duration,
        reports: &[WorkerReport],
    ) -> Self {
        let end = unix_ms();
        let app = fleet.app();
        let first = app.issued.first().expect("a token was issued").issued_at_ms;
        let elapsed = Duration::from_millis(end.saturating_sub(first));
        let cycles = u64::try_from(elapsed.as_millis() / cycle.as_millis()).expect("fits");
        let mut errors = BTreeMap::new();
        for (k, n) in reports.iter().flat_map(|r| &r.errors) {
            *errors.entry(k.clone()).or_default() += n;
        }
        let run = Self {
            mode,
            elapsed,
            ideal: 1 + cycles,
            fetches: app.fetch_calls,
            max_concurrent: app.max_concurrent_fetches,
            uses_ok: reports.iter().map(|r| r.ok).sum(),
            failed: reports.iter().map(|r| r.failed).sum(),
            errors,
            rejected: app.uses_invalid + app.uses_expired,
        };
        let calls: u64 = reports.iter().map(|r| r.calls).sum();
        assert_eq!(calls, run.uses_ok + run.failed);
        assert_eq!(
            app.uses_ok, run.uses_ok,
            "every use a worker counted as ok was accepted by the simulator"
        );
        // When the daily quota ran out: the last token it allowed.
        let quota_out = (!app.fetch_failed.is_empty())
            .then(|| app.issued.last())
            .flatten()
            .map(|t| Duration::from_millis(t.issued_at_ms - first));
        let token_fetches: u64 = reports.iter().map(|r| r.token_fetches).sum();
        eprintln!(
            "wechatpy, {mode}: {WORKERS} workers × {DURATION:?}, {:.1} s from the first upstream fetch; \
             upstream fetches {} (ok {}, failed {:?}{}) vs ideal {} (cycle {cycle:?}); \
             max concurrent fetches {}; API uses ok {}, failed {} {:?}; \
             rejected at the sim {} (40001: {}, 42001: {}); wechatpy token fetches {token_fetches}",
            elapsed.as_secs_f64(),
            run.fetches,
            app.fetch_ok,
            app.fetch_failed,
            quota_out.map_or(String::new(), |d| format!(
                ", daily quota gone {:.1} s after the first fetch",
                d.as_secs_f64()
            )),
            run.ideal,
            run.max_concurrent,
            run.uses_ok,
            run.failed,
            run.errors,
            run.rejected,
            app.uses_invalid,
            app.uses_expired,
        );
        run
    }

    fn row(&self) -> String {
        format!(
            "| {} | {WORKERS} | {} s ({:.1} s from the first fetch) | {} | {} | {:.2} | {} | {} | {} | {} |",
            self.mode,
            DURATION.as_secs(),
            self.elapsed.as_secs_f64(),
            self.ideal,
            self.fetches,
            self.fetches as f64 / self.ideal as f64,
            self.uses_ok,
            self.failed,
            self.max_concurrent,
            self.rejected,
        )
    }
}

async fn ready(http: &reqwest::Client, base: &str) {
    let ok = wxtoken_testkit::wait_until_async(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async {
            http.get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        },
    )
    .await;
    assert!(ok, "{base} never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wechatpy_fleet_through_two_replicas_makes_one_fetch_per_lifetime() {
    let python = sdk_python();
    let timing = timing();
    let margin = scaled_margin(timing.token_ttl);

    // Through the coordinator: two replicas, the workers split between them.
    let coordinated = {
        let mut fleet = Fleet::new(timing.clone()).await;
        fleet.spawn_replicas(2);
        fleet.wait_generation(1, Duration::from_secs(15)).await;
        let http = reqwest::Client::new();
        for r in &fleet.replicas {
            ready(&http, &format!("http://{}", r.http)).await;
        }
        let specs: Vec<WorkerSpec> = (0..WORKERS)
            .map(|i| WorkerSpec {
                token_url: format!("http://{}/cgi-bin/token", fleet.replicas[i % 2].http),
                redis: None,
            })
            .collect();
        let reports = run_workers(&python, &fleet, margin, &specs).await;
        let cycle = timing.token_ttl - timing.refresh_ahead;
        let run = Run::measure("through 2 coordinator replicas", &fleet, cycle, &reports);
        fleet.assert_logs_clean();
        run
    };

    // Today: straight to WeChat (the sim), sharing wechatpy's RedisStorage,
    // on a fresh sim and Redis.
    let direct = {
        let fleet = Fleet::new(timing.clone()).await;
        let specs: Vec<WorkerSpec> = (0..WORKERS)
            .map(|_| WorkerSpec {
                token_url: format!("{}/cgi-bin/token", fleet.sim.base_url()),
                redis: Some((fleet.redis.url(), fleet.prefix.clone())),
            })
            .collect();
        let reports = run_workers(&python, &fleet, margin, &specs).await;
        // wechatpy's own cycle: the token's lifetime less its margin.
        let cycle = timing.token_ttl - margin;
        Run::measure("direct, wechatpy RedisStorage", &fleet, cycle, &reports)
    };

    eprintln!(
        "| mode | workers | duration | ideal fetches | upstream fetches | fetches/ideal | API uses ok | failed uses | max concurrent fetches | uses rejected, retried by wechatpy |\n|---|---|---|---|---|---|---|---|---|---|\n{}\n{}",
        coordinated.row(),
        direct.row()
    );

    let c = &coordinated;
    assert!(
        c.fetches.abs_diff(c.ideal) <= 1,
        "upstream fetches {} vs ideal {}",
        c.fetches,
        c.ideal
    );
    assert_eq!(c.max_concurrent, 1, "one upstream fetch at a time");
    assert_eq!(c.failed, 0, "failed API uses: {:?}", c.errors);
    let min_calls = WORKERS as u64 * DURATION.as_secs() * 5;
    assert!(
        c.uses_ok >= min_calls,
        "the workers made too few calls to prove anything: {}",
        c.uses_ok
    );
    // `/cgi-bin/token` answers `expires_in` = the token's whole remaining
    // life, but once the fleet refreshes (`refresh_ahead` before expiry) the
    // old token dies after WeChat's overlap, which is shorter. So a worker
    // may use its cached old token once after it died: 40001, which
    // wechatpy heals by refetching and retrying. At most one such use per
    // worker per refresh.
    assert!(
        c.rejected <= WORKERS as u64 * c.fetches,
        "{} uses rejected by the sim",
        c.rejected
    );
}
