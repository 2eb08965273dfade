//! Selectors: series matching on the `series` table, samples read by the
//! sort key (`comet_schema::ddl::SAMPLES_ORDER_BY`: metric, hour,
//! fingerprint, time), the lookback of instant vectors and the windows of
//! range vectors.
//!
//! Both expand samples onto steps instead of searching samples per step:
//! a sample is the latest one for the steps from its own timestamp until the
//! next sample (or the lookback) ends, and lies in the window of the steps
//! from its timestamp until its timestamp plus the range. Work is
//! proportional to the output, not to steps x samples.

use promql_parser::parser::VectorSelector;

use super::extended::RangeModifier;
use super::{Grid, Matrix, PlanError, Planner, STALE_NAN_BITS, Source, bad, sorted_labels};
use crate::matchers::{MatchOp, Matcher, MatcherError, condition, from_selector};

/// The series a selector matches, as two relations over the series table.
pub(crate) struct MatchedSeries {
    /// `(fp, series_labels)`, one row per series, labels sorted (not
    /// named `labels`: that alias would shadow the column in `WHERE`).
    pub labelled: String,
    /// The condition on the samples table that keeps these series' rows.
    pub samples_filter: String,
}

/// Samples `(fp, ts, sv)` and the labels `(fp, labels, dn)` of a source.
pub(crate) struct SampleSource {
    pub samples: String,
    pub labels: String,
}

/// The evaluation times of a subquery with step `step` whose window is
/// `(lo, hi]`: Prometheus starts at the first step-aligned time after `lo`
/// (Go's integer division truncates toward zero).
pub(crate) fn subquery_grid(lo: i64, hi: i64, step: i64) -> Grid {
    let mut start = step * (lo / step);
    if start <= lo {
        start += step;
    }
    Grid::range(start, hi, step)
}

/// The metric name of a selector whose only matcher is `__name__="..."`.
fn metric_name_only(matchers: &[Matcher]) -> Option<&str> {
    match matchers {
        [m] if m.name == "__name__" && m.op == MatchOp::Equal && !m.value.is_empty() => {
            Some(&m.value)
        }
        _ => None,
    }
}

/// A selector's matchers that cannot become a condition, as a plan error.
fn matcher_error(e: MatcherError) -> PlanError {
    match e {
        MatcherError::OrNotSupported => PlanError::Unsupported(e.to_string()),
        MatcherError::MatchesEverything(_) | MatcherError::Empty => {
            bad("vector selector must contain at least one non-empty matcher")
        }
        other => bad(other.to_string()),
    }
}

/// The samples `(fp, ts, ...)` of `samples` gathered into the window of
/// every step of `eval` that sees them, those in `(t - back, t + forward]`:
/// rows `(fp, <step>, w)`, `w` the `sample` tuples sorted (by time first).
/// Each sample is copied once per step that sees it.
pub(crate) fn window_rows(
    samples: &str,
    sample: &str,
    step_col: &str,
    eval: &Grid,
    back: i64,
    forward: i64,
) -> String {
    format!(
        "SELECT fp, toInt64({start} + k * {step}) AS {step_col}, arraySort(groupArray({sample})) AS w \
         FROM ({samples}) \
         ARRAY JOIN range(toInt64(greatest(0, ceil((ts - {forward} - {start}) / {step}))), \
           toInt64(least({n}, floor((ts + {back} - 1 - {start}) / {step}) + 1))) AS k \
         GROUP BY fp, k",
        start = eval.start,
        step = eval.step,
        n = eval.n(),
    )
}

/// Keeps rows that are not staleness markers.
pub(crate) fn not_stale(column: &str) -> String {
    format!("reinterpretAsUInt64({column}) != {STALE_NAN_BITS}")
}

impl Planner {
    /// The series `vs` selects among those stored for a day in `[lo, hi]`:
    /// `(fp, series_labels)` one row per series, and the condition that
    /// keeps their samples.
    pub(crate) fn matched_series(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
    ) -> Result<MatchedSeries, PlanError> {
        let matchers = from_selector(vs).map_err(matcher_error)?;
        let cond = condition(&matchers, &mut self.params).map_err(matcher_error)?;
        let filter = format!(
            "FROM series \
             WHERE date >= toDate(fromUnixTimestamp64Milli(toInt64({}), 'UTC')) \
             AND date <= toDate(fromUnixTimestamp64Milli(toInt64({}), 'UTC')) AND {cond}",
            lo.max(0),
            hi.max(0)
        );
        // A selector of a metric name alone reads its samples by the sort
        // key's prefix: the set of matched series would cost a subquery
        // (about 5 ms) and select the same rows. Otherwise the light
        // `(metric_name, fingerprint)` keys (the set drops repeats itself).
        let samples_filter = match metric_name_only(&matchers) {
            Some(name) => format!("metric_name = {}", self.string(name)),
            None => {
                format!("(metric_name, fingerprint) IN (SELECT metric_name, fingerprint {filter})")
            }
        };
        // A series has a row per day; one of them is kept (`LIMIT 1 BY`
        // costs ClickHouse about 1 ms less per selector than an `any`
        // aggregation by fingerprint).
        Ok(MatchedSeries {
            labelled: format!(
                "SELECT fingerprint AS fp, {} AS series_labels {filter} LIMIT 1 BY fingerprint",
                sorted_labels("labels"),
            ),
            samples_filter,
        })
    }

