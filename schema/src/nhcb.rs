//! Classic histograms (`_bucket{le=..}`, `_count` and `_sum` series) to
//! native histograms with custom buckets (NHCB), as Prometheus converts
//! them (`util/convertnhcb`): the same results and the same refusals, so a
//! classic histogram reads the same through either path.
//!
//! [`ClassicHistogram`] gathers the parts of one histogram at one time;
//! [`ClassicHistograms`] gathers many, keyed by whatever names a histogram
//! for the caller (its labels without `le`, under the base name).

use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;

use thiserror::Error;

use crate::histogram::{CUSTOM_BUCKETS_SCHEMA, CounterResetHint, HistogramCounts, NativeHistogram};

/// Why classic histogram parts do not make a native histogram. The
/// messages follow Prometheus's.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum NhcbError {
    #[error("bucket boundary must not be NaN")]
    NaNBound,
    #[error("bucket count must be non-negative: le={le}, count={count}")]
    NegativeBucketCount { le: f64, count: f64 },
    #[error("count must be non-negative: count={0}")]
    NegativeCount(f64),
    /// A bucket holds fewer than one below it, or more than one above it.
    #[error("count is not cumulative: {count} {relation} {neighbour}")]
    NotCumulative {
        count: f64,
        relation: char,
        neighbour: f64,
    },
    #[error("count mismatch: count={count} != le={le} count={bucket_count}")]
    CountMismatch {
        count: f64,
        le: f64,
        bucket_count: f64,
    },
    /// A `_count` below the highest bucket leaves the +Inf bucket
    /// negative (`Validate` refuses it in Prometheus).
    #[error(
        "positive side: bucket number {bucket} has observation count of {count}: histogram \
         has a bucket whose observation count is negative"
    )]
    NegativeBucket { bucket: usize, count: f64 },
}

/// The classic parts of one histogram at one time. The first error sticks:
/// later parts are ignored and [`ClassicHistogram::convert`] returns it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassicHistogram {
    /// `(le, cumulative count)`, by `le`, without duplicates.
    buckets: Vec<(f64, f64)>,
    count: Option<f64>,
    sum: f64,
    error: Option<NhcbError>,
}

impl ClassicHistogram {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first error met so far.
    pub fn error(&self) -> Option<&NhcbError> {
        self.error.as_ref()
    }

    fn fail(&mut self, error: NhcbError) -> Result<(), NhcbError> {
        self.error = Some(error.clone());
        Err(error)
    }

