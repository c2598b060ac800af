//! file-sink: consumes topics into rotating local files, committing offsets only after the data
//! they cover is fsynced, so that after any crash the files hold every record exactly once.
//!
//! Data path: consumer (group = connector name, read_committed) → writer per partition (append,
//! fsync) → commit with metadata → local commit cache. One thread per connector; rebalance
//! callbacks run inside `poll` on that same thread.
//!
//! Invariants:
//! - an offset is committed only for records already fsynced in the active file it names;
//! - a rotated file is renamed only after the commit covering all of it succeeded;
//! - on every assignment the writer reconciles its files with the committed state and seeks to
//!   the committed offset before writing; records below the expected offset are skipped.

pub mod commit;
pub mod format;
pub mod housekeeping;
pub mod paths;
pub mod single;
pub mod writer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Message;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::config::connector::{SinkFormat, SinkStart, ValueFormat};
use crate::config::kafka_props::KafkaProps;
use crate::config::{ConnectorConfig, SinkConfig};
use crate::failpoints;
use crate::kafka::{admin, client};
use commit::{CommitCache, CommitMeta, Committed};
use single::SingleFile;
use writer::PartitionWriter;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("creating the Kafka consumer failed: {0}")]
    Consumer(KafkaError),
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
    pub durable_seconds: crate::metrics::LatencyHistogram,
    /// The offsets last committed, per partition (for the REST API's offsets).
    pub committed: Mutex<std::collections::BTreeMap<(String, i32), i64>>,
    pub records_skipped_null: AtomicU64,
    pub records_duplicate: AtomicU64,
    pub offsets_skipped: AtomicU64,
    pub offsets_lost_to_retention: AtomicU64,
    pub commits: AtomicU64,
    pub rotations: AtomicU64,
    /// `value_format = "connect-json"`: values written raw because they were not an envelope.
    pub records_not_unwrapped: AtomicU64,
    /// Rotated files compressed, and deleted by retention (`sink::housekeeping`).
    pub files_compressed: AtomicU64,
    pub files_deleted: AtomicU64,
}

struct State {
    sink_dir: PathBuf,
    /// Permissions of created files (`file_mode`).
    file_mode: u32,
    /// The single-file sink's file and partitions (`file = ...`); `writers` stays empty then.
    single: Option<SingleFile>,
    daemon_id: String,
    connector: String,
    writers: HashMap<(String, i32), PartitionWriter>,
    /// Assigned but not yet reconciled.
    pending: Vec<(String, i32)>,
    cache: CommitCache,
    cache_path: PathBuf,
    stats: Arc<SinkStats>,
    /// The first error met inside a rebalance callback (which cannot return one).
    failed: Option<SinkError>,
    /// Partitions whose offsets went backwards: paused, never written.
    stalled: std::collections::HashSet<(String, i32)>,
    /// Partitions whose first value that `connect-json` could not unwrap was logged.
    not_unwrapped_logged: std::collections::HashSet<(String, i32)>,
    /// Partitions just positioned at their writer's next offset, until the first record proves
    /// the consumer is there (see `Sink::verify`).
    verify: HashMap<(String, i32), Verify>,
    /// Each topic's id, read once per run (None: unknown; then commits carry none and nothing
    /// is checked against it).
    topic_ids: HashMap<String, String>,
    /// Per partition waiting to be reconciled, the lowest offset of a record that arrived anyway
    /// (fetched before the pause took effect) and was dropped: with no committed offset to seek
    /// to, reconciliation seeks back here, so that nothing is dropped for good.
    dropped_unreconciled: HashMap<(String, i32), i64>,
    /// Partitions whose watermarks were read since they were positioned, because a record came
    /// from below the expected offset (read once: a re-created topic shows on the first).
    backwards_checked: std::collections::HashSet<(String, i32)>,
}

/// A partition's resume offset, until its first record is seen.
#[derive(Debug, Clone, Copy)]
struct Verify {
    at: i64,
    /// Already sought to `at` again once because the first record came from beyond it.
    reseeked: bool,
}

struct SinkContext {
    state: Arc<Mutex<State>>,
    /// Also reachable here without the state's lock (statistics arrive during polls).
    stats: Arc<SinkStats>,
}

impl ClientContext for SinkContext {
    /// librdkafka's statistics (every `statistics.interval.ms`) carry each partition's lag.
    fn stats(&self, statistics: rdkafka::Statistics) {
        let mut lag = std::collections::BTreeMap::new();
        for (topic, t) in statistics.topics {
            for (partition, p) in t.partitions {
                // -1 is the internal "unassigned" partition, and lag is -1 while unknown.
                if partition >= 0 && p.consumer_lag >= 0 {
                    lag.insert((topic.clone(), partition), p.consumer_lag);
                }
            }
        }
        *self.stats.lag.lock().unwrap_or_else(|p| p.into_inner()) = lag;
    }
}