    /// The rows of the samples table holding `vs`'s samples with raw
    /// timestamps in `(lo, hi]` (a `FROM ... WHERE ...`), and the series'
    /// labels `(fp, series_labels)`.
    pub(crate) fn samples_of(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
    ) -> Result<(String, String), PlanError> {
        let matched = self.matched_series(vs, lo, hi)?;
        let rows = format!(
            "FROM samples WHERE {} AND timestamp_ms > {lo} AND timestamp_ms <= {hi}",
            matched.samples_filter
        );
        Ok((rows, matched.labelled))
    }

    /// Samples of a selector with raw timestamp in `(lo, hi]`, shifted by
    /// `shift` ms onto the evaluation grid, one per timestamp.
    fn selector_source(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        shift: i64,
    ) -> Result<SampleSource, PlanError> {
        let (rows, labels) = self.samples_of(vs, lo, hi)?;
        let samples = format!(
            "SELECT fingerprint AS fp, timestamp_ms + {shift} AS ts, any(value) AS sv \
             {rows} GROUP BY fingerprint, timestamp_ms"
        );
        let labels =
            format!("SELECT fp, series_labels AS labels, toUInt8(0) AS dn FROM ({labels})");
        Ok(SampleSource { samples, labels })
    }

    /// An instant-vector selector on `grid`; with `at`, evaluated once at
    /// that time and repeated on every step. With `timestamps`, the value is
    /// the sample's timestamp in seconds (for `timestamp()`).
    pub fn vector_selector(
        &mut self,
        vs: &VectorSelector,
        at: Option<i64>,
        grid: &Grid,
        timestamps: bool,
    ) -> Result<String, PlanError> {
        let (offset, eval, lo, hi) = self.instant_reach(vs, at, grid);
        let src = self.selector_source(vs, lo, hi, offset)?;
        let value = if timestamps {
            format!("toFloat64((ts - {offset}) / 1000)")
        } else {
            "sv".to_string()
        };
        let rel = format!(
            "SELECT l.labels AS labels, s.t AS t, s.v AS v, toUInt8(0) AS dn \
             FROM ({steps}) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp",
            steps = self.latest_on_steps(&src.samples, "sv", &format!("{value} AS v"), &eval),
            labels = src.labels,
        );
        Ok(match at {
            Some(_) => self.replicate(&rel, grid),
            None => rel,
        })
    }

    /// Where an instant selector reads: its offset, the grid it is
    /// evaluated on (one step at `at`), and the raw timestamps `(lo, hi]`
    /// its lookback reaches.
    pub(crate) fn instant_reach(
        &self,
        vs: &VectorSelector,
        at: Option<i64>,
        grid: &Grid,
    ) -> (i64, Grid, i64, i64) {
        let offset = super::offset_ms(&vs.offset);
        let eval = match at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        (
            offset,
            eval,
            eval.start - offset - self.lookback,
            eval.end - offset,
        )
    }

    /// Each step of `eval` with the latest of `samples` (`fp, ts, sv` and
    /// the `carried` columns) within the lookback, unless that is a
    /// staleness marker or a later sample came first: rows `(fp, t,
    /// outputs)`, the outputs computed from the carried columns and `ts`.
    pub(crate) fn latest_on_steps(
        &self,
        samples: &str,
        carried: &str,
        outputs: &str,
        eval: &Grid,
    ) -> String {
        format!(
            "SELECT fp, toInt64({start} + k * {step}) AS t, {outputs} FROM (\
               SELECT fp, ts, {carried}, leadInFrame(ts, 1, toInt64(9223372036854775807)) \
               OVER (PARTITION BY fp ORDER BY ts ASC ROWS BETWEEN CURRENT ROW AND 1 FOLLOWING) AS nts \
               FROM ({samples})\
             ) ARRAY JOIN range(toInt64(greatest(0, ceil((ts - {start}) / {step}))), \
               toInt64(least({n}, floor((least(nts, ts + {lookback}) - 1 - {start}) / {step}) + 1))) AS k \
             WHERE {fresh}",
            start = eval.start,
            step = eval.step,
            n = eval.n(),
            lookback = self.lookback,
            fresh = not_stale("sv"),
        )
    }

