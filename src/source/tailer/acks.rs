//! Delivery bookkeeping of the followed files: per file, an ack queue that advances the
//! checkpointable offset over the acknowledged prefix only; per slot, the delivery tokens that
//! tell which file (and which generation of a reused slot) a late acknowledgement belongs to.

use std::collections::{BTreeSet, VecDeque};
use std::time::Instant;

use crate::source::fingerprint::FileId;

/// Low bits of a delivery token hold the per-file sequence number; high bits the file's slot.
pub const SEQ_BITS: u32 = 40;

/// Acknowledgements of one file's records, in file order: the checkpointable offset advances over
/// the acknowledged prefix only, whatever order acks arrive in (they may be out of order when
/// `key = "none"` spreads a file's lines over partitions).
#[derive(Debug, Default)]
pub struct AckQueue {
    pub pending: VecDeque<Pending>,
    early: BTreeSet<u64>,
    pub next_seq: u64,
    pub acked_offset: u64,
}

/// A record handed to the producer and not yet acknowledged.
#[derive(Debug, Clone, Copy)]
pub struct Pending {
    pub seq: u64,
    /// The file offset just past the line.
    pub end: u64,
    /// Payload bytes of a line (for the counters); `None` for dead letters and dropped bytes.
    pub len: Option<u64>,
    /// When the line was read (for the delivery latency).
    pub read_at: Instant,
}

impl AckQueue {
    pub fn new(offset: u64) -> AckQueue {
        AckQueue { acked_offset: offset, ..AckQueue::default() }
    }

    pub fn push(&mut self, end: u64, len: Option<u64>, read_at: Instant) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.push_back(Pending { seq, end, len, read_at });
        seq
    }

    /// Records the acknowledgement of `seq`; returns its record unless it was stale.
    pub fn ack(&mut self, seq: u64) -> Option<Pending> {
        let front = self.pending.front()?.seq;
        // Stale: a line of content the file no longer has (it was truncated since).
        if seq < front {
            return None;
        }
        // Sequence numbers in the queue are consecutive.
        let acked = self.pending.get((seq - front) as usize).copied().filter(|p| p.seq == seq);
        if front != seq {
            self.early.insert(seq);
            return acked;
        }
        while let Some(&p) = self.pending.front() {
            if p.seq != seq && !self.early.remove(&p.seq) {
                break;
            }
            self.pending.pop_front();
            self.acked_offset = p.end;
        }
        acked
    }

    pub fn idle(&self) -> bool {
        self.pending.is_empty()
    }

    /// Starts over at `offset` (the file was truncated), keeping sequence numbers unique so that
    /// acknowledgements of the old content are recognised as stale.
    pub fn restart_at(&mut self, offset: u64) {
        self.pending.clear();
        self.early.clear();
        self.acked_offset = offset;
    }
}

/// The delivery-token slots of the followed files. A slot is reused once its file is retired or
/// closed; records of that file may still be in flight then (those of content it lost to a
/// truncation are not waited for), and their late acknowledgements carry the slot.
#[derive(Debug, Default)]
pub struct Slots {
    slots: Vec<Slot>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Slot {
    file: Option<FileId>,
    /// The sequence number its next file starts at.
    next_seq: u64,
}

impl Slots {
    /// A free slot for `id`, and the sequence number its records start at.
    pub fn take(&mut self, id: FileId) -> (usize, u64) {
        let slot = self.slots.iter().position(|s| s.file.is_none()).unwrap_or_else(|| {
            self.slots.push(Slot::default());
            self.slots.len() - 1
        });
        self.slots[slot].file = Some(id);
        (slot, self.slots[slot].next_seq)
    }

    /// Frees `slot`, whose file used sequence numbers below `next_seq`. The slot's next file
    /// goes on from there (a generation, in effect): a late acknowledgement of the previous
    /// file's records is then below anything the next file sent, so it is recognised as stale.
    pub fn free(&mut self, slot: usize, next_seq: u64) {
        if let Some(s) = self.slots.get_mut(slot) {
            s.file = None;
            s.next_seq = s.next_seq.max(next_seq);
        }
    }

    pub fn file(&self, slot: usize) -> Option<&FileId> {
        self.slots.get(slot)?.file.as_ref()
    }
}

/// The token of a record: the file's slot in the high bits, the low bits of its sequence number.
pub fn token(slot: usize, seq: u64) -> usize {
    (slot << SEQ_BITS) | (seq as usize & ((1usize << SEQ_BITS) - 1))
}

/// The slot and full sequence number of a token, given the next sequence number of the file now
/// in that slot (the pending window is far smaller than the low bits).
pub fn untoken(token: usize, next_seq: u64) -> (usize, u64) {
    let slot = token >> SEQ_BITS;
    let seq_low = (token & ((1usize << SEQ_BITS) - 1)) as u64;
    let base = next_seq & !((1u64 << SEQ_BITS) - 1);
    let seq = if base | seq_low >= next_seq {
        (base | seq_low).wrapping_sub(1 << SEQ_BITS)
    } else {
        base | seq_low
    };
    (slot, seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 14 finding 6: a file's records still in flight when its slot is reused (content it
    /// lost to a truncation is not waited for) must not acknowledge the next file's records.
    #[test]
    fn a_reused_slot_ignores_the_previous_files_late_acknowledgements() {
        let now = std::time::Instant::now();
        let mut slots = Slots::default();
        let (a_slot, a_first) = slots.take(FileId { dev: 1, ino: 1 });
        let mut a = AckQueue::new(0);
        a.next_seq = a_first;
        let in_flight: Vec<usize> = (1..=3).map(|i| token(a_slot, a.push(i * 10, Some(9), now))).collect();
        a.restart_at(0); // truncated: those three are of content the file no longer has
        slots.free(a_slot, a.next_seq);
        let (b_slot, b_first) = slots.take(FileId { dev: 1, ino: 2 });
        assert_eq!(b_slot, a_slot, "the slot is reused");
        let mut b = AckQueue::new(0);
        b.next_seq = b_first;
        b.push(5, Some(4), now);
        // Late acknowledgements of the first file's records arrive now.
        for t in in_flight {
            let (slot, seq) = untoken(t, b.next_seq);
            assert_eq!(slot, b_slot);
            b.ack(seq);
        }
        assert_eq!(b.acked_offset, 0, "nothing of the second file was acknowledged");
    }

    #[test]
    fn checkpoint_advances_over_the_acknowledged_prefix_only() {
        let mut q = AckQueue::new(0);
        let a = q.push(10, Some(9), std::time::Instant::now());
        let b = q.push(20, Some(9), std::time::Instant::now());
        let c = q.push(30, Some(9), std::time::Instant::now());
        q.ack(b);
        assert_eq!(q.acked_offset, 0, "b is acknowledged but a is not");
        q.ack(a);
        assert_eq!(q.acked_offset, 20);
        q.ack(c);
        assert_eq!(q.acked_offset, 30);
        assert!(q.idle());
    }
}
