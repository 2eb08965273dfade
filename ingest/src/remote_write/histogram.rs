//! Remote-write native histograms (1.0 and 2.0 share the message) to
//! [`NativeHistogram`]s: spans and deltas (integer histograms) or spans and
//! absolute counts (float histograms) become absolute indexes with absolute
//! counts, schemas 9..=52 are reduced to 8, and the result is validated as
//! Prometheus validates it (`model/histogram` `Validate`,
//! `storage/remote/write_handler.go`), with the same checks in the same
//! order, so the same histograms are refused for the same reason.

use comet_schema::histogram::{
    CUSTOM_BUCKETS_SCHEMA, EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN,
};
use comet_schema::prompb::v1::{self, histogram::Count, histogram::ZeroCount};
use comet_schema::{CounterResetHint, HistogramCounts, NativeHistogram};
use thiserror::Error;

/// Schemas above 8 that Prometheus accepts and reduces to 8 on receive.
const RESERVED_SCHEMA_MAX: i32 = 52;

/// Which bucket side an error is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Positive,
    Negative,
}

impl std::fmt::Display for Side {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Side::Positive => "positive side",
            Side::Negative => "negative side",
        })
    }
}

/// Why a histogram was refused. The messages follow Prometheus's.
#[derive(Debug, Clone, PartialEq, Error)]
pub enum HistogramError {
    #[error(
        "histogram has an invalid schema, which must be between -4 and 8 for exponential \
         buckets, or -53 for custom buckets, got schema {0}"
    )]
    InvalidSchema(i32),
    #[error(
        "{side}: span number {span} with offset {offset}: histogram has a span whose offset is negative"
    )]
    SpanNegativeOffset {
        side: Side,
        span: usize,
        offset: i32,
    },
    #[error(
        "{side}: spans need {need} buckets, have {have} buckets: histogram spans specify \
         different number of buckets than provided"
    )]
    SpansBucketsMismatch { side: Side, need: u64, have: usize },
    #[error("{side}: bucket index does not fit in 32 bits")]
    IndexOutOfRange { side: Side },
    #[error(
        "{side}: bucket number {bucket} has observation count of {count}: histogram has a \
         bucket whose observation count is negative"
    )]
    NegativeBucketCount {
        side: Side,
        bucket: usize,
        count: f64,
    },
    #[error(
        "zero bucket has observation count of {0}: histogram has a bucket whose observation \
         count is negative"
    )]
    NegativeZeroCount(f64),
    #[error("observation count is {0}: histogram's observation count is negative")]
    NegativeCount(f64),
    #[error(
        "{in_buckets} observations found in buckets, but the Count field is {count}: \
         histogram's observation count should equal the number of observations found in the \
         buckets (in absence of NaN)"
    )]
    CountMismatch { in_buckets: u64, count: u64 },
    #[error(
        "{in_buckets} observations found in buckets, but the Count field is {count}: \
         histogram's observation count should be at least the number of observations found \
         in the buckets"
    )]
    CountNotBigEnough { in_buckets: u64, count: u64 },
    #[error("custom buckets: histogram custom bounds must not be NaN")]
    CustomBoundsNaN,
    #[error(
        "custom buckets: previous bound is {previous} and current is {current}: histogram \
         custom bounds must be in strictly increasing order"
    )]
    CustomBoundsNotIncreasing { previous: f64, current: f64 },
    #[error(
        "custom buckets: last +Inf bound must not be explicitly defined: histogram custom \
         bounds must be finite"
    )]
    CustomBoundsInfinite,
    #[error(
        "custom buckets: only {bounds} custom bounds defined which is insufficient to cover \
         total span length of {span_length}: histogram custom bounds are too few"
    )]
    CustomBoundsTooFew { bounds: usize, span_length: i64 },
    #[error("custom buckets: must have zero count of 0")]
    CustomBucketsZeroCount,
    #[error("custom buckets: must have zero threshold of 0")]
    CustomBucketsZeroThreshold,
    #[error("custom buckets: must not have negative spans")]
    CustomBucketsNegativeSpans,
    #[error("custom buckets: must not have negative buckets")]
    CustomBucketsNegativeBuckets,
    #[error("histogram with exponential schema must not have custom bounds")]
    ExponentialSchemaCustomBounds,
}

