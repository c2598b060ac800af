//! Runs each connector on its own thread, restarts it with backoff when it fails, and applies
//! the connector directory's contents at start-up and at every reload.
//!
//! Reload rules (per connector, by name): a new name starts; a changed config stops the running
//! version (it drains, keeping its checkpoints and offsets) and then starts the new one; a name
//! no longer defined stops; an unchanged one is not touched. A file that fails validation never
//! stops what runs: the version loaded before keeps running and the error is reported. Two
//! versions of one connector never run at once (they would share checkpoints and a group).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::kafka_props::merged;
use crate::config::{ConfigError, ConnectorConfig, ConnectorKind, DaemonConfig};
use crate::sink::Sink;
use crate::source::Source;
use crate::source::claims::Claims;
use crate::status::{ConnectorStatus, Registry, State, Stats};
use crate::stop::Backoff;

/// What to do once a stopping connector has drained.
enum Then {
    Remove,
    Start(Box<ConnectorConfig>),
    /// Stay drained, in this state (paused or stopped through the REST API), until resumed.
    Park(State),
}

pub use crate::control::Request;

struct Slot {
    connector: ConnectorConfig,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    status: Arc<ConnectorStatus>,
    /// Set once it was asked to stop.
    then: Option<Then>,
    /// Drained and kept (paused or stopped through the REST API).
    parked: bool,
}

pub struct Supervisor {
    config: Arc<DaemonConfig>,
    registry: Arc<Registry>,
    claims: Arc<Claims>,
    slots: BTreeMap<String, Slot>,
    /// The last error reported for each rejected file (reported again only when it changes).
    rejected: BTreeMap<PathBuf, String>,
}

/// What a reload did, for the log and the READY status line.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Applied {
    pub started: Vec<String>,
    pub restarted: Vec<String>,
    pub stopped: Vec<String>,
    pub unchanged: usize,
    pub rejected: usize,
}

impl Supervisor {
    pub fn new(config: Arc<DaemonConfig>, registry: Arc<Registry>) -> Supervisor {
        Supervisor {
            config,
            registry,
            claims: Arc::new(Claims::default()),
            slots: BTreeMap::new(),
            rejected: BTreeMap::new(),
        }
    }

    /// Makes the running set match the connector files just loaded.
    pub fn apply(&mut self, loaded: Vec<Result<ConnectorConfig, ConfigError>>) -> Applied {
        let mut applied = Applied::default();
        let mut wanted: BTreeMap<String, ConnectorConfig> = BTreeMap::new();
        let mut rejected: BTreeMap<PathBuf, String> = BTreeMap::new();
        for result in loaded {
            match result {
                Ok(c) => {
                    wanted.insert(c.name.clone(), c);
                }
                Err(e) => {
                    rejected.insert(e.file.clone(), e.to_string());
                }
            }
        }
        for (file, error) in &rejected {
            if self.rejected.get(file) != Some(error) {
                let running = self.slots.values().find(|s| &s.connector.file == file && s.then.is_none());
                match running {
                    Some(s) => {
                        tracing::error!(%error, connector = %s.connector.name, "connector file rejected; the version loaded before keeps running")
                    }
                    None => tracing::error!(%error, "connector file rejected; the other connectors run"),
                }
            }
        }
        applied.rejected = rejected.len();
        self.registry.set_rejected(rejected.clone());

        let names: Vec<String> = self.slots.keys().cloned().collect();
        for name in names {
            let Some(slot) = self.slots.get_mut(&name) else { continue };
            if slot.parked {
                match wanted.remove(&name) {
                    // Keeps its state; the new version runs when it is resumed.
                    Some(new) => {
                        *slot.status.config.lock().unwrap_or_else(|p| p.into_inner()) = new.clone();
                        slot.connector = new;
                    }
                    None if rejected.contains_key(&slot.connector.file) => {}
                    None => {
                        self.registry.remove(&name);
                        self.slots.remove(&name);
                        applied.stopped.push(name.clone());
                    }
                }
                continue;
            }
            match wanted.remove(&name) {
                Some(new) if slot.then.is_some() => {
                    // Already stopping: start this version once it has drained.
                    slot.then = Some(Then::Start(Box::new(new)));
                }
                Some(new) if new == slot.connector => applied.unchanged += 1,
                Some(new) => {
                    tracing::info!(connector = %name, file = %new.file.display(), "connector changed: restarting it with the new config");
                    slot.stop.store(true, Ordering::Relaxed);
                    slot.then = Some(Then::Start(Box::new(new)));
                    applied.restarted.push(name.clone());
                }
                None if slot.then.is_some() => slot.then = Some(Then::Remove),
                None if rejected.contains_key(&slot.connector.file) => applied.unchanged += 1,
                None => {
                    tracing::info!(connector = %name, file = %slot.connector.file.display(), "connector removed: stopping it");
                    slot.stop.store(true, Ordering::Relaxed);
                    slot.then = Some(Then::Remove);
                    applied.stopped.push(name.clone());
                }
            }
        }
        for (name, connector) in wanted {
            applied.started.push(name);
            self.launch(connector);
        }
        self.rejected = rejected;
        self.reap();
        applied
    }

