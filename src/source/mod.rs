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
pub mod discover;
pub mod fingerprint;
pub mod reader;

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
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

use crate::config::connector::{KeyMode, StartAt};
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
    pending: VecDeque<(u64, u64)>,
    early: BTreeSet<u64>,
    next_seq: u64,
    acked_offset: u64,
}

impl AckQueue {
    fn new(offset: u64) -> AckQueue {
        AckQueue { acked_offset: offset, ..AckQueue::default() }
    }

    fn push(&mut self, end: u64) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back((seq, end));
        seq
    }

    fn ack(&mut self, seq: u64) {
        if self.pending.front().map(|p| p.0) != Some(seq) {
            self.early.insert(seq);
            return;
        }
        while let Some(&(s, end)) = self.pending.front() {
            if s != seq && !self.early.remove(&s) {
                break;
            }
            self.pending.pop_front();
            self.acked_offset = end;
        }
    }

    fn idle(&self) -> bool {
        self.pending.is_empty()
    }
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
}

/// Shared counters (read by status and metrics).
#[derive(Debug, Default)]
pub struct SourceStats {
    pub lines_sent: std::sync::atomic::AtomicU64,
    pub lines_acked: std::sync::atomic::AtomicU64,
    pub files: std::sync::atomic::AtomicU64,
}

pub struct Source<'a> {
    connector: &'a ConnectorConfig,
    cfg: &'a SourceConfig,
    props: KafkaProps,
    checkpoint_path: PathBuf,
    pub stats: std::sync::Arc<SourceStats>,
}

impl<'a> Source<'a> {
    pub fn new(
        connector: &'a ConnectorConfig,
        cfg: &'a SourceConfig,
        props: KafkaProps,
        state_dir: &Path,
    ) -> Self {
        let checkpoint_path = state_dir.join("sources").join(&connector.name).join("checkpoints.json");
        Source { connector, cfg, props, checkpoint_path, stats: Default::default() }
    }

