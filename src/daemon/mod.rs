//! `macklake run`: loads the daemon config and every connector file, runs each valid connector on
//! its own supervised thread, and drains them on SIGTERM/SIGINT within `shutdown_timeout`.
//!
//! Invariants: one bad connector file or one failing connector never stops the others (bad files
//! are reported with file, line and key; failing connectors are restarted with backoff, and a
//! panic in one is caught); connector configuration comes only from files.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::config::connector::load_dir;
use crate::config::kafka_props::merged;
use crate::config::{ConnectorConfig, ConnectorKind, DaemonConfig};
use crate::sink::Sink;
use crate::source::{Source, sleep_unless};

#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error("cannot create the state directory {path}: {source}")]
    StateDir { path: PathBuf, source: std::io::Error },
    #[error("{0}")]
    Connectors(crate::config::ConfigError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Runs the daemon until SIGTERM or SIGINT. Returns once every connector has drained, or when
/// `shutdown_timeout` has passed (what is unfinished then is left to the next start).
pub fn run(config: DaemonConfig) -> Result<(), DaemonError> {
    std::fs::create_dir_all(&config.state_dir)
        .map_err(|source| DaemonError::StateDir { path: config.state_dir.clone(), source })?;
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGTERM, signal_hook::consts::SIGINT] {
        signal_hook::flag::register(signal, stop.clone()).map_err(DaemonError::Signals)?;
    }
    let reload = Arc::new(AtomicBool::new(false));
    signal_hook::flag::register(signal_hook::consts::SIGHUP, reload.clone()).map_err(DaemonError::Signals)?;

    let config = Arc::new(config);
    tracing::info!(daemon_id = %config.daemon_id, connectors_dir = %config.connectors_dir.display(), "macklake starting");
    let mut handles: Vec<(String, JoinHandle<()>)> = Vec::new();
    for loaded in load_dir(&config.connectors_dir).map_err(DaemonError::Connectors)? {
        match loaded {
            Ok(connector) => {
                tracing::info!(connector = %connector.name, kind = connector.kind.name(), file = %connector.file.display(), "starting connector");
                let name = connector.name.clone();
                let (config, stop) = (config.clone(), stop.clone());
                let handle = std::thread::Builder::new()
                    .name(format!("connector-{name}"))
                    .spawn(move || supervise(&connector, &config, &stop))
                    .map_err(|e| DaemonError::Signals(std::io::Error::other(e)))?;
                handles.push((name, handle));
            }
            Err(error) => tracing::error!(%error, "connector file rejected; the other connectors run"),
        }
    }
    if handles.is_empty() {
        tracing::warn!(dir = %config.connectors_dir.display(), "no valid connector file; waiting for a signal");
    }

    while !stop.load(Ordering::Relaxed) {
        if reload.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                "SIGHUP received: reloading connectors without a restart is not implemented yet; restart the daemon to apply changes"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    tracing::info!(timeout = ?config.shutdown_timeout, "stopping: draining connectors");
    let deadline = Instant::now() + config.shutdown_timeout;
    for (name, handle) in handles {
        while !handle.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if handle.is_finished() {
            let _ = handle.join();
        } else {
            tracing::error!(connector = %name, "did not drain within the shutdown timeout; the next start resumes from its last checkpoint or commit");
        }
    }
    tracing::info!("macklake stopped");
    Ok(())
}

/// Runs one connector until `stop`, restarting it with backoff when it fails.
fn supervise(connector: &ConnectorConfig, config: &DaemonConfig, stop: &AtomicBool) {
    let props = merged(&config.kafka, &connector.kafka);
    let mut backoff = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| match &connector.kind {
            ConnectorKind::Source(cfg) => {
                Source::new(connector, cfg, props.clone(), &config.state_dir, &config.daemon_id)
                    .run(stop, config.shutdown_timeout.mul_f32(0.8))
                    .map_err(|e| e.to_string())
            }
            ConnectorKind::Sink(cfg) => {
                Sink::new(connector, cfg, props.clone(), &config.state_dir, &config.daemon_id)
                    .run(stop)
                    .map_err(|e| e.to_string())
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
            backoff = Duration::from_secs(1);
        }
        tracing::error!(connector = %connector.name, file = %connector.file.display(), error = %cause, retry_in = ?backoff, "connector failed; restarting it");
        sleep_unless(stop, backoff);
        backoff = (backoff * 2).min(Duration::from_secs(60));
    }
}

/// `macklake check`: every problem in the daemon config and the connector files, without Kafka.
pub fn check(config_path: &std::path::Path) -> Vec<String> {
    let config = match DaemonConfig::load(config_path) {
        Ok(c) => c,
        Err(e) => return vec![e.to_string()],
    };
    match load_dir(&config.connectors_dir) {
        Ok(results) => results.into_iter().filter_map(|r| r.err().map(|e| e.to_string())).collect(),
        Err(e) => vec![e.to_string()],
    }
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
