//! Range functions over windows that may hold floats and native
//! histograms: `resets`, `changes`, `irate`, `idelta`, `sum_over_time`,
//! `avg_over_time`, `last_over_time`, `first_over_time`,
//! `count_over_time`, `present_over_time`, `ts_of_last_over_time` and
//! `ts_of_first_over_time` of a plain range selector or a subquery that
//! may read histograms (and which windows `absent_over_time` finds samples
//! in).
//!
//! Each window is `w Array(Tuple(ts Int64, is_h UInt8, v Float64, h
//! HISTOGRAM))`, both kinds by time. A window of floats alone is computed
//! by the float function itself (over `_vals`, `_ts`, `_n`, `te`, `R`, as
//! every range function); the other windows as Prometheus's functions do:
//! `resets` and `changes` count a switch between a float and a histogram,
//! `irate` and `idelta` take the last two samples (one of each kind: no
//! result), `sum_over_time` and `avg_over_time` add histograms (both kinds
//! in a window: no result), the `last`/`first`/`count`/`ts_of` functions
//! take either kind. The annotations Prometheus adds are not returned.

use promql_parser::parser::{Call, Expr};

use super::extended::RangeModifier;
use super::functions::{Means, range_fn, unparen};
use super::native::{is_range, no_histogram};
use super::native_fns::HISTOGRAM_TYPE;
use super::native_ops::histograms_equal;
use super::native_rate::{
    GAUGE_HINT, combined_hint, detect_reset, scaled, signed_sum, window_resets,
};
use super::native_sum::compensated_total;
use super::selector::{not_stale, subquery_grid, window_rows};
use super::stages::let_in;
use super::{Grid, Matrix, Node, PlanError, Planner, Source};

/// What a function returns for a window that holds histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// A float for every window (`resets`, `count_over_time`, ...).
    Float,
    /// A float or a histogram (`irate`, `last_over_time`, ...).
    Sample,
}

/// How function `name` treats a window with histograms, if it is one of
/// this module's; the SQL reads the window `w` and the columns bound by
/// [`bound`].
struct WindowFn {
    kind: Kind,
    /// Whether the result keeps the metric name.
    keeps_name: bool,
    /// For a window of floats alone: the float function's value (`None`:
    /// the same expression as for the other windows).
    floats_only: Option<(String, String)>,
    /// `(present, is_h, v, h)` for every other window.
    value: (String, String, String, String),
}

/// Columns a window's expressions may read: `_n`, `_nh` (histograms in
/// it), `_vals`, `_ts` and `_hs`.
fn bound(w: &str) -> String {
    format!(
        "length({w}) AS _n, arrayCount(x -> x.2 = 1, {w}) AS _nh, \
         arrayMap(x -> x.3, {w}) AS _vals, arrayMap(x -> x.1, {w}) AS _ts, \
         arrayMap(x -> x.4, {w}) AS _hs"
    )
}

/// The number of consecutive pairs of the window for which `pair` holds
/// (over the 1-based index `i` of the later sample); a switch between a
/// float and a histogram always counts.
fn count_pairs(floats: &str, histograms: &str) -> String {
    format!(
        "toFloat64(arrayCount(i -> multiIf(i = 1, 0, w[i].2 != w[i - 1].2, 1, \
           w[i].2 = 1, {histograms}, {floats}), arrayEnumerate(w)))"
    )
}

/// `h` with counter reset hint gauge.
fn as_gauge(h: &str) -> String {
    format!(
        "CAST(tuple({h}.schema, {h}.zero_threshold, {h}.zero_count, {h}.count, {h}.sum, \
           {h}.positive_index, {h}.positive_counts, {h}.negative_index, {h}.negative_counts, \
           {h}.custom_values, {GAUGE_HINT}), '{HISTOGRAM_TYPE}')"
    )
}

/// Whether the histograms `hs` mix exponential and custom buckets.
fn mixes_schemas(hs: &str) -> String {
    format!("(arrayExists(x -> x.schema = -53, {hs}) AND arrayExists(x -> x.schema != -53, {hs}))")
}

/// Whether the range function `name` of a range selector may return
/// histograms (those of [`native_rate`](super::native_rate) included).
pub(crate) fn returns_histograms(name: &str) -> bool {
    matches!(name, "rate" | "increase" | "delta")
        || window_fn(name, Means::Fast).is_some_and(|f| f.kind == Kind::Sample)
}

