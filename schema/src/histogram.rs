//! Native histogram samples, independent of any wire format, and the rows
//! of the `histograms` table.
//!
//! Buckets are kept by absolute index with absolute counts, in the layout
//! the sender used (spans and deltas are decoded at ingest, nothing is
//! compacted): `changes()` and counter-reset detection depend on it.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::model::is_stale_nan;
use crate::prompb::v1;

/// The custom-buckets schema: bucket bounds come with the histogram.
pub const CUSTOM_BUCKETS_SCHEMA: i32 = -53;
/// The range of exponential schemas Prometheus stores.
pub const EXPONENTIAL_SCHEMA_MIN: i32 = -4;
pub const EXPONENTIAL_SCHEMA_MAX: i32 = 8;

/// The counter-reset hint, as the sender gave it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[repr(i8)]
pub enum CounterResetHint {
    /// Whether there was a reset must be found out by comparing samples.
    #[default]
    Unknown = 0,
    /// The first histogram after a counter reset.
    Reset = 1,
    /// Definitely no counter reset since the previous histogram.
    NotReset = 2,
    /// A gauge histogram, where counter resets do not apply.
    Gauge = 3,
}

impl CounterResetHint {
    /// From the remote-write enum (1.0 and 2.0 share the numbers); numbers
    /// Prometheus does not know read as unknown.
    pub fn from_wire(value: i32) -> Self {
        match value {
            1 => CounterResetHint::Reset,
            2 => CounterResetHint::NotReset,
            3 => CounterResetHint::Gauge,
            _ => CounterResetHint::Unknown,
        }
    }

    /// The name of the `Enum8` value in the table (checked against the
    /// DDL by a test).
    pub fn as_str(self) -> &'static str {
        match self {
            CounterResetHint::Unknown => "unknown",
            CounterResetHint::Reset => "reset",
            CounterResetHint::NotReset => "not_reset",
            CounterResetHint::Gauge => "gauge",
        }
    }
}

/// Counts of a histogram: integer (Prometheus's `Histogram`) or float
/// (`FloatHistogram`), kept in the flavour received.
#[derive(Debug, Clone, PartialEq)]
pub enum HistogramCounts {
    Integer {
        count: u64,
        zero_count: u64,
        /// Absolute counts, one per entry of the matching index vector.
        positive: Vec<u64>,
        negative: Vec<u64>,
    },
    Float {
        count: f64,
        zero_count: f64,
        positive: Vec<f64>,
        negative: Vec<f64>,
    },
}

impl HistogramCounts {
    pub fn is_float(&self) -> bool {
        matches!(self, HistogramCounts::Float { .. })
    }

    /// The same counts as a float histogram's (Prometheus's `ToFloat`).
    pub fn to_float(&self) -> HistogramCounts {
        let floats = |v: &[u64]| v.iter().map(|&c| c as f64).collect();
        match self {
            HistogramCounts::Integer {
                count,
                zero_count,
                positive,
                negative,
            } => HistogramCounts::Float {
                count: *count as f64,
                zero_count: *zero_count as f64,
                positive: floats(positive),
                negative: floats(negative),
            },
            HistogramCounts::Float { .. } => self.clone(),
        }
    }
}

/// One native histogram sample of one series, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct NativeHistogram {
    pub timestamp_ms: i64,
    /// When the counter started (remote-write 2.0's start/created
    /// timestamp); 0 when the sender gave none.
    pub start_timestamp_ms: i64,
    /// -4..=8, or [`CUSTOM_BUCKETS_SCHEMA`].
    pub schema: i8,
    pub reset_hint: CounterResetHint,
    pub zero_threshold: f64,
    /// Sum of observations; the staleness marker when bit-exact stale NaN.
    pub sum: f64,
    /// Absolute bucket indexes, increasing.
    pub positive_index: Vec<i32>,
    pub negative_index: Vec<i32>,
    pub counts: HistogramCounts,
    /// Upper bounds of the custom buckets (schema -53), else empty.
    pub custom_values: Vec<f64>,
}

impl NativeHistogram {
    /// True for Prometheus's staleness marker.
    pub fn is_stale(&self) -> bool {
        is_stale_nan(self.sum)
    }

