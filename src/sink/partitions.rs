//! The directory layout (`dir = ...`): one `PartitionWriter` per held partition, each with its
//! own files under `DIR/TOPIC/`, committed partition by partition; rotation commits a `sealed`
//! commit before it renames (see `writer` and ARCHITECTURE.md).
//!
//! Where rotated files go is the partition's time bucket (`bucket`): a record of a later bucket
//! seals the active file first; a late one joins the active bucket. Sealing also happens on the
//! clock (`rotate_aligned` without a time layout) and when a caught-up partition is quiet
//! (`seal_idle_after`, on the loop's tick).
//!
//! Knows nothing of Kafka: commits go through `offsets::Committer`, so the model test drives
//! this layout against an in-memory store.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use super::SinkError;
use super::bucket::{Buckets, Verdict};
use super::commit::{Cached, Committed};
use super::offsets::{Committer, Next, Tp};
use super::writer::{PartitionWriter, Reconciled};

pub struct Partitions {
    sink_dir: PathBuf,
    daemon_id: String,
    /// Permissions of created files (`file_mode`).
    file_mode: u32,
    rotation: Rotation,
    buckets: Buckets,
    writers: HashMap<Tp, PartitionWriter>,
}

/// When the active file is rotated (`rotate_bytes`, `rotate_interval`, `rotate_aligned`,
/// `seal_idle_after`).
#[derive(Debug, Clone, Copy)]
pub struct Rotation {
    pub bytes: u64,
    pub interval: Duration,
    /// The interval is on the clock (then `Buckets` carries it), not counted from the file's start.
    pub aligned: bool,
    pub seal_idle_after: Option<Duration>,
}

