//! Arithmetic of the scripts' native histograms: `{{a}}+{{b}}x3` and
//! `{{a}}-{{b}}x3` expand as Prometheus's parser expands them, with
//! `FloatHistogram.Add` and `Sub` (model/histogram/float_histogram.go),
//! so bucket layouts, zero buckets and counter reset hints come out as
//! upstream's expected values assume. Buckets are by absolute index here,
//! so Prometheus's span bookkeeping reduces to ordered inserts.

use comet_schema::histogram::{
    CUSTOM_BUCKETS_SCHEMA, EXPONENTIAL_SCHEMA_MAX, EXPONENTIAL_SCHEMA_MIN,
};

use crate::value::{CounterResetHint, Histogram};

/// Upstream's `ErrHistogramsIncompatibleSchema`.
const INCOMPATIBLE_SCHEMAS: &str =
    "cannot apply this operation on histograms with a mix of exponential and custom bucket schemas";

fn uses_custom_buckets(h: &Histogram) -> bool {
    h.schema == CUSTOM_BUCKETS_SCHEMA
}

fn is_exponential_schema(schema: i32) -> bool {
    (EXPONENTIAL_SCHEMA_MIN..=EXPONENTIAL_SCHEMA_MAX).contains(&schema)
}

/// The values of `base+inc xN` (`subtract`: `base-inc xN`): the base, then
/// each previous value combined with `inc`, N times.
pub fn expand(
    base: &Histogram,
    inc: &Histogram,
    times: u32,
    subtract: bool,
) -> Result<Vec<Histogram>, String> {
    let mut out = Vec::with_capacity(times as usize + 1);
    out.push(base.clone());
    let mut current = base.clone();
    for _ in 0..times {
        // Checked per step as upstream does; the schema never changes, so
        // this fails on the first step or not at all.
        if current.schema > inc.schema {
            return Err(format!(
                "error combining histograms: cannot merge from schema {} to {}",
                inc.schema, current.schema
            ));
        }
        current = combine(current, inc, subtract)?;
        out.push(current.clone());
    }
    Ok(out)
}

/// `FloatHistogram.Add` (or `Sub`) of `other` into `h`.
fn combine(mut h: Histogram, other: &Histogram, subtract: bool) -> Result<Histogram, String> {
    if uses_custom_buckets(&h) != uses_custom_buckets(other) {
        return Err(INCOMPATIBLE_SCHEMAS.into());
    }
    h.reset_hint = adjust_counter_reset(h.reset_hint, other.reset_hint);
    // `a - b` is `a + (-b)` in IEEE arithmetic, so one path serves both.
    let sign = if subtract { -1.0 } else { 1.0 };
    if !uses_custom_buckets(&h) {
        let other_zero_count = reconcile_zero_buckets(&mut h, other);
        h.zero_count += sign * other_zero_count;
    }
    h.count += sign * other.count;
    h.sum += sign * other.sum;

    if uses_custom_buckets(&h) {
        // Custom buckets have no zero bucket and no negative buckets to add.
        if custom_bounds_match(&h.custom_values, &other.custom_values) {
            h.positive = add_buckets(
                h.schema,
                h.zero_threshold,
                subtract,
                h.positive,
                &other.positive,
            );
        } else {
            let bounds = intersect_bounds(&h.custom_values, &other.custom_values);
            h.positive = add_mismatched_custom_buckets(
                subtract,
                &h.positive,
                &h.custom_values,
                &other.positive,
                &other.custom_values,
                &bounds,
            );
            h.custom_values = bounds;
        }
        return Ok(h);
    }

    let mut other_positive = other.positive.clone();
    let mut other_negative = other.negative.clone();
    if other.schema < h.schema {
        h.positive = reduce_resolution(&h.positive, h.schema, other.schema);
        h.negative = reduce_resolution(&h.negative, h.schema, other.schema);
        h.schema = other.schema;
    } else if other.schema > h.schema {
        other_positive = reduce_resolution(&other.positive, other.schema, h.schema);
        other_negative = reduce_resolution(&other.negative, other.schema, h.schema);
    }
    h.positive = add_buckets(
        h.schema,
        h.zero_threshold,
        subtract,
        h.positive,
        &other_positive,
    );
    h.negative = add_buckets(
        h.schema,
        h.zero_threshold,
        subtract,
        h.negative,
        &other_negative,
    );
    Ok(h)
}

