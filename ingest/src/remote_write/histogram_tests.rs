//! Decoding and Prometheus's validation of remote-write histograms.

use super::*;
use comet_schema::model::{STALE_NAN_BITS, stale_nan};
use comet_schema::prompb::v1::BucketSpan;

fn spans(pairs: &[(i32, u32)]) -> Vec<BucketSpan> {
    pairs
        .iter()
        .map(|&(offset, length)| BucketSpan { offset, length })
        .collect()
}

/// An integer histogram: schema 0, positive buckets -2, -1, 3 with counts
/// 1, 3, 2 (deltas 1, 2, -1), negative buckets 0, 1 with 2, 1, zero
/// bucket 4: 13 observations.
fn integer() -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(13)),
        sum: 42.5,
        schema: 0,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(4)),
        negative_spans: spans(&[(0, 2)]),
        negative_deltas: vec![2, -1],
        positive_spans: spans(&[(-2, 2), (3, 1)]),
        positive_deltas: vec![1, 2, -1],
        reset_hint: 3,
        timestamp: 1_700_000_000_000,
        ..Default::default()
    }
}

fn float() -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountFloat(7.5)),
        sum: -3.25,
        schema: 2,
        zero_threshold: 1e-9,
        zero_count: Some(ZeroCount::ZeroCountFloat(0.5)),
        negative_spans: spans(&[(-1, 1)]),
        negative_counts: vec![1.5],
        positive_spans: spans(&[(5, 1), (0, 2)]),
        positive_counts: vec![2.0, 0.0, 3.5],
        reset_hint: 1,
        timestamp: 5,
        ..Default::default()
    }
}

fn custom() -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(6)),
        sum: 2.0,
        schema: -53,
        positive_spans: spans(&[(0, 2), (1, 1)]),
        positive_deltas: vec![1, 1, 1],
        custom_values: vec![0.1, 0.5, 1.0],
        timestamp: 9,
        ..Default::default()
    }
}

fn error(h: &v1::Histogram) -> HistogramError {
    decode_histogram(h, 0).unwrap_err()
}

#[test]
fn integer_spans_and_deltas_become_absolute_indexes_and_counts() {
    let h = decode_histogram(&integer(), 0).unwrap();
    assert_eq!(h.schema, 0);
    assert_eq!(h.timestamp_ms, 1_700_000_000_000);
    assert_eq!(h.start_timestamp_ms, 0);
    assert_eq!(h.reset_hint, CounterResetHint::Gauge);
    assert_eq!(h.zero_threshold, 0.001);
    assert_eq!(h.sum, 42.5);
    assert_eq!(h.positive_index, vec![-2, -1, 3]);
    assert_eq!(h.negative_index, vec![0, 1]);
    assert_eq!(
        h.counts,
        HistogramCounts::Integer {
            count: 13,
            zero_count: 4,
            positive: vec![1, 3, 2],
            negative: vec![2, 1],
        }
    );
    assert!(h.custom_values.is_empty());
}

#[test]
fn empty_buckets_are_kept_as_received() {
    let mut h = integer();
    // Bucket 3's neighbour 2 is sent, empty: the layout stays.
    h.positive_spans = spans(&[(-2, 2), (2, 2)]);
    h.positive_deltas = vec![1, 2, -3, 2];
    let h = decode_histogram(&h, 0).unwrap();
    assert_eq!(h.positive_index, vec![-2, -1, 2, 3]);
    let HistogramCounts::Integer { positive, .. } = h.counts else {
        panic!("integer")
    };
    assert_eq!(positive, vec![1, 3, 0, 2]);
}

#[test]
fn float_histograms_keep_absolute_counts() {
    let h = decode_histogram(&float(), 0).unwrap();
    assert_eq!(h.schema, 2);
    assert_eq!(h.reset_hint, CounterResetHint::Reset);
    assert_eq!(h.positive_index, vec![5, 6, 7]);
    assert_eq!(h.negative_index, vec![-1]);
    assert_eq!(
        h.counts,
        HistogramCounts::Float {
            count: 7.5,
            zero_count: 0.5,
            positive: vec![2.0, 0.0, 3.5],
            negative: vec![1.5],
        }
    );
}