impl Partitions {
    pub fn new(
        sink_dir: &Path,
        daemon_id: &str,
        file_mode: u32,
        rotation: Rotation,
        buckets: Buckets,
    ) -> Self {
        Partitions {
            sink_dir: sink_dir.to_path_buf(),
            daemon_id: daemon_id.to_string(),
            file_mode,
            rotation,
            buckets,
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
        // The aligned period of the active bucket follows from the highest record time.
        if let (Some(place), Some(hi)) = (writer.place.as_mut(), writer.hi)
            && let Ok(at_hi) = self.buckets.compute(topic, partition, hi)
        {
            place.period = at_hi.period;
        }
        if writer.first.is_some() {
            writer.wall_period = self.buckets.wall_period(SystemTime::now());
        }
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
        time: Option<i64>,
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
        if line.is_some() {
            self.place_record(committer, key, time)?;
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
        // Counted from the file's start unless aligned on the clock (sealed before a record of
        // the next period instead, in `place_record`).
        let interval = if self.rotation.aligned { Duration::MAX } else { self.rotation.interval };
        if w.needs_rotation(self.rotation.bytes, interval) {
            self.rotate(committer, key)?;
        }
        Ok(())
    }

    /// Decides the bucket of the record about to be written at `time` (ms, record time): seals
    /// the active file first if the record starts a later bucket or clock period. A seal that
    /// cannot be committed ends the run (`Unsealed`): one file never spans two buckets.
    fn place_record(
        &mut self,
        committer: &mut Committer<'_>,
        key: &Tp,
        time: Option<i64>,
    ) -> Result<(), SinkError> {
        let stats = committer.stats;
        if !self.buckets.by_record_time() {
            // Expanded once per file, not per record (the default layout's hot path).
            if self.writers.get(key).is_some_and(|w| w.place.is_none()) {
                let fixed = self.fixed_place(key)?;
                if let Some(w) = self.writers.get_mut(key) {
                    w.place = Some(fixed);
                }
            }
            let Some(w) = self.writers.get_mut(key) else { return Ok(()) };
            let Some(now) = self.buckets.wall_period(SystemTime::now()) else { return Ok(()) };
            if w.first.is_some() && w.wall_period != Some(now) {
                self.seal(committer, key)?;
            }
            if let Some(w) = self.writers.get_mut(key).filter(|w| w.first.is_none()) {
                w.wall_period = Some(now);
            }
            return Ok(());
        }
        let Some(w) = self.writers.get_mut(key) else { return Ok(()) };
        let consumed =
            || SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let tp = (key.0.as_str(), key.1);
        let judged =
            match time.filter(|t| *t >= 0).map(|t| (t, self.buckets.judge(tp, w.place.as_ref(), w.hi, t))) {
                Some((t, Ok(verdict))) => (t, verdict),
                // No timestamp, or one the layout cannot place (out of range): the consume time.
                _ => {
                    stats.records_untimed.fetch_add(1, Ordering::Relaxed);
                    let t = consumed();
                    let verdict =
                        self.buckets.judge(tp, w.place.as_ref(), w.hi, t).map_err(|why| SinkError::Io {
                            path: self.sink_dir.clone(),
                            source: std::io::Error::new(
                                std::io::ErrorKind::InvalidInput,
                                format!("layout: {why}"),
                            ),
                        })?;
                    (t, verdict)
                }
            };
        match judged {
            (t, Verdict::Same) => w.hi = Some(w.hi.map_or(t, |hi| hi.max(t))),
            (_, Verdict::Late) => {
                stats.records_late.fetch_add(1, Ordering::Relaxed);
            }
            (t, Verdict::Later(place)) => {
                if w.first.is_some() {
                    self.seal(committer, key)?;
                }
                if let Some(w) = self.writers.get_mut(key) {
                    w.place = Some(place);
                    w.hi = Some(w.hi.map_or(t, |hi| hi.max(t)));
                }
            }
        }
        Ok(())
    }

    fn fixed_place(&self, key: &Tp) -> Result<super::bucket::Place, SinkError> {
        self.buckets.fixed(&key.0, key.1).map_err(|why| SinkError::Io {
            path: self.sink_dir.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("layout: {why}")),
        })
    }

    /// Rotation that must happen now (a bucket boundary): an error if its commit is not applied.
    fn seal(&mut self, committer: &mut Committer<'_>, key: &Tp) -> Result<(), SinkError> {
        if self.rotate(committer, key)? {
            return Ok(());
        }
        let path = self.writers.get(key).map(|w| w.active_path()).unwrap_or_else(|| self.sink_dir.clone());
        Err(SinkError::Unsealed { path })
    }

    /// On the loop's tick: seals active files whose clock period ended (`rotate_aligned` without
    /// a time layout) and those of partitions caught up and quiet for `seal_idle_after`.
    /// `caught_up` asks Kafka (position at the last stable offset); it is asked only for quiet
    /// partitions with something to seal.
    pub fn tick(
        &mut self,
        committer: &mut Committer<'_>,
        caught_up: &mut dyn FnMut(&Tp) -> bool,
    ) -> Result<(), SinkError> {
        let wall = self.buckets.wall_period(SystemTime::now());
        let idle = self.rotation.seal_idle_after;
        let mut due: Vec<(Tp, bool)> = Vec::new();
        for (key, w) in &self.writers {
            if w.first.is_none() {
                continue;
            }
            if wall.is_some() && w.wall_period.is_some() && w.wall_period != wall {
                due.push((key.clone(), false));
            } else if idle.is_some_and(|d| w.last_write.elapsed() >= d) {
                due.push((key.clone(), true));
            }
        }
        for (key, is_idle) in due {
            if is_idle && !caught_up(&key) {
                continue;
            }
            if self.rotate(committer, &key)? && is_idle {
                committer.stats.files_sealed_idle.fetch_add(1, Ordering::Relaxed);
                tracing::info!(topic = %key.0, partition = key.1, "sealed the active file of a caught-up, quiet partition (seal_idle_after)");
            }
        }
        Ok(())
    }

    /// Rotation: a `sealed` commit, then the rename. The commit says the file is sealed, so that
    /// after a crash anywhere from here on reconciliation knows an active file found later is a
    /// new one.
    /// Returns false if the commit was not applied (the file then goes on).
    fn rotate(&mut self, committer: &mut Committer<'_>, key: &Tp) -> Result<bool, SinkError> {
        if let Some(w) = self.writers.get_mut(key) {
            w.sealing = true;
        }
        self.commit_some(committer, std::slice::from_ref(key))?;
        let by_record_time = self.buckets.by_record_time();
        let fixed = if by_record_time { None } else { Some(self.fixed_place(key)?) };
        let Some(w) = self.writers.get_mut(key) else { return Ok(false) };
        if w.committed != w.next {
            // Not committed: the file goes on (a later sealed commit closes it).
            w.sealing = false;
            return Ok(false);
        }
        let path = w.active_path();
        if let Some(rotated) = w.rotate().map_err(|source| SinkError::Io { path, source })? {
            committer.stats.rotations.fetch_add(1, Ordering::Relaxed);
            tracing::info!(file = %rotated.display(), "rotated");
        }
        // A layout without time has one bucket: a file continued from an older layout's bucket
        // (named by its commit) ends here, the next one starts in the layout's.
        if fixed.is_some() {
            w.place = fixed;
        }
        Ok(true)
    }
}