    /// The samples of a range vector for evaluation on `eval` (already
    /// resolved for `@`): raw timestamps shifted by the offset.
    pub fn matrix_source(&mut self, m: &Matrix, eval: &Grid) -> Result<SampleSource, PlanError> {
        let lo = eval.start - m.offset - m.reach_back(self.lookback);
        let hi = eval.end - m.offset + m.reach_forward(self.lookback);
        match &m.source {
            Source::Selector(vs) => {
                let mut src = self.selector_source(vs, lo, hi, m.offset)?;
                // Range functions never see staleness markers.
                src.samples = format!(
                    "SELECT fp, ts, sv FROM ({}) WHERE {}",
                    src.samples,
                    not_stale("sv")
                );
                Ok(src)
            }
            Source::Subquery { expr, step } => {
                let inner = subquery_grid(lo, hi, *step);
                let node = self.node(expr, &inner)?;
                if let super::Node::Series(rel) = node {
                    // Hash each series' labels once, not once per step.
                    let hashed = format!(
                        "SELECT sipHash64(labels) AS fp, labels, vals, dn FROM ({})",
                        rel.sql()
                    );
                    return Ok(SampleSource {
                        samples: format!(
                            "SELECT fp, t + {offset} AS ts, assumeNotNull(_v) AS sv FROM ({hashed}) \
                             ARRAY JOIN vals AS _v, {steps} AS t WHERE _v IS NOT NULL",
                            offset = m.offset,
                            steps = inner.steps(),
                        ),
                        labels: format!(
                            "SELECT fp, any(labels) AS labels, max(dn) AS dn FROM ({hashed}) GROUP BY fp"
                        ),
                    });
                }
                let rel = self.rows_of(node, expr, &inner)?;
                Ok(SampleSource {
                    samples: format!(
                        "SELECT sipHash64(labels) AS fp, t + {} AS ts, v AS sv FROM ({rel})",
                        m.offset
                    ),
                    labels: format!(
                        "SELECT fp, any(l0) AS labels, max(d0) AS dn FROM \
                         (SELECT sipHash64(labels) AS fp, labels AS l0, dn AS d0 FROM ({rel})) GROUP BY fp"
                    ),
                })
            }
        }
    }

    /// Windows of a range vector on `eval`: rows `(fp, t, w)` where `w` is
    /// the window's samples `(ts, value)` sorted by time, those in
    /// `(t - back, t + forward]`.
    pub fn windows(&mut self, m: &Matrix, eval: &Grid) -> Result<(String, String), PlanError> {
        let src = self.matrix_source(m, eval)?;
        let sql = window_rows(
            &src.samples,
            "(ts, sv)",
            "t",
            eval,
            m.reach_back(self.lookback),
            m.reach_forward(self.lookback),
        );
        Ok((sql, src.labels))
    }

    /// A range vector returned by an instant query: the raw samples of each
    /// series in the window, as rows `(labels, t, v)`.
    pub fn raw_matrix(&mut self, m: &Matrix, grid: &Grid) -> Result<String, PlanError> {
        if m.modifier != RangeModifier::Plain {
            return self.boundary_matrix(m, grid);
        }
        let eval = match m.at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        let src = self.matrix_source(m, &eval)?;
        let lo = eval.start - m.range;
        Ok(format!(
            "SELECT if(l.dn = 1, {dropped}, l.labels) AS labels, \
             s.ts - {offset} AS t, s.sv AS v \
             FROM ({samples}) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp \
             WHERE s.ts > {lo} AND s.ts <= {hi} ORDER BY labels, t",
            offset = m.offset,
            dropped = super::drop_name("l.labels"),
            samples = src.samples,
            labels = src.labels,
            hi = eval.end,
        ))
    }
    /// An anchored or smoothed range vector returned by an instant query:
    /// each series' boundary values and the samples between them, as rows
    /// `(labels, t, v)` on the samples' own times.
    fn boundary_matrix(&mut self, m: &Matrix, grid: &Grid) -> Result<String, PlanError> {
        let eval = match m.at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        let (windows, labels) = self.windows(m, &eval)?;
        let (points, present) = super::extended::boundary_points(m.modifier);
        Ok(format!(
            "SELECT if(l.dn = 1, {dropped}, l.labels) AS labels, p.1 - {offset} AS t, p.2 AS v \
             FROM (\
               SELECT fp, _p AS p FROM (\
                 SELECT fp, t AS te, {range} AS R, arrayMap(x -> x.2, w) AS _vals, \
                   arrayMap(x -> x.1, w) AS _ts, length(w) AS _n \
                 FROM ({windows})\
               ) ARRAY JOIN {points} AS _p WHERE {present}\
             ) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp ORDER BY labels, t",
            dropped = super::drop_name("l.labels"),
            offset = m.offset,
            range = m.range,
        ))
    }
}
