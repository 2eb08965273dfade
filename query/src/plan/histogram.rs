//! Classic histograms: `histogram_quantile` over `le` buckets, as
//! Prometheus's `bucketQuantile` computes it.

use promql_parser::parser::Call;

use super::{Grid, Node, PlanError, Planner, Scalar, drop_name, fail_if, label_value};

impl Planner {
    /// Buckets grouped per series (labels without `le`) and
    /// step: rows `(labels, t, b)` with `b` the `(upper bound, count)` pairs
    /// sorted by bound, same bounds summed, counts made monotonic.
    fn bucket_groups(&mut self, rel: &str) -> String {
        let le = label_value("'le'", "labels");
        format!(
            "SELECT labels, t, arraySort(groupArray((le, c))) AS raw, \
               arrayMap(x -> x.1, raw) AS ub, \
               arrayMap(i -> arrayMax(arraySlice(arrayMap(x -> x.2, raw), 1, i)), arrayEnumerate(raw)) AS cnt \
             FROM (\
               SELECT arrayFilter(x -> x.1 != 'le', labels) AS labels, t, assumeNotNull(le) AS le, sum(v) AS c \
               FROM (SELECT labels, t, v, \
                       multiIf(lower({le}) IN ('+inf', 'inf'), inf, toFloat64OrNull({le})) AS le \
                     FROM ({rel}) WHERE has(arrayMap(x -> x.1, labels), 'le') AND le IS NOT NULL) \
               GROUP BY labels, t, le\
             ) GROUP BY labels, t"
        )
    }

    pub(crate) fn histogram_quantile(
        &mut self,
        call: &Call,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let phi = self.scalar(&call.args.args[0], grid)?;
        let input = self.node(&call.args.args[1], grid)?;
        if let (Scalar::Lit(phi), Node::Series(rel)) = (&phi, &input) {
            let rel = self.series_histogram_quantile(*phi, &rel.sql());
            return Ok(Node::Series(rel.into()));
        }
        let rel = self.rows_of(input, &call.args.args[1], grid)?;
        Ok(Node::Vector(self.bucket_quantile(phi, &rel)))
    }

    /// `histogram_quantiles(v, "label", φ...)`: one quantile per φ, each
    /// marked with the label.
    pub(crate) fn histogram_quantiles(
        &mut self,
        call: &Call,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let args = &call.args.args;
        let rel = self.vector(&args[0], grid)?;
        let label = super::functions::string_arg(call, 1)?;
        let label_p = self.string(&label);
        let mut parts = Vec::new();
        for arg in &args[2..] {
            let phi = self.scalar(arg, grid)?;
            let Scalar::Lit(q) = phi else {
                return Err(PlanError::Unsupported(
                    "histogram_quantiles() takes number literals as quantiles".into(),
                ));
            };
            let value = self.string(&format!("{q:?}"));
            let quantile = self.bucket_quantile(phi, &rel);
            let set = Self::set_label(&label_p, &value);
            parts.push(format!(
                "SELECT {set} AS labels, t, v, dn FROM ({quantile})"
            ));
        }
        Ok(Node::Vector(parts.join(" UNION ALL ")))
    }

    /// The φ-quantile of the classic histograms in `rel`.
    pub(super) fn bucket_quantile(&mut self, phi: Scalar, rel: &str) -> String {
        let groups = self.bucket_groups(rel);
        let (from, q) = self.with_scalar(&groups, phi, "p1");
        let value = quantile_value("a.ub", "a.cnt", "a._q", "a._rank", "a._b");
        let bucket = rank_bucket("cnt", "_rank");
        without_name(&format!(
            "SELECT a.labels AS labels, a.t AS t, {value} AS v FROM (\
               SELECT labels, t, ub, cnt, _q, _rank, {bucket} AS _b \
               FROM (SELECT labels, t, ub, cnt, {q} AS _q, _q * cnt[length(cnt)] AS _rank FROM {from})\
             ) AS a"
        ))
    }

