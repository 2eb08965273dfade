//! Arithmetic between a native histogram and a float, as Prometheus 3's
//! `vectorElemBinop` defines it: `h * x`, `x * h`, `h / x`, and the trim
//! operators `h </ x` (keep the observations below x) and `h >/ x` (keep
//! those above), after `FloatHistogram.Mul`, `Div` and `TrimBuckets`.
//!
//! Each function returns one [`HISTOGRAM_TYPE`] expression of the
//! histogram column `h` and the float column `x`. The trim expressions name
//! their parts with inline aliases (`_tr_*`), so one of them may appear
//! once per `SELECT`.

use super::native_fns::HISTOGRAM_TYPE;
use super::native_rate::{GAUGE_HINT, combined_hint, signed_sum};
use super::stages::{Stages, let_in};

/// `l + r` (`sign` 1) or `l - r` (`sign` -1) of two histograms, at the
/// coarser schema and the wider zero threshold; a difference is a gauge.
pub(crate) fn histogram_sum(l: &str, r: &str, sign: f64) -> String {
    let hint = if sign < 0.0 {
        GAUGE_HINT.to_string()
    } else {
        combined_hint(&format!("[{l}.reset_hint, {r}.reset_hint]"))
    };
    signed_sum(
        &format!("[({l}, toFloat64(1)), ({r}, toFloat64({sign}))]"),
        &format!("least({l}.schema, {r}.schema)"),
        &format!("greatest({l}.zero_threshold, {r}.zero_threshold)"),
        &hint,
    )
}

/// An operator between a histogram and a float that yields a histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HistogramFloatOp {
    Mul,
    Div,
    TrimUpper,
    TrimLower,
}

impl HistogramFloatOp {
    /// The operator `op` with the histogram on the left (`histogram_left`)
    /// or on the right; `None` where Prometheus gives no result.
    pub(crate) fn of(op: &str, histogram_left: bool) -> Option<Self> {
        match (op, histogram_left) {
            ("*", _) => Some(Self::Mul),
            ("/", true) => Some(Self::Div),
            ("</", true) => Some(Self::TrimUpper),
            (">/", true) => Some(Self::TrimLower),
            _ => None,
        }
    }

    /// The histogram `h` operated with the float `x`.
    pub(crate) fn apply(self, h: &str, x: &str) -> String {
        match self {
            Self::Mul => multiplied(h, x),
            Self::Div => divided(h, x),
            Self::TrimUpper => trimmed(h, x, true),
            Self::TrimLower => trimmed(h, x, false),
        }
    }
}

/// `FloatHistogram.Mul`: every count and the sum times `x`; a negative
/// factor makes it a gauge.
fn multiplied(h: &str, x: &str) -> String {
    format!(
        "CAST(tuple({h}.schema, {h}.zero_threshold, {h}.zero_count * {x}, {h}.count * {x}, \
           {h}.sum * {x}, {h}.positive_index, arrayMap(v -> v * {x}, {h}.positive_counts), \
           {h}.negative_index, arrayMap(v -> v * {x}, {h}.negative_counts), {h}.custom_values, \
           if({x} < 0, {GAUGE_HINT}, {h}.reset_hint)), '{HISTOGRAM_TYPE}')"
    )
}

/// `FloatHistogram.Div`: every count and the sum over `x`; dividing by
/// zero removes the buckets.
fn divided(h: &str, x: &str) -> String {
    format!(
        "CAST(tuple({h}.schema, {h}.zero_threshold, {h}.zero_count / {x}, {h}.count / {x}, \
           {h}.sum / {x}, if({x} = 0, [], {h}.positive_index), \
           if({x} = 0, [], arrayMap(v -> v / {x}, {h}.positive_counts)), \
           if({x} = 0, [], {h}.negative_index), \
           if({x} = 0, [], arrayMap(v -> v / {x}, {h}.negative_counts)), {h}.custom_values, \
           if({x} < 0, {GAUGE_HINT}, {h}.reset_hint)), '{HISTOGRAM_TYPE}')"
    )
}

/// The bound at bucket index `i` (`getBound`): custom bounds with -Inf
/// below the first and +Inf after the last, else 2^(i·2^-schema).
pub(crate) fn bound(h: &str, i: &str) -> String {
    format!(
        "if({h}.schema = -53, \
           multiIf(({i}) < 0, -inf, ({i}) >= length({h}.custom_values), inf, {h}.custom_values[({i}) + 1]), \
           if(({i}) * exp2(-{h}.schema) = 1024, 1.7976931348623157e308, exp2(({i}) * exp2(-{h}.schema))))"
    )
}

