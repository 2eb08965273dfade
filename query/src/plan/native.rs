//! Native histograms in plans.
//!
//! A selector that may read native histograms (its metric has histogram
//! samples, per `comet_schema::histogram_names`) compiles to a mixed row
//! relation `(labels, t, v, h, is_h, dn)`: each row is a float `v` or,
//! where `is_h`, a histogram `h` of type [`HISTOGRAM_TYPE`] (float counts,
//! buckets by absolute index). Floats and histograms of one series share
//! the lookback: a sample is current until the next sample of either kind.
//!
//! Consumers take what they understand: the `histogram_*` functions, the
//! rates and `sum`/`avg` read the histogram rows; everything else reads
//! the float rows, as Prometheus does for the functions and aggregations
//! that ignore histograms, and as Comet did before histograms could be
//! queried for the operations that do not evaluate them yet.

use promql_parser::parser::{Call, Expr, VectorSelector};

use super::extended::RangeModifier;
use super::functions::string_arg;
use super::go_text;
use super::native_fns;
use super::native_rate;
use super::selector::{not_stale, window_rows};
use super::stages::let_in;
use super::{Grid, Node, PlanError, Planner, Scalar, Source, drop_name, fail_if};
use crate::matchers::{MatchOp, from_selector};

use native_fns::HISTOGRAM_TYPE;

/// A histogram row of the `histograms` table as a [`HISTOGRAM_TYPE`].
pub(crate) fn stored_histogram() -> String {
    format!(
        "CAST(tuple(schema, zero_threshold, \
           if(float_histogram, zero_count_float, toFloat64(zero_count)), \
           if(float_histogram, count_float, toFloat64(count)), sum, \
           positive_index, \
           if(float_histogram, positive_counts_float, arrayMap(x -> toFloat64(x), positive_counts)), \
           negative_index, \
           if(float_histogram, negative_counts_float, arrayMap(x -> toFloat64(x), negative_counts)), \
           custom_values, CAST(reset_hint, 'Int8')), '{HISTOGRAM_TYPE}')"
    )
}

/// The histogram of a float row (never read).
pub(crate) fn no_histogram() -> String {
    format!("CAST(tuple(0, 0, 0, 0, 0, [], [], [], [], [], 0), '{HISTOGRAM_TYPE}')")
}

/// Functions of one histogram that return a float, and how each is
/// computed from the histogram column `h`.
fn histogram_float_fn(name: &str) -> Option<fn(&str) -> String> {
    Some(match name {
        "histogram_count" => native_fns::histogram_count,
        "histogram_sum" => native_fns::histogram_sum,
        "histogram_avg" => native_fns::histogram_avg,
        "histogram_stddev" => native_fns::histogram_stddev,
        "histogram_stdvar" => native_fns::histogram_stdvar,
        _ => return None,
    })
}

impl Planner {
    /// Whether `vs` may select series with histogram samples: some metric
    /// name with histograms satisfies its `__name__` matchers.
    pub(crate) fn may_read_histograms(&self, vs: &VectorSelector) -> bool {
        if self.histogram_metrics.is_empty() {
            return false;
        }
        let Ok(matchers) = from_selector(vs) else {
            return false;
        };
        // Name regexes as Prometheus anchors them; one that does not
        // compile here counts as matching.
        let names: Vec<_> = matchers
            .iter()
            .filter(|m| m.name == "__name__")
            .map(|m| {
                let re = regex::Regex::new(&format!("^(?:{})$", m.value)).ok();
                (m, re)
            })
            .collect();
        self.histogram_metrics.iter().any(|metric| {
            names.iter().all(|(m, re)| match m.op {
                MatchOp::Equal => m.value == *metric,
                MatchOp::NotEqual => m.value != *metric,
                MatchOp::Regex => re.as_ref().is_none_or(|re| re.is_match(metric)),
                MatchOp::NotRegex => re.as_ref().is_none_or(|re| !re.is_match(metric)),
            })
        })
    }

    /// Whether `vs` names a metric that has histogram samples and no
    /// float ones: its plans leave floats (and windows mixing both kinds)
    /// out.
    pub(crate) fn reads_only_histograms(&self, vs: &VectorSelector) -> bool {
        let Ok(matchers) = from_selector(vs) else {
            return false;
        };
        matchers.iter().any(|m| {
            m.name == "__name__"
                && m.op == MatchOp::Equal
                && self.histogram_only_metrics.contains(&m.value)
        })
    }

