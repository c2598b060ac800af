//! The tailer: which files a source follows and how far each was read and acknowledged. It knows
//! nothing of Kafka: lines go out through the `emit` callback of `poll`, acknowledgements come
//! back through `ack(token)`, and positions leave as checkpoints (`save_checkpoints`) or as the
//! records of a transaction (`transaction_positions` / `committed`). Time comes from a `Clock`,
//! so that the model-based tests (tests/model/tailer.rs) drive it without a cluster or sleeps.
//!
//! Invariants:
//! - a checkpoint never runs ahead of what was acknowledged (at-least-once) or of what the
//!   committed transaction holds (exactly-once);
//! - a file has no position until it is identified: a copy held while its original is followed,
//!   or a new file that may still be a copy being written, is never saved at 0;
//! - a delivery token names a slot and a sequence number that the slot never reuses, so a late
//!   acknowledgement of a file's records cannot move another file's position.

pub mod acks;
pub mod identity;
mod scan;

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crate::config::SourceConfig;
use crate::config::connector::{LongLinePolicy, StartAt};
use crate::source::checkpoint::{self, Checkpoints, Entry};
use crate::source::claims::Claims;
use crate::source::events::{Assembler, BadPattern, Cut, Dropped, Filter, Multiline, Record, Rules};
use crate::source::fingerprint::{FileId, Fingerprint};
use crate::source::reader::{Flow, Line, Reader};
use crate::source::stats::SourceStats;
use acks::{AckQueue, Pending, SEQ_BITS, Slots, token, untoken};
use identity::{Earlier, Identity, Truncation, claim_copy, identify, remember, truncated_records};

/// Bytes one file may contribute per poll, so that one busy file does not starve the others.
pub const READ_BUDGET: usize = 1024 * 1024;

/// Where the tailer's time comes from: the system's, or a test's.
pub trait Clock: Send {
    fn now(&self) -> Instant;
    /// Unix seconds, for what is persisted (when a file was last seen).
    fn unix_now(&self) -> u64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Instant {
        Instant::now()
    }

    fn unix_now(&self) -> u64 {
        crate::fsutil::unix_now()
    }
}

/// The part of a source's configuration the tailer obeys.
#[derive(Debug, Clone)]
pub struct TailerConfig {
    pub exactly_once: bool,
    pub start_at: StartAt,
    pub follow_symlinks: bool,
    pub max_open_files: usize,
    pub close_idle_after: Duration,
    pub partial_line_timeout: Duration,
    pub forget_after: Duration,
    pub max_line_bytes: u64,
    pub long_lines: LongLinePolicy,
    /// Over-long lines are handed out as dead letters too.
    pub dead_letters: bool,
    /// How lines group into records, and which records are sent.
    pub rules: Arc<Rules>,
}

impl TailerConfig {
    pub fn of(cfg: &SourceConfig) -> Result<TailerConfig, BadPattern> {
        let rules = Rules {
            multiline: cfg.multiline.as_deref().map(Multiline::new).transpose()?,
            filter: Filter::new(&cfg.include_lines, &cfg.exclude_lines)?,
        };
        Ok(TailerConfig {
            exactly_once: cfg.exactly_once,
            start_at: cfg.start_at,
            follow_symlinks: cfg.follow_symlinks,
            max_open_files: cfg.max_open_files,
            close_idle_after: cfg.close_idle_after,
            partial_line_timeout: cfg.partial_line_timeout,
            forget_after: cfg.forget_after,
            max_line_bytes: cfg.max_line_bytes,
            long_lines: cfg.long_lines,
            dead_letters: cfg.dead_letter_topic.is_some(),
            rules: Arc::new(rules),
        })
    }

    /// A file's record assembler, unless lines are handed out as they are.
    fn assembler(&self) -> Option<Assembler> {
        (!self.rules.plain()).then(|| Assembler::new(Arc::clone(&self.rules)))
    }
}