impl HistogramError {
    /// The `reason` label of the rejection counters.
    pub fn reason(&self) -> &'static str {
        match self {
            HistogramError::InvalidSchema(_) => "histogram_invalid_schema",
            HistogramError::SpanNegativeOffset { .. } => "histogram_span_negative_offset",
            HistogramError::SpansBucketsMismatch { .. } => "histogram_spans_buckets_mismatch",
            HistogramError::IndexOutOfRange { .. } => "histogram_index_out_of_range",
            HistogramError::NegativeBucketCount { .. } | HistogramError::NegativeZeroCount(_) => {
                "histogram_negative_bucket_count"
            }
            HistogramError::NegativeCount(_) => "histogram_negative_count",
            HistogramError::CountMismatch { .. } => "histogram_count_mismatch",
            HistogramError::CountNotBigEnough { .. } => "histogram_count_not_big_enough",
            HistogramError::CustomBoundsNaN => "histogram_custom_bounds_nan",
            HistogramError::CustomBoundsNotIncreasing { .. } => {
                "histogram_custom_bounds_not_increasing"
            }
            HistogramError::CustomBoundsInfinite => "histogram_custom_bounds_infinite",
            HistogramError::CustomBoundsTooFew { .. } => "histogram_custom_bounds_too_few",
            HistogramError::CustomBucketsZeroCount => "histogram_custom_buckets_zero_count",
            HistogramError::CustomBucketsZeroThreshold => "histogram_custom_buckets_zero_threshold",
            HistogramError::CustomBucketsNegativeSpans => "histogram_custom_buckets_negative_spans",
            HistogramError::CustomBucketsNegativeBuckets => {
                "histogram_custom_buckets_negative_buckets"
            }
            HistogramError::ExponentialSchemaCustomBounds => {
                "histogram_exponential_schema_custom_bounds"
            }
        }
    }
}

/// Absolute indexes and counts of one side, as received (integer counts
/// are i64 here: negative ones are refused after schema reduction, as
/// Prometheus validates after reducing).
struct Buckets<T> {
    index: Vec<i32>,
    counts: Vec<T>,
}

/// Decodes and validates one histogram. `series_start_ms` is the series'
/// created timestamp (older 2.0 senders), used when the histogram carries
/// no start timestamp of its own.
pub fn decode_histogram(
    h: &v1::Histogram,
    series_start_ms: i64,
) -> Result<NativeHistogram, HistogramError> {
    let custom = h.schema == CUSTOM_BUCKETS_SCHEMA;
    let reduce = h.schema > EXPONENTIAL_SCHEMA_MAX && h.schema <= RESERVED_SCHEMA_MAX;
    let exponential = (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&h.schema);
    if !(custom || reduce || exponential) {
        return Err(HistogramError::InvalidSchema(h.schema));
    }
    if custom {
        check_custom_bounds(&h.custom_values)?;
    }
    let float = matches!(h.count, Some(Count::CountFloat(_)));
    let schema = if reduce {
        EXPONENTIAL_SCHEMA_MAX
    } else {
        h.schema
    };
    let (counts, positive_index, negative_index) = if float {
        let (positive, negative) = reduced_sides(
            h,
            &h.positive_counts,
            &h.negative_counts,
            custom,
            reduce,
            |a, b| a + b,
        )?;
        let count = match h.count {
            Some(Count::CountFloat(c)) => c,
            _ => 0.0,
        };
        let zero_count = match h.zero_count {
            Some(ZeroCount::ZeroCountFloat(z)) => z,
            _ => 0.0,
        };
        validate_float(
            count,
            zero_count,
            &positive.counts,
            &negative.counts,
            h,
            custom,
        )?;
        let counts = HistogramCounts::Float {
            count,
            zero_count,
            positive: positive.counts,
            negative: negative.counts,
        };
        (counts, positive.index, negative.index)
    } else {
        let (positive_counts, negative_counts) =
            (cumulate(&h.positive_deltas), cumulate(&h.negative_deltas));
        let (positive, negative) = reduced_sides(
            h,
            &positive_counts,
            &negative_counts,
            custom,
            reduce,
            i64::wrapping_add,
        )?;
        let count = match h.count {
            Some(Count::CountInt(c)) => c,
            _ => 0,
        };
        let zero_count = match h.zero_count {
            Some(ZeroCount::ZeroCountInt(z)) => z,
            _ => 0,
        };
        validate_integer(
            count,
            zero_count,
            &positive.counts,
            &negative.counts,
            h,
            custom,
        )?;
        // Every count is now known to be non-negative.
        let unsigned = |v: Vec<i64>| v.into_iter().map(|c| c as u64).collect();
        let counts = HistogramCounts::Integer {
            count,
            zero_count,
            positive: unsigned(positive.counts),
            negative: unsigned(negative.counts),
        };
        (counts, positive.index, negative.index)
    };
    Ok(NativeHistogram {
        timestamp_ms: h.timestamp,
        start_timestamp_ms: if h.start_timestamp != 0 {
            h.start_timestamp
        } else {
            series_start_ms
        },
        // -53, or -4..=8 after reduction: fits.
        schema: i8::try_from(schema).unwrap_or(i8::MIN),
        reset_hint: CounterResetHint::from_wire(h.reset_hint),
        zero_threshold: h.zero_threshold,
        sum: h.sum,
        positive_index,
        negative_index,
        counts,
        custom_values: h.custom_values.clone(),
    })
}

