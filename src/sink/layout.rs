//! How a sink lays its records out, one of two layouts behind one set of operations: rotating
//! files per partition (`Partitions`, `dir = ...`) or one shared file (`Single`, `file = ...`).
//! Each layout has its own write, commit and reconciliation over the one commit path
//! (`offsets::Committer`); the connector loop only ever asks the layout.

use std::path::Path;

use super::SinkError;
use super::offsets::{Committer, Next, Tp};
use super::partitions::Partitions;
use super::single::Single;

pub enum Layout {
    Partitions(Partitions),
    Single(Single),
}

impl Layout {
    /// Where a held partition's next record is; `None` if the partition is not held (not yet
    /// reconciled, revoked, stalled).
    pub fn next_of(&self, key: &Tp) -> Option<Next> {
        match self {
            Layout::Partitions(p) => p.next_of(key),
            Layout::Single(s) => s.next_of(key),
        }
    }

    /// The directory the sink writes in (for messages that tell what to move aside).
    pub fn dir(&self) -> &Path {
        match self {
            Layout::Partitions(p) => p.sink_dir(),
            Layout::Single(s) => s.path().parent().unwrap_or(Path::new("/")),
        }
    }

    /// Stops writing a partition (to be reconciled again, or stalled). In a single file, what it
    /// wrote stays committed.
    pub fn forget(&mut self, key: &Tp) {
        match self {
            Layout::Partitions(p) => p.forget(key),
            Layout::Single(s) => s.forget(key),
        }
    }

    /// After an error that ends the run: nothing written after the last commit may be committed
    /// now (not in the final commit, not in the revocation on leaving).
    pub fn abandon(&mut self) {
        match self {
            Layout::Partitions(p) => p.abandon(),
            Layout::Single(s) => s.abandon(),
        }
    }

    /// Hands buffered records to the kernel (no fsync): visible to readers, not yet durable.
    pub fn flush(&mut self) -> Result<(), SinkError> {
        match self {
            Layout::Partitions(p) => p.flush(),
            Layout::Single(s) => s.flush(),
        }
    }

    /// fsyncs and commits everything written.
    pub fn commit(&mut self, committer: &mut Committer<'_>) -> Result<(), SinkError> {
        match self {
            Layout::Partitions(p) => p.commit(committer),
            Layout::Single(s) => s.commit(committer),
        }
    }

    /// Writes the record at `offset` of a held partition (`line`: `None` for a value with no line,
    /// which only moves the partition's offset on; `time`: the record's timestamp in ms).
    pub fn write(
        &mut self,
        committer: &mut Committer<'_>,
        key: &Tp,
        offset: i64,
        line: Option<&[u8]>,
        time: Option<i64>,
    ) -> Result<(), SinkError> {
        match self {
            Layout::Partitions(p) => p.write(committer, key, offset, line, time),
            Layout::Single(s) => s.write(committer, key, offset, line),
        }
    }

    /// On the loop's tick: seals what the clock or idleness closes (directory layout only; a
    /// single file is never rotated).
    pub fn tick(
        &mut self,
        committer: &mut Committer<'_>,
        caught_up: &mut dyn FnMut(&Tp) -> bool,
    ) -> Result<(), SinkError> {
        match self {
            Layout::Partitions(p) => p.tick(committer, caught_up),
            Layout::Single(_) => Ok(()),
        }
    }
}
