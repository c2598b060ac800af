//! What the daemon knows about its connectors right now: each one's state (Kafka Connect's
//! names), last error and counters, plus the connector files it rejected. Read by `/health` and
//! `/metrics`; written by the supervisor and the connectors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use crate::sink::SinkStats;
use crate::source::SourceStats;

/// A connector's state, with Kafka Connect's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// Its loop runs (it may still be waiting for Kafka; see the log).
    Running,
    /// It failed and waits to be restarted (with backoff).
    Failed,
    /// Paused through the REST API: drained, not reading or writing, resumable.
    Paused,
    /// Stopped through the REST API, or draining on its way out.
    Stopped,
}

#[derive(Debug, Clone)]
pub enum Stats {
    Source(Arc<SourceStats>),
    Sink(Arc<SinkStats>),
}

#[derive(Debug)]
struct Current {
    state: State,
    error: Option<String>,
    since: Instant,
}

/// One connector as launched from one version of its file.
#[derive(Debug)]
pub struct ConnectorStatus {
    pub name: String,
    pub kind: &'static str,
    pub file: PathBuf,
    pub stats: Stats,
    /// The config it runs with (a parked connector's is updated by reloads).
    pub config: Mutex<crate::config::ConnectorConfig>,
    /// Restarts after failures (not reloads).
    pub restarts: AtomicU64,
    current: Mutex<Current>,
}

impl ConnectorStatus {
    pub fn new(config: &crate::config::ConnectorConfig, stats: Stats) -> ConnectorStatus {
        ConnectorStatus {
            name: config.name.clone(),
            kind: config.kind.name(),
            file: config.file.clone(),
            stats,
            config: Mutex::new(config.clone()),
            restarts: AtomicU64::new(0),
            current: Mutex::new(Current { state: State::Running, error: None, since: Instant::now() }),
        }
    }

    fn set(&self, state: State, error: Option<String>) {
        let mut c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        *c = Current { state, error, since: Instant::now() };
    }

    pub fn running(&self) {
        self.set(State::Running, None);
    }

    pub fn failed(&self, error: String) {
        self.restarts.fetch_add(1, Ordering::Relaxed);
        self.set(State::Failed, Some(error));
    }

    pub fn stopped(&self) {
        self.set(State::Stopped, None);
    }

    pub fn paused(&self) {
        self.set(State::Paused, None);
    }

    /// The state, the last error (when failed) and how long it has been in that state.
    pub fn state(&self) -> (State, Option<String>, std::time::Duration) {
        let c = self.current.lock().unwrap_or_else(|p| p.into_inner());
        (c.state, c.error.clone(), c.since.elapsed())
    }

    pub fn config(&self) -> crate::config::ConnectorConfig {
        self.config.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why the connector is not healthy, if it is not: failed, or (sink) a partition stalled.
    pub fn problem(&self) -> Option<String> {
        let (state, error, _) = self.state();
        match state {
            State::Failed => return Some(error.unwrap_or_else(|| "failed".into())),
            // Paused or stopped on purpose (REST API), or draining for a reload: not a fault.
            State::Paused | State::Stopped => return None,
            State::Running => {}
        }
        if let Stats::Sink(s) = &self.stats {
            let stalled = s.stalled_partitions.load(Ordering::Relaxed);
            if stalled > 0 {
                return Some(format!(
                    "{stalled} partition(s) stalled: the topic was deleted and re-created (its offsets went back, or its id changed); see the log"
                ));
            }
        }
        None
    }
}

/// Every running connector, and the connector files that were rejected.
#[derive(Debug, Default)]
pub struct Registry {
    connectors: RwLock<BTreeMap<String, Arc<ConnectorStatus>>>,
    rejected: RwLock<BTreeMap<PathBuf, String>>,
}

impl Registry {
    pub fn insert(&self, status: Arc<ConnectorStatus>) {
        self.connectors.write().unwrap_or_else(|p| p.into_inner()).insert(status.name.clone(), status);
    }

    pub fn remove(&self, name: &str) {
        self.connectors.write().unwrap_or_else(|p| p.into_inner()).remove(name);
    }

    pub fn connectors(&self) -> Vec<Arc<ConnectorStatus>> {
        self.connectors.read().unwrap_or_else(|p| p.into_inner()).values().cloned().collect()
    }

    pub fn get(&self, name: &str) -> Option<Arc<ConnectorStatus>> {
        self.connectors.read().unwrap_or_else(|p| p.into_inner()).get(name).cloned()
    }

    pub fn set_rejected(&self, rejected: BTreeMap<PathBuf, String>) {
        *self.rejected.write().unwrap_or_else(|p| p.into_inner()) = rejected;
    }

    pub fn rejected(&self) -> BTreeMap<PathBuf, String> {
        self.rejected.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}