/// Both sides' buckets. Custom buckets have no negative side: whatever is
/// there is refused later, with custom buckets' own error, as Prometheus
/// does.
fn sides<T: Copy>(
    h: &v1::Histogram,
    positive: &[T],
    negative: &[T],
    custom: bool,
) -> Result<(Buckets<T>, Buckets<T>), HistogramError> {
    let positive = expand(Side::Positive, &h.positive_spans, positive, custom)?;
    let negative = if custom {
        Buckets {
            index: Vec::new(),
            counts: Vec::new(),
        }
    } else {
        expand(Side::Negative, &h.negative_spans, negative, false)?
    };
    Ok((positive, negative))
}

/// [`sides`], reduced to schema 8 when `reduce` (buckets that merge are
/// added with `add`).
fn reduced_sides<T: Copy>(
    h: &v1::Histogram,
    positive: &[T],
    negative: &[T],
    custom: bool,
    reduce: bool,
    add: impl Fn(T, T) -> T + Copy,
) -> Result<(Buckets<T>, Buckets<T>), HistogramError> {
    let (positive, negative) = sides(h, positive, negative, custom)?;
    if !reduce {
        return Ok((positive, negative));
    }
    Ok((
        reduce_resolution(positive, h.schema, add),
        reduce_resolution(negative, h.schema, add),
    ))
}

/// Deltas to absolute counts, wrapping as Go's int64 does.
fn cumulate(deltas: &[i64]) -> Vec<i64> {
    let mut last = 0i64;
    deltas
        .iter()
        .map(|d| {
            last = last.wrapping_add(*d);
            last
        })
        .collect()
}

/// Spans to absolute indexes, checked as `checkHistogramSpans` (every span
/// but the first has a non-negative offset; custom buckets: every span)
/// and against the number of counts before anything is allocated.
fn expand<T: Copy>(
    side: Side,
    spans: &[v1::BucketSpan],
    counts: &[T],
    custom: bool,
) -> Result<Buckets<T>, HistogramError> {
    let mut need = 0u64;
    for (n, span) in spans.iter().enumerate() {
        if (n > 0 || custom) && span.offset < 0 {
            return Err(HistogramError::SpanNegativeOffset {
                side,
                span: n + 1,
                offset: span.offset,
            });
        }
        need += u64::from(span.length);
    }
    if need != counts.len() as u64 {
        return Err(HistogramError::SpansBucketsMismatch {
            side,
            need,
            have: counts.len(),
        });
    }
    let mut index = Vec::with_capacity(counts.len());
    let mut next = 0i64;
    for span in spans {
        next += i64::from(span.offset);
        for _ in 0..span.length {
            index.push(i32::try_from(next).map_err(|_| HistogramError::IndexOutOfRange { side })?);
            next += 1;
        }
    }
    Ok(Buckets {
        index,
        counts: counts.to_vec(),
    })
}

/// Prometheus's `ReduceResolution` to schema 8 on absolute indexes:
/// bucket `i` goes to `((i - 1) >> (schema - 8)) + 1`, neighbours that land
/// in the same bucket are added, and buckets stay where they were (no
/// compaction), so the layout is the one Prometheus would keep.
fn reduce_resolution<T: Copy>(
    side: Buckets<T>,
    schema: i32,
    add: impl Fn(T, T) -> T,
) -> Buckets<T> {
    // Up to 44 steps (schema 52): shifted as i64, as Go's shift of an
    // int32 by 32 or more gives 0 or -1.
    let shift = (schema - EXPONENTIAL_SCHEMA_MAX).clamp(0, 63) as u32;
    let mut out = Buckets {
        index: Vec::with_capacity(side.index.len()),
        counts: Vec::with_capacity(side.counts.len()),
    };
    for (&i, &c) in side.index.iter().zip(&side.counts) {
        // Within i32: the shifted value is smaller in magnitude.
        let target = ((i64::from(i) - 1) >> shift) as i32 + 1;
        match (out.index.last(), out.counts.last_mut()) {
            (Some(&last), Some(sum)) if last == target => *sum = add(*sum, c),
            _ => {
                out.index.push(target);
                out.counts.push(c);
            }
        }
    }
    out
}

