//! One topic-partition's files: the active file `DIR/TOPIC/TOPIC-P.log` (a stable name for
//! `tail -F`) and rotated files `TOPIC-P-FIRST-LAST.log` (offsets zero-padded to 20 digits, so
//! that names sort in offset order) in the active file's bucket directory (`DIR/TOPIC` in the
//! default layout; `sink::bucket`). Rotated files are never written again.
//!
//! Rotation order (each step safe to crash after; see ARCHITECTURE.md):
//! 1. fsync the active file; 2. commit its offset and length to Kafka;
//! 3. rename it to its offset-range name; 4. fsync the directory.
//!
//! Reconciliation at assignment finishes or undoes whatever a crash interrupted.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::bucket::Place;
use super::commit::{Cached, CommitMeta, Committed, Handover, META_VERSION};
use crate::failpoints;
use crate::fsutil;

pub fn active_name(topic: &str, partition: i32) -> String {
    format!("{topic}-{partition}.log")
}

pub fn rotated_name(topic: &str, partition: i32, first: i64, last: i64) -> String {
    format!("{topic}-{partition}-{first:020}-{last:020}.log")
}

/// True if the rotated file exists, plain or compressed by housekeeping (which never deletes a
/// partition's newest rotated file, the one a finished rotation is recognised by).
pub fn rotated_exists(plain: &Path) -> bool {
    plain.exists()
        || super::housekeeping::COMPRESSED_SUFFIXES.iter().any(|s| {
            let mut name = plain.as_os_str().to_os_string();
            name.push(s);
            Path::new(&name).exists()
        })
}

pub struct PartitionWriter {
    pub topic: String,
    pub partition: i32,
    sink_dir: PathBuf,
    /// The topic directory, where the active file is.
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    /// The bucket the active file belongs to (`None`: not known yet; its rotated file then goes
    /// to the topic directory, as in the default layout).
    pub place: Option<Place>,
    /// The highest record time (ms) the partition has seen (time layouts).
    pub hi: Option<i64>,
    /// When a record last arrived (for `seal_idle_after`).
    pub last_write: Instant,
    /// The wall clock's aligned period when the active file was started (`rotate_aligned`
    /// without a time layout).
    pub wall_period: Option<i64>,
    /// Offset of the first record in the active file.
    pub first: Option<i64>,
    /// The offset the next record must have (`None`: unknown until the first record, when
    /// nothing was ever committed).
    pub next: Option<i64>,
    /// Bytes written to the active file (including buffered ones).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub durable_len: u64,
    /// The offset last committed to Kafka.
    pub committed: Option<i64>,
    /// The next commit closes the active file (a rotation): its metadata says `sealed`.
    pub sealing: bool,
    /// Where this writer's ownership began (carried in every commit's metadata).
    pub from: Option<Handover>,
    opened_at: Instant,
    /// When each record written since the last fsync was consumed (for the latency histogram).
    pub unsynced: Vec<Instant>,
    /// Permissions of the files it creates (`file_mode`).
    pub file_mode: u32,
}

/// What reconciliation did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reconciled {
    /// Nothing committed anywhere: a fresh start (an active file of unknown origin is set aside).
    Fresh { set_aside: Option<PathBuf> },
    /// Continuing this daemon's own active file; `truncated` bytes written after the last commit
    /// were dropped (they will be consumed and written again).
    Continued { truncated: u64 },
    /// The last commit sealed the active file: its rename is done (now, if the crash came before
    /// it), and an active file started after it (`discarded` bytes, none committed) was removed.
    RotationFinished { discarded: u64 },
    /// The committed file is missing or shorter than committed (the disk lost data fsync had
    /// reported durable, or someone moved it): what is left is set aside, a new file starts at
    /// the committed offset.
    Damaged { set_aside: Option<PathBuf> },
    /// Another writer (or another tool) committed since this daemon's last commit: this
    /// daemon's own file was closed off (renamed to its committed range) and a new file starts at
    /// the committed offset.
    TakenOver { closed: Option<PathBuf> },
}

impl PartitionWriter {
    fn new(sink_dir: &Path, topic: &str, partition: i32) -> PartitionWriter {
        PartitionWriter {
            topic: topic.to_string(),
            partition,
            sink_dir: sink_dir.to_path_buf(),
            dir: sink_dir.join(topic),
            file: None,
            place: None,
            hi: None,
            last_write: Instant::now(),
            wall_period: None,
            first: None,
            next: None,
            len: 0,
            durable_len: 0,
            committed: None,
            sealing: false,
            from: None,
            opened_at: Instant::now(),
            unsynced: Vec::new(),
            file_mode: super::paths::DEFAULT_FILE_MODE,
        }
    }

