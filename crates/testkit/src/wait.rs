//! Poll-with-deadline helpers, so tests wait for a condition instead of
//! sleeping for a guessed time.
//!
//! They only poll: they neither retry failed operations on their own nor
//! panic on timeout. The caller asserts on the returned `bool` and says what
//! it was waiting for.

use std::future::Future;
use std::time::{Duration, Instant};

/// Calls `f` until it returns `true` (then returns `true`) or `deadline` has
/// passed (then returns `false`), sleeping `poll` between calls.
///
/// `f` is always called at least once, and once more at the deadline. A
/// single call of `f` that blocks is not interrupted: give blocking calls
/// their own timeouts.
///
/// ```
/// # use std::time::{Duration, Instant};
/// let start = Instant::now();
/// let ready = wxtoken_testkit::wait_until(Duration::from_secs(2), Duration::from_millis(5), || {
///     start.elapsed() > Duration::from_millis(20)
/// });
/// assert!(ready, "condition never became true");
/// ```
pub fn wait_until(deadline: Duration, poll: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + deadline;
    loop {
        if f() {
            return true;
        }
        let now = Instant::now();
        if now >= end {
            return false;
        }
        std::thread::sleep(poll.min(end - now));
    }
}

/// The async form of [`wait_until`]: awaits `f()` until it yields `true` or
/// `deadline` has passed, sleeping `poll` (on the tokio timer) between calls.
///
/// Unlike the sync form, a call of `f` that is still pending at the deadline
/// is cancelled and counts as `false`, so a request hanging on a blackholed
/// connection cannot hang the test.
pub async fn wait_until_async<F, Fut>(deadline: Duration, poll: Duration, mut f: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, f()).await {
            Ok(true) => return true,
            Ok(false) => {}
            Err(_elapsed) => return false,
        }
        let now = tokio::time::Instant::now();
        if now >= end {
            return false;
        }
        tokio::time::sleep(poll.min(end - now)).await;
    }
}
