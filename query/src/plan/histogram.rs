//! Classic histograms: `histogram_quantile` over `le` buckets, as
//! Prometheus's `bucketQuantile` computes it.

use promql_parser::parser::Call;

use super::{Grid, Node, PlanError, Planner};

impl Planner {
    /// Buckets grouped per series (labels without `le` and the name) and
    /// step: rows `(labels, t, b)` with `b` the `(upper bound, count)` pairs
    /// sorted by bound, same bounds summed, counts made monotonic.
    fn bucket_groups(&mut self, rel: &str) -> String {
        format!(
            "SELECT labels, t, arraySort(groupArray((le, c))) AS raw, \
               arrayMap(x -> x.1, raw) AS ub, \
               arrayMap(i -> arrayMax(arraySlice(arrayMap(x -> x.2, raw), 1, i)), arrayEnumerate(raw)) AS cnt \
             FROM (\
               SELECT arrayFilter(x -> x.1 != 'le' AND x.1 != '__name__', labels) AS labels, t, le, sum(v) AS c \
               FROM (SELECT labels, t, v, \
                       multiIf(lower(arrayFirst(x -> x.1 = 'le', labels).2) IN ('+inf', 'inf'), inf, \
                               toFloat64OrNull(arrayFirst(x -> x.1 = 'le', labels).2)) AS le \
                     FROM ({rel}) WHERE has(arrayMap(x -> x.1, labels), 'le') AND le IS NOT NULL) \
               GROUP BY labels, t, le\
             ) GROUP BY labels, t"
        )
    }

    pub(crate) fn histogram_quantile(&mut self, call: &Call, grid: &Grid) -> Result<Node, PlanError> {
        let phi = self.scalar(&call.args.args[0], grid)?;
        let rel = self.vector(&call.args.args[1], grid)?;
        let groups = self.bucket_groups(&rel);
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
        Ok(Node::Vector(format!(
            "SELECT a.labels AS labels, a.t AS t, {value} AS v, toUInt8(0) AS dn FROM (\
               SELECT labels, t, ub, cnt, _q, _rank, \
                 if(arrayFirstIndex(x -> x >= _rank, arrayPopBack(cnt)) = 0, length(cnt), \
                    arrayFirstIndex(x -> x >= _rank, arrayPopBack(cnt))) AS _b \
               FROM (SELECT labels, t, ub, cnt, {q} AS _q, _q * cnt[length(cnt)] AS _rank FROM {from})\
             ) AS a"
        )))
    }

    pub(crate) fn histogram_fraction(&mut self, _call: &Call, _grid: &Grid) -> Result<Node, PlanError> {
        Err(PlanError::Unsupported(
            "histogram_fraction() is not supported yet".into(),
        ))
    }
}
