//! file-sink: consumes topics into rotating local files, committing offsets only after the data
//! they cover is fsynced, so that after any crash the files hold every record exactly once.
//!
//! Data path: consumer (group = connector name, read_committed) → layout (`Partitions`: a writer
//! per partition, or `Single`: one file) → fsync → commit with metadata (`offsets`, through the
//! local commit cache). One thread per connector; rebalance callbacks (`assignment`) run inside
//! `poll` on that same thread. This module is the loop: poll, hand each record to the layout,
//! commit on a timer, drain.
//!
//! Invariants:
//! - an offset is committed only for records already fsynced in the active file it names;
//! - a rotated file is renamed only after the commit covering all of it succeeded;
//! - on every assignment the writer reconciles its files with the committed state and seeks to
//!   the committed offset before writing; records below the expected offset are skipped.

mod assignment;
pub mod bucket;
pub mod commit;
pub mod format;
pub mod housekeeping;
mod kafka_offsets;
pub mod layout;
#[cfg(test)]
mod model_test;
pub mod offsets;
pub mod partitions;
pub mod paths;
pub mod single;
#[cfg(test)]
mod single_model_test;
pub mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;

use crate::config::connector::{SinkFormat, SinkStart, ValueFormat};
use crate::config::kafka_props::KafkaProps;
use crate::config::{ConnectorConfig, SinkConfig, Target};
use crate::kafka::{admin, client};
use crate::stop::Backoff;
use assignment::SinkContext;
use commit::CommitCache;
use kafka_offsets::KafkaOffsets;
use layout::Layout;
use offsets::{Committer, Tp};
use partitions::{Partitions, Rotation};
use single::Single;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("creating the Kafka consumer failed: {0}")]
    Consumer(KafkaError),
    /// librdkafka refused a property (the connector file or the daemon's `[kafka]` must change).
    #[error("bad Kafka property {0}")]
    Property(client::BadProperty),
    #[error("subscribing to {topics:?} failed: {error}")]
    Subscribe { topics: Vec<String>, error: KafkaError },
    /// Writing, syncing or renaming a sink file failed (disk full, read-only, permissions).
    #[error("sink file {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("commit cache {path}: {source}")]
    Cache { path: PathBuf, source: std::io::Error },
    /// The cluster refused the credentials: retrying quietly would hide it for ever.
    #[error("{msg} ({0})", msg = admin::AUTHENTICATION_FAILED)]
    Authentication(KafkaError),
    /// Single-file sink: a commit reached only some partitions, or a revocation could not be
    /// committed; the run ends and the restart reconciles the file with what Kafka holds.
    #[error("single-file sink {path}: {what}; restarting to reconcile the file with the committed offsets")]
    Uncommitted { path: PathBuf, what: String },
    /// A topic was deleted and re-created while the sink ran: nothing of it is committed; the
    /// restart reconciles (dropping what was written of the new topic) and stalls its partitions.
    #[error(
        "topic {topic} was deleted and re-created while it was archived (its id changed from {then} to {now}); \
         restarting without committing: its partitions stall, the archive keeps the old history"
    )]
    TopicRecreated { topic: String, then: String, now: String },
    /// A record of a later time bucket arrived and the active file's sealing commit was not
    /// applied: one file never spans two buckets, so the run ends and the restart reconciles.
    #[error(
        "sink file {path}: its sealing commit before a later time bucket was not applied; restarting to reconcile"
    )]
    Unsealed { path: PathBuf },
}