    pub fn active_path(&self) -> PathBuf {
        self.dir.join(active_name(&self.topic, self.partition))
    }

    /// The directory of bucket `b` (relative to the sink directory; `None`: the topic
    /// directory), created if needed. `b` may come from Kafka's commit metadata: it is checked
    /// to stay inside the sink directory.
    fn bucket_dir(&self, b: Option<&str>) -> io::Result<PathBuf> {
        match b {
            None => Ok(self.dir.clone()),
            Some(b) if b == self.topic => Ok(self.dir.clone()),
            Some(b) => super::paths::bucket_dir(&self.sink_dir, b),
        }
    }

    fn rotated_path_in(&self, b: Option<&str>, first: i64, next: i64) -> io::Result<PathBuf> {
        Ok(self.bucket_dir(b)?.join(rotated_name(&self.topic, self.partition, first, next - 1)))
    }

    /// Where the active file goes when it is sealed.
    pub fn rotated_path(&self, first: i64, next: i64) -> io::Result<PathBuf> {
        self.rotated_path_in(self.place.as_ref().map(|p| p.dir.as_str()), first, next)
    }

    /// Brings the partition's files in line with the committed state and returns the writer
    /// positioned at the committed offset. `committed` is Kafka's (authority) or else the cache's.
    /// `own` is what the local cache knows of this daemon's own commits, used to close off its
    /// file after another writer took the partition over.
    pub fn reconcile(
        sink_dir: &Path,
        topic: &str,
        partition: i32,
        daemon_id: &str,
        committed: Option<&Committed>,
        own: &Cached,
    ) -> io::Result<(PartitionWriter, Reconciled)> {
        let mut w = PartitionWriter::new(sink_dir, topic, partition);
        w.dir = super::paths::topic_dir(sink_dir, topic)?;
        let active = w.active_path();
        let active_len = match fs::metadata(&active) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let Some(c) = committed else {
            let set_aside = match active_len {
                Some(n) if n > 0 => Some(w.set_aside(&active, "uncommitted")?),
                Some(_) => {
                    w.discard(&active)?;
                    None
                }
                None => None,
            };
            return Ok((w, Reconciled::Fresh { set_aside }));
        };
        w.next = Some(c.offset);
        w.committed = Some(c.offset);
        // The bucket and the highest record time go on from the last commit, whoever made it: a
        // partition that moves to another daemon mid-hour continues in that hour's bucket.
        w.place = Some(Place { dir: c.meta.b.clone().unwrap_or_else(|| topic.to_string()), period: None });
        w.hi = c.meta.hi;
        if c.meta.w == daemon_id && c.meta.f == active_name(topic, partition) {
            w.from = c.meta.from.clone();
            let outcome = w.continue_own(c, active_len)?;
            return Ok((w, outcome));
        }
        // Another writer (or another tool) committed last: whatever our active file holds beyond
        // where our ownership ended was never committed; what it holds up to there is ours to keep.
        w.from = Some(Handover { w: c.meta.w.clone(), o: c.offset });
        let closed = w.close_off(daemon_id, c, own, active_len)?;
        Ok((w, Reconciled::TakenOver { closed }))
    }

