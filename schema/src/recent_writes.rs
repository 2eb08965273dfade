//! How far back in sample time this process's recent writes reach, for the
//! results cache.
//!
//! A range query's answer at step `t` reads only samples at or before `t`
//! (or as much after as its negative offsets say; `@` is never cached). So
//! an answer read after a [`Mark`] is still right for every step before the
//! oldest sample time written since. Every writer of this process notes
//! the oldest sample time of each batch once ClickHouse accepted it; the
//! cache asks for the oldest one noted since its answer's mark, and
//! recomputes only the steps from there. A dashboard refresh then costs its
//! newest steps, plus those a late sample reached back to.
//!
//! Writes by other processes (another Comet of a cluster, a direct
//! `INSERT`) are not seen here; the cache trusts this only where it is
//! told that every write goes through this process.
//!
//! Kept per process and per database (a registry keyed by URL and
//! database), so writers and the API share it without being wired to each
//! other.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, OnceLock};

use crate::store::Store;

/// Most notes kept per database (16 bytes each); a cached answer from
/// before the oldest kept is treated as if anything may have been written
/// since. A writer notes once per batch stored, so this is many minutes of
/// a busy one.
pub const MAX_NOTES: usize = 100_000;

/// A place in a database's sequence of writes: the writes noted before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Mark(u64);

/// The writes of one database: (sequence number, oldest sample time in
/// ms), oldest first.
#[derive(Default)]
struct Notes {
    entries: VecDeque<(u64, i64)>,
    /// The sequence number of the next note.
    next: u64,
    /// Notes before this one were dropped.
    kept_from: u64,
}

impl Notes {
    fn note(&mut self, oldest_ms: i64) {
        self.entries.push_back((self.next, oldest_ms));
        self.next += 1;
        if self.entries.len() > MAX_NOTES
            && let Some((seq, _)) = self.entries.pop_front()
        {
            self.kept_from = seq + 1;
        }
    }

    fn since(&self, from: Mark) -> WrittenSince {
        if from.0 < self.kept_from {
            return WrittenSince::Unknown;
        }
        let first = self.entries.partition_point(|&(seq, _)| seq < from.0);
        self.entries
            .range(first..)
            .map(|&(_, ms)| ms)
            .min()
            .map_or(WrittenSince::Nothing, WrittenSince::Oldest)
    }
}

/// What was written after a [`Mark`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrittenSince {
    /// Nothing.
    Nothing,
    /// Samples, the oldest of them at this time (ms).
    Oldest(i64),
    /// Not known: the mark is older than the notes kept.
    Unknown,
}

type Registry = Mutex<HashMap<(String, String), Notes>>;

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Default::default)
}

/// Records that samples as old as `oldest_ms` were just stored in `store`
/// (called by a writer once ClickHouse accepted them).
pub fn note(store: &Store, oldest_ms: i64) {
    if let Ok(mut registry) = registry().lock() {
        registry
            .entry(store.identity())
            .or_default()
            .note(oldest_ms);
    }
}

/// The place of what `store` has been written so far: take it before
/// reading, and [`since`] tells what was written after.
pub fn mark(store: &Store) -> Mark {
    let next = registry()
        .lock()
        .ok()
        .and_then(|registry| registry.get(&store.identity()).map(|notes| notes.next));
    Mark(next.unwrap_or(0))
}

/// What this process wrote to `store` after `from`.
pub fn since(store: &Store, from: Mark) -> WrittenSince {
    let Ok(registry) = registry().lock() else {
        return WrittenSince::Unknown;
    };
    registry
        .get(&store.identity())
        .map_or(WrittenSince::Nothing, |notes| notes.since(from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_oldest_sample_written_after_a_mark() {
        let mut notes = Notes::default();
        notes.note(5_000);
        let mark = Mark(notes.next);
        assert_eq!(notes.since(mark), WrittenSince::Nothing);
        notes.note(9_000);
        notes.note(7_000);
        assert_eq!(notes.since(mark), WrittenSince::Oldest(7_000));
        assert_eq!(notes.since(Mark(0)), WrittenSince::Oldest(5_000));
        assert_eq!(notes.since(Mark(notes.next)), WrittenSince::Nothing);
    }

    #[test]
    fn a_mark_before_the_notes_kept_is_unknown() {
        let mut notes = Notes::default();
        for i in 0..=MAX_NOTES as i64 {
            notes.note(i);
        }
        assert_eq!(notes.entries.len(), MAX_NOTES);
        assert_eq!(notes.since(Mark(0)), WrittenSince::Unknown);
        assert_eq!(notes.since(Mark(1)), WrittenSince::Oldest(1));
    }
}