/// Upstream's `adjustCounterReset`: equal hints stay, a gauge wins, then
/// unknown; reset against not-reset collides into unknown.
fn adjust_counter_reset(h: CounterResetHint, other: CounterResetHint) -> CounterResetHint {
    use CounterResetHint::{Gauge, Unknown};
    if h == other || h == Gauge {
        h
    } else if other == Gauge {
        Gauge
    } else {
        Unknown
    }
}

/// Upstream's `addBuckets`: every bucket of `b` (zero counts included)
/// is added to `a`, inserted where `a` has none, so the result's layout
/// is the union of both. Leading buckets of `b` within the zero bucket
/// (upper bound <= `threshold`) are left out.
fn add_buckets(
    schema: i32,
    threshold: f64,
    subtract: bool,
    mut a: Vec<(i32, f64)>,
    b: &[(i32, f64)],
) -> Vec<(i32, f64)> {
    let mut below_threshold = true;
    for &(index, count) in b {
        if below_threshold
            && is_exponential_schema(schema)
            && crate::value::exponential_bound(index, schema) <= threshold
        {
            continue;
        }
        below_threshold = false;
        let count = if subtract { -count } else { count };
        match a.binary_search_by_key(&index, |&(i, _)| i) {
            Ok(at) => a[at].1 += count,
            Err(at) => a.insert(at, (index, count)),
        }
    }
    a
}

/// Upstream's `reduceResolution` for absolute counts: buckets falling into
/// one bucket of the coarser schema are summed; the layout is kept (a
/// merged bucket of zero counts stays).
fn reduce_resolution(buckets: &[(i32, f64)], from: i32, to: i32) -> Vec<(i32, f64)> {
    let shift = (from - to).clamp(0, 31) as u32;
    let mut out: Vec<(i32, f64)> = Vec::with_capacity(buckets.len());
    for &(index, count) in buckets {
        let target = (index.wrapping_sub(1) >> shift).wrapping_add(1);
        match out.last_mut() {
            Some((last, sum)) if *last == target => *sum += count,
            _ => out.push((target, count)),
        }
    }
    out
}

/// Upstream's `reconcileZeroBuckets`: widens the smaller zero bucket of the
/// two to the larger threshold (moved up to a bucket boundary when it falls
/// inside a populated bucket), folding the buckets it covers into the zero
/// count. Changes `h`; returns the zero count `other` would have.
fn reconcile_zero_buckets(h: &mut Histogram, other: &Histogram) -> f64 {
    let mut other_zero_count = other.zero_count;
    let mut other_threshold = other.zero_threshold;
    while other_threshold != h.zero_threshold {
        let before = (other_threshold, h.zero_threshold);
        if h.zero_threshold > other_threshold {
            (other_zero_count, other_threshold) =
                zero_count_for_larger_threshold(other, h.zero_threshold);
        }
        if other_threshold > h.zero_threshold {
            (h.zero_count, h.zero_threshold) = zero_count_for_larger_threshold(h, other_threshold);
            trim_buckets_in_zero_bucket(h);
        }
        // A NaN threshold compares neither way; upstream loops forever.
        if before.0.to_bits() == other_threshold.to_bits()
            && before.1.to_bits() == h.zero_threshold.to_bits()
        {
            break;
        }
    }
    other_zero_count
}

