//! Series-major relations: one row per series with its values on the step
//! grid as one array (engine v2).
//!
//! A series-major relation has the columns `labels Array(Tuple(String,
//! String))`, `vals Array(Nullable(Float64))` (one element per step of the
//! node's grid, NULL where the series has no value) and `dn` (as in row
//! relations). Work is proportional to series and samples, not to series x
//! steps x labels: samples are read once per series into sorted arrays,
//! labels are attached once per series, aggregations transpose the arrays
//! with `groupArrayForEach` (one array of the group's values per step) and
//! results leave ClickHouse one row per series.
//!
//! The nodes that have a series-major form produce it (selectors, the range
//! functions ClickHouse's `timeSeries*ToGrid` aggregates compute, the other
//! range functions over each series' sorted sample arrays, per-value
//! functions, arithmetic and comparisons with a scalar, and the
//! aggregations without a parameter); every other node reads its inputs as
//! row relations, and [`Planner::series_rows`] turns a series-major
//! relation into one (`ARRAY JOIN` over the step grid).
//!
//! The array SQL never captures a per-series array inside a lambda
//! (ClickHouse copies captured columns once per element): lookups on the
//! grid are a merge of samples and steps (one sort, then `arrayFill`).

use promql_parser::parser::{AggregateExpr, Expr, VectorSelector};

use super::functions::{RangeFn, kahan_sum_each, mean_each, quantile_sql, sort_nan_first};
use super::selector::{not_stale, subquery_grid};
use super::{Grid, Matrix, Node, PlanError, Planner, Scalar, Source, lit};

/// A `timeSeries*ToGrid` aggregate that computes a range function as
/// Prometheus does.
pub(crate) struct GridAggregate {
    pub function: &'static str,
    /// Parameters after the window (from the function's constant
    /// arguments).
    pub extra: Option<String>,
    /// Applied to the aggregate's result.
    pub factor: Option<f64>,
    /// Whether the window's length and ends enter the result (`rate`'s
    /// extrapolation), or only decide which samples are in it.
    pub extrapolated: bool,
}

/// The grid aggregate of range function `name` over the window `m`; `None`
/// for other functions, or arguments that vary by step.
pub(crate) fn grid_function(name: &str, m: &Matrix, scalars: &[Scalar]) -> Option<GridAggregate> {
    let of = |function, extra, factor, extrapolated| GridAggregate {
        function,
        extra,
        factor,
        extrapolated,
    };
    Some(match (name, scalars) {
        ("rate", []) => of("timeSeriesRateToGrid", None, None, true),
        ("increase", []) => of(
            "timeSeriesRateToGrid",
            None,
            Some(m.range as f64 / 1000.0),
            true,
        ),
        ("delta", []) => of("timeSeriesDeltaToGrid", None, None, true),
        ("irate", []) => of("timeSeriesInstantRateToGrid", None, None, false),
        ("idelta", []) => of("timeSeriesInstantDeltaToGrid", None, None, false),
        // Its slope is per unit of the DateTime64(3) timestamps: ms.
        ("deriv", []) => of("timeSeriesDerivToGrid", None, Some(1000.0), false),
        // The same least-squares line as `deriv`, its value the given
        // seconds after the step. Prometheus's line starts at the
        // evaluation time, the samples' times are moved by the offset onto
        // the grid: the offset is predicted further. Like `deriv`, a window
        // of one repeated value answers it within a few ulps, where
        // Prometheus returns the value itself.
        ("predict_linear", [Scalar::Lit(seconds)]) if seconds.is_finite() => of(
            "timeSeriesPredictLinearToGrid",
            Some(lit(seconds + m.offset as f64 / 1000.0)),
            None,
            false,
        ),
        _ => return None,
    })
}

/// Seconds with millisecond precision, as the grid aggregates take them.
fn seconds(ms: i64) -> String {
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.abs();
    format!("toDecimal64('{sign}{}.{:03}', 3)", ms / 1000, ms % 1000)
}

/// The grid's last step (its `end` may lie between steps).
fn last_step(grid: &Grid) -> i64 {
    grid.start + (grid.n() - 1).max(0) * grid.step
}

/// The parameters `(start, end, step, window)` of a grid aggregate on `grid`.
fn grid_parameters(grid: &Grid, window: i64) -> String {
    format!(
        "fromUnixTimestamp64Milli(toInt64({}), 'UTC'), fromUnixTimestamp64Milli(toInt64({}), 'UTC'), {}, {}",
        grid.start,
        last_step(grid),
        seconds(grid.step),
        seconds(window)
    )
}

/// How far sample times are moved for `timeSeriesResampleToGridWithStaleness`
/// (2^40 ms, about 35 years): samples from 1935 on are after the epoch
/// then, and today's still well inside `DateTime64(3)`.
const RESAMPLE_SHIFT_MS: i64 = 1 << 40;

/// A sample's time shifted by `shift` ms, as the grid aggregates take it.
fn sample_time(shift: i64) -> String {
    format!("fromUnixTimestamp64Milli(timestamp_ms + {shift}, 'UTC')")
}

/// Nanoseconds per millisecond.
const NS_PER_MS: i64 = 1_000_000;