    /// An instant-vector selector over floats and histograms: rows
    /// `(labels, t, v, h, is_h, dn)` (see the module notes); with `at`,
    /// evaluated once at that time and repeated on every step. With
    /// `timestamps`, `v` is the sample's time in seconds, whichever kind
    /// it is.
    pub(crate) fn mixed_selector(
        &mut self,
        vs: &VectorSelector,
        at: Option<i64>,
        grid: &Grid,
        timestamps: bool,
    ) -> Result<String, PlanError> {
        let (offset, eval, lo, hi) = self.instant_reach(vs, at, grid);
        let matched = self.matched_series(vs, lo, hi)?;
        let within = format!(
            "WHERE {} AND timestamp_ms > {lo} AND timestamp_ms <= {hi}",
            matched.samples_filter
        );
        // A stale histogram (its sum the staleness marker) ends the series
        // as a stale float does.
        let floats = format!(
            "SELECT fingerprint AS fp, timestamp_ms + {offset} AS ts, any(value) AS sv, \
               {none} AS sh, toUInt8(0) AS is_h \
             FROM samples {within} GROUP BY fingerprint, timestamp_ms UNION ALL ",
            none = no_histogram(),
        );
        let samples = format!(
            "{floats}SELECT fingerprint AS fp, timestamp_ms + {offset} AS ts, \
               if({fresh}, toFloat64(0), any(sum)) AS sv, any({stored}) AS sh, toUInt8(1) AS is_h \
             FROM histograms {within} GROUP BY fingerprint, timestamp_ms",
            floats = if self.reads_only_histograms(vs) {
                ""
            } else {
                &floats
            },
            stored = stored_histogram(),
            fresh = not_stale("any(sum)"),
        );
        let outputs = if timestamps {
            format!("toFloat64((ts - {offset}) / 1000) AS v, sh AS h, is_h")
        } else {
            "sv AS v, sh AS h, is_h".to_string()
        };
        let steps = self.latest_on_steps(&samples, "sv, sh, is_h", &outputs, &eval);
        let rel = format!(
            "SELECT l.series_labels AS labels, s.t AS t, s.v AS v, s.h AS h, s.is_h AS is_h, \
               toUInt8(0) AS dn FROM ({steps}) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp",
            labels = matched.labelled,
        );
        Ok(match at {
            Some(_) => self.replicate_mixed(&rel, grid),
            None => rel,
        })
    }

    /// A mixed relation evaluated at one time `at`, repeated on each step.
    fn replicate_mixed(&self, rel: &str, grid: &Grid) -> String {
        format!(
            "SELECT labels, t, v, h, is_h, dn FROM (SELECT labels, v, h, is_h, dn FROM ({rel})) \
             ARRAY JOIN {} AS t",
            grid.steps()
        )
    }

    /// The float rows of a mixed relation, as an instant vector.
    pub(crate) fn float_rows(rel: &str) -> String {
        format!("SELECT labels, t, v, dn FROM ({rel}) WHERE NOT is_h")
    }

