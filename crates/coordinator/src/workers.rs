//! Per-core I/O workers for the HTTP listeners: `n` threads, each running a
//! current-thread tokio runtime of its own, to which the accept loop hands
//! whole connections. A request is then served start to finish on one
//! thread — its socket, its handler, the gateway's upstream connection and
//! the reply — and no call wakes another thread or parks one on a condvar:
//! that cross-thread traffic (futex wake-ups, context switches, work
//! stealing) cost the multi-thread runtime a fifth of a gateway call's CPU.
//! Connections go to the worker serving the fewest.
//!
//! Everything else of a replica (refresh loops, the event subscription,
//! Redis connections: `wxtoken_client::connect` creates those on the
//! runtime that built the pool) stays on the main runtime; handlers reach
//! it through channels, as before.
//!
//! It knows nothing of HTTP. [`lane`] tells code that keeps per-thread I/O
//! state (the gateway's idle upstream connections) which worker it runs on.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tracing::debug;

/// Work handed to a worker: builds its future on the worker's thread (so
/// the sockets it registers belong to that worker's reactor).
type Job = Box<dyn FnOnce() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

thread_local! {
    static LANE: Cell<usize> = const { Cell::new(0) };
}

/// The worker the calling thread is: `1..=n` on a worker thread, 0 on any
/// other thread (the main runtime, tests).
pub fn lane() -> usize {
    LANE.with(Cell::get)
}

/// The most workers one listener starts.
pub const MAX_WORKERS: usize = 64;

/// A set of worker threads; dropped or [`Workers::finish`]ed, they end
/// once what they serve has ended.
pub struct Workers {
    lanes: Vec<Lane>,
    done: Vec<oneshot::Receiver<()>>,
}

impl std::fmt::Debug for Workers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workers")
            .field("workers", &self.lanes.len())
            .finish_non_exhaustive()
    }
}

struct Lane {
    jobs: mpsc::UnboundedSender<Job>,
    /// Jobs running on it: where the next one goes.
    busy: Arc<AtomicUsize>,
}

/// Counts a job as running until it ends (or is dropped unfinished).
struct Busy(Arc<AtomicUsize>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Workers {
    /// Starts `n` (1..=[`MAX_WORKERS`]) worker threads named `{name}-{i}`.
    pub fn start(n: usize, name: &str) -> std::io::Result<Self> {
        let n = n.clamp(1, MAX_WORKERS);
        let mut lanes = Vec::with_capacity(n);
        let mut done = Vec::with_capacity(n);
        for i in 1..=n {
            let (jobs, rx) = mpsc::unbounded_channel();
            let (finished, finished_rx) = oneshot::channel();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            std::thread::Builder::new()
                .name(format!("{name}-{i}"))
                .spawn(move || {
                    LANE.with(|l| l.set(i));
                    runtime.block_on(drain(rx));
                    // Ends whatever a job left behind (a background task).
                    drop(runtime);
                    let _ = finished.send(());
                })?;
            lanes.push(Lane {
                jobs,
                busy: Arc::default(),
            });
            done.push(finished_rx);
        }
        Ok(Self { lanes, done })
    }

    /// Runs the future `make` builds on the least busy worker (on the
    /// calling runtime if that worker is gone).
    pub fn run<F, Fut>(&self, make: F)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Some(lane) = self
            .lanes
            .iter()
            .min_by_key(|l| l.busy.load(Ordering::Relaxed))
        else {
            tokio::spawn(make());
            return;
        };
        lane.busy.fetch_add(1, Ordering::Relaxed);
        let busy = Busy(lane.busy.clone());
        let job: Job = Box::new(move || {
            Box::pin(async move {
                let _busy = busy;
                make().await;
            })
        });
        if let Err(mpsc::error::SendError(job)) = lane.jobs.send(job) {
            tokio::spawn(job());
        }
    }

    /// Stops taking work and waits up to `grace` for the workers to end
    /// what they run (the caller has asked connections to close). `true`:
    /// every worker thread has ended.
    pub async fn finish(self, grace: Duration) -> bool {
        let Self { lanes, done } = self;
        drop(lanes);
        let all = futures_util::future::join_all(done);
        let ended = tokio::time::timeout(grace, all).await.is_ok();
        if !ended {
            debug!("http workers still busy; they end with the process");
        }
        ended
    }
}

/// The period of a worker's own timer (see [`drain`]); shorter than any
/// timer a request arms.
const TICK: Duration = Duration::from_millis(500);

/// A worker's loop: runs every job it is handed until the lane closes and
/// they have all ended.
///
/// It also keeps a timer of its own that is always due within [`TICK`].
/// tokio's time driver wakes its thread (an eventfd write, then one more
/// `epoll_wait`) whenever a timer is armed that is due before the one the
/// driver last slept towards — and every request arms one (hyper's header
/// read timeout, the request timeout) seconds away. With a timer always
/// due sooner, arming those costs no system call.
async fn drain(mut jobs: mpsc::UnboundedReceiver<Job>) {
    let mut running = JoinSet::new();
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            job = jobs.recv() => match job {
                Some(job) => {
                    running.spawn(job());
                }
                None => break,
            },
            Some(_) = running.join_next(), if !running.is_empty() => {}
            _ = tick.tick() => {}
        }
    }
    while running.join_next().await.is_some() {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_on_worker_threads_spread_by_load() {
        let workers = Workers::start(2, "test-worker").unwrap();
        let (tx, mut rx) = mpsc::unbounded_channel();
        let (release, hold) = tokio::sync::watch::channel(false);
        for _ in 0..4 {
            let (tx, mut hold) = (tx.clone(), hold.clone());
            workers.run(move || async move {
                let _ = tx.send((lane(), std::thread::current().name().map(str::to_owned)));
                let _ = hold.wait_for(|r| *r).await;
            });
        }
        let mut lanes = Vec::new();
        for _ in 0..4 {
            let (lane, name) = rx.recv().await.unwrap();
            assert!(name.unwrap().starts_with("test-worker-"));
            lanes.push(lane);
        }
        lanes.sort_unstable();
        // Each job is still running when the next is placed: two each.
        assert_eq!(lanes, vec![1, 1, 2, 2]);
        assert_eq!(lane(), 0, "the test's own thread is no worker");
        // Busy workers do not end before their jobs...
        let busy = Workers::start(1, "test-worker").unwrap();
        let mut held = hold.clone();
        busy.run(move || async move {
            let _ = held.wait_for(|r| *r).await;
        });
        assert!(!busy.finish(Duration::from_millis(100)).await);
        // ...and end once they have.
        release.send_replace(true);
        assert!(workers.finish(Duration::from_secs(5)).await);
    }
}