/// The grid aggregates' windows are closed, `[t - range, t]`, where
/// Prometheus's are left-open. Where the window only decides which samples
/// are in it, it is 1 ms shorter (times are whole ms). Where its length and
/// ends enter the result (`rate`'s extrapolation), times are in ns and
/// every sample 1 ns early instead: a sample at `t - range` falls out of the
/// window of `t`, one at `t` stays in, durations between samples are
/// unchanged, and those to the window's ends change by 1 ns together (the
/// extrapolated interval only when one end is cut at half a sample
/// interval). (A regression keeps ms: its sums of squared times are exact
/// in ms, not in ns.) The aggregate's grid and window parameters and the
/// time of a sample moved by `offset` ms onto the grid; `None` where a
/// time of the grid or of the samples `(lo, hi]` is beyond
/// `DateTime64(9)` (the year 2262).
fn range_grid(
    grid: &Grid,
    window: i64,
    extrapolated: bool,
    offset: i64,
    (lo, hi): (i64, i64),
) -> Option<(String, String)> {
    if !extrapolated {
        return Some((
            grid_parameters(grid, (window - 1).max(0)),
            sample_time(offset),
        ));
    }
    let ns = |ms: i64| ms.checked_mul(NS_PER_MS);
    let (start, end) = (ns(grid.start)?, ns(last_step(grid))?);
    ns(lo)?;
    ns(hi)?;
    Some((
        format!(
            "fromUnixTimestamp64Nano(toInt64({start}), 'UTC'), fromUnixTimestamp64Nano(toInt64({end}), 'UTC'), {}, {}",
            seconds(grid.step),
            seconds(window)
        ),
        format!(
            "fromUnixTimestamp64Nano(timestamp_ms * {NS_PER_MS} {}, 'UTC')",
            signed(ns(offset)? - 1)
        ),
    ))
}

/// `+ n` or `- n`, added to a term.
fn signed(n: i64) -> String {
    if n < 0 {
        format!("- {}", n.unsigned_abs())
    } else {
        format!("+ {n}")
    }
}

/// Applies the per-value SQL `f` (of a non-NULL Float64 `x`) to every value
/// of the array column `vals`, keeping NULLs.
pub(crate) fn map_values(vals: &str, f: &str) -> String {
    format!("arrayMap(x -> if(x IS NULL, NULL, toFloat64({f})), {vals})")
}

/// A comparison used as a filter: the value stays where `cond` (over `x`)
/// holds, NULL elsewhere.
fn filter_values(vals: &str, keep: &str, cond: &str) -> String {
    format!("arrayMap(x -> if(x IS NULL OR NOT ({cond}), NULL, toFloat64({keep})), {vals})")
}

/// A series-major relation: finished SQL, or a projection that later maps
/// and aggregations fuse into instead of selecting from it (each layer of
/// a statement costs ClickHouse's analyzer 1-2 ms).
#[derive(Debug, Clone)]
pub(crate) enum SeriesRel {
    Sql(String),
    Projection(Projection),
}

/// `SELECT {labels} AS labels, {vals} AS vals, {dn} AS dn FROM {from}`,
/// grouped by `labels` for an aggregation. The expressions read the FROM
/// clause's columns qualified (`s.vals`), so the projection's own aliases
/// never shadow them.
#[derive(Debug, Clone)]
pub(crate) struct Projection {
    from: String,
    labels: String,
    vals: String,
    dn: String,
    grouped: bool,
}

impl Projection {
    /// The relation's labels, values and `dn` (SQL in its layer).
    pub(crate) fn labels(&self) -> &str {
        &self.labels
    }

    pub(crate) fn vals(&self) -> &str {
        &self.vals
    }

    pub(crate) fn dn(&self) -> &str {
        &self.dn
    }

    /// The columns `labels, vals, dn`.
    fn columns(&self) -> String {
        format!(
            "{} AS labels, {} AS vals, {} AS dn",
            self.labels, self.vals, self.dn
        )
    }

    /// `SELECT {columns}` in this projection's layer: the columns are SQL
    /// over [`Self::labels`], [`Self::vals`] and [`Self::dn`].
    pub(crate) fn select(&self, columns: &str) -> String {
        self.select_where(columns, None)
    }

    /// [`Self::select`] of the rows (series or groups) where `condition`
    /// holds.
    pub(crate) fn select_where(&self, columns: &str, condition: Option<&str>) -> String {
        let mut sql = format!("SELECT {columns} FROM {}", self.from);
        if self.grouped {
            sql.push_str(&format!(" GROUP BY {}", self.labels));
        }
        if let Some(condition) = condition {
            let clause = if self.grouped { "HAVING" } else { "WHERE" };
            sql.push_str(&format!(" {clause} {condition}"));
        }
        sql
    }
}

impl SeriesRel {
    /// The relation's SQL, columns `labels, vals, dn`.
    pub(crate) fn sql(&self) -> String {
        match self {
            SeriesRel::Sql(sql) => sql.clone(),
            SeriesRel::Projection(p) => p.select(&p.columns()),
        }
    }

    /// The relation without the series that have no value at any step.
    pub(crate) fn sql_with_values(&self) -> String {
        let p = self.projection();
        let condition = format!("arrayExists(x -> x IS NOT NULL, {})", p.vals);
        p.select_where(&p.columns(), Some(&condition))
    }

    /// The relation as a projection to extend or select from.
    pub(crate) fn projection(&self) -> Projection {
        match self {
            SeriesRel::Projection(p) => p.clone(),
            SeriesRel::Sql(sql) => Projection {
                from: format!("({sql}) AS i"),
                labels: "i.labels".into(),
                vals: "i.vals".into(),
                dn: "i.dn".into(),
                grouped: false,
            },
        }
    }

