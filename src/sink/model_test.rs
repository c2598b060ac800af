//! Model-based test of the sink writer: the directory layout (`Partitions`, `PartitionWriter`)
//! and the one commit path (`offsets::Committer`, the local commit cache), driven by random
//! sequences of consumed records, flushes, commits the store refuses or applies and reports
//! failed, graceful restarts and crashes, against a simple model: a log whose record at offset
//! `o` is `line(o)`, and a store of committed offsets with metadata (`Store`, in memory).
//!
//! A crash is a failing step: the step hook (`failpoints::hook`) counts every durable step
//! (flush, fsync, cache write, commit send/answer/readback, rename, directory fsync, truncation,
//! close-off...) and fails the chosen one and every one after it; the run then stops, memory is
//! dropped, and what the disk may have lost is taken away: the bytes of the active file beyond
//! its fsynced length (a random part of them survives), a rename or a new file whose directory
//! was not yet fsynced (undone or kept at random). The restart reconciles as the connector does
//! (start-up pass over the files, then the assignment), and the files are checked:
//!
//! - the rotated files (by name) and the active file hold exactly the records
//!   `[0, next)`, once each, in order, where `next` is where the partition resumes;
//! - `next` is the store's committed offset (else the cache's: Kafka had nothing);
//! - the store's committed offset never goes backwards;
//! - at the end, after a graceful drain that consumes to the log's end, every record is there.
//!
//! The timed variant writes with an hourly layout (`{topic}/{time:%Y/%m/%d/%H}`), records
//! 13 minutes apart with every fifth one two hours late, and checks besides: rotated files are
//! read from every bucket directory; each record is in the bucket of the highest record time up
//! to it (late ones join the active bucket), and buckets never go back as offsets grow.
//!
//! Not modelled: a crash between a rename or unlink done by reconciliation and its directory
//! fsync (no step between them), lost writes that leave holes rather than a shorter file, and
//! the single-file layout.

use std::cell::RefCell;
use std::collections::{HashMap, VecDeque};
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::SinkStats;
use super::commit::{CommitCache, Committed};
use super::offsets::{self, Commit, Committer, Next, Offsets, Tp};
use super::partitions::{Partitions, Rotation};
use super::writer::{active_name, rotated_name};
use crate::failpoints::hook;

const TOPIC: &str = "t";
pub(super) const DAEMON: &str = "me";
/// Small, so that a few records rotate.
const ROTATE_BYTES: u64 = 20;

fn key() -> Tp {
    (TOPIC.to_string(), 0)
}

const UNSEALED: &str = "unsealed: ";

/// The hourly layout of the timed variant.
const HOURLY: &str = "{topic}/{time:%Y/%m/%d/%H}";
const T0: i64 = 1_796_306_400_000; // 2026-12-03T14:00:00Z

/// The record time of `offset` in the timed variant: 13 minutes apart, every fifth two hours late.
fn time(offset: i64) -> i64 {
    T0 + offset * 13 * 60_000 - if offset % 5 == 4 { 2 * 3_600_000 } else { 0 }
}

/// The bucket record `offset` belongs in: the hour of the highest time of the records written up
/// to it (a null value writes nothing and moves no bucket); the bucket never moves back.
fn expected_bucket(offset: i64) -> String {
    let hi = (0..=offset).filter(|o| line(*o).is_some()).map(time).max().unwrap_or(T0);
    hour_of(hi)
}

fn hour_of(ms: i64) -> String {
    let zoned = jiff::Timestamp::from_millisecond(ms).expect("a time").to_zoned(jiff::tz::TimeZone::UTC);
    jiff::fmt::strtime::format("%Y/%m/%d/%H", &zoned).expect("formats")
}

fn buckets(timed: bool) -> super::bucket::Buckets {
    match timed {
        true => super::bucket::Buckets::new(
            crate::config::layout::Template::parse(HOURLY).expect("parses"),
            jiff::tz::TimeZone::UTC,
            None,
        ),
        false => super::bucket::Buckets::plain(),
    }
}

/// The log: the record at `offset`; every 7th value is null (no line, only the offset moves).
fn line(offset: i64) -> Option<Vec<u8>> {
    (offset % 7 != 3).then(|| format!("{offset}:{}", "x".repeat((offset % 4) as usize)).into_bytes())
}

