//! Classic histograms: `histogram_quantile` over `le` buckets, as
//! Prometheus's `bucketQuantile` computes it.

use promql_parser::parser::Call;

use super::{Grid, Node, PlanError, Planner, Scalar, fail_if, label_value};

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
        let rel = self.vector(&call.args.args[1], grid)?;
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
    fn bucket_quantile(&mut self, phi: Scalar, rel: &str) -> String {
        let groups = self.bucket_groups(rel);
        let (from, q) = self.with_scalar(&groups, phi, "p1");
        // 1-based: bucket b is the first whose count reaches the rank.
        let value = String::from(
            "multiIf(isNaN(a._q), nan, a._q < 0, -inf, a._q > 1, inf, \
               NOT isInfinite(a.ub[length(a.ub)]) OR a.ub[length(a.ub)] < 0, nan, \
               length(a.ub) < 2, nan, a.cnt[length(a.cnt)] = 0 OR isNaN(a.cnt[length(a.cnt)]), nan, \
               a._b = length(a.ub), a.ub[length(a.ub) - 1], \
               a._b = 1 AND a.ub[1] <= 0, a.ub[1], \
               a._b = 1, a.ub[1] * (a._rank / a.cnt[1]), \
               a.ub[a._b - 1] + (a.ub[a._b] - a.ub[a._b - 1]) * ((a._rank - a.cnt[a._b - 1]) / (a.cnt[a._b] - a.cnt[a._b - 1])))",
        );
        without_name(&format!(
            "SELECT a.labels AS labels, a.t AS t, {value} AS v FROM (\
               SELECT labels, t, ub, cnt, _q, _rank, \
                 if(arrayFirstIndex(x -> x >= _rank, arrayPopBack(cnt)) = 0, length(cnt), \
                    arrayFirstIndex(x -> x >= _rank, arrayPopBack(cnt))) AS _b \
               FROM (SELECT labels, t, ub, cnt, {q} AS _q, _q * cnt[length(cnt)] AS _rank FROM {from})\
             ) AS a"
        ))
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
           SELECT arrayFilter(x -> x.1 != '__name__', labels) AS labels, t, v FROM ({rel})\
         ) QUALIFY {duplicate}"
    )
}