/// `computeMidpoint` of the surviving interval `(a, b)` of a bucket on the
/// `positive` side: linear for custom buckets, else the geometric mean.
fn midpoint(a: &str, b: &str, positive: bool) -> String {
    let sign = if positive { "" } else { "-" };
    format!(
        "multiIf(isInfinite({a}), multiIf(isInfinite({b}), 0, {b} > 0, {b} / 2, {b}), \
           isInfinite({b}), {a}, _tr_lin, ({a} + {b}) / 2, {sign}sqrt(abs({a} * {b})))"
    )
}

/// `FractionBelow(x)` of the bucket `(_lo, _up]`: linear for custom
/// buckets, else on the log2 scale (mirrored for negative values).
fn fraction_below(x: &str) -> String {
    format!(
        "if(_tr_lin, ({x} - _lo) / (_up - _lo), \
           if({x} > 0, (log2(abs({x})) - log2(abs(_lo))) / (log2(abs(_up)) - log2(abs(_lo))), \
              1 - ((log2(abs({x})) - log2(abs(_up))) / (log2(abs(_lo)) - log2(abs(_up))))))"
    )
}

/// `(kept count, midpoint)` of a bucket `(_lo, _up]` with count `_c` that
/// the trim point `_tr_x` cuts (`computeBucketTrim`, with
/// `handleInfinityBuckets` for a bucket with an infinite bound).
fn bucket_trim(upper: bool, positive: bool) -> String {
    let zero_if_inf = |v: &str| format!("if(isInfinite({v}), 0, {v})");
    let split = format!(
        "multiIf(_tr_x <= _lo, 0, _tr_x >= _up, _c, _c * {})",
        fraction_below("_tr_x")
    );
    let (infinite, finite) = if upper {
        (
            format!(
                "if(isInfinite(_lo) AND _lo < 0, \
                   multiIf(_tr_x >= _up, (_c, 0), \
                     _tr_x > 0 AND _up > 0 AND NOT isInfinite(_up), (_c * _tr_x / _up, _tr_x / 2), \
                     _up <= 0, (_c, _tr_x), (0, {up})), \
                   (0, {lo}))",
                up = zero_if_inf("_up"),
                lo = zero_if_inf("_lo"),
            ),
            format!("({split}, {})", midpoint("_lo", "_tr_x", positive)),
        )
    } else {
        (
            format!(
                "if(isInfinite(_lo) AND _lo < 0, \
                   multiIf(_tr_x <= _lo, (_c, 0), \
                     _tr_x >= 0 AND _up > _tr_x AND NOT isInfinite(_up), \
                       (_c * (1 - _tr_x / _up), (_tr_x + _up) / 2), \
                     (0, {up})), \
                   if(_tr_x >= _lo, (_c, _tr_x), (0, {lo})))",
                up = zero_if_inf("_up"),
                lo = zero_if_inf("_lo"),
            ),
            format!("(_c - {split}, {})", midpoint("_tr_x", "_up", positive)),
        )
    };
    format!("if(isInfinite(_lo) OR isInfinite(_up), {infinite}, {finite})")
}

/// The `(kept count, midpoint)` of each bucket of one side: all of a
/// bucket on the kept side of `_tr_x`, part of the one it cuts, none of
/// the others; empty buckets are left alone.
fn side_trim(h: &str, upper: bool, positive: bool) -> String {
    let (index, counts) = if positive {
        ("positive_index", "positive_counts")
    } else {
        ("negative_index", "negative_counts")
    };
    let (lo, up) = if positive {
        (bound(h, "i - 1"), bound(h, "i"))
    } else {
        (
            format!("-{}", bound(h, "i")),
            format!("-{}", bound(h, "i - 1")),
        )
    };
    let whole = format!("(_c, {})", midpoint("_lo", "_up", positive));
    let cut = bucket_trim(upper, positive);
    let kept = if upper {
        format!("multiIf(_c = 0, (0, 0), _up <= _tr_x, {whole}, _lo < _tr_x, {cut}, (0, 0))")
    } else {
        format!("multiIf(_c = 0, (0, 0), _lo >= _tr_x, {whole}, _up > _tr_x, {cut}, (0, 0))")
    };
    let kept = float_pair(&kept);
    format!(
        "arrayMap((_c, _lo, _up) -> {kept}, \
           {h}.{counts}, arrayMap(i -> {lo}, {h}.{index}), arrayMap(i -> {up}, {h}.{index}))"
    )
}