impl ConsumerContext for SinkContext {
    /// Handles a rebalance itself instead of librdkafka's default assign, so that where each
    /// partition resumes is decided once: its files are reconciled here, and the partition is
    /// assigned at the offset its writer expects next. (A seek after a plain assign can lose
    /// the race against librdkafka's own fetch of the committed offset, and then the consumer
    /// and the writer disagree about where the partition resumes.)
    fn rebalance(&self, consumer: &BaseConsumer<Self>, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(consumer.rebalance_protocol(), RebalanceProtocol::Cooperative);
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                let mut state = lock(&self.state);
                let partitions: Vec<(String, i32)> =
                    tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
                let unpositioned = assign_positions(consumer, &mut state, &partitions, tpl);
                let assigned =
                    if cooperative { consumer.incremental_assign(tpl) } else { consumer.assign(tpl) };
                if let Err(error) = assigned {
                    tracing::error!(connector = %state.connector, %error, "assigning partitions failed");
                }
                if unpositioned.count() > 0 {
                    // Held still until reconciled (`reconcile_pending` seeks and resumes them).
                    if let Err(error) = consumer.pause(&unpositioned) {
                        tracing::warn!(connector = %state.connector, %error, "cannot pause unreconciled partitions; their records are fetched again after the seek");
                    }
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.revoke(consumer, tpl);
                let result =
                    if cooperative { consumer.incremental_unassign(tpl) } else { consumer.unassign() };
                if let Err(error) = result {
                    tracing::warn!(%error, "unassigning revoked partitions failed");
                }
            }
            other => {
                tracing::error!(error = ?other, "rebalance error; unassigning");
                let _ = consumer.unassign();
            }
        }
    }
}

impl SinkContext {
    /// Partitions leaving: make them durable and commit before letting go, so that the next
    /// owner starts exactly where this one's files end.
    fn revoke(&self, consumer: &BaseConsumer<Self>, tpl: &TopicPartitionList) {
        let mut state = lock(&self.state);
        let revoked: Vec<(String, i32)> =
            tpl.elements().iter().map(|e| (e.topic().to_string(), e.partition())).collect();
        for key in &revoked {
            state.verify.remove(key);
            state.backwards_checked.remove(key);
            state.dropped_unreconciled.remove(key);
        }
        if state.single.is_some() {
            // All partitions share the file: they must leave with a commit that covers it,
            // else the partitions that stay would later commit a length that includes
            // uncommitted records of the ones that left.
            let result = commit_single(consumer, &mut state);
            let state = &mut *state;
            if let Some(sf) = state.single.as_mut() {
                if result.is_err() || sf.dirty() {
                    sf.poisoned = true;
                    if state.failed.is_none() {
                        state.failed = Some(SinkError::Uncommitted {
                            path: sf.path.clone(),
                            what: "revoked partitions could not be committed".into(),
                        });
                    }
                }
                for key in &revoked {
                    sf.parts.remove(key);
                }
            }
            state.pending.retain(|k| !revoked.contains(k));
            return;
        }
        match commit_partitions(consumer, &mut state, Some(&revoked)) {
            Ok(()) => {}
            // A write or fsync error must end the run (it is never retried on the descriptor);
            // so must a re-created topic (nothing of it may be committed).
            Err(e @ (SinkError::Io { .. } | SinkError::TopicRecreated { .. })) => {
                tracing::error!(connector = %state.connector, error = %e, "could not make revoked partitions durable; the run ends and the next owner re-reads from the last commit");
                state.failed.get_or_insert(e);
            }
            Err(e) => {
                tracing::warn!(connector = %state.connector, error = %e, "could not commit revoked partitions; the next owner re-reads from the last commit")
            }
        }
        for key in &revoked {
            state.writers.remove(key);
            state.pending.retain(|k| k != key);
        }
    }
}

/// Reconciles newly assigned partitions and writes the offset each must resume at into `tpl`
/// (the writer's next offset: one value for both). Returns the partitions that could not be
/// positioned (Kafka did not answer, or stalled), to be paused; the unreconciled ones are left in
/// `pending`.
fn assign_positions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[(String, i32)],
    tpl: &mut TopicPartitionList,
) -> TopicPartitionList {
    let mut unpositioned = TopicPartitionList::new();
    if st.single.is_some() {
        // Partitions joining a shared file start from a committed file: commit the held ones
        // first, so that every later commit's length covers only committed records.
        if let Err(e) = commit_single(consumer, st) {
            st.failed.get_or_insert(e);
        }
        if st.single.as_ref().is_some_and(|sf| sf.dirty()) {
            st.pending.extend(partitions.iter().cloned());
            for (t, p) in partitions {
                unpositioned.add_partition(t, *p);
            }
            return unpositioned;
        }
    }
    let retry = match reconcile(consumer, st, partitions, true) {
        Ok(retry) => retry,
        Err(e) => {
            st.failed.get_or_insert(e);
            partitions.to_vec()
        }
    };
    for (t, p) in partitions {
        let key = (t.clone(), *p);
        let next = if retry.contains(&key) || st.stalled.contains(&key) { None } else { st.next_of(&key) };
        match next {
            Some(next) if next >= 0 => {
                if let Err(error) = tpl.set_partition_offset(t, *p, Offset::Offset(next)) {
                    tracing::warn!(connector = %st.connector, %error, topic = t, partition = p, "cannot set the resume offset");
                }
                st.verify.insert(key, Verify { at: next, reseeked: false });
            }
            // Nothing committed anywhere: librdkafka starts as `start_at` says.
            Some(_) => {}
            None => {
                unpositioned.add_partition(t, *p);
            }
        }
    }
    st.pending.extend(retry);
    unpositioned
}

