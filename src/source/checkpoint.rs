//! Source checkpoints: per file identity, the byte offset after the last line Kafka acknowledged.
//!
//! Invariant: an offset is written here only after every line before it was acknowledged by Kafka
//! (acks=all), so a restart never skips a line; it may resend lines acknowledged after the last
//! write (at-least-once), never more than one `checkpoint_interval` worth.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::fingerprint::{FileId, Fingerprint};
use crate::fsutil;

/// Bumped when the file's meaning changes; an unknown version is refused, never guessed at.
pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub path: PathBuf,
    pub id: FileId,
    pub fingerprint: Fingerprint,
    /// Next byte to read: everything before it was acknowledged.
    pub offset: u64,
    /// When the file was last seen (Unix seconds), to forget files gone for long.
    pub seen_at: u64,
}

/// Content a file held before it was truncated in place, and how far it had been read: a copy of
/// it (copytruncate) found later is read only from there. Kept until `forget_after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncated {
    pub fingerprint: Fingerprint,
    pub position: u64,
    pub seen_at: u64,
}

#[derive(Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    files: Vec<Entry>,
    #[serde(default)]
    truncated: Vec<Truncated>,
}

#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    pub entries: HashMap<FileId, Entry>,
    pub truncated: Vec<Truncated>,
    /// False when no checkpoint file existed: the connector's first start.
    pub existed: bool,
}

impl Checkpoints {
    pub fn load(path: &Path) -> io::Result<Checkpoints> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(Checkpoints {
                    path: path.to_path_buf(),
                    entries: HashMap::new(),
                    truncated: Vec::new(),
                    existed: false,
                });
            }
            Err(e) => return Err(e),
        };
        let disk: OnDisk = serde_json::from_str(&text)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))?;
        if disk.version != FORMAT_VERSION {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{}: checkpoint format version {} is not {FORMAT_VERSION}",
                    path.display(),
                    disk.version
                ),
            ));
        }
        let entries = disk.files.into_iter().map(|e| (e.id, e)).collect();
        Ok(Checkpoints { path: path.to_path_buf(), entries, truncated: disk.truncated, existed: true })
    }

    /// Positions restored from elsewhere (the offsets topic of an exactly-once source); never saved.
    /// Positions held elsewhere (an exactly-once source's offsets topic); `started`: the
    /// connector's first start was recorded there.
    pub fn in_memory(
        entries: HashMap<FileId, Entry>,
        truncated: Vec<Truncated>,
        started: bool,
    ) -> Checkpoints {
        let existed = started || !entries.is_empty();
        Checkpoints { path: PathBuf::new(), entries, truncated, existed }
    }

    /// Writes every entry atomically (temp file, fsync, rename, fsync directory).
    pub fn save(&self) -> io::Result<()> {
        let mut files: Vec<Entry> = self.entries.values().cloned().collect();
        files.sort_by_key(|e| e.id);
        let disk = OnDisk { version: FORMAT_VERSION, files, truncated: self.truncated.clone() };
        let text = serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?;
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        fsutil::write_atomic(&self.path, &text)
    }

    /// Drops entries of files not seen for `forget_after_secs`.
    pub fn forget_older_than(&mut self, now: u64, forget_after_secs: u64) -> usize {
        let before = self.entries.len();
        self.entries.retain(|_, e| now.saturating_sub(e.seen_at) < forget_after_secs);
        self.truncated.retain(|t| now.saturating_sub(t.seen_at) < forget_after_secs);
        before - self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_versions() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("checkpoints.json");
        let mut c = Checkpoints::load(&path).expect("missing is empty");
        assert!(!c.existed);
        let id = FileId { dev: 1, ino: 2 };
        let entry = Entry {
            path: "/a.log".into(),
            id,
            fingerprint: Fingerprint { len: 3, hash: 4 },
            offset: 5,
            seen_at: 6,
        };
        c.entries.insert(id, entry.clone());
        c.save().expect("save");
        let again = Checkpoints::load(&path).expect("load");
        assert!(again.existed);
        assert_eq!(again.entries.get(&id), Some(&entry));
        std::fs::write(&path, r#"{"version": 99, "files": []}"#).expect("write");
        assert!(Checkpoints::load(&path).expect_err("future format").to_string().contains("version 99"));
    }

    #[test]
    fn forgets_only_old_entries() {
        let mut c =
            Checkpoints { path: "/x".into(), entries: HashMap::new(), truncated: Vec::new(), existed: true };
        for (ino, seen) in [(1, 100), (2, 1000)] {
            let id = FileId { dev: 0, ino };
            c.entries.insert(
                id,
                Entry {
                    path: "/a".into(),
                    id,
                    fingerprint: Fingerprint::default(),
                    offset: 0,
                    seen_at: seen,
                },
            );
        }
        assert_eq!(c.forget_older_than(1100, 500), 1);
        assert!(c.entries.contains_key(&FileId { dev: 0, ino: 2 }));
    }
}