    /// Records bucket `le` holding `count` observations (cumulative). A
    /// second bucket with the same bound is ignored, as a duplicate sample.
    pub fn set_bucket_count(&mut self, le: f64, count: f64) -> Result<(), NhcbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if le.is_nan() {
            return self.fail(NhcbError::NaNBound);
        }
        if count < 0.0 {
            return self.fail(NhcbError::NegativeBucketCount { le, count });
        }
        // Where `le` goes: buckets usually come in order, so this is
        // mostly the end.
        let at = self.buckets.partition_point(|&(b, _)| b < le);
        if self.buckets.get(at).is_some_and(|&(b, _)| b == le) {
            return Ok(());
        }
        if let Some(&(_, below)) = at.checked_sub(1).and_then(|i| self.buckets.get(i))
            && count < below
        {
            return self.fail(NhcbError::NotCumulative {
                count,
                relation: '<',
                neighbour: below,
            });
        }
        if let Some(&(_, above)) = self.buckets.get(at)
            && count > above
        {
            return self.fail(NhcbError::NotCumulative {
                count,
                relation: '>',
                neighbour: above,
            });
        }
        self.buckets.insert(at, (le, count));
        Ok(())
    }

    /// Records the `_count` sample.
    pub fn set_count(&mut self, count: f64) -> Result<(), NhcbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        if count < 0.0 {
            return self.fail(NhcbError::NegativeCount(count));
        }
        self.count = Some(count);
        Ok(())
    }

    /// Records the `_sum` sample.
    pub fn set_sum(&mut self, sum: f64) -> Result<(), NhcbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        self.sum = sum;
        Ok(())
    }

    /// The native histogram at `timestamp_ms`: an integer histogram when
    /// every count is a whole number, else a float one. Without `_count`
    /// the highest bucket gives the count; without a +Inf bucket one is
    /// added holding the count. Bucket `i` is the one up to
    /// `custom_values[i]` (the last, +Inf, has no bound). Empty buckets are
    /// dropped as Prometheus compacts: at the ends always, inside runs
    /// longer than two for integer histograms, and all for float ones.
    pub fn convert(&self, timestamp_ms: i64) -> Result<NativeHistogram, NhcbError> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let count = match (self.count, self.buckets.last()) {
            (Some(count), _) => count,
            (None, Some(&(_, highest))) => highest,
            (None, None) => 0.0,
        };
        let mut buckets = self.buckets.clone();
        if buckets.last().is_none_or(|&(le, _)| le != f64::INFINITY) {
            buckets.push((f64::INFINITY, count));
        }
        let custom_values: Vec<f64> = buckets
            .iter()
            .map(|&(le, _)| le)
            .filter(|le| *le != f64::INFINITY)
            .collect();
        let (last_le, last_count) = buckets.last().copied().unwrap_or((f64::INFINITY, count));
        // The +Inf bucket holds everything, so it must agree with `_count`
        // (a NaN count never does, as in Prometheus).
        if count != last_count {
            return Err(NhcbError::CountMismatch {
                count,
                le: last_le,
                bucket_count: last_count,
            });
        }
        let mut previous = 0.0;
        let counts: Vec<f64> = buckets
            .iter()
            .map(|&(_, c)| {
                let own = c - previous;
                previous = c;
                own
            })
            .collect();
        if let Some(i) = counts.iter().position(|&c| c < 0.0) {
            return Err(NhcbError::NegativeBucket {
                bucket: i + 1,
                count: counts[i],
            });
        }
        let integer = buckets.iter().all(|&(_, c)| whole(c, i64::MAX as f64))
            && whole(count, u64::MAX as f64);
        let kept = kept_buckets(&counts, if integer { 2 } else { 0 });
        let positive_index = kept.iter().map(|&i| i as i32).collect();
        let counts = if integer {
            HistogramCounts::Integer {
                count: count as u64,
                zero_count: 0,
                positive: kept.iter().map(|&i| counts[i] as u64).collect(),
                negative: Vec::new(),
            }
        } else {
            HistogramCounts::Float {
                count,
                zero_count: 0.0,
                positive: kept.iter().map(|&i| counts[i]).collect(),
                negative: Vec::new(),
            }
        };
        Ok(NativeHistogram {
            timestamp_ms,
            start_timestamp_ms: 0,
            schema: CUSTOM_BUCKETS_SCHEMA as i8,
            reset_hint: CounterResetHint::Unknown,
            zero_threshold: 0.0,
            sum: self.sum,
            positive_index,
            negative_index: Vec::new(),
            counts,
            custom_values,
        })
    }
}

/// Whether `v` is a whole number an integer histogram can hold.
fn whole(v: f64, max: f64) -> bool {
    v.is_finite() && v.fract() == 0.0 && v >= 0.0 && v < max
}

/// The indexes of the buckets Prometheus's `Compact(max_empty)` keeps of
/// one span: none of the empty ones at either end, and of the empty ones
/// inside only runs of at most `max_empty`.
fn kept_buckets(counts: &[f64], max_empty: usize) -> Vec<usize> {
    let filled: Vec<usize> = (0..counts.len()).filter(|&i| counts[i] != 0.0).collect();
    let mut kept = Vec::with_capacity(counts.len());
    for (n, &i) in filled.iter().enumerate() {
        if let Some(&before) = n.checked_sub(1).and_then(|p| filled.get(p))
            && i - before - 1 <= max_empty
        {
            kept.extend(before + 1..i);
        }
        kept.push(i);
    }
    kept
}

/// Which part of a classic histogram a series is, by its metric name's
/// suffix (Prometheus's `GetHistogramMetricBaseName`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClassicSuffix {
    Bucket,
    Count,
    Sum,
}

