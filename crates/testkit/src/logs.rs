//! Test logging: silent by default, a `tracing` subscriber on the test writer
//! when `TEST_LOG` is set.
//!
//! This is the one place in the workspace's tests that installs a
//! subscriber; library code only emits events. It does not configure logging
//! for binaries (`main` does that).

use std::sync::Once;

use tracing_subscriber::EnvFilter;

/// Installs the test subscriber once per process; later calls do nothing.
///
/// Without the env var `TEST_LOG` nothing is installed and tests stay
/// silent. With it, events go through `tracing_subscriber::fmt` to the test
/// writer (so `cargo test` captures them per test and prints them only for
/// failures, or always with `--nocapture`), filtered by `RUST_LOG` or, if that
/// is unset or invalid, at `debug`.
///
/// ```sh
/// TEST_LOG=1 RUST_LOG=wxtoken=trace cargo test -p wxtoken-coordinator -- --nocapture
/// ```
pub fn init_tracing() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        if std::env::var_os("TEST_LOG").is_none() {
            return;
        }
        let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("debug"));
        // Another subscriber may already be installed (e.g. by a test that
        // set its own); keep it rather than panicking.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_test_writer()
            .try_init();
    });
}
