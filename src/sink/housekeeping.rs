//! Archive housekeeping for directory sinks, on a thread of its own (never on the consumer loop):
//! compression of rotated files and retention. It only ever touches rotated files
//! (`TOPIC-P-FIRST-LAST.log` and their compressed forms): never an active file, never a file
//! set aside. Rotated files are named only after the commit covering all of them, so every file it
//! touches is committed.
//!
//! Compression, crash-safe (each step safe to crash after; the next pass finishes or redoes it):
//! 1. write `NAME.log.gz.tmp` (a stale one from an earlier crash is replaced), fsync it;
//! 2. rename it to `NAME.log.gz`, fsync the directory;
//! 3. delete `NAME.log`, fsync the directory.
//!
//! A pass that finds `NAME.log` next to `NAME.log.gz` (a crash after 2) just deletes `NAME.log`;
//! a `.tmp` without its `NAME.log` is removed. The compressed file keeps the original's mtime,
//! which retention orders by.
//!
//! Retention per topic directory (`keep_files`, `keep_age`, `keep_bytes`): oldest first (mtime,
//! then name), never the newest rotated file of a partition — reconciliation recognises a
//! finished rotation by it (`writer::rotated_exists`).

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use crate::config::SinkConfig;
use crate::config::connector::Compression;
use crate::fsutil;

use super::SinkStats;

/// Suffixes a rotated file may carry after `.log`.
pub const COMPRESSED_SUFFIXES: [&str; 2] = [".gz", ".zst"];

/// A rotated file's partition and offset range, from its name (`TOPIC-P-FIRST-LAST.log[.gz|.zst]`).
pub fn parse_rotated(topic: &str, name: &str) -> Option<(i32, i64, i64)> {
    let rest = name.strip_prefix(topic)?.strip_prefix('-')?;
    let stem = COMPRESSED_SUFFIXES
        .iter()
        .find_map(|s| rest.strip_suffix(&format!(".log{s}")))
        .or_else(|| rest.strip_suffix(".log"))?;
    let mut parts = stem.split('-');
    let (p, first, last) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || first.len() != 20 || last.len() != 20 {
        return None;
    }
    Some((p.parse().ok()?, first.parse().ok()?, last.parse().ok()?))
}

/// What housekeeping does, from the sink's config; `None` if nothing.
#[derive(Debug, Clone)]
pub struct Policy {
    pub compression: Compression,
    pub keep_files: Option<usize>,
    pub keep_age: Option<Duration>,
    pub keep_bytes: Option<u64>,
}

impl Policy {
    pub fn of(cfg: &SinkConfig) -> Option<Policy> {
        let p = Policy {
            compression: cfg.compression,
            keep_files: cfg.keep_files,
            keep_age: cfg.keep_age,
            keep_bytes: cfg.keep_bytes,
        };
        let idle = p.compression == Compression::None
            && p.keep_files.is_none()
            && p.keep_age.is_none()
            && p.keep_bytes.is_none();
        (!idle).then_some(p)
    }
}

/// Runs passes over every topic directory until `stop`, every `interval`. Errors are logged
/// (with the path) and retried on the next pass: archiving goes on regardless.
pub fn run(
    dir: &Path,
    topics: &[String],
    policy: &Policy,
    stats: &SinkStats,
    stop: &AtomicBool,
    interval: Duration,
) {
    let mut reported: HashMap<PathBuf, String> = HashMap::new();
    while !stop.load(Ordering::Relaxed) {
        for topic in topics {
            let topic_dir = dir.join(topic);
            if let Err((path, e)) = pass(&topic_dir, topic, policy, stats, SystemTime::now()) {
                // Once per distinct error, so that a persistent one does not flood the log.
                let text = e.to_string();
                if reported.get(&path) != Some(&text) {
                    tracing::warn!(file = %path.display(), error = %e, "archive housekeeping failed; will retry");
                    reported.insert(path, text);
                }
            }
        }
        crate::stop::sleep_unless(stop, interval);
    }
}

struct Rotated {
    path: PathBuf,
    partition: i32,
    first: i64,
    len: u64,
    mtime: SystemTime,
}

