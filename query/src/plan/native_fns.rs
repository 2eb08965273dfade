//! PromQL's native-histogram functions as ClickHouse expressions over one
//! histogram of [`HISTOGRAM_TYPE`], with Prometheus 3's semantics
//! (`histogram_count`, `_sum`, `_avg`, `_stddev`, `_stdvar`, `_fraction`,
//! `_quantile`).
//!
//! Each function takes SQL expressions and returns one Float64 expression,
//! self-contained so it can be inlined anywhere. The long ones bind their
//! arguments once (as lambda parameters, see [`let_in`]); the short ones
//! repeat them, so those should be columns or other cheap expressions.
//!
//! The buckets are taken in Prometheus's iteration order
//! (`AllBucketIterator`): negative buckets from the lowest value up, the
//! zero bucket when its count is positive, positive buckets up.
//!
//! Two costs shape the SQL. ClickHouse's analyzer spends time growing with
//! the square of a lambda's size (see [`super::stages`]), and a lambda over
//! an array copies every column it captures once per element. So the work
//! is a chain of [`Stages`], small lambdas over a one-element array of a
//! tuple, each taking the values it needs as parameters (the histogram's
//! fields are read once, before the first; what a later step reads is
//! handed on by `Stages` itself), and the lambdas over buckets capture
//! only scalars and the custom bounds.

use super::stages::{Stages, let_in};

/// The SQL type of a native histogram: buckets by absolute index
/// (increasing), absolute counts. Schema -53 is custom buckets, bounded by
/// `custom_values`.
pub(crate) const HISTOGRAM_TYPE: &str = "Tuple(schema Int8, zero_threshold Float64, \
     zero_count Float64, count Float64, sum Float64, \
     positive_index Array(Int32), positive_counts Array(Float64), \
     negative_index Array(Int32), negative_counts Array(Float64), \
     custom_values Array(Float64), reset_hint Int8)";

/// The largest finite Float64, Prometheus's upper bound of the last
/// finite exponential bucket.
const MAX_FLOAT: &str = "1.7976931348623157e308";

/// `histogram_count(h)`.
pub(crate) fn histogram_count(h: &str) -> String {
    field(h, "count")
}

/// `histogram_sum(h)`.
pub(crate) fn histogram_sum(h: &str) -> String {
    field(h, "sum")
}

/// `histogram_avg(h)`: sum over count.
pub(crate) fn histogram_avg(h: &str) -> String {
    format!("({} / {})", field(h, "sum"), field(h, "count"))
}

/// `histogram_stdvar(h)`.
pub(crate) fn histogram_stdvar(h: &str) -> String {
    let_in(&[("_nh_hv", h)], &variance("_nh_hv"))
}

/// `histogram_stddev(h)`.
pub(crate) fn histogram_stddev(h: &str) -> String {
    format!("sqrt({})", histogram_stdvar(h))
}

/// `histogram_quantile(q, h)`. Only the bucket found (and the last one)
/// needs bounds, so they are computed for those two alone.
pub(crate) fn histogram_quantile(q: &str, h: &str) -> String {
    // The chain reads `h` and `q` many times, deep inside: as columns of a
    // large subquery each read would cost ClickHouse's analysis a pass over
    // that subquery (see `stages`); as lambda parameters, one over the chain.
    let_in(
        &[("_nh_qa", q), ("_nh_ha", h)],
        &quantile_of("_nh_qa", "_nh_ha"),
    )
}

fn quantile_of(q: &str, h: &str) -> String {
    let q = format!("toFloat64({q})");
    let count = field(h, "count");
    let sum = field(h, "sum");
    // Prometheus walks up from the lowest bucket for q < 0.5 and whenever
    // there are NaN observations (the sum is NaN), else down from the top.
    let forward = format!("(isNaN({sum}) OR {q} < 0.5)");
    let rank = format!("if({forward}, {q} * {count}, (1 - {q}) * {count})");
    let start = vec![
        val("_nh_c", counts(h)),
        val("_nh_ni", field(h, "negative_index")),
        val("_nh_pi", field(h, "positive_index")),
        val("_nh_zw", zero_walked(h)),
        val("_nh_w", format!("exp2(-{})", field(h, "schema"))),
        val("_nh_z", field(h, "zero_threshold")),
        val("_nh_u", custom(h)),
        val("_nh_v", field(h, "custom_values")),
        val("_nh_f", forward),
        val("_nh_r", rank),
        val("_nh_n", count.clone()),
        val("_nh_m", sum),
        val("_nh_p", only_positive(h)),
        val("_nh_o", only_negative(h)),
    ];
    let chain = Stages::start(&start)
        .then(
            // The counts in walking order.
            &[val("_nh_d", "if(_nh_f, _nh_c, arrayReverse(_nh_c))")],
        )
        .then(
            // Running counts (`arrayCumSum` adds in order, as Prometheus's
            // loop).
            &[val("_nh_s", "arrayCumSum(_nh_d)")],
        )
        .then(
            // The first nonempty bucket walked whose running count reaches
            // the rank.
            &[val(
                "_nh_k",
                "arrayFirstIndex((_nh_e, _nh_a) -> _nh_e != 0 AND _nh_a >= _nh_r, _nh_d, _nh_s)",
            )],
        )
        .then(&[
            // The bucket found (its position upwards), else the last
            // one walked.
            val(
                "_nh_at",
                "if(_nh_k = 0, if(_nh_f, toInt64(length(_nh_d)), 1), \
                         if(_nh_f, toInt64(_nh_k), toInt64(length(_nh_d)) + 1 - _nh_k))",
            ),
            val("_nh_len", "toInt64(length(_nh_d))"),
            val("_nh_a", "if(_nh_k = 0, _nh_s[-1], _nh_s[_nh_k])"),
            val("_nh_cs", "_nh_d[if(_nh_k = 0, -1, toInt64(_nh_k))]"),
            val("_nh_cl", "_nh_d[-1]"),
            // With NaN observations Prometheus walks on past the
            // bucket found to count the rest, which leaves its bucket
            // variable on the last bucket: it interpolates there.
            val(
                "_nh_y",
                "isNaN(_nh_m) AND _nh_k > 0 AND _nh_k < length(_nh_d)",
            ),
        ]);
    // The bounds of the bucket at that position and of the last one;
    // zeros, as Prometheus's zero-value bucket, when there is none.
    let chain = bucket_bounds(chain, &[("p", "_nh_at"), ("l", "_nh_len")])
        .then(&{
            // Across zero with buckets on one side only (counting the
            // layout, empty buckets included), zero bounds the other side;
            // a custom -Inf lower bound becomes zero.
            let across = "(NOT _nh_u AND _nh_lop < 0 AND _nh_upp > 0)";
            let empty = "_nh_len = 0";
            [
                val("_nh_i", format!("if({empty}, 0, _nh_lop)")),
                val("_nh_j", format!("if({empty}, 0, _nh_upp)")),
                // Rounding can take the running count past the count.
                val("_nh_a", "if(_nh_a > _nh_n, _nh_n, _nh_a)"),
                val(
                    "_nh_g",
                    format!(
                        "multiIf({empty}, 0, {across} AND _nh_p, 0, \
                             _nh_u AND _nh_lop = -inf, 0, _nh_lop)"
                    ),
                ),
                val(
                    "_nh_h",
                    format!("multiIf({empty}, 0, {across} AND _nh_o, 0, _nh_upp)"),
                ),
            ]
        })
        .then(&[
            // Custom buckets answer their finite bound in the -Inf and +Inf
            // buckets, and a rank never reached the upper bound of the last
            // bucket (NaN with NaN observations).
            val(
                "_nh_e",
                "multiIf(_nh_u AND _nh_i = -inf AND _nh_j <= 0, (_nh_j, 1), \
                 _nh_u AND _nh_i != -inf AND _nh_j = inf, (_nh_i, 1), \
                 _nh_a < _nh_r, (if(isNaN(_nh_m), nan, _nh_h), 1), (0, 0))",
            ),
            val("_nh_i", "if(_nh_y, _nh_lol, _nh_g)"),
            val("_nh_j", "if(_nh_y, _nh_upl, _nh_h)"),
            // How far into the bucket the rank is.
            val(
                "_nh_x",
                "if(_nh_f, _nh_r - (_nh_a - _nh_cs), _nh_a - _nh_r) / if(_nh_y, _nh_cl, _nh_cs)",
            ),
        ]);
    // Linear for custom buckets and across zero, else on a log scale
    // (mirrored for negative buckets).
    let value = chain.finish(
        "if(_nh_e.2 = 1, _nh_e.1, multiIf(_nh_u OR (_nh_i <= 0 AND _nh_j >= 0), \
         _nh_i + (_nh_j - _nh_i) * _nh_x, \
         _nh_i > 0, exp2(log2(abs(_nh_i)) + (log2(abs(_nh_j)) - log2(abs(_nh_i))) * _nh_x), \
         -exp2(log2(abs(_nh_j)) + (log2(abs(_nh_i)) - log2(abs(_nh_j))) * (1 - _nh_x))))",
    );
    format!("multiIf({q} < 0, -inf, {q} > 1, inf, {count} = 0 OR isNaN({q}), nan, {value})")
}

