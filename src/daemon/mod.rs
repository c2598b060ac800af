//! `macklake run`: loads the daemon config and every connector file, runs each valid connector on
//! its own supervised thread (`supervisor`), applies changes to the connectors directory (notify
//! and SIGHUP), tells systemd how it is doing (`systemd`), serves `/metrics` and `/health`
//! (`crate::http`), and drains the connectors on SIGTERM/SIGINT within `shutdown_timeout`.
//!
//! Invariants: one bad connector file or one failing connector never stops the others (bad files
//! are reported with file, line and key; failing connectors are restarted with backoff, and a
//! panic in one is caught); connector configuration comes only from files.

pub mod state_lock;
pub mod supervisor;
pub mod systemd;

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::config::DaemonConfig;
use crate::config::connector::{LoadContext, load_dir};
use crate::status::Registry;
use supervisor::Supervisor;

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Connectors(crate::config::ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    #[error("{0}")]
    Http(crate::http::HttpError),
    #[error("{0}")]
    StateLock(state_lock::StateLockError),
}

/// Runs the daemon until SIGTERM or SIGINT. Returns once every connector has drained, or when
/// `shutdown_timeout` has passed (what is unfinished then is left to the next start).
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|source| DaemonError::StateDir { path: config.state_dir.clone(), source })?;
    let _state_lock =
        state_lock::acquire(&config.state_dir, "macklake run").map_err(DaemonError::StateLock)?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(DaemonError::Signals)?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).map_err(DaemonError::Signals)?;

    let config = Arc::new(config);
    let mut notifier = systemd::Notifier::from_env();
    tracing::info!(daemon_id = %config.daemon_id, connectors_dir = %config.connectors_dir.display(), "macklake starting");
    let registry = Arc::new(Registry::default());
    let (requests_tx, requests) = std::sync::mpsc::channel();
    let _http = match config.http_listen {
        Some(addr) => Some(
            crate::http::start(
                addr,
                registry.clone(),
                requests_tx,
                config.http_allowed_hosts.clone(),
                config.kafka.clone(),
            )
            .map_err(DaemonError::Http)?,
        ),
        None => None,
    };
    let mut supervisor = Supervisor::new(config.clone(), registry.clone());
    let applied = supervisor
        .apply(load_dir(&config.connectors_dir, LoadContext::of(&config)).map_err(DaemonError::Connectors)?);
    if supervisor.running() == 0 {
        tracing::warn!(dir = %config.connectors_dir.display(), "no valid connector file; waiting for one (or a signal)");
    }
    notifier.ready(&ready_status(&supervisor, &applied));

    // Changes in the connectors directory are applied like SIGHUP, once they settle.
    let (dir_tx, dir_events) = std::sync::mpsc::channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        // Only changes: reading the files (ours at each reload, or anyone's) must not count,
        // or a reload would trigger the next one.
        if !event.is_ok_and(|e| matches!(e.kind, notify::EventKind::Access(_))) {
            let _ = dir_tx.send(());
        }
    })
    .ok();
    if let Some(w) = watcher.as_mut() {
        use notify::Watcher;
        if let Err(error) = w.watch(&config.connectors_dir, notify::RecursiveMode::NonRecursive) {
            tracing::warn!(%error, dir = %config.connectors_dir.display(), "cannot watch the connectors directory; changes apply on SIGHUP");
        }
    }
    let mut reload_at: Option<Instant> = None;

    while !stop.load(Ordering::Relaxed) {
        if dir_events.recv_timeout(Duration::from_millis(100)).is_ok() {
            while dir_events.try_recv().is_ok() {}
            // Editors write a file in several steps: wait until it has been quiet for a moment.
            reload_at = Some(Instant::now() + RELOAD_SETTLE);
        }
        let signalled = reload.swap(false, Ordering::Relaxed);
        if signalled || reload_at.is_some_and(|at| Instant::now() >= at) {
            reload_at = None;
            notifier.reloading();
            tracing::info!(
                trigger = if signalled { "SIGHUP" } else { "connectors directory changed" },
                "reloading connectors"
            );
            match load_dir(&config.connectors_dir, LoadContext::of(&config)) {
                Ok(loaded) => {
                    let applied = supervisor.apply(loaded);
                    tracing::info!(started = ?applied.started, restarted = ?applied.restarted, stopped = ?applied.stopped, unchanged = applied.unchanged, rejected = applied.rejected, "reloaded");
                    notifier.ready(&ready_status(&supervisor, &applied));
                }
                Err(error) => {
                    tracing::error!(%error, "cannot read the connectors directory; nothing changed");
                    notifier.ready("reload failed: connectors directory unreadable");
                }
            }
        }
        while let Ok(request) = requests.try_recv() {
            supervisor.request(request);
        }
        supervisor.reap();
        notifier.watchdog();
    }
    tracing::info!(timeout = ?config.shutdown_timeout, "stopping: draining connectors");
    notifier.stopping();
    notifier.extend_timeout(config.shutdown_timeout + Duration::from_secs(5));
    let deadline = Instant::now() + config.shutdown_timeout;
    supervisor.stop_all(deadline, |left| notifier.extend_timeout(left + Duration::from_secs(5)));
    tracing::info!("macklake stopped");
    Ok(())
}

