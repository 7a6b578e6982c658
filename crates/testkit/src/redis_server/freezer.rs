//! SIGSTOP / SIGCONT of a `redis-server` process, including the delayed
//! SIGCONT of [`RedisServer::pause`](crate::RedisServer::pause).
//!
//! It owns which process is frozen and the background threads that thaw it
//! later. It does not own the process: the server tells it the pid, and calls
//! [`Freezer::forget`] before it kills and reaps the child, so a late thaw can
//! never signal a pid that the kernel has handed to another process.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

#[derive(Debug, Default)]
pub(crate) struct Freezer {
    /// Guarded by a std `Mutex`: every critical section is a signal send and
    /// a few assignments, never an await, and thaw threads are plain threads.
    state: Mutex<FreezeState>,
    /// Wakes sleeping thaw threads when `ticket` changes, so a `thaw`,
    /// `forget` or newer `pause` ends them at once instead of at their
    /// deadline.
    wake: Condvar,
}

#[derive(Debug, Default)]
struct FreezeState {
    /// The process we stopped and have not continued yet.
    frozen: Option<Pid>,
    /// Bumped by every freeze, thaw and forget. A thaw thread only acts if
    /// the ticket is still the one its `pause` took: anything that happened
    /// since then supersedes it.
    ticket: u64,
}

impl Freezer {
    /// Stops `pid` with SIGSTOP until [`Freezer::thaw`]; cancels any pending
    /// delayed thaw.
    pub(crate) fn freeze(&self, pid: u32) {
        let mut state = self.lock();
        let pid = to_pid(pid);
        send(pid, Signal::SIGSTOP);
        state.frozen = Some(pid);
        state.ticket += 1;
        self.wake.notify_all();
    }

    /// Stops `pid` now and continues it after `duration`, from a background
    /// thread; returns at once.
    pub(crate) fn pause(self: &Arc<Self>, pid: u32, duration: Duration) {
        let ticket = {
            let mut state = self.lock();
            let pid = to_pid(pid);
            send(pid, Signal::SIGSTOP);
            state.frozen = Some(pid);
            state.ticket += 1;
            self.wake.notify_all();
            state.ticket
        };
        let deadline = Instant::now() + duration;
        let freezer = Arc::clone(self);
        std::thread::Builder::new()
            .name("redis-thaw".into())
            .spawn(move || freezer.thaw_at(ticket, deadline))
            .expect("cannot spawn the thread that thaws a paused redis-server");
    }

    /// Continues the frozen process, if any.
    pub(crate) fn thaw(&self) {
        let mut state = self.lock();
        Self::thaw_locked(&mut state);
        self.wake.notify_all();
    }

    /// Drops all knowledge of the frozen process without signalling it: call
    /// before killing it. Pending delayed thaws end without acting.
    pub(crate) fn forget(&self) {
        let mut state = self.lock();
        state.frozen = None;
        state.ticket += 1;
        self.wake.notify_all();
    }

    fn thaw_at(&self, ticket: u64, deadline: Instant) {
        let mut state = self.lock();
        loop {
            if state.ticket != ticket {
                return;
            }
            let now = Instant::now();
            if now >= deadline {
                Self::thaw_locked(&mut state);
                return;
            }
            state = self
                .wake
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    fn thaw_locked(state: &mut FreezeState) {
        if let Some(pid) = state.frozen.take() {
            send(pid, Signal::SIGCONT);
        }
        state.ticket += 1;
    }

    fn lock(&self) -> MutexGuard<'_, FreezeState> {
        // A panic while holding the lock leaves the state consistent (plain
        // assignments), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn to_pid(pid: u32) -> Pid {
    Pid::from_raw(i32::try_from(pid).expect("a child pid fits in i32"))
}

fn send(pid: Pid, signal: Signal) {
    if let Err(e) = kill(pid, signal) {
        // The caller holds the child, so the process exists unless it died
        // on its own; there is nothing to stop or continue then.
        tracing::warn!(%pid, ?signal, error = %e, "could not signal redis-server");
    }
}