/// How the store answers one commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    Applied,
    /// Not applied, reported failed.
    Refused,
    /// Applied, reported failed (a timeout after the broker wrote it); the read-back works.
    AppliedReportedFailed,
    /// Applied, reported failed, and the read-back fails too.
    AppliedUnknown,
    /// Not applied, reported failed, and the read-back fails.
    RefusedUnknown,
}

#[derive(Debug, Clone)]
enum Op {
    /// The consumer hands over the next `n` records.
    Consume(u8),
    /// The consumer's queue ran dry: buffers go to the kernel.
    Flush,
    /// The periodic commit.
    Commit,
    /// How the store answers the next commit (queued; unqueued commits are applied).
    Answer(Answer),
    /// The `n`th durable step from now crashes; `survive` picks what of the unsynced state the
    /// disk kept.
    CrashAt { n: u8, survive: u8 },
    /// A crash between two operations.
    Crash { survive: u8 },
    /// A graceful stop (final commit) and start.
    Restart,
}

pub(super) fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(Answer::Applied),
        Just(Answer::Refused),
        Just(Answer::AppliedReportedFailed),
        Just(Answer::AppliedUnknown),
        Just(Answer::RefusedUnknown),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (1u8..6).prop_map(Op::Consume),
        2 => Just(Op::Flush),
        3 => Just(Op::Commit),
        3 => answer().prop_map(Op::Answer),
        3 => (0u8..16, any::<u8>()).prop_map(|(n, survive)| Op::CrashAt { n, survive }),
        1 => any::<u8>().prop_map(|survive| Op::Crash { survive }),
        1 => Just(Op::Restart),
    ]
}

/// The store of committed offsets with metadata (Kafka's consumer group, in memory).
#[derive(Default)]
pub(super) struct Store {
    pub(super) committed: HashMap<Tp, Committed>,
    pub(super) answers: VecDeque<Answer>,
    /// The next read-back fails (the commit before it was answered `*Unknown`).
    pub(super) readback_fails: bool,
    /// A commit that moved an offset backwards, if one did.
    pub(super) went_back: Option<String>,
}

impl Offsets for Store {
    fn commit(&mut self, commits: &[Commit]) -> Result<(), String> {
        let answer = self.answers.pop_front().unwrap_or(Answer::Applied);
        if matches!(answer, Answer::Applied | Answer::AppliedReportedFailed | Answer::AppliedUnknown) {
            for (t, p, c) in commits {
                let tp = (t.clone(), *p);
                if let Some(before) = self.committed.get(&tp).filter(|b| b.offset > c.offset) {
                    self.went_back.get_or_insert(format!("{} after {}", c.offset, before.offset));
                }
                self.committed.insert(tp, c.clone());
            }
        }
        self.readback_fails = matches!(answer, Answer::AppliedUnknown | Answer::RefusedUnknown);
        match answer {
            Answer::Applied => Ok(()),
            _ => Err(format!("{answer:?}")),
        }
    }

    fn committed(&mut self, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Committed>)>, String> {
        if std::mem::take(&mut self.readback_fails) {
            return Err("the coordinator did not answer".into());
        }
        Ok(partitions.iter().map(|tp| (tp.clone(), self.committed.get(tp).cloned())).collect())
    }
}

/// The step hook's state: counts durable steps, crashes at the chosen one.
#[derive(Default, Debug)]
struct Steps {
    countdown: Option<u32>,
    /// The step the crash happened at (every step after it fails too).
    crashed: Option<String>,
}

/// The disk as a crash leaves it: the step hook (`failpoints::hook`) counts the durable steps and
/// fails the chosen one and every one after it, and keeps the model's own account of what is
/// durable: the active file's length at its last fsync, the commit cache before its last
/// replacement.
pub(super) struct Disk {
    steps: Rc<RefCell<Steps>>,
    /// The active file's inode and the length it had at its last fsync.
    durable: Rc<RefCell<Option<(u64, u64)>>>,
    /// The commit cache's content before its last replacement (`None`: none was replaced yet;
    /// `Some(None)`: there was no cache file).
    cache_before: Rc<RefCell<Option<Option<Vec<u8>>>>>,
    active: PathBuf,
    cache_path: PathBuf,
}