    /// Equal field by field, floats compared by their bits (so two
    /// staleness markers are the same sample).
    pub fn same_as(&self, other: &Self) -> bool {
        fn bits(a: &[f64], b: &[f64]) -> bool {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits())
        }
        let counts = match (&self.counts, &other.counts) {
            (HistogramCounts::Integer { .. }, HistogramCounts::Integer { .. }) => {
                self.counts == other.counts
            }
            (
                HistogramCounts::Float {
                    count: c1,
                    zero_count: z1,
                    positive: p1,
                    negative: n1,
                },
                HistogramCounts::Float {
                    count: c2,
                    zero_count: z2,
                    positive: p2,
                    negative: n2,
                },
            ) => bits(&[*c1, *z1], &[*c2, *z2]) && bits(p1, p2) && bits(n1, n2),
            _ => false,
        };
        counts
            && self.timestamp_ms == other.timestamp_ms
            && self.start_timestamp_ms == other.start_timestamp_ms
            && self.schema == other.schema
            && self.reset_hint == other.reset_hint
            && bits(
                &[self.zero_threshold, self.sum],
                &[other.zero_threshold, other.sum],
            )
            && self.positive_index == other.positive_index
            && self.negative_index == other.negative_index
            && bits(&self.custom_values, &other.custom_values)
    }

    /// Approximate memory held, for the writer's buffer ceiling.
    pub fn estimated_bytes(&self) -> usize {
        let buckets = self.positive_index.len() + self.negative_index.len();
        160 + buckets * 12 + self.custom_values.len() * 8
    }
}

/// A row of `histograms` for writing, borrowing from the batch. Field
/// order and types match [`crate::ddl::HISTOGRAMS`]; the integer columns
/// hold integer histograms, the `_float` ones float histograms, and the
/// other flavour's columns are 0 or empty.
#[derive(Debug, Clone, PartialEq, Row, Serialize)]
pub struct HistogramRowRef<'a> {
    pub metric_name: &'a str,
    pub fingerprint: u64,
    pub timestamp_ms: i64,
    pub start_timestamp_ms: i64,
    pub float_histogram: bool,
    pub schema: i8,
    /// `Enum8` travels as its number.
    pub reset_hint: i8,
    pub zero_threshold: f64,
    pub zero_count: u64,
    pub count: u64,
    pub zero_count_float: f64,
    pub count_float: f64,
    pub sum: f64,
    pub positive_index: &'a [i32],
    pub positive_counts: &'a [u64],
    pub positive_counts_float: &'a [f64],
    pub negative_index: &'a [i32],
    pub negative_counts: &'a [u64],
    pub negative_counts_float: &'a [f64],
    pub custom_values: &'a [f64],
}

impl<'a> HistogramRowRef<'a> {
    pub fn new(metric_name: &'a str, fingerprint: u64, h: &'a NativeHistogram) -> Self {
        let (zero_count, count, positive_counts, negative_counts): (u64, u64, &[u64], &[u64]) =
            match &h.counts {
                HistogramCounts::Integer {
                    count,
                    zero_count,
                    positive,
                    negative,
                } => (*zero_count, *count, positive, negative),
                HistogramCounts::Float { .. } => (0, 0, &[], &[]),
            };
        let (zero_count_float, count_float, positive_float, negative_float): (
            f64,
            f64,
            &[f64],
            &[f64],
        ) = match &h.counts {
            HistogramCounts::Float {
                count,
                zero_count,
                positive,
                negative,
            } => (*zero_count, *count, positive, negative),
            HistogramCounts::Integer { .. } => (0.0, 0.0, &[], &[]),
        };
        Self {
            metric_name,
            fingerprint,
            timestamp_ms: h.timestamp_ms,
            start_timestamp_ms: h.start_timestamp_ms,
            float_histogram: h.counts.is_float(),
            schema: h.schema,
            reset_hint: h.reset_hint as i8,
            zero_threshold: h.zero_threshold,
            zero_count,
            count,
            zero_count_float,
            count_float,
            sum: h.sum,
            positive_index: &h.positive_index,
            positive_counts,
            positive_counts_float: positive_float,
            negative_index: &h.negative_index,
            negative_counts,
            negative_counts_float: negative_float,
            custom_values: &h.custom_values,
        }
    }
}

impl NativeHistogram {
    /// As a `prometheus.Histogram` (remote-write 1.0, remote-read): the
    /// absolute indexes as spans, integer counts as deltas, float counts
    /// as they are.
    pub fn to_wire(&self) -> v1::Histogram {
        use v1::histogram::{Count, ZeroCount};
        let mut wire = v1::Histogram {
            sum: self.sum,
            schema: i32::from(self.schema),
            zero_threshold: self.zero_threshold,
            negative_spans: spans(&self.negative_index),
            positive_spans: spans(&self.positive_index),
            reset_hint: self.reset_hint as i32,
            timestamp: self.timestamp_ms,
            custom_values: self.custom_values.clone(),
            start_timestamp: self.start_timestamp_ms,
            ..Default::default()
        };
        match &self.counts {
            HistogramCounts::Integer {
                count,
                zero_count,
                positive,
                negative,
            } => {
                wire.count = Some(Count::CountInt(*count));
                wire.zero_count = Some(ZeroCount::ZeroCountInt(*zero_count));
                wire.positive_deltas = deltas(positive);
                wire.negative_deltas = deltas(negative);
            }
            HistogramCounts::Float {
                count,
                zero_count,
                positive,
                negative,
            } => {
                wire.count = Some(Count::CountFloat(*count));
                wire.zero_count = Some(ZeroCount::ZeroCountFloat(*zero_count));
                wire.positive_counts = positive.clone();
                wire.negative_counts = negative.clone();
            }
        }
        wire
    }
}

