//! file-source: follows the files a connector's globs select and produces every new line to its
//! topic, checkpointing per file identity only what Kafka acknowledged.
//!
//! Data path: discover (globs, notify events, periodic rescan) → reader (lines from an open
//! descriptor) → producer (acks=all, idempotent) → delivery callback → ack queue per file →
//! checkpoint (atomic file). The run loop is one thread per connector; librdkafka's delivery
//! callbacks arrive on the producer's polling thread and reach the loop through a channel.
//!
//! Record shape: value = the line without its terminator; key = the file's path (or none, with
//! `key = "none"`); headers `macklake.path` (the path it was read from) and `macklake.offset`
//! (byte offset of the line's first byte, decimal).

pub mod checkpoint;
pub mod claims;
pub mod connect_offsets;
pub mod discover;
pub mod events;
pub mod fingerprint;
pub mod headers;
pub mod positions;
pub mod reader;
pub mod sample;
pub mod stats;
pub mod tailer;
mod topics;
mod transaction;

use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::Watcher;
use rdkafka::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::config::connector::{KeyMode, ValueFormat};
use crate::config::kafka_props::KafkaProps;
use crate::config::{ConnectorConfig, SourceConfig};
use crate::kafka::{admin, client};
use checkpoint::Checkpoints;
use discover::Discovery;
use reader::Line;
pub use stats::SourceStats;
use tailer::{Emitted, FileRef, PollError, READ_BUDGET, SystemClock, Tailer, TailerConfig};

/// Header names on every record.
pub const HEADER_PATH: &str = "macklake.path";
pub const HEADER_OFFSET: &str = "macklake.offset";
/// Dead letters only: why the line is there, and its length in the file.
pub const HEADER_REASON: &str = "macklake.reason";
pub const HEADER_ORIGINAL_LENGTH: &str = "macklake.original_length";

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The patterns did not compile (config validation should have caught it).
    #[error("bad glob in paths or exclude: {0}")]
    Glob(#[from] globset::Error),
    /// librdkafka refused a property (the connector file or the daemon's `[kafka]` must change).
    #[error("bad Kafka property {0}")]
    Property(client::BadProperty),
    /// Creating the producer failed (usually a bad librdkafka property).
    #[error("creating the Kafka producer failed: {0}")]
    Producer(KafkaError),
    /// Kafka refused a record for good (not a transient error: those are retried forever).
    #[error("Kafka refused a line of {path} at byte {offset}: {error}")]
    Delivery { path: PathBuf, offset: u64, error: KafkaError },
    /// A followed file could not be read (the connector restarts and resumes from its checkpoint).
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    /// The checkpoint file could not be read or written.
    #[error("checkpoint file {path}: {source}")]
    Checkpoint { path: PathBuf, source: std::io::Error },
    /// Kafka refused to create the topic (reported and retried by the supervisor).
    #[error("topic {topic} could not be checked or created: {error}")]
    Topic { topic: String, error: KafkaError },
    /// Exactly-once mode: a transaction could not be committed (or positions not restored). The
    /// connector restarts: a new producer fences the old one and the positions of the last
    /// committed transaction are read back from the offsets topic.
    #[error("exactly-once transaction failed: {0}; restarting from the last committed positions")]
    Transaction(KafkaError),
    /// The exactly-once offsets topic is not compacted: retention would delete positions.
    #[error(
        "offsets topic {topic} has cleanup.policy={policy}; exactly-once positions need a compacted \
         topic (kafka-configs --alter --entity-type topics --entity-name {topic} --add-config \
         cleanup.policy=compact, or choose another offsets_topic)"
    )]
    OffsetsNotCompacted { topic: String, policy: String },
    /// A `[multiline]`, `include_lines` or `exclude_lines` pattern did not compile (config
    /// validation should have caught it).
    #[error("bad regex in {key}: {error}")]
    Pattern { key: &'static str, error: regex::Error },
    /// A position record could not be encoded (a bug: positions are plain data).
    #[error("encoding a position record: {0}")]
    Encode(#[from] serde_json::Error),
    /// A failpoint made a step fail (test builds only: `src/failpoints.rs`).
    #[error("{0}")]
    Injected(String),
    /// The cluster refused the credentials: retrying quietly would hide it for ever.
    #[error("{msg} ({0})", msg = admin::AUTHENTICATION_FAILED)]
    Authentication(KafkaError),
}

enum Event {
    Fs(notify::Result<notify::Event>),
    Ack { token: usize, result: Result<(), KafkaError> },
}

struct SourceContext {
    events: mpsc::Sender<Event>,
}

impl ClientContext for SourceContext {}

impl ProducerContext for SourceContext {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, token: usize) {
        let result = result.as_ref().map(|_| ()).map_err(|(e, _)| e.clone());
        // The loop is gone only while shutting down; nothing is left to tell then.
        let _ = self.events.send(Event::Ack { token, result });
    }
}

