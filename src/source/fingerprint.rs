//! File identity: device + inode, confirmed by a fingerprint of the first bytes, so that a reused
//! inode or a truncated file is not mistaken for the file that was checkpointed.

use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};

use serde::{Deserialize, Serialize};

/// How many leading bytes identify a file's content.
pub const FINGERPRINT_BYTES: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FileId {
    pub dev: u64,
    pub ino: u64,
}

impl FileId {
    pub fn of(meta: &std::fs::Metadata) -> FileId {
        FileId { dev: meta.dev(), ino: meta.ino() }
    }
}

/// A hash of the first `len` bytes (fewer than FINGERPRINT_BYTES while the file is that short).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

impl Fingerprint {
    /// Fingerprints the first min(size, FINGERPRINT_BYTES) bytes.
    pub fn of(file: &File) -> io::Result<Fingerprint> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        let n = read_prefix(file, &mut buf)?;
        Ok(Fingerprint { len: n as u32, hash: fnv1a(&buf[..n]) })
    }

    /// The fingerprint of a file's first bytes, given (at most FINGERPRINT_BYTES are used).
    pub fn of_bytes(head: &[u8]) -> Fingerprint {
        let head = &head[..head.len().min(FINGERPRINT_BYTES)];
        Fingerprint { len: head.len() as u32, hash: fnv1a(head) }
    }

    /// The fingerprint and the bytes it was taken of (kept to recognise copies being written).
    pub fn with_prefix(file: &File) -> io::Result<(Fingerprint, Vec<u8>)> {
        let mut buf = vec![0u8; FINGERPRINT_BYTES];
        let n = read_prefix(file, &mut buf)?;
        buf.truncate(n);
        Ok((Fingerprint { len: n as u32, hash: fnv1a(&buf) }, buf))
    }

    /// True if `file` still starts with the bytes this fingerprint was taken of.
    pub fn matches(&self, file: &File) -> io::Result<bool> {
        let mut buf = [0u8; FINGERPRINT_BYTES];
        // (A length no fingerprint can have, from a damaged or hostile record, matches nothing.)
        let Some(want) = buf.get_mut(..self.len as usize) else { return Ok(false) };
        let n = read_prefix(file, want)?;
        Ok(n == self.len as usize && fnv1a(&buf[..n]) == self.hash)
    }

    /// Whether a fingerprint read back from a checkpoint or the offsets topic could have been
    /// taken by this code (not longer than the bytes it covers).
    pub fn plausible(&self) -> bool {
        self.len as usize <= FINGERPRINT_BYTES
    }

    /// Complete once it covers FINGERPRINT_BYTES; before that it is refreshed as the file grows.
    pub fn complete(&self) -> bool {
        self.len as usize >= FINGERPRINT_BYTES
    }
}

pub fn read_prefix(file: &File, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read_at(&mut buf[n..], n as u64)? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// FNV-1a, 64-bit: stable across Rust versions (unlike `DefaultHasher`), which state files need.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes
        .iter()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_rewritten_file_no_longer_matches() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("a.log");
        std::fs::write(&path, b"first line\n").expect("write");
        let fp = Fingerprint::of(&File::open(&path).expect("open")).expect("fp");
        assert_eq!(fp.len, 11);
        let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
        f.write_all(b"second\n").expect("append");
        assert!(fp.matches(&File::open(&path).expect("open")).expect("read"), "growth keeps identity");
        std::fs::write(&path, b"other line\n").expect("rewrite");
        assert!(!fp.matches(&File::open(&path).expect("open")).expect("read"));
        std::fs::write(&path, b"first").expect("truncate");
        assert!(
            !fp.matches(&File::open(&path).expect("open")).expect("read"),
            "shorter than the fingerprint"
        );
    }
}