/// The base name and part of a classic histogram series' metric name, or
/// `None` when it is no part of one.
pub fn classic_part(metric_name: &str) -> Option<(&str, ClassicSuffix)> {
    [
        ("_bucket", ClassicSuffix::Bucket),
        ("_sum", ClassicSuffix::Sum),
        ("_count", ClassicSuffix::Count),
    ]
    .into_iter()
    .find_map(|(suffix, part)| metric_name.strip_suffix(suffix).map(|base| (base, part)))
}

/// One sample of a classic histogram series.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ClassicValue {
    /// Of the `_bucket` series with this `le`.
    Bucket {
        le: f64,
    },
    Count,
    Sum,
}

/// A histogram that did not convert, and where.
#[derive(Debug, Clone, PartialEq, Error)]
#[error("at {timestamp_ms}ms: {error}")]
pub struct ConvertError<K> {
    pub key: K,
    pub timestamp_ms: i64,
    pub error: NhcbError,
}

/// Classic histogram samples of many histograms, gathered by key and time.
#[derive(Debug, Clone)]
pub struct ClassicHistograms<K> {
    /// In the order keys were first seen, for a stable output.
    groups: Vec<(K, BTreeMap<i64, ClassicHistogram>)>,
    by_key: HashMap<K, usize>,
}

impl<K> Default for ClassicHistograms<K> {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            by_key: HashMap::new(),
        }
    }
}

