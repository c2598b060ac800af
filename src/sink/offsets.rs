//! The one commit path of both layouts, over where offsets are committed (`Offsets`).
//!
//! `Offsets` is Kafka's consumer group in the connector loop (`sink::kafka_offsets`) and an
//! in-memory fake in the writer's model test; nothing here knows which. The path: record the
//! commits in the local cache (durably, before sending: the data they cover is already fsynced),
//! send them in one request, and if that reports a failure read back what was applied (a commit
//! that failed or timed out may still have been applied).

use super::SinkStats;
use super::commit::{Cached, CommitCache, CommitMeta, Committed};
use crate::failpoints;

/// A topic-partition.
pub type Tp = (String, i32);

/// Where a held partition's next record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Nothing was ever committed for it (here or by another writer) and nothing written yet:
    /// whatever comes first (the consumer starts as `start_at` says).
    First,
    /// The offset the next record must have.
    At(i64),
}

impl Next {
    pub fn of(next: Option<i64>) -> Next {
        next.map_or(Next::First, Next::At)
    }

    pub fn offset(self) -> Option<i64> {
        match self {
            Next::At(offset) => Some(offset),
            Next::First => None,
        }
    }
}

/// One partition's commit.
pub type Commit = (String, i32, Committed);

/// Where a sink's offsets are committed, each with its metadata.
pub trait Offsets {
    /// Before anything is recorded: fills in what only the store knows (the topic's id) and
    /// refuses a commit that must not be made (a topic re-created under the records).
    fn prepare(&mut self, _commits: &mut [Commit]) -> Result<(), super::SinkError> {
        Ok(())
    }

    /// Commits all of `commits` in one request. An error says nothing about whether it was
    /// applied.
    fn commit(&mut self, commits: &[Commit]) -> Result<(), String>;

    /// What is committed now for each of `partitions` (`None`: nothing), or an error if any of
    /// them could not be read (never taken for "nothing committed").
    fn committed(&mut self, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Committed>)>, String>;

    /// After a commit reported failed: what is committed now, for comparing with what was sent.
    /// A partition that could not be read may be `None` here (it then counts as not applied).
    fn read_back(&mut self, partitions: &[Tp]) -> Result<Vec<(Tp, Option<Committed>)>, String> {
        self.committed(partitions)
    }
}

/// What one commit needs besides the layout: the store, the local cache, the counters.
pub struct Committer<'a> {
    pub offsets: &'a mut dyn Offsets,
    pub cache: &'a mut CommitCache,
    pub stats: &'a SinkStats,
}

impl Committer<'_> {
    /// Sends `commits` (their data already fsynced) and returns the ones applied.
    pub fn send(&mut self, mut commits: Vec<Commit>) -> Result<Vec<Commit>, super::SinkError> {
        if commits.is_empty() {
            return Ok(commits);
        }
        self.offsets.prepare(&mut commits)?;
        self.cache
            .attempt(commits.iter().map(|(t, p, c)| (t.as_str(), *p, c)))
            .map_err(|source| super::SinkError::Cache { path: self.cache.path().to_path_buf(), source })?;
        let result = match failpoints::fire("sink::commit::send") {
            Some(message) => Err(message),
            None => self.offsets.commit(&commits).and_then(|()| {
                // Applied, but reported failed (a timeout after the broker wrote it).
                match failpoints::fire("sink::commit::lost-answer") {
                    Some(message) => Err(message),
                    None => Ok(()),
                }
            }),
        };
        failpoints::fire("sink::commit::after");
        let applied = match result {
            Ok(()) => commits,
            Err(error) => {
                let partitions: Vec<Tp> = commits.iter().map(|(t, p, _)| (t.clone(), *p)).collect();
                let back = match failpoints::fire("sink::commit::readback") {
                    Some(message) => Err(message),
                    None => self.offsets.read_back(&partitions),
                };
                let applied: Vec<Commit> = match back {
                    Ok(back) => commits
                        .into_iter()
                        .filter(|(t, p, c)| {
                            back.iter().any(|((bt, bp), b)| bt == t && bp == p && b.as_ref() == Some(c))
                        })
                        .collect(),
                    Err(_) => Vec::new(),
                };
                tracing::warn!(%error, applied = applied.len(), "offset commit failed; read back what was applied, the rest is committed on the next try");
                applied
            }
        };
        if !applied.is_empty() {
            self.stats.commits.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let mut committed = self.stats.committed.lock().unwrap_or_else(|p| p.into_inner());
            for (topic, partition, c) in &applied {
                committed.insert((topic.clone(), *partition), c.offset);
            }
        }
        self.cache.confirmed(applied.iter().map(|(t, p, c)| (t.as_str(), *p, c)));
        Ok(applied)
    }
}

/// A partition's committed state as reconciliation sees it: Kafka's commit (`from_kafka`) is the
/// authority, else this daemon's cache. Also returns what the cache knows of this daemon's own
/// commits (after adopting Kafka's, if it is this daemon's).
pub fn authority(
    cache: &mut CommitCache,
    daemon_id: &str,
    (topic, partition): (&str, i32),
    from_kafka: Option<Committed>,
) -> (Option<Committed>, Cached) {
    let own = cache.get(topic, partition);
    if let Some(c) = from_kafka.as_ref().filter(|c| c.meta.w == daemon_id) {
        // This daemon records every commit before sending it: one it never recorded was made
        // by another process with the same daemon_id (a cloned host), whose files are not
        // ours to reconcile against.
        if let Some(latest) = own.latest().filter(|l| c.offset > l.offset) {
            tracing::warn!(
                topic,
                partition,
                committed = c.offset,
                ours = latest.offset,
                daemon_id,
                "Kafka holds a commit under this daemon_id beyond any this daemon made: another daemon with the \
                 same daemon_id (a cloned host?) writes this group, or the state directory was restored from an \
                 older copy; give every host its own daemon_id"
            );
        }
        cache.adopt(topic, partition, c);
    }
    let authority = from_kafka.or_else(|| own.latest().cloned());
    (authority, own)
}

/// Decodes metadata read from Kafka: metadata macklake did not write counts as empty (another
/// writer committed).
pub fn decode_meta(text: &str) -> CommitMeta {
    CommitMeta::decode(text).unwrap_or_default()
}