/// A reader of `file` from `offset` as the configuration says (line length, dead letters).
fn new_reader(cfg: &TailerConfig, file: std::fs::File, offset: u64) -> Reader {
    Reader::new(file, offset, cfg.max_line_bytes, cfg.long_lines).with_dead_letters(cfg.dead_letters)
}

/// Looks at a followed file before reading it: truncated (it is shorter than what was read),
/// or rewritten in place since the last look (truncated and rewritten past that point, or
/// overwritten with content of the same length). Then what is there now is new content, read
/// from the start, and what it held is remembered for a copy of it that may turn up. Looked
/// for only when its size or modification time moved; a rewrite between this look and the read
/// is caught by the reader itself (`Reader::rewritten`).
fn look(
    cfg: &TailerConfig,
    t: &mut Tracked,
    truncations: &mut Vec<Truncation>,
    now: Instant,
) -> io::Result<()> {
    let meta = t.reader.file().metadata().ok();
    let size = meta.as_ref().map_or(0, |m| m.len());
    let modified = meta.as_ref().map_or((0, 0), mtime);
    let rewritten = t.reader.rewritten()
        || (size >= t.reader.read_position()
            && (size != t.last_size || modified != t.last_mtime)
            && !t.reader.still_holds_what_was_read(&t.prefix).unwrap_or(true));
    t.last_size = size;
    t.last_mtime = modified;
    if size < t.reader.read_position() || rewritten {
        // Truncated in place (copytruncate, or `> file`): what is there now is new content.
        tracing::warn!(path = %t.path.display(), position = t.reader.position(), size, rewritten, "file truncated; reading it again from the start");
        if t.fingerprint.len > 0 {
            // Where a copy of the old content may start. At-least-once: only what was
            // acknowledged (lines in flight may still fail, and the copy's checkpoint must
            // not claim them). Exactly-once: everything handed out, since the copy's position
            // is committed in the same transaction as those lines, or not at all.
            let position = if cfg.exactly_once { t.position() } else { t.acks.acked_offset };
            remember(
                truncations,
                Truncation {
                    fingerprint: t.fingerprint,
                    prefix: std::mem::take(&mut t.prefix),
                    position,
                    at: now,
                },
            );
        }
        let file = t.reader.file().try_clone()?;
        t.reader = new_reader(cfg, file, 0);
        t.events = cfg.assembler();
        t.acks.restart_at(0);
        t.committed = 0;
        t.fingerprint = Fingerprint::default();
        t.prefix.clear();
    }
    refresh_prefix(t, size);
    Ok(())
}

/// Takes the file's first bytes again if it has grown past them (up to the fingerprint's size):
/// what a copy of it is recognised by.
fn refresh_prefix(t: &mut Tracked, size: u64) {
    if !t.fingerprint.complete() && size > u64::from(t.fingerprint.len) {
        take_prefix(t);
    }
}

fn take_prefix(t: &mut Tracked) {
    if let Ok((fp, prefix)) = Fingerprint::with_prefix(t.reader.file()) {
        t.fingerprint = fp;
        t.prefix = prefix;
    }
}

/// A followed file's first bytes come from its looks; a file not yet identified is not read or
/// looked at, so its own are taken again before files are identified against it: it may have
/// grown from empty (a `cp` of it is then its copy, not a new file) or been emptied again (a
/// copy of what it held then is not its copy: it never read that).
fn refresh_unidentified(files: &mut HashMap<FileId, Tracked>) {
    for t in files.values_mut().filter(|t| t.unidentified_since.is_some()) {
        take_prefix(t);
    }
}

/// Starts reading copy `t` of the content truncation record `i` describes, from where that
/// content's reading stopped (`claim_copy`). Returns where, or None if its descriptor could not
/// be duplicated (it stays as it was; the next turn tries again).
fn read_copy(cfg: &TailerConfig, truncations: &mut [Truncation], t: &mut Tracked, i: usize) -> Option<u64> {
    let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
    let file = t.reader.file().try_clone().ok()?;
    let start = claim_copy(truncations, i, size);
    t.reader = new_reader(cfg, file, start);
    t.events = cfg.assembler();
    t.acks.restart_at(start); // (keeps the slot's sequence numbers: see Slots::free)
    t.committed = start;
    t.held_by = None;
    Some(start)
}

