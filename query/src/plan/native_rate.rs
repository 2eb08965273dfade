//! `rate`, `increase` and `delta` of native histograms, as Prometheus's
//! `histogramRate` and `extrapolatedRate` compute them, over windows of
//! histograms `w Array(Tuple(ts Int64, h HISTOGRAM))` sorted by time.
//!
//! The result is the last histogram minus the first, plus the histogram
//! before each counter reset, all at the window's smallest schema, then
//! scaled as a float rate is extrapolated. Summing the buckets by index
//! (`sumMap`) drops empty ones, which is Prometheus's `Compact(0)`.

use super::native_fns::HISTOGRAM_TYPE;

/// Whether histogram `c` is a counter reset after `p` (Prometheus's
/// `DetectReset`, with hints as its storage hands them back: an explicit
/// reset is one, a gauge never, anything else is found by comparing).
pub(crate) fn detect_reset(c: &str, p: &str) -> String {
    // p's buckets at c's schema, summed by index; each must not exceed
    // c's bucket at the same index (a missing one counts as empty).
    let decreased = |index: &str, counts: &str| {
        format!(
            "arrayExists((k, x) -> x > arraySum(arrayMap((ck, cc) -> if(ck = k, cc, 0), {c}.{index}, {c}.{counts})), \
               (arrayReduce('sumMap', [arrayMap(i -> bitShiftRight(i - 1, {p}.schema - {c}.schema) + 1, {p}.{index})], [{p}.{counts}]) AS _pm_{index}).1, _pm_{index}.2)"
        )
    };
    format!(
        "multiIf({c}.reset_hint = 1, 1, {c}.reset_hint = 3, 0, \
           {c}.count < {p}.count OR ({c}.schema = -53) != ({p}.schema = -53) \
           OR ({c}.schema = -53 AND {c}.custom_values != {p}.custom_values) \
           OR {c}.schema > {p}.schema OR {c}.zero_threshold < {p}.zero_threshold \
           OR {c}.zero_count < {p}.zero_count OR {pos} OR {neg}, 1, 0)",
        pos = decreased("positive_index", "positive_counts"),
        neg = decreased("negative_index", "negative_counts"),
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
/// `ms` and zero threshold `zt`, as a `HISTOGRAM_TYPE` with the
/// counter-reset hint `hint`.
pub(crate) fn signed_sum(parts: &str, ms: &str, zt: &str, custom: &str, hint: &str) -> String {
    let buckets = |index: &str, counts: &str| {
        format!(
            "arrayReduce('sumMap', \
               [arrayFlatten(arrayMap(x -> arrayMap(i -> toInt32(bitShiftRight(i - 1, x.1.schema - {ms}) + 1), x.1.{index}), {parts}))], \
               [arrayFlatten(arrayMap(x -> arrayMap(v -> v * x.2, x.1.{counts}), {parts}))])"
        )
    };
    let total = |field: &str| format!("arraySum(arrayMap(x -> x.1.{field} * x.2, {parts}))");
    format!(
        "CAST(tuple({ms}, {zt}, {zero}, {count}, {sum}, \
           ({pos} AS _pos).1, _pos.2, ({neg} AS _neg).1, _neg.2, {custom}, {hint}), '{HISTOGRAM_TYPE}')",
        zero = total("zero_count"),
        count = total("count"),
        sum = total("sum"),
        pos = buckets("positive_index", "positive_counts"),
        neg = buckets("negative_index", "negative_counts"),
    )
}

/// `h` with every count and the sum times `factor`.
pub(crate) fn scaled(h: &str, factor: &str) -> String {
    format!(
        "CAST(tuple({h}.schema, {h}.zero_threshold, {h}.zero_count * {factor}, {h}.count * {factor}, \
           {h}.sum * {factor}, {h}.positive_index, arrayMap(v -> v * {factor}, {h}.positive_counts), \
           {h}.negative_index, arrayMap(v -> v * {factor}, {h}.negative_counts), {h}.custom_values, \
           {h}.reset_hint), '{HISTOGRAM_TYPE}')"
    )
}

/// Rows `(fp, t, _ok, _rh)`: the rate of each window `w` ending at `t` of
/// `windows` over `range_ms`, and whether there is one. For `delta` (not
/// a counter) resets are not looked for; without `extrapolate` (anchored
/// windows) the difference is taken as it is. Each stage reads the one before
/// as a subquery, so that ClickHouse computes a column once instead of
/// pasting its expression into every use.
pub(crate) fn histogram_rate(
    windows: &str,
    range_ms: i64,
    is_counter: bool,
    is_rate: bool,
    extrapolate: bool,
) -> String {
    let resets = if is_counter {
        format!(
            "arrayMap(i -> if(i = 1, 0, {}), arrayEnumerate(w))",
            detect_reset("w[i].2", "w[i - 1].2")
        )
    } else {
        "arrayMap(i -> 0, arrayEnumerate(w))".to_string()
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
    format!(
        "SELECT fp, t, _n >= {fewest} AND NOT _mixed_kinds AS _ok, {rh} AS _rh FROM (\
           SELECT fp, t, w, _n, _resets, _raw, _mixed_kinds, \
             (w[_n].1 - w[1].1) / 1000 AS _si, _si / (_n - 1) AS _avg, \
             if((w[1].1 - (t - {range_ms})) / 1000 >= _avg * 1.1, _avg / 2, (w[1].1 - (t - {range_ms})) / 1000) AS _dstart, \
             if((t - w[_n].1) / 1000 >= _avg * 1.1, _avg / 2, (t - w[_n].1) / 1000) AS _dend, \
             ({zero_bound}) AS _dstart0, \
             {extrapolation}{per_second} AS _factor \
           FROM (\
             SELECT fp, t, w, _n, _resets, _mixed_kinds, {sum} AS _raw FROM (\
               SELECT fp, t, w, _n, _resets, {parts} AS _parts, \
                 arrayMin(arrayMap(x -> x.2.schema, {counted})) AS _ms, \
                 arrayMax(arrayMap(x -> x.2.zero_threshold, w)) AS _zt, \
                 arrayCount(x -> x.2.schema = -53, {counted}) AS _nc, \
                 _nc > 0 AND _nc < length({counted}) AS _mixed_kinds \
               FROM (SELECT fp, t, w, length(w) AS _n, {resets} AS _resets FROM ({windows}))\
             )\
           )\
         )",
        // One sample of an anchored window differs from itself by 0.
        fewest = if extrapolate { 2 } else { 1 },
        extrapolation = if extrapolate {
            "if(_si = 0, 1, (_si + _dstart0 + _dend) / _si)"
        } else {
            "1"
        },
        sum = signed_sum("_parts", "_ms", "_zt", "w[_n].2.custom_values", GAUGE_HINT),
        rh = scaled("_raw", "_factor"),
    )
}