impl State {
    /// The offset a held partition's next record must have (-1: whatever comes first).
    fn next_of(&self, key: &(String, i32)) -> Option<i64> {
        match self.single.as_ref() {
            Some(sf) => sf.parts.get(key).map(|p| p.next),
            None => self.writers.get(key).map(|w| w.next),
        }
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock leaves consistent-enough state: files are reconciled anyway.
    state.lock().unwrap_or_else(|e| e.into_inner())
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
        let (Some(dir), Some(policy)) = (&self.cfg.dir, housekeeping::Policy::of(self.cfg)) else {
            return self.consume(stop);
        };
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let name = &self.connector.name;
            let (topics, stats) = (&self.cfg.topics, &*self.stats);
            let (policy, done_ref) = (&policy, &done);
            let spawned = std::thread::Builder::new()
                .name(format!("{name}-housekeeping"))
                .spawn_scoped(scope, move || {
                    housekeeping::run(name, dir, topics, policy, stats, done_ref, Duration::from_secs(1))
                });
            if let Err(error) = spawned {
                tracing::warn!(connector = %name, %error, "cannot start the housekeeping thread; rotated files are kept as they are");
            }
            let result = self.consume(stop);
            done.store(true, Ordering::Relaxed);
            result
        })
    }

    fn consume(&self, stop: &AtomicBool) -> Result<(), SinkError> {
        let name = &self.connector.name;
        // Wait for the topics to exist (the sink never creates them).
        let probe = client::base(&self.props);
        let mut backoff = Duration::from_millis(500);
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
            tracing::warn!(connector = %name, ?missing, retry_in = ?backoff, "waiting for topics (or for Kafka)");
            crate::source::sleep_unless(stop, backoff);
            backoff = (backoff * 2).min(Duration::from_secs(30));
        }

        let cache = CommitCache::load(&self.cache_path)
            .map_err(|source| SinkError::Cache { path: self.cache_path.clone(), source })?;
        let sink_dir = match (&self.cfg.dir, &self.cfg.file) {
            (Some(dir), _) => dir.clone(),
            (None, Some(file)) => file.parent().map(PathBuf::from).unwrap_or_default(),
            (None, None) => PathBuf::new(),
        };
        let state = Arc::new(Mutex::new(State {
            sink_dir,
            file_mode: self.cfg.file_mode,
            single: None,
            daemon_id: self.daemon_id.clone(),
            connector: name.clone(),
            writers: HashMap::new(),
            pending: Vec::new(),
            cache,
            cache_path: self.cache_path.clone(),
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
                tracing::warn!(connector = %name, %error, "cannot read the topics' ids; a re-created topic is then recognised only when its offsets go backwards")
            }
        }
        // Put right what an earlier run left, including partitions this daemon may never be
        // assigned again (another daemon took them over while it was down).
        if let Some(file) = &self.cfg.file {
            while !reconcile_single_file(&consumer, &mut lock(&state), file, &self.cfg.topics, &probe)? {
                if stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                crate::source::sleep_unless(stop, Duration::from_secs(1));
            }
        } else {
            let local = self.local_partitions();
            let mut left = reconcile(&consumer, &mut lock(&state), &local, false)?;
            while !left.is_empty() && !stop.load(Ordering::Relaxed) {
                crate::source::sleep_unless(stop, Duration::from_secs(1));
                left = reconcile(&consumer, &mut lock(&state), &left, false)?;
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
                if let Err(e) = flush_buffers(&mut st) {
                    break Err(e);
                }
                unflushed = false;
            }
            if let Some(e) = st.failed.take() {
                break Err(e);
            }
            if !st.pending.is_empty()
                && let Err(e) = self.reconcile_pending(&consumer, &mut st)
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
                    tracing::warn!(connector = %name, %error, "consumer error");
                }
                None => {}
            }
            if Instant::now() >= commit_at {
                match commit_partitions(&consumer, &mut st, None) {
                    Ok(()) => {}
                    // A failed fsync is never retried on the same descriptor (ARCHITECTURE.md).
                    Err(
                        e @ (SinkError::Io { .. }
                        | SinkError::Uncommitted { .. }
                        | SinkError::TopicRecreated { .. }),
                    ) => {
                        break Err(e);
                    }
                    Err(e) => tracing::warn!(connector = %name, error = %e, "commit failed; will retry"),
                }

                commit_at = Instant::now() + self.cfg.commit_interval;
            }
        };

        // Drain: durable, committed, then leave the group (the revoke callback commits again,
        // finding nothing new).
        {
            let mut st = lock(&state);
            if matches!(
                result,
                Err(SinkError::Io { .. } | SinkError::Uncommitted { .. } | SinkError::TopicRecreated { .. })
            ) {
                // Nothing written by this run after its last commit may be committed now (not
                // here, not in the revocation on leaving): the restart rewrites it from Kafka.
                st.writers.clear();
                if let Some(sf) = st.single.as_mut() {
                    sf.poisoned = true;
                }
            }
            if let Err(e) = commit_partitions(&consumer, &mut st, None) {
                tracing::warn!(connector = %name, error = %e, "final commit failed; the next start re-reads from the last commit");
            }
        }
        consumer.unsubscribe();
        drop(consumer);
        result
    }

    /// Partitions assigned while Kafka did not answer (or while the single file had uncommitted
    /// records): reconciled now, sought to their writer's next offset, and resumed.
    fn reconcile_pending(
        &self,
        consumer: &BaseConsumer<SinkContext>,
        st: &mut State,
    ) -> Result<(), SinkError> {
        if st.single.is_some() {
            commit_single(consumer, st)?;
            if st.single.as_ref().is_some_and(|sf| sf.dirty()) {
                return Ok(()); // not committed yet: try again on the next poll
            }
        }
        let pending = std::mem::take(&mut st.pending);
        let retry = reconcile(consumer, st, &pending, true)?;
        for key in pending.iter().filter(|k| !retry.contains(k) && !st.stalled.contains(k)) {
            let Some(next) = st.next_of(key) else { continue };
            let dropped = st.dropped_unreconciled.remove(key);
            // Nothing committed: resume at the first record that arrived before reconciliation.
            let next = if next < 0 { dropped.unwrap_or(next) } else { next };
            if next >= 0 {
                if let Err(error) =
                    consumer.seek(&key.0, key.1, Offset::Offset(next), Duration::from_secs(10))
                {
                    tracing::warn!(connector = %st.connector, topic = key.0, partition = key.1, %error, "seek failed; will retry");
                    st.writers.remove(key);
                    if let Some(sf) = st.single.as_mut() {
                        sf.parts.remove(key);
                    }
                    st.pending.push(key.clone());
                    continue;
                }
                st.verify.insert(key.clone(), Verify { at: next, reseeked: false });
            }
            let mut one = TopicPartitionList::new();
            one.add_partition(&key.0, key.1);
            if let Err(error) = consumer.resume(&one) {
                tracing::warn!(connector = %st.connector, topic = key.0, partition = key.1, %error, "cannot resume a reconciled partition");
            }
        }
        st.pending.extend(retry);
        Ok(())
    }

    /// The first record of a partition nothing was ever committed for: commit its offset with an
    /// empty file first, so that after a crash before the next commit the file this run starts
    /// is known as this writer's (truncated back, not set aside as a file of unknown origin).
    fn commit_first_position(
        &self,
        consumer: &BaseConsumer<SinkContext>,
        st: &mut State,
        key: &(String, i32),
        offset: i64,
    ) -> Result<(), SinkError> {
        match st.single.as_mut() {
            Some(sf) => {
                if let Some(part) = sf.parts.get_mut(key) {
                    part.next = offset;
                }
                commit_single(consumer, st)
            }
            None => {
                if let Some(w) = st.writers.get_mut(key) {
                    w.next = offset;
                }
                commit_partitions(consumer, st, Some(std::slice::from_ref(key)))
            }
        }
    }

    /// Partitions that have an active file in this sink's directory (from an earlier run).
    fn local_partitions(&self) -> Vec<(String, i32)> {
        let mut found = Vec::new();
        let Some(dir) = &self.cfg.dir else { return found };
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

    fn write(
        &self,
        consumer: &BaseConsumer<SinkContext>,
        st: &mut State,
        record: &format::Record<'_>,
    ) -> Result<(), SinkError> {
        let (topic, partition, offset) = (record.topic, record.partition, record.offset);
        let key = (topic.to_string(), partition);
        let next = match st.single.as_ref() {
            Some(sf) => sf.parts.get(&key).map(|p| p.next),
            None => st.writers.get(&key).map(|w| w.next),
        };
        let Some(next) = next else {
            // Not (yet) reconciled: the partition is paused, and the seek after reconciliation
            // fetches this record again (to this offset, if nothing was committed).
            let lowest = st.dropped_unreconciled.entry(key).or_insert(offset);
            *lowest = (*lowest).min(offset);
            return Ok(());
        };
        if let Some(v) = st.verify.get_mut(&key) {
            if offset > v.at && !v.reseeked {
                // The first record after positioning lies beyond the resume offset: either the
                // position was not applied (librdkafka's own committed-offset fetch won), or the
                // offsets between hold no records (transaction markers, compaction, retention).
                // Seek once more to tell which; this record comes again either way.
                v.reseeked = true;
                let at = v.at;
                tracing::debug!(connector = %st.connector, topic, partition, expected = at, got = offset, "first record beyond the resume offset; seeking again to confirm");
                if let Err(error) =
                    consumer.seek(topic, partition, Offset::Offset(at), Duration::from_secs(10))
                {
                    tracing::warn!(connector = %st.connector, topic, partition, %error, "seek failed; the partition is reconciled again");
                    st.verify.remove(&key);
                    st.writers.remove(&key);
                    if let Some(sf) = st.single.as_mut() {
                        sf.parts.remove(&key);
                    }
                    st.pending.push(key);
                }
                return Ok(());
            }
            if offset >= v.at {
                st.verify.remove(&key);
            }
        }
        if next >= 0 && offset < next {
            // A record fetched before the position took effect. If the log now ends below what
            // was written, the topic was re-created: stall instead of skipping (or, worse,
            // overwriting) forever. Read the watermarks once per positioning, not per record.
            if st.backwards_checked.insert(key.clone())
                && let Ok((_, high)) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(5))
                && high < next
            {
                tracing::error!(connector = %st.connector, topic, partition, written = next, log_end = high, "offsets went backwards: the partition is stalled and its archive left untouched");
                // (In a single file the partition keeps its place: what it wrote stays committed.)
                st.writers.remove(&key);
                st.stalled.insert(key);
                st.stats.stalled_partitions.store(st.stalled.len() as u64, Ordering::Relaxed);
                let mut one = TopicPartitionList::new();
                one.add_partition(topic, partition);
                let _ = consumer.pause(&one);
                return Ok(());
            }
            st.stats.records_duplicate.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        if next >= 0 && offset > next {
            // Offsets with no record: transaction markers, compaction, or retention deleted them
            // before they were read. Only the last is a loss; all are counted.
            st.stats.offsets_skipped.fetch_add((offset - next) as u64, Ordering::Relaxed);
        }
        if next < 0 {
            self.commit_first_position(consumer, st, &key, offset)?;
        }
        // In `lines` a null value has no representation (an empty line would be an empty value);
        // in `json` it is `"value": null`.
        let unwrapped = match (self.cfg.value_format, record.value) {
            (ValueFormat::ConnectJson, Some(value)) => {
                let payload = format::unwrap_connect_json(value);
                if payload.is_none() {
                    st.stats.records_not_unwrapped.fetch_add(1, Ordering::Relaxed);
                    if st.not_unwrapped_logged.insert(key.clone()) {
                        tracing::warn!(connector = %st.connector, topic, partition, offset, "value_format = \"connect-json\": a value that is not a JsonConverter envelope with a string payload is written raw (counted; logged once per partition)");
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
        if let Some(sf) = st.single.as_mut() {
            match &line {
                Some(line) => {
                    sf.append(line).map_err(|source| SinkError::Io { path: sf.path.clone(), source })?;
                    st.stats.records_written.fetch_add(1, Ordering::Relaxed);
                    st.stats.bytes_written.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                    sf.unsynced.push(Instant::now());
                }
                None => {
                    st.stats.records_skipped_null.fetch_add(1, Ordering::Relaxed);
                }
            }
            if let Some(part) = sf.parts.get_mut(&key) {
                part.next = offset + 1;
            }
            return Ok(());
        }
        let Some(w) = st.writers.get_mut(&key) else { return Ok(()) };
        match line {
            Some(line) => {
                w.append(offset, &line).map_err(|source| SinkError::Io { path: w.active_path(), source })?;
                st.stats.records_written.fetch_add(1, Ordering::Relaxed);
                st.stats.bytes_written.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                w.unsynced.push(Instant::now());
            }
            None => {
                w.next = offset + 1;
                st.stats.records_skipped_null.fetch_add(1, Ordering::Relaxed);
            }
        }
        if w.needs_rotation(self.cfg.rotate_bytes, self.cfg.rotate_interval) {
            // The commit says the file is sealed, so that after a crash anywhere from here on
            // reconciliation knows an active file found later is a new one.
            w.sealing = true;
            commit_partitions(consumer, st, Some(std::slice::from_ref(&key)))?;
            let w = st.writers.get_mut(&key).expect("present above");
            if w.committed != w.next {
                // Not committed: the file goes on (a later sealed commit closes it).
                w.sealing = false;
            } else {
                let path = w.active_path();
                if let Some(rotated) = w.rotate().map_err(|source| SinkError::Io { path, source })? {
                    st.stats.rotations.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(connector = %st.connector, file = %rotated.display(), "rotated");
                }
            }
        }
        Ok(())
    }
}

/// Reconciles `partitions` with their committed state (Kafka's, else the local cache). With
/// `assigned`, the writers are kept, each at the offset its partition must resume at (the caller
/// positions the consumer there); without (start-up, for partitions this daemon may no longer
/// own), only the files are put right. Returns the partitions to try again later (Kafka did not
/// answer, or answered with an error for one of them).
fn reconcile<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    partitions: &[(String, i32)],
    assigned: bool,
) -> Result<Vec<(String, i32)>, SinkError> {
    if partitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut tpl = TopicPartitionList::new();
    for (t, p) in partitions {
        tpl.add_partition(t, *p);
    }
    let committed = match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) => c,
        Err(error) => {
            tracing::warn!(connector = %st.connector, %error, "cannot read committed offsets yet; will retry");
            return Ok(partitions.to_vec());
        }
    };
    // An error for one partition (coordinator loading, unstable offsets) comes with no offset:
    // taken for "nothing committed", it would make the local cache the authority.
    if let Some(e) = committed.elements().iter().find(|e| e.error().is_err()) {
        tracing::warn!(connector = %st.connector, topic = e.topic(), partition = e.partition(), error = ?e.error(), "cannot read a committed offset yet; will retry");
        return Ok(partitions.to_vec());
    }
    if let Some(message) = failpoints::fire("sink::reconcile::committed") {
        tracing::warn!(connector = %st.connector, %message, "cannot read committed offsets yet; will retry");
        return Ok(partitions.to_vec());
    }
    let mut retry = Vec::new();
    for e in committed.elements() {
        let (topic, partition) = (e.topic().to_string(), e.partition());
        let from_kafka = match e.offset() {
            Offset::Offset(o) => {
                Some(Committed { offset: o, meta: CommitMeta::decode(e.metadata()).unwrap_or_default() })
            }
            _ => None,
        };
        let own = st.cache.get(&topic, partition);
        if let Some(c) = from_kafka.as_ref().filter(|c| c.meta.w == st.daemon_id) {
            // This daemon records every commit before sending it: one it never recorded was made
            // by another process with the same daemon_id (a cloned host), whose files are not
            // ours to reconcile against.
            if let Some(latest) = own.latest().filter(|l| c.offset > l.offset) {
                tracing::warn!(
                    connector = %st.connector, topic, partition, committed = c.offset, ours = latest.offset,
                    daemon_id = %st.daemon_id,
                    "Kafka holds a commit under this daemon_id beyond any this daemon made: another daemon with the \
                     same daemon_id (a cloned host?) writes this group, or the state directory was restored from an \
                     older copy; give every host its own daemon_id"
                );
            }
            st.cache.adopt(&topic, partition, c);
        }
        let authority = from_kafka.clone().or_else(|| own.latest().cloned());
        // Where the partition resumes: its committed offset, or the log start when retention
        // deleted records before they were archived (counted; librdkafka would otherwise reset
        // to `start_at`, which for "latest" skips everything retained).
        let mut resume = authority.as_ref().map_or(-1, |c| c.offset);
        // A re-created topic: its files are still reconciled (an uncommitted tail may hold records
        // of the new topic), but nothing more is written to them.
        let mut stall = false;
        if let Some(c) = &authority {
            match consumer.fetch_watermarks(&topic, partition, Duration::from_secs(10)) {
                Ok((_, high)) if c.offset > high => {
                    // The log ends before what was archived: the topic was deleted and re-created
                    // (or lost data). Writing on would mix two histories into one set of files.
                    tracing::error!(
                        connector = %st.connector, topic, partition, committed = c.offset, log_end = high,
                        "offsets went backwards: the partition is stalled and its archive left untouched; \
                         move {}/{topic} aside and reset the group's offsets to archive the new topic",
                        st.sink_dir.display()
                    );
                    stall = true;
                }
                Ok((low, _)) if c.offset < low => {
                    tracing::warn!(
                        connector = %st.connector, topic, partition, committed = c.offset, log_start = low,
                        lost = low - c.offset, "records were deleted by retention before they were archived; resuming at the log start"
                    );
                    if assigned {
                        st.stats
                            .offsets_lost_to_retention
                            .fetch_add((low - c.offset) as u64, Ordering::Relaxed);
                    }
                    resume = low;
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::warn!(connector = %st.connector, topic, partition, %error, "cannot read watermarks yet; will retry");
                    retry.push((topic, partition));
                    continue;
                }
            }
        }
        // Offsets that went back are the older check; a changed id also catches a re-created
        // topic whose offsets grew past the archive's.
        if let Some(c) = authority.as_ref().filter(|_| !stall)
            && let (Some(then), Some(now)) = (c.meta.tid.as_ref(), st.topic_ids.get(&topic))
            && then != now
        {
            tracing::error!(
                connector = %st.connector, topic, partition, archived_id = then, current_id = now,
                "topic id changed: the topic was deleted and re-created since it was archived; the partition is \
                 stalled and its archive left untouched; move {}/{topic} aside and reset the group's offsets to \
                 archive the new topic",
                st.sink_dir.display()
            );
            stall = true;
        }
        if stall {
            st.stalled.insert((topic.clone(), partition));
            st.stats.stalled_partitions.store(st.stalled.len() as u64, Ordering::Relaxed);
        }
        if let Some(sf) = st.single.as_mut() {
            // The file itself was reconciled at start-up and is committed whenever partitions
            // join (see `assign_positions`): a partition only needs its resume offset.
            if !assigned || stall {
                continue;
            }
            let committed = authority.as_ref().map_or(-1, |c| c.offset);
            tracing::info!(connector = %st.connector, topic, partition, next_offset = resume, file = %sf.path.display(), "partition joins the single file");
            sf.parts.insert((topic, partition), single::Part { next: resume, committed });
            continue;
        }
        let (mut writer, outcome) = PartitionWriter::reconcile(
            &st.sink_dir,
            &topic,
            partition,
            &st.daemon_id,
            authority.as_ref(),
            &own,
        )
        .map_err(|source| SinkError::Io { path: st.sink_dir.join(&topic), source })?;
        writer.file_mode = st.file_mode;
        writer.next = resume;
        tracing::info!(connector = %st.connector, topic, partition, next_offset = writer.next, ?outcome, assigned, stall, "partition reconciled");
        if stall {
            continue;
        }
        if assigned {
            st.writers.insert((topic, partition), writer);
        }
    }
    Ok(retry)
}

/// Hands buffered records to the kernel (no fsync): visible to readers, not yet durable.
fn flush_buffers(st: &mut State) -> Result<(), SinkError> {
    if let Some(sf) = st.single.as_mut() {
        sf.flush().map_err(|source| SinkError::Io { path: sf.path.clone(), source })?;
    }
    for w in st.writers.values_mut() {
        w.flush().map_err(|source| SinkError::Io { path: w.active_path(), source })?;
    }
    Ok(())
}

/// fsyncs and commits the dirty writers (all, or `only` these partitions). Data is durable
/// before the commit is sent: that is the invariant.
fn commit_partitions<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    only: Option<&[(String, i32)]>,
) -> Result<(), SinkError> {
    if st.single.is_some() {
        return commit_single(consumer, st);
    }
    let mut commits = Vec::new();
    for (key, w) in st.writers.iter_mut() {
        if only.is_some_and(|o| !o.contains(key)) || !(w.dirty() || w.durable_len != w.len) {
            continue;
        }
        w.sync().map_err(|source| SinkError::Io { path: w.active_path(), source })?;
        for consumed in w.unsynced.drain(..) {
            st.stats.durable_seconds.observe(consumed.elapsed());
        }
        if w.next < 0 {
            continue;
        }
        commits.push((
            key.0.clone(),
            key.1,
            Committed { offset: w.next, meta: w.commit_meta(&st.daemon_id) },
        ));
    }
    for (topic, partition, c) in send_commit(consumer, st, commits)? {
        if let Some(w) = st.writers.get_mut(&(topic, partition)) {
            w.committed = c.offset;
        }
    }
    Ok(())
}