    /// `histogram_quantile(φ, v)` for a constant φ over a series-major `v`:
    /// the buckets of each histogram (labels without `le`) are transposed
    /// to one array of bounds and one of counts per step
    /// (`groupArrayForEach`), and each step's quantile is computed from
    /// them as [`Self::bucket_quantile`] does.
    pub(crate) fn series_histogram_quantile(&mut self, phi: f64, rel: &str) -> String {
        let le = label_value("'le'", "labels");
        // Per step: the sorted distinct bounds; the counts summed per bound
        // and made monotonic; the bucket holding the rank. Each is an array
        // over the steps, and the last lambda takes all three: ClickHouse's
        // analyzer pays far more for one lambda over tuples than for
        // lambdas of a few parameters each.
        let bounds = "arrayMap(u -> arraySort(arrayDistinct(u)), _us)";
        let counts = format!(
            "arrayMap(s -> arrayMap(i -> arrayMax(arraySlice(s, 1, i)), arrayEnumerate(s)), \
               arrayMap((b, u, c) -> arrayMap(x -> arraySum(arrayFilter((y, z) -> z = x, c, u)), b), \
                 {bounds}, _us, _cs))"
        );
        let q = super::lit(phi);
        let rank = |cnt: &str| format!("({q} * {cnt}[length({cnt})])");
        let buckets = format!("arrayMap(c -> {}, {counts})", rank_bucket("c", &rank("c")));
        // φ is known here: out of [0, 1] (or NaN) every present step has
        // the same answer, as in `bucketQuantile`.
        let value = match quantile_outside(phi) {
            Some(constant) => constant.to_string(),
            None => bucket_value("ub", "cnt", &rank("cnt"), "b"),
        };
        let vals = format!(
            "arrayMap((ub, cnt, b) -> if(length(ub) = 0, NULL, toFloat64({value})), {bounds}, {counts}, {buckets})"
        );
        let duplicate = fail_if(&[(
            "arrayExists(c -> c > 1, _present)",
            "'vector cannot contain metrics with the same labelset'",
        )]);
        let dropped = drop_name("_k");
        format!(
            "SELECT labels, vals, toUInt8(0) AS dn FROM (\
               SELECT labels, vals, \
                 sumForEach(arrayMap(x -> toUInt32(x IS NOT NULL), vals)) OVER (PARTITION BY labels) AS _present \
               FROM (\
                 SELECT {dropped} AS labels, {vals} AS vals \
                 FROM (\
                   SELECT arrayFilter(x -> x.1 != 'le', labels) AS _k, \
                     groupArrayForEach(arrayMap(x -> if(x IS NULL, NULL, _le), vals)) AS _us, \
                     groupArrayForEach(vals) AS _cs \
                   FROM (SELECT labels, vals, \
                           multiIf(lower({le}) IN ('+inf', 'inf'), inf, toFloat64OrNull({le})) AS _le \
                         FROM ({rel}) WHERE has(arrayMap(x -> x.1, labels), 'le') AND _le IS NOT NULL) \
                   GROUP BY _k))\
             ) WHERE {duplicate}"
        )
    }

    /// The fraction of observations between two bounds, interpolating
    /// linearly inside finite buckets (the first positive bucket starts at
    /// 0; buckets of infinite width count only when fully inside).
    pub(crate) fn histogram_fraction(
        &mut self,
        call: &Call,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let lower = self.scalar(&call.args.args[0], grid)?;
        let upper = self.scalar(&call.args.args[1], grid)?;
        let rel = self.vector(&call.args.args[2], grid)?;
        let groups = self.bucket_groups(&rel);
        let (from, lo) = self.with_scalar(&groups, lower, "p1");
        let with_lo = format!(
            "SELECT a.labels AS labels, a.t AS t, a.ub AS ub, a.cnt AS cnt, {lo} AS _lo FROM {from}"
        );
        let (from, hi) = self.with_scalar_as(&with_lo, upper, "p2", "b");
        // A bucket of infinite width counts whole when the range reaches its
        // infinite end, and not at all otherwise.
        let contributions = "arrayMap(i -> \
               multiIf(isInfinite(b.ub[i]), if(_hi = inf, _c[i], 0), \
                  isInfinite(_lb[i]), if(b._lo = -inf, _c[i], 0), \
                  _c[i] * greatest(0, least(b.ub[i], _hi) - greatest(_lb[i], b._lo)) / (b.ub[i] - _lb[i])), \
             arrayEnumerate(b.ub))";
        Ok(Node::Vector(without_name(&format!(
            "SELECT labels, t, v FROM (\
               SELECT b.labels AS labels, b.t AS t, {hi} AS _hi, \
                 arrayMap(i -> if(i = 1, if(b.ub[1] > 0, 0, -inf), b.ub[i - 1]), arrayEnumerate(b.ub)) AS _lb, \
                 arrayMap(i -> b.cnt[i] - if(i = 1, 0, b.cnt[i - 1]), arrayEnumerate(b.cnt)) AS _c, \
                 multiIf(NOT isInfinite(b.ub[length(b.ub)]) OR b.ub[length(b.ub)] < 0, nan, \
                         isNaN(b._lo) OR isNaN(_hi), nan, \
                         b.cnt[length(b.cnt)] = 0 OR isNaN(b.cnt[length(b.cnt)]), nan, \
                         b._lo >= _hi, 0, \
                         arraySum({contributions}) / b.cnt[length(b.cnt)]) AS v \
               FROM {from})"
        ))))
    }
}