/// What `pump` hands out: a record put together by the file's assembler, or a piece of the file
/// as the reader cut it (a line when records are lines, a dead letter, dropped bytes).
enum Piece<'a> {
    Record(Record<'a>),
    Raw(Line<'a>),
}

/// The file a line handed out belongs to, and the delivery token to send it with.
pub struct FileRef<'a> {
    pub path: &'a Path,
    pub token: usize,
}

/// What `emit` did with a line.
pub enum Emitted {
    /// Handed over; it counts as delivered once `ack(token)` comes. `bytes`: the payload's size,
    /// for the counters (None for what is not a line, such as a dead letter).
    Sent { bytes: Option<u64> },
    /// Not now (the producer's queue is full): the same line is offered again at the next poll.
    NotNow,
}

#[derive(Debug, thiserror::Error)]
pub enum PollError<E> {
    /// A followed file could not be read.
    #[error("reading {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    /// `emit` failed; the line stays unread.
    #[error(transparent)]
    Emit(E),
}

pub(crate) struct Tracked {
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
    /// Groups lines into records and filters them (`None`: lines are handed out as they are).
    events: Option<Assembler>,
}

impl Tracked {
    /// Everything before this is handed out: the reader's position, or the first line of a
    /// record still being put together (read again from there after a restart).
    fn position(&self) -> u64 {
        self.events.as_ref().and_then(Assembler::open_since).unwrap_or_else(|| self.reader.position())
    }

    /// Whether lines were read that are not handed out yet: an unterminated last line, or an
    /// unfinished record.
    fn holds_back(&self) -> bool {
        self.reader.has_partial() || self.events.as_ref().is_some_and(|e| e.open_since().is_some())
    }

    /// Whether the file has a position to save. A held copy and a new file not yet told apart
    /// from a copy being written have none: saved at 0, either would be read whole after a
    /// restart (every line of its original sent again). Without an entry, a restart identifies
    /// it afresh.
    fn positioned(&self) -> bool {
        self.held_by.is_none() && self.unidentified_since.is_none()
    }

    fn entry(&self, id: FileId, now_unix: u64) -> Entry {
        Entry {
            path: self.path.clone(),
            id,
            fingerprint: self.fingerprint,
            offset: self.acks.acked_offset,
            seen_at: now_unix,
        }
    }
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
#[derive(Default)]
struct ScanState {
    closed: HashMap<FileId, Closed>,
    /// Paths that could not be read at the last rescan (reported when they start and stop).
    problems: HashSet<PathBuf>,
    /// Files another source reads (reported once).
    conflicts: HashSet<PathBuf>,
    /// The connector's very first rescan ever (no checkpoint existed): `start_at` applies.
    first_start: bool,
    /// Exactly-once: files whose committed entry describes content they no longer hold, to be
    /// deleted by the next transaction unless it writes their new position.
    stale: HashSet<FileId>,
}

/// Exactly-once: what a transaction must write so that a restart resumes where it ends.
#[derive(Debug, Default)]
pub struct Positions {
    /// The connector's first start: from now on `start_at` never applies again.
    pub first_start: bool,
    /// Every identified file, at its read position (what the transaction holds).
    pub entries: Vec<Entry>,
    /// Files gone for `forget_after`: their records are deleted (tombstones).
    pub gone: Vec<FileId>,
    /// What truncated files held, and those records forgotten since the last commit.
    pub truncated: Vec<checkpoint::Truncated>,
    pub forgotten_truncated: Vec<checkpoint::Truncated>,
}

pub struct Tailer {
    name: String,
    cfg: TailerConfig,
    clock: Box<dyn Clock>,
    /// Shared by the daemon's sources: a file is read by one of them only.
    claims: Arc<Claims>,
    stats: Arc<SourceStats>,
    files: HashMap<FileId, Tracked>,
    slots: Slots,
    truncations: Vec<Truncation>,
    scan: ScanState,
    checkpoints: Checkpoints,
    /// At-least-once: positions moved since the last checkpoint was saved.
    dirty: bool,
}

impl Tailer {
    /// A tailer resuming from `checkpoints` (loaded from the file, or read back from the
    /// offsets topic); `name` is the connector's, for logs and claims.
    pub fn new(
        name: &str,
        cfg: TailerConfig,
        checkpoints: Checkpoints,
        claims: Arc<Claims>,
        stats: Arc<SourceStats>,
        clock: Box<dyn Clock>,
    ) -> Tailer {
        let now = clock.now();
        let now_unix = clock.unix_now();
        let mut truncations: Vec<Truncation> = Vec::new();
        // Truncations recorded before the last stop (their copies may still turn up), oldest
        // first, so that a duplicate from an older release keeps its newest record.
        for t in &checkpoints.truncated {
            remember(
                &mut truncations,
                Truncation {
                    fingerprint: t.fingerprint,
                    prefix: Vec::new(),
                    position: t.position,
                    at: now
                        .checked_sub(Duration::from_secs(now_unix.saturating_sub(t.seen_at)))
                        .unwrap_or(now),
                },
            );
        }
        let scan = ScanState { first_start: !checkpoints.existed, ..ScanState::default() };
        Tailer {
            name: name.to_string(),
            cfg,
            clock,
            claims,
            stats,
            files: HashMap::new(),
            slots: Slots::default(),
            truncations,
            scan,
            checkpoints,
            dirty: false,
        }
    }