/// Upstream's `zeroCountForLargerThreshold`: the zero count of `h` with its
/// zero bucket widened to `larger`, and the threshold actually used.
fn zero_count_for_larger_threshold(h: &Histogram, mut larger: f64) -> (f64, f64) {
    if larger == h.zero_threshold {
        return (h.zero_count, larger);
    }
    'outer: loop {
        let mut zero_count = h.zero_count;
        for &(index, count) in &h.positive {
            let lower = crate::value::exponential_bound(index.wrapping_sub(1), h.schema);
            let upper = crate::value::exponential_bound(index, h.schema);
            if lower >= larger {
                break;
            }
            zero_count += count;
            if upper > larger {
                // Inside a populated bucket: the threshold moves to its
                // upper bound.
                if count != 0.0 {
                    larger = upper;
                }
                break;
            }
        }
        for &(index, count) in &h.negative {
            let lower = -crate::value::exponential_bound(index, h.schema);
            let upper = -crate::value::exponential_bound(index.wrapping_sub(1), h.schema);
            if upper <= -larger {
                break;
            }
            zero_count += count;
            if lower < -larger {
                if count != 0.0 {
                    // The positive side must be counted again.
                    larger = -lower;
                    continue 'outer;
                }
                break;
            }
        }
        return (zero_count, larger);
    }
}

/// Upstream's `trimBucketsInZeroBucket`: empties the buckets inside the
/// zero bucket, then compacts, which drops every empty bucket of `h`, not
/// only those.
fn trim_buckets_in_zero_bucket(h: &mut Histogram) {
    for (index, count) in h.positive.iter_mut() {
        if crate::value::exponential_bound(index.wrapping_sub(1), h.schema) >= h.zero_threshold {
            break;
        }
        *count = 0.0;
    }
    for (index, count) in h.negative.iter_mut() {
        if -crate::value::exponential_bound(index.wrapping_sub(1), h.schema) <= -h.zero_threshold {
            break;
        }
        *count = 0.0;
    }
    h.positive.retain(|&(_, c)| c != 0.0);
    h.negative.retain(|&(_, c)| c != 0.0);
}

/// Upstream's `CustomBucketBoundsMatch`.
fn custom_bounds_match(a: &[f64], b: &[f64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The bounds both histograms have (upstream's
/// `intersectCustomBucketBounds`).
fn intersect_bounds(a: &[f64], b: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < a.len() && j < b.len() {
        if a[i] == b[j] {
            out.push(a[i]);
            i += 1;
            j += 1;
        } else if a[i] < b[j] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

/// Upstream's `addCustomBucketsWithMismatches`: both sides mapped onto the
/// common bounds (each bucket into the first common bound at or above its
/// own, else the +Inf bucket) with Kahan sums; empty buckets are dropped.
fn add_mismatched_custom_buckets(
    subtract: bool,
    a: &[(i32, f64)],
    a_bounds: &[f64],
    b: &[(i32, f64)],
    b_bounds: &[f64],
    bounds: &[f64],
) -> Vec<(i32, f64)> {
    let mut sums = vec![0.0; bounds.len() + 1];
    let mut compensation = vec![0.0; bounds.len() + 1];
    let mut map = |buckets: &[(i32, f64)], own_bounds: &[f64], negate: bool| {
        let mut at = 0;
        for &(index, count) in buckets {
            let mut target = bounds.len();
            if let Some(&bound) = usize::try_from(index).ok().and_then(|i| own_bounds.get(i)) {
                while at < bounds.len() {
                    if bounds[at] >= bound {
                        target = at;
                        break;
                    }
                    at += 1;
                }
            }
            let value = if negate { -count } else { count };
            (sums[target], compensation[target]) =
                kahan_inc(value, sums[target], compensation[target]);
        }
    };
    map(a, a_bounds, false);
    map(b, b_bounds, subtract);
    sums.iter()
        .zip(&compensation)
        .enumerate()
        .filter(|(_, (s, c))| !(**s == 0.0 && **c == 0.0))
        .map(|(i, (s, _))| (i as i32, *s))
        .collect()
}

/// Upstream's `kahansum.Inc` (Neumaier's variant).
pub(crate) fn kahan_inc(inc: f64, sum: f64, c: f64) -> (f64, f64) {
    let t = sum + inc;
    let c = if t.is_infinite() {
        0.0
    } else if sum.abs() >= inc.abs() {
        c + ((sum - t) + inc)
    } else {
        c + ((inc - t) + sum)
    };
    (t, c)
}