/// `checkHistogramCustomBounds`' checks of the bounds themselves.
fn check_custom_bounds(bounds: &[f64]) -> Result<(), HistogramError> {
    let mut previous = f64::NEG_INFINITY;
    for (i, &current) in bounds.iter().enumerate() {
        if current.is_nan() {
            return Err(HistogramError::CustomBoundsNaN);
        }
        if i > 0 && current <= previous {
            return Err(HistogramError::CustomBoundsNotIncreasing { previous, current });
        }
        previous = current;
    }
    if previous == f64::INFINITY {
        return Err(HistogramError::CustomBoundsInfinite);
    }
    Ok(())
}

/// The custom-bucket checks after the bounds: enough bounds for the
/// spans, and nothing that custom buckets do not have.
fn check_custom_layout(h: &v1::Histogram, zero_count_is_zero: bool) -> Result<(), HistogramError> {
    let span_length: i64 = h
        .positive_spans
        .iter()
        .map(|s| i64::from(s.length) + i64::from(s.offset))
        .sum();
    if (h.custom_values.len() as i64 + 1) < span_length {
        return Err(HistogramError::CustomBoundsTooFew {
            bounds: h.custom_values.len(),
            span_length,
        });
    }
    if !zero_count_is_zero {
        return Err(HistogramError::CustomBucketsZeroCount);
    }
    if h.zero_threshold != 0.0 {
        return Err(HistogramError::CustomBucketsZeroThreshold);
    }
    if !h.negative_spans.is_empty() {
        return Err(HistogramError::CustomBucketsNegativeSpans);
    }
    let negative_buckets = if matches!(h.count, Some(Count::CountFloat(_))) {
        h.negative_counts.len()
    } else {
        h.negative_deltas.len()
    };
    if negative_buckets > 0 {
        return Err(HistogramError::CustomBucketsNegativeBuckets);
    }
    Ok(())
}

/// `Histogram.Validate` after the span checks: bucket counts not negative,
/// and the count equal to (or, with a NaN sum, at least) the buckets' total.
fn validate_integer(
    count: u64,
    zero_count: u64,
    positive: &[i64],
    negative: &[i64],
    h: &v1::Histogram,
    custom: bool,
) -> Result<(), HistogramError> {
    let mut in_buckets = 0u64;
    if custom {
        check_custom_layout(h, zero_count == 0)?;
    } else {
        in_buckets = in_buckets.wrapping_add(sum_integer(Side::Negative, negative)?);
        if !h.custom_values.is_empty() {
            return Err(HistogramError::ExponentialSchemaCustomBounds);
        }
    }
    in_buckets = in_buckets.wrapping_add(sum_integer(Side::Positive, positive)?);
    in_buckets = in_buckets.wrapping_add(zero_count);
    if h.sum.is_nan() {
        if in_buckets > count {
            return Err(HistogramError::CountNotBigEnough { in_buckets, count });
        }
    } else if in_buckets != count {
        return Err(HistogramError::CountMismatch { in_buckets, count });
    }
    Ok(())
}

fn sum_integer(side: Side, counts: &[i64]) -> Result<u64, HistogramError> {
    let mut total = 0u64;
    for (i, &c) in counts.iter().enumerate() {
        if c < 0 {
            return Err(HistogramError::NegativeBucketCount {
                side,
                bucket: i + 1,
                count: c as f64,
            });
        }
        total = total.wrapping_add(c as u64);
    }
    Ok(total)
}

/// `FloatHistogram.Validate` after the span checks: no negative counts
/// (NaN passes, as in Prometheus); the count is not compared with the
/// buckets.
fn validate_float(
    count: f64,
    zero_count: f64,
    positive: &[f64],
    negative: &[f64],
    h: &v1::Histogram,
    custom: bool,
) -> Result<(), HistogramError> {
    let check = |side, counts: &[f64]| match counts.iter().position(|&c| c < 0.0) {
        Some(i) => Err(HistogramError::NegativeBucketCount {
            side,
            bucket: i + 1,
            count: counts[i],
        }),
        None => Ok(()),
    };
    if custom {
        check_custom_layout(h, zero_count == 0.0)?;
    } else {
        check(Side::Negative, negative)?;
        if zero_count < 0.0 {
            return Err(HistogramError::NegativeZeroCount(zero_count));
        }
        if !h.custom_values.is_empty() {
            return Err(HistogramError::ExponentialSchemaCustomBounds);
        }
    }
    if count < 0.0 {
        return Err(HistogramError::NegativeCount(count));
    }
    check(Side::Positive, positive)
}

#[cfg(test)]
#[path = "histogram_tests.rs"]
mod tests;