    fn launch(&mut self, connector: ConnectorConfig) {
        let stats = match &connector.kind {
            ConnectorKind::Source(_) => Stats::Source(Default::default()),
            ConnectorKind::Sink(_) => Stats::Sink(Default::default()),
        };
        let status = Arc::new(ConnectorStatus::new(&connector, stats));
        tracing::info!(connector = %connector.name, kind = connector.kind.name(), file = %connector.file.display(), "starting connector");
        let stop = Arc::new(AtomicBool::new(false));
        let (c, config, stop2, status2, claims) =
            (connector.clone(), self.config.clone(), stop.clone(), status.clone(), self.claims.clone());
        let handle =
            std::thread::Builder::new().name(format!("connector-{}", connector.name)).spawn(move || {
                // Everything the connector logs from its thread carries its name.
                let _span = tracing::info_span!("connector", connector = %c.name).entered();
                supervise(&c, &config, &stop2, &status2, &claims)
            });
        let handle = match handle {
            Ok(h) => Some(h),
            Err(error) => {
                status.failed(format!("cannot start its thread: {error}"));
                tracing::error!(connector = %connector.name, %error, "cannot start the connector's thread");
                None
            }
        };
        self.registry.insert(status.clone());
        self.slots.insert(
            connector.name.clone(),
            Slot { connector, stop, handle, status, then: None, parked: false },
        );
    }

    /// Applies a REST request. Returns false if there is no such connector.
    pub fn request(&mut self, request: Request) -> bool {
        let (name, then) = match &request {
            Request::Pause(n) => (n, Some(Then::Park(State::Paused))),
            Request::Stop(n) => (n, Some(Then::Park(State::Stopped))),
            Request::Restart(n) | Request::Resume(n) => (n, None),
        };
        let Some(slot) = self.slots.get_mut(name) else { return false };
        tracing::info!(connector = %name, ?request, "REST request");
        match request {
            Request::Pause(_) | Request::Stop(_) => {
                if slot.parked {
                    if let Some(Then::Park(state)) = then {
                        set_parked(&slot.status, state);
                    }
                } else {
                    slot.stop.store(true, Ordering::Relaxed);
                    slot.then = then;
                }
            }
            Request::Resume(_) | Request::Restart(_) => {
                if slot.parked {
                    let connector = slot.connector.clone();
                    self.slots.remove(name);
                    self.launch(connector);
                } else if matches!(request, Request::Restart(_)) && slot.then.is_none() {
                    slot.stop.store(true, Ordering::Relaxed);
                    slot.then = Some(Then::Start(Box::new(slot.connector.clone())));
                } else if matches!(slot.then, Some(Then::Park(_))) {
                    // Resumed before it finished draining: start it again once drained.
                    slot.then = Some(Then::Start(Box::new(slot.connector.clone())));
                }
            }
        }
        self.reap();
        true
    }