#[test]
fn custom_buckets_carry_their_bounds() {
    let h = decode_histogram(&custom(), 0).unwrap();
    assert_eq!(h.schema, -53);
    // Index 3 is the +Inf bucket (one past the last bound).
    assert_eq!(h.positive_index, vec![0, 1, 3]);
    assert_eq!(h.custom_values, vec![0.1, 0.5, 1.0]);
    assert_eq!(
        h.counts,
        HistogramCounts::Integer {
            count: 6,
            zero_count: 0,
            positive: vec![1, 2, 3],
            negative: vec![],
        }
    );
}

#[test]
fn schemas_above_8_are_reduced_to_8() {
    // Schema 9, buckets 1..=5 and -1, 0: pairs merge ((i - 1) >> 1) + 1.
    let h = v1::Histogram {
        count: Some(Count::CountInt(19)),
        sum: 1.0,
        schema: 9,
        positive_spans: spans(&[(1, 5)]),
        positive_deltas: vec![1, 1, 1, 1, 1],
        negative_spans: spans(&[(-1, 2)]),
        negative_deltas: vec![1, 2],
        ..Default::default()
    };
    let h = decode_histogram(&h, 0).unwrap();
    assert_eq!(h.schema, 8);
    assert_eq!(h.positive_index, vec![1, 2, 3]);
    assert_eq!(h.negative_index, vec![0]);
    assert_eq!(
        h.counts,
        HistogramCounts::Integer {
            count: 19,
            zero_count: 0,
            positive: vec![3, 7, 5],
            negative: vec![4],
        }
    );

    // Schema 12 (four steps) on a float histogram with a gap.
    let h = v1::Histogram {
        count: Some(Count::CountFloat(4.0)),
        schema: 12,
        positive_spans: spans(&[(16, 2), (15, 1)]),
        positive_counts: vec![1.0, 1.5, 1.5],
        ..Default::default()
    };
    let h = decode_histogram(&h, 0).unwrap();
    assert_eq!(h.schema, 8);
    // 16 -> 1, 17 -> 2, 33 -> 3.
    assert_eq!(h.positive_index, vec![1, 2, 3]);

    // Negative absolute counts that merge into a non-negative bucket pass,
    // as in Prometheus, which validates after reducing.
    let h = v1::Histogram {
        count: Some(Count::CountInt(3)),
        schema: 9,
        positive_spans: spans(&[(1, 2)]),
        positive_deltas: vec![5, -7],
        ..Default::default()
    };
    let h = decode_histogram(&h, 0).unwrap();
    assert_eq!(h.positive_index, vec![1]);

    // 52 is the largest schema reduced; above is invalid.
    let mut h = integer();
    h.schema = 52;
    h.positive_spans = spans(&[(1, 1)]);
    h.positive_deltas = vec![6];
    h.negative_spans.clear();
    h.negative_deltas.clear();
    h.count = Some(Count::CountInt(10));
    assert_eq!(decode_histogram(&h, 0).unwrap().schema, 8);
    h.schema = 53;
    assert_eq!(error(&h), HistogramError::InvalidSchema(53));
}

#[test]
fn invalid_schemas() {
    for schema in [-5, -9, -52, -54, 53, i32::MAX, i32::MIN] {
        let mut h = integer();
        h.schema = schema;
        let err = error(&h);
        assert_eq!(err, HistogramError::InvalidSchema(schema));
        assert_eq!(err.reason(), "histogram_invalid_schema");
        assert!(err.to_string().contains(&format!("got schema {schema}")));
    }
}

#[test]
fn start_timestamps_and_staleness() {
    let mut h = integer();
    assert_eq!(decode_histogram(&h, 777).unwrap().start_timestamp_ms, 777);
    h.start_timestamp = 555;
    assert_eq!(decode_histogram(&h, 777).unwrap().start_timestamp_ms, 555);

    // Prometheus's stale histogram: the stale NaN as sum, nothing else.
    let stale = v1::Histogram {
        sum: stale_nan(),
        timestamp: 3,
        ..Default::default()
    };
    let h = decode_histogram(&stale, 0).unwrap();
    assert!(h.is_stale());
    assert_eq!(h.sum.to_bits(), STALE_NAN_BITS);
    let float_stale = v1::Histogram {
        count: Some(Count::CountFloat(0.0)),
        sum: stale_nan(),
        ..Default::default()
    };
    assert!(decode_histogram(&float_stale, 0).unwrap().is_stale());
}