/// The one commit path of both layouts: records the commits in the local cache (durably, before
/// sending), sends them in one request, reads back what was applied if Kafka reports a failure
/// (a commit that failed or timed out may still have been applied), and returns the applied ones.
fn send_commit<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    commits: Vec<(String, i32, Committed)>,
) -> Result<Vec<(String, i32, Committed)>, SinkError> {
    if commits.is_empty() {
        return Ok(commits);
    }
    // Before anything is committed: has a topic been re-created under the records being committed?
    // (Kafka keeps a consumer's position across a deletion: records of the new topic can arrive at
    // offsets that simply continue the old ones.) A failed look is not a reason to stop.
    let mut topics: Vec<String> = commits.iter().map(|(t, _, _)| t.clone()).collect();
    topics.sort();
    topics.dedup();
    topics.retain(|t| st.topic_ids.contains_key(t));
    match admin::topic_ids(consumer.client(), &topics, Duration::from_secs(5)) {
        Ok(now) => {
            for (topic, id) in now {
                if let Some(then) = st.topic_ids.get(&topic).filter(|then| **then != id) {
                    return Err(SinkError::TopicRecreated { topic, then: then.clone(), now: id });
                }
            }
        }
        Err(error) => {
            tracing::debug!(connector = %st.connector, %error, "cannot check the topics' ids before committing")
        }
    }
    let mut tpl = TopicPartitionList::new();
    let mut sent = Vec::new();
    for (topic, partition, mut c) in commits {
        c.meta.tid = st.topic_ids.get(&topic).cloned();
        if let Err(error) = tpl.add_partition_offset(&topic, partition, Offset::Offset(c.offset)) {
            tracing::warn!(connector = %st.connector, %error, "cannot express offset {} for commit", c.offset);
            continue;
        }
        if let Some(mut e) = tpl.find_partition(&topic, partition) {
            e.set_metadata(c.meta.encode());
        }
        sent.push((topic, partition, c));
    }
    let path = st.cache_path.clone();
    st.cache
        .attempt(sent.iter().map(|(t, p, c)| (t.as_str(), *p, c)))
        .map_err(|source| SinkError::Cache { path, source })?;
    let result = match failpoints::fire("sink::commit::send") {
        Some(_) => Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut)),
        None => consumer.commit(&tpl, CommitMode::Sync).and_then(|()| {
            // Applied, but reported failed (a timeout after the broker wrote it).
            match failpoints::fire("sink::commit::lost-answer") {
                Some(_) => Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::RequestTimedOut)),
                None => Ok(()),
            }
        }),
    };
    failpoints::fire("sink::commit::after");
    let applied = match result {
        Ok(()) => sent,
        Err(error) => {
            let back = match failpoints::fire("sink::commit::readback") {
                Some(message) => Err(message),
                None => consumer
                    .committed_offsets(tpl.clone(), Duration::from_secs(10))
                    .map_err(|e| e.to_string()),
            };
            let applied: Vec<_> = match back {
                Ok(back) => sent
                    .into_iter()
                    .filter(|(t, p, c)| {
                        back.find_partition(t, *p).is_some_and(|e| {
                            e.offset() == Offset::Offset(c.offset)
                                && CommitMeta::decode(e.metadata()).as_ref() == Some(&c.meta)
                        })
                    })
                    .collect(),
                Err(_) => Vec::new(),
            };
            tracing::warn!(connector = %st.connector, %error, applied = applied.len(), "offset commit failed; read back what was applied, the rest is committed on the next try");
            applied
        }
    };
    if !applied.is_empty() {
        st.stats.commits.fetch_add(1, Ordering::Relaxed);
        let mut committed = st.stats.committed.lock().unwrap_or_else(|p| p.into_inner());
        for (topic, partition, c) in &applied {
            committed.insert((topic.clone(), *partition), c.offset);
        }
    }
    st.cache.confirmed(applied.iter().map(|(t, p, c)| (t.as_str(), *p, c)));
    Ok(applied)
}