/// Steps after `chain` that add the bounds of the buckets at upward
/// positions `(suffix, position)` (1-based, within the layout) as
/// `_nh_lo{suffix}` and `_nh_up{suffix}`, from the layout values
/// `_nh_ni`, `_nh_pi`, `_nh_zw`, `_nh_w`, `_nh_z`, `_nh_v` (see
/// [`layout`]).
fn bucket_bounds(chain: Stages, at: &[(&str, &str)]) -> Stages {
    let name = |p: &str, s: &str| format!("_nh_{p}{s}");
    let mut sides = Vec::new();
    for (s, p) in at {
        // Negative buckets first (highest index first), then the zero
        // bucket when walked, then positive ones.
        sides.push((
            name("s", s),
            format!("if({p} <= length(_nh_ni), -1, if(_nh_zw AND {p} = length(_nh_ni) + 1, 0, 1))"),
        ));
        sides.push((
            name("i", s),
            format!(
                "if({p} <= length(_nh_ni), _nh_ni[length(_nh_ni) + 1 - {p}], \
                 _nh_pi[{p} - length(_nh_ni) - _nh_zw])"
            ),
        ));
    }
    let chain = chain.then(&sides);
    let mut raw = Vec::new();
    for (s, _) in at {
        let i = name("i", s);
        raw.push((name("n", s), exp_bound(&format!("({i} - 1) * _nh_w"))));
        raw.push((name("f", s), exp_bound(&format!("{i} * _nh_w"))));
    }
    let chain = chain.then(&raw);
    let mut magnitudes = Vec::new();
    for (s, _) in at {
        let (i, n, f) = (name("i", s), name("n", s), name("f", s));
        magnitudes.push((name("a", s), magnitude_near(&i, &n)));
        magnitudes.push((name("b", s), magnitude_far(&i, &f)));
    }
    let chain = chain.then(&magnitudes);
    let mut arranged = Vec::new();
    for (s, _) in at {
        let (side, a, b) = (name("s", s), name("a", s), name("b", s));
        arranged.push((
            name("lo", s),
            format!("multiIf({side} < 0, -{b}, {side} = 0, -_nh_z, {a})"),
        ));
        arranged.push((
            name("up", s),
            format!("multiIf({side} < 0, -{a}, {side} = 0, _nh_z, {b})"),
        ));
    }
    chain.then(&arranged)
}

/// The bound of a bucket nearer zero, in magnitude, from its index `i` and
/// the exponential bound `near` of index i - 1 (moved to the zero bucket's
/// edge when inside it).
fn magnitude_near(i: &str, near: &str) -> String {
    format!(
        "if(_nh_u, if({i} = 0, -inf, _nh_v[{i}]), if({near} > 0 AND {near} < _nh_z, _nh_z, {near}))"
    )
}

/// The bound of a bucket farther from zero, in magnitude, from its index
/// `i` and the exponential bound `far` of index i.
fn magnitude_far(i: &str, far: &str) -> String {
    format!("if(_nh_u, if({i} >= length(_nh_v), inf, _nh_v[{i} + 1]), {far})")
}

/// Named SQL values of a [`Stages`] step.
type Values = Vec<(String, String)>;

/// A named SQL value.
fn val(name: &str, sql: impl Into<String>) -> (String, String) {
    (name.to_string(), sql.into())
}

/// `histogram_fraction(lower, upper, h)`: the estimated share of
/// observations between `lower` and `upper`.
pub(crate) fn histogram_fraction(lower: &str, upper: &str, h: &str) -> String {
    // Read once, as for `histogram_quantile`.
    let_in(
        &[("_nh_la", lower), ("_nh_ua", upper), ("_nh_ha", h)],
        &fraction_of("_nh_la", "_nh_ua", "_nh_ha"),
    )
}

fn fraction_of(lower: &str, upper: &str, h: &str) -> String {
    let (lower, upper) = (format!("toFloat64({lower})"), format!("toFloat64({upper})"));
    let count = field(h, "count");
    let mut start = layout(h);
    start.extend([
        val("_nh_l", lower.clone()),
        val("_nh_h", upper.clone()),
        val("_nh_n", count.clone()),
        val("_nh_m", field(h, "sum")),
        val("_nh_p", only_positive(h)),
        val("_nh_o", only_negative(h)),
    ]);
    let chain = Stages::start(&start)
        .then(&[
            val("_nh_b", bucket_list()),
            // Counts before and at each bucket, as Prometheus's running
            // rank and count.
            val("_nh_s", "arrayCumSum(_nh_c)"),
        ])
        .then(&[
            // Prometheus takes 0 as the lower bound of a bucket across 0 when
            // there are only positive buckets, as its upper when there are
            // only negative ones (counting the layout, empty buckets
            // included); custom buckets across 0 too.
            val(
                "_nh_b",
                "arrayMap(_nh_t -> (if(_nh_t.1 <= 0 AND _nh_t.2 >= 0 AND _nh_p, 0, _nh_t.1), \
                 if(_nh_t.1 <= 0 AND _nh_t.2 >= 0 AND _nh_o, 0, _nh_t.2), _nh_t.3), _nh_b)",
            ),
        ])
        .then(&[
            val("_nh_jl", find_bucket("_nh_l")),
            val("_nh_jh", find_bucket("_nh_h")),
        ])
        .then(
            &[
                bucket_at("l"),
                bucket_at("h"),
                vec![
                    // With NaN observations the share is of the observations
                    // in the buckets (summed in walking order), else of the
                    // count.
                    val("_nh_t", "if(isNaN(_nh_m), _nh_s[-1], _nh_n)"),
                ],
            ]
            .concat(),
        )
        .then(&[val("_nh_rl", rank_in_bucket("l"))])
        .then(&[val("_nh_rh", rank_in_bucket("h"))]);
    // Not found, or past the total: the total.
    let value = chain.finish(
        "(if(_nh_jh = 0 OR _nh_rh > _nh_t, _nh_t, _nh_rh) \
         - if(_nh_jl = 0 OR _nh_rl > _nh_t, _nh_t, _nh_rl)) / _nh_n",
    );
    format!(
        "multiIf({count} = 0 OR isNaN({lower}) OR isNaN({upper}), nan, {lower} >= {upper}, 0, {value})"
    )
}

/// The index (1-based, 0 for none) of the first bucket of `_nh_b` that
/// starts at or above `v` or holds it inside.
fn find_bucket(v: &str) -> String {
    format!("arrayFirstIndex(_nh_t -> _nh_t.1 >= {v} OR (_nh_t.1 < {v} AND _nh_t.2 > {v}), _nh_b)")
}

