//! The chaos runner never goes silent: a step that blocks the runtime (the
//! hidden `--stall` hook) ends the run with a failing report naming the
//! step within seconds (the run's processes are killed by the watchdog).

use std::process::Command;
use std::time::{Duration, Instant};

#[test]
fn a_stalled_chaos_step_ends_in_a_failing_report() {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_chaos"))
        .args(["--duration", "60s", "--replicas", "1", "--readers", "1"])
        .args(["--faults", "none", "--stall", "10m"])
        .env("WXTOKEN_BIN", wxtoken_e2e::wxtoken_bin())
        .output()
        .expect("chaos runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        started.elapsed() < Duration::from_secs(50),
        "took {:?}",
        started.elapsed()
    );
    assert!(
        stderr.contains("stalled: step `a blocking call (--stall)`"),
        "{stderr}"
    );
    let report = stdout.lines().last().unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(report).expect("a JSON report");
    assert_eq!(v["passed"], false);
    assert!(
        v["violations"][0].as_str().unwrap().contains("stalled"),
        "{v}"
    );
}
