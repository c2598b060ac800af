//! What a file's content is when the tailer meets it: a copy of a followed file (copytruncate,
//! held until the original is truncated), a copy of content that was truncated or finished
//! (read from where that reading stopped), new, or not yet decidable; and the bounded records of
//! truncated content that make the decision possible.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::Tracked;
use crate::source::checkpoint::{self, Checkpoints, Entry};
use crate::source::fingerprint::{self, FileId, Fingerprint};

/// What a file held before it was truncated in place: if a copy of it turns up (copytruncate),
/// only the copy's unread tail is read.
pub struct Truncation {
    pub fingerprint: Fingerprint,
    pub prefix: Vec<u8>,
    pub position: u64,
    pub at: Instant,
}

/// How long a new file whose first bytes so far equal those of a followed file may wait to be
/// told apart from a copy being written (cp writes the copy after creating it empty).
pub const IDENTIFY_GRACE: Duration = Duration::from_secs(2);

/// What a new file (one with no checkpoint) is.
#[derive(Debug)]
pub enum Identity {
    /// It starts with the bytes of a file that is still followed.
    CopyOfLive(FileId),
    /// It starts with what a truncated or finished file held (the index of that record in the
    /// truncations): read from where that one stopped (`claim_copy`).
    CopyOfGone(usize),
    New,
    /// Its bytes so far are a prefix of a known content's (`None` while it is empty): a copy
    /// still being written, or a finished copy of that content as it was earlier. Told apart by
    /// waiting (`IDENTIFY_GRACE`): still a prefix afterwards, it is the latter.
    Undecided(Option<Earlier>),
}

/// Whose earlier content an undecided file may be a copy of.
#[derive(Debug, Clone, Copy)]
pub enum Earlier {
    Live(FileId),
    /// The index of a truncation record.
    Gone(usize),
}

pub(super) fn identify(
    file: &File,
    myself: Option<FileId>,
    files: &HashMap<FileId, Tracked>,
    truncations: &[Truncation],
) -> Identity {
    let mut buf = [0u8; fingerprint::FINGERPRINT_BYTES];
    let n = fingerprint::read_prefix(file, &mut buf).unwrap_or(0);
    let have = &buf[..n];
    let same =
        |prefix: &[u8]| !prefix.is_empty() && have.len() >= prefix.len() && &have[..prefix.len()] == prefix;
    // Records restored from a checkpoint know the content only by its fingerprint.
    let by_fingerprint = |t: &Truncation| {
        t.prefix.is_empty() && t.fingerprint.len > 0 && t.fingerprint.matches(file).unwrap_or(false)
    };
    if let Some(i) = truncations.iter().rposition(|t| same(&t.prefix) || by_fingerprint(t)) {
        return Identity::CopyOfGone(i);
    }
    let others = || files.iter().filter(|(id, _)| Some(**id) != myself);
    if let Some((id, _)) = others().find(|(_, t)| t.held_by.is_none() && same(&t.prefix)) {
        return Identity::CopyOfLive(*id);
    }
    if have.is_empty() {
        return Identity::Undecided(None);
    }
    let could_be = |prefix: &[u8]| prefix.len() > have.len() && prefix.starts_with(have);
    // A followed original rather than another copy of it, if there is one.
    let live = others()
        .filter(|(_, t)| could_be(&t.prefix))
        .min_by_key(|(_, t)| t.held_by.is_some())
        .map(|(id, _)| Earlier::Live(*id));
    let gone = || truncations.iter().rposition(|t| could_be(&t.prefix)).map(Earlier::Gone);
    match live.or_else(gone) {
        Some(earlier) => Identity::Undecided(Some(earlier)),
        None => Identity::New,
    }
}

/// The checkpoint of `path` under another device number: overlayfs and some network filesystems
/// give a file a new device number across a remount while its inode and content stay. The same
/// path, inode and first bytes are taken for the same file (else every file would be read again).
pub fn same_file_other_device<'c>(
    checkpoints: &'c Checkpoints,
    path: &Path,
    id: FileId,
    file: &File,
) -> Option<&'c Entry> {
    checkpoints.entries.values().find(|e| {
        e.id.ino == id.ino
            && e.id.dev != id.dev
            && e.path == path
            && e.fingerprint.len > 0
            && e.fingerprint.matches(file).unwrap_or(false)
    })
}

/// A copy of the content truncation `i` recorded takes it from where reading stopped up to the
/// copy's own size; a second copy of the same content (an operator's `cp` beside logrotate's copy)
/// goes on from there, so that no part is read twice. Returns where the copy starts.
pub fn claim_copy(truncations: &mut [Truncation], i: usize, size: u64) -> u64 {
    let t = &mut truncations[i];
    let start = t.position.min(size);
    t.position = t.position.max(size);
    start
}

/// Truncation records kept at most (the newest): each waits for a copy of what its file held.
pub const MAX_TRUNCATIONS: usize = 256;

/// Records what a truncated file held. The same content truncated again replaces its older
/// record (a copy of it is read from where the latest reading stopped), and only the newest
/// `MAX_TRUNCATIONS` are kept: a file emptied every second must not grow the state for ever.
pub fn remember(truncations: &mut Vec<Truncation>, t: Truncation) {
    truncations.retain(|old| old.fingerprint != t.fingerprint);
    truncations.push(t);
    if truncations.len() > MAX_TRUNCATIONS {
        let excess = truncations.len() - MAX_TRUNCATIONS;
        truncations.drain(..excess);
    }
}

/// The truncations worth persisting (what they held, how far it was read, when).
pub fn truncated_records(
    truncations: &[Truncation],
    now: Instant,
    now_unix: u64,
) -> Vec<checkpoint::Truncated> {
    truncations
        .iter()
        .map(|t| checkpoint::Truncated {
            fingerprint: t.fingerprint,
            position: t.position,
            seen_at: now_unix.saturating_sub(now.saturating_duration_since(t.at).as_secs()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    /// Issue 14 finding 5: one record per content, and a bounded number in all.
    #[test]
    fn truncations_are_remembered_once_per_content_and_bounded() {
        use super::{MAX_TRUNCATIONS, Truncation, remember};
        let record = |hash: u64, position: u64| Truncation {
            fingerprint: crate::source::fingerprint::Fingerprint { len: 256, hash },
            prefix: Vec::new(),
            position,
            at: std::time::Instant::now(),
        };
        let mut kept = Vec::new();
        for position in 0..100 {
            remember(&mut kept, record(7, position));
        }
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].position, 99, "the latest reading of that content");
        for hash in 0..(MAX_TRUNCATIONS as u64 * 3) {
            remember(&mut kept, record(1000 + hash, 0));
        }
        assert_eq!(kept.len(), MAX_TRUNCATIONS);
        assert_eq!(kept.last().map(|t| t.fingerprint.hash), Some(1000 + MAX_TRUNCATIONS as u64 * 3 - 1));
    }
}