/// Shared counters (read by status and metrics).
#[derive(Debug, Default)]
pub struct SinkStats {
    pub records_written: AtomicU64,
    pub bytes_written: AtomicU64,
    /// Partitions stalled because their offsets went backwards.
    pub stalled_partitions: AtomicU64,
    /// Records behind the log end, per partition (updated at every commit tick).
    pub lag: Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    /// From consuming a record to the fsync that made it durable.
    pub durable_seconds: crate::latency::LatencyHistogram,
    /// The offsets last committed, per partition (for the REST API's offsets).
    pub committed: Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    pub records_skipped_null: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub offsets_skipped: AtomicU64,
    pub offsets_lost_to_retention: AtomicU64,
    pub commits: AtomicU64,
    pub rotations: AtomicU64,
    /// Active files sealed by `seal_idle_after`.
    pub files_sealed_idle: AtomicU64,
    /// Time layouts: records older than their partition's active bucket (written into it).
    pub records_late: AtomicU64,
    /// Time layouts: records without a usable timestamp, bucketed by their consume time.
    pub records_untimed: AtomicU64,
    /// `value_format = "connect-json"`: values written raw because they were not an envelope.
    pub records_not_unwrapped: AtomicU64,
    /// Rotated files compressed, and deleted by retention (`sink::housekeeping`).
    pub files_compressed: AtomicU64,
    pub files_deleted: AtomicU64,
}

struct State {
    /// How records are laid out in files: per partition (`dir`) or one file (`file`).
    layout: Layout,
    daemon_id: String,
    /// Assigned but not yet reconciled.
    pending: Vec<Tp>,
    cache: CommitCache,
    stats: Arc<SinkStats>,
    /// The first error met inside a rebalance callback (which cannot return one).
    failed: Option<SinkError>,
    /// Partitions whose offsets went backwards: paused, never written.
    stalled: std::collections::HashSet<Tp>,
    /// Partitions whose first value that `connect-json` could not unwrap was logged.
    not_unwrapped_logged: std::collections::HashSet<Tp>,
    /// Partitions just positioned at their writer's next offset, until the first record proves
    /// the consumer is there (see `assignment::admit`).
    verify: HashMap<Tp, Verify>,
    /// Each topic's id, read once per run (None: unknown; then commits carry none and nothing
    /// is checked against it).
    topic_ids: HashMap<String, String>,
    /// Per partition waiting to be reconciled, the lowest offset of a record that arrived anyway
    /// (fetched before the pause took effect) and was dropped: with no committed offset to seek
    /// to, reconciliation seeks back here, so that nothing is dropped for good.
    dropped_unreconciled: HashMap<Tp, i64>,
    /// Partitions whose watermarks were read since they were positioned, because a record came
    /// from below the expected offset (read once: a re-created topic shows on the first).
    backwards_checked: std::collections::HashSet<Tp>,
}

/// A partition's resume offset, until its first record is seen.
#[derive(Debug, Clone, Copy)]
struct Verify {
    at: i64,
    /// Already sought to `at` again once because the first record came from beyond it.
    reseeked: bool,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent-enough state: files are reconciled anyway.
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `f` with the layout and a committer over `consumer`'s group (the one commit path).
fn with_committer<C: ConsumerContext, R>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    f: impl FnOnce(&mut Layout, &mut Committer<'_>) -> R,
) -> R {
    let State { layout, cache, topic_ids, stats, .. } = st;
    let stats: &SinkStats = stats;
    let mut offsets = KafkaOffsets { consumer, topic_ids };
    let mut committer = Committer { offsets: &mut offsets, cache, stats };
    f(layout, &mut committer)
}

/// True if the consumer has read a partition up to its last stable offset: librdkafka's position
/// (past transaction markers too) against the end a `read_committed` consumer may read, from
/// ListOffsets with the consumer's isolation level. Not the high watermark: an open transaction
/// and the markers of committed ones keep that ahead for ever on topics an exactly-once source
/// writes. Unknown (an error, no position yet) counts as not caught up.
fn caught_up<C: ConsumerContext>(consumer: &BaseConsumer<C>, (topic, partition): &Tp) -> bool {
    let Ok(positions) = consumer.position() else { return false };
    let Some(position) = positions.find_partition(topic, *partition).and_then(|e| e.offset().to_raw()) else {
        return false;
    };
    match consumer.fetch_watermarks(topic, *partition, Duration::from_secs(5)) {
        Ok((_, last_stable)) => position >= last_stable,
        Err(error) => {
            tracing::debug!(%error, topic, partition, "cannot read the last stable offset; not sealing yet");
            false
        }
    }
}

/// Errors that end the run without any further commit: a write, fsync or rename error (an fsync
/// is never retried on the same descriptor, ARCHITECTURE.md), a single file's partitions that no
/// longer agree, a re-created topic.
fn ends_without_commit(e: &SinkError) -> bool {
    matches!(
        e,
        SinkError::Io { .. }
            | SinkError::Uncommitted { .. }
            | SinkError::TopicRecreated { .. }
            | SinkError::Unsealed { .. }
    )
}

pub struct Sink<'a> {
    connector: &'a ConnectorConfig,
    cfg: &'a SinkConfig,
    props: KafkaProps,
    daemon_id: String,
    cache_path: PathBuf,
    pub stats: Arc<SinkStats>,
}