#[test]
fn span_errors() {
    let mut h = integer();
    h.positive_spans = spans(&[(-2, 2), (-1, 1)]);
    let err = error(&h);
    assert_eq!(
        err,
        HistogramError::SpanNegativeOffset {
            side: Side::Positive,
            span: 2,
            offset: -1
        }
    );
    assert_eq!(err.reason(), "histogram_span_negative_offset");
    assert!(err.to_string().starts_with("positive side: span number 2"));

    let mut h = integer();
    h.negative_spans = spans(&[(0, 3)]);
    let err = error(&h);
    assert_eq!(
        err,
        HistogramError::SpansBucketsMismatch {
            side: Side::Negative,
            need: 3,
            have: 2
        }
    );
    assert_eq!(err.reason(), "histogram_spans_buckets_mismatch");

    // A float histogram's counts must match its spans too; an integer
    // histogram's float counts are not its buckets.
    let mut h = float();
    h.positive_counts.pop();
    assert_eq!(error(&h).reason(), "histogram_spans_buckets_mismatch");
    let mut h = integer();
    h.positive_counts = vec![1.0, 3.0, 2.0];
    h.positive_deltas.clear();
    assert_eq!(error(&h).reason(), "histogram_spans_buckets_mismatch");

    // Huge span lengths are refused before anything is allocated.
    let mut h = integer();
    h.positive_spans = spans(&[(0, u32::MAX), (0, u32::MAX)]);
    assert_eq!(error(&h).reason(), "histogram_spans_buckets_mismatch");

    let mut h = integer();
    h.positive_spans = spans(&[(i32::MAX, 2), (0, 1)]);
    assert_eq!(
        error(&h),
        HistogramError::IndexOutOfRange {
            side: Side::Positive
        }
    );
}

#[test]
fn bucket_and_count_errors() {
    let mut h = integer();
    h.positive_deltas = vec![1, -2, 3];
    let err = error(&h);
    assert_eq!(
        err,
        HistogramError::NegativeBucketCount {
            side: Side::Positive,
            bucket: 2,
            count: -1.0
        }
    );
    assert!(
        err.to_string()
            .starts_with("positive side: bucket number 2 has observation count of -1:")
    );
    assert_eq!(err.reason(), "histogram_negative_bucket_count");

    let mut h = integer();
    h.negative_deltas = vec![-1, 1];
    assert_eq!(
        error(&h),
        HistogramError::NegativeBucketCount {
            side: Side::Negative,
            bucket: 1,
            count: -1.0
        }
    );

    let mut h = integer();
    h.count = Some(Count::CountInt(12));
    let err = error(&h);
    assert_eq!(
        err,
        HistogramError::CountMismatch {
            in_buckets: 13,
            count: 12
        }
    );
    assert_eq!(err.reason(), "histogram_count_mismatch");
    h.count = Some(Count::CountInt(14));
    assert_eq!(error(&h).reason(), "histogram_count_mismatch");

    // With a NaN sum (NaN observations), the count may exceed the buckets.
    let mut h = integer();
    h.sum = f64::NAN;
    h.count = Some(Count::CountInt(20));
    assert!(decode_histogram(&h, 0).is_ok());
    h.count = Some(Count::CountInt(12));
    let err = error(&h);
    assert_eq!(
        err,
        HistogramError::CountNotBigEnough {
            in_buckets: 13,
            count: 12
        }
    );
    assert_eq!(err.reason(), "histogram_count_not_big_enough");

    // Floats: negative counts anywhere; the count is not compared.
    let mut h = float();
    h.count = Some(Count::CountFloat(100.0));
    assert!(decode_histogram(&h, 0).is_ok());
    h.count = Some(Count::CountFloat(-1.0));
    let err = error(&h);
    assert_eq!(err, HistogramError::NegativeCount(-1.0));
    assert_eq!(err.reason(), "histogram_negative_count");
    let mut h = float();
    h.zero_count = Some(ZeroCount::ZeroCountFloat(-0.5));
    assert_eq!(error(&h), HistogramError::NegativeZeroCount(-0.5));
    let mut h = float();
    h.negative_counts = vec![-1.5];
    assert_eq!(error(&h).reason(), "histogram_negative_bucket_count");
    let mut h = float();
    h.positive_counts = vec![1.0, f64::NAN, -2.0];
    assert_eq!(
        error(&h),
        HistogramError::NegativeBucketCount {
            side: Side::Positive,
            bucket: 3,
            count: -2.0
        }
    );

    let mut h = integer();
    h.custom_values = vec![1.0];
    let err = error(&h);
    assert_eq!(err, HistogramError::ExponentialSchemaCustomBounds);
    assert_eq!(err.reason(), "histogram_exponential_schema_custom_bounds");
}

