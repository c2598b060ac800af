//! One topic-partition's files: the active file `DIR/TOPIC/TOPIC-P.log` (a stable name for
//! `tail -F`) and rotated files `TOPIC-P-FIRST-LAST.log` (offsets zero-padded to 20 digits, so
//! that names sort in offset order). Rotated files are never written again.
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

use super::commit::{CommitMeta, Committed, META_VERSION};
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
    dir: PathBuf,
    file: Option<BufWriter<File>>,
    /// Offset of the first record in the active file.
    pub first: Option<i64>,
    /// The offset the next record must have (-1: unknown until the first record of a new group).
    pub next: i64,
    /// Bytes written to the active file (including buffered ones).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub durable_len: u64,
    /// The offset last committed to Kafka.
    pub committed: i64,
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
    /// The previous rotation had renamed the file but not yet been followed by a new file.
    RotationFinished,
    /// Another writer committed since this daemon's last commit: this daemon's own file was closed
    /// off (renamed to its committed range) and a new file starts at the committed offset.
    TakenOver { closed: Option<PathBuf> },
}

impl PartitionWriter {
    fn new(sink_dir: &Path, topic: &str, partition: i32) -> PartitionWriter {
        PartitionWriter {
            topic: topic.to_string(),
            partition,
            dir: sink_dir.join(topic),
            file: None,
            first: None,
            next: -1,
            len: 0,
            durable_len: 0,
            committed: -1,
            opened_at: Instant::now(),
            unsynced: Vec::new(),
            file_mode: super::paths::DEFAULT_FILE_MODE,
        }
    }

    pub fn active_path(&self) -> PathBuf {
        self.dir.join(active_name(&self.topic, self.partition))
    }