    /// Finishes what drained: removes stopped connectors, starts replacements.
    pub fn reap(&mut self) {
        let done: Vec<String> = self
            .slots
            .iter()
            .filter(|(_, s)| s.then.is_some() && s.handle.as_ref().is_none_or(JoinHandle::is_finished))
            .map(|(n, _)| n.clone())
            .collect();
        for name in done {
            let Some(mut slot) = self.slots.remove(&name) else { continue };
            if let Some(h) = slot.handle.take() {
                let _ = h.join();
            }
            match slot.then.take() {
                Some(Then::Start(new)) => {
                    self.registry.remove(&name);
                    self.launch(*new);
                }
                Some(Then::Park(state)) => {
                    set_parked(&slot.status, state);
                    tracing::info!(connector = %name, ?state, "connector drained and parked");
                    slot.parked = true;
                    self.slots.insert(name, slot);
                }
                _ => {
                    slot.status.stopped();
                    self.registry.remove(&name);
                    tracing::info!(connector = %name, "connector stopped");
                }
            }
        }
    }

    pub fn running(&self) -> usize {
        self.slots.values().filter(|s| !s.parked).count()
    }

    /// The config a connector runs with (for the REST API).
    pub fn config_of(&self, name: &str) -> Option<&ConnectorConfig> {
        self.slots.get(name).map(|s| &s.connector)
    }

    /// Stops every connector and waits for them to drain until `deadline`; `waiting` is called
    /// about once a second while some are still draining.
    pub fn stop_all(&mut self, deadline: Instant, mut waiting: impl FnMut(Duration)) {
        for slot in self.slots.values() {
            slot.stop.store(true, Ordering::Relaxed);
        }
        let mut told = Instant::now() - Duration::from_secs(1);
        for (name, slot) in &mut self.slots {
            let Some(handle) = slot.handle.take() else { continue };
            while !handle.is_finished() && Instant::now() < deadline {
                if told.elapsed() >= Duration::from_secs(1) {
                    waiting(deadline.saturating_duration_since(Instant::now()));
                    told = Instant::now();
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            if handle.is_finished() {
                let _ = handle.join();
                slot.status.stopped();
            } else {
                tracing::error!(connector = %name, "did not drain within the shutdown timeout; the next start resumes from its last checkpoint or commit");
            }
        }
    }
}

fn set_parked(status: &ConnectorStatus, state: State) {
    match state {
        State::Paused => status.paused(),
        _ => status.stopped(),
    }
}

/// Runs one connector until `stop`, restarting it with backoff when it fails.
fn supervise(
    connector: &ConnectorConfig,
    config: &DaemonConfig,
    stop: &AtomicBool,
    status: &ConnectorStatus,
    claims: &Arc<Claims>,
) {
    let props = merged(&config.kafka, &connector.kafka);
    let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
    loop {
        let started = Instant::now();
        status.running();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            match (&connector.kind, &status.stats) {
                (ConnectorKind::Source(cfg), Stats::Source(stats)) => {
                    Source::new(connector, cfg, props.clone(), &config.state_dir, &config.daemon_id)
                        .with_stats(stats.clone())
                        .with_claims(claims.clone())
                        .run(stop, config.shutdown_timeout.mul_f32(0.8))
                        .map_err(|e| e.to_string())
                }
                (ConnectorKind::Sink(cfg), Stats::Sink(stats)) => {
                    Sink::new(connector, cfg, props.clone(), &config.state_dir, &config.daemon_id)
                        .with_stats(stats.clone())
                        .run(stop)
                        .map_err(|e| e.to_string())
                }
                _ => Err("internal error: stats of the wrong kind".to_string()),
            }
        }));
        if stop.load(Ordering::Relaxed) {
            if let Ok(Err(error)) = outcome {
                tracing::error!(connector = %connector.name, file = %connector.file.display(), %error, "connector failed while stopping");
            }
            return;
        }
        let cause = match outcome {
            Ok(Ok(())) => "it returned without being asked to stop".to_string(),
            Ok(Err(error)) => error,
            Err(panic) => format!(
                "it panicked: {}",
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default()
            ),
        };
        if started.elapsed() > Duration::from_secs(60) {
            backoff.reset();
        }
        tracing::error!(connector = %connector.name, file = %connector.file.display(), error = %cause, retry_in = ?backoff.next(), "connector failed; restarting it");
        status.failed(cause);
        backoff.wait(stop);
    }
}