    /// The relation as a projection an aggregation can group: a grouped
    /// one is selected from.
    fn ungrouped_projection(&self) -> Projection {
        match self {
            SeriesRel::Projection(p) if p.grouped => SeriesRel::Sql(self.sql()).projection(),
            _ => self.projection(),
        }
    }
}

impl From<String> for SeriesRel {
    fn from(sql: String) -> Self {
        SeriesRel::Sql(sql)
    }
}

/// Per-series values `(fp, vals)` with the labels `(fp, series_labels)`
/// joined once per series; a range function that keeps the metric name
/// keeps it.
fn with_labels(values: &str, labels: &str, keeps_name: bool) -> SeriesRel {
    let dn = if keeps_name {
        "toUInt8(0)"
    } else {
        "toUInt8(1)"
    };
    SeriesRel::Projection(Projection {
        from: format!("({values}) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp"),
        labels: "l.series_labels".into(),
        vals: "s.vals".into(),
        dn: dn.into(),
        grouped: false,
    })
}

impl Planner {
    /// The samples of `vs` with raw timestamps in `(lo, hi]`, shifted by
    /// `shift` ms, as one row per series `(fp, ts Array(Int64), sv
    /// Array(Float64))` sorted by time, one sample per timestamp; without
    /// staleness markers when `drop_stale`. Also returns the series' labels
    /// `(fp, series_labels)`.
    fn series_samples(
        &mut self,
        vs: &VectorSelector,
        lo: i64,
        hi: i64,
        shift: i64,
        drop_stale: bool,
    ) -> Result<(String, String), PlanError> {
        let (rows, labels) = self.samples_of(vs, lo, hi)?;
        let stale = if drop_stale {
            format!(" AND {}", not_stale("value"))
        } else {
            String::new()
        };
        // `timeSeriesGroupArray` sorts by time and keeps one sample per
        // timestamp (a retried write counts once, as in Prometheus's TSDB).
        let samples = format!(
            "SELECT fp, arrayMap(x -> toUnixTimestamp64Milli(x.1), _s) AS ts, arrayMap(x -> x.2, _s) AS sv FROM (\
               SELECT fingerprint AS fp, timeSeriesGroupArray({}, value) AS _s \
               {rows}{stale} GROUP BY fingerprint)",
            sample_time(shift)
        );
        Ok((samples, labels))
    }

    /// An instant-vector selector (no `@`) on `grid`: each step takes the
    /// latest sample within the lookback `(te - lookback, te]`, none when
    /// that sample is a staleness marker. ClickHouse's resampling
    /// aggregate reads the table's rows directly (it keeps one sample per
    /// timestamp), so no per-series arrays are built.
    pub(crate) fn series_selector(
        &mut self,
        vs: &VectorSelector,
        grid: &Grid,
    ) -> Result<SeriesRel, PlanError> {
        let offset = super::offset_ms(&vs.offset);
        let lo = grid.start - offset - self.lookback;
        let hi = grid.end - offset;
        let (rows, labels) = self.samples_of(vs, lo, hi)?;
        // The aggregate's empty state is a sample (0, 0) at the epoch, which
        // hides samples at or before it: times are shifted past it (the
        // answer depends on time differences only).
        let vals = format!(
            "arrayMap(x -> if(x IS NULL OR NOT {}, NULL, x), \
               timeSeriesResampleToGridWithStaleness({})({}, value))",
            not_stale("assumeNotNull(x)"),
            // Its window is closed, `[te - window, te]`; the lookback is
            // left-open and times are whole milliseconds.
            grid_parameters(&grid.shifted(RESAMPLE_SHIFT_MS), (self.lookback - 1).max(0)),
            sample_time(offset + RESAMPLE_SHIFT_MS)
        );
        let values =
            format!("SELECT fingerprint AS fp, {vals} AS vals {rows} GROUP BY fingerprint");
        Ok(with_labels(&values, &labels, true))
    }

    /// A range function ClickHouse's grid aggregates compute, over a
    /// selector without `@`; `None` when `m` is another kind of range. The
    /// aggregate reads the table's rows directly: it orders the samples
    /// and keeps one per timestamp itself.
    pub(crate) fn series_grid_function(
        &mut self,
        name: &str,
        m: &Matrix,
        grid: &Grid,
        scalars: &[Scalar],
        keeps_name: bool,
    ) -> Result<Option<SeriesRel>, PlanError> {
        let (
            Some(GridAggregate {
                function,
                extra,
                factor,
                extrapolated,
            }),
            Source::Selector(vs),
            None,
        ) = (grid_function(name, m, scalars), &m.source, m.at)
        else {
            return Ok(None);
        };
        if grid.n() == 0 {
            return Ok(None);
        }
        let lo = grid.start - m.offset - m.range;
        let hi = grid.end - m.offset;
        let Some((parameters, time)) = range_grid(grid, m.range, extrapolated, m.offset, (lo, hi))
        else {
            return Ok(None);
        };
        let (rows, labels) = self.samples_of(vs, lo, hi)?;
        let extra = extra.map(|p| format!(", {p}")).unwrap_or_default();
        let aggregate = format!("{function}({parameters}{extra})({time}, value)");
        let vals = match factor {
            None => aggregate,
            Some(f) => map_values(&aggregate, &format!("x * {}", lit(f))),
        };
        let values = format!(
            "SELECT fingerprint AS fp, {vals} AS vals {rows} AND {} GROUP BY fingerprint",
            not_stale("value")
        );
        Ok(Some(with_labels(&values, &labels, keeps_name)))
    }

