//! The single-file sink (`file = "/abs/path"`, Kafka Connect's FileStreamSink): every assigned
//! partition appends to one file, which is never rotated.
//!
//! Exactly-once on one host rests on committing all partitions together: the file is fsynced,
//! then one offset commit covers every held partition, each with metadata naming the file and its
//! durable length. Every commit carries the same length for all partitions and lengths only grow,
//! so the largest length committed for this file by this writer is the length of the last
//! commit; at start-up the file is truncated back to it, and each partition is sought to its own
//! committed offset (see ARCHITECTURE.md for the cases where partitions disagree).
//!
//! `SingleFile` is the file itself; `Single` is the layout: the file and its held partitions,
//! their commit, write and start-up reconciliation.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::SinkError;
use super::commit::{CommitCache, CommitMeta, Committed, META_VERSION};
use super::offsets::{Commit, Committer, Next, Tp};
use crate::{failpoints, fsutil};

/// One partition's position in the shared file.
#[derive(Debug)]
pub struct Part {
    /// The offset the next record must have (`None`: unknown until the first record, when
    /// nothing was ever committed).
    pub next: Option<i64>,
    /// The offset last committed to Kafka.
    pub committed: Option<i64>,
}

pub struct SingleFile {
    pub path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes written (including buffered ones).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub durable_len: u64,
    pub parts: HashMap<Tp, Part>,
    /// When each record written since the last fsync was consumed (for the latency histogram).
    pub unsynced: Vec<Instant>,
    /// Set when the partitions' commits can no longer be trusted to agree (a revocation whose
    /// commit failed): nothing more is committed in this run; the restart reconciles.
    pub poisoned: bool,
}

/// What start-up reconciliation did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileReconciled {
    /// Continuing the file; `truncated` uncommitted bytes were dropped.
    Continued { truncated: u64 },
    /// Nothing of this writer committed for this file: a non-empty file was set aside.
    Fresh { set_aside: Option<PathBuf> },
    /// The file is shorter than committed (lost or replaced): set aside, a new file starts.
    Damaged { set_aside: Option<PathBuf>, committed_len: u64 },
}

/// The commit a partition's place in the file is decided by at start-up: Kafka's, unless this
/// writer's cache holds a newer commit of its own for this file (recorded, its data fsynced,
/// before it was sent; a crash or a refusal kept it from Kafka). Every commit carries one
/// request's length for all its partitions, so the file's length taken from one partition's
/// cached commit is right only with the other partitions' offsets of that same request: the
/// cache's, not Kafka's older ones (with those, their records after Kafka's offsets would be
/// written again).
pub fn start_commit(
    from_kafka: Option<Committed>,
    cached: Option<&Committed>,
    daemon_id: &str,
    file: &str,
) -> Option<Committed> {
    let own = |c: &Committed| c.meta.w == daemon_id && c.meta.f == file;
    match (from_kafka, cached) {
        (Some(kafka), Some(c)) if own(&kafka) && own(c) && c.offset > kafka.offset => Some(c.clone()),
        (Some(kafka), _) => Some(kafka),
        (None, cached) => cached.cloned(),
    }
}

/// The file's committed length: the largest length that metadata naming this writer and this
/// file records (all partitions are committed together, so that is the last commit's), or `None`
/// if no commit names them. Also returns whether the partitions disagree (for the log).
pub fn committed_len<'a>(
    commits: impl IntoIterator<Item = &'a Committed>,
    daemon_id: &str,
    file: &str,
) -> (Option<u64>, bool) {
    let lens: Vec<u64> = commits
        .into_iter()
        .filter(|c| c.meta.w == daemon_id && c.meta.f == file)
        .map(|c| c.meta.len)
        .collect();
    let max = lens.iter().copied().max();
    (max, lens.iter().any(|l| Some(*l) != max))
}

impl SingleFile {
    /// The name recorded in commit metadata.
    pub fn meta_name(path: &Path) -> String {
        path.to_string_lossy().into_owned()
    }