/// How long the connectors directory must be quiet before a change is applied.
const RELOAD_SETTLE: Duration = Duration::from_millis(300);

fn ready_status(supervisor: &Supervisor, applied: &supervisor::Applied) -> String {
    format!("{} connector(s) running, {} file(s) rejected", supervisor.running(), applied.rejected)
}

/// `macklake check`: every problem in the daemon config and the connector files, without Kafka.
pub fn check(config_path: &std::path::Path) -> Vec<String> {
    let config = match DaemonConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    let mut problems = Vec::new();
    // The properties as librdkafka itself takes them: the daemon's, then each connector's with
    // them (a bad one is reported where it is written).
    let daemon_text = std::fs::read_to_string(config_path).unwrap_or_default();
    let at = |file: &std::path::Path, text: &str, bad: crate::kafka::client::BadProperty| {
        crate::config::ConfigError::at_key(file, text, Some("kafka"), &bad.key, bad.reason).to_string()
    };
    if let Err(bad) = crate::kafka::client::check(&config.kafka) {
        problems.push(at(config_path, &daemon_text, bad));
    }
    match load_dir(&config.connectors_dir, LoadContext::of(&config)) {
        Ok(results) => {
            for r in results {
                match r {
                    Ok(c) => {
                        let props = crate::config::kafka_props::merged(&config.kafka, &c.kafka);
                        match crate::kafka::client::check(&props) {
                            Err(bad) if c.kafka.contains_key(&bad.key) => {
                                let text = std::fs::read_to_string(&c.file).unwrap_or_default();
                                problems.push(at(&c.file, &text, bad));
                            }
                            // (The daemon's own: reported once, above.)
                            Err(_) | Ok(()) => {}
                        }
                    }
                    Err(e) => problems.push(e.to_string()),
                }
            }
        }
        Err(e) => problems.push(e.to_string()),
    }
    problems
}

/// The source connector `name` among the daemon's connector files (for `check --sample`).
pub fn find_source(config_path: &std::path::Path, name: &str) -> Result<crate::config::SourceConfig, String> {
    let config = DaemonConfig::load(config_path).map_err(|e| e.to_string())?;
    let results = load_dir(&config.connectors_dir, LoadContext::of(&config)).map_err(|e| e.to_string())?;
    let mut names = Vec::new();
    for r in results {
        match r {
            Ok(c) if c.name == name => {
                return match c.kind {
                    crate::config::ConnectorKind::Source(s) => Ok(s),
                    crate::config::ConnectorKind::Sink(_) => {
                        Err(format!("connector {name} is a file-sink, not a file-source"))
                    }
                };
            }
            Ok(c) => names.push(c.name),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!(
        "no connector named {name} in {} (there are: {})",
        config.connectors_dir.display(),
        names.join(", ")
    ))
}

/// Installs the tracing subscriber the daemon config asks for (stderr; text or JSON).
pub fn init_logging(config: &DaemonConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("MACKLAKE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&config.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder =
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    let _ = match config.log_format {
        crate::config::daemon::LogFormat::Json => builder.json().try_init(),
        crate::config::daemon::LogFormat::Text => builder.try_init(),
    };
}
