//! Compensated sums and means of native histograms, as Prometheus's
//! `KahanAdd` computes them in `sum_over_time` and `avg_over_time` (its
//! `sum` and `avg` too, but across series the analysis cost was too high:
//! see `native::mixed_aggregate`): every field (count, sum, zero count and each bucket at the
//! smallest schema) is added in order with Neumaier's compensation, so
//! that `1 + 1e100 + 1 - 1e100` is 2, and a mean whose running sum would
//! overflow is taken incrementally (per field here; Prometheus switches
//! the whole histogram at once, which differs only in the last bits).

use super::functions::{Means, kahan_sum, mean_array};
use super::native_fns::HISTOGRAM_TYPE;
use super::native_rate::{common_bounds, reconciled_index};
use super::stages::Stages;

/// The total (`mean` `None`) or the mean of the histograms `hs` (an array
/// of `HISTOGRAM_TYPE`, in the order Prometheus adds them, all with
/// exponential buckets or all with custom ones) at their smallest schema
/// (or the custom bounds they all have) and largest zero threshold, with counter-reset hint `hint` (which may
/// read the histograms as `_cs_h`). Buckets whose total is zero are left
/// out, as Prometheus's `Compact(0)` does.
pub(crate) fn compensated_total(hs: &str, hint: &str, mean: Option<Means>) -> String {
    let total = |values: &str| match mean {
        None => kahan_sum(values),
        Some(means) => mean_array(values, means),
    };
    let field = |name: &str| total(&format!("arrayMap(x -> x.{name}, _cs_h)"));
    // Each histogram's buckets at the smallest schema, summed by index:
    // `(indexes, counts)` per histogram.
    let at_schema = |index: &str, counts: &str, custom: Option<&str>| {
        format!(
            "arrayMap(x -> arrayReduce('sumMap', \
               [arrayMap(i -> {}, x.{index})], [x.{counts}]), _cs_h)",
            reconciled_index("x", "i", "_cs_m", custom)
        )
    };
    // `(index, total)` of every index any histogram has, by index, with
    // an absent bucket counting as zero.
    let totals = |per: &str| {
        let column =
            format!("arrayMap(p -> if(indexOf(p.1, k) = 0, 0, p.2[indexOf(p.1, k)]), {per})");
        format!(
            "arrayFilter(b -> b.2 != 0, arrayMap(k -> (k, toFloat64({})), \
               arraySort(arrayDistinct(arrayFlatten(arrayMap(p -> p.1, {per}))))))",
            total(&column)
        )
    };
    let histogram = format!(
        "CAST(tuple(_cs_m, _cs_z, {zero}, {count}, {sum}, arrayMap(b -> b.1, _cs_pb), \
           arrayMap(b -> b.2, _cs_pb), arrayMap(b -> b.1, _cs_nb), arrayMap(b -> b.2, _cs_nb), \
           _cs_cv, _cs_hint), '{HISTOGRAM_TYPE}')",
        zero = field("zero_count"),
        count = field("count"),
        sum = field("sum"),
    );
    // A chain of steps, not lets nested in each other's bodies: ClickHouse's
    // analyzer pays for each nesting again.
    Stages::start(&[("_cs_h", hs)])
        .then(&[
            ("_cs_m", "arrayMin(x -> x.schema, _cs_h)"),
            ("_cs_z", "arrayMax(x -> x.zero_threshold, _cs_h)"),
            ("_cs_cv", &common_bounds("_cs_h")),
            ("_cs_hint", hint),
        ])
        .then(&[
            (
                "_cs_p",
                at_schema("positive_index", "positive_counts", Some("_cs_cv")),
            ),
            (
                "_cs_n",
                at_schema("negative_index", "negative_counts", None),
            ),
        ])
        .then(&[("_cs_pb", totals("_cs_p")), ("_cs_nb", totals("_cs_n"))])
        .finish(&histogram)
}