/// The pair `(count, midpoint)` as two Float64, computed once.
fn float_pair(pair: &str) -> String {
    let_in(&[("_k", pair)], "tuple(toFloat64(_k.1), toFloat64(_k.2))")
}

/// `TrimBuckets(x, upper)`: the histogram `h` with the observations above
/// (`upper`, `</`) or below (`>/`) `x` removed, the cut buckets
/// interpolated; when anything was removed, the count and the sum are
/// recomputed from the kept buckets at their midpoints and empty buckets
/// dropped. Computed as [`Stages`], so that each part is computed and
/// analysed once: first the trim point and the zero bucket's extent, then
/// the kept part of each bucket.
fn trimmed(h: &str, x: &str, upper: bool) -> String {
    let has_pos = format!("arrayExists(c -> c != 0, {h}.positive_counts)");
    let has_neg = format!("arrayExists(c -> c != 0, {h}.negative_counts)");
    // The zero bucket, narrowed to the side that has buckets.
    let zero_lower = format!("if({has_pos} AND NOT {has_neg}, 0, -{h}.zero_threshold)");
    let zero_upper = format!("if({has_neg} AND NOT {has_pos}, 0, {h}.zero_threshold)");
    let start = [
        ("_trh", h.to_string()),
        ("_tr_x", format!("toFloat64({x})")),
        ("_tr_lin", format!("{h}.schema = -53")),
        ("_tr_zl", format!("toFloat64({zero_lower})")),
        ("_tr_zu", format!("toFloat64({zero_upper})")),
    ];
    // The rest reads the histogram as the first step's `_trh`.
    let h = "_trh";
    let zc = format!("{h}.zero_count");
    let zero_kept = if upper {
        format!(
            "multiIf(_tr_x <= _tr_zl, (0, 0), _tr_x >= _tr_zu, ({zc}, (_tr_zl + _tr_zu) / 2), \
               ({zc} * ((_tr_x - _tr_zl) / (_tr_zu - _tr_zl)), (_tr_zl + _tr_x) / 2))"
        )
    } else {
        format!(
            "multiIf(_tr_x <= _tr_zl, ({zc}, (_tr_zl + _tr_zu) / 2), _tr_x >= _tr_zu, (0, 0), \
               ({zc} * ((_tr_zu - _tr_x) / (_tr_zu - _tr_zl)), (_tr_x + _tr_zu) / 2))"
        )
    };
    let zero_kept = let_in(
        &[("_k", &zero_kept)],
        "tuple(toFloat64(_k.1), toFloat64(_k.2))",
    );
    let zero = format!("if({zc} > 0, {zero_kept}, tuple(toFloat64({zc}), toFloat64(0)))");
    let counts = |side: &str| format!("arrayMap(b -> b.1, {side})");
    let changed =
        |side: &str, counts: &str| format!("arrayExists((b, c) -> b.1 != c, {side}, {h}.{counts})");
    let contribution = |side: &str| format!("arraySum(arrayMap(b -> b.2 * b.1, {side}))");
    let nonzero_index =
        |side: &str, index: &str| format!("arrayFilter((i, b) -> b.1 != 0, {h}.{index}, {side})");
    let nonzero_counts = |side: &str| format!("arrayFilter(c -> c != 0, {})", counts(side));
    let result = format!(
        "if({changed_p} OR {changed_n} OR ({zc} > 0 AND _tr_z.1 != {zc}), \
           CAST(tuple({h}.schema, {h}.zero_threshold, _tr_z.1, \
             arraySum({pc}) + arraySum({nc}) + _tr_z.1, \
             {pcon} + {ncon} + _tr_z.2 * _tr_z.1, \
             {pi}, {pn}, {ni}, {nn}, {h}.custom_values, {h}.reset_hint), '{HISTOGRAM_TYPE}'), \
           {h})",
        changed_p = changed("_tr_p", "positive_counts"),
        changed_n = changed("_tr_n", "negative_counts"),
        pc = counts("_tr_p"),
        nc = counts("_tr_n"),
        pcon = contribution("_tr_p"),
        ncon = contribution("_tr_n"),
        pi = nonzero_index("_tr_p", "positive_index"),
        pn = nonzero_counts("_tr_p"),
        ni = nonzero_index("_tr_n", "negative_index"),
        nn = nonzero_counts("_tr_n"),
    );
    let (pos, neg) = (side_trim(h, upper, true), side_trim(h, upper, false));
    Stages::start(&start)
        .then(&[("_tr_p", &pos), ("_tr_n", &neg), ("_tr_z", &zero)])
        .finish(&result)
}