pub struct Source<'a> {
    connector: &'a ConnectorConfig,
    cfg: &'a SourceConfig,
    props: KafkaProps,
    checkpoint_path: PathBuf,
    daemon_id: String,
    pub stats: std::sync::Arc<SourceStats>,
    /// Shared by the daemon's sources: a file is read by one of them only.
    claims: std::sync::Arc<claims::Claims>,
}

/// Exactly-once mode: the open transaction.
struct Txn {
    open: bool,
    /// What the transaction moves positions past: lines sent, dead letters sent and over-long
    /// lines skipped. Any of them is a reason to commit (a transaction of dead letters only,
    /// or of skipped lines only, must commit too, or it times out and the producer is fenced).
    lines: u64,
    since: Instant,
}

impl<'a> Source<'a> {
    pub fn new(
        connector: &'a ConnectorConfig,
        cfg: &'a SourceConfig,
        props: KafkaProps,
        state_dir: &Path,
        daemon_id: &str,
    ) -> Self {
        let checkpoint_path = state_dir.join("sources").join(&connector.name).join("checkpoints.json");
        Source {
            connector,
            cfg,
            props,
            checkpoint_path,
            daemon_id: daemon_id.to_string(),
            stats: Default::default(),
            claims: Default::default(),
        }
    }

    /// Counters that outlive this run (the supervisor keeps them across restarts).
    pub fn with_stats(mut self, stats: std::sync::Arc<SourceStats>) -> Self {
        self.stats = stats;
        self
    }

    pub fn with_claims(mut self, claims: std::sync::Arc<claims::Claims>) -> Self {
        self.claims = claims;
        self
    }

    /// Derived from daemon_id and the connector name: two hosts running the same connector on
    /// their own files never fence each other.
    fn transactional_id(&self) -> String {
        format!("macklake-{}-{}", self.daemon_id, self.connector.name)
    }

    /// Runs until `stop` is set, then drains: flushes the producer (within `drain`), writes the
    /// final checkpoint and returns. An error means the connector must be restarted (from its
    /// checkpoint) by the supervisor.
    pub fn run(&self, stop: &AtomicBool, drain: Duration) -> Result<(), SourceError> {
        let result = self.run_until(stop, drain);
        // Whatever happened, the files are free for another source (or this one's restart).
        self.claims.release_all(&self.connector.name);
        result
    }