    /// `histogram_count`, `_sum`, `_avg`, `_stddev`, `_stdvar`,
    /// `histogram_fraction` and `histogram_quantile(s)` when their vector
    /// argument may hold histograms; `None` to plan the classic way.
    pub(crate) fn native_histogram_call(
        &mut self,
        call: &Call,
        grid: &Grid,
    ) -> Result<Option<Node>, PlanError> {
        let name = call.func.name;
        let args = &call.args.args;
        if let Some(node) = self.native_rate_call(call, grid)? {
            return Ok(Some(node));
        }
        if let Some(node) = self.native_window_call(call, grid)? {
            return Ok(Some(node));
        }
        let at = match name {
            "histogram_quantile" => 1,
            "histogram_fraction" => 2,
            "histogram_quantiles" => 0,
            _ if histogram_float_fn(name).is_some() => 0,
            _ => return Ok(None),
        };
        if !self.reads_histograms(&args[at]) {
            return Ok(None);
        }
        let rel = match self.node(&args[at], grid)? {
            Node::Mixed(rel) => rel,
            // Planned as floats after all.
            _ => return Ok(None),
        };
        if let Some(f) = histogram_float_fn(name) {
            return Ok(Some(Node::Vector(histogram_values(&rel, &f("h")))));
        }
        match name {
            "histogram_fraction" => {
                let lower = self.scalar(&args[0], grid)?;
                let upper = self.scalar(&args[1], grid)?;
                let rel = self.with_column(&rel, lower, "_lo", "a");
                let rel = self.with_column(&rel, upper, "_hi", "b");
                Ok(Some(Node::Vector(histogram_values(
                    &rel,
                    &native_fns::histogram_fraction("_lo", "_hi", "h"),
                ))))
            }
            "histogram_quantile" => {
                let phi = self.scalar(&args[0], grid)?;
                // A literal goes in as it is: a layer more costs
                // ClickHouse's analyzer a pass over all below it.
                let (with_phi, q) = match &phi {
                    Scalar::Lit(q) => (rel.clone(), super::lit(*q)),
                    _ => (
                        self.with_column(&rel, phi.clone(), "_q", "a"),
                        "_q".to_string(),
                    ),
                };
                let native = histogram_values(&with_phi, &native_fns::histogram_quantile(&q, "h"));
                // Classic `le` buckets of the same selection keep working
                // (not read again where no `le` label can be left).
                if !may_keep_le(&args[1]) {
                    return Ok(Some(Node::Vector(native)));
                }
                let classic = self.bucket_quantile(phi, &Self::float_rows(&rel));
                Ok(Some(Node::Vector(format!("{native} UNION ALL {classic}"))))
            }
            "histogram_quantiles" => {
                let label = string_arg(call, 1)?;
                let label_p = self.string(&label);
                let mut parts = Vec::new();
                for arg in &args[2..] {
                    let Scalar::Lit(q) = self.scalar(arg, grid)? else {
                        return Err(PlanError::Unsupported(
                            "histogram_quantiles() takes number literals as quantiles".into(),
                        ));
                    };
                    let value = self.string(&format!("{q:?}"));
                    let set = Self::set_label(&label_p, &value);
                    let quantile = histogram_values(
                        &rel,
                        &native_fns::histogram_quantile(&super::lit(q), "h"),
                    );
                    parts.push(format!(
                        "SELECT {set} AS labels, t, v, dn FROM ({quantile})"
                    ));
                }
                Ok(Some(Node::Vector(parts.join(" UNION ALL "))))
            }
            _ => Ok(None),
        }
    }

    /// `rate`, `increase` and `delta` of a range selector or subquery that
    /// may read histograms: the float results and the histogram results
    /// together.
    fn native_rate_call(&mut self, call: &Call, grid: &Grid) -> Result<Option<Node>, PlanError> {
        let name = call.func.name;
        let (is_counter, is_rate) = match name {
            "rate" => (true, true),
            "increase" => (true, false),
            "delta" => (false, false),
            _ => return Ok(None),
        };
        let range = call.args.args.first().map(|a| unparen(a));
        if !range.is_some_and(|r| is_range(r) && self.reads_histograms(r)) {
            return Ok(None);
        }
        let m = match self.node(&call.args.args[0], grid)? {
            Node::Matrix(m) if m.modifier != RangeModifier::Smoothed => m,
            // Smoothed windows of histograms come later: the floats alone
            // until then.
            _ => return Ok(None),
        };
        let Some(f) = super::functions::range_fn(name, self.means) else {
            return Ok(None);
        };
        let histograms = self.plain_native_rate(&m, grid, is_counter, is_rate)?;
        if matches!(&m.source, Source::Selector(vs) if self.reads_only_histograms(vs)) {
            return Ok(Some(Node::Mixed(histograms)));
        }
        let floats = self.range_call(name, f, call, grid)?;
        let floats = self.rows_of(floats, &call.args.args[0], grid)?;
        let both = format!(
            "SELECT labels, t, v, {none} AS h, toUInt8(0) AS is_h, dn FROM ({floats}) \
             UNION ALL {histograms}",
            none = no_histogram()
        );
        Ok(Some(Node::Mixed(
            self.without_mixed_windows(&both, &m, grid)?,
        )))
    }