    /// Runs until `stop` is set, then drains: flushes the producer (within `drain`), writes the
    /// final checkpoint and returns. An error means the connector must be restarted (from its
    /// checkpoint) by the supervisor.
    pub fn run(&self, stop: &AtomicBool, drain: Duration) -> Result<(), SourceError> {
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
                Err(error) => {
                    tracing::warn!(connector = %self.connector.name, topic, %error, retry_in = ?backoff, "waiting for Kafka");
                    sleep_unless(stop, backoff);
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                }
            }
        }

        let (tx, events) = mpsc::channel();
        let producer: ThreadedProducer<SourceContext> = client::source_producer(&self.props)
            .create_with_context(SourceContext { events: tx.clone() })
            .map_err(SourceError::Producer)?;
        let fs_tx = tx.clone();
        let mut watcher = notify::recommended_watcher(move |res| {
            let _ = fs_tx.send(Event::Fs(res));
        })
        .ok();
        drop(tx);

        let discovery = Discovery::new(&self.cfg.paths, &self.cfg.exclude)?;
        let mut watched: HashSet<PathBuf> = HashSet::new();
        let mut checkpoints = Checkpoints::load(&self.checkpoint_path)
            .map_err(|source| SourceError::Checkpoint { path: self.checkpoint_path.clone(), source })?;
        let first_start = !checkpoints.existed;
        let mut files: HashMap<FileId, Tracked> = HashMap::new();
        let mut slots: Vec<Option<FileId>> = Vec::new();
        let mut rescan_at = Instant::now();
        let mut checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;
        let mut dirty = false;
        let mut initial = true;

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
                self.rescan(&discovery, &mut checkpoints, &mut files, &mut slots, first_start && initial);
                initial = false;
                rescan_at = Instant::now() + self.cfg.rescan_interval;
            }
            if stopping {
                break;
            }
            for t in files.values_mut() {
                self.pump(&producer, t)?;
            }

            // Wait for something to do: a filesystem event, an ack, or the poll tick (which also
            // catches growth that produced no event).
            let mut next = events.recv_timeout(Duration::from_millis(100)).ok();
            while let Some(event) = next {
                match event {
                    Event::Ack { token, result } => {
                        dirty |= self.on_ack(&mut files, &slots, token, result)?;
                    }
                    Event::Fs(Ok(e)) => {
                        use notify::EventKind::*;
                        if matches!(
                            e.kind,
                            Create(_) | Remove(_) | Modify(notify::event::ModifyKind::Name(_))
                        ) || e.need_rescan()
                        {
                            rescan_at = Instant::now();
                        }
                    }
                    Event::Fs(Err(error)) => {
                        tracing::debug!(connector = %self.connector.name, %error, "filesystem watch error; rescanning");
                        rescan_at = Instant::now();
                    }
                }
                next = events.try_recv().ok();
            }
            self.retire(&mut files, &mut slots, &mut checkpoints, &mut dirty);
            if dirty && Instant::now() >= checkpoint_at {
                self.save_checkpoints(&mut checkpoints, &files)?;
                dirty = false;
                checkpoint_at = Instant::now() + self.cfg.checkpoint_interval;
            }
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
        self.save_checkpoints(&mut checkpoints, &files)
    }

    /// Lists the watched tree: starts following new files, notices renamed and vanished ones.
    fn rescan(
        &self,
        discovery: &Discovery,
        checkpoints: &mut Checkpoints,
        files: &mut HashMap<FileId, Tracked>,
        slots: &mut Vec<Option<FileId>>,
        first_start: bool,
    ) {
        let mut present: HashSet<FileId> = HashSet::new();
        for path in discovery.scan() {
            let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
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
            match self.open(&path, id, checkpoints, first_start) {
                Ok(Some(t)) => {
                    let slot = slots.iter().position(Option::is_none).unwrap_or_else(|| {
                        slots.push(None);
                        slots.len() - 1
                    });
                    slots[slot] = Some(id);
                    let t = Tracked { slot, ..t };
                    tracing::info!(connector = %self.connector.name, path = %path.display(), offset = t.reader.position(), "following file");
                    files.insert(id, t);
                }
                Ok(None) => {}
                Err(error) => {
                    tracing::warn!(connector = %self.connector.name, path = %path.display(), %error, "cannot read file; will retry")
                }
            }
        }
        for (id, t) in files.iter_mut() {
            if !present.contains(id) && !t.detached {
                tracing::info!(connector = %self.connector.name, path = %t.path.display(), "file rotated away or deleted; finishing it from the open descriptor");
                t.detached = true;
            }
        }
        self.stats.files.store(files.len() as u64, Ordering::Relaxed);
    }

    fn open(
        &self,
        path: &Path,
        id: FileId,
        checkpoints: &Checkpoints,
        first_start: bool,
    ) -> std::io::Result<Option<Tracked>> {
        // O_NOFOLLOW: never read through a symlink planted at the last path component;
        // O_NONBLOCK: a FIFO swapped in after discovery cannot block the loop.
        let file: File =
            OpenOptions::new().read(true).custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK).open(path)?;
        let meta = file.metadata()?;
        if !meta.file_type().is_file() || FileId::of(&meta) != id {
            return Ok(None); // replaced between listing and opening: the next rescan sees the new one
        }
        let fingerprint = Fingerprint::of(&file)?;
        let size = meta.len();
        let offset = match checkpoints.entries.get(&id) {
            Some(e) if e.fingerprint.len > 0 && e.fingerprint.matches(&file)? && size >= e.offset => e.offset,
            Some(e) if e.fingerprint.len == 0 && size >= e.offset => e.offset,
            Some(_) => {
                tracing::warn!(connector = %self.connector.name, path = %path.display(), "file was truncated or its inode reused; reading it from the start");
                0
            }
            None if first_start && self.cfg.start_at == StartAt::End => size,
            None => 0,
        };
        let reader = Reader::new(file, offset, self.cfg.max_line_bytes, self.cfg.long_lines);
        Ok(Some(Tracked {
            slot: 0,
            path: path.to_path_buf(),
            fingerprint,
            reader,
            acks: AckQueue::new(offset),
            last_growth: Instant::now(),
            detached: false,
        }))
    }

    /// Reads what is new in one file and sends it.
    fn pump(&self, producer: &ThreadedProducer<SourceContext>, t: &mut Tracked) -> Result<(), SourceError> {
        let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
        if size < t.reader.read_position() {
            // Truncated in place (copytruncate, or `> file`): what is there now is new content.
            tracing::warn!(connector = %self.connector.name, path = %t.path.display(), "file truncated; reading it again from the start");
            let file = t
                .reader
                .file()
                .try_clone()
                .map_err(|source| SourceError::Checkpoint { path: t.path.clone(), source })?;
            t.reader = Reader::new(file, 0, self.cfg.max_line_bytes, self.cfg.long_lines);
            t.acks = AckQueue::new(0);
            t.fingerprint = Fingerprint::default();
        }
        if !t.fingerprint.complete() && size > u64::from(t.fingerprint.len) {
            t.fingerprint = Fingerprint::of(t.reader.file()).unwrap_or(t.fingerprint);
        }
        let path_bytes = t.path.as_os_str().as_bytes();
        let slot = t.slot;
        let key = self.cfg.key;
        let topic = self.cfg.topic.name.as_str();
        let mut failure: Option<SourceError> = None;
        let acks = &mut t.acks;
        let stats = &self.stats;
        let mut send = |line: Line<'_>| -> Flow {
            let Some(payload) = line.payload else {
                // Bytes dropped by the long-line policy: nothing to wait for.
                let seq = acks.push(line.end);
                acks.ack(seq);
                return Flow::Continue;
            };
            let seq = acks.next_seq;
            let token = (slot << SEQ_BITS) | (seq as usize & ((1usize << SEQ_BITS) - 1));
            let offset = line.start.to_string();
            let headers = OwnedHeaders::new_with_capacity(2)
                .insert(Header { key: HEADER_PATH, value: Some(path_bytes) })
                .insert(Header { key: HEADER_OFFSET, value: Some(offset.as_bytes()) });
            let mut record = BaseRecord::<[u8], [u8], usize>::with_opaque_to(topic, token)
                .payload(payload)
                .headers(headers);
            if key == KeyMode::Path {
                record = record.key(path_bytes);
            }
            match producer.send(record) {
                Ok(()) => {
                    acks.push(line.end);
                    stats.lines_sent.fetch_add(1, Ordering::Relaxed);
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
        let read = t
            .reader
            .poll(READ_BUDGET, &mut send)
            .map_err(|source| SourceError::Checkpoint { path: t.path.clone(), source })?;
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
        slots: &[Option<FileId>],
        token: usize,
        result: Result<(), KafkaError>,
    ) -> Result<bool, SourceError> {
        let slot = token >> SEQ_BITS;
        let Some(Some(id)) = slots.get(slot) else { return Ok(false) };
        let Some(t) = files.get_mut(id) else { return Ok(false) };
        let seq_low = (token & ((1usize << SEQ_BITS) - 1)) as u64;
        // Recover the full sequence number from its low bits (the pending window is far smaller).
        let base = t.acks.next_seq & !((1u64 << SEQ_BITS) - 1);
        let seq = if base | seq_low >= t.acks.next_seq {
            (base | seq_low).wrapping_sub(1 << SEQ_BITS)
        } else {
            base | seq_low
        };
        if let Err(error) = result {
            let offset = t.acks.pending.iter().find(|p| p.0 == seq).map(|p| p.1).unwrap_or(0);
            return Err(SourceError::Delivery { path: t.path.clone(), offset, error });
        }
        t.acks.ack(seq);
        self.stats.lines_acked.fetch_add(1, Ordering::Relaxed);
        Ok(true)
    }

    /// Stops following detached files that are finished: read to the end and all acknowledged.
    fn retire(
        &self,
        files: &mut HashMap<FileId, Tracked>,
        slots: &mut [Option<FileId>],
        checkpoints: &mut Checkpoints,
        dirty: &mut bool,
    ) {
        let done: Vec<FileId> = files
            .iter()
            .filter(|(_, t)| {
                let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
                t.detached && !t.reader.has_partial() && t.reader.read_position() >= size && t.acks.idle()
            })
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(t) = files.remove(&id) {
                slots[t.slot] = None;
                checkpoints.entries.insert(id, entry(&t, id));
                *dirty = true;
                tracing::info!(connector = %self.connector.name, path = %t.path.display(), "finished rotated-away file");
            }
        }
    }

    fn save_checkpoints(
        &self,
        checkpoints: &mut Checkpoints,
        files: &HashMap<FileId, Tracked>,
    ) -> Result<(), SourceError> {
        for (id, t) in files {
            checkpoints.entries.insert(*id, entry(t, *id));
        }
        let forgotten =
            checkpoints.forget_older_than(crate::fsutil::unix_now(), self.cfg.forget_after.as_secs());
        if forgotten > 0 {
            tracing::info!(connector = %self.connector.name, forgotten, "dropped checkpoints of files gone for long");
        }
        checkpoints
            .save()
            .map_err(|source| SourceError::Checkpoint { path: self.checkpoint_path.clone(), source })
    }
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
    fn checkpoint_advances_over_the_acknowledged_prefix_only() {
        let mut q = AckQueue::new(0);
        let a = q.push(10);
        let b = q.push(20);
        let c = q.push(30);
        q.ack(b);
        assert_eq!(q.acked_offset, 0, "b is acknowledged but a is not");
        q.ack(a);
        assert_eq!(q.acked_offset, 20);
        q.ack(c);
        assert_eq!(q.acked_offset, 30);
        assert!(q.idle());
    }
}