/// The bounds and count of the bucket found for `_nh_{s}` and the counts
/// before it, as `_nh_a{s}`, `_nh_b{s}`, `_nh_c{s}`, `_nh_d{s}`.
fn bucket_at(s: &str) -> Values {
    let name = |p: &str| format!("_nh_{p}{s}");
    let j = format!("_nh_j{s}");
    vec![
        (name("a"), format!("_nh_b[{j}].1")),
        (name("b"), format!("_nh_b[{j}].2")),
        (name("c"), format!("_nh_b[{j}].3")),
        (name("d"), format!("if({j} > 1, _nh_s[{j} - 1], 0)")),
    ]
}

/// The observations below `_nh_{s}` by the bucket found for it (see
/// [`bucket_at`]): those of the buckets before, plus the part of the bucket
/// below the value when it is inside (linear for custom buckets and across
/// zero, where a -Inf lower bound counts the whole bucket; else on a log
/// scale, mirrored for negative buckets).
fn rank_in_bucket(s: &str) -> String {
    let (v, j) = (format!("_nh_{s}"), format!("_nh_j{s}"));
    let (lo, up, c, before) = (
        format!("_nh_a{s}"),
        format!("_nh_b{s}"),
        format!("_nh_c{s}"),
        format!("_nh_d{s}"),
    );
    let (lv, ll, lu) = (
        format!("log2(abs({v}))"),
        format!("log2(abs({lo}))"),
        format!("log2(abs({up}))"),
    );
    format!(
        "multiIf({j} = 0 OR {lo} >= {v}, {before}, \
         _nh_u OR ({lo} <= 0 AND {up} >= 0), \
         if({lo} = -inf, {c}, {before} + {c} * (({v} - {lo}) / ({up} - {lo}))), \
         {v} > 0, {before} + {c} * (({lv} - {ll}) / ({lu} - {ll})), \
         {before} + {c} * (1 - (({lv} - {lu}) / ({ll} - {lu}))))"
    )
}

/// Prometheus's variance estimate: every nonempty bucket's count at its
/// representative value (the arithmetic mean of custom bounds, 0 in the
/// zero bucket, else the geometric mean), squared distances to the mean
/// summed with Kahan-Neumaier compensation, over the count.
fn variance(h: &str) -> String {
    let mut start = layout(h);
    start.push(val(
        "_nh_m",
        format!("({} / {})", field(h, "sum"), field(h, "count")),
    ));
    let terms = Stages::start(&start)
        .then(&[
            val("_nh_b", bucket_list()),
        ])
        // An empty bucket is skipped; adding 0 instead leaves the
        // compensated sum as it was.
        .finish(
            "arrayMap((_nh_e, _nh_c) -> if(_nh_c = 0, 0, _nh_c * (_nh_e - _nh_m) * (_nh_e - _nh_m)), \
             arrayMap(_nh_t -> (multiIf(_nh_u, (_nh_t.2 + _nh_t.1) / 2, \
             _nh_t.1 <= 0 AND _nh_t.2 >= 0, 0, _nh_t.2 < 0, -sqrt(_nh_t.2 * _nh_t.1), \
             sqrt(_nh_t.2 * _nh_t.1)), _nh_t.3), _nh_b))",
        );
    format!(
        "({} / {})",
        super::functions::kahan_sum(&terms),
        field(h, "count")
    )
}

/// The values a chain starts from: the bucket layout in upward order (the
/// indexes `_nh_x`, the sides `_nh_g`, -1 negative, 0 zero, 1 positive,
/// and the counts `_nh_c`) and what the bounds need (`_nh_w` = 2^-schema,
/// the zero threshold `_nh_z`, whether buckets are custom `_nh_u`, the
/// custom bounds `_nh_v`).
fn layout(h: &str) -> Values {
    let (pi, ni) = (field(h, "positive_index"), field(h, "negative_index"));
    let zero = zero_walked(h);
    vec![
        val(
            "_nh_x",
            format!("arrayConcat(arrayReverse({ni}), arraySlice([toInt32(0)], 1, {zero}), {pi})"),
        ),
        val(
            "_nh_g",
            format!(
                "arrayConcat(arrayWithConstant(length({ni}), -1), arraySlice([0], 1, {zero}), \
                 arrayWithConstant(length({pi}), 1))"
            ),
        ),
        val("_nh_c", counts(h)),
        val("_nh_w", format!("exp2(-{})", field(h, "schema"))),
        val("_nh_z", field(h, "zero_threshold")),
        val("_nh_u", custom(h)),
        val("_nh_v", field(h, "custom_values")),
    ]
}

/// The buckets from the [`layout`] values: `Array(Tuple(Float64, Float64,
/// Float64))` of lower bound, upper bound, count. Exponential bounds
/// inside the zero bucket move to its edge, as Prometheus's iterator does.
fn bucket_list() -> String {
    let near = exp_bound("(_nhb_i - 1) * _nh_w");
    let far = exp_bound("_nhb_i * _nh_w");
    let magnitudes = format!(
        "arrayMap((_nhb_i, _nhb_l, _nhb_h) -> ({}, {}), \
         _nh_x, arrayMap(_nhb_i -> {near}, _nh_x), arrayMap(_nhb_i -> {far}, _nh_x))",
        magnitude_near("_nhb_i", "_nhb_l"),
        magnitude_far("_nhb_i", "_nhb_h"),
    );
    format!(
        "arrayMap((_nhb_t, _nhb_s, _nhb_c) -> multiIf(_nhb_s < 0, (-_nhb_t.2, -_nhb_t.1, _nhb_c), \
         _nhb_s = 0, (-_nh_z, _nh_z, _nhb_c), (_nhb_t.1, _nhb_t.2, _nhb_c)), {magnitudes}, _nh_g, _nh_c)"
    )
}

/// The bound 2^e of exponential buckets, `e` being idx·2^-schema: exact in
/// the exponent (an integer times a power of two), so bounds are exact for
/// schemas <= 0; the bucket that would end at 2^1024 ends at the largest
/// finite value, as in Prometheus.
fn exp_bound(e: &str) -> String {
    format!("if({e} = 1024, {MAX_FLOAT}, exp2({e}))")
}

/// The bucket counts in upward order.
fn counts(h: &str) -> String {
    format!(
        "arrayConcat(arrayReverse({}), arraySlice([{}], 1, {}), {})",
        field(h, "negative_counts"),
        field(h, "zero_count"),
        zero_walked(h),
        field(h, "positive_counts")
    )
}

/// Whether Prometheus walks the zero bucket: when it holds something (and
/// there is one: custom buckets have none).
fn zero_walked(h: &str) -> String {
    format!("({} > 0 AND NOT {})", field(h, "zero_count"), custom(h))
}

/// Whether the layout has positive buckets only.
fn only_positive(h: &str) -> String {
    format!(
        "(empty({}) AND notEmpty({}))",
        field(h, "negative_counts"),
        field(h, "positive_counts")
    )
}

/// Whether the layout has negative buckets only.
fn only_negative(h: &str) -> String {
    format!(
        "(empty({}) AND notEmpty({}))",
        field(h, "positive_counts"),
        field(h, "negative_counts")
    )
}

/// Whether the histogram has custom buckets.
fn custom(h: &str) -> String {
    format!("({} = -53)", field(h, "schema"))
}

/// A field of the histogram.
fn field(h: &str, name: &str) -> String {
    format!("tupleElement({h}, '{name}')")
}

#[cfg(test)]
mod tests {
    //! The SQL run by a real ClickHouse, against a reference implementation
    //! of Prometheus's functions written from its Go source
    //! (`promql/quantile.go`, `promql/functions.go`, `model/histogram`),
    //! on hand-picked and generated histograms, and against expectations of
    //! Prometheus's `native_histograms.test`.

    use super::*;
    use crate::promqltest::histogram::kahan_inc;
    use comet_schema::managed::{ManagedClickHouse, ManagedMetrics, ManagedSettings};
    use std::path::PathBuf;
    use std::time::Duration;

