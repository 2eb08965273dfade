//! OTLP exponential histogram points as native histograms, as
//! Prometheus's OTLP receiver converts them (`exponentialToNativeHistogram`
//! and `convertBucketsLayout` in its `otlptranslator`): the scale becomes
//! the schema (scales above 8 merge buckets down to schema 8, below -4 are
//! refused), OTLP bucket `i` (the range `(base^i, base^(i+1)]`) becomes
//! Prometheus's bucket `i + 1`, the zero threshold is Prometheus's
//! default, and delta points are gauge histograms.
//!
//! The point is put in remote-write's form, spans and deltas laid out as
//! Prometheus lays them out, and then decoded and validated by the same
//! code as a remote-write histogram.

use comet_schema::NativeHistogram;
use comet_schema::histogram::{EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN};
use comet_schema::model::stale_nan;
use comet_schema::prompb::v1::{self, BucketSpan, histogram::Count, histogram::ZeroCount};
use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, ExponentialHistogramDataPoint,
};
use thiserror::Error;

use crate::remote_write::histogram::{HistogramError, decode_histogram};

/// Prometheus's zero threshold for converted points (OTLP's own is not
/// read, as in Prometheus).
const ZERO_THRESHOLD: f64 = 1e-128;

/// Prometheus's counter-reset hints, as remote-write numbers them.
const UNKNOWN_RESET: i32 = 0;
const GAUGE: i32 = 3;

/// Why a point cannot be a native histogram.
#[derive(Debug, Error)]
pub enum NativeError {
    #[error(
        "cannot convert exponential to native histogram: scale must be >= {EXPONENTIAL_SCHEMA_MIN}, was {0}"
    )]
    ScaleTooSmall(i32),
    #[error("{0}")]
    Invalid(#[from] HistogramError),
}

impl NativeError {
    /// The rejection reason for counters and partial success.
    pub fn reason(&self) -> &'static str {
        match self {
            NativeError::ScaleTooSmall(_) => "exponential_scale_too_small",
            NativeError::Invalid(e) => e.reason(),
        }
    }
}

/// The native histogram of one exponential histogram point at `ts_ms`.
pub fn exponential_to_native(
    p: &ExponentialHistogramDataPoint,
    temporality: i32,
    ts_ms: i64,
    stale: bool,
) -> Result<NativeHistogram, NativeError> {
    if p.scale < EXPONENTIAL_SCHEMA_MIN {
        return Err(NativeError::ScaleTooSmall(p.scale));
    }
    let scale_down = (p.scale - EXPONENTIAL_SCHEMA_MAX).max(0);
    let schema = p.scale.min(EXPONENTIAL_SCHEMA_MAX);
    let layout = |b: Option<&Buckets>| {
        b.map_or_else(
            || (Vec::new(), Vec::new()),
            |b| buckets_layout(&b.bucket_counts, b.offset, scale_down),
        )
    };
    let (positive_spans, positive_deltas) = layout(p.positive.as_ref());
    let (negative_spans, negative_deltas) = layout(p.negative.as_ref());
    let reset_hint = if temporality == AggregationTemporality::Delta as i32 {
        GAUGE
    } else {
        UNKNOWN_RESET
    };
    let h = if stale {
        // The staleness marker: no observations, the stale NaN sum.
        v1::Histogram {
            count: Some(Count::CountInt(0)),
            sum: stale_nan(),
            schema,
            zero_threshold: ZERO_THRESHOLD,
            zero_count: Some(ZeroCount::ZeroCountInt(0)),
            reset_hint,
            timestamp: ts_ms,
            ..Default::default()
        }
    } else {
        v1::Histogram {
            count: Some(Count::CountInt(p.count)),
            sum: p.sum.unwrap_or(0.0),
            schema,
            zero_threshold: ZERO_THRESHOLD,
            zero_count: Some(ZeroCount::ZeroCountInt(p.zero_count)),
            negative_spans,
            negative_deltas,
            positive_spans,
            positive_deltas,
            reset_hint,
            timestamp: ts_ms,
            start_timestamp: (p.start_time_unix_nano / 1_000_000) as i64,
            ..Default::default()
        }
    };
    Ok(decode_histogram(&h, 0)?)
}