impl Disk {
    /// Installs the step hook for this thread (until the `Disk` is dropped).
    pub(super) fn install(active: &Path, cache_path: &Path) -> Disk {
        let disk = Disk {
            steps: Rc::default(),
            durable: Rc::default(),
            cache_before: Rc::default(),
            active: active.to_path_buf(),
            cache_path: cache_path.to_path_buf(),
        };
        let (hooked, synced, old_cache) =
            (disk.steps.clone(), disk.durable.clone(), disk.cache_before.clone());
        let (active, cache_file) = (disk.active.clone(), disk.cache_path.clone());
        hook::set(move |name| {
            let mut s = hooked.borrow_mut();
            if s.crashed.is_some() {
                return Some(format!("crashed before {name}"));
            }
            match s.countdown {
                Some(0) => {
                    s.crashed = Some(name.to_string());
                    return Some(format!("crash at {name}"));
                }
                Some(n) => s.countdown = Some(n - 1),
                None => {}
            }
            if name == "fsutil::write_atomic::rename" {
                // The cache is about to be replaced: until the directory is fsynced, a crash may
                // bring the old one back.
                *old_cache.borrow_mut() = Some(fs::read(&cache_file).ok());
            }
            if name == "sink::fsync" {
                // The writer flushed its buffer and fsyncs the active file next: what the file
                // holds now is durable (the model's own account, not the writer's).
                *synced.borrow_mut() = fs::metadata(&active).ok().map(|m| (m.ino(), m.len()));
            }
            None
        });
        disk
    }

    pub(super) fn crashed(&self) -> bool {
        self.steps.borrow().crashed.is_some()
    }

    /// The `n`th durable step from now crashes.
    pub(super) fn arm(&self, n: u32) {
        self.steps.borrow_mut().countdown = Some(n);
    }

    /// After the crash: the step it happened at; nothing is armed any more.
    pub(super) fn take_crash(&self) -> String {
        let mut s = self.steps.borrow_mut();
        s.countdown = None;
        s.crashed.take().unwrap_or_default()
    }

    /// What a crash at step `at` takes from the disk besides the layout's own steps: the cache
    /// replaced without a directory fsync, the active file's bytes past its last fsync (a
    /// random prefix of them, by `survive`, is kept).
    pub(super) fn lose_unsynced(&self, at: &str, survive: u8) -> Result<(), String> {
        if at == "fsutil::write_atomic::dirsync" && survive % 2 == 1 {
            // The cache was renamed into place, the directory not synced: the old one is back.
            match self.cache_before.borrow_mut().take() {
                Some(Some(old)) => fs::write(&self.cache_path, old).map_err(|e| format!("old cache: {e}"))?,
                Some(None) => fs::remove_file(&self.cache_path).map_err(|e| format!("no cache: {e}"))?,
                None => {}
            }
        }
        if let Ok(m) = fs::metadata(&self.active) {
            let durable = match *self.durable.borrow() {
                Some((ino, len)) if ino == m.ino() => len.min(m.len()),
                _ => 0,
            };
            let kept = durable + (m.len() - durable) * u64::from(survive) / 255;
            let f = fs::OpenOptions::new().write(true).open(&self.active).map_err(|e| format!("{e}"))?;
            f.set_len(kept).map_err(|e| format!("{e}"))?;
        }
        self.settle();
        Ok(())
    }

    /// Whatever the disk holds now is what the next run finds, durably.
    pub(super) fn settle(&self) {
        *self.durable.borrow_mut() = fs::metadata(&self.active).ok().map(|m| (m.ino(), m.len()));
    }
}

impl Drop for Disk {
    fn drop(&mut self) {
        hook::clear();
    }
}

/// A temporary directory, on tmpfs when there is one: the model decides what an fsync saved,
/// the disk need not.
pub(super) fn scratch() -> Result<tempfile::TempDir, String> {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }
        .map_err(|e| format!("temp dir: {e}"))
}

/// One case's world: the sink directory, the cache file, the store, the running writer.
struct World {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    cache_path: PathBuf,
    store: Store,
    disk: Disk,
    stats: SinkStats,
    /// `None` while "down" (between a crash and the restart).
    running: Option<Running>,
    /// How many restarts the case made (for the failure message).
    restarts: u32,
    /// The hourly layout, records with times (`time`).
    timed: bool,
}

struct Running {
    parts: Partitions,
    cache: CommitCache,
    /// The consumer's position: the offset of the next record it hands over.
    pos: i64,
}