    /// A range function over the windows of a selector without `@`,
    /// computed on each series' sorted sample arrays: the window of step
    /// `te` is the slice of samples in `(te - range, te]`, its bounds found
    /// by merging the sample times with the step times in one sort (no
    /// sample is copied once per window into rows). `f`'s value is SQL
    /// over `_vals`, `_ts`, `_n`, `te`, `t`, `R` and the constant arguments
    /// `p1`, `p2`, or over `_agg`, its window aggregate; `None` when `m` is
    /// not such a range or an argument varies by step.
    pub(crate) fn series_window_function(
        &mut self,
        m: &Matrix,
        grid: &Grid,
        f: &RangeFn,
        scalars: &[Scalar],
    ) -> Result<Option<SeriesRel>, PlanError> {
        let keeps_name = f.keeps_name;
        if m.at.is_some() || grid.n() == 0 {
            return Ok(None);
        }
        let mut constants = Vec::new();
        for s in scalars {
            match s {
                Scalar::Lit(x) => constants.push(lit(*x)),
                _ => return Ok(None),
            }
        }
        self.windows = true;
        let lo = grid.start - m.offset - m.range;
        let hi = grid.end - m.offset;
        // Labels are joined by fingerprint for a selector; a subquery's
        // series carry theirs (as `fp`).
        let (samples, labels) = match &m.source {
            Source::Selector(vs) => {
                let (samples, labels) = self.series_samples(vs, lo, hi, m.offset, true)?;
                (samples, Some(labels))
            }
            Source::Subquery { expr, step } => {
                match self.subquery_samples(expr, subquery_grid(lo, hi, *step), m.offset)? {
                    Some(samples) => (samples, None),
                    None => return Ok(None),
                }
            }
        };
        let steps = grid.steps();
        // How many samples lie at or before each step time: samples (even
        // keys) sort before a step (odd key) at their own time, so a step's
        // position in the merged keys less its own rank is that count.
        let merged = |back: i64| {
            format!(
                "arraySort(arrayConcat(arrayMap(t -> t * 2, ts), arrayMap(t -> (t - {back}) * 2 + 1, {steps})))"
            )
        };
        let counts = |keys: &str| {
            format!(
                "arrayMap((p, k) -> p - k, arrayFilter((i, x) -> bitAnd(x, 1) = 1, arrayEnumerate({keys}), {keys}), \
                   arrayEnumerate({steps}))"
            )
        };
        // Each step's window is a slice of the series' arrays, cut by
        // `arrayReduceInRanges` (a lambda capturing the per-series array
        // would copy it once per step). The windows, their sizes and the
        // constants are parallel arrays over the steps, the parameters of
        // one lambda.
        // Only what the value reads is cut out: a window aggregate needs
        // no copy of the window at all.
        let n = grid.n();
        let (value, aggregate) = match &f.aggregate {
            Some(a) => (a.value, Some(a)),
            None => (f.value.as_str(), None),
        };
        let mut names = vec!["_n".to_string(), "R".into()];
        let mut args = vec![
            "_wn".to_string(),
            format!("arrayWithConstant({n}, toInt64({}))", m.range),
        ];
        let mut windows = vec!["arrayMap(r -> r.2, _rg) AS _wn".to_string()];
        if value.contains("_vals") {
            names.push("_vals".into());
            args.push("_wv".into());
            windows.push("arrayReduceInRanges('groupArray', _rg, sv) AS _wv".into());
        }
        if value.contains("_ts") {
            names.push("_ts".into());
            args.push("_wt".into());
            windows.push("arrayReduceInRanges('groupArray', _rg, ts) AS _wt".into());
        }
        if let Some(a) = aggregate {
            names.push("_agg".into());
            args.push("_wa".into());
            windows.push(format!(
                "arrayReduceInRanges('{}', _rg, {}) AS _wa",
                a.function, a.arguments
            ));
        }
        for (i, c) in constants.iter().enumerate() {
            names.push(format!("p{}", i + 1));
            args.push(format!("arrayWithConstant({n}, {c})"));
        }
        names.extend(["te".to_string(), "t".into()]);
        args.extend([steps.clone(), steps.clone()]);
        let vals = format!(
            "arrayMap(({}) -> if(_n < {}, NULL, toFloat64({value})), {})",
            names.join(", "),
            f.min_samples,
            args.join(", ")
        );
        let values = format!(
            "SELECT fp, {vals} AS vals FROM (\
               SELECT fp, {windows} FROM (\
                 SELECT fp, ts, sv, arrayMap((lo, hi) -> (toUInt64(lo + 1), toUInt64(hi - lo)), {lo_counts}, {hi_counts}) AS _rg FROM (\
                   SELECT fp, ts, sv, {hi_keys} AS _mhi, {lo_keys} AS _mlo FROM ({samples}))))",
            windows = windows.join(", "),
            hi_counts = counts("_mhi"),
            lo_counts = counts("_mlo"),
            hi_keys = merged(0),
            lo_keys = merged(m.range),
        );
        Ok(Some(match labels {
            Some(labels) => with_labels(&values, &labels, keeps_name),
            None => {
                let dn = if keeps_name { "fp.2" } else { "toUInt8(1)" };
                format!("SELECT fp.1 AS labels, vals, {dn} AS dn FROM ({values})").into()
            }
        }))
    }