fn window_fn(name: &str, means: Means) -> Option<WindowFn> {
    let float_value = |name: &str| -> Option<(String, String)> {
        let f = range_fn(name, means)?;
        let present = f.present();
        Some((present, f.value))
    };
    let sample = |i: &str| {
        (
            "_n >= 1".to_string(),
            format!("w[{i}].2"),
            format!("w[{i}].3"),
            format!("w[{i}].4"),
        )
    };
    let float = |value: &str| {
        (
            "_n >= 1".to_string(),
            "toUInt8(0)".to_string(),
            value.to_string(),
            no_histogram(),
        )
    };
    Some(match name {
        "resets" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float(&let_in(
                &[("_hr", &window_resets("arrayMap(x -> x.4, w)"))],
                &count_pairs("w[i].3 < w[i - 1].3", "_hr[i]"),
            )),
        },
        "changes" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float(&count_pairs(
                "NOT (w[i].3 = w[i - 1].3 OR (isNaN(w[i].3) AND isNaN(w[i - 1].3)))",
                &format!("NOT {}", histograms_equal("w[i].4", "w[i - 1].4")),
            )),
        },
        "count_over_time" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float("toFloat64(_n)"),
        },
        "present_over_time" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float("toFloat64(1)"),
        },
        "ts_of_last_over_time" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float("w[_n].1 / 1000"),
        },
        "ts_of_first_over_time" => WindowFn {
            kind: Kind::Float,
            keeps_name: false,
            floats_only: None,
            value: float("w[1].1 / 1000"),
        },
        "last_over_time" => WindowFn {
            kind: Kind::Sample,
            keeps_name: true,
            floats_only: None,
            value: sample("_n"),
        },
        "first_over_time" => WindowFn {
            kind: Kind::Sample,
            keeps_name: true,
            floats_only: None,
            value: sample("1"),
        },
        "sum_over_time" | "avg_over_time" => {
            let mean = (name == "avg_over_time").then_some(means);
            let hint = combined_hint("arrayMap(x -> x.reset_hint, _cs_h)");
            let h = compensated_total("_hs", &hint, mean);
            WindowFn {
                kind: Kind::Sample,
                keeps_name: false,
                floats_only: float_value(name),
                value: (
                    format!("_nh = _n AND NOT {}", mixes_schemas("_hs")),
                    "toUInt8(1)".to_string(),
                    "toFloat64(0)".to_string(),
                    h,
                ),
            }
        }
        "irate" | "idelta" => {
            let dt = "((w[_n].1 - w[_n - 1].1) / 1000)";
            let diff = signed_sum(
                "[(w[_n].4, toFloat64(1)), (w[_n - 1].4, toFloat64(-1))]",
                "least(w[_n].4.schema, w[_n - 1].4.schema)",
                "greatest(w[_n].4.zero_threshold, w[_n - 1].4.zero_threshold)",
                GAUGE_HINT,
            );
            let h = if name == "irate" {
                let reset = detect_reset("w[_n].4", "w[_n - 1].4");
                scaled(
                    &format!("if({reset} = 1, {}, {diff})", as_gauge("w[_n].4")),
                    &format!("(1 / {dt})"),
                )
            } else {
                diff
            };
            let compatible = if name == "irate" {
                "1".to_string()
            } else {
                "(w[_n].4.schema = -53) = (w[_n - 1].4.schema = -53)".to_string()
            };
            WindowFn {
                kind: Kind::Sample,
                keeps_name: false,
                floats_only: float_value(name),
                value: (
                    format!(
                        "_n >= 2 AND w[_n].2 = 1 AND w[_n - 1].2 = 1 AND w[_n].1 > w[_n - 1].1 \
                         AND {compatible}"
                    ),
                    "toUInt8(1)".to_string(),
                    "toFloat64(0)".to_string(),
                    h,
                ),
            }
        }
        _ => return None,
    })
}

