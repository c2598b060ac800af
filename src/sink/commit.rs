//! What a sink commits with each offset, and the local cache of its commits.
//!
//! Kafka's committed offset and its metadata are the authority on what a partition's files hold
//! (several daemons may own a partition in turn); the local cache only fills in what Kafka no
//! longer has (e.g. offsets expired) and remembers this daemon's own last range when it must
//! close off a file another owner continued. The cache records each commit *before* it is sent
//! (the data it covers is already fsynced), so it never lags what Kafka may hold: a crash between
//! Kafka's answer and a later write cannot make it forget a commit that was applied.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

/// The version this build writes. `decode` also reads version 1 (before the `sealed`, `from`,
/// `tid` and `b` fields): an archive written by an older release continues as it is.
pub const META_VERSION: u32 = 2;

/// Commit metadata: which writer made the data durable, in which active file, up to which length.
/// Kept well under Kafka's 4 KiB `offset.metadata.max.bytes` (see the test).
///
/// Version 2 adds, each optional and omitted when unset:
/// - `sealed`: this commit closes its file: the file is (being) renamed to its offset-range name,
///   and an active file found under the same name later was started after it (nothing in it is
///   committed);
/// - `from`: where this writer's ownership of the partition began (the writer that committed
///   before it and that offset), so that writer, coming back, closes its file off exactly there;
/// - `tid`: the topic's id, when known, so that a re-created topic is told from the old one;
/// - `b`: the bucket of the active file: the directory, relative to the sink directory, its
///   rotated file goes to (absent: the topic directory, the layout of every older archive);
/// - `hi`: the highest record time (ms) the partition has seen, which decides whether a record
///   starts a later bucket or is late (the bucket never moves back).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct CommitMeta {
    pub v: u32,
    /// The writer's `daemon_id`.
    pub w: String,
    /// The active file's name (relative to the topic directory).
    pub f: String,
    /// Offset of the first record in the active file (-1 if it is empty).
    pub first: i64,
    /// Durable length of the active file, in bytes, covering records before the committed offset.
    pub len: u64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<Handover>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hi: Option<i64>,
}

/// A change of owner: the writer that had committed last (empty: not macklake) and its offset.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Handover {
    pub w: String,
    pub o: i64,
}

impl CommitMeta {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("commit metadata always serializes")
    }

    /// `None` for metadata not written by macklake (another tool committed for this group), or
    /// written by a newer version this build does not understand.
    pub fn decode(text: &str) -> Option<CommitMeta> {
        serde_json::from_str::<CommitMeta>(text).ok().filter(|m| (1..=META_VERSION).contains(&m.v))
    }
}

/// One commit of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub meta: CommitMeta,
}

/// What the cache knows of one partition: the last commit Kafka confirmed to this daemon, and the
/// last one it sent (recorded before sending; its outcome is unknown after a crash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmed: Option<Committed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<Committed>,
}

impl Cached {
    /// The latest state of this daemon's files: the attempt (its data was fsynced before it was
    /// sent) or else the confirmed commit.
    pub fn latest(&self) -> Option<&Committed> {
        self.attempt.as_ref().or(self.confirmed.as_ref())
    }

    /// Both, oldest first, without repeating one.
    pub fn candidates(&self) -> Vec<&Committed> {
        let mut all: Vec<&Committed> = self.confirmed.iter().chain(self.attempt.iter()).collect();
        all.dedup();
        all
    }
}

const CACHE_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    partitions: BTreeMap<String, serde_json::Value>,
}

/// `state_dir/sinks/NAME/commits.json`.
#[derive(Debug)]
pub struct CommitCache {
    path: PathBuf,
    partitions: BTreeMap<String, Cached>,
}

fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

fn invalid(path: &Path, what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("{}: {what}", path.display()))
}