/// Single-file sink, at start-up: truncates the file back to its committed length, the largest
/// length this writer committed for this file over every partition of the topics (Kafka's
/// committed offsets, else the local cache). Returns false if Kafka did not answer (try again).
fn reconcile_single_file<C: ConsumerContext>(
    consumer: &BaseConsumer<C>,
    st: &mut State,
    path: &std::path::Path,
    topics: &[String],
    probe: &rdkafka::ClientConfig,
) -> Result<bool, SinkError> {
    let mut tpl = TopicPartitionList::new();
    for t in topics {
        match admin::topic_partitions(probe, t, Duration::from_secs(10)) {
            Ok(Some(n)) => {
                for p in 0..n as i32 {
                    tpl.add_partition(t, p);
                }
            }
            Ok(None) | Err(_) => return Ok(false),
        }
    }
    let committed = match consumer.committed_offsets(tpl, Duration::from_secs(10)) {
        Ok(c) if c.elements().iter().all(|e| e.error().is_ok()) => c,
        Ok(_) => {
            tracing::warn!(connector = %st.connector, "cannot read every committed offset yet; will retry");
            return Ok(false);
        }
        Err(error) => {
            tracing::warn!(connector = %st.connector, %error, "cannot read committed offsets yet; will retry");
            return Ok(false);
        }
    };
    let mut all = Vec::new();
    for e in committed.elements() {
        let from_kafka = match e.offset() {
            Offset::Offset(o) => {
                Some(Committed { offset: o, meta: CommitMeta::decode(e.metadata()).unwrap_or_default() })
            }
            _ => None,
        };
        if let Some(c) = from_kafka.or_else(|| st.cache.get(e.topic(), e.partition()).latest().cloned()) {
            all.push(c);
        }
    }
    let (mut len, disagree) = single::committed_len(&all, &st.daemon_id, &SingleFile::meta_name(path));
    if len.is_none() && all.iter().any(|c| c.meta.w.is_empty()) {
        // Offsets committed without macklake's metadata: another writer (a Kafka Connect
        // FileStreamSink, whose group connect-<name> this is) wrote the file up to them. Take it
        // over as it is and continue from those offsets.
        len = std::fs::metadata(path).ok().map(|m| m.len());
        tracing::info!(connector = %st.connector, file = %path.display(), ?len, "taking over a file another writer (Kafka Connect?) committed: kept as it is, continuing from its committed offsets");
    }
    if disagree {
        // Normal when some partitions were not held at the last commit (a topic removed from
        // `topics`, a partition revoked): their older commits record shorter lengths.
        tracing::info!(connector = %st.connector, file = %path.display(), ?len, "partitions recorded different lengths; the largest (the last commit's) is the file's committed length");
    }
    let (sf, outcome) = SingleFile::reconcile(path, len, st.file_mode)
        .map_err(|source| SinkError::Io { path: path.to_path_buf(), source })?;
    match &outcome {
        single::FileReconciled::Damaged { .. } => {
            tracing::error!(connector = %st.connector, file = %path.display(), ?outcome, "the file is shorter than its committed length (lost or replaced); set aside, a new file continues at the committed offsets")
        }
        _ => {
            tracing::info!(connector = %st.connector, file = %path.display(), ?outcome, "single file reconciled")
        }
    }
    st.single = Some(sf);
    Ok(true)
}