    /// Brings the file in line with `committed_len` (see `committed_len`) and opens it for appending.
    pub fn reconcile(
        path: &Path,
        committed_len: Option<u64>,
        mode: u32,
    ) -> io::Result<(SingleFile, FileReconciled)> {
        let dir = path.parent().unwrap_or(Path::new("/"));
        super::paths::create_dirs(dir)?;
        let len = match fs::metadata(path) {
            Ok(m) => Some(m.len()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let outcome = match (committed_len, len) {
            (Some(c), Some(n)) if n >= c => {
                if n > c {
                    OpenOptions::new().write(true).open(path)?.set_len(c)?;
                    File::open(path)?.sync_all()?;
                }
                FileReconciled::Continued { truncated: n - c }
            }
            (Some(0), None) => FileReconciled::Continued { truncated: 0 },
            (Some(c), n) => {
                // Shorter than committed: the disk lost data, or someone replaced the file.
                let set_aside = match n {
                    Some(_) => Some(set_aside(path, "damaged")?),
                    None => None,
                };
                FileReconciled::Damaged { set_aside, committed_len: c }
            }
            (None, Some(n)) if n > 0 => {
                FileReconciled::Fresh { set_aside: Some(set_aside(path, "uncommitted")?) }
            }
            (None, _) => FileReconciled::Fresh { set_aside: None },
        };
        let existed = fs::metadata(path).is_ok();
        let file = OpenOptions::new().create(true).append(true).mode(mode).open(path)?;
        if !existed {
            // A new file: make its name durable before any commit refers to it.
            fsutil::sync_dir(dir)?;
        }
        let len = file.metadata()?.len();
        let sf = SingleFile {
            path: path.to_path_buf(),
            file: Some(BufWriter::with_capacity(256 * 1024, file)),
            len,
            durable_len: len,
            parts: HashMap::new(),
            unsynced: Vec::new(),
            poisoned: false,
        };
        Ok((sf, outcome))
    }

    pub fn append(&mut self, line: &[u8]) -> io::Result<()> {
        let Some(file) = self.file.as_mut() else {
            return Err(io::Error::other("the file was closed after an earlier error"));
        };
        file.write_all(line)?;
        file.write_all(b"\n")?;
        self.len += line.len() as u64 + 1;
        Ok(())
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self.file.as_mut() {
            Some(f) => {
                failpoints::io("sink::flush")?;
                f.flush()
            }
            None => Ok(()),
        }
    }

    /// Makes everything written durable. After a failure the descriptor is dropped: a second
    /// fsync could report success for pages the kernel already discarded.
    pub fn sync(&mut self) -> io::Result<()> {
        let result = match self.file.as_mut() {
            Some(f) => failpoints::io("sink::flush").and_then(|()| f.flush()).and_then(|()| {
                if self.durable_len != self.len {
                    failpoints::io("sink::fsync").and_then(|()| f.get_ref().sync_data())
                } else {
                    Ok(())
                }
            }),
            None => Err(io::Error::other("the file was closed after an earlier error")),
        };
        match result {
            Ok(()) => {
                self.durable_len = self.len;
                Ok(())
            }
            Err(e) => {
                self.file = None;
                Err(e)
            }
        }
    }

    /// True if anything was written or consumed since the last commit.
    pub fn dirty(&self) -> bool {
        self.len != self.durable_len || self.parts.values().any(|p| p.next.is_some() && p.next != p.committed)
    }

    pub fn commit_meta(&self, daemon_id: &str) -> CommitMeta {
        CommitMeta {
            v: META_VERSION,
            w: daemon_id.to_string(),
            f: Self::meta_name(&self.path),
            first: -1,
            len: self.durable_len,
            ..Default::default()
        }
    }
}

fn set_aside(path: &Path, why: &str) -> io::Result<PathBuf> {
    fsutil::set_aside(path, why)
}

/// The single-file layout: the file (once start-up reconciliation opened it) and the partitions
/// held in it. Knows nothing of Kafka: commits go through `offsets::Committer`.
pub struct Single {
    path: PathBuf,
    daemon_id: String,
    /// Permissions of a created file (`file_mode`).
    file_mode: u32,
    /// `None` until `reconcile` opened it (the sink subscribes only after that).
    file: Option<SingleFile>,
    /// Where each partition stands in the file as start-up reconciliation found it (a partition
    /// joining resumes there at the earliest; see `start_commit`).
    starts: HashMap<Tp, i64>,
}

impl Single {
    pub fn new(path: &Path, daemon_id: &str, file_mode: u32) -> Single {
        Single {
            path: path.to_path_buf(),
            daemon_id: daemon_id.to_string(),
            file_mode,
            file: None,
            starts: HashMap::new(),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a held partition's next record is; `None` if it is not held.
    pub fn next_of(&self, key: &Tp) -> Option<Next> {
        self.file.as_ref()?.parts.get(key).map(|p| Next::of(p.next))
    }

    /// True if anything was written or consumed since the last commit.
    pub fn dirty(&self) -> bool {
        self.file.as_ref().is_some_and(SingleFile::dirty)
    }

    /// Stops writing a partition; what it wrote stays in the file.
    pub fn forget(&mut self, key: &Tp) {
        if let Some(sf) = self.file.as_mut() {
            sf.parts.remove(key);
        }
    }

    /// Nothing more is committed in this run (after an error, or a revocation that could not be
    /// committed): the restart truncates the file to the last commit.
    pub fn abandon(&mut self) {
        if let Some(sf) = self.file.as_mut() {
            sf.poisoned = true;
        }
    }

    /// A partition joins the file at `resume` (the file was reconciled at start-up and is
    /// committed whenever partitions join, so a partition only needs its resume offset).
    /// `resume` comes from Kafka's commit; the file may be further on for this partition (its
    /// start-up commit was this writer's newer cached one), and resuming before that would write
    /// its records twice.
    pub fn join(&mut self, (topic, partition): Tp, resume: Option<i64>, committed: Option<i64>) {
        let Some(sf) = self.file.as_mut() else { return };
        let resume = match self.starts.get(&(topic.clone(), partition)) {
            Some(start) => Some(resume.map_or(*start, |resume| resume.max(*start))),
            None => resume,
        };
        tracing::info!(topic, partition, next_offset = resume, file = %sf.path.display(), "partition joins the single file");
        sf.parts.insert((topic, partition), Part { next: resume, committed });
    }

    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self.file.as_mut() {
            Some(sf) => sf.flush().map_err(|source| SinkError::Io { path: sf.path.clone(), source }),
            None => Ok(()),
        }
    }

    /// fsyncs the file, then commits every held partition in one commit whose metadata records
    /// the file's durable length. If only some partitions' commits are applied, the partitions
    /// no longer agree on what the file holds: the run ends (`Uncommitted`).
    pub fn commit(&mut self, committer: &mut Committer<'_>) -> Result<(), SinkError> {
        let Some(sf) = self.file.as_mut() else { return Ok(()) };
        if sf.poisoned || !sf.dirty() {
            return Ok(());
        }
        sf.sync().map_err(|source| SinkError::Io { path: sf.path.clone(), source })?;
        for consumed in sf.unsynced.drain(..) {
            committer.stats.durable_seconds.observe(consumed.elapsed());
        }
        let meta = sf.commit_meta(&self.daemon_id);
        let commits: Vec<Commit> = sf
            .parts
            .iter()
            .filter_map(|((topic, partition), part)| {
                Some((topic.clone(), *partition, Committed { offset: part.next?, meta: meta.clone() }))
            })
            .collect();
        let wanted = commits.len();
        let news: HashSet<Tp> = commits
            .iter()
            .filter(|(t, p, c)| {
                let last = committer.cache.get(t, *p);
                !last.latest().is_some_and(|l| l.offset == c.offset && l.meta.len == c.meta.len)
            })
            .map(|(t, p, _)| (t.clone(), *p))
            .collect();
        let applied = committer.send(commits)?;
        if applied.is_empty() {
            // Nothing applied: the file's tail is simply not committed yet; the next commit covers it.
            return Ok(());
        }
        // A partition's commit that repeats its last one (same offset, same length) reads back as
        // applied whether or not this request was: only the others tell.
        let applied_news = applied.iter().filter(|(t, p, _)| news.contains(&(t.clone(), *p))).count();
        if applied.len() != wanted && applied_news == 0 {
            // Nothing new was applied: the file's tail is not committed yet; the next commit covers it.
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
                part.committed = Some(c.offset);
            }
        }
        Ok(())
    }

    /// Partitions leaving: they must leave with a commit that covers the file, else the
    /// partitions that stay would later commit a length that includes uncommitted records of
    /// the ones that left. Returns the error that must end the run, if that failed.
    pub fn revoke(&mut self, committer: &mut Committer<'_>, revoked: &[Tp]) -> Option<SinkError> {
        let result = self.commit(committer);
        let sf = self.file.as_mut()?;
        let failed = if result.is_err() || sf.dirty() {
            sf.poisoned = true;
            Some(SinkError::Uncommitted {
                path: sf.path.clone(),
                what: "revoked partitions could not be committed".into(),
            })
        } else {
            None
        };
        for key in revoked {
            sf.parts.remove(key);
        }
        failed
    }

    /// Writes the record at `offset` of a held partition (`line`: `None` for a value with no
    /// line). The caller has checked that `offset` is not below the partition's next offset.
    pub fn write(
        &mut self,
        committer: &mut Committer<'_>,
        key: &Tp,
        offset: i64,
        line: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        if self.next_of(key) == Some(Next::First) {
            // The first record of a partition nothing was ever committed for: commit its offset
            // first (see `Partitions::write`).
            if let Some(part) = self.file.as_mut().and_then(|sf| sf.parts.get_mut(key)) {
                part.next = Some(offset);
            }
            self.commit(committer)?;
        }
        let Some(sf) = self.file.as_mut() else { return Ok(()) };
        let stats = committer.stats;
        match line {
            Some(line) => {
                sf.append(line).map_err(|source| SinkError::Io { path: sf.path.clone(), source })?;
                stats.records_written.fetch_add(1, Ordering::Relaxed);
                stats.bytes_written.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                sf.unsynced.push(Instant::now());
            }
            None => {
                stats.records_skipped_null.fetch_add(1, Ordering::Relaxed);
            }
        }
        if let Some(part) = sf.parts.get_mut(key) {
            part.next = Some(offset + 1);
        }
        Ok(())
    }

    /// At start-up: truncates the file back to its committed length and opens it. `kafka` is
    /// every partition's commit in Kafka (of every partition of the topics), `cache` this
    /// daemon's cache; each partition's place is `start_commit`'s, and the file's committed
    /// length the largest length this writer committed for this file over them.
    pub fn reconcile(
        &mut self,
        kafka: Vec<(Tp, Option<Committed>)>,
        cache: &CommitCache,
    ) -> Result<(), SinkError> {
        let name = SingleFile::meta_name(&self.path);
        let mut committed = Vec::new();
        for ((topic, partition), from_kafka) in kafka {
            let cached = cache.get(&topic, partition);
            if let Some(c) = start_commit(from_kafka, cached.latest(), &self.daemon_id, &name) {
                self.starts.insert((topic, partition), c.offset);
                committed.push(c);
            }
        }
        let committed = &committed[..];
        let path = self.path.clone();
        let (mut len, disagree) = committed_len(committed, &self.daemon_id, &SingleFile::meta_name(&path));
        if len.is_none() && committed.iter().any(|c| c.meta.w.is_empty()) {
            // Offsets committed without macklake's metadata: another writer (a Kafka Connect
            // FileStreamSink, whose group connect-<name> this is) wrote the file up to them. Take
            // it over as it is and continue from those offsets.
            len = fs::metadata(&path).ok().map(|m| m.len());
            tracing::info!(file = %path.display(), ?len, "taking over a file another writer (Kafka Connect?) committed: kept as it is, continuing from its committed offsets");
        }
        if disagree {
            // Normal when some partitions were not held at the last commit (a topic removed from
            // `topics`, a partition revoked): their older commits record shorter lengths.
            tracing::info!(file = %path.display(), ?len, "partitions recorded different lengths; the largest (the last commit's) is the file's committed length");
        }
        let (sf, outcome) = SingleFile::reconcile(&path, len, self.file_mode)
            .map_err(|source| SinkError::Io { path: path.clone(), source })?;
        match &outcome {
            FileReconciled::Damaged { .. } => {
                tracing::error!(file = %path.display(), ?outcome, "the file is shorter than its committed length (lost or replaced); set aside, a new file continues at the committed offsets")
            }
            _ => {
                tracing::info!(file = %path.display(), ?outcome, "single file reconciled")
            }
        }
        self.file = Some(sf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn committed(w: &str, f: &str, offset: i64, len: u64) -> Committed {
        Committed {
            offset,
            meta: CommitMeta { v: 1, w: w.into(), f: f.into(), first: -1, len, ..Default::default() },
        }
    }

    #[test]
    fn the_committed_length_is_the_largest_of_this_writers_for_this_file() {
        let c = [
            committed("me", "/a", 10, 300),
            committed("me", "/a", 4, 120), // a partition not assigned since an earlier commit
            committed("me", "/b", 9, 999), // another file
            committed("other", "/a", 9, 999),
        ];
        assert_eq!(committed_len(&c, "me", "/a"), (Some(300), true));
        assert_eq!(committed_len(&c[..1], "me", "/a"), (Some(300), false));
        assert_eq!(committed_len(&c, "me", "/c"), (None, false));
    }

    #[test]
    fn reconcile_truncates_to_the_committed_length_and_sets_aside_what_it_cannot_account_for() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("out.txt");
        let (mut sf, r) = SingleFile::reconcile(&path, None, 0o640).expect("fresh");
        assert_eq!(r, FileReconciled::Fresh { set_aside: None });
        sf.append(b"a").expect("write");
        sf.append(b"b").expect("write");
        sf.sync().expect("sync");
        let len = sf.durable_len;
        sf.append(b"uncommitted").expect("write");
        sf.sync().expect("sync");
        drop(sf);
        let (mut sf, r) = SingleFile::reconcile(&path, Some(len), 0o640).expect("again");
        assert_eq!(r, FileReconciled::Continued { truncated: 12 });
        sf.append(b"c").expect("write");
        sf.sync().expect("sync");
        assert_eq!(fs::read(&path).expect("read"), b"a\nb\nc\n");
        drop(sf);
        // Shorter than committed: set aside, a new file.
        let (sf, r) = SingleFile::reconcile(&path, Some(100), 0o640).expect("damaged");
        let FileReconciled::Damaged { set_aside: Some(aside), committed_len: 100 } = r else {
            panic!("{r:?}")
        };
        assert_eq!(fs::read(aside).expect("kept"), b"a\nb\nc\n");
        assert_eq!(sf.len, 0);
        drop(sf);
        // Nothing committed by us but data in the file: set aside, never appended to.
        fs::write(&path, b"someone's\n").expect("write");
        let (_, r) = SingleFile::reconcile(&path, None, 0o640).expect("fresh");
        let FileReconciled::Fresh { set_aside: Some(aside) } = r else { panic!("{r:?}") };
        assert_eq!(fs::read(aside).expect("kept"), b"someone's\n");
    }
}
