//! The counters a source shares with status, metrics and the REST API.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Shared counters (read by status and metrics).
#[derive(Debug, Default)]
pub struct SourceStats {
    /// Lines read from files and handed to the producer, and their bytes.
    pub lines_sent: std::sync::atomic::AtomicU64,
    pub bytes_sent: std::sync::atomic::AtomicU64,
    /// Lines Kafka acknowledged, and their bytes.
    pub lines_acked: std::sync::atomic::AtomicU64,
    pub bytes_acked: std::sync::atomic::AtomicU64,
    /// Records Kafka refused (the connector restarts and resends from its checkpoint).
    pub records_failed: std::sync::atomic::AtomicU64,
    /// Over-long lines, by what the policy did with them.
    pub long_lines_split: std::sync::atomic::AtomicU64,
    pub long_lines_truncated: std::sync::atomic::AtomicU64,
    pub long_lines_skipped: std::sync::atomic::AtomicU64,
    /// Files matched by this connector that another connector reads.
    pub conflicts: std::sync::atomic::AtomicU64,
    /// Unix time (ms) of the last checkpoint write or transaction commit.
    pub checkpoint_at_ms: std::sync::atomic::AtomicU64,
    pub transaction_aborts: std::sync::atomic::AtomicU64,
    /// From reading a line to Kafka's acknowledgement.
    pub delivery_seconds: crate::latency::LatencyHistogram,
    /// The positions last made durable, by path (for the REST API's offsets).
    pub positions: std::sync::Mutex<std::collections::BTreeMap<PathBuf, u64>>,
    /// Files held open.
    pub files: std::sync::atomic::AtomicU64,
    /// Files followed with their descriptor closed while idle (`close_idle_after`).
    pub files_closed: std::sync::atomic::AtomicU64,
    /// Paths that could not be read, or match but are refused (symlinks, FIFOs, devices), at the last rescan.
    pub unreadable: std::sync::atomic::AtomicU64,
    pub transactions: std::sync::atomic::AtomicU64,
    pub dead_lettered: std::sync::atomic::AtomicU64,
    /// Files held as a copy of another that outgrew it, read whole (their shared lines may be
    /// sent twice).
    pub copies_read_whole: std::sync::atomic::AtomicU64,
    /// Records of more than one line handed out (`[multiline]`).
    pub multiline_records: std::sync::atomic::AtomicU64,
    /// Records ended before their rule said so: by `max_lines`, by `max_bytes`, by `timeout`
    /// (nothing more came), and by the end of their file (rotated away mid-record). An over-long
    /// line sent as a dead letter ends the record before it too (counted with max_bytes).
    pub records_cut_max_lines: std::sync::atomic::AtomicU64,
    pub records_cut_max_bytes: std::sync::atomic::AtomicU64,
    pub records_cut_timeout: std::sync::atomic::AtomicU64,
    pub records_cut_rotation: std::sync::atomic::AtomicU64,
    /// Records not sent: matching no `include_lines`, or one of `exclude_lines`.
    pub records_not_included: std::sync::atomic::AtomicU64,
    pub records_excluded: std::sync::atomic::AtomicU64,
}

impl SourceStats {
    /// Everything that moves a file position: lines sent, dead letters, skipped over-long lines,
    /// filtered records.
    pub fn progress(&self) -> u64 {
        self.lines_sent.load(Ordering::Relaxed)
            + self.dead_lettered.load(Ordering::Relaxed)
            + self.long_lines_skipped.load(Ordering::Relaxed)
            + self.records_not_included.load(Ordering::Relaxed)
            + self.records_excluded.load(Ordering::Relaxed)
    }
}