    /// The points of a subquery evaluated on `inner` as per-series sample
    /// arrays `(fp, ts, sv)`, times shifted by `offset`, where `fp` is the
    /// series' `(labels, dn)`; `None` when the subquery's expression has no
    /// series-major form.
    fn subquery_samples(
        &mut self,
        expr: &Expr,
        inner: Grid,
        offset: i64,
    ) -> Result<Option<String>, PlanError> {
        let Node::Series(rel) = self.node(expr, &inner)? else {
            return Ok(None);
        };
        let rel = rel.sql();
        let times = inner.shifted(offset).steps();
        Ok(Some(format!(
            "SELECT (labels, dn) AS fp, arrayFilter((t, v) -> v IS NOT NULL, {times}, vals) AS ts, \
               arrayMap(v -> assumeNotNull(v), arrayFilter(v -> v IS NOT NULL, vals)) AS sv \
             FROM ({rel})"
        )))
    }

    /// Point rows `(fp, t, v)` on `grid` gathered into one row per series
    /// (each value put at its step, NULL where none), with the labels
    /// `(fp, labels, dn)` joined once per series; `dn` is over `l.dn`.
    pub(crate) fn series_of_points(
        &self,
        points: &str,
        labels: &str,
        grid: &Grid,
        dn: &str,
    ) -> String {
        format!(
            "SELECT l.labels AS labels, s.vals AS vals, {dn} AS dn FROM (\
               SELECT fp, arrayMap(x -> if(x.1 = 1, x.2, NULL), \
                 groupArrayInsertAt((toUInt8(0), toFloat64(0)), {n})((toUInt8(1), v), \
                   toUInt32(intDiv(t - {start}, {step})))) AS vals \
               FROM ({points}) GROUP BY fp\
             ) AS s INNER JOIN ({labels}) AS l ON s.fp = l.fp",
            n = grid.n(),
            start = grid.start,
            step = grid.step,
        )
    }

    /// A series-major relation as a row relation `(labels, t, v, dn)`.
    pub(crate) fn series_rows(&self, rel: &SeriesRel, grid: &Grid) -> String {
        format!(
            "SELECT labels, t, assumeNotNull(_v) AS v, dn FROM ({}) \
             ARRAY JOIN vals AS _v, {} AS t WHERE _v IS NOT NULL",
            rel.sql(),
            grid.steps()
        )
    }

    /// A per-value function (SQL over a Float64 `x`) on every value, in
    /// the same statement layer as `rel`'s own projection.
    pub(crate) fn series_map(&self, rel: &SeriesRel, f: &str, dn: &str) -> SeriesRel {
        let mut p = rel.projection();
        p.vals = map_values(&p.vals, f);
        p.dn = dn.to_string();
        SeriesRel::Projection(p)
    }

    /// `vector op scalar` (or `scalar op vector` when `scalar_left`) for a
    /// scalar that is the same on every step; `None` for a scalar that
    /// varies by step (read as rows).
    pub(crate) fn series_scalar_op(
        &mut self,
        rel: &SeriesRel,
        op_sql: &dyn Fn(&str, &str) -> Result<String, PlanError>,
        comparison: bool,
        s: &Scalar,
        scalar_left: bool,
        return_bool: bool,
    ) -> Result<Option<SeriesRel>, PlanError> {
        let sv = match s {
            Scalar::Lit(v) => lit(*v),
            _ => return Ok(None),
        };
        let (l, r) = if scalar_left {
            (sv.as_str(), "x")
        } else {
            ("x", sv.as_str())
        };
        let expr = op_sql(l, r)?;
        let filters = comparison && !return_bool;
        self.drops_series |= filters;
        Ok(Some(if filters {
            // The vector's own value survives a filter, whichever side.
            let mut p = rel.projection();
            p.vals = filter_values(&p.vals, "x", &expr);
            SeriesRel::Projection(p)
        } else {
            self.series_map(rel, &expr, "toUInt8(1)")
        }))
    }

