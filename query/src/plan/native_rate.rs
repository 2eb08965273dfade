//! `rate`, `increase` and `delta` of native histograms, as Prometheus's
//! `histogramRate` and `extrapolatedRate` compute them, over windows of
//! histograms `w Array(Tuple(ts Int64, h HISTOGRAM))` sorted by time.
//!
//! The result is the last histogram minus the first, plus the histogram
//! before each counter reset, all at the window's smallest schema, then
//! scaled as a float rate is extrapolated. Summing the buckets by index
//! (`sumMap`) drops empty ones, which is Prometheus's `Compact(0)`.

use super::native_fns::HISTOGRAM_TYPE;
use super::stages::{Stages, let_in};

/// Whether histogram `c` is a counter reset after `p` (Prometheus's
/// `DetectReset`, with hints as its storage hands them back: an explicit
/// reset is one, a gauge never, anything else is found by comparing).
/// Custom buckets with other bounds are compared at the bounds both have.
/// `c` and `p` may be any expressions: unless they are plain names they
/// are bound once, as ClickHouse's analyzer pays for every copy.
pub(crate) fn detect_reset(c: &str, p: &str) -> String {
    let is_name = |e: &str| e.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    if is_name(c) && is_name(p) {
        reset_between(c, p)
    } else {
        let_in(&[("_rc", c), ("_rp", p)], &reset_between("_rc", "_rp"))
    }
}

/// For each histogram of the array `hs` (sorted by time), 1 where it is a
/// counter reset after the one before it (the first never is).
pub(crate) fn window_resets(hs: &str) -> String {
    format!(
        "arrayConcat([toUInt8(0)], arrayMap((_rc, _rp) -> {}, arrayPopFront({hs}), arrayPopBack({hs})))",
        reset_between("_rc", "_rp")
    )
}

/// [`detect_reset`] of two names.
fn reset_between(c: &str, p: &str) -> String {
    let bounds = format!("arrayIntersect({c}.custom_values, {p}.custom_values)");
    // p's buckets at c's schema (or the common custom bounds), summed by
    // index; each must not exceed c's at the same index (a missing one
    // counts as empty). Only positive buckets may be custom ones. Both
    // sides are summed by index with `sumMap` (no lambda nested in
    // another's condition, which costs ClickHouse's analyzer most).
    let decreased = |index: &str, counts: &str, custom: Option<&str>| {
        let at = |h: &str| {
            format!(
                "arrayReduce('sumMap', [arrayMap(_j -> {}, {h}.{index})], [{h}.{counts}])",
                reconciled_index(h, "_j", &format!("{c}.schema"), custom)
            )
        };
        let_in(
            &[("_pm", &at(p)), ("_cm", &at(c))],
            "arrayExists((k, x) -> x > if(indexOf(_cm.1, k) = 0, 0, _cm.2[indexOf(_cm.1, k)]), _pm.1, _pm.2)",
        )
    };
    format!(
        "toUInt8(multiIf({c}.reset_hint = 1, 1, {c}.reset_hint = 3, 0, \
           {c}.count < {p}.count OR ({c}.schema = -53) != ({p}.schema = -53) \
           OR {c}.schema > {p}.schema OR {c}.zero_threshold < {p}.zero_threshold \
           OR {c}.zero_count < {p}.zero_count OR {pos} OR {neg}, 1, 0))",
        pos = decreased("positive_index", "positive_counts", Some(&bounds)),
        neg = decreased("negative_index", "negative_counts", None),
    )
}

/// Bucket `i` of histogram `h` as an index at the exponential schema `ms`
/// (`h`'s or a smaller one), or for custom buckets at the custom bounds
/// `bounds` (some of `h`'s): the bucket its upper bound falls in, which
/// is how Prometheus reconciles mismatched custom bounds. Without
/// `bounds` (negative buckets, which custom histograms lack) the custom
/// case is left out, which spares ClickHouse's analyzer a lambda.
pub(crate) fn reconciled_index(h: &str, i: &str, ms: &str, bounds: Option<&str>) -> String {
    let exponential = format!("bitShiftRight({i} - 1, greatest(0, {h}.schema - {ms})) + 1");
    match bounds {
        None => format!("toInt32({exponential})"),
        Some(bounds) => format!(
            "toInt32(if({h}.schema = -53, \
               toInt64(if({i} < length({h}.custom_values), arrayCount(b -> b < {h}.custom_values[{i} + 1], {bounds}), length({bounds}))), \
               {exponential}))"
        ),
    }
}

