//! Which offset of a partition may be committed: batches complete in any
//! order, but an offset is committed only once every batch before it is
//! stored (the highest contiguous completed offset).

use std::collections::BTreeMap;

/// Batches of one partition, numbered in the order they were cut.
#[derive(Debug, Default)]
pub struct OffsetTracker {
    /// The sequence number of the oldest batch not yet stored.
    next_seq: u64,
    /// Stored batches ahead of `next_seq`: sequence number -> last offset.
    done: BTreeMap<u64, i64>,
    /// The offset to commit (one past the last offset of the contiguous
    /// stored batches), once any batch is stored.
    position: Option<i64>,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records batch `seq` (covering offsets up to `last_offset`) as
    /// stored. Returns the new commit position when it moved.
    pub fn complete(&mut self, seq: u64, last_offset: i64) -> Option<i64> {
        if seq < self.next_seq {
            return None;
        }
        self.done.insert(seq, last_offset);
        let before = self.position;
        while let Some(last) = self.done.remove(&self.next_seq) {
            self.position = Some(last + 1);
            self.next_seq += 1;
        }
        (self.position != before).then_some(self.position).flatten()
    }

    /// The offset to commit, if any batch is stored.
    pub fn position(&self) -> Option<i64> {
        self.position
    }

    /// Batches stored out of order, waiting for an earlier one.
    pub fn waiting(&self) -> usize {
        self.done.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_only_the_contiguous_prefix() {
        let mut t = OffsetTracker::new();
        assert_eq!(t.position(), None);
        // Batch 1 (offsets 10..=19) finishes before batch 0 (0..=9).
        assert_eq!(t.complete(1, 19), None);
        assert_eq!(t.position(), None);
        assert_eq!(t.waiting(), 1);
        assert_eq!(t.complete(0, 9), Some(20));
        assert_eq!(t.waiting(), 0);
        assert_eq!(t.complete(2, 29), Some(30));
        // Batch 4 waits for batch 3.
        assert_eq!(t.complete(4, 49), None);
        assert_eq!(t.position(), Some(30));
        assert_eq!(t.complete(3, 39), Some(50));
    }

    #[test]
    fn offsets_may_have_gaps_and_repeats_are_ignored() {
        let mut t = OffsetTracker::new();
        // Compacted topics and transaction markers leave gaps.
        assert_eq!(t.complete(0, 104), Some(105));
        assert_eq!(t.complete(0, 104), None);
        assert_eq!(t.complete(1, 250), Some(251));
    }
}