/// One pass over one topic directory: finish interrupted compressions, compress, apply retention.
pub fn pass(
    topic_dir: &Path,
    topic: &str,
    policy: &Policy,
    stats: &SinkStats,
    now: SystemTime,
) -> Result<(), (PathBuf, io::Error)> {
    let at = |p: &Path| {
        let p = p.to_path_buf();
        move |e| (p, e)
    };
    let entries = match fs::read_dir(topic_dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err((topic_dir.to_path_buf(), e)),
    };
    let names: Vec<String> =
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let exists = |n: &str| names.iter().any(|m| m == n);

    // Leftovers of an interrupted compression.
    for name in &names {
        for s in COMPRESSED_SUFFIXES {
            if let Some(orig) = name.strip_suffix(&format!("{s}.tmp"))
                && parse_rotated(topic, orig).is_some()
                && !exists(orig)
            {
                fs::remove_file(topic_dir.join(name)).map_err(at(&topic_dir.join(name)))?;
            }
        }
    }
    if let Some(suffix) = policy.compression.suffix() {
        for name in &names {
            if !name.ends_with(".log") || parse_rotated(topic, name).is_none() {
                continue;
            }
            let plain = topic_dir.join(name);
            let done = topic_dir.join(format!("{name}{suffix}"));
            if !exists(&format!("{name}{suffix}")) {
                compress(&plain, &done, policy.compression).map_err(at(&plain))?;
                stats.files_compressed.fetch_add(1, Ordering::Relaxed);
            }
            // Step 3 (or a crash after step 2): the compressed file is complete and durable.
            crate::failpoints::io("sink::compress::remove-plain")
                .and_then(|()| fs::remove_file(&plain))
                .map_err(at(&plain))?;
            fsutil::sync_dir(topic_dir).map_err(at(topic_dir))?;
        }
    }

    // Retention, over what is there now.
    if policy.keep_files.is_none() && policy.keep_age.is_none() && policy.keep_bytes.is_none() {
        return Ok(());
    }
    let mut rotated = Vec::new();
    for e in fs::read_dir(topic_dir).map_err(at(topic_dir))?.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some((partition, first, _)) = parse_rotated(topic, &name) else { continue };
        let Ok(meta) = e.metadata() else { continue };
        rotated.push(Rotated {
            path: e.path(),
            partition,
            first,
            len: meta.len(),
            mtime: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
        });
    }
    // The newest rotated file of each partition is kept.
    let mut newest: HashMap<i32, i64> = HashMap::new();
    for r in &rotated {
        let n = newest.entry(r.partition).or_insert(r.first);
        *n = (*n).max(r.first);
    }
    rotated.sort_by(|a, b| (a.mtime, &a.path).cmp(&(b.mtime, &b.path)));
    let mut count = rotated.len();
    let mut bytes: u64 = rotated.iter().map(|r| r.len).sum();
    for r in &rotated {
        if newest.get(&r.partition) == Some(&r.first) {
            continue;
        }
        let too_many = policy.keep_files.is_some_and(|k| count > k);
        let too_big = policy.keep_bytes.is_some_and(|k| bytes > k);
        let too_old = policy.keep_age.is_some_and(|k| now.duration_since(r.mtime).is_ok_and(|age| age > k));
        if !(too_many || too_big || too_old) {
            continue;
        }
        crate::failpoints::io("sink::retention::delete")
            .and_then(|()| fs::remove_file(&r.path))
            .map_err(at(&r.path))?;
        stats.files_deleted.fetch_add(1, Ordering::Relaxed);
        let why = if too_many {
            "keep_files"
        } else if too_big {
            "keep_bytes"
        } else {
            "keep_age"
        };
        tracing::info!(file = %r.path.display(), bytes = r.len, reason = why, "rotated file deleted by retention");
        count -= 1;
        bytes -= r.len;
    }
    fsutil::sync_dir(topic_dir).map_err(at(topic_dir))
}