/// OTLP's dense bucket counts from `offset` as Prometheus's spans and
/// deltas, `2^scale_down` buckets merged into one and indexes moved up by
/// one; gaps of up to two empty buckets are filled in, longer ones start a
/// new span (client_golang's layout, which Prometheus follows).
fn buckets_layout(counts: &[u64], offset: i32, scale_down: i32) -> (Vec<BucketSpan>, Vec<i64>) {
    if counts.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let merged = |i: i32| ((i + offset) >> scale_down) + 1;
    let mut spans = vec![BucketSpan {
        offset: (offset >> scale_down) + 1,
        length: 0,
    }];
    let mut deltas: Vec<i64> = Vec::new();
    let mut previous: i64 = 0;
    let mut append = |spans: &mut Vec<BucketSpan>, deltas: &mut Vec<i64>, count: i64| {
        if let Some(last) = spans.last_mut() {
            last.length += 1;
        }
        deltas.push(count.wrapping_sub(previous));
        previous = count;
    };
    let mut close = |spans: &mut Vec<BucketSpan>, deltas: &mut Vec<i64>, gap: i32, count: i64| {
        if gap > 2 {
            spans.push(BucketSpan {
                offset: gap,
                length: 0,
            });
        } else {
            for _ in 0..gap.max(0) {
                append(spans, deltas, 0);
            }
        }
        append(spans, deltas, count);
    };
    let mut bucket = (offset >> scale_down) + 1;
    let mut count: i64 = 0;
    for (i, c) in counts.iter().enumerate() {
        let c = i64::try_from(*c).unwrap_or(i64::MAX);
        let next = merged(i as i32);
        if next == bucket {
            count = count.wrapping_add(c);
            continue;
        }
        if count == 0 {
            count = c;
            continue;
        }
        close(&mut spans, &mut deltas, next - bucket - 1, count);
        count = c;
        bucket = next;
    }
    let last = merged(counts.len() as i32 - 1);
    close(&mut spans, &mut deltas, last - bucket, count);
    (spans, deltas)
}

#[cfg(test)]
mod tests {
    use comet_schema::{CounterResetHint, HistogramCounts};

    use super::*;

    fn point(
        scale: i32,
        offset: i32,
        counts: &[u64],
        negative: &[u64],
    ) -> ExponentialHistogramDataPoint {
        let total: u64 = counts.iter().chain(negative).sum::<u64>() + 1;
        ExponentialHistogramDataPoint {
            scale,
            count: total,
            sum: Some(10.0),
            zero_count: 1,
            positive: Some(Buckets {
                offset,
                bucket_counts: counts.to_vec(),
            }),
            negative: Some(Buckets {
                offset,
                bucket_counts: negative.to_vec(),
            }),
            start_time_unix_nano: 5_000_000,
            ..Default::default()
        }
    }

    fn buckets(h: &NativeHistogram) -> (Vec<i32>, Vec<u64>, Vec<i32>, Vec<u64>) {
        let HistogramCounts::Integer {
            positive, negative, ..
        } = &h.counts
        else {
            panic!("an integer histogram")
        };
        (
            h.positive_index.clone(),
            positive.clone(),
            h.negative_index.clone(),
            negative.clone(),
        )
    }

    const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;
    const DELTA: i32 = AggregationTemporality::Delta as i32;

    #[test]
    fn buckets_move_up_by_one_and_keep_the_scale() {
        let h = exponential_to_native(&point(3, -2, &[1, 2, 0, 3], &[4]), CUMULATIVE, 1_000, false)
            .unwrap();
        assert_eq!(h.schema, 3);
        assert_eq!(h.zero_threshold, ZERO_THRESHOLD);
        assert_eq!(h.start_timestamp_ms, 5);
        assert_eq!(h.reset_hint, CounterResetHint::Unknown);
        // OTLP buckets -2..=1 are Prometheus's -1..=2; an empty bucket
        // inside the run stays.
        assert_eq!(
            buckets(&h),
            (vec![-1, 0, 1, 2], vec![1, 2, 0, 3], vec![-1], vec![4])
        );
    }

    #[test]
    fn scales_above_8_merge_buckets() {
        // Scale 9 to 8 merges pairs: OTLP 0..=3 are (0,1), (2,3) -> 0, 1,
        // then moved up by one.
        let h = exponential_to_native(&point(9, 0, &[1, 2, 3, 4], &[]), CUMULATIVE, 1_000, false)
            .unwrap();
        assert_eq!(h.schema, 8);
        assert_eq!(buckets(&h).0, vec![1, 2]);
        assert_eq!(buckets(&h).1, vec![3, 7]);
    }

    #[test]
    fn long_gaps_start_a_new_span() {
        let h = exponential_to_native(
            &point(0, 0, &[1, 0, 0, 0, 0, 2], &[]),
            CUMULATIVE,
            1_000,
            false,
        )
        .unwrap();
        assert_eq!(buckets(&h).0, vec![1, 6]);
        assert_eq!(buckets(&h).1, vec![1, 2]);
    }

    #[test]
    fn deltas_are_gauges_and_staleness_is_kept() {
        let p = point(0, 0, &[1], &[]);
        let h = exponential_to_native(&p, DELTA, 1_000, false).unwrap();
        assert_eq!(h.reset_hint, CounterResetHint::Gauge);
        let stale = exponential_to_native(&p, CUMULATIVE, 2_000, true).unwrap();
        assert!(stale.is_stale());
    }

    #[test]
    fn bad_points_are_refused() {
        let err =
            exponential_to_native(&point(-5, 0, &[1], &[]), CUMULATIVE, 1_000, false).unwrap_err();
        assert_eq!(err.reason(), "exponential_scale_too_small");
        let mut wrong_count = point(0, 0, &[1, 2], &[]);
        wrong_count.count = 100;
        assert!(exponential_to_native(&wrong_count, CUMULATIVE, 1_000, false).is_err());
    }
}