    /// Whether the connector has started before (a checkpoint or committed position exists).
    pub fn started_before(&self) -> bool {
        self.checkpoints.existed
    }

    /// At-least-once: whether positions moved since the last `save_checkpoints`.
    pub fn dirty(&self) -> bool {
        self.dirty
    }

    /// Whether any closed idle file is waiting to be reopened when it changes.
    pub fn has_closed_files(&self) -> bool {
        !self.scan.closed.is_empty()
    }

    /// Lines handed out and not acknowledged yet.
    pub fn unacked(&self) -> usize {
        self.files.values().map(|t| t.acks.pending.len()).sum()
    }

    /// Decides what new files that might be copies still being written are, once they can be
    /// told apart (or the grace period is over); and looks again at held copies, which stay held
    /// only while they are copies (one that grows into something else is read as a new file).
    pub fn settle_identities(&mut self) {
        refresh_unidentified(&mut self.files);
        let pending: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| t.unidentified_since.is_some() || t.held_by.is_some())
            .map(|(id, _)| *id)
            .collect();
        let now = self.clock.now();
        for id in pending {
            let identity = match self.files.get(&id) {
                Some(t) => identify(t.reader.file(), Some(id), &self.files, &self.truncations),
                None => continue,
            };
            let identity = match identity {
                Identity::CopyOfLive(orig) | Identity::Undecided(Some(Earlier::Live(orig)))
                    if self.outgrew(id, orig) =>
                {
                    // A copy is never larger than its original while that one still holds what
                    // was read from it: this is the original (or another file with the same
                    // first bytes). Held, its growth would never be read; read whole instead
                    // (what the other file sent of the same bytes comes again: counted).
                    self.stats.copies_read_whole.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = self.files.get(&id) {
                        tracing::warn!(path = %t.path.display(), "a file held as a copy outgrew its original: reading it whole as a new file (lines it shares with the other may be sent twice)");
                    }
                    Identity::New
                }
                other => other,
            };
            let Some(t) = self.files.get_mut(&id) else { continue };
            let waiting = t
                .unidentified_since
                .is_some_and(|s| now.saturating_duration_since(s) < identity::IDENTIFY_GRACE);
            if t.unidentified_since.is_some() {
                tracing::debug!(path = %t.path.display(), identity = ?identity, truncations = self.truncations.len(), "identifying a new file");
            }
            match identity {
                // Empty: nothing to tell it by yet, and nothing to read.
                Identity::Undecided(None) => continue,
                Identity::Undecided(Some(_)) if waiting => continue,
                Identity::CopyOfLive(orig) | Identity::Undecided(Some(Earlier::Live(orig))) => {
                    if t.held_by.is_none() {
                        tracing::info!(path = %t.path.display(), "a copy of a followed file (copytruncate): held until the original is truncated");
                    }
                    t.held_by = Some(orig);
                }
                Identity::CopyOfGone(i) | Identity::Undecided(Some(Earlier::Gone(i))) => {
                    let Some(start) = read_copy(&self.cfg, &mut self.truncations, t, i) else { continue };
                    tracing::info!(path = %t.path.display(), start, "a copy of a truncated file (copytruncate): reading only its unread tail");
                }
                Identity::New => {
                    if t.held_by.take().is_some() {
                        tracing::info!(path = %t.path.display(), "a held copy no longer matches its original: reading it as a new file");
                    }
                }
            }
            t.unidentified_since = None;
        }
    }