    /// This daemon committed last: continue its active file, or finish the rotation its last
    /// commit sealed.
    fn continue_own(&mut self, c: &Committed, active_len: Option<u64>) -> io::Result<Reconciled> {
        let active = self.active_path();
        let (first, len) = (c.meta.first, c.meta.len);
        let rotated = match first >= 0 {
            true => Some(self.rotated_path_in(c.meta.b.as_deref(), first, c.offset)?),
            false => None,
        };
        let renamed = rotated.as_deref().is_some_and(rotated_exists);
        // Version 1 metadata does not mark the commit of a rotation: the rotated file's existence
        // does (it is renamed only after that commit, and only a rotation names it).
        if c.meta.sealed || renamed {
            let discarded = match (renamed, active_len, rotated) {
                (true, Some(n), _) => {
                    // Started after the rotation: nothing in it was committed. Unlink only
                    // (never truncate: after a link-and-unlink rename it may be the rotated file).
                    self.discard(&active)?;
                    n
                }
                (true, None, rotated) => {
                    // The crash may have come between the rename and the directories' fsyncs.
                    if let Some(to) = rotated.as_deref().and_then(Path::parent) {
                        fsutil::sync_dir(to)?;
                    }
                    fsutil::sync_dir(&self.dir)?;
                    0
                }
                (false, Some(n), Some(rotated)) if n >= len => {
                    // Sealed, not yet renamed: finish the rotation.
                    self.truncate(&active, n, len)?;
                    self.rename_into_bucket(&active, &rotated)?;
                    n - len
                }
                (false, _, _) => return self.damaged(active_len),
            };
            return Ok(Reconciled::RotationFinished { discarded });
        }
        match active_len {
            Some(n) if n >= len => {
                self.truncate(&active, n, len)?;
                self.open_existing(len, (first >= 0).then_some(first))?;
                Ok(Reconciled::Continued { truncated: n - len })
            }
            None if len == 0 => Ok(Reconciled::Continued { truncated: 0 }),
            _ => self.damaged(active_len),
        }
    }

    /// The committed active file is missing or shorter than committed.
    fn damaged(&mut self, active_len: Option<u64>) -> io::Result<Reconciled> {
        let active = self.active_path();
        let set_aside = match active_len {
            Some(_) => Some(self.set_aside(&active, "damaged")?),
            None => None,
        };
        tracing::error!(file = %active.display(), ?set_aside, "the committed active file is missing or shorter than its committed length (the disk lost data, or it was moved); starting a new file at the committed offset");
        Ok(Reconciled::Damaged { set_aside })
    }

    /// After a takeover: closes this daemon's active file off at the end of its ownership.
    /// Kafka's current metadata says where that was when the new owner recorded it (`from`);
    /// else the cache's latest commit (sent, its data durable: at worst records the new owner
    /// also wrote, never fewer).
    fn close_off(
        &mut self,
        daemon_id: &str,
        theirs: &Committed,
        own: &Cached,
        active_len: Option<u64>,
    ) -> io::Result<Option<PathBuf>> {
        let active = self.active_path();
        let Some(n) = active_len else { return Ok(None) };
        let name = active_name(&self.topic, self.partition);
        let candidates: Vec<&Committed> =
            own.candidates().into_iter().filter(|c| c.meta.w == daemon_id && c.meta.f == name).collect();
        let mine = match &theirs.meta.from {
            Some(h) if h.w == daemon_id => {
                let found = candidates.iter().find(|c| c.offset == h.o).copied();
                if found.is_none() {
                    tracing::error!(file = %active.display(), handed_over_at = h.o, cached = ?candidates.iter().map(|c| c.offset).collect::<Vec<_>>(), "the new owner started where this daemon's cache has no commit; closing off at the latest cached one (records may repeat)");
                }
                found.or(candidates.last().copied())
            }
            _ => candidates.last().copied(),
        };
        let Some(mine) = mine.filter(|c| c.meta.first >= 0 && c.meta.len > 0) else {
            if n > 0 {
                return Ok(Some(self.set_aside(&active, "uncommitted")?));
            }
            self.discard(&active)?;
            return Ok(None);
        };
        let rotated = self.rotated_path_in(mine.meta.b.as_deref(), mine.meta.first, mine.offset)?;
        if rotated_exists(&rotated) {
            // Our last commit sealed that file and it was renamed: the active file came after.
            self.discard(&active)?;
            return Ok(None);
        }
        if n < mine.meta.len {
            return Ok(Some(self.set_aside(&active, "damaged")?));
        }
        self.truncate(&active, n, mine.meta.len)?;
        failpoints::io("sink::reconcile::close-off")?;
        self.rename_into_bucket(&active, &rotated)?;
        Ok(Some(rotated))
    }