impl Planner {
    /// A range function of this module over a plain range selector that
    /// may read histograms; `None` to plan it the float way.
    pub(crate) fn native_window_call(
        &mut self,
        call: &Call,
        grid: &Grid,
    ) -> Result<Option<Node>, PlanError> {
        let name = call.func.name;
        let Some(f) = window_fn(name, self.means) else {
            return Ok(None);
        };
        let Some(m) = self.histogram_matrix(call.args.args.first().map(|a| unparen(a)), grid)?
        else {
            return Ok(None);
        };
        let windows = self.mixed_windows(&m, grid, true)?;
        let (present, is_h, v, h) = &f.value;
        let (present, is_h, v, h) = match &f.floats_only {
            None => (present.clone(), is_h.clone(), v.clone(), h.clone()),
            Some((float_present, float_value)) => (
                format!("if(_nh = 0, {float_present}, {present})"),
                format!("if(_nh = 0, toUInt8(0), {is_h})"),
                format!("if(_nh = 0, toFloat64({float_value}), {v})"),
                format!("if(_nh = 0, {}, {h})", no_histogram()),
            ),
        };
        let dn = if f.keeps_name { "0" } else { "1" };
        let rows = format!(
            "SELECT labels, t, v, h, is_h, toUInt8({dn}) AS dn FROM (\
               SELECT labels, t, {v} AS v, {h} AS h, toUInt8({is_h}) AS is_h, {present} AS _ok \
               FROM (SELECT labels, t, te, R, w, {bound} FROM ({windows}))\
             ) WHERE _ok",
            bound = bound("w"),
        );
        Ok(Some(match f.kind {
            Kind::Float => Node::Vector(format!("SELECT labels, t, v, dn FROM ({rows})")),
            Kind::Sample => Node::Mixed(rows),
        }))
    }

    /// A smoothed instant selector that may read histograms: the sample
    /// at the time, else the two around it interpolated (a histogram
    /// counter that reset between them restarts from zero: the later one
    /// scaled), else the last one before, as Prometheus's smoothing does.
    /// A lookback that holds both kinds, or interpolation between
    /// exponential and custom buckets, has no result.
    pub(crate) fn smoothed_mixed(&mut self, m: &Matrix, grid: &Grid) -> Result<Node, PlanError> {
        let windows = self.mixed_windows(m, grid, false)?;
        // `_i`: the first sample at or after the time (0: none); one
        // sample is used when it is exactly there or none is after.
        let around = format!(
            "SELECT labels, t, te, w, _single, \
               if(_single, if(_i = 0, toInt64(length(w)), _i), _i - 1) AS _ai, if(_single, _ai, _i) AS _bi, \
               arrayExists(x -> x.2 = 1, w) AS _any_h, arrayExists(x -> x.2 = 0, w) AS _any_f \
             FROM (SELECT labels, t, te, w, toInt64(arrayFirstIndex(x -> x.1 >= te, w)) AS _i, \
                     (_i = 0 OR w[_i].1 = te) AS _single FROM ({windows})) \
             WHERE w[1].1 <= te AND NOT (_any_h AND _any_f)"
        );
        let parts = format!(
            "SELECT labels, t, te, _single, _any_h AS is_h, w[_ai].1 AS _at, w[_bi].1 AS _bt, \
               w[_ai].3 AS _av, w[_bi].3 AS _bv, w[_ai].4 AS _ah, w[_bi].4 AS _bh, \
               (te - _at) / (_bt - _at) AS _f FROM ({around})"
        );
        let line = signed_sum(
            "[(_ah, 1 - _f), (_bh, _f)]",
            "least(_ah.schema, _bh.schema)",
            "greatest(_ah.zero_threshold, _bh.zero_threshold)",
            "_bh.reset_hint",
        );
        let histogram = format!(
            "if(_single, _ah, if({reset} = 1, {restarted}, {line}))",
            reset = detect_reset("_bh", "_ah"),
            restarted = scaled("_bh", "_f"),
        );
        Ok(Node::Mixed(format!(
            "SELECT labels, t, if(_single, _av, _av + (_bv - _av) * (te - _at) / (_bt - _at)) AS v, \
               if(is_h, {histogram}, {none}) AS h, is_h, toUInt8(0) AS dn \
             FROM ({parts}) \
             WHERE NOT (is_h AND NOT _single AND (_ah.schema = -53) != (_bh.schema = -53))",
            none = no_histogram(),
        )))
    }

    /// Whether the range vector `m`, returned as it is, may hold
    /// histograms: a plain range selector of a metric that has some.
    pub(crate) fn raw_matrix_reads_histograms(&self, m: &Matrix) -> bool {
        m.modifier == RangeModifier::Plain
            && matches!(&m.source, Source::Selector(vs) if self.may_read_histograms(vs))
    }

    /// The range vector `m` returned by an instant query, both kinds of
    /// samples on their own times (the rows of `PlanKind::MixedMatrix`).
    pub(crate) fn raw_mixed_matrix(
        &mut self,
        m: &Matrix,
        grid: &Grid,
    ) -> Result<String, PlanError> {
        let windows = self.mixed_windows(m, grid, false)?;
        Ok(super::native::mixed_output(&format!(
            "SELECT labels, _x.1 - {offset} AS t, _x.3 AS v, _x.4 AS h, _x.2 AS is_h, toUInt8(0) AS dn \
             FROM ({windows}) ARRAY JOIN w AS _x",
            offset = m.offset,
        )))
    }