impl World {
    fn new(timed: bool) -> Result<World, String> {
        let tmp = scratch()?;
        let dir = tmp.path().join("archive");
        let cache_path = tmp.path().join("state/commits.json");
        let disk = Disk::install(&dir.join(TOPIC).join(active_name(TOPIC, 0)), &cache_path);
        let mut world = World {
            _tmp: tmp,
            dir,
            cache_path,
            store: Store::default(),
            disk,
            stats: SinkStats::default(),
            running: None,
            restarts: 0,
            timed,
        };
        world.start()?;
        Ok(world)
    }

    fn crashed(&self) -> bool {
        self.disk.crashed()
    }

    /// Starts (or restarts) the writer as the connector does: reconcile the partition's files at
    /// start-up, then again on assignment, holding the writer; the consumer resumes at its next
    /// offset (nothing committed: at the log start). A crash during start-up is followed by
    /// another start, until one completes.
    fn start(&mut self) -> Result<(), String> {
        loop {
            self.restarts += 1;
            let result = self.try_start();
            if self.crashed() {
                self.crash(0)?;
                continue;
            }
            result.map_err(|e| format!("start-up failed without a crash: {e}"))?;
            return self.check();
        }
    }

    fn try_start(&mut self) -> Result<(), String> {
        self.store.readback_fails = false; // a new session asks afresh
        let mut cache = CommitCache::load(&self.cache_path).map_err(|e| format!("cache: {e}"))?;
        let rotation = Rotation {
            bytes: ROTATE_BYTES,
            interval: Duration::from_secs(3600),
            aligned: false,
            seal_idle_after: None,
        };
        let mut parts = Partitions::new(&self.dir, DAEMON, 0o640, rotation, buckets(self.timed));
        let active = self.dir.join(TOPIC).join(active_name(TOPIC, 0));
        let mut passes = Vec::new();
        if active.exists() {
            passes.push(false); // start-up: the files only
        }
        passes.push(true); // the assignment: held
        for hold in passes {
            let from_kafka =
                self.store.committed(&[key()]).map_err(|e| format!("store: {e}"))?.pop().and_then(|(_, c)| c);
            let (authority, own) = offsets::authority(&mut cache, DAEMON, (TOPIC, 0), from_kafka);
            let resume = authority.as_ref().map(|c| c.offset);
            let (writer, _) =
                parts.reconcile((TOPIC, 0), authority.as_ref(), &own, resume).map_err(|e| e.to_string())?;
            if hold {
                parts.hold(writer);
            }
        }
        let pos = parts.next_of(&key()).and_then(Next::offset).unwrap_or(0);
        self.running = Some(Running { parts, cache, pos });
        Ok(())
    }

    /// The process dies: memory is gone, and the disk keeps only what a crash at the failed step
    /// may leave (see the module's comment).
    fn crash(&mut self, survive: u8) -> Result<(), String> {
        let at = self.disk.take_crash();
        // Dropping the writer hands its buffered bytes to the file: unsynced, like the rest.
        let writer = self
            .running
            .take()
            .and_then(|r| r.parts.writer(&key()).map(|w| (w.first, w.next, w.rotated_path(0, 1).ok())));
        let active = self.dir.join(TOPIC).join(active_name(TOPIC, 0));
        if at == "sink::rotate::dirsync" && survive % 2 == 1 {
            // Renamed, the directory not synced: the rename is lost.
            if let Some((Some(first), Some(next), Some(any))) = writer {
                let rotated = any.with_file_name(rotated_name(TOPIC, 0, first, next - 1));
                fs::rename(&rotated, &active).map_err(|e| format!("undoing the rename: {e}"))?;
            }
            self.disk.settle();
            return Ok(());
        }
        if at == "sink::new-file::dirsync" && survive % 2 == 1 && active.exists() {
            // Created, the directory not synced: the new (empty) file is lost.
            fs::remove_file(&active).map_err(|e| format!("undoing the create: {e}"))?;
        }
        self.disk.lose_unsynced(&at, survive)
    }