    /// The histogram results of `rate`, `increase` or `delta` over the
    /// plain or anchored range `m`, as mixed rows. An anchored
    /// window starts at the last sample at or before its start and is not
    /// extrapolated (Prometheus's `extendedHistogramRate`).
    fn plain_native_rate(
        &mut self,
        m: &super::Matrix,
        grid: &Grid,
        is_counter: bool,
        is_rate: bool,
    ) -> Result<String, PlanError> {
        let eval = match m.at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        let (windows, labels) = self.histogram_windows(m, &eval)?;
        let anchored = m.modifier == RangeModifier::Anchored;
        let windows = if anchored {
            format!(
                "SELECT fp, t, arraySlice(w, greatest(1, arrayCount(x -> x.1 <= t - {range}, arrayPopBack(w)))) AS w \
                 FROM ({windows}) WHERE w[length(w)].1 > t - {range}",
                range = m.range
            )
        } else {
            windows
        };
        let rates = native_rate::histogram_rate(&windows, m.range, is_counter, is_rate, !anchored);
        let histograms = format!(
            "SELECT l.series_labels AS labels, r.t AS t, toFloat64(0) AS v, r._rh AS h, \
               toUInt8(1) AS is_h, toUInt8(1) AS dn \
             FROM ({rates}) AS r INNER JOIN ({labels}) AS l ON r.fp = l.fp WHERE r._ok"
        );
        Ok(match m.at {
            Some(_) => self.replicate_mixed(&histograms, grid),
            None => histograms,
        })
    }

    /// Windows of the histograms of `m`'s selector or subquery on `eval`:
    /// rows `(fp, t, w)` with `w` the window's `(ts, h)` by time, staleness
    /// markers left out; and the series' labels `(fp, series_labels)`.
    fn histogram_windows(
        &mut self,
        m: &super::Matrix,
        eval: &Grid,
    ) -> Result<(String, String), PlanError> {
        let back = m.reach_back(self.lookback);
        let lo = eval.start - m.offset - back;
        let hi = eval.end - m.offset;
        let (samples, labels) = match &m.source {
            Source::Selector(vs) => {
                let matched = self.matched_series(vs, lo, hi)?;
                let samples = format!(
                    "SELECT fingerprint AS fp, timestamp_ms + {offset} AS ts, any({stored}) AS sh \
                     FROM histograms WHERE {filter} AND timestamp_ms > {lo} AND timestamp_ms <= {hi} \
                     GROUP BY fingerprint, timestamp_ms HAVING {fresh}",
                    offset = m.offset,
                    stored = stored_histogram(),
                    filter = matched.samples_filter,
                    fresh = not_stale("any(sum)"),
                );
                (samples, matched.labelled)
            }
            Source::Subquery { expr, step } => {
                let (points, labels) =
                    self.mixed_subquery_samples(expr, *step, m.offset, lo, hi)?;
                (
                    format!("SELECT fp, ts, sh FROM ({points}) WHERE is_h = 1"),
                    labels,
                )
            }
        };
        let windows = window_rows(&samples, "(ts, sh)", "t", eval, back, 0);
        Ok((windows, labels))
    }

    /// An aggregation of floats and histograms: `sum` and `avg` add the
    /// histograms of a group (a group of both kinds has no result, as in
    /// Prometheus), `count` and `group` count both, and the aggregations
    /// that ignore histograms in Prometheus take the floats.
    pub(crate) fn mixed_aggregate(
        &mut self,
        a: &promql_parser::parser::AggregateExpr,
        op: &str,
        rel: &str,
        grid: &Grid,
    ) -> Result<Node, PlanError> {
        let floats = || Node::Vector(Self::float_rows(rel));
        let (key, dn) = self.group_key(&a.modifier, "_l", "_dn");
        let input = format!(
            "SELECT labels AS _l, t AS _t, v AS _v, h AS _h, is_h AS _is_h, dn AS _dn FROM ({rel})"
        );
        // How many histograms the group has.
        let nh = "countIf(_is_h)";
        let (float_value, histogram_scale) = match op {
            "sum" => (
                super::functions::kahan_sum("groupArrayIf(_v, NOT _is_h)"),
                "1".to_string(),
            ),
            "avg" => (
                super::functions::mean_array("groupArrayIf(_v, NOT _is_h)", self.means),
                format!("(1 / {nh})"),
            ),
            "count" | "group" => {
                let value = if op == "count" {
                    "toFloat64(count())"
                } else {
                    "toFloat64(1)"
                };
                return Ok(Node::Vector(format!(
                    "SELECT {key} AS labels, _t AS t, {value} AS v, {dn} AS dn \
                     FROM ({input}) GROUP BY labels, t"
                )));
            }
            // They choose series by their labels, whatever their samples.
            "limitk" | "limit_ratio" => return self.mixed_limit(a, rel, grid),
            "count_values" => {
                let text = format!(
                    "if(_is_h, {}, {})",
                    go_text::histogram_text("_h"),
                    go_text::go_float_text("_v")
                );
                return self.count_values(a, &key, &input, &text);
            }
            // Prometheus ignores histograms in these.
            _ => return self.aggregate_node(a, floats(), grid),
        };
        // One layer: every statement layer above another costs ClickHouse
        // 25.8's analyzer all of the layers below again, and the sum binds
        // each aggregate once (see `Stages`). The histograms are added
        // without the compensation `sum_over_time` has (`native_sum`):
        // across series it doubled the analysis of
        // `histogram_quantile(0.3, sum(rate(h[10m])))` (2.0 s to 4.6 s).
        let sum = native_rate::signed_sum(
            "groupArrayIf((_h, toFloat64(1)), _is_h)",
            "minIf(_h.schema, _is_h)",
            "maxIf(_h.zero_threshold, _is_h)",
            &let_in(
                &[("_hints", "groupArrayIf(_h.reset_hint, _is_h)")],
                &native_rate::combined_hint("_hints"),
            ),
        );
        let histogram = native_rate::scaled(&sum, &histogram_scale);
        Ok(Node::Mixed(format!(
            "SELECT {key} AS labels, _t AS t, \
               if({nh} > 0, toFloat64(0), toFloat64({float_value})) AS v, \
               if({nh} > 0, {histogram}, {none}) AS h, toUInt8({nh} > 0) AS is_h, {dn} AS dn \
             FROM ({input}) GROUP BY labels, t \
             HAVING {nh} = 0 OR countIf(NOT _is_h) = 0",
            none = no_histogram(),
        )))
    }

