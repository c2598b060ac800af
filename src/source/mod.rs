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
pub mod fingerprint;
pub mod headers;
pub mod positions;
pub mod reader;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
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

use crate::config::connector::{KeyMode, StartAt, ValueFormat};
use crate::config::kafka_props::KafkaProps;
use crate::config::{ConnectorConfig, SourceConfig};
use crate::kafka::{admin, client};
use checkpoint::{Checkpoints, Entry};
use discover::Discovery;
use fingerprint::{FileId, Fingerprint};
use reader::{Flow, Line, Reader};

/// Header names on every record.
pub const HEADER_PATH: &str = "macklake.path";
pub const HEADER_OFFSET: &str = "macklake.offset";
/// Dead letters only: why the line is there, and its length in the file.
pub const HEADER_REASON: &str = "macklake.reason";
pub const HEADER_ORIGINAL_LENGTH: &str = "macklake.original_length";

/// Bytes one file may contribute per loop turn, so that one busy file does not starve the others.
const READ_BUDGET: usize = 1024 * 1024;
/// Low bits of a delivery token hold the per-file sequence number; high bits the file's slot.
const SEQ_BITS: u32 = 40;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The patterns did not compile (config validation should have caught it).
    #[error("bad glob in paths or exclude: {0}")]
    Glob(#[from] globset::Error),
    /// Creating the producer failed (usually a bad librdkafka property).
    #[error("creating the Kafka producer failed: {0}")]
    Producer(KafkaError),
    /// Kafka refused a record for good (not a transient error: those are retried forever).
    #[error("Kafka refused a line of {path} at byte {offset}: {error}")]
    Delivery { path: PathBuf, offset: u64, error: KafkaError },
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

/// Acknowledgements of one file's records, in file order: the checkpointable offset advances over
/// the acknowledged prefix only, whatever order acks arrive in (they may be out of order when
/// `key = "none"` spreads a file's lines over partitions).
#[derive(Debug, Default)]
struct AckQueue {
    pending: VecDeque<Pending>,
    early: BTreeSet<u64>,
    next_seq: u64,
    acked_offset: u64,
}

/// A record handed to the producer and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
struct Pending {
    seq: u64,
    /// The file offset just past the line.
    end: u64,
    /// Payload bytes of a line (for the counters); `None` for dead letters and dropped bytes.
    len: Option<u64>,
    /// When the line was read (for the delivery latency).
    read_at: Instant,
}

impl AckQueue {
    fn new(offset: u64) -> AckQueue {
        AckQueue { acked_offset: offset, ..AckQueue::default() }
    }

    fn push(&mut self, end: u64, len: Option<u64>, read_at: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending { seq, end, len, read_at });
        seq
    }

    /// Records the acknowledgement of `seq`; returns its record unless it was stale.
    fn ack(&mut self, seq: u64) -> Option<Pending> {
        let front = self.pending.front()?.seq;
        // Stale: a line of content the file no longer has (it was truncated since).
        if seq < front {
            return None;
        }
        // Sequence numbers in the queue are consecutive.
        let acked = self.pending.get((seq - front) as usize).copied().filter(|p| p.seq == seq);
        if front != seq {
            self.early.insert(seq);
            return acked;
        }
        while let Some(&p) = self.pending.front() {
            if p.seq != seq && !self.early.remove(&p.seq) {
                break;
            }
            self.pending.pop_front();
            self.acked_offset = p.end;
        }
        acked
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts over at `offset` (the file was truncated), keeping sequence numbers unique so that
    /// acknowledgements of the old content are recognised as stale.
    fn restart_at(&mut self, offset: u64) {
        self.pending.clear();
        self.early.clear();
        self.acked_offset = offset;
    }
}

/// The delivery-token slots of the followed files. A slot is reused once its file is retired or
/// closed; records of that file may still be in flight then (those of content it lost to a
/// truncation are not waited for), and their late acknowledgements carry the slot.
#[derive(Debug, Default)]
struct Slots {
    slots: Vec<Slot>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    file: Option<FileId>,
    /// The sequence number its next file starts at.
    next_seq: u64,
}

impl Slots {
    /// A free slot for `id`, and the sequence number its records start at.
    fn take(&mut self, id: FileId) -> (usize, u64) {
        let slot = self.slots.iter().position(|s| s.file.is_none()).unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        self.slots[slot].file = Some(id);
        (slot, self.slots[slot].next_seq)
    }

    /// Frees `slot`, whose file used sequence numbers below `next_seq`. The slot's next file
    /// goes on from there (a generation, in effect): a late acknowledgement of the previous
    /// file's records is then below anything the next file sent, so it is recognised as stale.
    fn free(&mut self, slot: usize, next_seq: u64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.file = None;
            s.next_seq = s.next_seq.max(next_seq);
        }
    }

    fn file(&self, slot: usize) -> Option<&FileId> {
        self.slots.get(slot)?.file.as_ref()
    }
}

/// The token of a record: the file's slot in the high bits, the low bits of its sequence number.
fn token(slot: usize, seq: u64) -> usize {
    (slot << SEQ_BITS) | (seq as usize & ((1usize << SEQ_BITS) - 1))
}

/// The slot and full sequence number of a token, given the next sequence number of the file now
/// in that slot (the pending window is far smaller than the low bits).
fn untoken(token: usize, next_seq: u64) -> (usize, u64) {
    let slot = token >> SEQ_BITS;
    let seq_low = (token & ((1usize << SEQ_BITS) - 1)) as u64;
    let base = next_seq & !((1u64 << SEQ_BITS) - 1);
    let seq = if base | seq_low >= next_seq {
        (base | seq_low).wrapping_sub(1 << SEQ_BITS)
    } else {
        base | seq_low
    };
    (slot, seq)
}

struct Tracked {
    slot: usize,
    path: PathBuf,
    fingerprint: Fingerprint,
    reader: Reader,
    acks: AckQueue,
    last_growth: Instant,
    /// The path no longer leads to this file (rotated away or deleted): finish from the descriptor.
    detached: bool,
    /// Exactly-once mode: the position written by the last committed transaction.
    committed: u64,
    /// A copy of a followed file (copytruncate): not read while the original still holds the
    /// same bytes; once the original is truncated or finished, only the unread tail is read.
    held_by: Option<FileId>,
    /// The first bytes (up to the fingerprint size), to recognise a copy while it is written.
    prefix: Vec<u8>,
    /// A new file not yet told apart from a copy still being written: not read until it is.
    unidentified_since: Option<Instant>,
    /// The size and modification time seen by the last look, to re-check what the file holds
    /// only when one of them changed.
    last_size: u64,
    last_mtime: (i64, i64),
}

impl Tracked {
    /// Whether the file has a position to save. A held copy and a new file not yet told apart
    /// from a copy being written have none: saved at 0, either would be read whole after a
    /// restart (every line of its original sent again). Without an entry, a restart identifies
    /// it afresh.
    fn positioned(&self) -> bool {
        self.held_by.is_none() && self.unidentified_since.is_none()
    }
}

