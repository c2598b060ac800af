//! The test harness: where the cluster is, the binary under test, Kafka helpers, and a lock that
//! lets fault tests (which kill brokers) run alone while the other tests share the cluster.

#![allow(dead_code)]

pub mod daemon;
pub mod faults;
pub mod kafka;

use std::path::PathBuf;
use std::process::{Command, Output};
use std::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The bootstrap servers of the running test cluster.
pub fn bootstrap() -> String {
    std::env::var("MACKLAKE_BOOTSTRAP").unwrap_or_else(|_| {
        panic!(
            "MACKLAKE_BOOTSTRAP is not set: these tests need a running cluster. Run them through \
             `scripts/test`, or start one with `macklake cluster up` and export \
             MACKLAKE_BOOTSTRAP=$(macklake cluster bootstrap)"
        )
    })
}

/// The directory of the running test cluster (for tests that kill and restart nodes).
pub fn cluster_dir() -> PathBuf {
    std::env::var_os("MACKLAKE_CLUSTER_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("MACKLAKE_CLUSTER_DIR is not set: run the tests through `scripts/test`"))
}

/// The `macklake` binary built for these tests.
pub fn macklake() -> Command {
    Command::new(env!("CARGO_BIN_EXE_macklake"))
}

/// Runs `macklake ARGS` to completion and returns its output.
pub fn run(args: &[&str]) -> Output {
    macklake().args(args).output().expect("the macklake binary runs")
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A name no other test (or earlier run) uses: topics, groups, directories.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    format!(
        "{prefix}-{}-{}-{}",
        std::process::id(),
        nanos % 1_000_000_000,
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

static CLUSTER: RwLock<()> = RwLock::new(());

/// Taken by tests that only use the cluster.
pub fn shared_cluster() -> RwLockReadGuard<'static, ()> {
    CLUSTER.read().unwrap_or_else(|e| e.into_inner())
}

/// Taken by tests that kill or restart brokers: they run with no other test in flight.
pub fn exclusive_cluster() -> RwLockWriteGuard<'static, ()> {
    CLUSTER.write().unwrap_or_else(|e| e.into_inner())
}

/// Polls `check` until it returns Some or `timeout` passes; panics with `what` on timeout.
pub fn wait_for<T>(what: &str, timeout: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Processes whose command line contains `needle` (to prove nothing is left behind).
pub fn processes_mentioning(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if entry.file_name().to_string_lossy().parse::<u32>().is_err() {
            continue;
        }
        if let Ok(raw) = std::fs::read(entry.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&raw).replace('\0', " ");
            if cmd.contains(needle) {
                found.push(format!("{}: {}", entry.file_name().to_string_lossy(), cmd));
            }
        }
    }
    found
}