    /// The plain range selector or subquery `arg` if it may read
    /// histograms.
    fn histogram_matrix(
        &mut self,
        arg: Option<&Expr>,
        grid: &Grid,
    ) -> Result<Option<Matrix>, PlanError> {
        let Some(arg) = arg.filter(|a| is_range(a) && self.reads_histograms(a)) else {
            return Ok(None);
        };
        let m = self.matrix(arg, grid)?;
        // Of the extended windows only anchored ones reach this module
        // (`resets` and `changes`; the rates are `native_rate`'s).
        if m.modifier == RangeModifier::Smoothed {
            return Ok(None);
        }
        Ok(Some(m))
    }

    /// The steps on which `absent_over_time` of a plain range selector
    /// that may read histograms finds a sample of either kind: rows `t`;
    /// `None` for other arguments.
    pub(crate) fn mixed_present_steps(
        &mut self,
        arg: &Expr,
        grid: &Grid,
    ) -> Result<Option<String>, PlanError> {
        let Some(m) = self.histogram_matrix(Some(unparen(arg)), grid)? else {
            return Ok(None);
        };
        let windows = self.mixed_windows(&m, grid, true)?;
        Ok(Some(format!("SELECT DISTINCT t FROM ({windows})")))
    }

    /// The rows of `rel` (with `labels` and `t`) but those whose window of
    /// `m` holds both floats and histograms: rate-like functions have no
    /// result there.
    pub(crate) fn without_mixed_windows(
        &mut self,
        rel: &str,
        m: &Matrix,
        grid: &Grid,
    ) -> Result<String, PlanError> {
        let windows = self.mixed_windows(m, grid, false)?;
        Ok(format!(
            "SELECT * FROM ({rel}) WHERE (labels, t) NOT IN (\
               SELECT labels, t FROM ({windows}) \
               WHERE arrayExists(x -> x.2 = 1, w) AND arrayExists(x -> x.2 = 0, w))"
        ))
    }

    /// The points of subquery `expr` at `step` in `(lo, hi]`, as samples of
    /// both kinds `(fp, ts, is_h, sv, sh)` shifted by `offset`, and its
    /// series `(fp, series_labels)` (a name its functions drop, dropped).
    pub(super) fn mixed_subquery_samples(
        &mut self,
        expr: &Expr,
        step: i64,
        offset: i64,
        lo: i64,
        hi: i64,
    ) -> Result<(String, String), PlanError> {
        let inner = subquery_grid(lo, hi, step);
        let rows = match self.node(expr, &inner)? {
            Node::Mixed(rows) => rows,
            node => format!(
                "SELECT labels, t, v, {none} AS h, toUInt8(0) AS is_h, dn FROM ({floats})",
                none = no_histogram(),
                floats = self.rows_of(node, expr, &inner)?,
            ),
        };
        let named = format!(
            "SELECT sipHash64(_l) AS fp, _l, t, v, h, is_h FROM (\
               SELECT if(dn = 1, {dropped}, labels) AS _l, t, v, h, is_h FROM ({rows}))",
            dropped = super::drop_name("labels"),
        );
        Ok((
            format!("SELECT fp, t + {offset} AS ts, is_h, v AS sv, h AS sh FROM ({named})"),
            format!("SELECT fp, any(_l) AS series_labels FROM ({named}) GROUP BY fp"),
        ))
    }

