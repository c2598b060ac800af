//! The single-file sink (`file = "/abs/path"`, Kafka Connect's FileStreamSink): every assigned
//! partition appends to one file, which is never rotated.
//!
//! Exactly-once on one host rests on committing all partitions together: the file is fsynced,
//! then one offset commit covers every held partition, each with metadata naming the file and its
//! durable length. Every commit carries the same length for all partitions and lengths only grow,
//! so the largest length committed for this file by this writer is the length of the last
//! commit; at start-up the file is truncated back to it, and each partition is sought to its own
//! committed offset (see ARCHITECTURE.md for the cases where partitions disagree).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Instant;

use super::commit::{CommitMeta, Committed, META_VERSION};
use crate::fsutil;

/// One partition's position in the shared file.
#[derive(Debug)]
pub struct Part {
    /// The offset the next record must have (-1: unknown until the first record of a new group).
    pub next: i64,
    /// The offset last committed to Kafka.
    pub committed: i64,
}

pub struct SingleFile {
    pub path: PathBuf,
    file: Option<BufWriter<File>>,
    /// Bytes written (including buffered ones).
    pub len: u64,
    /// Bytes known to be on disk (fsynced).
    pub durable_len: u64,
    pub parts: HashMap<(String, i32), Part>,
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
            Some(f) => f.flush(),
            None => Ok(()),
        }
    }

    /// Makes everything written durable. After a failure the descriptor is dropped: a second
    /// fsync could report success for pages the kernel already discarded.
    pub fn sync(&mut self) -> io::Result<()> {
        let result = match self.file.as_mut() {
            Some(f) => f
                .flush()
                .and_then(|()| if self.durable_len != self.len { f.get_ref().sync_data() } else { Ok(()) }),
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
        self.len != self.durable_len || self.parts.values().any(|p| p.next >= 0 && p.next != p.committed)
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
