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
impl Entry {
    /// Whether this entry could have been written by this code; read back from a file or from
    /// the offsets topic, one that could not is refused (why), never trusted: a fingerprint
    /// longer than the bytes it covers, or a position past 0 with no fingerprint to confirm the
    /// file (it would skip the first bytes of whatever file has that inode).
    pub fn check(&self) -> Result<(), String> {
        if !self.fingerprint.plausible() {
            return Err(format!(
                "fingerprint length {} is over {}",
                self.fingerprint.len,
                super::fingerprint::FINGERPRINT_BYTES
            ));
        }
        if self.fingerprint.len == 0 && self.offset > 0 {
            return Err(format!("offset {} with no fingerprint to confirm the file", self.offset));
        }
        Ok(())
    }
}

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

/// Entries kept of files that are gone (not seen at the last rescan), the most recently seen
/// first: they matter only if such a file comes back (a directory unreadable for a while, a file
/// renamed out of the glob and back). Without a bound, short-lived files (one a second) would grow
/// the state by one entry a second for `forget_after` (7 days by default).
pub const MAX_GONE: usize = 1024;

#[derive(Debug)]
pub struct Checkpoints {
    path: PathBuf,
    pub entries: HashMap<FileId, Entry>,
    pub truncated: Vec<Truncated>,
    /// False when no checkpoint file existed: the connector's first start.
    pub existed: bool,
    /// Unix time of the last rescan's start: an entry seen before it is of a file that is gone
    /// (or followed: those are refreshed when positions are saved).
    pub scanned_at: u64,
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
                    scanned_at: 0,
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
        let mut entries = HashMap::new();
        for e in disk.files {
            match e.check() {
                Ok(()) => {
                    entries.insert(e.id, e);
                }
                Err(why) => {
                    tracing::warn!(checkpoint = %path.display(), file = %e.path.display(), %why, "checkpoint entry refused; the file is read as a new one")
                }
            }
        }
        let truncated = disk.truncated.into_iter().filter(|t| t.fingerprint.plausible()).collect();
        Ok(Checkpoints { path: path.to_path_buf(), entries, truncated, existed: true, scanned_at: 0 })
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
        Checkpoints { path: PathBuf::new(), entries, truncated, existed, scanned_at: 0 }
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

    /// The entries to forget: those of files not seen for `forget_after_secs`, and of the files
    /// gone since the last rescan all but the `MAX_GONE` seen last. `followed` files are never
    /// forgotten.
    pub fn forgettable(
        &self,
        now: u64,
        forget_after_secs: u64,
        followed: impl Fn(&FileId) -> bool,
    ) -> Vec<FileId> {
        let mut gone: Vec<&Entry> = self.entries.values().filter(|e| !followed(&e.id)).collect();
        // Newest first; ties broken by identity so that the choice is stable.
        gone.sort_by_key(|e| (std::cmp::Reverse(e.seen_at), e.id));
        let mut kept_gone = 0;
        gone.into_iter()
            .filter(|e| {
                if now.saturating_sub(e.seen_at) >= forget_after_secs {
                    return true;
                }
                if e.seen_at < self.scanned_at {
                    kept_gone += 1;
                    return kept_gone > MAX_GONE;
                }
                false
            })
            .map(|e| e.id)
            .collect()
    }

    /// Drops what `forgettable` names, and truncation records older than `forget_after_secs`.
    pub fn forget(&mut self, now: u64, forget_after_secs: u64, followed: impl Fn(&FileId) -> bool) -> usize {
        let drop = self.forgettable(now, forget_after_secs, followed);
        for id in &drop {
            self.entries.remove(id);
        }
        self.truncated.retain(|t| now.saturating_sub(t.seen_at) < forget_after_secs);
        drop.len()
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

    /// Issue 20, finding 4: a checkpoint (or a position record read back from Kafka) is not
    /// trusted blindly: a fingerprint longer than the bytes fingerprinted, or a position past 0
    /// with no fingerprint to confirm the file, is refused instead of panicking or skipping bytes.
    #[test]
    fn implausible_entries_are_refused_and_never_panic() {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = dir.path().join("a.log");
        std::fs::write(&log, b"hello\n").expect("write");
        let file = std::fs::File::open(&log).expect("open");
        let hostile = Fingerprint { len: 1000, hash: 1 };
        assert!(!hostile.matches(&file).expect("read"), "no panic, no match");
        let mut e = entry(7, 0);
        assert!(e.check().is_ok());
        e.fingerprint = hostile;
        assert!(e.check().expect_err("too long").contains("1000"));
        e.fingerprint = Fingerprint::default();
        e.offset = 4096;
        assert!(e.check().expect_err("unconfirmed").contains("no fingerprint"));
        let path = dir.path().join("checkpoints.json");
        let good = entry(8, 0);
        std::fs::write(
            &path,
            serde_json::json!({"version": 1, "files": [e, good], "truncated": [
                {"fingerprint": {"len": 999, "hash": 1}, "position": 3, "seen_at": 0}]})
            .to_string(),
        )
        .expect("write");
        let loaded = Checkpoints::load(&path).expect("load");
        assert_eq!(loaded.entries.len(), 1, "only the plausible entry is kept");
        assert!(loaded.entries.contains_key(&good.id));
        assert!(loaded.truncated.is_empty());
    }

    fn entry(ino: u64, seen_at: u64) -> Entry {
        Entry {
            path: format!("/logs/{ino}.log").into(),
            id: FileId { dev: 0, ino },
            fingerprint: Fingerprint::default(),
            offset: 0,
            seen_at,
        }
    }

    fn with(entries: impl IntoIterator<Item = Entry>, scanned_at: u64) -> Checkpoints {
        Checkpoints {
            path: "/x".into(),
            entries: entries.into_iter().map(|e| (e.id, e)).collect(),
            truncated: Vec::new(),
            existed: true,
            scanned_at,
        }
    }

    #[test]
    fn forgets_only_old_entries() {
        let mut c = with([entry(1, 100), entry(2, 1000)], 0);
        assert_eq!(c.forget(1100, 500, |_| false), 1);
        assert!(c.entries.contains_key(&FileId { dev: 0, ino: 2 }));
    }

    /// Issue 14 finding 5: short-lived files (one a second for a week) must not grow the state
    /// without bound; files present at the last rescan, and followed ones, are never dropped.
    #[test]
    fn keeps_a_bounded_number_of_gone_files_the_most_recently_seen() {
        let now = 1_000_000;
        let gone = (0..5000).map(|i| entry(i, now - 5000 + i)); // seen before the rescan at `now`
        let present = (10_000..12_000).map(|i| entry(i, now)); // idle files the rescan saw
        let followed = entry(20_000, 1); // refreshed only when positions are saved
        let mut c = with(gone.chain(present).chain([followed]), now);
        let dropped = c.forget(now, 7 * 24 * 3600, |id| id.ino == 20_000);
        assert_eq!(dropped, 5000 - MAX_GONE);
        assert_eq!(c.entries.len(), MAX_GONE + 2000 + 1);
        // The ones kept are those seen last.
        assert!(c.entries.contains_key(&FileId { dev: 0, ino: 4999 }));
        assert!(!c.entries.contains_key(&FileId { dev: 0, ino: 0 }));
        assert!(c.entries.contains_key(&FileId { dev: 0, ino: 20_000 }));
    }
}
