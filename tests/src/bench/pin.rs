//! CPU pinning for the gateway bench's second layout: the bench process
//! (loader and simulator) on one core, the proxy under test on another, as
//! when a proxy has a machine of its own. `sched_setaffinity` on every
//! thread of a process; threads started later inherit their creator's.

use anyhow::{Context, Result};
use nix::sched::{CpuSet, sched_setaffinity};
use nix::unistd::Pid;

/// Cores this process may run on (read it before pinning anything: it
/// counts the calling thread's affinity).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pins every thread of process `pid` (this process: `None`) to `core`.
pub fn pin(pid: Option<u32>, core: usize) -> Result<()> {
    let dir = match pid {
        Some(p) => format!("/proc/{p}/task"),
        None => "/proc/self/task".to_owned(),
    };
    let mut set = CpuSet::new();
    set.set(core).context("core number")?;
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {dir}"))? {
        let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        else {
            continue;
        };
        // A thread may end meanwhile.
        let _ = sched_setaffinity(Pid::from_raw(tid), &set);
    }
    Ok(())
}

/// Lets every thread of this process run on cores `0..cores` again.
pub fn unpin_self(cores: usize) -> Result<()> {
    let mut set = CpuSet::new();
    for core in 0..cores {
        set.set(core).context("core number")?;
    }
    for entry in std::fs::read_dir("/proc/self/task").context("reading /proc/self/task")? {
        if let Some(tid) = entry?
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<i32>().ok())
        {
            let _ = sched_setaffinity(Pid::from_raw(tid), &set);
        }
    }
    Ok(())
}