    /// Brings the partition's files in line with the committed state and returns the writer
    /// positioned at the committed offset. `committed` is Kafka's (authority) or else the cache's.
    /// `own_cache` is this daemon's own last commit, used to close off its file after a takeover.
    pub fn reconcile(
        sink_dir: &Path,
        topic: &str,
        partition: i32,
        daemon_id: &str,
        committed: Option<&Committed>,
        own_cache: Option<&Committed>,
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
                    fs::remove_file(&active)?;
                    None
                }
                None => None,
            };
            return Ok((w, Reconciled::Fresh { set_aside }));
        };
        w.next = c.offset;
        w.committed = c.offset;
        let ours = c.meta.w == daemon_id && c.meta.f == active_name(topic, partition);
        if ours {
            match active_len {
                Some(n) if n >= c.meta.len => {
                    if n > c.meta.len {
                        OpenOptions::new().write(true).open(&active)?.set_len(c.meta.len)?;
                        File::open(&active)?.sync_all()?;
                    }
                    w.open_existing(c.meta.len, (c.meta.first >= 0).then_some(c.meta.first))?;
                    return Ok((w, Reconciled::Continued { truncated: n - c.meta.len }));
                }
                Some(_) => {
                    // Shorter than committed: the disk lost data fsync had reported durable.
                    let aside = w.set_aside(&active, "damaged")?;
                    tracing::error!(file = %aside.display(), "active file is shorter than its committed length; set aside, starting a new file at the committed offset");
                    return Ok((w, Reconciled::Fresh { set_aside: Some(aside) }));
                }
                None if c.meta.len == 0 => return Ok((w, Reconciled::Continued { truncated: 0 })),
                None => {
                    let rotated = w.dir.join(rotated_name(topic, partition, c.meta.first, c.offset - 1));
                    if rotated_exists(&rotated) {
                        fsutil::sync_dir(&w.dir)?;
                        return Ok((w, Reconciled::RotationFinished));
                    }
                    tracing::error!(file = %active.display(), "the committed active file is missing; starting a new file at the committed offset");
                    return Ok((w, Reconciled::Fresh { set_aside: None }));
                }
            }
        }
        // Another writer (or another tool) committed last: whatever our active file holds beyond
        // our own last commit was never committed; what it holds up to it is ours to keep.
        let closed = match (active_len, own_cache) {
            (Some(n), Some(own))
                if own.meta.w == daemon_id
                    && own.meta.first >= 0
                    && n >= own.meta.len
                    && own.meta.len > 0 =>
            {
                OpenOptions::new().write(true).open(&active)?.set_len(own.meta.len)?;
                File::open(&active)?.sync_all()?;
                let name = w.dir.join(rotated_name(topic, partition, own.meta.first, own.offset - 1));
                fs::rename(&active, &name)?;
                fsutil::sync_dir(&w.dir)?;
                Some(name)
            }
            (Some(n), _) if n > 0 => Some(w.set_aside(&active, "uncommitted")?),
            (Some(_), _) => {
                fs::remove_file(&active)?;
                None
            }
            (None, _) => None,
        };
        Ok((w, Reconciled::TakenOver { closed }))
    }

    /// Renames a file we cannot account for out of the way (never deletes data).
    fn set_aside(&self, path: &Path, why: &str) -> io::Result<PathBuf> {
        let aside = path.with_extension(format!("log.{why}-{}", fsutil::unix_now()));
        fs::rename(path, &aside)?;
        fsutil::sync_dir(&self.dir)?;
        Ok(aside)
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
        self.next = offset + 1;
        Ok(())
    }

    /// True if records were written since the last commit.
    pub fn dirty(&self) -> bool {
        self.next > self.committed && self.next >= 0
    }

    /// Writes buffered records to the file (readable, not yet durable).
    pub fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Makes everything written durable.
    pub fn sync(&mut self) -> io::Result<()> {
        if let Some(f) = self.file.as_mut() {
            f.flush()?;
            if self.durable_len != self.len {
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
        }
    }

    pub fn needs_rotation(&self, rotate_bytes: u64, rotate_interval: std::time::Duration) -> bool {
        self.first.is_some() && (self.len >= rotate_bytes || self.opened_at.elapsed() >= rotate_interval)
    }

    /// Renames the active file to its offset range. Precondition: synced and committed, so the
    /// committed metadata names the active file with its full length (reconcile relies on it).
    pub fn rotate(&mut self) -> io::Result<Option<PathBuf>> {
        let Some(first) = self.first else { return Ok(None) };
        debug_assert!(self.durable_len == self.len && self.committed == self.next);
        self.file = None;
        let rotated = self.dir.join(rotated_name(&self.topic, self.partition, first, self.next - 1));
        fs::rename(self.active_path(), &rotated)?;
        fsutil::sync_dir(&self.dir)?;
        self.first = None;
        self.len = 0;
        self.durable_len = 0;
        Ok(Some(rotated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(w: &str, first: i64, offset: i64, len: u64) -> Committed {
        Committed { offset, meta: CommitMeta { v: 1, w: w.into(), f: active_name("t", 0), first, len } }
    }

    #[test]
    fn uncommitted_tail_is_truncated_and_writing_continues() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
        assert_eq!(r, Reconciled::Fresh { set_aside: None });
        w.append(5, b"a").expect("write");
        w.append(6, b"b").expect("write");
        w.sync().expect("sync");
        let c = Committed { offset: 7, meta: w.commit_meta("me") };
        w.append(7, b"not committed").expect("write");
        w.sync().expect("sync");
        drop(w);
        let (mut w, r) =
            PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), Some(&c)).expect("again");
        assert_eq!(r, Reconciled::Continued { truncated: 14 });
        assert_eq!((w.next, w.first), (7, Some(5)));
        w.append(7, b"c").expect("write");
        w.sync().expect("sync");
        assert_eq!(fs::read(dir.path().join("t/t-0.log")).expect("read"), b"a\nb\nc\n");
    }

    #[test]
    fn rotation_names_files_by_offset_range_and_a_crash_after_rename_is_finished() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
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
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), Some(&c)).expect("again");
        assert_eq!(r, Reconciled::RotationFinished);
        assert_eq!((w.next, w.first, w.len), (2, None, 0));
    }

    #[test]
    fn a_finished_rotation_is_recognised_when_housekeeping_compressed_the_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
        w.append(0, b"a").expect("write");
        w.sync().expect("sync");
        w.committed = w.next;
        let c = Committed { offset: 1, meta: w.commit_meta("me") };
        let rotated = w.rotate().expect("rotate").expect("a file");
        drop(w);
        let mut zst = rotated.clone().into_os_string();
        zst.push(".zst");
        fs::rename(&rotated, &zst).expect("compressed");
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), Some(&c)).expect("again");
        assert_eq!(r, Reconciled::RotationFinished);
        assert_eq!(w.next, 1);
        fs::remove_file(&zst).expect("gone");
        let (_, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&c), Some(&c)).expect("again");
        assert_eq!(r, Reconciled::Fresh { set_aside: None }, "missing altogether: an error is logged");
    }

    /// Issue 13 finding 1 / issue 22: a crash after a rotation's commit and rename, once a new
    /// active file holds records but before the next commit. The new file is uncommitted: it must
    /// be neither taken for the rotated one (truncated to its length) nor called damaged.
    fn crash_after_rotation_with_new_records(new_records: usize) -> (tempfile::TempDir, Committed) {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
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
        let (mut w, r) = PartitionWriter::reconcile(dir, "t", 0, "me", Some(c), Some(c)).expect("again");
        assert!(!matches!(r, Reconciled::Fresh { set_aside: Some(_) }), "nothing committed was set aside: {r:?}");
        assert_eq!((w.next, w.first), (2, None), "a new file starts at the committed offset: {r:?}");
        w.append(2, b"c").expect("write");
        w.sync().expect("sync");
        let names: Vec<String> = fs::read_dir(dir.join("t"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "only the rotated file and the new active file: {names:?}");
        assert_eq!(fs::read(dir.join("t").join(rotated_name("t", 0, 0, 1))).expect("rotated"), b"aaaa\nbbbb\n");
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
        let (w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&theirs), Some(&mine))
            .expect("takeover");
        assert_eq!(fs::read(&rotated).expect("rotated file kept"), b"aaaa\nbbbb\n");
        assert_eq!(w.next, 10);
        let names: Vec<String> = fs::read_dir(dir.path().join("t"))
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, vec![rotated_name("t", 0, 0, 1)], "the uncommitted new file is gone, nothing set aside");
    }

    #[test]
    fn a_takeover_closes_off_our_own_committed_range() {
        let dir = tempfile::tempdir().expect("temp dir");
        let (mut w, _) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
        w.append(0, b"a").expect("write");
        w.sync().expect("sync");
        let mine = Committed { offset: 1, meta: w.commit_meta("me") };
        w.append(1, b"uncommitted").expect("write");
        w.sync().expect("sync");
        drop(w);
        let theirs = committed("other-host", 1, 10, 9);
        let (w, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", Some(&theirs), Some(&mine))
            .expect("takeover");
        let closed = dir.path().join("t").join(rotated_name("t", 0, 0, 0));
        assert_eq!(r, Reconciled::TakenOver { closed: Some(closed.clone()) });
        assert_eq!(fs::read(closed).expect("read"), b"a\n");
        assert_eq!(w.next, 10);
        assert!(!w.active_path().exists());
    }

    #[test]
    fn an_active_file_of_unknown_origin_is_set_aside_not_deleted() {
        let dir = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(dir.path().join("t")).expect("mkdir");
        fs::write(dir.path().join("t/t-0.log"), b"someone's data\n").expect("write");
        let (_, r) = PartitionWriter::reconcile(dir.path(), "t", 0, "me", None, None).expect("fresh");
        let Reconciled::Fresh { set_aside: Some(aside) } = r else { panic!("set aside: {r:?}") };
        assert_eq!(fs::read(aside).expect("kept"), b"someone's data\n");
    }
}