    /// A mixed relation with the scalar `s` as column `name` (its
    /// columns and the ones added before, aliased `alias` meanwhile).
    fn with_column(&mut self, rel: &str, s: Scalar, name: &str, alias: &str) -> String {
        let (from, value) = self.with_scalar_as(rel, s, &format!("p{name}"), alias);
        format!("SELECT {alias}.*, {value} AS {name} FROM {from}")
    }

    /// Whether `expr` may evaluate to histograms (or, a range vector, hold
    /// them): a selector that may read them, a subquery of such an
    /// expression, or a function of histograms that returns histograms.
    pub(super) fn reads_histograms(&self, expr: &Expr) -> bool {
        match expr {
            Expr::Paren(p) => self.reads_histograms(&p.expr),
            Expr::VectorSelector(vs) => self.may_read_histograms(vs),
            Expr::MatrixSelector(ms) => self.may_read_histograms(&ms.vs),
            Expr::Subquery(sq) => self.reads_histograms(&sq.expr),
            Expr::Aggregate(a)
                if matches!(
                    a.op.to_string().to_lowercase().as_str(),
                    "sum" | "avg" | "limitk" | "limit_ratio"
                ) =>
            {
                self.reads_histograms(&a.expr)
            }
            // Operators may pass histograms through (see `native_ops`).
            Expr::Binary(b) => self.reads_histograms(&b.lhs) || self.reads_histograms(&b.rhs),
            Expr::Unary(u) => self.reads_histograms(&u.expr),
            Expr::Call(c) if super::native_windows::returns_histograms(c.func.name) => c
                .args
                .args
                .first()
                .is_some_and(|a| self.reads_histograms(a)),
            _ => false,
        }
    }
}

/// Whether the series of `expr` may carry an `le` label: not after an
/// aggregation that groups it away (those that keep their input series'
/// labels, `topk` and the like, keep it).
fn may_keep_le(expr: &Expr) -> bool {
    use promql_parser::parser::LabelModifier;
    match unparen(expr) {
        Expr::Aggregate(a)
            if !matches!(
                a.op.to_string().to_lowercase().as_str(),
                "topk" | "bottomk" | "limitk" | "limit_ratio" | "count_values"
            ) =>
        {
            match &a.modifier {
                None => false,
                Some(LabelModifier::Include(by)) => by.labels.iter().any(|l| l == "le"),
                Some(LabelModifier::Exclude(without)) => {
                    !without.labels.iter().any(|l| l == "le") && may_keep_le(&a.expr)
                }
            }
        }
        _ => true,
    }
}

/// Whether `expr` is a range selector or a subquery.
pub(super) fn is_range(expr: &Expr) -> bool {
    matches!(expr, Expr::MatrixSelector(_) | Expr::Subquery(_))
}