/// Spans over increasing absolute bucket indexes: a run of consecutive
/// indexes is one span, its offset the gap since the previous span (the
/// first span's offset is its first index).
fn spans(index: &[i32]) -> Vec<v1::BucketSpan> {
    let mut spans: Vec<v1::BucketSpan> = Vec::new();
    let mut next = 0i32;
    for (k, &i) in index.iter().enumerate() {
        match spans.last_mut() {
            Some(span) if k > 0 && i == next => span.length += 1,
            _ => spans.push(v1::BucketSpan {
                offset: if k == 0 { i } else { i - next },
                length: 1,
            }),
        }
        next = i + 1;
    }
    spans
}

/// Integer counts as Prometheus's deltas: the first count, then each
/// count's difference to the one before (two's complement, as Go's
/// int64 arithmetic).
fn deltas(counts: &[u64]) -> Vec<i64> {
    let mut previous = 0i64;
    counts
        .iter()
        .map(|&c| {
            let delta = (c as i64).wrapping_sub(previous);
            previous = c as i64;
            delta
        })
        .collect()
}

/// The histogram samples of one series as read from `histograms`, one
/// array entry per sample in time order (columns, so that the row has no
/// tuple wider than serde reads).
#[derive(Debug, Row, Deserialize)]
pub struct StoredHistograms {
    pub labels: Vec<(String, String)>,
    pub timestamp_ms: Vec<i64>,
    pub start_timestamp_ms: Vec<i64>,
    pub float_histogram: Vec<bool>,
    pub schema: Vec<i8>,
    /// The `Enum8` as its number.
    pub reset_hint: Vec<i8>,
    pub zero_threshold: Vec<f64>,
    pub zero_count: Vec<u64>,
    pub count: Vec<u64>,
    pub zero_count_float: Vec<f64>,
    pub count_float: Vec<f64>,
    pub sum: Vec<f64>,
    pub positive_index: Vec<Vec<i32>>,
    pub positive_counts: Vec<Vec<u64>>,
    pub positive_counts_float: Vec<Vec<f64>>,
    pub negative_index: Vec<Vec<i32>>,
    pub negative_counts: Vec<Vec<u64>>,
    pub negative_counts_float: Vec<Vec<f64>>,
    pub custom_values: Vec<Vec<f64>>,
}

impl StoredHistograms {
    /// The table's columns the fields after `labels` hold, in field order.
    pub const COLUMNS: [&'static str; 18] = [
        "timestamp_ms",
        "start_timestamp_ms",
        "float_histogram",
        "schema",
        "reset_hint",
        "zero_threshold",
        "zero_count",
        "count",
        "zero_count_float",
        "count_float",
        "sum",
        "positive_index",
        "positive_counts",
        "positive_counts_float",
        "negative_index",
        "negative_counts",
        "negative_counts_float",
        "custom_values",
    ];