    fn run_until(&self, stop: &AtomicBool, drain: Duration) -> Result<(), SourceError> {
        // A property librdkafka refuses is a configuration error, not a cluster to wait for.
        client::check(&self.props).map_err(SourceError::Property)?;
        topics::ensure(self.cfg, &self.props, stop)?;
        if stop.load(Ordering::Relaxed) {
            return Ok(());
        }
        let eos = self.cfg.exactly_once;
        let (tx, events) = mpsc::channel();
        let producer_config = if eos {
            client::source_transactional_producer(&self.props, &self.transactional_id())
        } else {
            client::source_producer(&self.props)
        };
        let producer: ThreadedProducer<SourceContext> = producer_config
            .create_with_context(SourceContext { events: tx.clone() })
            .map_err(SourceError::Producer)?;
        let fs_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = fs_tx.send(Event::Fs(res));
        })
        .ok();
        drop(tx);

        let discovery =
            Discovery::new(&self.cfg.paths, &self.cfg.exclude)?.following_symlinks(self.cfg.follow_symlinks);
        let mut watched: std::collections::HashSet<PathBuf> = Default::default();
        let checkpoints = if eos {
            // Fences any earlier instance and settles its open transaction, so that the positions
            // read next are those of the last committed transaction.
            producer.init_transactions(Duration::from_secs(30)).map_err(SourceError::Transaction)?;
            injected("source::positions::restore")?;
            let restored = positions::restore(
                &client::base(&self.props),
                &self.cfg.offsets_topic,
                &positions::key_prefix(&self.daemon_id, &self.connector.name),
                Duration::from_secs(60),
            )
            .map_err(SourceError::Transaction)?;
            Checkpoints::in_memory(restored.positions, restored.truncated, restored.started)
        } else {
            Checkpoints::load(&self.checkpoint_path)
                .map_err(|source| SourceError::Checkpoint { path: self.checkpoint_path.clone(), source })?
        };
        let mut tailer = Tailer::new(
            &self.connector.name,
            TailerConfig::of(self.cfg).map_err(|b| SourceError::Pattern { key: b.key, error: b.error })?,
            checkpoints,
            self.claims.clone(),
            self.stats.clone(),
            Box::new(SystemClock),
        );
        let mut txn = Txn { open: false, lines: 0, since: Instant::now() };
        let mut rescan_at = Instant::now();
        let mut checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;

        loop {
            let stopping = stop.load(Ordering::Relaxed);
            if !stopping && Instant::now() >= rescan_at {
                if let Some(w) = watcher.as_mut() {
                    for root in discovery.roots() {
                        if !watched.contains(root) && w.watch(root, notify::RecursiveMode::Recursive).is_ok()
                        {
                            watched.insert(root.to_path_buf());
                        }
                    }
                }
                if tailer.rescan(&discovery) && !eos {
                    // The first start is recorded at once: a restart before anything else was
                    // saved must not apply `start_at` again (lines appended meanwhile would be
                    // skipped). Exactly-once records it in its first transaction, just below.
                    self.save_checkpoints(&mut tailer)?;
                }
                rescan_at = Instant::now() + self.cfg.rescan_interval;
            }
            if stopping {
                break;
            }
            if eos && !txn.open {
                injected("source::txn::begin")?;
                producer.begin_transaction().map_err(SourceError::Transaction)?;
                txn = Txn { open: true, lines: 0, since: Instant::now() };
            }
            let progress_before = self.stats.progress();
            tailer.settle_identities();
            self.send_new_lines(&producer, &mut tailer)?;
            txn.lines += self.stats.progress() - progress_before;

            // Wait for something to do: a filesystem event, an ack, or the poll tick (which also
            // catches growth that produced no event).
            let mut next = events.recv_timeout(Duration::from_millis(100)).ok();
            // Bounded, so that a flood of acknowledgements cannot keep the loop from reading.
            let turn = Instant::now();
            while let Some(event) = next {
                match event {
                    Event::Ack { token, result } => self.on_ack(&mut tailer, token, result)?,
                    Event::Fs(Ok(e)) => {
                        use notify::EventKind::*;
                        if e.need_rescan() {
                            tracing::info!("the filesystem event queue overflowed; rescanning");
                            rescan_at = Instant::now();
                        } else if matches!(
                            e.kind,
                            Create(_) | Remove(_) | Modify(notify::event::ModifyKind::Name(_))
                        ) {
                            rescan_at = Instant::now();
                        } else if tailer.has_closed_files() && matches!(e.kind, Modify(_)) {
                            // Perhaps a closed idle file grew: look soon, but not at every write.
                            rescan_at = rescan_at.min(Instant::now() + Duration::from_millis(250));
                        }
                    }
                    Event::Fs(Err(error)) => {
                        tracing::debug!(%error, "filesystem watch error; rescanning");
                        rescan_at = Instant::now();
                    }
                }
                next = if turn.elapsed() < Duration::from_millis(50) { events.try_recv().ok() } else { None };
            }
            if eos
                && txn.open
                && ((txn.lines > 0
                    && (txn.since.elapsed() >= self.cfg.transaction_interval
                        || txn.lines >= self.cfg.transaction_max_lines))
                    || !tailer.started_before())
            {
                self.commit_transaction(
                    &producer,
                    &mut tailer,
                    self.cfg.transaction_interval.max(Duration::from_secs(30)),
                )?;
                txn.open = false;
            }
            tailer.retire();
            tailer.close_idle();
            if !eos && tailer.dirty() && Instant::now() >= checkpoint_at {
                self.save_checkpoints(&mut tailer)?;
                checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;
            }
        }

        if eos {
            // Drain: commit what the open transaction holds; if that cannot be done in time, the
            // next start fences it (it is aborted) and resumes from the last committed positions.
            if txn.open && txn.lines > 0 {
                if let Err(error) = self.commit_transaction(&producer, &mut tailer, drain) {
                    tracing::warn!(%error, "could not commit the last transaction while stopping; the next start resumes before it");
                }
            } else if txn.open {
                let _ = producer.abort_transaction(Duration::from_secs(5));
                self.stats.transaction_aborts.fetch_add(1, Ordering::Relaxed);
            }
            return Ok(());
        }
        // Drain: no new reads; wait for what is in flight, then record it.
        let deadline = Instant::now() + drain;
        let _ = producer.flush(deadline.saturating_duration_since(Instant::now()));
        while let Ok(event) = events.recv_timeout(Duration::from_millis(20)) {
            if let Event::Ack { token, result } = event {
                // A refused record at shutdown stays unacknowledged: the next start resends it.
                let _ = self.on_ack(&mut tailer, token, result);
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let unacked = tailer.unacked();
        if unacked > 0 {
            tracing::warn!(
                unacked,
                "stopping with lines not yet acknowledged; they will be sent again at the next start"
            );
        }
        self.save_checkpoints(&mut tailer)
    }

    /// Reads what is new in every followed file and hands each line to the producer.
    fn send_new_lines(
        &self,
        producer: &ThreadedProducer<SourceContext>,
        tailer: &mut Tailer,
    ) -> Result<(), SourceError> {
        let key = self.cfg.key;
        let topic = self.cfg.topic.name.as_str();
        let stats = &self.stats;
        let dead_letter_topic = self.cfg.dead_letter_topic.as_deref();
        let max_line = self.cfg.max_line_bytes;
        let value_format = self.cfg.value_format;
        let mut envelope: Vec<u8> = Vec::new();
        let mut offset_text = String::with_capacity(20);
        let host = self.cfg.host_header.then_some(self.daemon_id.as_bytes());
        let send = |file: FileRef<'_>, line: Line<'_>| -> Result<Emitted, SourceError> {
            let path_bytes = file.path.as_os_str().as_bytes();
            let token = file.token;
            if let (Some(dl), Some(dlq)) = (&line.dead_letter, dead_letter_topic) {
                let (offset, length) = (dl.start.to_string(), dl.original_len.to_string());
                let reason = format!("line longer than max_line_bytes ({max_line})");
                let headers = OwnedHeaders::new_with_capacity(4)
                    .insert(Header { key: HEADER_REASON, value: Some(reason.as_bytes()) })
                    .insert(Header { key: HEADER_PATH, value: Some(path_bytes) })
                    .insert(Header { key: HEADER_OFFSET, value: Some(offset.as_bytes()) })
                    .insert(Header { key: HEADER_ORIGINAL_LENGTH, value: Some(length.as_bytes()) });
                injected("source::dead-letter::send")?;
                let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(dlq, token)
                    .payload(dl.head)
                    .key(path_bytes)
                    .headers(headers::with_host(headers, host));
                return match producer.send(record) {
                    Ok(()) => {
                        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        Ok(Emitted::Sent { bytes: None })
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        Ok(Emitted::NotNow)
                    }
                    Err((error, _)) => {
                        Err(SourceError::Delivery { path: file.path.to_path_buf(), offset: dl.start, error })
                    }
                };
            }
            // (The tailer hands out no line without a payload other than a dead letter.)
            let payload = line.payload.unwrap_or_default();
            let payload = match value_format {
                ValueFormat::Raw => payload,
                ValueFormat::ConnectJson => {
                    envelope.clear();
                    connect_json_envelope(payload, &mut envelope);
                    envelope.as_slice()
                }
            };
            offset_text.clear();
            let _ = write!(offset_text, "{}", line.start); // writing to a String cannot fail
            let headers = headers::line(path_bytes, offset_text.as_bytes(), host);
            injected("source::send")?;
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, token)
                .payload(payload)
                .headers(headers);
            if key == KeyMode::Path {
                record = record.key(path_bytes);
            }
            match producer.send(record) {
                Ok(()) => {
                    stats.lines_sent.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    Ok(Emitted::Sent { bytes: Some(payload.len() as u64) })
                }
                // The producer's queue is full: leave the line for the next turn.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Ok(Emitted::NotNow),
                Err((error, _)) => {
                    Err(SourceError::Delivery { path: file.path.to_path_buf(), offset: line.start, error })
                }
            }
        };
        tailer.poll(READ_BUDGET, send).map_err(|e| match e {
            PollError::Read { path, source } => SourceError::Read { path, source },
            PollError::Emit(e) => e,
        })
    }

    /// Applies one delivery report: a refused record fails the connector (it restarts and
    /// resends from its checkpoint).
    fn on_ack(
        &self,
        tailer: &mut Tailer,
        token: usize,
        result: Result<(), KafkaError>,
    ) -> Result<(), SourceError> {
        injected("source::ack")?;
        if let Err(error) = result {
            let Some((path, offset)) = tailer.describe(token) else { return Ok(()) };
            self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::Delivery { path, offset, error });
        }
        if let Some(tailer::acks::Pending { len: Some(len), read_at, .. }) = tailer.ack(token) {
            self.stats.lines_acked.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_acked.fetch_add(len, Ordering::Relaxed);
            self.stats.delivery_seconds.observe(read_at.elapsed());
        }
        Ok(())
    }

    /// Exactly-once mode: commits the open transaction with the positions it moves
    /// (`transaction::commit`).
    fn commit_transaction(
        &self,
        producer: &ThreadedProducer<SourceContext>,
        tailer: &mut Tailer,
        timeout: Duration,
    ) -> Result<(), SourceError> {
        let prefix = positions::key_prefix(&self.daemon_id, &self.connector.name);
        transaction::commit(producer, tailer, &self.cfg.offsets_topic, &prefix, timeout)?;
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// At-least-once: writes the checkpoint file.
    fn save_checkpoints(&self, tailer: &mut Tailer) -> Result<(), SourceError> {
        tailer
            .save_checkpoints()
            .map_err(|source| SourceError::Checkpoint { path: self.checkpoint_path.clone(), source })
    }
}

/// Kafka Connect JsonConverter's envelope for a string value (as FileStreamSource's records
/// look under a worker with `value.converter.schemas.enable=true`). Bytes that are not UTF-8 are
/// replaced, as Connect's StringConverter would have decoded them.
pub fn connect_json_envelope(line: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(br#"{"schema":{"type":"string","optional":false},"payload":"#);
    let text = String::from_utf8_lossy(line);
    // Serializing a str into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, text.as_ref());
    out.push(b'}');
}

/// The failpoint `name` as a source error (test builds only; see `src/failpoints.rs`).
fn injected(name: &str) -> Result<(), SourceError> {
    match crate::failpoints::fire(name) {
        Some(message) => Err(SourceError::Injected(message)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn connect_json_envelopes_are_what_jsonconverter_writes() {
        let mut out = Vec::new();
        super::connect_json_envelope(b"say \"hi\"\tnow", &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"schema":{"type":"string","optional":false},"payload":"say \"hi\"\tnow"}"#
        );
    }
}