    const INF: f64 = f64::INFINITY;
    const NAN: f64 = f64::NAN;

    /// A native histogram as [`HISTOGRAM_TYPE`] holds it.
    #[derive(Clone, Debug, Default)]
    struct Hist {
        schema: i8,
        zero_threshold: f64,
        zero_count: f64,
        count: f64,
        sum: f64,
        positive: Vec<(i32, f64)>,
        negative: Vec<(i32, f64)>,
        custom_values: Vec<f64>,
    }

    impl Hist {
        /// Buckets at consecutive indexes from `offset`, as the test
        /// format's `buckets:[...]` (count: all buckets and the zero
        /// bucket).
        fn exp(schema: i8, sum: f64, offset: i32, positive: &[f64], negative: &[f64]) -> Self {
            let dense = |counts: &[f64]| -> Vec<(i32, f64)> {
                counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (offset + i as i32, *c))
                    .collect()
            };
            let mut h = Hist {
                schema,
                sum,
                positive: dense(positive),
                negative: dense(negative),
                ..Hist::default()
            };
            h.count = h.bucket_total();
            h
        }

        fn custom(sum: f64, bounds: &[f64], counts: &[f64]) -> Self {
            let mut h = Hist {
                schema: -53,
                sum,
                custom_values: bounds.to_vec(),
                positive: counts
                    .iter()
                    .enumerate()
                    .map(|(i, c)| (i as i32, *c))
                    .collect(),
                ..Hist::default()
            };
            h.count = h.bucket_total();
            h
        }

        fn with_zero(mut self, threshold: f64, count: f64) -> Self {
            self.zero_threshold = threshold;
            self.zero_count = count;
            self.count = self.bucket_total();
            self
        }

        fn with_count(mut self, count: f64) -> Self {
            self.count = count;
            self
        }

        fn bucket_total(&self) -> f64 {
            let buckets: f64 = self
                .positive
                .iter()
                .chain(&self.negative)
                .map(|b| b.1)
                .sum();
            buckets + self.zero_count
        }

        fn is_custom(&self) -> bool {
            self.schema == -53
        }