    /// An aggregation without a parameter (or `quantile` with a constant
    /// one) over a series-major relation; `None` for the aggregations that
    /// need rows. Each group's values are
    /// transposed to one array per step (`groupArrayForEach`, which skips
    /// NULLs) and reduced with the same SQL as the row engine uses, so the
    /// answers are the same to the last bit.
    pub(crate) fn series_aggregate(
        &mut self,
        a: &AggregateExpr,
        rel: &SeriesRel,
        op: &str,
    ) -> Option<SeriesRel> {
        if let ("topk" | "bottomk", Some(Expr::NumberLiteral(k))) =
            (op, a.param.as_deref().map(super::functions::unparen))
        {
            // Other k (NaN, below 1, huge) keep the row form's handling.
            let fits = k.val >= 1.0 && k.val <= 1e9;
            self.drops_series |= fits;
            if !fits {
                return None;
            }
            let (key, _) = self.group_key(&a.modifier, "_l", "_dn");
            let top = series_top(&rel.sql(), &key, op == "topk", k.val.trunc() as u64);
            return Some(top.into());
        }
        // Of the other aggregations with a parameter, only `quantile` with
        // a constant φ reduces each step's values on their own.
        let phi = match (op, a.param.as_deref().map(super::functions::unparen)) {
            (_, None) => None,
            ("quantile", Some(Expr::NumberLiteral(n))) => Some(n.val),
            _ => return None,
        };
        // In the members' own statement layer where they are not grouped
        // already.
        let members = rel.ungrouped_projection();
        let member_vals = &members.vals;
        // Each step's values as an array `c` and what they become.
        let per_step = |value: &str| {
            format!(
                "arrayMap(c -> if(empty(c), NULL, toFloat64({value})), groupArrayForEach({member_vals}))"
            )
        };
        let vals = match op {
            // The running sums are an array over the steps of their own.
            "sum" => kahan_sum_each(&format!("groupArrayForEach({member_vals})")),
            // Counting needs no array of the values.
            "count" => {
                format!("arrayMap(n -> if(n = 0, NULL, toFloat64(n)), countForEach({member_vals}))")
            }
            "group" => {
                format!("arrayMap(n -> if(n = 0, NULL, toFloat64(1)), countForEach({member_vals}))")
            }
            "quantile" => per_step(&quantile_sql(&lit(phi?), &sort_nan_first("c"))),
            "avg" => mean_each(&format!("groupArrayForEach({member_vals})"), self.means),
            "min" => per_step(
                "if(arrayAll(x -> isNaN(x), c), nan, arrayMin(arrayFilter(x -> NOT isNaN(x), c)))",
            ),
            "max" => per_step(
                "if(arrayAll(x -> isNaN(x), c), nan, arrayMax(arrayFilter(x -> NOT isNaN(x), c)))",
            ),
            "stddev" => per_step(
                "if(arrayExists(x -> isNaN(x) OR isInfinite(x), c), nan, arrayReduce('stddevPopStable', c))",
            ),
            "stdvar" => per_step(
                "if(arrayExists(x -> isNaN(x) OR isInfinite(x), c), nan, arrayReduce('varPopStable', c))",
            ),
            _ => return None,
        };
        let (key, dn) = self.group_key(&a.modifier, &members.labels, &members.dn);
        Some(SeriesRel::Projection(Projection {
            labels: key,
            vals,
            dn,
            from: members.from,
            grouped: true,
        }))
    }
}

/// `topk`/`bottomk` with a constant `k` over a series-major relation, in
/// one pass: each group's members are gathered into one row with, per
/// step, the ids of its `k` largest (smallest) values (NaN last, as in
/// Prometheus); the members are then unfolded again, each keeping its
/// values at the steps where it was chosen. Ids follow the members' label
/// order, so equal values are picked the same way every time (the series
/// first in label order, as Prometheus's heap mostly does; its exact
/// order among ties is issue 19's). Only the first `k` of each step are
/// sorted (`arrayPartialSort`). `key` is over `_l`.
fn series_top(rel: &str, key: &str, largest: bool, k: u64) -> String {
    let sign = if largest { "-" } else { "" };
    format!(
        "SELECT m.2 AS labels, arrayMap((v, ids) -> if(v IS NOT NULL AND has(ids, m.1), v, NULL), m.3, _top) AS vals, \
           m.4 AS dn FROM (\
           SELECT groupArray((_sid, _l, _v, _dn)) AS _members, \
             arrayMap(c -> arrayMap(x -> x.2, arraySlice(arrayPartialSort(x -> (isNaN(x.1), {sign}x.1, x.2), {k}, \
               arrayFilter(x -> x.1 IS NOT NULL, c)), 1, {k})), \
               groupArrayForEach(arrayMap(v -> (v, _sid), _v))) AS _top \
           FROM (SELECT labels AS _l, vals AS _v, dn AS _dn, row_number() OVER (ORDER BY labels) AS _sid \
             FROM ({rel})) \
           GROUP BY {key}\
         ) ARRAY JOIN _members AS m"
    )
}

#[cfg(test)]
mod tests {
    use super::super::{Grid, PlanKind, PlanSettings, plan};

    /// A two-hour range at a 30 s step.
    fn range() -> Grid {
        Grid::range(1_700_000_000_000, 1_700_007_200_000, 30_000)
    }

    #[test]
    fn dashboard_shapes_plan_series_major() {
        for query in [
            "up",
            "count by (job) (up)",
            "sum by (job) (rate(http_requests_total[5m]))",
            "sum without (mode) (irate(node_cpu_seconds_total{mode!=\"idle\"}[1m])) * 100",
            "abs(-delta(temperature[10m]))",
            "node_filesystem_avail_bytes / 1024 > 10",
            "node_memory_MemAvailable_bytes / on (instance) node_memory_MemTotal_bytes",
            "histogram_quantile(0.9, sum by (le) (rate(request_seconds_bucket[5m])))",
            "quantile by (job) (0.5, up)",
            "label_replace(up, \"host\", \"$1\", \"instance\", \"(.*):.*\")",
        ] {
            let plan = plan(query, range(), &PlanSettings::default()).unwrap();
            assert!(
                matches!(
                    plan.kind,
                    PlanKind::Series {
                        start: 1_700_000_000_000,
                        step: 30_000
                    }
                ),
                "{query}: {:?}",
                plan.kind
            );
            // No sample is copied onto steps, no point row leaves ClickHouse.
            assert!(!plan.sql.contains("ARRAY JOIN"), "{query}: {}", plan.sql);
            assert!(
                !plan.sql.contains("GROUP BY fingerprint, timestamp_ms"),
                "{query}"
            );
        }
    }