    /// Renames the active file to its rotated name (never replacing a file) and makes the
    /// rename durable in both directories when the bucket is another one.
    fn rename_into_bucket(&self, active: &Path, rotated: &Path) -> io::Result<()> {
        fsutil::rename_noreplace(active, rotated)?;
        let to = rotated.parent().unwrap_or(&self.dir);
        fsutil::sync_dir(to)?;
        if to != self.dir {
            fsutil::sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Cuts an uncommitted tail off (`n` bytes long now, `len` committed) and makes it durable.
    fn truncate(&self, path: &Path, n: u64, len: u64) -> io::Result<()> {
        if n > len {
            failpoints::io("sink::reconcile::truncate")?;
            let f = OpenOptions::new().write(true).open(path)?;
            f.set_len(len)?;
            f.sync_all()?;
        }
        Ok(())
    }

    /// Removes an active file that holds nothing committed.
    fn discard(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)?;
        fsutil::sync_dir(&self.dir)
    }

    /// Renames a file we cannot account for out of the way (never deletes data).
    fn set_aside(&self, path: &Path, why: &str) -> io::Result<PathBuf> {
        fsutil::set_aside(path, why)
    }

    fn open_existing(&mut self, len: u64, first: Option<i64>) -> io::Result<()> {
        let file = OpenOptions::new().append(true).open(self.active_path())?;
        self.file = Some(BufWriter::with_capacity(256 * 1024, file));
        self.len = len;
        self.durable_len = len;
        self.first = first;
        self.opened_at = Instant::now();
        Ok(())
    }

    /// Appends one record (the value and a newline).
    pub fn append(&mut self, offset: i64, value: &[u8]) -> io::Result<()> {
        if self.file.is_none() {
            let path = self.active_path();
            let file = OpenOptions::new().create(true).append(true).mode(self.file_mode).open(&path)?;
            let len = file.metadata()?.len();
            self.file = Some(BufWriter::with_capacity(256 * 1024, file));
            if len == 0 {
                // A new file: make its name durable before anything refers to it.
                failpoints::io("sink::new-file::dirsync")?;
                fsutil::sync_dir(&self.dir)?;
            }
            self.len = len;
            self.durable_len = len;
            self.opened_at = Instant::now();
        }
        let file = self.file.as_mut().expect("opened above");
        file.write_all(value)?;
        file.write_all(b"\n")?;
        self.len += value.len() as u64 + 1;
        self.first.get_or_insert(offset);
        self.next = Some(offset + 1);
        self.last_write = Instant::now();
        Ok(())
    }

    /// True if records were written since the last commit.
    pub fn dirty(&self) -> bool {
        self.next.is_some_and(|next| self.committed.is_none_or(|committed| next > committed))
    }

    /// Writes buffered records to the file (readable, not yet durable).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => {
                failpoints::io("sink::flush")?;
                f.flush()
            }
            None => Ok(()),
        }
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            failpoints::io("sink::flush")?;
            f.flush()?;
            if self.durable_len != self.len {
                failpoints::io("sink::fsync")?;
                f.get_ref().sync_data()?;
            }
        }
        self.durable_len = self.len;
        Ok(())
    }

    /// The commit for the durable state (call after `sync`).
    pub fn commit_meta(&self, daemon_id: &str) -> CommitMeta {
        CommitMeta {
            v: META_VERSION,
            w: daemon_id.to_string(),
            f: active_name(&self.topic, self.partition),
            first: self.first.unwrap_or(-1),
            len: self.durable_len,
            sealed: self.sealing && self.first.is_some(),
            from: self.from.clone(),
            tid: None,
            // The topic directory (the default layout) is implied, as in older archives.
            b: self.place.as_ref().map(|p| p.dir.clone()).filter(|b| *b != self.topic),
            hi: self.hi,
        }
    }

    pub fn needs_rotation(&self, rotate_bytes: u64, rotate_interval: std::time::Duration) -> bool {
        self.first.is_some() && (self.len >= rotate_bytes || self.opened_at.elapsed() >= rotate_interval)
    }

    /// Renames the active file to its offset range. Precondition: synced and committed with
    /// `sealing` set, so the committed metadata names the active file with its full length and
    /// says it is sealed (reconcile relies on it). The rename never replaces a file.
    pub fn rotate(&mut self) -> io::Result<Option<PathBuf>> {
        let (Some(first), Some(next)) = (self.first, self.next) else { return Ok(None) };
        debug_assert!(self.durable_len == self.len && self.committed == self.next);
        self.file = None;
        let rotated = self.rotated_path(first, next)?;
        failpoints::io("sink::rotate::rename")?;
        fsutil::rename_noreplace(&self.active_path(), &rotated)?;
        failpoints::io("sink::rotate::dirsync")?;
        let to = rotated.parent().unwrap_or(&self.dir);
        fsutil::sync_dir(to)?;
        if to != self.dir {
            fsutil::sync_dir(&self.dir)?;
        }
        failpoints::io("sink::rotate::done")?;
        self.first = None;
        self.len = 0;
        self.durable_len = 0;
        self.sealing = false;
        Ok(Some(rotated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own(c: &Committed) -> Cached {
        Cached { confirmed: Some(c.clone()), attempt: None }
    }

    fn committed(w: &str, first: i64, offset: i64, len: u64) -> Committed {
        Committed {
            offset,
            meta: CommitMeta { v: 1, w: w.into(), f: active_name("t", 0), first, len, ..Default::default() },
        }
    }

    #[test]
    fn uncommitted_tail_is_truncated_and_writing_continues() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, r) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        assert_eq!(r, Reconciled::Fresh { set_aside: None });
        w.append(5, b"a").expect("write");
        w.append(6, b"b").expect("write");
        w.sync().expect("sync");
        let c = Committed { offset: 7, meta: w.commit_meta("me") };
        w.append(7, b"not committed").expect("write");
        w.sync().expect("sync");
        drop(w);
        let (mut w, r) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::Continued { truncated: 14 });
        assert_eq!((w.next, w.first), (Some(7), Some(5)));
        w.append(7, b"c").expect("write");
        w.sync().expect("sync");
        assert_eq!(fs::read(dir.path().join("t/t-0.log")).expect("read"), b"a\nb\nc\n");
    }

    #[test]
    fn rotation_names_files_by_offset_range_and_a_crash_after_rename_is_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        w.append(0, b"a").expect("write");
        w.append(1, b"b").expect("write");
        w.sync().expect("sync");
        w.committed = w.next;
        let c = Committed { offset: 2, meta: w.commit_meta("me") };
        let rotated = w.rotate().expect("rotate").expect("a file");
        assert_eq!(
            rotated.file_name().and_then(|n| n.to_str()),
            Some("t-0-00000000000000000000-00000000000000000001.log")
        );
        drop(w);
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::RotationFinished { discarded: 0 });
        assert_eq!((w.next, w.first, w.len), (Some(2), None, 0));
    }

    #[test]
    fn a_finished_rotation_is_recognised_when_housekeeping_compressed_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        w.append(0, b"a").expect("write");
        w.sync().expect("sync");
        w.committed = w.next;
        let c = Committed { offset: 1, meta: w.commit_meta("me") };
        let rotated = w.rotate().expect("rotate").expect("a file");
        drop(w);
        let mut zst = rotated.clone().into_os_string();
        zst.push(".zst");
        fs::rename(&rotated, &zst).expect("compressed");
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::RotationFinished { discarded: 0 });
        assert_eq!(w.next, Some(1));
        fs::remove_file(&zst).expect("gone");
        let (_, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::Damaged { set_aside: None }, "missing altogether: an error is logged");
    }

    /// Issue 13 finding 1 / issue 22: a crash after a rotation's commit and rename, once a new
    /// active file holds records but before the next commit. The new file is uncommitted: it must
    /// be neither taken for the rotated one (truncated to its length) nor called damaged.
    fn crash_after_rotation_with_new_records(new_records: usize) -> (tempfile::TempDir, Committed) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        w.append(0, b"aaaa").expect("write");
        w.append(1, b"bbbb").expect("write");
        w.sync().expect("sync");
        w.committed = w.next;
        let c = Committed { offset: 2, meta: w.commit_meta("me") };
        w.rotate().expect("rotate").expect("a file");
        for i in 0..new_records {
            w.append(2 + i as i64, b"new!").expect("write");
        }
        w.flush().expect("flush");
        drop(w);
        (dir, c)
    }

    fn assert_resumes_cleanly_after_rotation(dir: &Path, c: &Committed) {
        let (mut w, r) = PartitionWriter::reconcile(dir, "t", 0, "me", Some(c), &own(c)).expect("again");
        assert!(
            !matches!(r, Reconciled::Fresh { set_aside: Some(_) } | Reconciled::Damaged { .. }),
            "nothing committed was set aside: {r:?}"
        );
        assert_eq!((w.next, w.first), (Some(2), None), "a new file starts at the committed offset: {r:?}");
        w.append(2, b"c").expect("write");
        w.sync().expect("sync");
        let names: Vec<String> = fs::read_dir(dir.join("t"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "only the rotated file and the new active file: {names:?}");
        assert_eq!(
            fs::read(dir.join("t").join(rotated_name("t", 0, 0, 1))).expect("rotated"),
            b"aaaa\nbbbb\n"
        );
        assert_eq!(fs::read(dir.join("t/t-0.log")).expect("active"), b"c\n");
    }

    #[test]
    fn a_new_file_shorter_than_the_rotated_one_is_not_called_damaged() {
        let (dir, c) = crash_after_rotation_with_new_records(1);
        assert_resumes_cleanly_after_rotation(dir.path(), &c);
    }

    #[test]
    fn a_new_file_as_long_as_the_rotated_one_is_not_taken_for_it() {
        let (dir, c) = crash_after_rotation_with_new_records(3);
        assert_resumes_cleanly_after_rotation(dir.path(), &c);
    }

    #[test]
    fn a_takeover_never_renames_a_new_file_over_the_rotated_one() {
        let (dir, mine) = crash_after_rotation_with_new_records(2);
        let theirs = committed("other-host", 2, 10, 9);
        let rotated = dir.path().join("t").join(rotated_name("t", 0, 0, 1));
        let (w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&theirs), &own(&mine))
            .expect("takeover");
        assert_eq!(fs::read(&rotated).expect("rotated file kept"), b"aaaa\nbbbb\n");
        assert_eq!(w.next, Some(10));
        let names: Vec<String> = fs::read_dir(dir.path().join("t"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            vec![rotated_name("t", 0, 0, 1)],
            "the uncommitted new file is gone, nothing set aside"
        );
    }

    #[test]
    fn a_sealed_commit_whose_rename_did_not_happen_is_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        w.append(0, b"aaaa").expect("write");
        w.append(1, b"bbbb").expect("write");
        w.sync().expect("sync");
        w.sealing = true;
        let c = Committed { offset: 2, meta: w.commit_meta("me") };
        assert!(c.meta.sealed);
        drop(w); // crash between the sealing commit and the rename
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::RotationFinished { discarded: 0 });
        assert_eq!((w.next, w.first), (Some(2), None));
        assert_eq!(
            fs::read(dir.path().join("t").join(rotated_name("t", 0, 0, 1))).expect("rotated"),
            b"aaaa\nbbbb\n"
        );
        assert!(!w.active_path().exists());
    }

    #[test]
    fn a_version_1_archive_continues_as_it_is() {
        // What the previous release left: an active file and a v1 commit naming it.
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("t")).expect("mkdir");
        fs::write(dir.path().join("t").join(rotated_name("t", 0, 0, 1)), b"a\nb\n").expect("rotated");
        fs::write(dir.path().join("t/t-0.log"), b"c\nd\nuncommitted\n").expect("active");
        let meta = CommitMeta::decode(r#"{"v":1,"w":"me","f":"t-0.log","first":2,"len":4}"#).expect("v1");
        let c = Committed { offset: 4, meta };
        let (mut w, r) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), &own(&c)).expect("again");
        assert_eq!(r, Reconciled::Continued { truncated: 12 });
        assert_eq!((w.next, w.first), (Some(4), Some(2)));
        w.append(4, b"e").expect("write");
        w.sync().expect("sync");
        assert_eq!(fs::read(dir.path().join("t/t-0.log")).expect("active"), b"c\nd\ne\n");
        assert_eq!(
            fs::read_dir(dir.path().join("t")).expect("list").count(),
            2,
            "nothing renamed or set aside"
        );
    }

    #[test]
    fn a_takeover_closes_off_our_own_committed_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        w.append(0, b"a").expect("write");
        w.sync().expect("sync");
        let mine = Committed { offset: 1, meta: w.commit_meta("me") };
        w.append(1, b"uncommitted").expect("write");
        w.sync().expect("sync");
        drop(w);
        let theirs = committed("other-host", 1, 10, 9);
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&theirs), &own(&mine))
            .expect("takeover");
        let closed = dir.path().join("t").join(rotated_name("t", 0, 0, 0));
        assert_eq!(r, Reconciled::TakenOver { closed: Some(closed.clone()) });
        assert_eq!(fs::read(closed).expect("read"), b"a\n");
        assert_eq!(w.next, Some(10));
        assert!(!w.active_path().exists());
    }

    #[test]
    fn an_active_file_of_unknown_origin_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("t")).expect("mkdir");
        fs::write(dir.path().join("t/t-0.log"), b"someone's data\n").expect("write");
        let (_, r) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, &Cached::default()).expect("fresh");
        let Reconciled::Fresh { set_aside: Some(aside) } = r else { panic!("set aside: {r:?}") };
        assert_eq!(fs::read(aside).expect("kept"), b"someone's data\n");
    }
}