        /// The histogram as an SQL literal.
        fn sql(&self) -> String {
            let index = |b: &[(i32, f64)]| {
                let v: Vec<String> = b.iter().map(|(i, _)| i.to_string()).collect();
                format!("[{}]", v.join(", "))
            };
            let counts = |b: &[(i32, f64)]| floats(&b.iter().map(|(_, c)| *c).collect::<Vec<_>>());
            format!(
                "CAST(tuple({}, {}, {}, {}, {}, {}, {}, {}, {}, {}, 0), '{HISTOGRAM_TYPE}')",
                self.schema,
                float(self.zero_threshold),
                float(self.zero_count),
                float(self.count),
                float(self.sum),
                index(&self.positive),
                counts(&self.positive),
                index(&self.negative),
                counts(&self.negative),
                floats(&self.custom_values),
            )
        }
    }

    /// A float as SQL, bit for bit.
    fn float(x: f64) -> String {
        format!("reinterpretAsFloat64(toUInt64({}))", x.to_bits())
    }

    fn floats(xs: &[f64]) -> String {
        let v: Vec<String> = xs.iter().map(|x| float(*x)).collect();
        format!("[{}]", v.join(", "))
    }

    // ---- The reference: Prometheus's algorithms, step by step. ----

    #[derive(Clone, Copy, Debug, Default)]
    struct Bucket {
        lower: f64,
        upper: f64,
        count: f64,
    }

    /// `frac · 2^exp` rounded once, as Go's `math.Ldexp`.
    fn ldexp(frac: f64, exp: i32) -> f64 {
        let half = exp / 2;
        frac * 2f64.powi(half) * 2f64.powi(exp - half)
    }

    /// Prometheus's `getBound`: the upper bound of bucket `idx`.
    fn bound(idx: i32, schema: i8, custom_values: &[f64]) -> f64 {
        if schema == -53 {
            let len = custom_values.len() as i32;
            assert!(
                (-1..=len).contains(&idx),
                "custom bucket {idx} out of range"
            );
            return match idx {
                -1 => -INF,
                i if i == len => INF,
                i => custom_values[i as usize],
            };
        }
        if schema < 0 {
            let exp = idx << -schema;
            return if exp == 1024 {
                f64::MAX
            } else {
                ldexp(1.0, exp)
            };
        }
        let s = i32::from(schema);
        let frac_idx = idx & ((1 << s) - 1);
        // Prometheus tabulates these fractions of [0.5, 1).
        let frac = (f64::from(frac_idx) / f64::from(1 << s) - 1.0).exp2();
        let exp = (idx >> s) + 1;
        if frac == 0.5 && exp == 1025 {
            f64::MAX
        } else {
            ldexp(frac, exp)
        }
    }

    /// Prometheus's `AllBucketIterator` (upward), or
    /// `AllReverseBucketIterator`.
    fn walk(h: &Hist, reverse: bool) -> Vec<Bucket> {
        let at = |positive: bool, &(idx, count): &(i32, f64)| {
            let below = bound(idx - 1, h.schema, &h.custom_values);
            let above = bound(idx, h.schema, &h.custom_values);
            let b = if positive {
                Bucket {
                    lower: below,
                    upper: above,
                    count,
                }
            } else {
                Bucket {
                    lower: -above,
                    upper: -below,
                    count,
                }
            };
            let mut b = b;
            if b.upper < 0.0 && b.upper > -h.zero_threshold {
                b.upper = -h.zero_threshold;
            } else if b.lower > 0.0 && b.lower < h.zero_threshold {
                b.lower = h.zero_threshold;
            }
            b
        };
        let zero = (h.zero_count > 0.0).then(|| {
            assert!(!h.is_custom(), "custom buckets have no zero bucket");
            Bucket {
                lower: -h.zero_threshold,
                upper: h.zero_threshold,
                count: h.zero_count,
            }
        });
        let mut out: Vec<Bucket> = Vec::new();
        if reverse {
            out.extend(h.positive.iter().rev().map(|b| at(true, b)));
            out.extend(zero);
            out.extend(h.negative.iter().map(|b| at(false, b)));
        } else {
            out.extend(h.negative.iter().rev().map(|b| at(false, b)));
            out.extend(zero);
            out.extend(h.positive.iter().map(|b| at(true, b)));
        }
        out
    }

    /// Prometheus's `HistogramQuantile`.
    fn ref_quantile(q: f64, h: &Hist) -> f64 {
        if q < 0.0 {
            return -INF;
        }
        if q > 1.0 {
            return INF;
        }
        if h.count == 0.0 || q.is_nan() {
            return NAN;
        }
        let forward = h.sum.is_nan() || q < 0.5;
        let buckets = walk(h, !forward);
        let mut rank = if forward {
            q * h.count
        } else {
            (1.0 - q) * h.count
        };
        let mut it = buckets.iter();
        let mut bucket = Bucket::default();
        let mut count = 0.0;
        for b in it.by_ref() {
            bucket = *b;
            if bucket.count == 0.0 {
                continue;
            }
            count += bucket.count;
            if count >= rank {
                break;
            }
        }
        if !h.is_custom() && bucket.lower < 0.0 && bucket.upper > 0.0 {
            if h.negative.is_empty() && !h.positive.is_empty() {
                bucket.lower = 0.0;
            } else if h.positive.is_empty() && !h.negative.is_empty() {
                bucket.upper = 0.0;
            }
        } else if h.is_custom() {
            if bucket.lower == -INF {
                if bucket.upper <= 0.0 {
                    return bucket.upper;
                }
                bucket.lower = 0.0;
            } else if bucket.upper == INF {
                return bucket.lower;
            }
        }
        if count > h.count {
            count = h.count;
        }
        if count < rank {
            if h.sum.is_nan() {
                return NAN;
            }
            return bucket.upper;
        }
        if forward {
            rank -= count - bucket.count;
        } else {
            rank = count - rank;
        }
        if h.sum.is_nan() {
            // Prometheus counts the rest for an annotation, with the same
            // bucket variable.
            for b in it {
                bucket = *b;
            }
        }
        let fraction = rank / bucket.count;
        if h.is_custom() || (bucket.lower <= 0.0 && bucket.upper >= 0.0) {
            return bucket.lower + (bucket.upper - bucket.lower) * fraction;
        }
        let log_lower = bucket.lower.abs().log2();
        let log_upper = bucket.upper.abs().log2();
        if bucket.lower > 0.0 {
            return (log_lower + (log_upper - log_lower) * fraction).exp2();
        }
        -(log_upper + (log_lower - log_upper) * (1.0 - fraction)).exp2()
    }

    /// Prometheus's `Bucket.FractionBelow`.
    fn fraction_below(b: &Bucket, v: f64, linear: bool) -> f64 {
        if linear {
            return (v - b.lower) / (b.upper - b.lower);
        }
        let log_lower = b.lower.abs().log2();
        let log_upper = b.upper.abs().log2();
        let log_v = v.abs().log2();
        if v > 0.0 {
            return (log_v - log_lower) / (log_upper - log_lower);
        }
        1.0 - ((log_v - log_upper) / (log_lower - log_upper))
    }

    /// Prometheus's `HistogramFraction`.
    fn ref_fraction(lower: f64, upper: f64, h: &Hist) -> f64 {
        if h.count == 0.0 || lower.is_nan() || upper.is_nan() {
            return NAN;
        }
        if lower >= upper {
            return 0.0;
        }
        let buckets = walk(h, false);
        let (mut count, mut rank, mut lower_rank, mut upper_rank) = (0.0, 0.0, 0.0, 0.0);
        let (mut lower_set, mut upper_set) = (false, false);
        let mut it = buckets.iter();
        for b in it.by_ref() {
            let mut b = *b;
            count += b.count;
            let mut zero_bucket = false;
            if b.lower <= 0.0 && b.upper >= 0.0 {
                zero_bucket = true;
                if h.negative.is_empty() && !h.positive.is_empty() {
                    b.lower = 0.0;
                } else if h.positive.is_empty() && !h.negative.is_empty() {
                    b.upper = 0.0;
                }
            }
            let linear = h.is_custom() || zero_bucket;
            let interpolate = |v: f64| {
                if linear && b.lower == -INF {
                    b.count
                } else {
                    rank + b.count * fraction_below(&b, v, linear)
                }
            };
            if !lower_set && b.lower >= lower {
                lower_rank = rank;
                lower_set = true;
            }
            if !upper_set && b.lower >= upper {
                upper_rank = rank;
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            if !lower_set && b.lower < lower && b.upper > lower {
                lower_rank = interpolate(lower);
                lower_set = true;
            }
            if !upper_set && b.lower < upper && b.upper > upper {
                upper_rank = interpolate(upper);
                upper_set = true;
            }
            if lower_set && upper_set {
                break;
            }
            rank += b.count;
        }
        if h.sum.is_nan() {
            for b in it {
                count += b.count;
            }
        } else {
            count = h.count;
        }
        if !lower_set || lower_rank > count {
            lower_rank = count;
        }
        if !upper_set || upper_rank > count {
            upper_rank = count;
        }
        (upper_rank - lower_rank) / h.count
    }

    /// Prometheus's `histogramVariance`.
    fn ref_stdvar(h: &Hist) -> f64 {
        let mean = h.sum / h.count;
        let (mut variance, mut c) = (0.0, 0.0);
        for b in walk(h, false) {
            if b.count == 0.0 {
                continue;
            }
            let value = if h.is_custom() {
                (b.upper + b.lower) / 2.0
            } else if b.lower <= 0.0 && b.upper >= 0.0 {
                0.0
            } else {
                let v = (b.upper * b.lower).sqrt();
                if b.upper < 0.0 { -v } else { v }
            };
            let delta = value - mean;
            (variance, c) = kahan_inc(b.count * delta * delta, variance, c);
        }
        (variance + c) / h.count
    }

    // ---- ClickHouse. ----

    /// The server: `COMET_TEST_CLICKHOUSE_URL`, else a managed one started
    /// here from the chdb venv, as the integration tests do.
    struct Server {
        url: String,
        client: reqwest::Client,
        managed: Option<(ManagedClickHouse, tempfile::TempDir)>,
    }

    impl Server {
        async fn start() -> Self {
            let client = reqwest::Client::new();
            if let Some(url) = std::env::var("COMET_TEST_CLICKHOUSE_URL")
                .ok()
                .filter(|u| !u.is_empty())
            {
                return Server {
                    url,
                    client,
                    managed: None,
                };
            }
            let venv = std::env::var_os("COMET_MANAGED_CLICKHOUSE_VENV")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.chdb-venv"));
            let dir = tempfile::tempdir().expect("temp dir");
            let port = || {
                std::net::TcpListener::bind("127.0.0.1:0")
                    .and_then(|l| l.local_addr())
                    .map(|a| a.port())
                    .expect("a free port")
            };
            let settings = ManagedSettings {
                venv,
                data_dir: dir.path().to_path_buf(),
                http_port: port(),
                tcp_port: port(),
                startup_timeout: Duration::from_secs(180),
                shutdown_timeout: Duration::from_secs(10),
                cluster: None,
            };
            let server = ManagedClickHouse::start(settings, ManagedMetrics::unregistered())
                .await
                .expect("no ClickHouse: set COMET_TEST_CLICKHOUSE_URL or run scripts/setup.sh");
            Server {
                url: server.url(),
                client,
                managed: Some((server, dir)),
            }
        }

        async fn stop(self) {
            if let Some((server, _dir)) = self.managed {
                server.shutdown().await;
            }
        }

        async fn query(&self, sql: &str) -> String {
            let response = self
                .client
                .post(format!(
                    "{}/?max_query_size=100000000",
                    self.url.trim_end_matches('/')
                ))
                .body(sql.to_string())
                .send()
                .await
                .expect("ClickHouse answers");
            let ok = response.status().is_success();
            let text = response.text().await.expect("response text");
            assert!(ok, "{text}\n{}", &sql[..sql.len().min(2000)]);
            text
        }

        /// Float64 values, one a line, bit for bit.
        async fn floats(&self, select: &str) -> Vec<f64> {
            let sql = format!("SELECT reinterpretAsUInt64(v) FROM ({select}) FORMAT TSV");
            self.query(&sql)
                .await
                .lines()
                .map(|l| f64::from_bits(l.parse().expect("UInt64")))
                .collect()
        }

        /// `f(a, b, h)` for each row `(histogram, a, b)`, with the histogram
        /// and the arguments columns, not constants.
        async fn rows(
            &self,
            hists: &[Hist],
            rows: &[(usize, f64, f64)],
            f: &dyn Fn(&str, &str, &str) -> String,
        ) -> Vec<f64> {
            let mut out = Vec::with_capacity(rows.len());
            for chunk in rows.chunks(2000) {
                let literals: Vec<String> = hists.iter().map(Hist::sql).collect();
                let tuples: Vec<String> = chunk
                    .iter()
                    .enumerate()
                    .map(|(n, (i, a, b))| {
                        format!("tuple({n}, {}, {}, {})", i + 1, float(*a), float(*b))
                    })
                    .collect();
                let select = format!(
                    "SELECT n, {} AS v FROM (SELECT _r.1 AS n, [{}][_r.2] AS h, _r.3 AS a, _r.4 AS b \
                     FROM (SELECT arrayJoin([{}]) AS _r)) ORDER BY n",
                    f("a", "b", "h"),
                    literals.join(", "),
                    tuples.join(", ")
                );
                out.extend(self.floats(&select).await);
            }
            assert_eq!(out.len(), rows.len());
            out
        }
    }

    /// Equal, both NaN, or within 1e-12 relative: bounds and logarithms
    /// come from ClickHouse's exp2/log2, Prometheus's from a table and Go's
    /// math, and may differ in the last bits.
    fn close(a: f64, b: f64) -> bool {
        a == b || (a.is_nan() && b.is_nan()) || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
    }

    fn quantile_fn(a: &str, _: &str, h: &str) -> String {
        histogram_quantile(a, h)
    }

    fn fraction_fn(a: &str, b: &str, h: &str) -> String {
        histogram_fraction(a, b, h)
    }

    #[test]
    fn reference_follows_prometheus_tests() {
        for case in promqltest_cases() {
            let got = case.reference();
            assert!(case.matches(got), "{case:?}: reference gives {got}");
        }
    }

    /// What Prometheus's `native_histograms.test` expects.
    #[derive(Debug)]
    struct Case {
        hist: Hist,
        function: &'static str,
        args: Vec<f64>,
        want: f64,
        /// The test file's precision where it rounds.
        tolerance: f64,
    }

    impl Case {
        fn reference(&self) -> f64 {
            let h = &self.hist;
            match self.function {
                "count" => h.count,
                "sum" => h.sum,
                "avg" => h.sum / h.count,
                "stdvar" => ref_stdvar(h),
                "stddev" => ref_stdvar(h).sqrt(),
                "quantile" => ref_quantile(self.args[0], h),
                "fraction" => ref_fraction(self.args[0], self.args[1], h),
                f => panic!("{f}"),
            }
        }

        fn sql(&self) -> String {
            let h = self.hist.sql();
            let a: Vec<String> = self.args.iter().map(|x| float(*x)).collect();
            match self.function {
                "count" => histogram_count(&h),
                "sum" => histogram_sum(&h),
                "avg" => histogram_avg(&h),
                "stdvar" => histogram_stdvar(&h),
                "stddev" => histogram_stddev(&h),
                "quantile" => histogram_quantile(&a[0], &h),
                "fraction" => histogram_fraction(&a[0], &a[1], &h),
                f => panic!("{f}"),
            }
        }

        fn matches(&self, got: f64) -> bool {
            (got.is_nan() && self.want.is_nan())
                || got == self.want
                || (got - self.want).abs() <= self.tolerance * self.want.abs()
        }
    }

    // The values as the test file writes them.
    #[allow(clippy::approx_constant)]
    fn promqltest_cases() -> Vec<Case> {
        let case = |hist: &Hist, function, args: &[f64], want| Case {
            hist: hist.clone(),
            function,
            args: args.to_vec(),
            want,
            tolerance: 1e-12,
        };
        let mut cases = Vec::new();
        // {{schema:0 sum:5 count:4 buckets:[1 2 1]}}
        let single = Hist::exp(0, 5.0, 0, &[1.0, 2.0, 1.0], &[]);
        cases.extend([
            case(&single, "count", &[], 4.0),
            case(&single, "sum", &[], 5.0),
            case(&single, "avg", &[], 1.25),
            case(&single, "fraction", &[1.0, 2.0], 0.5),
            case(&single, "fraction", &[0.0, 8.0], 1.0),
            case(&single, "quantile", &[0.5], 1.414213562373095),
        ]);
        // {{schema:0 z_bucket:1 z_bucket_w:0.5 sum:0.25 count:1}}
        let zero = Hist::exp(0, 0.25, 0, &[], &[]).with_zero(0.5, 1.0);
        cases.extend([
            case(&zero, "fraction", &[-0.5, 0.5], 1.0),
            case(&zero, "quantile", &[0.5], 0.0),
        ]);
        // {{schema:0 sum:-5 count:4 n_buckets:[1 2 1]}}
        let negative = Hist::exp(0, -5.0, 0, &[], &[1.0, 2.0, 1.0]);
        cases.extend([
            case(&negative, "avg", &[], -1.25),
            case(&negative, "fraction", &[-2.0, -1.0], 0.5),
            case(&negative, "quantile", &[0.5], -1.414213562373095),
        ]);
        // The histogram_stddev_stdvar_N series.
        let sparse = |counts: &[usize], len: usize| -> Vec<f64> {
            (0..len)
                .map(|i| if counts.contains(&i) { 1.0 } else { 0.0 })
                .collect()
        };
        let sd1 = Hist::exp(
            2,
            10.0,
            0,
            &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0],
            &[],
        );
        let sd2 = Hist::exp(8, 10.0, 0, &[1.0, 2.0, 3.0, 4.0], &[]);
        let sd3 = Hist::exp(
            3,
            62.0,
            0,
            &sparse(&[13, 24, 26, 54], 55),
            &sparse(&[24, 46], 47),
        )
        .with_zero(0.0, 1.0);
        let mut sd6 = sd3.clone();
        sd6.sum = NAN;
        let mut sd7 = sd3.clone();
        sd7.sum = INF;
        let n4 = [
            0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0,
            1.0,
        ];
        let sd4 = Hist::exp(0, -112946.0, 0, &[], &n4);
        let sd5 = Hist::exp(0, -100.0, 0, &[], &[0.0, 0.0, 0.0, 0.0, 10.0]);
        cases.extend([
            case(&sd1, "stddev", &[], 1.0787993180043811),
            case(&sd1, "stdvar", &[], 1.163807968526718),
            case(&sd2, "stddev", &[], 0.0048960313898237465),
            case(&sd2, "stdvar", &[], 2.3971123370139447e-05),
            case(&sd3, "stdvar", &[], 1844.4651144196398),
            case(&sd4, "stdvar", &[], 759352122.1939945),
            case(&sd5, "stdvar", &[], 1.725830020304794),
            case(&sd6, "stddev", &[], NAN),
            case(&sd7, "stdvar", &[], INF),
        ]);
        let mut rounded = [
            case(&sd3, "stddev", &[], 42.94723640026),
            case(&sd4, "stddev", &[], 27556.344499842),
            case(&sd5, "stddev", &[], 1.3137084989848),
        ];
        for c in &mut rounded {
            c.tolerance = 1e-12 * 1e3;
        }
        cases.extend(rounded);
        // histogram_quantile_1 to _3 and histogram_fraction_2.
        let buckets = [2.0, 3.0, 0.0, 1.0, 4.0];
        let q1 = Hist::exp(0, 100.0, 0, &buckets, &[]).with_zero(0.001, 2.0);
        let q2 = Hist::exp(0, 100.0, 0, &[], &buckets).with_zero(0.001, 2.0);
        let q3 = Hist::exp(0, 100.0, 0, &buckets, &buckets).with_zero(0.001, 4.0);
        for (q, want) in [
            (1.001, INF),
            (1.0, 16.0),
            (0.99, 15.67072476139083),
            (0.9, 12.99603834169977),
            (0.6, 4.594793419988138),
            (0.5, 1.5874010519681994),
            (0.1, 0.0006),
            (0.0, 0.0),
            (-1.0, -INF),
            (0.08333333333333333, 0.0005),
            (0.6320802083934297, 6.0),
        ] {
            cases.push(case(&q1, "quantile", &[q], want));
        }
        for (q, want) in [
            (1.0, 0.0),
            (0.99, -0.00006),
            (0.9, -0.0006),
            (0.5, -1.5874010519681996),
            (0.1, -12.996038341699768),
            (0.0, -16.0),
        ] {
            cases.push(case(&q2, "quantile", &[q], want));
        }
        for (q, want) in [
            (1.0, 16.0),
            (0.99, 15.34822590920423),
            (0.9, 10.556063286183155),
            (0.7, 1.2030250360821164),
            (0.55, 0.0006),
            (0.5, 0.0),
            (0.45, -0.0006),
            (0.3, -1.2030250360821169),
            (0.1, -10.556063286183155),
            (0.01, -15.34822590920423),
            (0.0, -16.0),
        ] {
            cases.push(case(&q3, "quantile", &[q], want));
        }
        for (lower, upper, want) in [
            (0.0, INF, 1.0),
            (-INF, 0.0, 0.0),
            (-0.001, 0.0, 0.0),
            (0.0, 0.001, 0.16666666666666666),
            (0.001, INF, 0.8333333333333334),
            (0.0, 0.0005, 0.08333333333333333),
            (-INF, -0.001, 0.0),
            (1.0, 2.0, 0.25),
            (0.0, 1.5, 0.4795739585136224),
            (1.5, 2.0, 0.10375937481971091),
            (1.0, 8.0, 0.3333333333333333),
            (0.0, 6.0, 0.6320802083934297),
            (1.0, 6.0, 0.29874687506009634),
            (1.5, 6.0, 0.15250624987980724),
            (-2.0, -1.0, 0.0),
            (42.0, 3.1415, 0.0),
            (0.0, 0.0, 0.0),
            (3.1415, NAN, NAN),
            (NAN, 42.0, NAN),
            (-INF, INF, 1.0),
        ] {
            cases.push(case(&q1, "fraction", &[lower, upper], want));
        }
        // var_res_histogram.
        for (schema, offset_counts, q, want, lower, upper) in [
            (-1, &[0.0, 5.0][..], 0.5, 2.0, 0.0, 2.0),
            (
                0,
                &[0.0, 5.0][..],
                0.5,
                1.4142135623730951,
                0.0,
                1.4142135623730951,
            ),
            (
                0,
                &[0.0, 0.0, 5.0][..],
                0.5,
                2.82842712474619,
                0.0,
                2.82842712474619,
            ),
            (
                1,
                &[0.0, 0.0, 5.0][..],
                0.5,
                1.6817928305074292,
                0.0,
                1.6817928305074292,
            ),
            (-1, &[0.0, 0.0, 5.0][..], 0.5, 8.0, 0.0, 8.0),
        ] {
            let pos = Hist::exp(schema, 4.0, 0, offset_counts, &[]);
            let neg = Hist::exp(schema, 4.0, 0, &[], offset_counts);
            cases.extend([
                case(&pos, "quantile", &[q], want),
                case(&pos, "fraction", &[lower, upper], 0.5),
                case(&neg, "quantile", &[q], -want),
                case(&neg, "fraction", &[-upper, -lower], 0.5),
            ]);
        }
        // NaN observations: {{schema:0 count:3 sum:NaN}} and
        // {{schema:0 count:15 sum:NaN buckets:[12]}}.
        let all_nan = Hist::exp(0, NAN, 0, &[], &[]).with_count(3.0);
        let some_nan = Hist::exp(0, NAN, 0, &[12.0], &[]).with_count(15.0);
        cases.extend([
            case(&all_nan, "quantile", &[1.0], NAN),
            case(&all_nan, "quantile", &[0.4], NAN),
            case(&all_nan, "fraction", &[-INF, 0.7071067811865475], 0.0),
            case(&all_nan, "fraction", &[-INF, INF], 0.0),
            case(&some_nan, "quantile", &[1.0], NAN),
            case(&some_nan, "quantile", &[0.81], NAN),
            case(&some_nan, "quantile", &[0.8], 1.0),
            case(&some_nan, "quantile", &[0.4], 0.7071067811865475),
            case(&some_nan, "fraction", &[-INF, 0.7071067811865475], 0.4),
            case(&some_nan, "fraction", &[-INF, INF], 0.8),
        ]);
        // Empty histograms, exponential and custom.
        for empty in [Hist::default(), Hist::custom(0.0, &[-2.0, 3.0], &[])] {
            cases.extend([
                case(&empty, "count", &[], 0.0),
                case(&empty, "sum", &[], 0.0),
                case(&empty, "avg", &[], NAN),
                case(&empty, "fraction", &[-INF, INF], NAN),
                case(&empty, "fraction", &[0.0, 8.0], NAN),
            ]);
        }
        // {{schema:-53 sum:5 count:4 custom_values:[5 10] buckets:[1 2 1]}}
        let custom = Hist::custom(5.0, &[5.0, 10.0], &[1.0, 2.0, 1.0]);
        cases.extend([
            case(&custom, "fraction", &[5.0, 10.0], 0.5),
            case(&custom, "quantile", &[0.5], 7.5),
        ]);
        cases
    }

    /// xorshift64*: reproducible histograms without a dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }

        fn chance(&mut self, p: f64) -> bool {
            ((self.next() >> 11) as f64) < p * (1u64 << 53) as f64
        }

        fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
            xs[self.below(xs.len() as u64) as usize]
        }

        fn count(&mut self) -> f64 {
            self.pick(&[0.0, 0.0, 1.0, 1.0, 2.0, 3.0, 7.0, 0.5, 12.25, 1e-3])
        }

        /// Buckets from index `from` up, some empty, some indexes skipped.
        fn buckets(&mut self, from: i32) -> Vec<(i32, f64)> {
            let mut idx = from;
            (0..self.below(8))
                .map(|_| {
                    idx += 1 + if self.chance(0.3) {
                        self.below(3) as i32
                    } else {
                        0
                    };
                    (idx, self.count())
                })
                .collect()
        }
    }

    /// A random histogram: exponential (schemas -4 to 8, zero buckets of
    /// several widths, overlapping buckets included) or custom (negative
    /// bounds included); consistent counts mostly, with NaN observations,
    /// rounding and missing observations sometimes.
    fn random_hist(rng: &mut Rng) -> Hist {
        let mut h = if rng.chance(0.25) {
            let mut bound = rng.pick(&[-10.0, -3.0, -1.0, 0.0, 0.5, 1.0]);
            let mut bounds = Vec::new();
            for _ in 0..rng.below(6) {
                bounds.push(bound);
                bound += rng.pick(&[0.25, 1.0, 2.5, 10.0]);
            }
            let len = bounds.len() as i32;
            let mut positive = Vec::new();
            for i in 0..=len {
                if rng.chance(0.7) {
                    positive.push((i, rng.count()));
                }
            }
            Hist {
                schema: -53,
                custom_values: bounds,
                positive,
                ..Hist::default()
            }
        } else {
            let schema: i8 = rng.pick(&[-4, -2, -1, 0, 1, 3, 8]);
            // Indexes of values from about 2^-4 (0.06) to 2^8.
            let scale = |e: i32| {
                if schema >= 0 {
                    e << schema
                } else {
                    e >> -schema
                }
            };
            let from = |rng: &mut Rng| scale(rng.below(12) as i32 - 4) - 1;
            let positive = if rng.chance(0.75) {
                let start = from(rng);
                rng.buckets(start)
            } else {
                Vec::new()
            };
            let negative = if rng.chance(0.5) {
                let start = from(rng);
                rng.buckets(start)
            } else {
                Vec::new()
            };
            let zero_count = if rng.chance(0.5) { rng.count() } else { 0.0 };
            Hist {
                schema,
                zero_threshold: rng.pick(&[0.0, 2f64.powi(-128), 0.001, 0.3, 1.0]),
                zero_count,
                positive,
                negative,
                ..Hist::default()
            }
        };
        let total = h.bucket_total();
        h.count = match rng.below(12) {
            0 => total + rng.pick(&[1.0, 2.5]),
            1 => total * (1.0 + 1e-15),
            2 => (total - 1.0).max(0.0),
            _ => total,
        };
        h.sum = match rng.below(10) {
            0 => NAN,
            1 => rng.pick(&[INF, -INF]),
            _ => total * rng.pick(&[-3.5, -0.25, 0.0, 0.1, 1.0, 2.75, 40.0]),
        };
        // NaN observations count without a bucket, and make the sum NaN.
        if h.count > total {
            h.sum = NAN;
        }
        h
    }

    /// Quantiles for `h`: fixed ones and those whose rank is exactly a
    /// running count, from either end.
    fn quantiles_for(h: &Hist) -> Vec<f64> {
        let mut qs = vec![
            -INF, -1.0, -0.0, 0.0, 1e-9, 0.01, 0.1, 0.25, 0.3, 0.4999999, 0.5, 0.6, 0.75, 0.9,
            0.99, 1.0, 1.0000001, 2.0, INF, NAN,
        ];
        if h.count > 0.0 && h.count.is_finite() {
            let mut running = 0.0;
            for b in walk(h, false) {
                running += b.count;
                qs.push(running / h.count);
                qs.push(1.0 - running / h.count);
            }
        }
        qs
    }

    /// Fraction bounds for `h`: fixed values, every bucket bound, points
    /// inside buckets, paired at random (equal and reversed pairs too).
    fn bounds_for(h: &Hist, rng: &mut Rng) -> Vec<(f64, f64)> {
        let mut values = vec![
            -INF, INF, NAN, 0.0, -0.0, 1.0, -1.0, 1.5, -1.5, 1000.0, -1000.0, 1e-300,
        ];
        values.extend([h.zero_threshold, -h.zero_threshold]);
        for b in walk(h, false) {
            values.extend([b.lower, b.upper, (b.lower + b.upper) / 2.0]);
            if b.lower > 0.0 && b.upper.is_finite() {
                values.push((b.lower * b.upper).sqrt());
            }
        }
        let mut pairs: Vec<(f64, f64)> = (0..60)
            .map(|_| (rng.pick(&values), rng.pick(&values)))
            .collect();
        let v = rng.pick(&values);
        pairs.push((v, v));
        pairs.push((-INF, INF));
        pairs
    }

    /// Histograms at the edges: the last finite exponential bucket (upper
    /// bound the largest float) and the one after it (+Inf), buckets
    /// inside the zero bucket, a lone custom bucket, custom buckets all
    /// below zero, NaN observations with buckets after the one found.
    fn edge_hists() -> Vec<Hist> {
        let mut top = Hist::exp(0, 1e308, 1023, &[1.0, 2.0, 1.0], &[]);
        top.sum = INF;
        let top8 = Hist::exp(8, 1e308, (1024 << 8) - 1, &[1.0, 1.0, 1.0], &[1.0]);
        let inside_zero =
            Hist::exp(0, 1.0, -3, &[1.0, 0.0, 2.0, 3.0], &[2.0, 1.0]).with_zero(0.3, 1.0);
        let nan_obs = Hist::exp(3, NAN, 0, &[1.0, 0.0, 4.0, 0.0, 2.0, 0.0], &[1.0, 0.0, 1.0])
            .with_zero(0.01, 2.0);
        let nan_obs = nan_obs.clone().with_count(nan_obs.count + 3.0);
        vec![
            top,
            top8,
            inside_zero,
            nan_obs,
            Hist::custom(3.0, &[], &[2.0]),
            Hist::custom(-30.0, &[-10.0, -5.0, -1.0], &[1.0, 2.0, 3.0, 0.0]),
            Hist::custom(3.0, &[-1.0, 1.0], &[0.0, 2.0, 0.0]),
            Hist::custom(3.0, &[0.0, 1.0], &[1.0, 2.0, 3.0]),
            Hist::exp(-4, 10.0, -2, &[1.0, 1.0, 1.0, 1.0], &[]).with_zero(0.0, 3.0),
            Hist::exp(0, 10.0, 0, &[0.0, 0.0], &[]).with_zero(0.1, 2.0),
            Hist::exp(0, 10.0, 0, &[], &[0.0, 0.0]).with_zero(0.1, 2.0),
            Hist::exp(0, 0.0, 0, &[], &[]).with_count(2.0),
            Hist::custom(1.0, &[1.0, 2.0], &[]).with_count(2.0),
        ]
    }

    #[tokio::test]
    async fn sql_matches_reference_in_clickhouse() {
        let server = Server::start().await;
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut hists = edge_hists();
        hists.extend((0..300).map(|_| random_hist(&mut rng)));
        let mut stats = Vec::new();
        for batch in hists.chunks(30) {
            // One row per histogram for the functions of the histogram
            // alone.
            let rows: Vec<(usize, f64, f64)> = (0..batch.len()).map(|i| (i, 0.0, 0.0)).collect();
            type Unary = (&'static str, fn(&str) -> String, fn(&Hist) -> f64);
            let unary: [Unary; 5] = [
                ("histogram_count", histogram_count, |h| h.count),
                ("histogram_sum", histogram_sum, |h| h.sum),
                ("histogram_avg", histogram_avg, |h| h.sum / h.count),
                ("histogram_stdvar", histogram_stdvar, ref_stdvar),
                ("histogram_stddev", histogram_stddev, |h| {
                    ref_stdvar(h).sqrt()
                }),
            ];
            for (name, sql, reference) in unary {
                let got = server.rows(batch, &rows, &|_, _, h| sql(h)).await;
                let want: Vec<f64> = batch.iter().map(reference).collect();
                stats.push(compare(name, batch, &rows, &got, &want));
            }

            let rows: Vec<(usize, f64, f64)> = batch
                .iter()
                .enumerate()
                .flat_map(|(i, h)| quantiles_for(h).into_iter().map(move |q| (i, q, 0.0)))
                .collect();
            let got = server.rows(batch, &rows, &quantile_fn).await;
            let want: Vec<f64> = rows
                .iter()
                .map(|(i, q, _)| ref_quantile(*q, &batch[*i]))
                .collect();
            stats.push(compare("histogram_quantile", batch, &rows, &got, &want));

            let rows: Vec<(usize, f64, f64)> = batch
                .iter()
                .enumerate()
                .flat_map(|(i, h)| {
                    bounds_for(h, &mut rng)
                        .into_iter()
                        .map(move |(a, b)| (i, a, b))
                })
                .collect();
            let got = server.rows(batch, &rows, &fraction_fn).await;
            let want: Vec<f64> = rows
                .iter()
                .map(|(i, a, b)| ref_fraction(*a, *b, &batch[*i]))
                .collect();
            stats.push(compare("histogram_fraction", batch, &rows, &got, &want));
        }
        let (rows, inexact): (usize, usize) = stats
            .iter()
            .fold((0, 0), |(r, i), (rr, ii)| (r + rr, i + ii));
        eprintln!("{rows} results, {inexact} not bit-identical to the reference");

        // Every function is Float64, with constant and column arguments.
        let h = hists[3].sql();
        for sql in [
            histogram_count(&h),
            histogram_sum(&h),
            histogram_avg(&h),
            histogram_stddev(&h),
            histogram_stdvar(&h),
            histogram_fraction("1", "toFloat32(2)", &h),
            histogram_quantile("0.5", &h),
        ] {
            let ty = server.query(&format!("SELECT toTypeName({sql})")).await;
            assert_eq!(ty.trim(), "Float64", "{sql}");
        }
        server.stop().await;
    }

    /// Asserts every result close to the reference; returns how many
    /// results and how many not bit-identical.
    fn compare(
        name: &str,
        hists: &[Hist],
        rows: &[(usize, f64, f64)],
        got: &[f64],
        want: &[f64],
    ) -> (usize, usize) {
        let mut inexact = 0;
        for ((row, got), want) in rows.iter().zip(got).zip(want) {
            let (i, a, b) = row;
            assert!(
                close(*got, *want),
                "{name}({a:?}, {b:?}) of {:?}: ClickHouse {got:?}, reference {want:?}",
                hists[*i]
            );
            if got.to_bits() != want.to_bits() && !(got.is_nan() && want.is_nan()) {
                inexact += 1;
            }
        }
        (rows.len(), inexact)
    }

    #[tokio::test]
    async fn sql_matches_prometheus_in_clickhouse() {
        let server = Server::start().await;

        // Expectations of Prometheus's test file, with constant arguments.
        let cases = promqltest_cases();
        for c in &cases {
            let got = server.floats(&format!("SELECT {} AS v", c.sql())).await;
            assert!(c.matches(got[0]), "{c:?}: ClickHouse gives {}", got[0]);
        }

        server.stop().await;
    }
}