/// `expr` without enclosing parentheses.
fn unparen(expr: &Expr) -> &Expr {
    match expr {
        Expr::Paren(p) => unparen(&p.expr),
        other => other,
    }
}

/// A float per histogram row of `rel`, the metric name dropped; two
/// histograms that differ only by name fail as in Prometheus.
fn histogram_values(rel: &str, value: &str) -> String {
    let duplicate = fail_if(&[(
        "count() OVER (PARTITION BY labels, t) > 1",
        "'vector cannot contain metrics with the same labelset'",
    )]);
    format!(
        "SELECT labels, t, v, toUInt8(0) AS dn FROM (\
           SELECT {dropped} AS labels, t, {value} AS v FROM ({rel}) WHERE is_h\
         ) QUALIFY {duplicate}",
        dropped = drop_name("labels")
    )
}

/// The final statement of a mixed relation: rows with the histogram's
/// parts as columns (what the engine reads), sorted by labels and time.
pub(crate) fn mixed_output(rel: &str) -> String {
    format!(
        "SELECT if(dn = 1, {dropped}, labels) AS labels, t, v, is_h, \
           h.schema AS schema, h.zero_threshold AS zero_threshold, h.zero_count AS zero_count, \
           h.count AS count, h.sum AS sum, h.positive_index AS positive_index, \
           h.positive_counts AS positive_counts, h.negative_index AS negative_index, \
           h.negative_counts AS negative_counts, h.custom_values AS custom_values, \
           h.reset_hint AS reset_hint \
         FROM ({rel}) ORDER BY labels, t",
        dropped = drop_name("labels")
    )
}

/// Plan settings in which the metrics `names` have native histograms.
#[cfg(test)]
pub(crate) fn with_histograms(names: &[&str]) -> super::PlanSettings {
    super::PlanSettings {
        histogram_metrics: std::sync::Arc::new(names.iter().map(|n| n.to_string()).collect()),
        ..super::PlanSettings::default()
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Grid, PlanKind, plan};

    use super::with_histograms;

    fn reads_histograms(query: &str, names: &[&str]) -> bool {
        let planned = plan(query, Grid::instant(1_000_000), &with_histograms(names));
        planned
            .unwrap_or_else(|e| panic!("{query}: {e}"))
            .sql
            .contains("FROM histograms")
    }

    #[test]
    fn only_metrics_with_histograms_read_them() {
        assert!(reads_histograms("h", &["h"]));
        assert!(reads_histograms("histogram_count(h)", &["h"]));
        assert!(reads_histograms(
            "histogram_quantile(0.9, sum(rate(h[5m])))",
            &["h"]
        ));
        assert!(reads_histograms("{__name__=~\"h|x\"}", &["h"]));
        assert!(!reads_histograms("rate(x[5m])", &["h"]));
        assert!(!reads_histograms("{__name__=~\"node_.*\"}", &["h"]));
        assert!(!reads_histograms("sum(rate(h[5m]))", &[]));
    }

    #[test]
    fn histograms_leave_as_mixed_rows() {
        let settings = with_histograms(&["h"]);
        let planned = plan("h", Grid::range(0, 60_000, 15_000), &settings).unwrap();
        assert_eq!(planned.kind, PlanKind::Mixed);
        let planned = plan("histogram_count(h)", Grid::instant(0), &settings).unwrap();
        assert_eq!(planned.kind, PlanKind::Vector);
        // Rates of a subquery's histograms too.
        let planned = plan("increase(h[10m:3m])", Grid::instant(600_000), &settings).unwrap();
        assert_eq!(planned.kind, PlanKind::Mixed);
        assert!(planned.sql.contains("WHERE is_h = 1"), "{}", planned.sql);
    }

    #[test]
    fn what_does_not_take_histograms_yet_reads_the_floats() {
        let settings = with_histograms(&["h"]);
        for query in ["abs(h)", "h > 2", "quantile(0.5, h)"] {
            let planned = plan(query, Grid::instant(0), &settings).unwrap();
            assert!(planned.sql.contains("WHERE NOT is_h"), "{query}");
        }
        // Operators that take histograms keep them.
        for query in ["h * 2", "-h", "h </ 1"] {
            let planned = plan(query, Grid::instant(0), &settings).unwrap();
            assert_eq!(planned.kind, PlanKind::Mixed, "{query}");
        }
    }
}