impl<'a> Sink<'a> {
    pub fn new(
        connector: &'a ConnectorConfig,
        cfg: &'a SinkConfig,
        props: KafkaProps,
        state_dir: &std::path::Path,
        daemon_id: &str,
    ) -> Self {
        let cache_path = state_dir.join("sinks").join(&connector.name).join("commits.json");
        Sink {
            connector,
            cfg,
            props,
            daemon_id: daemon_id.to_string(),
            cache_path,
            stats: Default::default(),
        }
    }

    /// Counters that outlive this run (the supervisor keeps them across restarts).
    pub fn with_stats(mut self, stats: Arc<SinkStats>) -> Self {
        self.stats = stats;
        self
    }

    /// Runs until `stop` is set, then makes everything durable, commits and leaves the group.
    /// A directory sink with compression or retention runs its housekeeping on a second thread
    /// meanwhile (compressing and deleting files never slows the consumer loop down).
    pub fn run(&self, stop: &AtomicBool) -> Result<(), SinkError> {
        let (Target::Dir(dir), Some(policy)) = (self.cfg.target(), housekeeping::Policy::of(self.cfg)) else {
            return self.consume(stop);
        };
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let name = &self.connector.name;
            let (topics, stats) = (&self.cfg.topics, &*self.stats);
            let (policy, done_ref) = (&policy, &done);
            // Its logs carry the connector's span, as the loop's do.
            let span = tracing::Span::current();
            let spawned = std::thread::Builder::new().name(format!("{name}-housekeeping")).spawn_scoped(
                scope,
                move || {
                    let _span = span.enter();
                    housekeeping::run(dir, topics, policy, stats, done_ref, Duration::from_secs(1))
                },
            );
            if let Err(error) = spawned {
                tracing::warn!(%error, "cannot start the housekeeping thread; rotated files are kept as they are");
            }
            let result = self.consume(stop);
            done.store(true, Ordering::Relaxed);
            result
        })
    }

    fn consume(&self, stop: &AtomicBool) -> Result<(), SinkError> {
        // A property librdkafka refuses is a configuration error, not a cluster to wait for.
        client::check(&self.props).map_err(SinkError::Property)?;
        // Wait for the topics to exist (the sink never creates them).
        let probe = client::base(&self.props);
        let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let mut missing: Vec<&String> = Vec::new();
            for t in &self.cfg.topics {
                match admin::topic_partitions(&probe, t, Duration::from_secs(10)) {
                    Ok(Some(_)) => {}
                    Err(error) if admin::authentication_failed(&error) => {
                        return Err(SinkError::Authentication(error));
                    }
                    _ => missing.push(t),
                }
            }
            if missing.is_empty() {
                break;
            }
            tracing::warn!(?missing, retry_in = ?backoff.next(), "waiting for topics (or for Kafka)");
            backoff.wait(stop);
        }

        let cache = CommitCache::load(&self.cache_path)
            .map_err(|source| SinkError::Cache { path: self.cache_path.clone(), source })?;
        let layout = match self.cfg.target() {
            Target::Dir(dir) => {
                let rotation = Rotation {
                    bytes: self.cfg.rotate_bytes,
                    interval: self.cfg.rotate_interval,
                    aligned: self.cfg.rotate_aligned,
                    seal_idle_after: self.cfg.seal_idle_after,
                };
                // Validated by the config; a time zone database gone since is an error here.
                let tz =
                    crate::config::layout::time_zone(&self.cfg.timezone).map_err(|why| SinkError::Io {
                        path: dir.clone(),
                        source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("timezone: {why}")),
                    })?;
                let aligned = self.cfg.rotate_aligned.then_some(self.cfg.rotate_interval);
                let buckets = bucket::Buckets::new(self.cfg.template().clone(), tz, aligned);
                Layout::Partitions(Partitions::new(
                    dir,
                    &self.daemon_id,
                    self.cfg.file_mode,
                    rotation,
                    buckets,
                ))
            }
            Target::File(file) => Layout::Single(Single::new(file, &self.daemon_id, self.cfg.file_mode)),
        };
        let state = Arc::new(Mutex::new(State {
            layout,
            daemon_id: self.daemon_id.clone(),
            pending: Vec::new(),
            cache,
            stats: self.stats.clone(),
            failed: None,
            stalled: Default::default(),
            not_unwrapped_logged: Default::default(),
            verify: HashMap::new(),
            topic_ids: HashMap::new(),
            dropped_unreconciled: HashMap::new(),
            backwards_checked: Default::default(),
        }));
        let reset = match self.cfg.start_at {
            SinkStart::Earliest => "earliest",
            SinkStart::Latest => "latest",
        };
        let consumer: BaseConsumer<SinkContext> =
            client::sink_consumer(&self.props, &self.connector.group_id(), reset)
                .create_with_context(SinkContext { state: state.clone(), stats: self.stats.clone() })
                .map_err(SinkError::Consumer)?;
        // Topic ids go into every commit, so that a topic deleted and re-created is recognised
        // even when its offsets have grown past the archive's (offsets alone would not show it).
        match admin::topic_ids(consumer.client(), &self.cfg.topics, Duration::from_secs(10)) {
            Ok(ids) => lock(&state).topic_ids = ids,
            Err(error) => {
                tracing::warn!(%error, "cannot read the topics' ids; a re-created topic is then recognised only when its offsets go backwards")
            }
        }
        // Put right what an earlier run left, including partitions this daemon may never be
        // assigned again (another daemon took them over while it was down).
        if let Target::File(_) = self.cfg.target() {
            while !assignment::reconcile_single_file(&consumer, &mut lock(&state), &self.cfg.topics, &probe)?
            {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                crate::stop::sleep_unless(stop, Duration::from_secs(1));
            }
        } else {
            let local = self.local_partitions();
            let mut left = assignment::reconcile_files(&consumer, &mut lock(&state), &local)?;
            while !left.is_empty() && !stop.load(Ordering::Relaxed) {
                crate::stop::sleep_unless(stop, Duration::from_secs(1));
                left = assignment::reconcile_files(&consumer, &mut lock(&state), &left)?;
            }
        }
        let topics: Vec<&str> = self.cfg.topics.iter().map(String::as_str).collect();
        consumer
            .subscribe(&topics)
            .map_err(|error| SinkError::Subscribe { topics: self.cfg.topics.clone(), error })?;

        let mut commit_at = Instant::now() + self.cfg.commit_interval;
        // Records written to buffers but not yet to the files: once the consumer's queue runs
        // dry they are handed to the kernel, so that `tail -F` sees them without waiting for the
        // next fsync and commit.
        let mut unflushed = false;
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            let message = consumer.poll(if unflushed { Duration::ZERO } else { Duration::from_millis(100) });
            let mut st = lock(&state);
            if message.is_none() && unflushed {
                if let Err(e) = st.layout.flush() {
                    break Err(e);
                }
                unflushed = false;
            }
            if let Some(e) = st.failed.take() {
                break Err(e);
            }
            if !st.pending.is_empty()
                && let Err(e) = assignment::reconcile_pending(&consumer, &mut st)
            {
                break Err(e);
            }
            match message {
                Some(Ok(m)) => {
                    // Only `json` writes headers: `lines` never reads them (nothing in them can
                    // stop it), and `json` reads them as bytes (kafka::headers).
                    let headers = match self.cfg.format {
                        SinkFormat::Json => crate::kafka::headers::raw(&m),
                        SinkFormat::Lines => Vec::new(),
                    };
                    let record = format::Record {
                        topic: m.topic(),
                        partition: m.partition(),
                        offset: m.offset(),
                        timestamp: m.timestamp().to_millis(),
                        key: m.key(),
                        headers,
                        value: m.payload(),
                    };
                    if let Err(e) = self.write(&consumer, &mut st, &record) {
                        break Err(e);
                    }
                    unflushed = true;
                }
                Some(Err(error)) => {
                    tracing::warn!(%error, "consumer error");
                }
                None => {}
            }
            if Instant::now() >= commit_at {
                let ticked = with_committer(&consumer, &mut st, |layout, committer| {
                    layout.tick(committer, &mut |tp: &Tp| caught_up(&consumer, tp))
                });
                if let Err(e) = ticked {
                    break Err(e);
                }
                match with_committer(&consumer, &mut st, |layout, committer| layout.commit(committer)) {
                    Ok(()) => {}
                    Err(e) if ends_without_commit(&e) => break Err(e),
                    Err(e) => tracing::warn!(error = %e, "commit failed; will retry"),
                }

                commit_at = Instant::now() + self.cfg.commit_interval;
            }
        };

        // Drain: durable, committed, then leave the group (the revoke callback commits again,
        // finding nothing new).
        {
            let mut st = lock(&state);
            if result.as_ref().is_err_and(ends_without_commit) {
                // Nothing written by this run after its last commit may be committed now (not
                // here, not in the revocation on leaving): the restart rewrites it from Kafka.
                st.layout.abandon();
            }
            if let Err(e) = with_committer(&consumer, &mut st, |layout, committer| layout.commit(committer)) {
                tracing::warn!(error = %e, "final commit failed; the next start re-reads from the last commit");
            }
        }
        consumer.unsubscribe();
        drop(consumer);
        result
    }

    /// Partitions that have an active file in this sink's directory (from an earlier run).
    fn local_partitions(&self) -> Vec<(String, i32)> {
        let mut found = Vec::new();
        let Target::Dir(dir) = self.cfg.target() else { return found };
        for topic in &self.cfg.topics {
            let Ok(entries) = std::fs::read_dir(dir.join(topic)) else { continue };
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let partition = name
                    .strip_prefix(&format!("{topic}-"))
                    .and_then(|r| r.strip_suffix(".log"))
                    .and_then(|p| p.parse::<i32>().ok());
                if let Some(p) = partition {
                    found.push((topic.clone(), p));
                }
            }
        }
        found
    }

    /// Hands one consumed record to the layout, as the line its format makes of it.
    fn write(
        &self,
        consumer: &BaseConsumer<SinkContext>,
        st: &mut State,
        record: &format::Record<'_>,
    ) -> Result<(), SinkError> {
        let key = (record.topic.to_string(), record.partition);
        if !assignment::admit(consumer, st, &key, record.offset) {
            return Ok(());
        }
        // In `lines` a null value has no representation (an empty line would be an empty value);
        // in `json` it is `"value": null`.
        let unwrapped = match (self.cfg.value_format, record.value) {
            (ValueFormat::ConnectJson, Some(value)) => {
                let payload = format::unwrap_connect_json(value);
                if payload.is_none() {
                    st.stats.records_not_unwrapped.fetch_add(1, Ordering::Relaxed);
                    if st.not_unwrapped_logged.insert(key.clone()) {
                        tracing::warn!(
                            topic = record.topic,
                            partition = record.partition,
                            offset = record.offset,
                            "value_format = \"connect-json\": a value that is not a JsonConverter envelope with a string payload is written raw (counted; logged once per partition)"
                        );
                    }
                }
                payload
            }
            _ => None,
        };
        let value = unwrapped.as_deref().map(str::as_bytes).or(record.value);
        let line = match (self.cfg.format, value) {
            (SinkFormat::Lines, Some(value)) => Some(std::borrow::Cow::Borrowed(value)),
            (SinkFormat::Json, value) => {
                Some(std::borrow::Cow::Owned(format::json_line(&format::Record { value, ..record.clone() })))
            }
            (SinkFormat::Lines, None) => None,
        };
        with_committer(consumer, st, |layout, committer| {
            layout.write(committer, &key, record.offset, line.as_deref(), record.timestamp)
        })
    }
}