/// The 1-based bucket whose (monotonic) count `cnt` first reaches `rank`,
/// the last one when none of the others does.
fn rank_bucket(cnt: &str, rank: &str) -> String {
    format!(
        "if(arrayFirstIndex(y -> y >= {rank}, arrayPopBack({cnt})) = 0, length({cnt}), \
            arrayFirstIndex(y -> y >= {rank}, arrayPopBack({cnt})))"
    )
}

/// Prometheus's `bucketQuantile` from sorted upper bounds `ub`, monotonic
/// counts `cnt`, the quantile `q`, its rank and the bucket `b` holding it.
fn quantile_value(ub: &str, cnt: &str, q: &str, rank: &str, b: &str) -> String {
    format!(
        "multiIf(isNaN({q}), nan, {q} < 0, -inf, {q} > 1, inf, {})",
        bucket_value(ub, cnt, rank, b)
    )
}

/// The answer of `bucketQuantile` for a φ outside [0, 1] or NaN, which
/// does not depend on the buckets; `None` for a φ inside.
fn quantile_outside(phi: f64) -> Option<&'static str> {
    if phi.is_nan() {
        Some("nan")
    } else if phi < 0.0 {
        Some("-inf")
    } else if phi > 1.0 {
        Some("inf")
    } else {
        None
    }
}

/// `bucketQuantile` for a φ in [0, 1], from sorted upper bounds `ub`,
/// monotonic counts `cnt`, the rank and the bucket `b` holding it.
fn bucket_value(ub: &str, cnt: &str, rank: &str, b: &str) -> String {
    format!(
        "multiIf(NOT isInfinite({ub}[length({ub})]) OR {ub}[length({ub})] < 0, nan, \
           length({ub}) < 2, nan, {cnt}[length({cnt})] = 0 OR isNaN({cnt}[length({cnt})]), nan, \
           {b} = length({ub}), {ub}[length({ub}) - 1], \
           {b} = 1 AND {ub}[1] <= 0, {ub}[1], \
           {b} = 1, {ub}[1] * ({rank} / {cnt}[1]), \
           {ub}[{b} - 1] + ({ub}[{b}] - {ub}[{b} - 1]) * (({rank} - {cnt}[{b} - 1]) / ({cnt}[{b}] - {cnt}[{b} - 1])))"
    )
}

/// Drops the metric name from a histogram function's result `(labels, t,
/// v)`. Buckets group by their full labels as in Prometheus, so two
/// histograms differing only by name give two results with one label set:
/// Prometheus's error, raised in the statement so that an enclosing
/// aggregation cannot merge them.
fn without_name(rel: &str) -> String {
    let duplicate = fail_if(&[(
        "count() OVER (PARTITION BY labels, t) > 1",
        "'vector cannot contain metrics with the same labelset'",
    )]);
    format!(
        "SELECT labels, t, v, toUInt8(0) AS dn FROM (\
           SELECT {dropped} AS labels, t, v FROM ({rel})\
         ) QUALIFY {duplicate}",
        dropped = drop_name("labels")
    )
}