    /// The samples, in time order.
    pub fn into_histograms(self) -> Vec<NativeHistogram> {
        let mut out = Vec::with_capacity(self.timestamp_ms.len());
        let columns = self
            .timestamp_ms
            .into_iter()
            .zip(self.start_timestamp_ms)
            .zip(self.float_histogram)
            .zip(self.schema)
            .zip(self.reset_hint)
            .zip(self.zero_threshold)
            .zip(self.zero_count.into_iter().zip(self.count))
            .zip(self.zero_count_float.into_iter().zip(self.count_float))
            .zip(self.sum)
            .zip(self.positive_index.into_iter().zip(self.negative_index))
            .zip(self.positive_counts.into_iter().zip(self.negative_counts))
            .zip(
                self.positive_counts_float
                    .into_iter()
                    .zip(self.negative_counts_float),
            )
            .zip(self.custom_values);
        for (
            (
                (
                    (
                        (
                            (((((((t, start), is_float), schema), hint), zt), (zc, c)), (zcf, cf)),
                            sum,
                        ),
                        (pi, ni),
                    ),
                    (pc, nc),
                ),
                (pcf, ncf),
            ),
            custom_values,
        ) in columns
        {
            let counts = if is_float {
                HistogramCounts::Float {
                    count: cf,
                    zero_count: zcf,
                    positive: pcf,
                    negative: ncf,
                }
            } else {
                HistogramCounts::Integer {
                    count: c,
                    zero_count: zc,
                    positive: pc,
                    negative: nc,
                }
            };
            out.push(NativeHistogram {
                timestamp_ms: t,
                start_timestamp_ms: start,
                schema,
                reset_hint: CounterResetHint::from_wire(i32::from(hint)),
                zero_threshold: zt,
                sum,
                positive_index: pi,
                negative_index: ni,
                counts,
                custom_values,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::stale_nan;

    fn histogram(sum: f64) -> NativeHistogram {
        NativeHistogram {
            timestamp_ms: 1,
            start_timestamp_ms: 0,
            schema: 3,
            reset_hint: CounterResetHint::Unknown,
            zero_threshold: 0.0,
            sum,
            positive_index: vec![1, 2],
            negative_index: vec![],
            counts: HistogramCounts::Integer {
                count: 3,
                zero_count: 0,
                positive: vec![1, 2],
                negative: vec![],
            },
            custom_values: vec![],
        }
    }

    #[test]
    fn spans_and_deltas_on_the_wire() {
        let mut h = histogram(1.0);
        h.positive_index = vec![-2, -1, 3, 4, 5];
        h.counts = HistogramCounts::Integer {
            count: 12,
            zero_count: 0,
            positive: vec![1, 3, 2, 2, 4],
            negative: vec![],
        };
        let wire = h.to_wire();
        let spans: Vec<(i32, u32)> = wire
            .positive_spans
            .iter()
            .map(|s| (s.offset, s.length))
            .collect();
        assert_eq!(spans, [(-2, 2), (3, 3)]);
        assert_eq!(wire.positive_deltas, [1, 2, -1, 0, 2]);
        assert!(wire.negative_spans.is_empty());
        assert_eq!(wire.schema, 3);
        h.counts = h.counts.to_float();
        let wire = h.to_wire();
        assert_eq!(wire.positive_counts, [1.0, 3.0, 2.0, 2.0, 4.0]);
        assert!(wire.positive_deltas.is_empty());
    }

    #[test]
    fn hints_from_the_wire() {
        assert_eq!(CounterResetHint::from_wire(0), CounterResetHint::Unknown);
        assert_eq!(CounterResetHint::from_wire(1), CounterResetHint::Reset);
        assert_eq!(CounterResetHint::from_wire(2), CounterResetHint::NotReset);
        assert_eq!(CounterResetHint::from_wire(3), CounterResetHint::Gauge);
        assert_eq!(CounterResetHint::from_wire(9), CounterResetHint::Unknown);
        assert_eq!(CounterResetHint::NotReset.as_str(), "not_reset");
    }

    /// The row sends a hint as its number: the table's `Enum8` must give
    /// each number the hint's name.
    #[test]
    fn hints_match_the_table_enum() {
        let column = crate::ddl::HISTOGRAMS
            .columns
            .iter()
            .find(|(name, _)| *name == "reset_hint")
            .map(|(_, ty)| *ty)
            .unwrap_or_default();
        for hint in [
            CounterResetHint::Unknown,
            CounterResetHint::Reset,
            CounterResetHint::NotReset,
            CounterResetHint::Gauge,
        ] {
            let entry = format!("'{}' = {}", hint.as_str(), hint as i8);
            assert!(column.contains(&entry), "{column} lacks {entry}");
        }
    }

    #[test]
    fn staleness_and_bitwise_sameness() {
        let stale = histogram(stale_nan());
        assert!(stale.is_stale());
        assert!(stale.same_as(&histogram(stale_nan())));
        assert!(!stale.same_as(&histogram(f64::NAN)));
        assert!(!histogram(1.0).is_stale());
    }

    #[test]
    fn integer_counts_as_floats() {
        let h = histogram(1.0);
        assert_eq!(
            h.counts.to_float(),
            HistogramCounts::Float {
                count: 3.0,
                zero_count: 0.0,
                positive: vec![1.0, 2.0],
                negative: vec![],
            }
        );
        let f = h.counts.to_float();
        assert_eq!(f.to_float(), f);
    }

    #[test]
    fn rows_fill_the_flavour_columns() {
        let h = histogram(2.5);
        let row = HistogramRowRef::new("x", 7, &h);
        assert!(!row.float_histogram);
        assert_eq!(row.count, 3);
        assert_eq!(row.positive_counts, &[1, 2]);
        assert!(row.positive_counts_float.is_empty());
        let f = NativeHistogram {
            counts: HistogramCounts::Float {
                count: 3.5,
                zero_count: 0.5,
                positive: vec![1.0, 2.0],
                negative: vec![],
            },
            ..h
        };
        let row = HistogramRowRef::new("x", 7, &f);
        assert!(row.float_histogram);
        assert_eq!((row.count, row.count_float), (0, 3.5));
        assert_eq!(row.positive_counts_float, &[1.0, 2.0]);
    }
}