    /// Windows of floats and histograms of the selector of `m` on `grid`:
    /// rows `(labels, t, te, R, w)` with `w` the samples of both kinds by
    /// time (see the module notes), staleness markers left out; `te` is
    /// when the window ends, `t` the step it answers for (they differ
    /// under `@`). With `anchor`, an anchored window starts at its anchor.
    pub(crate) fn mixed_windows(
        &mut self,
        m: &Matrix,
        grid: &Grid,
        anchor: bool,
    ) -> Result<String, PlanError> {
        let eval = match m.at {
            Some(t) => Grid::instant(t),
            None => *grid,
        };
        let back = m.reach_back(self.lookback);
        let lo = eval.start - m.offset - back;
        let forward = m.reach_forward(self.lookback);
        let hi = eval.end - m.offset + forward;
        let (samples, labels) = match &m.source {
            Source::Selector(vs) => {
                let matched = self.matched_series(vs, lo, hi)?;
                let within = format!(
                    "WHERE {} AND timestamp_ms > {lo} AND timestamp_ms <= {hi}",
                    matched.samples_filter
                );
                let floats = format!(
                    "SELECT fingerprint AS fp, timestamp_ms + {offset} AS ts, toUInt8(0) AS is_h, \
                       any(value) AS sv, {none} AS sh \
                     FROM samples {within} GROUP BY fingerprint, timestamp_ms HAVING {float_fresh} \
                     UNION ALL ",
                    offset = m.offset,
                    none = no_histogram(),
                    float_fresh = not_stale("any(value)"),
                );
                let samples = format!(
                    "{floats}SELECT fingerprint AS fp, timestamp_ms + {offset} AS ts, toUInt8(1) AS is_h, \
                       toFloat64(0) AS sv, any({stored}) AS sh \
                     FROM histograms {within} GROUP BY fingerprint, timestamp_ms HAVING {fresh}",
                    floats = if self.reads_only_histograms(vs) {
                        ""
                    } else {
                        &floats
                    },
                    offset = m.offset,
                    stored = super::native::stored_histogram(),
                    fresh = not_stale("any(sum)"),
                );
                (samples, matched.labelled)
            }
            Source::Subquery { expr, step } => {
                self.mixed_subquery_samples(expr, *step, m.offset, lo, hi)?
            }
        };
        let windows = window_rows(&samples, "(ts, is_h, sv, sh)", "te", &eval, back, forward);
        let steps = match m.at {
            Some(_) => format!("ARRAY JOIN {} AS t", grid.steps()),
            None => String::new(),
        };
        let t = match m.at {
            Some(_) => "t",
            None => "win.te",
        };
        let rel = format!(
            "SELECT l.series_labels AS labels, {t} AS t, win.te AS te, toInt64({range}) AS R, win.w AS w \
             FROM ({windows}) AS win INNER JOIN ({labels}) AS l ON win.fp = l.fp {steps}",
            range = m.range,
        );
        Ok(match m.modifier {
            // From the last sample at or before the start (not the
            // window's last), else the first; nothing to measure without a
            // sample after the start.
            RangeModifier::Anchored if anchor => format!(
                "SELECT labels, t, te, R, \
                   arraySlice(w, greatest(1, arrayCount(x -> x.1 <= te - R, arrayPopBack(w)))) AS w \
                 FROM ({rel}) WHERE w[length(w)].1 > te - R"
            ),
            _ => rel,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::{Grid, PlanKind, PlanSettings, plan};

    fn settings() -> PlanSettings {
        super::super::native::with_histograms(&["h"])
    }

    #[test]
    fn functions_of_histogram_windows_read_both_kinds() {
        for (query, kind) in [
            ("resets(h[5m])", PlanKind::Vector),
            ("changes(h[5m])", PlanKind::Vector),
            ("count_over_time(h[5m])", PlanKind::Vector),
            ("irate(h[5m])", PlanKind::Mixed),
            ("idelta(h[5m] offset 1m)", PlanKind::Mixed),
            ("sum_over_time(h[5m])", PlanKind::Mixed),
            ("avg_over_time(h[5m] @ 100)", PlanKind::Mixed),
            ("last_over_time(h[5m])", PlanKind::Mixed),
            ("changes(h[5m] anchored)", PlanKind::Vector),
            ("h smoothed", PlanKind::Mixed),
            ("histogram_count(h smoothed)", PlanKind::Vector),
            // Subqueries of histograms: windows of the points they return.
            ("sum_over_time(h[4m:1m])", PlanKind::Mixed),
            ("avg_over_time(h[10m:1m] offset 1m)", PlanKind::Mixed),
            ("count_over_time((h * 2)[5m:])", PlanKind::Vector),
        ] {
            let planned = plan(query, Grid::range(0, 600_000, 60_000), &settings())
                .unwrap_or_else(|e| panic!("{query}: {e}"));
            assert_eq!(planned.kind, kind, "{query}");
            assert!(planned.sql.contains("FROM histograms"), "{query}");
            assert!(planned.sql.contains("FROM samples"), "{query}");
        }
    }

    #[test]
    fn other_metrics_and_functions_plan_as_before() {
        for query in ["resets(x[5m])", "max_over_time(h[5m])", "irate(x[5m])"] {
            let planned = plan(query, Grid::instant(0), &settings()).unwrap();
            assert_eq!(planned.kind, PlanKind::Vector, "{query}");
            assert!(!planned.sql.contains("is_h, sv, sh"), "{query}");
        }
    }
}