    /// How deep lambdas nest in `sql`: a lambda inside another's body is
    /// one deeper. ClickHouse's analyzer pays for each level again (and
    /// more than linearly for a large body), so shared values are bound in
    /// one lambda of several parameters, not one level each.
    fn lambda_depth(sql: &str) -> usize {
        let bytes = sql.as_bytes();
        // Each lambda body as a byte range: from its arrow to the comma or
        // bracket that closes the argument it is.
        let mut bodies = Vec::new();
        for (at, _) in sql.match_indices("->") {
            let mut depth = 0i32;
            let mut end = bytes.len();
            for (k, b) in bytes.iter().enumerate().skip(at + 2) {
                match b {
                    b'(' | b'[' => depth += 1,
                    b')' | b']' if depth == 0 => {
                        end = k;
                        break;
                    }
                    b')' | b']' => depth -= 1,
                    b',' if depth == 0 => {
                        end = k;
                        break;
                    }
                    _ => {}
                }
            }
            bodies.push((at, end));
        }
        bodies
            .iter()
            .map(|(at, _)| 1 + bodies.iter().filter(|(s, e)| s < at && at < e).count())
            .max()
            .unwrap_or(0)
    }

    #[test]
    fn dashboard_shapes_nest_few_lambdas() {
        assert_eq!(lambda_depth("arrayMap(x -> x + 1, a)"), 1);
        assert_eq!(
            lambda_depth("arrayMap(x -> arrayMap(y -> y, x), a), arrayMap(z -> z, b)"),
            2
        );
        for (query, most) in [
            ("sum by (job) (rate(http_requests_total[5m]))", 2),
            ("avg by (job) (up)", 3),
            ("sum_over_time(x[10m])", 3),
            ("avg_over_time(x[10m])", 4),
            ("predict_linear(x[1h], 3600)", 1),
            ("deriv(x[1h])", 1),
            (
                "histogram_quantile(0.9, sum by (le) (rate(request_seconds_bucket[5m])))",
                3,
            ),
        ] {
            let plan = plan(query, range(), &PlanSettings::default()).unwrap();
            let depth = lambda_depth(&plan.sql);
            assert!(
                depth <= most,
                "{query}: lambdas nest {depth} deep: {}",
                plan.sql
            );
        }
    }

    #[test]
    fn means_are_fast_with_an_exact_fallback() {
        use super::super::EXACT_MEANS_MARKER;
        for query in [
            "avg_over_time(x[5m])",
            "avg by (job) (x)",
            "avg(x) by (job) and on() vector(1)",
        ] {
            let plan = plan(query, range(), &PlanSettings::default()).unwrap();
            assert!(plan.sql.contains(EXACT_MEANS_MARKER), "{query}");
            let exact = plan.fallback.as_ref().expect("an exact fallback");
            assert!(!exact.sql.contains(EXACT_MEANS_MARKER), "{query}");
            assert!(exact.sql.contains("arrayFold"), "{query}");
            assert!(exact.fallback.is_none());
            assert_eq!(exact.params, plan.params);
        }
        let plan = plan("sum_over_time(x[5m])", range(), &PlanSettings::default()).unwrap();
        assert!(plan.fallback.is_none());
    }

    /// The names of the top-level columns of a statement: its projection
    /// up to the `FROM` outside any parentheses, each column's alias (or
    /// its bare name).
    fn top_columns(sql: &str) -> Vec<String> {
        let body = sql.strip_prefix("SELECT ").expect("a SELECT");
        let (mut depth, mut start, mut columns) = (0i32, 0usize, Vec::new());
        let name = |c: &str| c.rsplit(" AS ").next().unwrap_or(c).trim().to_string();
        for (i, ch) in body.char_indices() {
            match ch {
                '(' | '[' => depth += 1,
                ')' | ']' => depth -= 1,
                ',' if depth == 0 => {
                    columns.push(name(&body[start..i]));
                    start = i + 1;
                }
                ' ' if depth == 0 && body[i..].starts_with(" FROM ") => {
                    columns.push(name(&body[start..i]));
                    return columns;
                }
                _ => {}
            }
        }
        panic!("no FROM in {sql}")
    }

    /// Series-major statements are the relation itself, with no wrapper:
    /// every node's relation must end in `labels, vals, dn`, the row the
    /// engine decodes by position.
    #[test]
    fn series_relations_answer_labels_vals_dn() {
        for query in [
            "up",
            "node_load1 offset 5m",
            "rate(http_requests_total[5m])",
            "increase(x[5m])",
            "sum by (job) (rate(x[5m]))",
            "avg without (instance) (x)",
            "count by (job) (up)",
            "max by (job) (x) / 1024 / 1024",
            "-x",
            "abs(x)",
            "x > 5",
            "x > bool 5",
            "2 * x",
            "avg_over_time(x[10m])",
            "max_over_time(x[10m])",
            "count_over_time(x[10m])",
            "last_over_time(x[10m])",
            "quantile_over_time(0.9, x[10m])",
            "predict_linear(x[1h], 3600) < 0",
            "max_over_time(rate(x[5m])[30m:1m])",
            "max_over_time(limitk(2, rate(x[5m]))[30m:1m])",
            "topk(5, rate(x[5m]))",
            "bottomk by (job) (2, x)",
            "histogram_quantile(0.9, sum by (le) (rate(x_bucket[5m])))",
            "sum(rate(a[5m])) / on() sum(rate(b[5m]))",
            "a / b",
            "a * on(job) b",
            "label_replace(x, \"a\", \"$1\", \"job\", \"(.*)\")",
            "label_join(x, \"a\", \",\", \"job\", \"instance\")",
            "sum by (job) (x) > 0",
        ] {
            let plan = plan(query, range(), &PlanSettings::default()).unwrap();
            assert!(matches!(plan.kind, PlanKind::Series { .. }), "{query}");
            assert_eq!(
                top_columns(&plan.sql),
                ["labels", "vals", "dn"],
                "{query}: {}",
                plan.sql
            );
        }
    }