/// The custom bounds every custom-bucket histogram of `hs` (an array of
/// `HISTOGRAM_TYPE`) has: Prometheus adds histograms with mismatched
/// bounds at their intersection.
pub(crate) fn common_bounds(hs: &str) -> String {
    format!(
        "arrayFilter(b -> arrayAll(x -> x.schema != -53 OR has(x.custom_values, b), {hs}), \
           arrayFirst(x -> x.schema = -53, {hs}).custom_values)"
    )
}

/// The counter-reset hint "gauge" as stored.
pub(crate) const GAUGE_HINT: &str = "3";

/// The counter-reset hint of a sum of histograms whose hints are the
/// array `hints`, as Prometheus's `adjustCounterReset` leaves it: the
/// common hint, else gauge if any is one, else unknown.
pub(crate) fn combined_hint(hints: &str) -> String {
    format!(
        "if(length(arrayDistinct({hints})) = 1, ({hints})[1], if(has({hints}, {GAUGE_HINT}), {GAUGE_HINT}, 0))"
    )
}

/// The signed sum of histograms `parts Array(Tuple(h, sign))` at schema
/// `ms` and zero threshold `zt` (custom buckets at the bounds they all
/// have), as a `HISTOGRAM_TYPE` with the counter-reset hint `hint`. Each
/// argument is computed once.
pub(crate) fn signed_sum(parts: &str, ms: &str, zt: &str, hint: &str) -> String {
    let buckets = |index: &str, counts: &str, custom: Option<&str>| {
        format!(
            "arrayReduce('sumMap', \
               [arrayFlatten(arrayMap(x -> arrayMap(i -> {}, x.1.{index}), _ssp))], \
               [arrayFlatten(arrayMap(x -> arrayMap(v -> v * x.2, x.1.{counts}), _ssp))])",
            reconciled_index("x.1", "i", "_ssm", custom),
        )
    };
    let total = |field: &str| format!("arraySum(arrayMap(x -> x.1.{field} * x.2, _ssp))");
    // A chain of steps, not lets nested in each other's bodies: ClickHouse's
    // analyzer pays for each nesting again (2x here).
    Stages::start(&[("_ssp", parts), ("_ssm", ms), ("_ssz", zt), ("_ssh", hint)])
        .then(&[("_ssc", common_bounds("arrayMap(x -> x.1, _ssp)"))])
        .then(&[
            (
                "_pos",
                buckets("positive_index", "positive_counts", Some("_ssc")),
            ),
            ("_neg", buckets("negative_index", "negative_counts", None)),
        ])
        .finish(&format!(
            "CAST(tuple(_ssm, _ssz, {zero}, {count}, {sum}, _pos.1, _pos.2, _neg.1, _neg.2, _ssc, _ssh), \
               '{HISTOGRAM_TYPE}')",
            zero = total("zero_count"),
            count = total("count"),
            sum = total("sum"),
        ))
}

/// `h` with every count and the sum times `factor` (each computed once).
pub(crate) fn scaled(h: &str, factor: &str) -> String {
    let_in(
        &[("_sh", h), ("_sf", factor)],
        &format!(
            "CAST(tuple(_sh.schema, _sh.zero_threshold, _sh.zero_count * _sf, _sh.count * _sf, \
               _sh.sum * _sf, _sh.positive_index, arrayMap(v -> v * _sf, _sh.positive_counts), \
               _sh.negative_index, arrayMap(v -> v * _sf, _sh.negative_counts), _sh.custom_values, \
               _sh.reset_hint), '{HISTOGRAM_TYPE}')"
        ),
    )
}