    /// Whether file `id` is larger than `orig`, which still holds what was read from it (a
    /// truncated original is smaller than its copy, and is noticed by its next look instead).
    fn outgrew(&self, id: FileId, orig: FileId) -> bool {
        let (Some(t), Some(o)) = (self.files.get(&id), self.files.get(&orig)) else { return false };
        let size = |t: &Tracked| t.reader.file().metadata().map_or(0, |m| m.len());
        let (mine, theirs) = (size(t), size(o));
        mine > theirs
            && theirs >= o.reader.read_position()
            && o.reader.still_holds_what_was_read(&o.prefix).unwrap_or(false)
    }

    /// Reads what is new in every followed file and hands each line to `emit`, in file order.
    /// `emit` failing stops the poll (the line stays unread).
    pub fn poll<E>(
        &mut self,
        budget: usize,
        mut emit: impl FnMut(FileRef<'_>, Line<'_>) -> Result<Emitted, E>,
    ) -> Result<(), PollError<E>> {
        let ids: Vec<FileId> = self.files.keys().copied().collect();
        for id in ids {
            self.pump(id, budget, &mut emit)?;
        }
        Ok(())
    }

    /// Reads what is new in one file and hands it out.
    fn pump<E>(
        &mut self,
        id: FileId,
        budget: usize,
        emit: &mut impl FnMut(FileRef<'_>, Line<'_>) -> Result<Emitted, E>,
    ) -> Result<(), PollError<E>> {
        let now = self.clock.now();
        let cfg = &self.cfg;
        let Some(t) = self.files.get_mut(&id) else { return Ok(()) };
        if t.held_by.is_some() || t.unidentified_since.is_some() {
            return Ok(()); // see release_copies and settle_identities
        }
        look(cfg, t, &mut self.truncations, now)
            .map_err(|source| PollError::Read { path: t.path.clone(), source })?;
        let slot = t.slot;
        let path = t.path.as_path();
        let acks = &mut t.acks;
        let stats = &self.stats;
        let mut failure = None;
        // Hands one piece to `emit` (or, with no payload and no dead letter, accounts for bytes
        // the long-line policy or a filter dropped).
        let mut hand_out = |line: Line<'_>| -> Flow {
            if line.payload.is_none() && line.dead_letter.is_none() {
                // Nothing to wait for.
                let seq = acks.push(line.end, None, now);
                acks.ack(seq);
                return Flow::Continue;
            }
            let end = line.end;
            match emit(FileRef { path, token: token(slot, acks.next_seq) }, line) {
                Ok(Emitted::Sent { bytes }) => {
                    acks.push(end, bytes, now);
                    Flow::Continue
                }
                Ok(Emitted::NotNow) => Flow::Stop,
                Err(e) => {
                    failure = Some(e);
                    Flow::Stop
                }
            }
        };
        // A complete record is filtered, then handed out; a raw piece goes out as it is.
        let filter = &cfg.rules.filter;
        let mut deliver = |piece: Piece<'_>| -> Flow {
            let r = match piece {
                Piece::Raw(line) => return hand_out(line),
                Piece::Record(r) => r,
            };
            let dropped = filter.drops(r.payload);
            let line = Line {
                payload: if dropped.is_some() { None } else { Some(r.payload) },
                start: r.start,
                end: r.end,
                dead_letter: None,
            };
            if hand_out(line) == Flow::Stop {
                return Flow::Stop;
            }
            let counter = match (dropped, r.cut) {
                (Some(Dropped::NotIncluded), _) => Some(&stats.records_not_included),
                (Some(Dropped::Excluded), _) => Some(&stats.records_excluded),
                (None, Some(Cut::MaxLines)) => Some(&stats.records_cut_max_lines),
                (None, Some(Cut::MaxBytes)) => Some(&stats.records_cut_max_bytes),
                (None, _) => None,
            };
            if let Some(c) = counter {
                c.fetch_add(1, Ordering::Relaxed);
            }
            if r.lines > 1 && dropped.is_none() {
                stats.multiline_records.fetch_add(1, Ordering::Relaxed);
            }
            Flow::Continue
        };
        let events = &mut t.events;
        let mut on_line = |line: Line<'_>| -> Flow {
            let Some(ev) = events.as_mut() else { return deliver(Piece::Raw(line)) };
            let mut record = |r: Record<'_>| deliver(Piece::Record(r));
            match (line.payload, &line.dead_letter) {
                // A dead letter goes out in file order: the record before it ends here (cut
                // by an over-long line: counted with the records cut at max_bytes).
                (_, Some(_)) => {
                    let open = ev.open_since().is_some();
                    if ev.flush(&mut record) == Flow::Stop {
                        return Flow::Stop;
                    }
                    if open {
                        stats.records_cut_max_bytes.fetch_add(1, Ordering::Relaxed);
                    }
                    deliver(Piece::Raw(line))
                }
                (None, None) if ev.cover(line.end) => Flow::Continue,
                (None, None) => deliver(Piece::Raw(line)),
                (Some(content), None) => ev.offer(content, line.start, line.end, &mut record),
            }
        };
        let long_before = t.reader.stats;
        let read = t
            .reader
            .poll(budget, &t.prefix, &mut on_line)
            .map_err(|source| PollError::Read { path: path.to_path_buf(), source })?;
        if read == 0
            && t.detached
            && t.reader.has_partial()
            && now.saturating_duration_since(t.last_growth) >= cfg.partial_line_timeout
        {
            // Rotated away with an unterminated last line: it will not be completed.
            t.reader.take_partial(&mut on_line);
        }
        if read > 0 {
            t.last_growth = now;
        }
        // An unfinished record that nothing was added to for `timeout` goes out as it is (a
        // record ends with its file too: one rotated away mid-record is not glued to the next).
        if let Some(ev) = events.as_mut()
            && let Some(ml) = ev.rules().multiline.as_ref()
            && ev.open_since().is_some()
            && now.saturating_duration_since(t.last_growth) >= ml.timeout
            && !(t.detached && t.reader.has_partial())
            && ev.flush(&mut |r| deliver(Piece::Record(r))) == Flow::Continue
        {
            let counter = if t.detached { &stats.records_cut_rotation } else { &stats.records_cut_timeout };
            counter.fetch_add(1, Ordering::Relaxed);
        }
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
        match failure {
            Some(e) => Err(PollError::Emit(e)),
            None => Ok(()),
        }
    }

    /// Records Kafka's acknowledgement of the record sent with `token`. Returns the line's
    /// record if it was one still waited for (stale tokens, of content a file no longer has or
    /// of a slot's previous file, return None).
    pub fn ack(&mut self, token: usize) -> Option<Pending> {
        let id = self.slots.file(token >> SEQ_BITS)?;
        let t = self.files.get_mut(id)?;
        let (_, seq) = untoken(token, t.acks.next_seq);
        self.dirty = true;
        t.acks.ack(seq)
    }

    /// The file and the offset just past the line sent with `token`, to report its failure.
    pub fn describe(&self, token: usize) -> Option<(PathBuf, u64)> {
        let id = self.slots.file(token >> SEQ_BITS)?;
        let t = self.files.get(id)?;
        let (_, seq) = untoken(token, t.acks.next_seq);
        let offset = t.acks.pending.iter().find(|p| p.seq == seq).map(|p| p.end).unwrap_or(0);
        Some((t.path.clone(), offset))
    }

    /// Releases held copies whose original was truncated or finished: they start where the
    /// original's reading of the same bytes stopped.
    fn release_copies(&mut self) {
        let ids: Vec<FileId> =
            self.files.iter().filter(|(_, t)| t.held_by.is_some()).map(|(id, _)| *id).collect();
        for id in ids {
            let Some(t) = self.files.get_mut(&id) else { continue };
            let Some(i) = self
                .truncations
                .iter()
                .rposition(|tr| tr.fingerprint.matches(t.reader.file()).unwrap_or(false))
            else {
                continue;
            };
            let original = t.held_by;
            let Some(start) = read_copy(&self.cfg, &mut self.truncations, t, i) else { continue };
            tracing::info!(path = %t.path.display(), start, original = ?original, "copy released: reading its unread tail");
        }
    }

    /// Whether `t` is read to its end (`size`) with everything acknowledged (and, exactly-once,
    /// committed).
    fn finished(&self, t: &Tracked, size: u64) -> bool {
        !t.holds_back()
            && t.reader.read_position() >= size
            && t.acks.idle()
            && (!self.cfg.exactly_once || t.committed == t.position())
    }

    /// Stops following detached files that are finished: read to the end and all acknowledged.
    pub fn retire(&mut self) {
        self.release_copies();
        let done: Vec<FileId> = self
            .files
            .iter()
            .filter(|(_, t)| {
                let size = t.reader.file().metadata().map(|m| m.len()).unwrap_or(0);
                t.detached && self.finished(t, size)
            })
            .map(|(id, _)| *id)
            .collect();
        let (now, now_unix) = (self.clock.now(), self.clock.unix_now());
        for id in done {
            let Some(t) = self.files.remove(&id) else { continue };
            // A copy of it may be held: it can now read what this one did not.
            if t.fingerprint.len > 0 {
                remember(
                    &mut self.truncations,
                    Truncation {
                        fingerprint: t.fingerprint,
                        prefix: t.prefix.clone(),
                        position: t.position(),
                        at: now,
                    },
                );
            }
            self.slots.free(t.slot, t.acks.next_seq);
            self.checkpoints.entries.insert(id, t.entry(id, now_unix));
            self.dirty = true;
            self.claims.release(id, &self.name);
            tracing::info!(path = %t.path.display(), "finished rotated-away file");
        }
    }

    /// Closes the descriptors of files that are fully read and acknowledged (and, exactly-once,
    /// committed) and have not grown for `close_idle_after`; rescans reopen them when they change.
    pub fn close_idle(&mut self) {
        let now = self.clock.now();
        // A file not yet identified may be a copy of any of them: it is identified against
        // what is open (closed, the original would be gone and the copy read whole).
        if self.files.values().any(|t| t.unidentified_since.is_some()) {
            return;
        }
        let holders: HashSet<FileId> = self.files.values().filter_map(|t| t.held_by).collect();
        let idle: Vec<(FileId, std::fs::Metadata)> = self
            .files
            .iter()
            .filter(|(id, t)| {
                !t.detached
                    && now.saturating_duration_since(t.last_growth) >= self.cfg.close_idle_after
                    && t.positioned()
                    && !holders.contains(id)
            })
            .filter_map(|(id, t)| {
                let meta = t.reader.file().metadata().ok()?;
                self.finished(t, meta.len()).then_some((*id, meta))
            })
            .collect();
        let now_unix = self.clock.unix_now();
        for (id, meta) in idle {
            let Some(t) = self.files.remove(&id) else { continue };
            self.slots.free(t.slot, t.acks.next_seq);
            self.checkpoints.entries.insert(id, t.entry(id, now_unix));
            self.dirty = true;
            tracing::debug!(path = %t.path.display(), "closing idle file");
            self.scan.closed.insert(
                id,
                Closed {
                    path: t.path.clone(),
                    size: meta.len(),
                    mtime: mtime(&meta),
                    fingerprint: t.fingerprint,
                },
            );
        }
        self.stats.files.store(self.files.len() as u64, Ordering::Relaxed);
        self.stats.files_closed.store(self.scan.closed.len() as u64, Ordering::Relaxed);
    }

    /// At-least-once: writes every identified file's acknowledged position (and what truncated
    /// files held) to the checkpoint file, forgetting files gone for `forget_after`.
    pub fn save_checkpoints(&mut self) -> io::Result<()> {
        let now_unix = self.clock.unix_now();
        self.checkpoints.truncated = truncated_records(&self.truncations, self.clock.now(), now_unix);
        for (id, t) in self.files.iter().filter(|(_, t)| t.positioned()) {
            self.checkpoints.entries.insert(*id, t.entry(*id, now_unix));
        }
        let files = &self.files;
        let forgotten =
            self.checkpoints.forget(now_unix, self.cfg.forget_after.as_secs(), |id| files.contains_key(id));
        if forgotten > 0 {
            tracing::info!(forgotten, "dropped checkpoints of files gone for long");
        }
        crate::failpoints::io("source::checkpoint::save")
            .and_then(|()| self.checkpoints.save())
            .and_then(|()| crate::failpoints::io("source::checkpoint::saved"))?;
        self.dirty = false;
        self.scan.stale.clear(); // (a file without an entry holds none)
        self.publish_positions();
        Ok(())
    }

    /// Exactly-once: what the next transaction must write (every identified file at its read
    /// position, tombstones of forgotten files and truncation records).
    pub fn transaction_positions(&self) -> Positions {
        let now_unix = self.clock.unix_now();
        let entries = self
            .files
            .iter()
            .filter(|(_, t)| t.positioned())
            .map(|(id, t)| Entry { offset: t.position(), ..t.entry(*id, now_unix) })
            .collect();
        let files = &self.files;
        let mut gone = self
            .checkpoints
            .forgettable(now_unix, self.cfg.forget_after.as_secs(), |id| files.contains_key(id));
        let positioned = |id: &FileId| files.get(id).is_some_and(|t| t.positioned());
        gone.extend(self.scan.stale.iter().filter(|id| !positioned(id)));
        let truncated = truncated_records(&self.truncations, self.clock.now(), now_unix);
        let forgotten_truncated = self
            .checkpoints
            .truncated
            .iter()
            .filter(|old| !truncated.iter().any(|c| c.fingerprint == old.fingerprint))
            .cloned()
            .collect();
        Positions { first_start: !self.checkpoints.existed, entries, gone, truncated, forgotten_truncated }
    }

    /// Exactly-once: the transaction holding `positions` committed.
    pub fn committed(&mut self, positions: Positions) {
        for id in &positions.gone {
            self.checkpoints.entries.remove(id);
            self.scan.stale.remove(id);
        }
        self.checkpoints.truncated = positions.truncated;
        for e in positions.entries {
            self.scan.stale.remove(&e.id);
            if let Some(t) = self.files.get_mut(&e.id) {
                t.committed = e.offset;
            }
            self.checkpoints.entries.insert(e.id, e);
        }
        self.checkpoints.existed = true;
        self.publish_positions();
    }

    fn publish_positions(&self) {
        self.stats.checkpoint_at_ms.store(crate::fsutil::unix_now_ms(), Ordering::Relaxed);
        *self.stats.positions.lock().unwrap_or_else(|p| p.into_inner()) =
            self.checkpoints.entries.values().map(|e| (e.path.clone(), e.offset)).collect();
    }
}
