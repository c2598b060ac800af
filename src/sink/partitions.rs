//! The directory layout (`dir = ...`): one `PartitionWriter` per held partition, each with its
//! own files under `DIR/TOPIC/`, committed partition by partition; rotation commits a `sealed`
//! commit before it renames (see `writer` and ARCHITECTURE.md).
//!
//! Knows nothing of Kafka: commits go through `offsets::Committer`, so the model test drives
//! this layout against an in-memory store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use super::SinkError;
use super::commit::{Cached, Committed};
use super::offsets::{Committer, Next, Tp};
use super::writer::{PartitionWriter, Reconciled};

pub struct Partitions {
    sink_dir: PathBuf,
    daemon_id: String,
    /// For the log.
    /// Permissions of created files (`file_mode`).
    file_mode: u32,
    rotate_bytes: u64,
    rotate_interval: Duration,
    writers: HashMap<Tp, PartitionWriter>,
}

/// When the active file is rotated (`rotate_bytes`, `rotate_interval`).
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub bytes: u64,
    pub interval: Duration,
}

impl Partitions {
    pub fn new(sink_dir: &Path, daemon_id: &str, file_mode: u32, rotation: Rotation) -> Self {
        Partitions {
            sink_dir: sink_dir.to_path_buf(),
            daemon_id: daemon_id.to_string(),
            file_mode,
            rotate_bytes: rotation.bytes,
            rotate_interval: rotation.interval,
            writers: HashMap::new(),
        }
    }

    pub fn sink_dir(&self) -> &Path {
        &self.sink_dir
    }

    /// Where a held partition's next record is; `None` if it is not held.
    pub fn next_of(&self, key: &Tp) -> Option<Next> {
        self.writers.get(key).map(|w| Next::of(w.next))
    }

    pub fn writer(&self, key: &Tp) -> Option<&PartitionWriter> {
        self.writers.get(key)
    }

    /// Stops writing a partition (revoked, stalled, or to be reconciled again).
    pub fn forget(&mut self, key: &Tp) {
        self.writers.remove(key);
    }

    /// Drops every writer without committing (after an error: the restart rewrites what this run
    /// left uncommitted).
    pub fn abandon(&mut self) {
        self.writers.clear();
    }

    /// Brings a partition's files in line with its committed state (`authority`: Kafka's, else
    /// the cache's; `own`: this daemon's cached commits) and returns its writer, to resume at
    /// `resume`. The writer is not held until `hold`.
    pub fn reconcile(
        &self,
        (topic, partition): (&str, i32),
        authority: Option<&Committed>,
        own: &Cached,
        resume: Option<i64>,
    ) -> Result<(PartitionWriter, Reconciled), SinkError> {
        let (mut writer, outcome) =
            PartitionWriter::reconcile(&self.sink_dir, topic, partition, &self.daemon_id, authority, own)
                .map_err(|source| SinkError::Io { path: self.sink_dir.join(topic), source })?;
        writer.file_mode = self.file_mode;
        writer.next = resume;
        Ok((writer, outcome))
    }

    /// Holds a reconciled partition: its records are written from now on.
    pub fn hold(&mut self, writer: PartitionWriter) {
        self.writers.insert((writer.topic.clone(), writer.partition), writer);
    }

    /// Hands buffered records to the kernel (no fsync): visible to readers, not yet durable.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        for w in self.writers.values_mut() {
            w.flush().map_err(|source| SinkError::Io { path: w.active_path(), source })?;
        }
        Ok(())
    }

    /// fsyncs and commits every dirty partition.
    pub fn commit(&mut self, committer: &mut Committer<'_>) -> Result<(), SinkError> {
        self.commit_where(committer, |_| true)
    }

    /// fsyncs and commits these partitions (if dirty).
    pub fn commit_some(&mut self, committer: &mut Committer<'_>, keys: &[Tp]) -> Result<(), SinkError> {
        self.commit_where(committer, |key| keys.contains(key))
    }

    /// Data is durable before the commit is sent: that is the invariant.
    fn commit_where(
        &mut self,
        committer: &mut Committer<'_>,
        wanted: impl Fn(&Tp) -> bool,
    ) -> Result<(), SinkError> {
        let mut commits = Vec::new();
        for (key, w) in self.writers.iter_mut() {
            if !wanted(key) || !(w.dirty() || w.durable_len != w.len) {
                continue;
            }
            w.sync().map_err(|source| SinkError::Io { path: w.active_path(), source })?;
            for consumed in w.unsynced.drain(..) {
                committer.stats.durable_seconds.observe(consumed.elapsed());
            }
            let Some(next) = w.next else { continue };
            commits.push((
                key.0.clone(),
                key.1,
                Committed { offset: next, meta: w.commit_meta(&self.daemon_id) },
            ));
        }
        for (topic, partition, c) in committer.send(commits)? {
            if let Some(w) = self.writers.get_mut(&(topic, partition)) {
                w.committed = Some(c.offset);
            }
        }
        Ok(())
    }

    /// Writes the record at `offset` of a held partition (`line`: `None` for a value with no
    /// line, which only moves the offset on), and rotates the active file when it is due.
    /// The caller has checked that `offset` is not below the partition's next offset.
    pub fn write(
        &mut self,
        committer: &mut Committer<'_>,
        key: &Tp,
        offset: i64,
        line: Option<&[u8]>,
    ) -> Result<(), SinkError> {
        let Some(w) = self.writers.get_mut(key) else { return Ok(()) };
        if w.next.is_none() {
            // The first record of a partition nothing was ever committed for: commit its offset
            // with an empty file first, so that after a crash before the next commit the file
            // this run starts is known as this writer's (truncated back, not set aside as a file
            // of unknown origin).
            w.next = Some(offset);
            self.commit_some(committer, std::slice::from_ref(key))?;
        }
        let stats = committer.stats;
        let Some(w) = self.writers.get_mut(key) else { return Ok(()) };
        match line {
            Some(line) => {
                w.append(offset, line).map_err(|source| SinkError::Io { path: w.active_path(), source })?;
                stats.records_written.fetch_add(1, Ordering::Relaxed);
                stats.bytes_written.fetch_add(line.len() as u64 + 1, Ordering::Relaxed);
                w.unsynced.push(Instant::now());
            }
            None => {
                w.next = Some(offset + 1);
                stats.records_skipped_null.fetch_add(1, Ordering::Relaxed);
            }
        }
        if w.needs_rotation(self.rotate_bytes, self.rotate_interval) {
            self.rotate(committer, key)?;
        }
        Ok(())
    }

    /// Rotation: a `sealed` commit, then the rename. The commit says the file is sealed, so that
    /// after a crash anywhere from here on reconciliation knows an active file found later is a
    /// new one.
    fn rotate(&mut self, committer: &mut Committer<'_>, key: &Tp) -> Result<(), SinkError> {
        if let Some(w) = self.writers.get_mut(key) {
            w.sealing = true;
        }
        self.commit_some(committer, std::slice::from_ref(key))?;
        let Some(w) = self.writers.get_mut(key) else { return Ok(()) };
        if w.committed != w.next {
            // Not committed: the file goes on (a later sealed commit closes it).
            w.sealing = false;
            return Ok(());
        }
        let path = w.active_path();
        if let Some(rotated) = w.rotate().map_err(|source| SinkError::Io { path, source })? {
            committer.stats.rotations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(file = %rotated.display(), "rotated");
        }
        Ok(())
    }
}