    #[test]
    fn grid_functions_read_samples_once_per_series() {
        let plan = plan(
            "sum by (job) (rate(http_requests_total[5m]))",
            range(),
            &PlanSettings::default(),
        )
        .unwrap();
        assert!(plan.sql.contains("timeSeriesRateToGrid"), "{}", plan.sql);
        // Windows left-open as Prometheus's: `rate`'s samples 1 ns early.
        assert!(
            plan.sql
                .contains("fromUnixTimestamp64Nano(timestamp_ms * 1000000 - 1, 'UTC')"),
            "{}",
            plan.sql
        );
        assert!(
            plan.sql.contains("groupArrayForEach(s.vals)"),
            "{}",
            plan.sql
        );
        assert_eq!(plan.sql.matches("FROM samples").count(), 1, "{}", plan.sql);
        // Label values only as parameters.
        assert!(!plan.sql.contains("'http_requests_total'"), "{}", plan.sql);
        assert!(plan.params.iter().any(|(_, v)| v == "http_requests_total"));
        // predict_linear by a constant duration is the same kind of
        // aggregate, its duration one more parameter.
        let predicted = super::super::plan(
            "predict_linear(node_filesystem_avail_bytes[1h], 4 * 3600) < 0",
            range(),
            &PlanSettings::default(),
        )
        .unwrap();
        let sql = &predicted.sql;
        assert!(
            sql.contains("timeSeriesPredictLinearToGrid(") && sql.contains("toFloat64(14400.0))("),
            "{sql}"
        );
        assert!(!sql.contains("arrayReduceInRanges"), "{sql}");
        // Its window only decides which samples are in it: 1 ms shorter.
        assert!(sql.contains("toDecimal64('3599.999', 3)"), "{sql}");
    }

    #[test]
    fn window_functions_and_subqueries_answer_one_row_per_series() {
        // Over a selector: windows are slices of each series' arrays.
        for query in [
            "avg_over_time(node_load1[10m])",
            "stddev_over_time(node_load1[10m])",
            "quantile_over_time(0.9, node_load1[10m] offset 1h)",
            "sum_over_time(node_load1[10m])",
        ] {
            let plan = plan(query, range(), &PlanSettings::default()).unwrap();
            assert!(matches!(plan.kind, PlanKind::Series { .. }), "{query}");
            assert!(
                plan.sql
                    .contains("arrayReduceInRanges('groupArray', _rg, sv)"),
                "{query}"
            );
            assert!(!plan.sql.contains("ARRAY JOIN"), "{query}: {}", plan.sql);
        }
        // Over a subquery of a series-major expression: the inner series'
        // arrays are windowed the same way, the inner expression read once;
        // an extreme is an aggregate over each window, no window copied.
        let query = "max_over_time(rate(http_requests_total[5m])[30m:1m])";
        let plan = plan(query, range(), &PlanSettings::default()).unwrap();
        assert!(matches!(plan.kind, PlanKind::Series { .. }), "{query}");
        assert!(
            plan.sql
                .contains("arrayReduceInRanges('maxOrNullIf', _rg, sv"),
            "{query}"
        );
        assert!(!plan.sql.contains("'groupArray'"), "{query}");
        assert_eq!(
            plan.sql.matches("timeSeriesRateToGrid").count(),
            1,
            "{query}"
        );
        // Over a subquery of a row-only expression: windows of rows,
        // gathered back per series.
        let query = "max_over_time(limitk(2, rate(http_requests_total[5m]))[30m:1m])";
        let rows = super::super::plan(query, range(), &PlanSettings::default()).unwrap();
        assert!(matches!(rows.kind, PlanKind::Series { .. }), "{query}");
        assert!(rows.sql.contains("groupArrayInsertAt"), "{query}");
    }

    #[test]
    fn instant_queries_and_row_only_shapes_read_as_rows() {
        let instant = plan(
            "sum(up)",
            Grid::instant(1_700_000_000_000),
            &PlanSettings::default(),
        )
        .unwrap();
        assert_eq!(instant.kind, PlanKind::Vector);
        // A per-step shape takes the series-major input as rows.
        let limitk = plan("limitk(3, up)", range(), &PlanSettings::default()).unwrap();
        assert_eq!(limitk.kind, PlanKind::Vector);
        assert!(
            limitk.sql.contains("ARRAY JOIN vals AS _v"),
            "{}",
            limitk.sql
        );
        // topk with a constant k picks per step inside one row per group.
        let topk = plan("topk(3, up)", range(), &PlanSettings::default()).unwrap();
        assert!(matches!(topk.kind, PlanKind::Series { .. }), "{}", topk.sql);
        assert!(topk.sql.contains("ARRAY JOIN _members"), "{}", topk.sql);
        // A k that is not a plain number in range keeps the row form.
        let nan_k = plan("topk(NaN, up)", range(), &PlanSettings::default());
        assert!(nan_k.is_err());
    }
}