impl CommitCache {
    /// Reads the cache (version 1: one confirmed commit per partition; version 2: `Cached`).
    /// An unknown version is refused rather than misread.
    pub fn load(path: &Path) -> io::Result<CommitCache> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok(CommitCache { path: path.to_path_buf(), partitions: BTreeMap::new() });
            }
            Err(e) => return Err(e),
        };
        let disk = serde_json::from_str::<OnDisk>(&text).map_err(|e| invalid(path, e))?;
        let mut partitions = BTreeMap::new();
        for (k, v) in disk.partitions {
            let cached = match disk.version {
                1 => Cached {
                    confirmed: Some(serde_json::from_value::<Committed>(v).map_err(|e| invalid(path, e))?),
                    attempt: None,
                },
                2 => serde_json::from_value::<Cached>(v).map_err(|e| invalid(path, e))?,
                other => {
                    return Err(invalid(
                        path,
                        format!("version {other} is newer than this build reads (1-2)"),
                    ));
                }
            };
            partitions.insert(k, cached);
        }
        Ok(CommitCache { path: path.to_path_buf(), partitions })
    }

    /// The file it is kept in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn get(&self, topic: &str, partition: i32) -> Cached {
        self.partitions.get(&key(topic, partition)).cloned().unwrap_or_default()
    }

    /// Records commits about to be sent, durably, before they are sent.
    pub fn attempt<'a>(
        &mut self,
        commits: impl IntoIterator<Item = (&'a str, i32, &'a Committed)>,
    ) -> io::Result<()> {
        crate::failpoints::io("sink::cache::write")?;
        for (topic, partition, c) in commits {
            self.partitions.entry(key(topic, partition)).or_default().attempt = Some(c.clone());
        }
        self.write()
    }

    /// Records commits Kafka confirmed (in memory: the next `attempt` writes them).
    pub fn confirmed<'a>(&mut self, commits: impl IntoIterator<Item = (&'a str, i32, &'a Committed)>) {
        for (topic, partition, c) in commits {
            self.partitions.entry(key(topic, partition)).or_default().confirmed = Some(c.clone());
        }
    }

    /// Records what reconciliation found in Kafka for this daemon (so a cache that lagged catches
    /// up before anything relies on it).
    pub fn adopt(&mut self, topic: &str, partition: i32, c: &Committed) {
        let entry = self.partitions.entry(key(topic, partition)).or_default();
        entry.confirmed = Some(c.clone());
        if entry.attempt.as_ref().is_some_and(|a| a.offset <= c.offset) {
            entry.attempt = Some(c.clone());
        }
    }

    fn write(&self) -> io::Result<()> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let partitions = self
            .partitions
            .iter()
            .map(|(k, v)| Ok((k.clone(), serde_json::to_value(v).map_err(io::Error::other)?)))
            .collect::<io::Result<_>>()?;
        let disk = OnDisk { version: CACHE_VERSION, partitions };
        fsutil::write_atomic(&self.path, &serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_small_and_foreign_metadata_is_recognised() {
        let m = CommitMeta {
            v: META_VERSION,
            w: "x".repeat(255),
            f: format!("{}-12.log", "t".repeat(249)),
            first: i64::MAX,
            len: u64::MAX,
            sealed: true,
            from: Some(Handover { w: "y".repeat(255), o: i64::MAX }),
            tid: Some("A".repeat(24)),
            // The longest bucket a layout may expand to (config::layout).
            b: Some("b".repeat(512)),
            hi: Some(i64::MIN),
        };
        assert!(m.encode().len() < 2048, "{} bytes", m.encode().len());
        assert_eq!(CommitMeta::decode(&m.encode()), Some(m));
        assert_eq!(CommitMeta::decode(""), None);
        assert_eq!(CommitMeta::decode("{\"something\":\"else\"}"), None);
        let newer = r#"{"v":3,"w":"a","f":"t-0.log","first":0,"len":1}"#;
        assert_eq!(CommitMeta::decode(newer), None, "a newer version is not misread");
    }

    #[test]
    fn version_1_metadata_still_decodes() {
        // As the previous release wrote it (no optional fields).
        let v1 = r#"{"v":1,"w":"host-a","f":"t-0.log","first":100,"len":4096}"#;
        let m = CommitMeta::decode(v1).expect("v1 decodes");
        assert_eq!(
            (m.v, m.w.as_str(), m.first, m.len, m.sealed, m.from.clone()),
            (1, "host-a", 100, 4096, false, None)
        );
        // An open v2 commit encodes the same fields plus its version.
        let v2 = CommitMeta { v: 2, ..m.clone() }.encode();
        assert_eq!(v2, r#"{"v":2,"w":"host-a","f":"t-0.log","first":100,"len":4096}"#);
    }

    #[test]
    fn a_version_1_cache_loads_and_an_unknown_version_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("commits.json");
        std::fs::write(
            &path,
            r#"{"version":1,"partitions":{"t/0":{"offset":7,"meta":{"v":1,"w":"me","f":"t-0.log","first":5,"len":4}}}}"#,
        )
        .expect("write");
        let cache = CommitCache::load(&path).expect("v1 cache");
        assert_eq!(cache.get("t", 0).latest().map(|c| c.offset), Some(7));
        assert_eq!(cache.get("t", 1), Cached::default());
        std::fs::write(&path, r#"{"version":9,"partitions":{"t/0":{}}}"#).expect("write");
        let err = CommitCache::load(&path).expect_err("unknown version");
        assert!(err.to_string().contains("version 9"), "{err}");
    }

    #[test]
    fn an_attempt_is_durable_before_it_is_sent_and_confirmed_with_the_next() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("commits.json");
        let c =
            |o: i64| Committed { offset: o, meta: CommitMeta { v: 2, w: "me".into(), ..Default::default() } };
        let mut cache = CommitCache::load(&path).expect("empty");
        cache.attempt([("t", 0, &c(5))]).expect("attempt");
        assert_eq!(CommitCache::load(&path).expect("reload").get("t", 0).latest(), Some(&c(5)));
        cache.confirmed([("t", 0, &c(5))]);
        cache.attempt([("t", 0, &c(9))]).expect("attempt");
        let back = CommitCache::load(&path).expect("reload").get("t", 0);
        assert_eq!((back.confirmed.clone(), back.attempt.clone()), (Some(c(5)), Some(c(9))));
        assert_eq!(back.candidates(), vec![&c(5), &c(9)]);
    }
}