#[test]
fn custom_bucket_errors() {
    /// A change to the valid custom-bucket histogram, the error, its reason.
    type Case = (fn(&mut v1::Histogram), HistogramError, &'static str);
    let cases: Vec<Case> = vec![
        (
            |h| h.custom_values = vec![0.1, f64::NAN, 1.0],
            HistogramError::CustomBoundsNaN,
            "histogram_custom_bounds_nan",
        ),
        (
            |h| h.custom_values = vec![0.1, 0.1, 1.0],
            HistogramError::CustomBoundsNotIncreasing {
                previous: 0.1,
                current: 0.1,
            },
            "histogram_custom_bounds_not_increasing",
        ),
        (
            |h| h.custom_values = vec![0.1, 0.5, f64::INFINITY],
            HistogramError::CustomBoundsInfinite,
            "histogram_custom_bounds_infinite",
        ),
        (
            |h| h.custom_values = vec![0.1, 0.5],
            HistogramError::CustomBoundsTooFew {
                bounds: 2,
                span_length: 4,
            },
            "histogram_custom_bounds_too_few",
        ),
        (
            |h| h.positive_spans = spans(&[(-1, 2), (1, 1)]),
            HistogramError::SpanNegativeOffset {
                side: Side::Positive,
                span: 1,
                offset: -1,
            },
            "histogram_span_negative_offset",
        ),
        (
            |h| {
                h.zero_count = Some(ZeroCount::ZeroCountInt(1));
                h.count = Some(Count::CountInt(7));
            },
            HistogramError::CustomBucketsZeroCount,
            "histogram_custom_buckets_zero_count",
        ),
        (
            |h| h.zero_threshold = 0.001,
            HistogramError::CustomBucketsZeroThreshold,
            "histogram_custom_buckets_zero_threshold",
        ),
        (
            |h| h.negative_spans = spans(&[(0, 1)]),
            HistogramError::CustomBucketsNegativeSpans,
            "histogram_custom_buckets_negative_spans",
        ),
        (
            |h| h.negative_deltas = vec![1],
            HistogramError::CustomBucketsNegativeBuckets,
            "histogram_custom_buckets_negative_buckets",
        ),
        (
            |h| h.positive_deltas = vec![1, 1, -3],
            HistogramError::NegativeBucketCount {
                side: Side::Positive,
                bucket: 3,
                count: -1.0,
            },
            "histogram_negative_bucket_count",
        ),
        (
            |h| h.count = Some(Count::CountInt(5)),
            HistogramError::CountMismatch {
                in_buckets: 6,
                count: 5,
            },
            "histogram_count_mismatch",
        ),
    ];
    for (change, expected, reason) in cases {
        let mut h = custom();
        change(&mut h);
        let err = error(&h);
        assert_eq!(err, expected, "{reason}");
        assert_eq!(err.reason(), reason);
    }
    // The +Inf bucket (index = number of bounds) is allowed, one past is not.
    let mut h = custom();
    h.positive_spans = spans(&[(0, 2), (2, 1)]);
    assert_eq!(error(&h).reason(), "histogram_custom_bounds_too_few");
    // Float custom buckets.
    let h = v1::Histogram {
        count: Some(Count::CountFloat(2.5)),
        schema: -53,
        positive_spans: spans(&[(1, 1)]),
        positive_counts: vec![2.5],
        custom_values: vec![1.0],
        ..Default::default()
    };
    let decoded = decode_histogram(&h, 0).unwrap();
    assert_eq!(decoded.positive_index, vec![1]);
    let mut bad = h;
    bad.zero_count = Some(ZeroCount::ZeroCountFloat(f64::NAN));
    assert_eq!(error(&bad), HistogramError::CustomBucketsZeroCount);
}
