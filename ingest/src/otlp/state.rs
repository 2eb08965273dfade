//! What the OTLP receiver remembers between requests, per output series:
//! running totals that turn delta temporality into cumulative, and the
//! last start time seen (for created-timestamp zero samples). Both are
//! bounded caches: a series forgotten after eviction starts again from its
//! next point, which PromQL sees as a counter reset.

use std::time::Duration;

use moka::ops::compute::Op;
use moka::sync::Cache;

/// Running total of one delta series.
#[derive(Debug, Clone, Copy)]
struct Running {
    last_ms: i64,
    total: f64,
}

/// Per-series state shared by every OTLP request.
#[derive(Clone)]
pub struct SeriesState {
    running: Cache<u64, Running>,
    started: Cache<u64, i64>,
}

/// Why a delta point could not be added to its series' total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutOfOrder {
    pub last_ms: i64,
}

impl SeriesState {
    /// State for at most `max_series` series each, forgetting series idle
    /// for `idle`.
    pub fn new(max_series: u64, idle: Duration) -> Self {
        Self {
            running: Cache::builder()
                .max_capacity(max_series)
                .time_to_idle(idle)
                .build(),
            started: Cache::builder()
                .max_capacity(max_series)
                .time_to_idle(idle)
                .build(),
        }
    }

    /// Adds a delta `value` at `timestamp_ms` to series `fingerprint` and
    /// returns the cumulative total, or refuses a point not after the last.
    pub fn accumulate(
        &self,
        fingerprint: u64,
        timestamp_ms: i64,
        value: f64,
    ) -> Result<f64, OutOfOrder> {
        let mut outcome = Ok(value);
        self.running.entry(fingerprint).and_compute_with(|entry| {
            match entry.map(|e| e.into_value()) {
                None => Op::Put(Running {
                    last_ms: timestamp_ms,
                    total: value,
                }),
                Some(r) if timestamp_ms <= r.last_ms => {
                    outcome = Err(OutOfOrder { last_ms: r.last_ms });
                    Op::Nop
                }
                Some(r) => {
                    let total = r.total + value;
                    outcome = Ok(total);
                    Op::Put(Running {
                        last_ms: timestamp_ms,
                        total,
                    })
                }
            }
        });
        outcome
    }

    /// Whether `start_ms` is a start time not seen before for the series
    /// (so its zero sample has not been written yet); remembers it.
    pub fn new_start(&self, fingerprint: u64, start_ms: i64) -> bool {
        let mut fresh = false;
        self.started.entry(fingerprint).and_compute_with(|entry| {
            match entry.map(|e| e.into_value()) {
                Some(seen) if seen == start_ms => Op::Nop,
                _ => {
                    fresh = true;
                    Op::Put(start_ms)
                }
            }
        });
        fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_add_up_in_order() {
        let state = SeriesState::new(100, Duration::from_secs(60));
        assert_eq!(state.accumulate(1, 1000, 5.0), Ok(5.0));
        assert_eq!(state.accumulate(1, 2000, 3.0), Ok(8.0));
        assert_eq!(
            state.accumulate(1, 2000, 1.0),
            Err(OutOfOrder { last_ms: 2000 })
        );
        assert_eq!(state.accumulate(2, 1500, 1.0), Ok(1.0));
        // The refused point left the total as it was.
        assert_eq!(state.accumulate(1, 3000, 0.0), Ok(8.0));
        assert!(state.new_start(1, 500));
        assert!(!state.new_start(1, 500));
        assert!(state.new_start(1, 900));
    }
}