/// Shared counters (read by status and metrics).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines read from files and handed to the producer, and their bytes.
    pub lines_sent: std::sync::atomic::AtomicU64,
    pub bytes_sent: std::sync::atomic::AtomicU64,
    /// Lines Kafka acknowledged, and their bytes.
    pub lines_acked: std::sync::atomic::AtomicU64,
    pub bytes_acked: std::sync::atomic::AtomicU64,
    /// Records Kafka refused (the connector restarts and resends from its checkpoint).
    pub records_failed: std::sync::atomic::AtomicU64,
    /// Over-long lines, by what the policy did with them.
    pub long_lines_split: std::sync::atomic::AtomicU64,
    pub long_lines_truncated: std::sync::atomic::AtomicU64,
    pub long_lines_skipped: std::sync::atomic::AtomicU64,
    /// Files matched by this connector that another connector reads.
    pub conflicts: std::sync::atomic::AtomicU64,
    /// Unix time (ms) of the last checkpoint write or transaction commit.
    pub checkpoint_at_ms: std::sync::atomic::AtomicU64,
    pub transaction_aborts: std::sync::atomic::AtomicU64,
    /// From reading a line to Kafka's acknowledgement.
    pub delivery_seconds: crate::metrics::LatencyHistogram,
    /// The positions last made durable, by path (for the REST API's offsets).
    pub positions: std::sync::Mutex<std::collections::BTreeMap<PathBuf, u64>>,
    /// Files held open.
    pub files: std::sync::atomic::AtomicU64,
    /// Files followed with their descriptor closed while idle (`close_idle_after`).
    pub files_closed: std::sync::atomic::AtomicU64,
    /// Paths that could not be read, or match but are refused (symlinks, FIFOs, devices), at the last rescan.
    pub unreadable: std::sync::atomic::AtomicU64,
    pub transactions: std::sync::atomic::AtomicU64,
    pub dead_lettered: std::sync::atomic::AtomicU64,
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

/// What a file held before it was truncated in place: if a copy of it turns up (copytruncate),
/// only the copy's unread tail is read.
struct Truncation {
    fingerprint: Fingerprint,
    prefix: Vec<u8>,
    position: u64,
    at: Instant,
}

/// A followed file whose descriptor was closed while idle (fully read and acknowledged, not
/// grown for `close_idle_after`). Its position is in the checkpoints; it is reopened by path
/// when its size or modification time changes, or when a copy of it appears.
struct Closed {
    path: PathBuf,
    size: u64,
    mtime: (i64, i64),
    fingerprint: Fingerprint,
}

fn mtime(meta: &std::fs::Metadata) -> (i64, i64) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec())
}

/// What rescans keep between runs, besides the followed files.
struct ScanState {
    closed: HashMap<FileId, Closed>,
    /// Paths that could not be read at the last rescan (reported when they start and stop).
    problems: HashSet<PathBuf>,
    /// Files another source reads (reported once).
    conflicts: HashSet<PathBuf>,
    /// The connector's very first rescan ever (no checkpoint existed): `start_at` applies.
    first_start: bool,
}

/// How long a new file whose first bytes so far equal those of a followed file may wait to be
/// told apart from a copy being written (cp writes the copy after creating it empty).
const IDENTIFY_GRACE: Duration = Duration::from_secs(2);

/// What a new file (one with no checkpoint) is.
#[derive(Debug)]
enum Identity {
    /// It starts with the bytes of a file that is still followed.
    CopyOfLive(FileId),
    /// It starts with what a truncated or finished file held (the index of that record in the
    /// truncations): read from where that one stopped (`claim_copy`).
    CopyOfGone(usize),
    New,
    /// Its bytes so far are a prefix of a known file's: wait for more.
    Undecided,
}

