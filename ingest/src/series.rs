//! The series registry: validated series shared by every batch that
//! mentions them.
//!
//! Most of what arrives is series seen before (Prometheus sends every series
//! every scrape). The registry (a moka cache) maps a hash of a series'
//! identity as it arrives (raw label bytes for remote-write 1.0) to its
//! validated [`Series`], so a known series costs one hash and one lookup
//! instead of allocating, validating and fingerprinting its labels again. The
//! entry also remembers the last day its `series` row was written, so that
//! row goes to ClickHouse once per series per day.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use comet_schema::Labels;
use comet_schema::labels::{LabelError, LabelLimits, METRIC_NAME_LABEL};
use moka::sync::Cache;

/// A validated series.
#[derive(Debug)]
pub struct Series {
    labels: Labels,
    fingerprint: u64,
    /// Position of `__name__` in `labels`, looked up once (per sample
    /// otherwise).
    metric_name_at: usize,
    /// Approximate memory held by this entry.
    memory: u32,
    /// The last day (days since epoch) whose `series` row is stored, or
    /// `NONE`.
    written_day: AtomicU32,
}

const NONE: u32 = u32::MAX;

impl Series {
    pub fn new(labels: Labels) -> Self {
        let memory = 96
            + labels
                .iter()
                .map(|l| l.name.len() + l.value.len() + 48)
                .sum::<usize>();
        let metric_name_at = labels
            .iter()
            .position(|l| l.name == METRIC_NAME_LABEL)
            .unwrap_or(0);
        Self {
            fingerprint: labels.fingerprint(),
            metric_name_at,
            labels,
            memory: memory.min(u32::MAX as usize) as u32,
            written_day: AtomicU32::new(NONE),
        }
    }

    pub fn labels(&self) -> &Labels {
        &self.labels
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// The value of `__name__`.
    pub fn metric_name(&self) -> &str {
        self.labels
            .as_slice()
            .get(self.metric_name_at)
            .map_or("", |l| l.value.as_str())
    }

    /// Whether the `series` row for `day` may still be missing.
    pub fn needs_row(&self, day: u16) -> bool {
        self.written_day.load(Ordering::Relaxed) != u32::from(day)
    }

    /// Records that the `series` row for `day` is stored.
    pub fn mark_written(&self, day: u16) {
        self.written_day.store(u32::from(day), Ordering::Relaxed);
    }
}

/// Validated series by a hash of how they arrive.
#[derive(Clone)]
pub struct SeriesRegistry {
    cache: Cache<u128, Arc<Series>>,
    limits: LabelLimits,
}

impl SeriesRegistry {
    /// A registry holding about `max_bytes` of series.
    pub fn new(max_bytes: u64) -> Self {
        Self {
            cache: Cache::builder()
                .max_capacity(max_bytes)
                // Sized up front: growing the table while it is being read
                // makes every lookup slower for a while.
                .initial_capacity((max_bytes / 1024).min(1 << 22) as usize)
                .weigher(|_, series: &Arc<Series>| series.memory)
                .build(),
            limits: LabelLimits::default(),
        }
    }

    /// The same registry admitting only series within `limits`.
    pub fn with_label_limits(mut self, limits: LabelLimits) -> Self {
        self.limits = limits;
        self
    }

    /// The series stored under `key`, if known.
    pub fn get(&self, key: u128) -> Option<Arc<Series>> {
        self.cache.get(&key)
    }

    /// Registers a new series arriving as `key` if its labels are within
    /// the label limits; every source admits its new series here.
    pub fn admit(&self, key: u128, labels: Labels) -> Result<Arc<Series>, LabelError> {
        labels.check_limits(&self.limits)?;
        Ok(self.insert(key, labels))
    }

    /// Registers `labels` under `key` and returns the shared entry (every
    /// source goes through [`Self::admit`], which checks the limits).
    fn insert(&self, key: u128, labels: Labels) -> Arc<Series> {
        let series = Arc::new(Series::new(labels));
        self.cache.insert(key, Arc::clone(&series));
        series
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use comet_schema::NameValidation;

    #[test]
    fn written_day_is_remembered() {
        let registry = SeriesRegistry::new(1 << 20);
        let labels = Labels::new([("__name__", "up")], NameValidation::Legacy).unwrap();
        let key = u128::from(labels.fingerprint());
        let series = registry.insert(key, labels);
        assert_eq!(series.metric_name(), "up");
        assert!(series.needs_row(100));
        series.mark_written(100);
        assert!(!series.needs_row(100));
        assert!(series.needs_row(101));
        // The same key gives the same shared entry.
        let again = registry.get(key).unwrap();
        assert!(Arc::ptr_eq(&series, &again));
    }
}