/// Rows `(fp, t, _ok, _rh)`: the rate of each window `w` ending at `t` of
/// `windows` over `range_ms`, and whether there is one. For `delta` (not
/// a counter) resets are not looked for; without `extrapolate` (anchored
/// windows) the difference is taken as it is. The steps are [`Stages`], so
/// that ClickHouse computes each value once and analyses it once.
pub(crate) fn histogram_rate(
    windows: &str,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
    extrapolate: bool,
) -> String {
    let resets = if is_counter {
        window_resets("arrayMap(x -> x.2, w)")
    } else {
        "arrayMap(i -> toUInt8(0), arrayEnumerate(w))".to_string()
    };
    // A reset between the first two samples drops the first: the second
    // then counts from zero.
    let parts = "arrayConcat([(w[_n].2, 1.)], if(_resets[2] = 1, [], [(w[1].2, -1.)]), \
                   arrayMap(i -> (w[i - 1].2, 1.), arrayFilter(i -> i > 2 AND _resets[i] = 1, arrayEnumerate(w))))";
    let counted = "if(_resets[2] = 1, arraySlice(w, 2), w)";
    let zero_bound = if is_counter {
        // Counters cannot go below zero: extrapolation towards the start
        // stops where the count would reach it.
        "if(_raw.count > 0 AND w[1].2.count >= 0 AND _resets[2] = 0, \
            least(_dstart, _si * (w[1].2.count / _raw.count)), _dstart)"
    } else {
        "_dstart"
    };
    let per_second = if is_rate {
        format!(" / {}", range_ms as f64 / 1000.0)
    } else {
        String::new()
    };
    // One sample of an anchored window differs from itself by 0.
    let fewest = if extrapolate { 2 } else { 1 };
    let sum = signed_sum("_parts", "_ms", "_zt", GAUGE_HINT);
    let dstart = format!(
        "if((w[1].1 - (t - {range_ms})) / 1000 >= _avg * 1.1, _avg / 2, (w[1].1 - (t - {range_ms})) / 1000)"
    );
    let factor = if extrapolate {
        format!("if(_si = 0, 1, (_si + ({zero_bound}) + _dend) / _si){per_second}")
    } else {
        format!("1{per_second}")
    };
    let (ms, nc) = (
        format!("arrayMin(arrayMap(x -> x.2.schema, {counted}))"),
        format!("arrayCount(x -> x.2.schema = -53, {counted})"),
    );
    let mixed_kinds = format!("_nc > 0 AND _nc < length({counted})");
    // The first values read the window's columns (their subquery is
    // small); then few steps of several values each, since every step
    // hands on the values still to be read, and that costs analysis too.
    let rate = Stages::start(&[
        ("w", "w"),
        ("t", "t"),
        ("_n", "length(w)"),
        ("_resets", &resets),
    ])
    .then(&[
        ("_parts", parts),
        ("_ms", &ms),
        ("_zt", "arrayMax(arrayMap(x -> x.2.zero_threshold, w))"),
        ("_nc", &nc),
        ("_si", "(w[_n].1 - w[1].1) / 1000"),
        ("_avg", "(w[_n].1 - w[1].1) / 1000 / (_n - 1)"),
    ])
    .then(&[
        ("_mixed_kinds", mixed_kinds.as_str()),
        ("_raw", &sum),
        ("_dstart", &dstart),
        (
            "_dend",
            "if((t - w[_n].1) / 1000 >= _avg * 1.1, _avg / 2, (t - w[_n].1) / 1000)",
        ),
    ])
    .then(&[("_factor", &factor)])
    .finish(&format!(
        "tuple(_n >= {fewest} AND NOT _mixed_kinds, {})",
        scaled("_raw", "_factor")
    ));
    // `_r` is read from a subquery: an alias used again in its own SELECT
    // is analysed again at each use.
    format!(
        "SELECT fp, t, _r.1 AS _ok, _r.2 AS _rh FROM (SELECT fp, t, {rate} AS _r FROM ({windows}))"
    )
}