/// Single-file sink: fsyncs the file, then commits every held partition in one commit whose
/// metadata records the file's durable length. If only some partitions' commits are applied,
/// the partitions no longer agree on what the file holds: the run ends (`Uncommitted`).
fn commit_single<C: ConsumerContext>(consumer: &BaseConsumer<C>, st: &mut State) -> Result<(), SinkError> {
    let daemon_id = st.daemon_id.clone();
    let Some(sf) = st.single.as_mut() else { return Ok(()) };
    if sf.poisoned || !sf.dirty() {
        return Ok(());
    }
    sf.sync().map_err(|source| SinkError::Io { path: sf.path.clone(), source })?;
    for consumed in sf.unsynced.drain(..) {
        st.stats.durable_seconds.observe(consumed.elapsed());
    }
    let meta = sf.commit_meta(&daemon_id);
    let commits: Vec<(String, i32, Committed)> = sf
        .parts
        .iter()
        .filter(|(_, part)| part.next >= 0)
        .map(|((topic, partition), part)| {
            (topic.clone(), *partition, Committed { offset: part.next, meta: meta.clone() })
        })
        .collect();
    let wanted = commits.len();
    let applied = send_commit(consumer, st, commits)?;
    let Some(sf) = st.single.as_mut() else { return Ok(()) };
    if applied.is_empty() {
        // Nothing applied: the file's tail is simply not committed yet; the next commit covers it.
        return Ok(());
    }
    if applied.len() != wanted {
        // Kafka writes one commit request atomically; this happens only when a topic vanished
        // mid-commit. Committing on would make the partitions disagree further.
        sf.poisoned = true;
        return Err(SinkError::Uncommitted {
            path: sf.path.clone(),
            what: format!("only {} of {wanted} partitions' commits were applied", applied.len()),
        });
    }
    for (topic, partition, c) in &applied {
        if let Some(part) = sf.parts.get_mut(&(topic.clone(), *partition)) {
            part.committed = c.offset;
        }
    }
    Ok(())
}
