//! A deadline on every step of a chaos run, kept by an OS thread of its own.
//!
//! A step that never ends (an await without a timeout, or a blocking call
//! that holds a runtime worker, so that even `tokio::time::timeout` cannot
//! fire) used to leave the runner silent until an outer timeout killed it.
//! The watchdog thread runs outside the runtime: when the current step
//! overruns its deadline it prints a failing report naming the step, kills
//! the processes the run started (replicas, readers, Redis: `std::process::exit`
//! runs no destructor) and exits 1. It does not judge anything else.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use std::process::Child;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Fleet;

/// The step being run and when it must be over.
#[derive(Debug)]
struct Step {
    name: String,
    limit: Duration,
    deadline: Instant,
    /// Processes to kill if the run is abandoned.
    pids: Vec<u32>,
}

/// Cheap to clone; every clone arms the same watchdog.
#[derive(Debug, Clone)]
pub struct Watchdog {
    /// A plain mutex: held only to swap the step, never across an await.
    step: Arc<Mutex<Option<Step>>>,
    started: Instant,
}

impl Watchdog {
    /// Starts the watchdog thread, disarmed.
    pub fn start() -> Self {
        let dog = Self {
            step: Arc::new(Mutex::new(None)),
            started: Instant::now(),
        };
        let watched = dog.clone();
        std::thread::Builder::new()
            .name("chaos-watchdog".into())
            .spawn(move || watched.watch())
            .expect("spawning the watchdog thread");
        dog
    }

    /// From now on `name` runs and must be over within `limit`; `pids` are
    /// the run's processes at this point.
    pub fn step(&self, name: impl Into<String>, limit: Duration, pids: Vec<u32>) {
        let step = Step {
            name: name.into(),
            limit,
            deadline: Instant::now() + limit,
            pids,
        };
        if let Ok(mut s) = self.step.lock() {
            *s = Some(step);
        }
    }

    /// The run is over: nothing more to watch.
    pub fn disarm(&self) {
        if let Ok(mut s) = self.step.lock() {
            *s = None;
        }
    }

    fn watch(&self) {
        loop {
            // A watchdog's tick: how late a stall is reported, not a wait for anything.
            std::thread::sleep(Duration::from_millis(250));
            let overrun = match self.step.lock() {
                Ok(s) => s
                    .as_ref()
                    .filter(|s| Instant::now() > s.deadline)
                    .map(|s| (s.name.clone(), s.limit, s.pids.clone())),
                Err(_) => None,
            };
            if let Some((name, limit, pids)) = overrun {
                self.abandon(&name, limit, &pids);
            }
        }
    }

    fn abandon(&self, name: &str, limit: Duration, pids: &[u32]) -> ! {
        let at = self.started.elapsed().as_secs_f64();
        let why = format!(
            "stalled: step `{name}` did not finish within {limit:?} (at {at:.1}s of the run)"
        );
        eprintln!("[{at:>6.1}s] chaos: {why}; abandoning the run");
        for &pid in pids {
            if let Ok(pid) = i32::try_from(pid) {
                let _ = kill(Pid::from_raw(pid), Signal::SIGCONT);
                let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let report = serde_json::json!({ "passed": false, "violations": [why] });
        println!("chaos: FAILED ({why})");
        println!("{report}");
        std::process::exit(1)
    }
}

/// The processes of the run now: what the watchdog kills if it abandons it.
pub(super) fn pids(fleet: &Fleet, readers: &[Child]) -> Vec<u32> {
    let mut pids: Vec<u32> = fleet
        .replicas
        .iter()
        .filter_map(|r| u32::try_from(r.pid().as_raw()).ok())
        .collect();
    pids.extend(readers.iter().map(Child::id));
    pids.extend(fleet.redis.pid());
    pids
}
