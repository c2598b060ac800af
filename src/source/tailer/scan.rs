//! Rescans: the files the globs select now, which of them are new, renamed, gone or closed
//! while idle, and where reading a newly found file starts.

use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use super::identity::{Identity, Truncation, claim_copy, identify, remember, same_file_other_device};
use super::{AckQueue, Tailer, Tracked, look, mtime, new_reader, refresh_unidentified};
use crate::config::connector::StartAt;
use crate::source::discover::{self, Discovery};
use crate::source::fingerprint::{FileId, Fingerprint};

impl Tailer {
    /// Lists the watched tree: starts following new files, notices renamed and vanished ones.
    ///
    /// Returns true on the connector's very first rescan (no checkpoint existed: `start_at`
    /// applied to the files found).
    pub fn rescan(&mut self, discovery: &Discovery) -> bool {
        let first_start = std::mem::take(&mut self.scan.first_start);
        let now = self.clock.now();
        let forget_after = self.cfg.forget_after;
        self.truncations.retain(|t| now.saturating_duration_since(t.at) < forget_after);
        let mut present: HashSet<FileId> = HashSet::new();
        let mut new_files: Vec<(PathBuf, FileId)> = Vec::new();
        let now_unix = self.clock.unix_now();
        self.checkpoints.scanned_at = now_unix;
        let scan = discovery.scan_reporting();
        // Problems are reported when they start and when they end, not at every rescan.
        let mut still: HashSet<PathBuf> = HashSet::new();
        for (path, why) in &scan.refused {
            if !self.scan.problems.contains(path) {
                match why {
                    discover::Refused::Symlink => {
                        tracing::warn!(path = %path.display(), "symlink not followed (follow_symlinks = false)")
                    }
                    discover::Refused::NotAFile => {
                        tracing::warn!(path = %path.display(), "not a regular file (FIFO, socket, device or dangling link): never read")
                    }
                }
            }
            still.insert(path.clone());
        }
        for (dir, error) in &scan.unreadable {
            if !self.scan.problems.contains(dir) {
                tracing::warn!(dir = %dir.display(), %error, "cannot list directory; will retry");
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
            if let Some(t) = self.files.get_mut(&id) {
                if t.path != path {
                    tracing::info!(from = %t.path.display(), to = %path.display(), "file renamed; still following it");
                    t.path = path;
                }
                t.detached = false;
                continue;
            }
            if let Some(c) = self.scan.closed.get_mut(&id) {
                // Still there: its checkpoint must not be forgotten while it sleeps.
                if let Some(e) = self.checkpoints.entries.get_mut(&id) {
                    e.seen_at = now_unix;
                    e.path = path.clone();
                }
                c.path = path.clone();
                if meta.len() == c.size && mtime(&meta) == c.mtime {
                    continue;
                }
                self.scan.closed.remove(&id);
            }
            new_files.push((path, id));
        }
        let (claims, name) = (&self.claims, &self.name);
        self.scan.closed.retain(|id, _| {
            let keep = present.contains(id);
            if !keep {
                claims.release(*id, name);
            }
            keep
        });
        // A new file that starts with a closed file's bytes may be a copy of it (copytruncate):
        // reopen the original first, so that the copy is recognised and held.
        if !self.scan.closed.is_empty() {
            let mut reopen = Vec::new();
            for (path, id) in &new_files {
                if self.checkpoints.entries.contains_key(id) {
                    continue;
                }
                let Ok(file) = File::open(path) else { continue };
                for (cid, c) in self.scan.closed.iter() {
                    if c.fingerprint.len > 0 && c.fingerprint.matches(&file).unwrap_or(false) {
                        reopen.push((c.path.clone(), *cid));
                    }
                }
            }
            for (path, id) in reopen {
                if self.scan.closed.remove(&id).is_some() {
                    new_files.push((path, id));
                }
            }
        }
        // Followed files are looked at first: one may have been truncated or rewritten since,
        // and a new file is to be told apart from a copy by what they hold now (and what they
        // held before, now in the truncations).
        let now = self.clock.now();
        for t in self.files.values_mut() {
            if t.held_by.is_none() && t.unidentified_since.is_none() {
                // (A file that cannot be read now is reported by the next poll.)
                let _ = look(&self.cfg, t, &mut self.truncations, now);
            }
        }
        refresh_unidentified(&mut self.files);
        // Likewise the checkpoints of files that hold other content now (truncated while we were
        // down, or an inode number reused): what they held is remembered before any new file is
        // identified, since one may be a copy of it. (One whose first bytes still match but
        // that is shorter is remembered when it is opened, after it was identified itself.)
        for (path, id) in &new_files {
            let Some(e) = self.checkpoints.entries.get(id) else { continue };
            let Ok(file) = File::open(path) else { continue };
            if e.fingerprint.len > 0 && !e.fingerprint.matches(&file).unwrap_or(true) {
                let record = Truncation {
                    fingerprint: e.fingerprint,
                    prefix: Vec::new(),
                    position: e.offset,
                    at: now,
                };
                remember(&mut self.truncations, record);
            }
        }
        // Files with a checkpoint first: one of them may turn out to have been truncated, and
        // what it held is needed to recognise a copy of it among the others. Then the largest
        // first: a copy is never larger than its original was, and whichever of two files with
        // the same first bytes comes first is read while the other is held as its copy; held
        // the other way round, the original's growth would never be read.
        new_files.sort_by_cached_key(|(path, id)| {
            let size = std::fs::symlink_metadata(path).map_or(0, |m| m.len());
            (!self.checkpoints.entries.contains_key(id), std::cmp::Reverse(size))
        });
        let room = self.cfg.max_open_files.saturating_sub(self.files.len());
        if new_files.len() > room {
            tracing::warn!(
                waiting = new_files.len() - room,
                max_open_files = self.cfg.max_open_files,
                "too many files to hold open; the rest wait until idle ones are closed (close_idle_after)"
            );
            new_files.truncate(room);
        }
        let mut conflicting = HashSet::new();
        for (path, id) in new_files {
            if let Err(owner) = self.claims.claim(id, &self.name) {
                if !self.scan.conflicts.contains(&path) {
                    tracing::warn!(path = %path.display(), reader = %owner, "file also matched by another source, which reads it; this connector does not");
                }
                conflicting.insert(path);
                continue;
            }
            match self.open(&path, id, first_start) {
                Ok(Some(t)) => {
                    let (slot, first_seq) = self.slots.take(id);
                    let mut t = Tracked { slot, ..t };
                    t.acks.next_seq = first_seq;
                    tracing::info!(path = %path.display(), offset = t.reader.position(), "following file");
                    self.files.insert(id, t);
                }
                Ok(None) => self.claims.release(id, &self.name),
                Err(error) => {
                    self.claims.release(id, &self.name);
                    if !self.scan.problems.contains(&path) {
                        tracing::warn!(path = %path.display(), %error, "cannot read file; will retry");
                    }
                    still.insert(path);
                }
            }
        }
        for gone in self.scan.problems.difference(&still) {
            tracing::info!(path = %gone.display(), "readable again (or gone)");
        }
        self.scan.problems = still;
        self.scan.conflicts = conflicting;
        self.stats.conflicts.store(self.scan.conflicts.len() as u64, Ordering::Relaxed);
        self.stats.unreadable.store(self.scan.problems.len() as u64, Ordering::Relaxed);
        for (id, t) in self.files.iter_mut() {
            if !present.contains(id) && !t.detached {
                tracing::info!(path = %t.path.display(), "file rotated away or deleted; finishing it from the open descriptor");
                t.detached = true;
            }
        }
        self.stats.files.store(self.files.len() as u64, Ordering::Relaxed);
        self.stats.files_closed.store(self.scan.closed.len() as u64, Ordering::Relaxed);
        first_start
    }

    /// Opens a file found by a rescan and decides where reading it starts: its checkpoint, the
    /// unread tail of a copy, nothing yet (a held or undecided copy), or `start_at`.
    fn open(&mut self, path: &Path, id: FileId, first_start: bool) -> std::io::Result<Option<Tracked>> {
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
        let now = self.clock.now();
        let size = meta.len();
        let mut held_by = None;
        let mut unidentified_since = None;
        let known = self.checkpoints.entries.get(&id).or_else(|| {
            let e = same_file_other_device(&self.checkpoints, path, id, &file)?;
            tracing::info!(path = %path.display(), old = e.id.dev, new = id.dev, offset = e.offset, "device number changed (a remount, overlayfs); same path, inode and first bytes: keeping its position");
            Some(e)
        });
        let resumed = match known {
            Some(e) if e.fingerprint.len > 0 && e.fingerprint.matches(&file)? && size >= e.offset => {
                Ok(e.offset)
            }
            Some(e) if e.fingerprint.len == 0 && size >= e.offset => Ok(e.offset),
            // Truncated while we were down, or another file under a reused inode number: new
            // content, identified as any new file is (it may be a copy of a followed one).
            Some(e) => Err(Some(e.clone())),
            None => Err(None),
        };
        let offset = match resumed {
            Ok(offset) => offset,
            Err(gone) => {
                let identity = identify(&file, None, &self.files, &self.truncations);
                let offset = match identity {
                    Identity::CopyOfGone(i) => {
                        let start = claim_copy(&mut self.truncations, i, size);
                        tracing::info!(path = %path.display(), start, "a copy of a truncated file (copytruncate): reading only its unread tail");
                        start
                    }
                    Identity::CopyOfLive(orig) => {
                        tracing::info!(path = %path.display(), "a copy of a followed file (copytruncate): held until the original is truncated");
                        held_by = Some(orig);
                        0
                    }
                    Identity::Undecided(_) => {
                        unidentified_since = Some(now);
                        0
                    }
                    Identity::New if first_start && self.cfg.start_at == StartAt::End => size,
                    Identity::New => 0,
                };
                if let Some(e) = gone {
                    // Its entry describes content that is gone: dropped (exactly-once: by a
                    // tombstone), or a restart before this file has a position of its own
                    // would take the content for truncated again and record it anew, over
                    // the record of how far a copy of it was read since.
                    self.checkpoints.entries.remove(&e.id);
                    self.scan.stale.insert(e.id);
                    tracing::warn!(path = %path.display(), "file was truncated or its inode reused; reading it as a new file");
                    // What it held may turn up as a copy (copytruncate while we were down).
                    // (Its bytes are unknown now; a copy is recognised by fingerprint alone.)
                    // Remembered after identifying this file (not that copy, whose
                    // first bytes it may share).
                    remember(
                        &mut self.truncations,
                        Truncation {
                            fingerprint: e.fingerprint,
                            prefix: Vec::new(),
                            position: e.offset,
                            at: now,
                        },
                    );
                }
                offset
            }
        };
        let reader = new_reader(&self.cfg, file, offset);
        Ok(Some(Tracked {
            slot: 0,
            path: path.to_path_buf(),
            fingerprint,
            reader,
            acks: AckQueue::new(offset),
            last_growth: now,
            detached: false,
            committed: offset,
            held_by,
            prefix,
            unidentified_since,
            last_size: size,
            last_mtime: mtime(&meta),
            events: self.cfg.assembler(),
        }))
    }
}