fn identify(
    file: &File,
    myself: Option<FileId>,
    files: &HashMap<FileId, Tracked>,
    truncations: &[Truncation],
) -> Identity {
    let mut buf = [0u8; fingerprint::FINGERPRINT_BYTES];
    let n = fingerprint::read_prefix(file, &mut buf).unwrap_or(0);
    let have = &buf[..n];
    let same =
        |prefix: &[u8]| !prefix.is_empty() && have.len() >= prefix.len() && &have[..prefix.len()] == prefix;
    // Records restored from a checkpoint know the content only by its fingerprint.
    let by_fingerprint = |t: &Truncation| {
        t.prefix.is_empty() && t.fingerprint.len > 0 && t.fingerprint.matches(file).unwrap_or(false)
    };
    if let Some(i) = truncations.iter().rposition(|t| same(&t.prefix) || by_fingerprint(t)) {
        return Identity::CopyOfGone(i);
    }
    let others = || files.iter().filter(|(id, _)| Some(**id) != myself);
    if let Some((id, _)) = others().find(|(_, t)| t.held_by.is_none() && same(&t.prefix)) {
        return Identity::CopyOfLive(*id);
    }
    let could_be = |prefix: &[u8]| prefix.len() > have.len() && prefix.starts_with(have);
    if others().any(|(_, t)| could_be(&t.prefix)) || truncations.iter().any(|t| could_be(&t.prefix)) {
        return Identity::Undecided;
    }
    Identity::New
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

impl SourceStats {
    /// Everything that moves a file position: lines sent, dead letters, skipped over-long lines.
    fn progress(&self) -> u64 {
        self.lines_sent.load(Ordering::Relaxed)
            + self.dead_lettered.load(Ordering::Relaxed)
            + self.long_lines_skipped.load(Ordering::Relaxed)
    }
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
        let topic = &self.cfg.topic.name;
        // Kafka may be down at start: wait for the topic (creating it if needed), reporting why.
        let admin_config = client::base(&self.props);
        let mut backoff = Duration::from_millis(500);
        loop {
            if stop.load(Ordering::Relaxed) {
                return Ok(());
            }
            let spec = &self.cfg.topic;
            match admin::ensure_topic(
                &admin_config,
                topic,
                spec.partitions,
                spec.replication_factor,
                &spec.config,
                Duration::from_secs(10),
            ) {
                Ok(admin::TopicState::Created) => {
                    tracing::info!(connector = %self.connector.name, topic, "created topic");
                    break;
                }
                Ok(_) => break,
                Err(error @ KafkaError::AdminOp(_)) => {
                    return Err(SourceError::Topic { topic: topic.clone(), error });
                }
                Err(error) if admin::authentication_failed(&error) => {
                    return Err(SourceError::Authentication(error));
                }
                Err(error) => {
                    tracing::warn!(connector = %self.connector.name, topic, %error, retry_in = ?backoff, "waiting for Kafka");
                    sleep_unless(stop, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }

        let eos = self.cfg.exactly_once;
        if eos {
            let offsets = &self.cfg.offsets_topic;
            let compact =
                std::collections::BTreeMap::from([("cleanup.policy".to_string(), "compact".to_string())]);
            admin::ensure_topic(&admin_config, offsets, Some(6), None, &compact, Duration::from_secs(10))
                .map_err(|error| SourceError::Topic { topic: offsets.clone(), error })?;
            // A topic made by hand (or by a tool with the cluster's default policy) would lose
            // positions to retention: the files would one day be read again from the start.
            let policy =
                admin::topic_config(&admin_config, offsets, "cleanup.policy", Duration::from_secs(10))
                    .map_err(|error| SourceError::Topic { topic: offsets.clone(), error })?;
            if !policy.as_deref().is_some_and(|p| p.split(',').any(|p| p.trim() == "compact")) {
                return Err(SourceError::OffsetsNotCompacted {
                    topic: offsets.clone(),
                    policy: policy.unwrap_or_else(|| "unknown".into()),
                });
            }
        }
        if let Some(dlq) = &self.cfg.dead_letter_topic {
            admin::ensure_topic(&admin_config, dlq, None, None, &Default::default(), Duration::from_secs(10))
                .map_err(|error| SourceError::Topic { topic: dlq.clone(), error })?;
        }
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
        let mut watched: HashSet<PathBuf> = HashSet::new();
        let mut checkpoints = if eos {
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
        let mut txn = Txn { open: false, lines: 0, since: Instant::now() };
        // Truncations recorded before the last stop (their copies may still turn up).
        let now_unix = crate::fsutil::unix_now();
        let mut truncations: Vec<Truncation> = Vec::new();
        // (Oldest first, so that a duplicate from an older release keeps its newest record.)
        for t in &checkpoints.truncated {
            remember(
                &mut truncations,
                Truncation {
                    fingerprint: t.fingerprint,
                    prefix: Vec::new(),
                    position: t.position,
                    at: Instant::now()
                        .checked_sub(Duration::from_secs(now_unix.saturating_sub(t.seen_at)))
                        .unwrap_or_else(Instant::now),
                },
            );
        }
        let first_start = !checkpoints.existed;
        let mut files: HashMap<FileId, Tracked> = HashMap::new();
        let mut scan_state = ScanState {
            closed: HashMap::new(),
            problems: HashSet::new(),
            conflicts: HashSet::new(),
            first_start,
        };
        let mut slots = Slots::default();
        let mut rescan_at = Instant::now();
        let mut checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;
        let mut dirty = false;

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
                self.rescan(
                    &discovery,
                    &mut checkpoints,
                    &mut files,
                    &mut slots,
                    &mut truncations,
                    &mut scan_state,
                );
                if scan_state.first_start && !eos {
                    // The first start is recorded at once: a restart before anything else was
                    // saved must not apply `start_at` again (lines appended meanwhile would be
                    // skipped). Exactly-once records it in its first transaction, just below.
                    self.save_checkpoints(&mut checkpoints, &files, &truncations)?;
                }
                scan_state.first_start = false;
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
            self.settle_identities(&mut files, &mut truncations);
            for t in files.values_mut() {
                self.pump(&producer, t, &mut truncations)?;
            }
            txn.lines += self.stats.progress() - progress_before;

            // Wait for something to do: a filesystem event, an ack, or the poll tick (which also
            // catches growth that produced no event).
            let mut next = events.recv_timeout(Duration::from_millis(100)).ok();
            // Bounded, so that a flood of acknowledgements cannot keep the loop from reading.
            let turn = Instant::now();
            while let Some(event) = next {
                match event {
                    Event::Ack { token, result } => {
                        dirty |= self.on_ack(&mut files, &slots, token, result)?;
                    }
                    Event::Fs(Ok(e)) => {
                        use notify::EventKind::*;
                        if e.need_rescan() {
                            tracing::info!(connector = %self.connector.name, "the filesystem event queue overflowed; rescanning");
                            rescan_at = Instant::now();
                        } else if matches!(
                            e.kind,
                            Create(_) | Remove(_) | Modify(notify::event::ModifyKind::Name(_))
                        ) {
                            rescan_at = Instant::now();
                        } else if !scan_state.closed.is_empty() && matches!(e.kind, Modify(_)) {
                            // Perhaps a closed idle file grew: look soon, but not at every write.
                            rescan_at = rescan_at.min(Instant::now() + Duration::from_millis(250));
                        }
                    }
                    Event::Fs(Err(error)) => {
                        tracing::debug!(connector = %self.connector.name, %error, "filesystem watch error; rescanning");
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
                    || !checkpoints.existed)
            {
                self.commit_transaction(
                    &producer,
                    &mut checkpoints,
                    &mut files,
                    &truncations,
                    self.cfg.transaction_interval.max(Duration::from_secs(30)),
                )?;
                txn.open = false;
            }
            self.retire(&mut files, &mut slots, &mut checkpoints, &mut dirty, &mut truncations);
            self.close_idle(&mut files, &mut scan_state.closed, &mut slots, &mut checkpoints, &mut dirty);
            if !eos && dirty && Instant::now() >= checkpoint_at {
                self.save_checkpoints(&mut checkpoints, &files, &truncations)?;
                dirty = false;
                checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;
            }
        }

        if eos {
            // Drain: commit what the open transaction holds; if that cannot be done in time, the
            // next start fences it (it is aborted) and resumes from the last committed positions.
            if txn.open && txn.lines > 0 {
                if let Err(error) =
                    self.commit_transaction(&producer, &mut checkpoints, &mut files, &truncations, drain)
                {
                    tracing::warn!(connector = %self.connector.name, %error, "could not commit the last transaction while stopping; the next start resumes before it");
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
                let _ = self.on_ack(&mut files, &slots, token, result);
            }
            if Instant::now() > deadline {
                break;
            }
        }
        let unacked: usize = files.values().map(|t| t.acks.pending.len()).sum();
        if unacked > 0 {
            tracing::warn!(connector = %self.connector.name, unacked, "stopping with lines not yet acknowledged; they will be sent again at the next start");
        }
        self.save_checkpoints(&mut checkpoints, &files, &truncations)
    }

    /// Lists the watched tree: starts following new files, notices renamed and vanished ones.
    fn rescan(
        &self,
        discovery: &Discovery,
        checkpoints: &mut Checkpoints,
        files: &mut HashMap<FileId, Tracked>,
        slots: &mut Slots,
        truncations: &mut Vec<Truncation>,
        state: &mut ScanState,
    ) {
        let ScanState { closed, problems, conflicts, first_start } = state;
        let first_start = *first_start;
        truncations.retain(|t| t.at.elapsed() < self.cfg.forget_after);
        let mut present: HashSet<FileId> = HashSet::new();
        let mut new_files: Vec<(PathBuf, FileId)> = Vec::new();
        let now_unix = crate::fsutil::unix_now();
        checkpoints.scanned_at = now_unix;
        let scan = discovery.scan_reporting();
        // Problems are reported when they start and when they end, not at every rescan.
        let mut still: HashSet<PathBuf> = HashSet::new();
        for (path, why) in &scan.refused {
            if !problems.contains(path) {
                match why {
                    discover::Refused::Symlink => {
                        tracing::warn!(connector = %self.connector.name, path = %path.display(), "symlink not followed (follow_symlinks = false)")
                    }
                    discover::Refused::NotAFile => {
                        tracing::warn!(connector = %self.connector.name, path = %path.display(), "not a regular file (FIFO, socket, device or dangling link): never read")
                    }
                }
            }
            still.insert(path.clone());
        }
        for (dir, error) in &scan.unreadable {
            if !problems.contains(dir) {
                tracing::warn!(connector = %self.connector.name, dir = %dir.display(), %error, "cannot list directory; will retry");
            }
            still.insert(dir.clone());
        }
        for path in scan.files {
            let meta = if self.cfg.follow_symlinks {
                std::fs::metadata(&path)
            } else {
                std::fs::symlink_metadata(&path)
            };
            let Ok(meta) = meta else { continue };
            if !meta.file_type().is_file() {
                continue;
            }
            let id = FileId::of(&meta);
            present.insert(id);
            if let Some(t) = files.get_mut(&id) {
                if t.path != path {
                    tracing::info!(connector = %self.connector.name, from = %t.path.display(), to = %path.display(), "file renamed; still following it");
                    t.path = path;
                }
                t.detached = false;
                continue;
            }
            if let Some(c) = closed.get_mut(&id) {
                // Still there: its checkpoint must not be forgotten while it sleeps.
                if let Some(e) = checkpoints.entries.get_mut(&id) {
                    e.seen_at = now_unix;
                    e.path = path.clone();
                }
                c.path = path.clone();
                if meta.len() == c.size && mtime(&meta) == c.mtime {
                    continue;
                }
                closed.remove(&id);
            }
            new_files.push((path, id));
        }
        closed.retain(|id, _| {
            let keep = present.contains(id);
            if !keep {
                self.claims.release(*id, &self.connector.name);
            }
            keep
        });
        // A new file that starts with a closed file's bytes may be a copy of it (copytruncate):
        // reopen the original first, so that the copy is recognised and held.
        if !closed.is_empty() {
            let mut reopen = Vec::new();
            for (path, id) in &new_files {
                if checkpoints.entries.contains_key(id) {
                    continue;
                }
                let Ok(file) = File::open(path) else { continue };
                for (cid, c) in closed.iter() {
                    if c.fingerprint.len > 0 && c.fingerprint.matches(&file).unwrap_or(false) {
                        reopen.push((c.path.clone(), *cid));
                    }
                }
            }
            for (path, id) in reopen {
                if closed.remove(&id).is_some() {
                    new_files.push((path, id));
                }
            }
        }
        // Files with a checkpoint first: one of them may turn out to have been truncated, and
        // what it held is needed to recognise a copy of it among the others.
        new_files.sort_by_key(|(_, id)| !checkpoints.entries.contains_key(id));
        let room = self.cfg.max_open_files.saturating_sub(files.len());
        if new_files.len() > room {
            tracing::warn!(connector = %self.connector.name, waiting = new_files.len() - room, max_open_files = self.cfg.max_open_files, "too many files to hold open; the rest wait until idle ones are closed (close_idle_after)");
            new_files.truncate(room);
        }
        let mut conflicting = HashSet::new();
        for (path, id) in new_files {
            if let Err(owner) = self.claims.claim(id, &self.connector.name) {
                if !conflicts.contains(&path) {
                    tracing::warn!(connector = %self.connector.name, path = %path.display(), reader = %owner, "file also matched by another source, which reads it; this connector does not");
                }
                conflicting.insert(path);
                continue;
            }
            match self.open(&path, id, checkpoints, first_start, files, truncations) {
                Ok(Some(t)) => {
                    let (slot, first_seq) = slots.take(id);
                    let mut t = Tracked { slot, ..t };
                    t.acks.next_seq = first_seq;
                    tracing::info!(connector = %self.connector.name, path = %path.display(), offset = t.reader.position(), "following file");
                    files.insert(id, t);
                }
                Ok(None) => self.claims.release(id, &self.connector.name),
                Err(error) => {
                    self.claims.release(id, &self.connector.name);
                    if !problems.contains(&path) {
                        tracing::warn!(connector = %self.connector.name, path = %path.display(), %error, "cannot read file; will retry");
                    }
                    still.insert(path);
                }
            }
        }
        for gone in problems.difference(&still) {
            tracing::info!(connector = %self.connector.name, path = %gone.display(), "readable again (or gone)");
        }
        *problems = still;
        *conflicts = conflicting;
        self.stats.conflicts.store(conflicts.len() as u64, Ordering::Relaxed);
        self.stats.unreadable.store(problems.len() as u64, Ordering::Relaxed);
        for (id, t) in files.iter_mut() {
            if !present.contains(id) && !t.detached {
                tracing::info!(connector = %self.connector.name, path = %t.path.display(), "file rotated away or deleted; finishing it from the open descriptor");
                t.detached = true;
            }
        }
        self.stats.files.store(files.len() as u64, Ordering::Relaxed);
        self.stats.files_closed.store(closed.len() as u64, Ordering::Relaxed);
    }

    fn open(
        &self,
        path: &Path,
        id: FileId,
        checkpoints: &Checkpoints,
        first_start: bool,
        files: &HashMap<FileId, Tracked>,
        truncations: &mut Vec<Truncation>,
    ) -> std::io::Result<Option<Tracked>> {
        // O_NOFOLLOW: never read through a symlink planted at the last path component;
        // O_NONBLOCK: a FIFO swapped in after discovery cannot block the loop.
        let nofollow = if self.cfg.follow_symlinks { 0 } else { libc::O_NOFOLLOW };
        let file: File =
            OpenOptions::new().read(true).custom_flags(nofollow | libc::O_NONBLOCK).open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || FileId::of(&meta) != id {
            return Ok(None); // replaced between listing and opening: the next rescan sees the new one
        }
        let (fingerprint, prefix) = Fingerprint::with_prefix(&file)?;
        let size = meta.len();
        let mut held_by = None;
        let mut unidentified_since = None;
        let known = checkpoints.entries.get(&id).or_else(|| {
            let e = same_file_other_device(checkpoints, path, id, &file)?;
            tracing::info!(connector = %self.connector.name, path = %path.display(), old = e.id.dev, new = id.dev, offset = e.offset, "device number changed (a remount, overlayfs); same path, inode and first bytes: keeping its position");
            Some(e)
        });
        let offset = match known {
            Some(e) if e.fingerprint.len > 0 && e.fingerprint.matches(&file)? && size >= e.offset => e.offset,
            Some(e) if e.fingerprint.len == 0 && size >= e.offset => e.offset,
            Some(e) => {
                tracing::warn!(connector = %self.connector.name, path = %path.display(), "file was truncated or its inode reused; reading it from the start");
                // What it held may turn up as a copy (copytruncate while we were down).
                // (Its bytes are unknown now; a copy is recognised by fingerprint alone.)
                remember(
                    truncations,
                    Truncation {
                        fingerprint: e.fingerprint,
                        prefix: Vec::new(),
                        position: e.offset,
                        at: Instant::now(),
                    },
                );
                0
            }
            None => match identify(&file, None, files, truncations) {
                Identity::CopyOfGone(i) => {
                    let start = claim_copy(truncations, i, size);
                    tracing::info!(connector = %self.connector.name, path = %path.display(), start, "a copy of a truncated file (copytruncate): reading only its unread tail");
                    start
                }
                Identity::CopyOfLive(orig) => {
                    tracing::info!(connector = %self.connector.name, path = %path.display(), "a copy of a followed file (copytruncate): held until the original is truncated");
                    held_by = Some(orig);
                    0
                }
                Identity::Undecided => {
                    unidentified_since = Some(Instant::now());
                    0
                }
                Identity::New if first_start && self.cfg.start_at == StartAt::End => size,
                Identity::New => 0,
            },
        };
        let reader = Reader::new(file, offset, self.cfg.max_line_bytes, self.cfg.long_lines)
            .with_dead_letters(self.cfg.dead_letter_topic.is_some());
        Ok(Some(Tracked {
            slot: 0,
            path: path.to_path_buf(),
            fingerprint,
            reader,
            acks: AckQueue::new(offset),
            last_growth: Instant::now(),
            detached: false,
            committed: offset,
            held_by,
            prefix,
            unidentified_since,
            last_size: size,
            last_mtime: mtime(&meta),
        }))
    }

    /// Reads what is new in one file and sends it.
    fn pump(
        &self,
        producer: &ThreadedProducer<SourceContext>,
        t: &mut Tracked,
        truncations: &mut Vec<Truncation>,
    ) -> Result<(), SourceError> {
        if t.held_by.is_some() {
            return Ok(());
        }
        if t.unidentified_since.is_some() {
            return Ok(()); // see settle_identities
        }
        let meta = t.reader.file().metadata().ok();
        let size = meta.as_ref().map_or(0, |m| m.len());
        let modified = meta.as_ref().map_or((0, 0), mtime);
        // Truncated (it is shorter than what was read), or rewritten in place since the last
        // look: truncated and rewritten past that point, or overwritten with content of the same
        // length. Looked for only when its size or modification time moved.
        let rewritten = size >= t.reader.read_position()
            && (size != t.last_size || modified != t.last_mtime)
            && !t.reader.still_holds_what_was_read(&t.prefix).unwrap_or(true);
        t.last_size = size;
        t.last_mtime = modified;
        if size < t.reader.read_position() || rewritten {
            // Truncated in place (copytruncate, or `> file`): what is there now is new content.
            tracing::warn!(connector = %self.connector.name, path = %t.path.display(), position = t.reader.position(), size, rewritten, "file truncated; reading it again from the start");
            if t.fingerprint.len > 0 {
                // Where a copy of the old content may start. At-least-once: only what Kafka
                // acknowledged (lines in flight may still fail, and the copy's checkpoint must not
                // claim them). Exactly-once: everything handed out, since the copy's position is
                // committed in the same transaction as those lines, or not at all.
                let position = if self.cfg.exactly_once { t.reader.position() } else { t.acks.acked_offset };
                remember(
                    truncations,
                    Truncation {
                        fingerprint: t.fingerprint,
                        prefix: std::mem::take(&mut t.prefix),
                        position,
                        at: Instant::now(),
                    },
                );
            }
            let file = t
                .reader
                .file()
                .try_clone()
                .map_err(|source| SourceError::Checkpoint { path: t.path.clone(), source })?;
            t.reader = Reader::new(file, 0, self.cfg.max_line_bytes, self.cfg.long_lines)
                .with_dead_letters(self.cfg.dead_letter_topic.is_some());
            t.acks.restart_at(0);
            t.committed = 0;
            t.fingerprint = Fingerprint::default();
            t.prefix.clear();
        }
        if !t.fingerprint.complete() && size > u64::from(t.fingerprint.len) {
            if let Ok((fp, prefix)) = Fingerprint::with_prefix(t.reader.file()) {
                t.fingerprint = fp;
                t.prefix = prefix;
            }
        }
        let path_bytes = t.path.as_os_str().as_bytes();
        let slot = t.slot;
        let key = self.cfg.key;
        let topic = self.cfg.topic.name.as_str();
        let mut failure: Option<SourceError> = None;
        let acks = &mut t.acks;
        let stats = &self.stats;
        let dead_letter_topic = self.cfg.dead_letter_topic.as_deref();
        let max_line = self.cfg.max_line_bytes;
        let value_format = self.cfg.value_format;
        let mut envelope: Vec<u8> = Vec::new();
        // Per batch, not per line: a clock read and an allocation per line showed in profiles.
        let read_at = Instant::now();
        let mut offset_text = String::with_capacity(20);
        let host = self.cfg.host_header.then_some(self.daemon_id.as_bytes());
        let mut send = |line: Line<'_>| -> Flow {
            if let (Some(dl), Some(dlq)) = (&line.dead_letter, dead_letter_topic) {
                let token = token(slot, acks.next_seq);
                let (offset, length) = (dl.start.to_string(), dl.original_len.to_string());
                let reason = format!("line longer than max_line_bytes ({max_line})");
                let headers = OwnedHeaders::new_with_capacity(4)
                    .insert(Header { key: HEADER_REASON, value: Some(reason.as_bytes()) })
                    .insert(Header { key: HEADER_PATH, value: Some(path_bytes) })
                    .insert(Header { key: HEADER_OFFSET, value: Some(offset.as_bytes()) })
                    .insert(Header { key: HEADER_ORIGINAL_LENGTH, value: Some(length.as_bytes()) });
                if let Some(message) = crate::failpoints::fire("source::dead-letter::send") {
                    failure = Some(SourceError::Injected(message));
                    return Flow::Stop;
                }
                let record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(dlq, token)
                    .payload(dl.head)
                    .key(path_bytes)
                    .headers(headers::with_host(headers, host));
                return match producer.send(record) {
                    Ok(()) => {
                        acks.push(line.end, None, read_at);
                        stats.dead_lettered.fetch_add(1, Ordering::Relaxed);
                        Flow::Continue
                    }
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Flow::Stop,
                    Err((error, _)) => {
                        failure = Some(SourceError::Delivery {
                            path: PathBuf::from(std::ffi::OsStr::from_bytes(path_bytes)),
                            offset: dl.start,
                            error,
                        });
                        Flow::Stop
                    }
                };
            }
            let Some(payload) = line.payload else {
                // Bytes dropped by the long-line policy: nothing to wait for.
                let seq = acks.push(line.end, None, read_at);
                acks.ack(seq);
                return Flow::Continue;
            };
            let payload = match value_format {
                ValueFormat::Raw => payload,
                ValueFormat::ConnectJson => {
                    envelope.clear();
                    connect_json_envelope(payload, &mut envelope);
                    envelope.as_slice()
                }
            };
            let token = token(slot, acks.next_seq);
            offset_text.clear();
            let _ = write!(offset_text, "{}", line.start); // writing to a String cannot fail
            let headers = headers::line(path_bytes, offset_text.as_bytes(), host);
            if let Some(message) = crate::failpoints::fire("source::send") {
                failure = Some(SourceError::Injected(message));
                return Flow::Stop;
            }
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, token)
                .payload(payload)
                .headers(headers);
            if key == KeyMode::Path {
                record = record.key(path_bytes);
            }
            match producer.send(record) {
                Ok(()) => {
                    acks.push(line.end, Some(payload.len() as u64), read_at);
                    stats.lines_sent.fetch_add(1, Ordering::Relaxed);
                    stats.bytes_sent.fetch_add(payload.len() as u64, Ordering::Relaxed);
                    Flow::Continue
                }
                // The producer's queue is full: leave the line for the next turn.
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => Flow::Stop,
                Err((error, _)) => {
                    failure = Some(SourceError::Delivery {
                        path: PathBuf::from(std::ffi::OsStr::from_bytes(path_bytes)),
                        offset: line.start,
                        error,
                    });
                    Flow::Stop
                }
            }
        };
        let long_before = t.reader.stats;
        let read = t
            .reader
            .poll(READ_BUDGET, &mut send)
            .map_err(|source| SourceError::Checkpoint { path: t.path.clone(), source })?;
        let long = t.reader.stats;
        stats.long_lines_split.fetch_add(long.split - long_before.split, Ordering::Relaxed);
        stats.long_lines_truncated.fetch_add(long.truncated - long_before.truncated, Ordering::Relaxed);
        stats.long_lines_skipped.fetch_add(long.skipped - long_before.skipped, Ordering::Relaxed);
        // The bytes just read are the content's identity, whatever happens to the file next.
        let head = t.reader.head();
        if head.len() > t.prefix.len() {
            t.prefix = head.to_vec();
            t.fingerprint = Fingerprint::of_bytes(head);
        }
        if read > 0 {
            t.last_growth = Instant::now();
        } else if t.detached
            && t.reader.has_partial()
            && t.last_growth.elapsed() >= self.cfg.partial_line_timeout
        {
            // Rotated away with an unterminated last line: it will not be completed.
            t.reader.take_partial(&mut send);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Applies one delivery report. Returns true if a checkpoint advanced.
    fn on_ack(
        &self,
        files: &mut HashMap<FileId, Tracked>,
        slots: &Slots,
        token: usize,
        result: Result<(), KafkaError>,
    ) -> Result<bool, SourceError> {
        injected("source::ack")?;
        let Some(id) = slots.file(token >> SEQ_BITS) else { return Ok(false) };
        let Some(t) = files.get_mut(id) else { return Ok(false) };
        let (_, seq) = untoken(token, t.acks.next_seq);
        if let Err(error) = result {
            let offset = t.acks.pending.iter().find(|p| p.seq == seq).map(|p| p.end).unwrap_or(0);
            self.stats.records_failed.fetch_add(1, Ordering::Relaxed);
            return Err(SourceError::Delivery { path: t.path.clone(), offset, error });
        }
        if let Some(Pending { len: Some(len), read_at, .. }) = t.acks.ack(seq) {
            self.stats.lines_acked.fetch_add(1, Ordering::Relaxed);
            self.stats.bytes_acked.fetch_add(len, Ordering::Relaxed);
            self.stats.delivery_seconds.observe(read_at.elapsed());
        }
        Ok(true)
    }

    /// Decides what new files that might be copies still being written are, once they can be
    /// told apart (or the grace period is over).
    fn settle_identities(&self, files: &mut HashMap<FileId, Tracked>, truncations: &mut [Truncation]) {
        let pending: Vec<FileId> =
            files.iter().filter(|(_, t)| t.unidentified_since.is_some()).map(|(id, _)| *id).collect();
        for id in pending {
            let identity = match files.get(&id) {
                Some(t) => identify(t.reader.file(), Some(id), files, truncations),
                None => continue,
            };
            let Some(t) = files.get_mut(&id) else { continue };
            tracing::debug!(connector = %self.connector.name, path = %t.path.display(), identity = ?identity, truncations = truncations.len(), "identifying a new file");
            match identity {
                Identity::Undecided if t.unidentified_since.is_some_and(|s| s.elapsed() < IDENTIFY_GRACE) => {
                    continue;
                }
                Identity::CopyOfLive(orig) => {
                    tracing::info!(connector = %self.connector.name, path = %t.path.display(), "a copy of a followed file (copytruncate): held until the original is truncated");
                    t.held_by = Some(orig);
                }
                Identity::CopyOfGone(i) => {
                    let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
                    let start = claim_copy(truncations, i, size);
                    if let Ok(file) = t.reader.file().try_clone() {
                        tracing::info!(connector = %self.connector.name, path = %t.path.display(), start, "a copy of a truncated file (copytruncate): reading only its unread tail");
                        t.reader = Reader::new(file, start, self.cfg.max_line_bytes, self.cfg.long_lines)
                            .with_dead_letters(self.cfg.dead_letter_topic.is_some());
                        t.acks.restart_at(start);
                        t.committed = start;
                    }
                }
                Identity::New | Identity::Undecided => {}
            }
            t.unidentified_since = None;
        }
    }

    /// Releases held copies whose original was truncated or finished: they start where the
    /// original's reading of the same bytes stopped.
    fn release_copies(&self, files: &mut HashMap<FileId, Tracked>, truncations: &mut [Truncation]) {
        for t in files.values_mut() {
            let Some(orig) = t.held_by else { continue };
            let Some(i) =
                truncations.iter().rposition(|tr| tr.fingerprint.matches(t.reader.file()).unwrap_or(false))
            else {
                continue;
            };
            let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
            let start = claim_copy(truncations, i, size);
            let Ok(file) = t.reader.file().try_clone() else { continue };
            tracing::info!(connector = %self.connector.name, path = %t.path.display(), start, original = ?orig, "copy released: reading its unread tail");
            t.reader = Reader::new(file, start, self.cfg.max_line_bytes, self.cfg.long_lines)
                .with_dead_letters(self.cfg.dead_letter_topic.is_some());
            t.acks.restart_at(start); // (keeps the slot's sequence numbers: see Slots::free)
            t.committed = start;
            t.held_by = None;
        }
    }

    /// Stops following detached files that are finished: read to the end and all acknowledged.
    fn retire(
        &self,
        files: &mut HashMap<FileId, Tracked>,
        slots: &mut Slots,
        checkpoints: &mut Checkpoints,
        dirty: &mut bool,
        truncations: &mut Vec<Truncation>,
    ) {
        self.release_copies(files, truncations);
        let done: Vec<FileId> = files
            .iter()
            .filter(|(_, t)| {
                let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
                t.detached
                    && !t.reader.has_partial()
                    && t.reader.read_position() >= size
                    && t.acks.idle()
                    && (!self.cfg.exactly_once || t.committed == t.reader.position())
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(t) = files.remove(&id) {
                // A copy of it may be held: it can now read what this one did not.
                if t.fingerprint.len > 0 {
                    remember(
                        truncations,
                        Truncation {
                            fingerprint: t.fingerprint,
                            prefix: t.prefix.clone(),
                            position: t.reader.position(),
                            at: Instant::now(),
                        },
                    );
                }
                slots.free(t.slot, t.acks.next_seq);
                checkpoints.entries.insert(id, entry(&t, id));
                *dirty = true;
                self.claims.release(id, &self.connector.name);
                tracing::info!(connector = %self.connector.name, path = %t.path.display(), "finished rotated-away file");
            }
        }
    }

    /// Closes the descriptors of files that are fully read and acknowledged (and, exactly-once,
    /// committed) and have not grown for `close_idle_after`; rescans reopen them when they change.
    fn close_idle(
        &self,
        files: &mut HashMap<FileId, Tracked>,
        closed: &mut HashMap<FileId, Closed>,
        slots: &mut Slots,
        checkpoints: &mut Checkpoints,
        dirty: &mut bool,
    ) {
        let idle_after = self.cfg.close_idle_after;
        let holders: HashSet<FileId> = files.values().filter_map(|t| t.held_by).collect();
        let idle: Vec<(FileId, std::fs::Metadata)> = files
            .iter()
            .filter(|(id, t)| {
                !t.detached
                    && t.last_growth.elapsed() >= idle_after
                    && t.held_by.is_none()
                    && t.unidentified_since.is_none()
                    && !holders.contains(id)
                    && !t.reader.has_partial()
                    && t.acks.idle()
                    && (!self.cfg.exactly_once || t.committed == t.reader.position())
            })
            .filter_map(|(id, t)| {
                let meta = t.reader.file().metadata().ok()?;
                (t.reader.read_position() >= meta.len()).then_some((*id, meta))
            })
            .collect();
        for (id, meta) in idle {
            let Some(t) = files.remove(&id) else { continue };
            slots.free(t.slot, t.acks.next_seq);
            checkpoints.entries.insert(id, entry(&t, id));
            *dirty = true;
            tracing::debug!(connector = %self.connector.name, path = %t.path.display(), "closing idle file");
            closed.insert(
                id,
                Closed {
                    path: t.path.clone(),
                    size: meta.len(),
                    mtime: mtime(&meta),
                    fingerprint: t.fingerprint,
                },
            );
        }
        self.stats.files.store(files.len() as u64, Ordering::Relaxed);
        self.stats.files_closed.store(closed.len() as u64, Ordering::Relaxed);
    }

    /// Exactly-once mode: adds the new position of every followed file (and tombstones for files
    /// forgotten) to the open transaction and commits it. A commit that times out is retried,
    /// never blindly aborted: it may have been applied (librdkafka does not bump the producer
    /// epoch per transaction, so a late abort could land on the next one). Any other failure is
    /// returned, and the connector restarts with a new producer that fences this one.
    fn commit_transaction(
        &self,
        producer: &ThreadedProducer<SourceContext>,
        checkpoints: &mut Checkpoints,
        files: &mut HashMap<FileId, Tracked>,
        truncations: &[Truncation],
        timeout: Duration,
    ) -> Result<(), SourceError> {
        let prefix = positions::key_prefix(&self.daemon_id, &self.connector.name);
        let now = crate::fsutil::unix_now();
        let mut records: Vec<(String, Option<Vec<u8>>)> = Vec::new();
        if !checkpoints.existed {
            // The connector's first start: from now on `start_at` never applies again.
            records.push((positions::started_key(&prefix), Some(format!("{{\"at\":{now}}}").into_bytes())));
        }
        for (id, t) in files.iter().filter(|(_, t)| t.positioned()) {
            let mut e = entry(t, *id);
            e.offset = t.reader.position();
            records.push((
                positions::key(&prefix, *id),
                Some(
                    serde_json::to_vec(&e)
                        .map_err(|e| SourceError::Transaction(KafkaError::Subscription(e.to_string())))?,
                ),
            ));
        }
        let forget = self.cfg.forget_after.as_secs();
        let gone = checkpoints.forgettable(now, forget, |id| files.contains_key(id));
        for id in &gone {
            records.push((positions::key(&prefix, *id), None));
        }
        // What truncated files held, so that a copy found after a restart is read only from where
        // the original stopped; and tombstones for those forgotten since the last commit.
        let current = truncated_records(truncations);
        for t in &current {
            let value = serde_json::to_vec(t)
                .map_err(|e| SourceError::Transaction(KafkaError::Subscription(e.to_string())))?;
            records.push((positions::truncated_key(&prefix, t), Some(value)));
        }
        for t in checkpoints
            .truncated
            .iter()
            .filter(|old| !current.iter().any(|c| c.fingerprint == old.fingerprint))
        {
            records.push((positions::truncated_key(&prefix, t), None));
        }
        // Position records carry a token no file slot uses: their delivery reports are ignored
        // (a failed one makes the commit fail, which is what matters).
        let token = usize::MAX;
        injected("source::txn::send-positions")?;
        for (key, value) in &records {
            loop {
                let mut record =
                    BaseRecord::<str, [u8], usize>::with_opaque_to(&self.cfg.offsets_topic, token)
                        .key(key.as_str());
                if let Some(v) = value {
                    record = record.payload(v.as_slice());
                }
                match producer.send(record) {
                    Ok(()) => break,
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                        std::thread::sleep(Duration::from_millis(5));
                    }
                    Err((error, _)) => return Err(SourceError::Transaction(error)),
                }
            }
        }
        let deadline = Instant::now() + timeout;
        // rdkafka's commit_transaction flushes first, polling for events in steps of 100 ms that
        // the ThreadedProducer's own poll thread leaves empty: every commit with a record in
        // flight cost 100 ms (a third of exactly-once's end-to-end latency at a 100 ms interval).
        // Waiting for the in-flight records here, in 1 ms steps, leaves it nothing to wait for.
        while producer.in_flight_count() > 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        injected("source::txn::commit")?;
        loop {
            match producer.commit_transaction(
                deadline.saturating_duration_since(Instant::now()).max(Duration::from_secs(1)),
            ) {
                Ok(()) => break,
                Err(KafkaError::Transaction(e)) if e.is_retriable() && Instant::now() < deadline => {
                    tracing::warn!(connector = %self.connector.name, error = %e, "transaction commit not confirmed yet; retrying the commit");
                }
                Err(error) => return Err(SourceError::Transaction(error)),
            }
        }
        // Committed, not yet recorded in memory: a crash here resumes from this transaction.
        injected("source::txn::committed")?;
        for id in gone {
            checkpoints.entries.remove(&id);
        }
        checkpoints.truncated = current;
        for (id, t) in files.iter_mut().filter(|(_, t)| t.positioned()) {
            t.committed = t.reader.position();
            let mut e = entry(t, *id);
            e.offset = t.committed;
            checkpoints.entries.insert(*id, e);
        }
        checkpoints.existed = true;
        self.stats.transactions.fetch_add(1, Ordering::Relaxed);
        self.stats.checkpoint_at_ms.store(crate::fsutil::unix_now_ms(), Ordering::Relaxed);
        *self.stats.positions.lock().unwrap_or_else(|p| p.into_inner()) =
            checkpoints.entries.values().map(|e| (e.path.clone(), e.offset)).collect();
        Ok(())
    }

    fn save_checkpoints(
        &self,
        checkpoints: &mut Checkpoints,
        files: &HashMap<FileId, Tracked>,
        truncations: &[Truncation],
    ) -> Result<(), SourceError> {
        checkpoints.truncated = truncated_records(truncations);
        for (id, t) in files.iter().filter(|(_, t)| t.positioned()) {
            checkpoints.entries.insert(*id, entry(t, *id));
        }
        let forgotten =
            checkpoints.forget(crate::fsutil::unix_now(), self.cfg.forget_after.as_secs(), |id| {
                files.contains_key(id)
            });
        if forgotten > 0 {
            tracing::info!(connector = %self.connector.name, forgotten, "dropped checkpoints of files gone for long");
        }
        crate::failpoints::io("source::checkpoint::save")
            .and_then(|()| checkpoints.save())
            .and_then(|()| crate::failpoints::io("source::checkpoint::saved"))
            .map_err(|source| SourceError::Checkpoint { path: self.checkpoint_path.clone(), source })?;
        self.stats.checkpoint_at_ms.store(crate::fsutil::unix_now_ms(), Ordering::Relaxed);
        *self.stats.positions.lock().unwrap_or_else(|p| p.into_inner()) =
            checkpoints.entries.values().map(|e| (e.path.clone(), e.offset)).collect();
        Ok(())
    }
}

/// The checkpoint of `path` under another device number: overlayfs and some network filesystems
/// give a file a new device number across a remount while its inode and content stay. The same
/// path, inode and first bytes are taken for the same file (else every file would be read again).
fn same_file_other_device<'c>(
    checkpoints: &'c Checkpoints,
    path: &Path,
    id: FileId,
    file: &File,
) -> Option<&'c Entry> {
    checkpoints.entries.values().find(|e| {
        e.id.ino == id.ino
            && e.id.dev != id.dev
            && e.path == path
            && e.fingerprint.len > 0
            && e.fingerprint.matches(file).unwrap_or(false)
    })
}

/// A copy of the content truncation `i` recorded takes it from where reading stopped up to the
/// copy's own size; a second copy of the same content (an operator's `cp` beside logrotate's copy)
/// goes on from there, so that no part is read twice. Returns where the copy starts.
fn claim_copy(truncations: &mut [Truncation], i: usize, size: u64) -> u64 {
    let t = &mut truncations[i];
    let start = t.position.min(size);
    t.position = t.position.max(size);
    start
}

/// Truncation records kept at most (the newest): each waits for a copy of what its file held.
const MAX_TRUNCATIONS: usize = 256;

/// Records what a truncated file held. The same content truncated again replaces its older
/// record (a copy of it is read from where the latest reading stopped), and only the newest
/// `MAX_TRUNCATIONS` are kept: a file emptied every second must not grow the state for ever.
fn remember(truncations: &mut Vec<Truncation>, t: Truncation) {
    truncations.retain(|old| old.fingerprint != t.fingerprint);
    truncations.push(t);
    if truncations.len() > MAX_TRUNCATIONS {
        let excess = truncations.len() - MAX_TRUNCATIONS;
        truncations.drain(..excess);
    }
}

/// The truncations worth persisting (what they held, how far it was read, when).
fn truncated_records(truncations: &[Truncation]) -> Vec<checkpoint::Truncated> {
    let now = crate::fsutil::unix_now();
    truncations
        .iter()
        .map(|t| checkpoint::Truncated {
            fingerprint: t.fingerprint,
            position: t.position,
            seen_at: now.saturating_sub(t.at.elapsed().as_secs()),
        })
        .collect()
}

fn entry(t: &Tracked, id: FileId) -> Entry {
    Entry {
        path: t.path.clone(),
        id,
        fingerprint: t.fingerprint,
        offset: t.acks.acked_offset,
        seen_at: crate::fsutil::unix_now(),
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

/// Sleeps for `d`, waking early if `stop` is set.
pub fn sleep_unless(stop: &AtomicBool, d: Duration) {
    let deadline = Instant::now() + d;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50).min(deadline.saturating_duration_since(Instant::now())));
    }
}

#[cfg(test)]
mod tests {
    use super::AckQueue;

    #[test]
    fn connect_json_envelopes_are_what_jsonconverter_writes() {
        let mut out = Vec::new();
        super::connect_json_envelope(b"say \"hi\"\tnow", &mut out);
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            r#"{"schema":{"type":"string","optional":false},"payload":"say \"hi\"\tnow"}"#
        );
    }

    /// Issue 14 finding 6: a file's records still in flight when its slot is reused (content it
    /// lost to a truncation is not waited for) must not acknowledge the next file's records.
    #[test]
    fn a_reused_slot_ignores_the_previous_files_late_acknowledgements() {
        use super::{Slots, token, untoken};
        use crate::source::fingerprint::FileId;
        let now = std::time::Instant::now();
        let mut slots = Slots::default();
        let (a_slot, a_first) = slots.take(FileId { dev: 1, ino: 1 });
        let mut a = AckQueue::new(0);
        a.next_seq = a_first;
        let in_flight: Vec<usize> = (1..=3).map(|i| token(a_slot, a.push(i * 10, Some(9), now))).collect();
        a.restart_at(0); // truncated: those three are of content the file no longer has
        slots.free(a_slot, a.next_seq);
        let (b_slot, b_first) = slots.take(FileId { dev: 1, ino: 2 });
        assert_eq!(b_slot, a_slot, "the slot is reused");
        let mut b = AckQueue::new(0);
        b.next_seq = b_first;
        b.push(5, Some(4), now);
        // Late acknowledgements of the first file's records arrive now.
        for t in in_flight {
            let (slot, seq) = untoken(t, b.next_seq);
            assert_eq!(slot, b_slot);
            b.ack(seq);
        }
        assert_eq!(b.acked_offset, 0, "nothing of the second file was acknowledged");
    }

    /// Issue 14 finding 5: one record per content, and a bounded number in all.
    #[test]
    fn truncations_are_remembered_once_per_content_and_bounded() {
        use super::{MAX_TRUNCATIONS, Truncation, remember};
        let record = |hash: u64, position: u64| Truncation {
            fingerprint: crate::source::fingerprint::Fingerprint { len: 256, hash },
            prefix: Vec::new(),
            position,
            at: std::time::Instant::now(),
        };
        let mut kept = Vec::new();
        for position in 0..100 {
            remember(&mut kept, record(7, position));
        }
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].position, 99, "the latest reading of that content");
        for hash in 0..(MAX_TRUNCATIONS as u64 * 3) {
            remember(&mut kept, record(1000 + hash, 0));
        }
        assert_eq!(kept.len(), MAX_TRUNCATIONS);
        assert_eq!(kept.last().map(|t| t.fingerprint.hash), Some(1000 + MAX_TRUNCATIONS as u64 * 3 - 1));
    }

    #[test]
    fn checkpoint_advances_over_the_acknowledged_prefix_only() {
        let mut q = AckQueue::new(0);
        let a = q.push(10, Some(9), std::time::Instant::now());
        let b = q.push(20, Some(9), std::time::Instant::now());
        let c = q.push(30, Some(9), std::time::Instant::now());
        q.ack(b);
        assert_eq!(q.acked_offset, 0, "b is acknowledged but a is not");
        q.ack(a);
        assert_eq!(q.acked_offset, 20);
        q.ack(c);
        assert_eq!(q.acked_offset, 30);
        assert!(q.idle());
    }
}