    /// Applies one operation; a crash in it (or an explicit one) is followed by the restart.
    fn apply(&mut self, op: &Op) -> Result<(), String> {
        let result = match op {
            Op::Answer(a) => {
                self.store.answers.push_back(*a);
                Ok(())
            }
            Op::CrashAt { n, .. } => {
                self.disk.arm(u32::from(*n));
                Ok(())
            }
            Op::Crash { survive } => {
                self.crash(*survive)?;
                return self.start();
            }
            Op::Restart => {
                let result = self.with_running(|parts, _, c| parts.commit(c));
                if result.is_ok() && !self.crashed() {
                    self.running = None; // a graceful stop: everything written stays
                    return self.start();
                }
                result
            }
            Op::Flush => self.with_running(|parts, _, _| parts.flush()),
            Op::Commit => self.with_running(|parts, _, c| parts.commit(c)),
            Op::Consume(n) => {
                let timed = self.timed;
                self.with_running(|parts, pos, c| {
                    for _ in 0..*n {
                        let offset = *pos;
                        parts.write(
                            c,
                            &key(),
                            offset,
                            line(offset).as_deref(),
                            timed.then(|| time(offset)),
                        )?;
                        *pos += 1;
                    }
                    Ok(())
                })
            }
        };
        let survive = match op {
            Op::CrashAt { survive, .. } | Op::Crash { survive } => *survive,
            _ => 128,
        };
        if self.crashed() {
            self.crash(survive)?;
            return self.start();
        }
        match result {
            // A seal before a later bucket was not committed: the run ends without another
            // commit (`ends_without_commit`), and the supervisor's restart reconciles.
            Err(e) if e.starts_with(UNSEALED) => {
                self.running = None;
                self.disk.lose_unsynced("", 255)?;
                self.start()
            }
            result => result.map_err(|e| format!("{op:?} failed without a crash: {e}")),
        }
    }

    /// Errors are `Display`ed; an `Unsealed` one starts with `UNSEALED`.
    fn with_running(
        &mut self,
        f: impl FnOnce(&mut Partitions, &mut i64, &mut Committer<'_>) -> Result<(), super::SinkError>,
    ) -> Result<(), String> {
        let Some(Running { parts, cache, pos }) = self.running.as_mut() else { return Ok(()) };
        let mut committer = Committer { offsets: &mut self.store, cache, stats: &self.stats };
        f(parts, pos, &mut committer).map_err(|e| match e {
            super::SinkError::Unsealed { .. } => format!("{UNSEALED}{e}"),
            e => e.to_string(),
        })
    }

    /// After a (re)start: the files hold exactly the records before the resume offset.
    fn check(&mut self) -> Result<(), String> {
        let Some(r) = self.running.as_ref() else { return Err("not running after a start".into()) };
        let next = r.parts.next_of(&key()).ok_or("the partition is not held")?;
        let authority = self
            .store
            .committed
            .get(&key())
            .cloned()
            .or_else(|| r.cache.get(TOPIC, 0).latest().cloned())
            .map(|c| c.offset);
        if next.offset() != authority {
            return Err(format!("resumes at {next:?}, but the committed offset is {authority:?}"));
        }
        let next = next.offset().unwrap_or(0);
        if let Some(back) = &self.store.went_back {
            return Err(format!("a commit went backwards: {back}"));
        }
        let want: Vec<u8> = (0..next)
            .filter_map(line)
            .flat_map(|mut l| {
                l.push(b'\n');
                l
            })
            .collect();
        let got = self.archive()?;
        if got != want {
            return Err(format!(
                "after restart {} the files hold\n{}\nbut records [0, {next}) are\n{}",
                self.restarts,
                String::from_utf8_lossy(&got),
                String::from_utf8_lossy(&want)
            ));
        }
        Ok(())
    }

    /// The rotated files in offset order, from every directory below the sink directory, each
    /// checked against its name's range (and, timed, its bucket), then the active file. Set-aside
    /// files are not part of the archive.
    fn archive(&self) -> Result<Vec<u8>, String> {
        let mut rotated: Vec<(i64, i64, PathBuf)> = Vec::new();
        let mut dirs = vec![self.dir.clone()];
        while let Some(dir) = dirs.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let path = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if path.is_dir() {
                    dirs.push(path);
                } else if let Some((0, first, last)) = super::housekeeping::parse_rotated(TOPIC, &name)
                    && name.ends_with(".log")
                {
                    rotated.push((first, last, path));
                }
            }
        }
        rotated.sort();
        let mut all = Vec::new();
        let mut last_bucket = String::new();
        for (first, last, path) in &rotated {
            let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let bucket = path
                .parent()
                .and_then(|p| p.strip_prefix(self.dir.join(TOPIC)).ok())
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default();
            if self.timed {
                if bucket < last_bucket {
                    return Err(format!("{} is in bucket {bucket}, before {last_bucket}", path.display()));
                }
                last_bucket = bucket.clone();
            }
            for l in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let offset: i64 =
                    String::from_utf8_lossy(l).split(':').next().and_then(|o| o.parse().ok()).ok_or_else(
                        || format!("{}: not a record: {}", path.display(), String::from_utf8_lossy(l)),
                    )?;
                if offset < *first || offset > *last {
                    return Err(format!("{} holds record {offset}", path.display()));
                }
                if self.timed && bucket != expected_bucket(offset) {
                    return Err(format!(
                        "{} (bucket {bucket}) holds record {offset}, whose bucket is {}",
                        path.display(),
                        expected_bucket(offset)
                    ));
                }
            }
            all.extend(bytes);
        }
        if let Ok(bytes) = fs::read(self.dir.join(TOPIC).join(active_name(TOPIC, 0))) {
            all.extend(bytes);
        }
        Ok(all)
    }

    /// The end of every case: stop gracefully, start, consume to the log's end, stop, start:
    /// every record up to there is in the files once.
    fn drain(&mut self, end: i64) -> Result<(), String> {
        self.disk.take_crash();
        self.store.answers.clear();
        self.apply(&Op::Restart)?;
        let pos = self.running.as_ref().map_or(0, |r| r.pos);
        let left = (end - pos).max(0);
        for _ in 0..left {
            self.apply(&Op::Consume(1))?;
        }
        self.apply(&Op::Restart)?;
        let next =
            self.running.as_ref().and_then(|r| r.parts.next_of(&key())).and_then(Next::offset).unwrap_or(0);
        if next < end {
            return Err(format!("after the drain the files end at {next}, the log at {end}"));
        }
        Ok(())
    }
}