impl<K: Eq + Hash + Clone> ClassicHistograms<K> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one sample of the histogram `key` at `timestamp_ms`. Errors
    /// are kept for [`ClassicHistograms::convert`]: Prometheus gathers
    /// every part before it refuses a histogram.
    pub fn add(&mut self, key: &K, part: ClassicValue, timestamp_ms: i64, value: f64) {
        let at = match self.by_key.get(key) {
            Some(&at) => at,
            None => {
                self.groups.push((key.clone(), BTreeMap::new()));
                self.by_key.insert(key.clone(), self.groups.len() - 1);
                self.groups.len() - 1
            }
        };
        let h = self.groups[at].1.entry(timestamp_ms).or_default();
        // The error stays in `h`; `convert` reports it.
        let _ = match part {
            ClassicValue::Bucket { le } => h.set_bucket_count(le, value),
            ClassicValue::Count => h.set_count(value),
            ClassicValue::Sum => h.set_sum(value),
        };
    }

    /// Each histogram's native histograms in time order, histograms in the
    /// order their keys were first added; the first that does not convert
    /// fails all.
    pub fn convert(self) -> Result<Vec<(K, Vec<NativeHistogram>)>, ConvertError<K>> {
        self.groups
            .into_iter()
            .map(|(key, by_time)| {
                let mut out = Vec::with_capacity(by_time.len());
                for (timestamp_ms, h) in by_time {
                    match h.convert(timestamp_ms) {
                        Ok(native) => out.push(native),
                        Err(error) => {
                            return Err(ConvertError {
                                key,
                                timestamp_ms,
                                error,
                            });
                        }
                    }
                }
                Ok((key, out))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classic(buckets: &[(f64, f64)], count: Option<f64>, sum: f64) -> ClassicHistogram {
        let mut h = ClassicHistogram::new();
        for &(le, c) in buckets {
            let _ = h.set_bucket_count(le, c);
        }
        if let Some(c) = count {
            let _ = h.set_count(c);
        }
        let _ = h.set_sum(sum);
        h
    }

    fn integer(h: &NativeHistogram) -> (u64, Vec<u64>) {
        match &h.counts {
            HistogramCounts::Integer {
                count, positive, ..
            } => (*count, positive.clone()),
            other => panic!("not an integer histogram: {other:?}"),
        }
    }

    fn float(h: &NativeHistogram) -> (f64, Vec<f64>) {
        match &h.counts {
            HistogramCounts::Float {
                count, positive, ..
            } => (*count, positive.clone()),
            other => panic!("not a float histogram: {other:?}"),
        }
    }

    const INF: f64 = f64::INFINITY;

    #[test]
    fn cumulative_buckets_become_own_counts() {
        let h = classic(
            &[(0.1, 5.0), (0.2, 7.0), (1.0, 11.0), (INF, 12.0)],
            None,
            3.0,
        )
        .convert(60_000)
        .expect("converts");
        assert_eq!(h.timestamp_ms, 60_000);
        assert_eq!(i32::from(h.schema), CUSTOM_BUCKETS_SCHEMA);
        assert_eq!(h.custom_values, vec![0.1, 0.2, 1.0]);
        assert_eq!(h.positive_index, vec![0, 1, 2, 3]);
        assert_eq!(integer(&h), (12, vec![5, 2, 4, 1]));
        assert_eq!(h.sum, 3.0);
        assert_eq!(h.reset_hint, CounterResetHint::Unknown);
    }

    #[test]
    fn order_of_buckets_does_not_matter() {
        let sorted = classic(&[(1.0, 1.0), (2.0, 3.0), (INF, 4.0)], Some(4.0), 0.0);
        let shuffled = classic(&[(INF, 4.0), (1.0, 1.0), (2.0, 3.0)], Some(4.0), 0.0);
        assert_eq!(sorted.convert(0), shuffled.convert(0));
    }

    #[test]
    fn duplicate_bounds_keep_the_first() {
        let h = classic(&[(0.2, 1.0), (0.2, 2.0), (INF, 4.0)], None, 0.0)
            .convert(0)
            .expect("converts");
        assert_eq!(integer(&h), (4, vec![1, 3]));
    }

    #[test]
    fn missing_inf_bucket_takes_the_count() {
        let h = classic(
            &[(0.0, 3.0), (1.0, 3.0), (2.0, 8.0), (4.0, 10.0)],
            None,
            0.0,
        )
        .convert(0)
        .expect("converts");
        assert_eq!(h.custom_values, vec![0.0, 1.0, 2.0, 4.0]);
        // The empty +Inf bucket is dropped, the single empty one inside
        // kept.
        assert_eq!(h.positive_index, vec![0, 1, 2, 3]);
        assert_eq!(integer(&h), (10, vec![3, 0, 5, 2]));

        let h = classic(&[(1.0, 1.0)], Some(5.0), 0.0)
            .convert(0)
            .expect("converts");
        assert_eq!(integer(&h), (5, vec![1, 4]));
    }

    #[test]
    fn only_count_or_sum_make_one_bucket() {
        let h = classic(&[], Some(7.0), 2.0).convert(0).expect("converts");
        assert!(h.custom_values.is_empty());
        assert_eq!(integer(&h), (7, vec![7]));
        let h = classic(&[], None, 2.0).convert(0).expect("converts");
        assert_eq!(integer(&h), (0, vec![]));
        assert_eq!(h.sum, 2.0);
    }

    #[test]
    fn fractions_make_a_float_histogram_without_empty_buckets() {
        let h = classic(&[(0.5, 2.5), (1.0, 2.5), (INF, 100.0)], None, 0.0)
            .convert(0)
            .expect("converts");
        assert_eq!(h.custom_values, vec![0.5, 1.0]);
        assert_eq!(h.positive_index, vec![0, 2]);
        assert_eq!(float(&h), (100.0, vec![2.5, 97.5]));
        let h = classic(&[(1.0, 1.0), (INF, 2.0)], Some(2.5), 0.0);
        assert!(matches!(h.convert(0), Err(NhcbError::CountMismatch { .. })));
    }

    #[test]
    fn integer_histograms_keep_short_empty_runs() {
        let buckets = [
            (1.0, 1.0),
            (2.0, 1.0),
            (3.0, 1.0),
            (4.0, 2.0),
            (5.0, 2.0),
            (6.0, 2.0),
            (7.0, 2.0),
            (INF, 3.0),
        ];
        let h = classic(&buckets, None, 0.0).convert(0).expect("converts");
        assert_eq!(h.positive_index, vec![0, 1, 2, 3, 7]);
        assert_eq!(integer(&h), (3, vec![1, 0, 0, 1, 1]));
        assert_eq!(kept_buckets(&[0.0, 1.0, 0.0, 0.0, 0.0], 2), vec![1]);
        assert_eq!(kept_buckets(&[0.0; 3], 2), Vec::<usize>::new());
    }

    #[test]
    fn refusals() {
        let mut h = ClassicHistogram::new();
        assert_eq!(h.set_bucket_count(f64::NAN, 1.0), Err(NhcbError::NaNBound));
        // The first error sticks.
        assert_eq!(h.set_sum(1.0), Err(NhcbError::NaNBound));
        assert_eq!(h.convert(0), Err(NhcbError::NaNBound));

        let h = classic(&[(1.0, -1.0)], None, 0.0);
        assert!(matches!(
            h.error(),
            Some(NhcbError::NegativeBucketCount { .. })
        ));
        let h = classic(&[], Some(-1.0), 0.0);
        assert_eq!(h.convert(0), Err(NhcbError::NegativeCount(-1.0)));

        let h = classic(&[(1.0, 5.0), (2.0, 3.0)], None, 0.0);
        assert_eq!(
            h.convert(0),
            Err(NhcbError::NotCumulative {
                count: 3.0,
                relation: '<',
                neighbour: 5.0
            })
        );
        let h = classic(&[(2.0, 3.0), (1.0, 5.0)], None, 0.0);
        assert!(matches!(
            h.convert(0),
            Err(NhcbError::NotCumulative { relation: '>', .. })
        ));

        let h = classic(&[(1.0, 1.0), (INF, 4.0)], Some(3.0), 0.0);
        assert_eq!(
            h.convert(0),
            Err(NhcbError::CountMismatch {
                count: 3.0,
                le: INF,
                bucket_count: 4.0
            })
        );
        // A count below the highest bucket empties +Inf below zero.
        let h = classic(&[(1.0, 4.0)], Some(3.0), 0.0);
        assert_eq!(
            h.convert(0),
            Err(NhcbError::NegativeBucket {
                bucket: 2,
                count: -1.0
            })
        );
        // A NaN total never matches itself.
        let h = classic(&[(1.0, 1.0), (INF, f64::NAN)], None, 0.0);
        assert!(matches!(h.convert(0), Err(NhcbError::CountMismatch { .. })));
    }

    #[test]
    fn names() {
        assert_eq!(classic_part("x_bucket"), Some(("x", ClassicSuffix::Bucket)));
        assert_eq!(classic_part("x_count"), Some(("x", ClassicSuffix::Count)));
        assert_eq!(classic_part("x_sum"), Some(("x", ClassicSuffix::Sum)));
        assert_eq!(classic_part("x_total"), None);
    }

    #[test]
    fn many_histograms_by_key_and_time() {
        let mut all = ClassicHistograms::new();
        for (t, v) in [(0, 1.0), (60, 2.0)] {
            all.add(&"b", ClassicValue::Bucket { le: 1.0 }, t, v);
            all.add(&"b", ClassicValue::Bucket { le: INF }, t, v * 2.0);
            all.add(&"b", ClassicValue::Sum, t, v * 3.0);
        }
        all.add(&"a", ClassicValue::Count, 30, 4.0);
        let out = all.convert().expect("converts");
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].0, "b");
        let times: Vec<i64> = out[0].1.iter().map(|h| h.timestamp_ms).collect();
        assert_eq!(times, vec![0, 60]);
        assert_eq!(integer(&out[0].1[1]), (4, vec![2, 2]));
        assert_eq!(out[0].1[1].sum, 6.0);
        assert_eq!(integer(&out[1].1[0]), (4, vec![4]));

        let mut bad = ClassicHistograms::new();
        bad.add(&1, ClassicValue::Bucket { le: 1.0 }, 5, 2.0);
        bad.add(&1, ClassicValue::Bucket { le: 2.0 }, 5, 1.0);
        let e = bad.convert().expect_err("not cumulative");
        assert_eq!((e.key, e.timestamp_ms), (1, 5));
    }
}
