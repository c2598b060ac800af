//! What a sink commits with each offset, and the local cache of its last commits.
//!
//! Kafka's committed offset and its metadata are the authority on what a partition's files hold
//! (several daemons may own a partition in turn); the local cache only fills in what Kafka no
//! longer has (e.g. offsets expired) and remembers this daemon's own last range when it must
//! close off a file another owner continued.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fsutil;

pub const META_VERSION: u32 = 1;

/// Commit metadata: which writer made the data durable, in which active file, up to which length.
/// Kept well under Kafka's 4 KiB `offset.metadata.max.bytes`.
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
}

impl CommitMeta {
    pub fn encode(&self) -> String {
        serde_json::to_string(self).expect("commit metadata always serializes")
    }

    /// `None` for metadata not written by macklake (another tool committed for this group).
    pub fn decode(text: &str) -> Option<CommitMeta> {
        serde_json::from_str::<CommitMeta>(text).ok().filter(|m| m.v == META_VERSION)
    }
}

/// The last successful commit of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Committed {
    pub offset: i64,
    pub meta: CommitMeta,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OnDisk {
    version: u32,
    partitions: BTreeMap<String, Committed>,
}

/// `state_dir/sinks/NAME/commits.json`.
#[derive(Debug)]
pub struct CommitCache {
    path: PathBuf,
    partitions: BTreeMap<String, Committed>,
}

fn key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

impl CommitCache {
    pub fn load(path: &Path) -> io::Result<CommitCache> {
        let partitions = match std::fs::read_to_string(path) {
            Ok(text) => {
                serde_json::from_str::<OnDisk>(&text)
                    .map_err(|e| {
                        io::Error::new(io::ErrorKind::InvalidData, format!("{}: {e}", path.display()))
                    })?
                    .partitions
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => return Err(e),
        };
        Ok(CommitCache { path: path.to_path_buf(), partitions })
    }

    pub fn get(&self, topic: &str, partition: i32) -> Option<&Committed> {
        self.partitions.get(&key(topic, partition))
    }

    /// Records successful commits and writes the cache durably.
    pub fn record(&mut self, commits: impl IntoIterator<Item = (String, i32, Committed)>) -> io::Result<()> {
        for (topic, partition, c) in commits {
            self.partitions.insert(key(&topic, partition), c);
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let disk = OnDisk { version: 1, partitions: self.partitions.clone() };
        fsutil::write_atomic(&self.path, &serde_json::to_vec_pretty(&disk).map_err(io::Error::other)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_is_small_and_foreign_metadata_is_recognised() {
        let m = CommitMeta {
            v: 1,
            w: "x".repeat(200),
            f: format!("{}-12.log", "t".repeat(249)),
            first: i64::MAX,
            len: u64::MAX,
        };
        assert!(m.encode().len() < 1024);
        assert_eq!(CommitMeta::decode(&m.encode()), Some(m));
        assert_eq!(CommitMeta::decode(""), None);
        assert_eq!(CommitMeta::decode("{\"something\":\"else\"}"), None);
    }
}