/// Runs one sequence; `Err` says what broke, with the sequence.
fn run(ops: &[Op], timed: bool) -> Result<(), String> {
    let mut world = World::new(timed)?;
    let mut end = 0;
    for op in ops {
        world.apply(op).map_err(|e| format!("{e}\nafter {op:?} in {ops:?}"))?;
        end = end.max(world.running.as_ref().map_or(0, |r| r.pos));
    }
    world.drain(end).map_err(|e| format!("{e}\nin {ops:?}"))
}

pub(super) fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn check_model(cases: u32, timed: bool) {
    let config = Config { cases, failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let result = runner
        .run(&proptest::collection::vec(op(), 1..40), |ops| run(&ops, timed).map_err(TestCaseError::fail));
    if let Err(e) = result {
        panic!("{e}");
    }
}

/// The fast suite's share (`cargo test --lib`).
#[test]
fn the_writer_keeps_every_record_once_across_crashes_and_failed_commits() {
    check_model(cases(512), false);
}

/// The same with an hourly layout: seals at every bucket change, late records.
#[test]
fn the_timed_writer_keeps_every_record_once_in_increasing_buckets() {
    check_model(cases(512), true);
}

/// `scripts/test --long`: many more sequences (PROPTEST_CASES overrides).
#[test]
#[ignore = "long: run by scripts/test --long"]
fn the_writer_keeps_every_record_once_across_crashes_and_failed_commits_long() {
    check_model(cases(50_000), false);
}

#[test]
#[ignore = "long: run by scripts/test --long"]
fn the_timed_writer_keeps_every_record_once_in_increasing_buckets_long() {
    check_model(cases(20_000), true);
}

/// The modules this test drives know nothing of Kafka's client library: they are tested
/// without a cluster because they cannot reach one.
#[test]
fn the_code_under_test_does_not_use_the_kafka_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let pure = [
        "sink/writer.rs",
        "sink/partitions.rs",
        "sink/single.rs",
        "sink/layout.rs",
        "sink/offsets.rs",
        "sink/commit.rs",
        "sink/paths.rs",
        "sink/bucket.rs",
        "config/layout.rs",
        "sink/model_test.rs",
        "sink/single_model_test.rs",
        "fsutil.rs",
        "failpoints.rs",
    ];
    let needle = ["rd", "kafka"].concat();
    for file in pure {
        let text = fs::read_to_string(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(
            !text.contains(&needle),
            "{file} mentions {needle}: the writer must stay testable without Kafka"
        );
        for loop_side in ["kafka_offsets", "assignment"] {
            assert!(
                !text.lines().any(|l| l.trim_start().starts_with("use") && l.contains(loop_side)),
                "{file} uses the loop's {loop_side}"
            );
        }
    }
}