/// Steps 1 and 2: `plain` → `done.tmp` (fsynced) → `done` (directory fsynced), keeping the mtime.
fn compress(plain: &Path, done: &Path, how: Compression) -> io::Result<()> {
    let dir = plain.parent().unwrap_or(Path::new("/"));
    let mut tmp_name = done.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = done.with_file_name(tmp_name);
    let source = File::open(plain)?;
    let source_permissions = source.metadata()?.permissions();
    let mtime = source.metadata()?.modified()?;
    let mut input = BufReader::with_capacity(256 * 1024, source);
    // The compressed copy gets the permissions of the file it replaces.
    let mode = std::os::unix::fs::PermissionsExt::mode(&source_permissions);
    let out = std::os::unix::fs::OpenOptionsExt::mode(
        OpenOptions::new().write(true).create(true).truncate(true),
        mode,
    )
    .open(&tmp)?;
    let out = match how {
        Compression::Gzip => {
            let mut enc = flate2::write::GzEncoder::new(BufWriter::new(out), flate2::Compression::default());
            io::copy(&mut input, &mut enc)?;
            enc.finish()?.into_inner().map_err(|e| e.into_error())?
        }
        Compression::Zstd => {
            let mut enc = zstd::stream::write::Encoder::new(BufWriter::new(out), 3)?;
            io::copy(&mut input, &mut enc)?;
            let mut w = enc.finish()?;
            w.flush()?;
            w.into_inner().map_err(|e| e.into_error())?
        }
        Compression::None => return Ok(()),
    };
    out.set_modified(mtime)?;
    crate::failpoints::io("sink::compress::fsync")?;
    out.sync_all()?;
    drop(out);
    crate::failpoints::io("sink::compress::rename")?;
    fs::rename(&tmp, done)?;
    fsutil::sync_dir(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sink::writer::rotated_name;
    use std::io::Read;

    #[test]
    fn rotated_names_are_recognised_with_or_without_compression() {
        let n = rotated_name("t-1", 3, 5, 9);
        assert_eq!(parse_rotated("t-1", &n), Some((3, 5, 9)));
        assert_eq!(parse_rotated("t-1", &format!("{n}.gz")), Some((3, 5, 9)));
        assert_eq!(parse_rotated("t-1", &format!("{n}.zst")), Some((3, 5, 9)));
        assert_eq!(parse_rotated("t-1", &format!("{n}.gz.tmp")), None);
        assert_eq!(parse_rotated("t-1", "t-1-3.log"), None, "the active file");
        assert_eq!(parse_rotated("t-1", &format!("{n}.uncommitted-17")), None);
        assert_eq!(parse_rotated("t", &n), None, "another topic's prefix");
    }

    fn policy(compression: Compression) -> Policy {
        Policy { compression, keep_files: None, keep_age: None, keep_bytes: None }
    }

    #[test]
    fn compression_replaces_rotated_files_and_finishes_what_a_crash_interrupted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stats = SinkStats::default();
        let (a, b, c) = (rotated_name("t", 0, 0, 1), rotated_name("t", 0, 2, 3), rotated_name("t", 0, 4, 5));
        fs::write(dir.path().join(&a), b"a\nb\n").expect("write");
        fs::write(dir.path().join(&b), b"c\nd\n").expect("write");
        fs::write(dir.path().join(&c), b"e\nf\n").expect("write");
        fs::write(dir.path().join("t-0.log"), b"active\n").expect("write");
        // A crash during step 1 of `b`, and a crash after step 2 of `c`.
        fs::write(dir.path().join(format!("{b}.gz.tmp")), b"garbage").expect("write");
        compress(&dir.path().join(&c), &dir.path().join(format!("{c}.gz")), Compression::Gzip).expect("gz");
        pass(dir.path(), "t", &policy(Compression::Gzip), &stats, SystemTime::now()).expect("pass");
        let mut names: Vec<String> = fs::read_dir(dir.path())
            .expect("list")
            .flatten()
            .map(|e| e.file_name().into_string().expect("utf8"))
            .collect();
        names.sort();
        assert_eq!(
            names,
            vec![format!("{a}.gz"), format!("{b}.gz"), format!("{c}.gz"), "t-0.log".to_string()]
        );
        for (name, text) in [(&a, "a\nb\n"), (&b, "c\nd\n"), (&c, "e\nf\n")] {
            let mut out = String::new();
            flate2::read::GzDecoder::new(File::open(dir.path().join(format!("{name}.gz"))).expect("open"))
                .read_to_string(&mut out)
                .expect("gunzip");
            assert_eq!(out, text);
        }
        assert_eq!(fs::read(dir.path().join("t-0.log")).expect("active"), b"active\n");
    }

    #[test]
    fn retention_deletes_oldest_first_and_keeps_each_partitions_newest() {
        let dir = tempfile::tempdir().expect("temp dir");
        let stats = SinkStats::default();
        let base = SystemTime::now() - Duration::from_secs(1000);
        let write = |p: i32, first: i64, age_rank: u64| {
            let path = dir.path().join(rotated_name("t", p, first, first + 9));
            fs::write(&path, vec![b'x'; 100]).expect("write");
            File::options()
                .write(true)
                .open(&path)
                .and_then(|f| f.set_modified(base + Duration::from_secs(age_rank)))
                .expect("mtime");
        };
        write(0, 0, 1);
        write(0, 10, 2);
        write(1, 0, 3);
        write(0, 20, 4);
        write(1, 10, 5);
        let p = Policy { keep_files: Some(3), ..policy(Compression::None) };
        pass(dir.path(), "t", &p, &stats, SystemTime::now()).expect("pass");
        let left = |d: &Path| {
            let mut v: Vec<String> = fs::read_dir(d)
                .expect("list")
                .flatten()
                .map(|e| e.file_name().into_string().expect("utf8"))
                .collect();
            v.sort();
            v
        };
        assert_eq!(
            left(dir.path()),
            vec![rotated_name("t", 0, 20, 29), rotated_name("t", 1, 0, 9), rotated_name("t", 1, 10, 19)]
        );
        // keep_bytes: each partition's newest stays even when that is over the budget.
        let p = Policy { keep_bytes: Some(150), ..policy(Compression::None) };
        pass(dir.path(), "t", &p, &stats, SystemTime::now()).expect("pass");
        assert_eq!(left(dir.path()), vec![rotated_name("t", 0, 20, 29), rotated_name("t", 1, 10, 19)]);
        assert_eq!(stats.files_deleted.load(Ordering::Relaxed), 3);
    }
}
