//! The PromQL planner: compiles a parsed PromQL expression into one
//! ClickHouse SQL statement.
//!
//! Every node evaluates on a step grid (an instant query is a grid of one
//! step). Relations have fixed columns:
//! - instant vectors: `labels Array(Tuple(String, String))` sorted by name,
//!   `t Int64` (the step, ms), `v Float64`, and `dn UInt8`, set when the
//!   metric name is to be dropped at the end (Prometheus's delayed name
//!   removal: a later `label_replace` may still read it);
//! - scalars: a literal, an expression over `t`, or a relation `(t, v)`
//!   with one row per step;
//! - range vectors stay unevaluated until a function decides what to compute
//!   over each window.
//!
//! Label names and values and regexes only reach SQL as query parameters.

mod aggregate;
mod binary;
mod extended;
mod functions;
mod go_text;
mod guard;
mod histogram;
mod info;
mod literals;
mod native;
mod native_arith;
mod native_fns;
mod native_ops;
mod native_rate;
mod native_sum;
mod native_windows;
mod selector;
mod series;
mod stages;

use promql_parser::parser::{self, AtModifier, Expr, LabelModifier, Offset, VectorSelector};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

use crate::matchers::SqlCondition;
use extended::RangeModifier;
pub use functions::EXACT_MEANS_MARKER;
use functions::Means;
use series::SeriesRel;

/// The bit pattern of Prometheus's staleness marker.
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

/// Why a query cannot be planned.
#[derive(Debug, Clone, Error, PartialEq)]
pub enum PlanError {
    /// Prometheus's `bad_data`: the query does not parse or is invalid.
    #[error("{0}")]
    BadData(String),
    /// Valid PromQL that Comet does not evaluate.
    #[error("{0}")]
    Unsupported(String),
}

fn bad(message: impl Into<String>) -> PlanError {
    PlanError::BadData(message.into())
}

/// Evaluation settings of the planner.
#[derive(Debug, Clone)]
pub struct PlanSettings {
    /// How far back a vector selector looks for the latest sample.
    pub lookback_delta: Duration,
    /// The step of a subquery written without one (`x[5m:]`).
    pub default_subquery_step: Duration,
    /// The metric names with native histogram samples (from
    /// `comet_schema::histogram_names`, filled in per query): selectors
    /// of other metrics plan for floats alone.
    pub histogram_metrics: Arc<BTreeSet<String>>,
    /// Those of `histogram_metrics` with no float samples: a selector of
    /// one of them by name plans for histograms alone.
    pub histogram_only_metrics: Arc<BTreeSet<String>>,
}

impl Default for PlanSettings {
    fn default() -> Self {
        Self {
            lookback_delta: Duration::from_secs(300),
            default_subquery_step: Duration::from_secs(60),
            histogram_metrics: Arc::default(),
            histogram_only_metrics: Arc::default(),
        }
    }
}

/// The evaluation times of a node: `start + k * step` for `k < n`, in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    pub start: i64,
    pub end: i64,
    pub step: i64,
}

impl Grid {
    pub fn instant(t: i64) -> Self {
        Self {
            start: t,
            end: t,
            step: 1,
        }
    }

    pub fn range(start: i64, end: i64, step: i64) -> Self {
        Self {
            start,
            end,
            step: step.max(1),
        }
    }

    /// Number of steps (0 when `end < start`).
    pub fn n(&self) -> i64 {
        if self.end < self.start {
            0
        } else {
            (self.end - self.start) / self.step + 1
        }
    }

    /// The same steps `by` ms later.
    pub(crate) fn shifted(&self, by: i64) -> Grid {
        Grid {
            start: self.start + by,
            end: self.end + by,
            step: self.step,
        }
    }

    /// SQL array of the step timestamps.
    pub(crate) fn steps(&self) -> String {
        format!(
            "range(toInt64({}), toInt64({}), toInt64({}))",
            self.start,
            self.start + self.n() * self.step,
            self.step
        )
    }

    /// A relation with one row `t` per step.
    fn steps_rel(&self) -> String {
        format!("SELECT arrayJoin({}) AS t", self.steps())
    }
}

/// What kind of value the statement's rows are.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanKind {
    /// Rows `(labels, t, v)`: a vector per step.
    Vector,
    /// Rows `(labels, t, v)` with empty labels: one scalar per step.
    Scalar,
    /// No statement: a string literal.
    String(String),
    /// Rows `(labels, t, v)` of raw samples (a range vector at an instant).
    Matrix,
    /// Rows `(labels, vals)`, one per series, sorted by labels: `vals[k]` is
    /// the value at `start + k * step` (NULL: none).
    Series { start: i64, step: i64 },
    /// Rows `(labels, t, v, is_h, <histogram parts>)` by labels and time:
    /// a vector per step whose samples are floats or, where `is_h`, native
    /// histograms (see [`native`]).
    Mixed,
    /// The rows of [`PlanKind::Mixed`] of raw samples: a range vector at
    /// an instant that may hold histograms.
    MixedMatrix,
}

/// A planned query: the SQL, its parameters and how to read the rows.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub sql: String,
    /// Values of the `{pN:String}` placeholders.
    pub params: Vec<(String, String)>,
    pub kind: PlanKind,
    /// Sort the instant vector naturally by these labels (descending when
    /// set), then by all labels.
    pub label_order: Option<(Vec<String>, bool)>,
    /// ClickHouse settings of the statement beyond the engine's own.
    pub settings: Vec<(&'static str, String)>,
    /// The plan to run instead when this one stops with
    /// [`EXACT_MEANS_MARKER`] (see [`Means`]).
    pub fallback: Option<Box<Plan>>,
    /// The PromQL planned, as its user wrote it: the statement's
    /// `log_comment`, so ClickHouse's `system.query_log` says which query
    /// a statement answered.
    pub promql: String,
}

impl Plan {
    /// The statement as a person can paste it into `clickhouse client`.
    pub fn explain(&self) -> String {
        let mut out = String::from("SET allow_experimental_time_series_aggregate_functions = 1;\n");
        for (name, value) in &self.settings {
            out.push_str(&format!("SET {name} = {value};\n"));
        }
        for (name, value) in &self.params {
            out.push_str(&format!(
                "SET param_{name} = {};\n",
                comet_schema::ddl::quote_string(value)
            ));
        }
        out.push_str(&self.sql);
        out.push_str(";\n");
        if let Some(exact) = &self.fallback {
            out.push_str("-- If a mean overflows (a sum beyond ±1.8e308), instead:\n");
            out.push_str(&exact.explain());
        }
        out
    }
}

/// Parses `query` with Prometheus's grammar.
pub fn parse(query: &str) -> Result<Expr, PlanError> {
    literals::check_utf8(query).map_err(bad)?;
    match guard::check_text(query) {
        Ok(()) => {}
        Err(guard::TextProblem::TooDeep) => {
            return Err(too_deep(format!(
                "may nest more than {} levels deep",
                guard::MAX_TEXT_DEPTH
            )));
        }
        Err(guard::TextProblem::DurationOutOfRange(number)) => {
            return Err(bad(format!("duration out of range: {number} seconds")));
        }
    }
    let expr = parser::parse(query).map_err(bad)?;
    let depth = guard::depth(&expr);
    if depth > guard::MAX_NESTING {
        guard::drop_iteratively(expr);
        return Err(too_deep(format!("nests {depth} levels deep")));
    }
    Ok(expr)
}

fn too_deep(how: String) -> PlanError {
    bad(format!(
        "the query {how}; Comet plans at most {} levels \
         (each parenthesis, call, aggregation, operand or subquery is a level)",
        guard::MAX_NESTING
    ))
}

/// Plans `query` over `grid` (the query's own start, end and step).
pub fn plan(query: &str, grid: Grid, settings: &PlanSettings) -> Result<Plan, PlanError> {
    let expr = parse(query)?;
    plan_expr(&expr, query, grid, settings)
}

/// Plans a parsed expression. A plan with means computes them fast and
/// carries the exact plan to run if one overflows. `promql` is the text
/// `expr` was parsed from (what the statements are labelled with).
pub fn plan_expr(
    expr: &Expr,
    promql: &str,
    grid: Grid,
    settings: &PlanSettings,
) -> Result<Plan, PlanError> {
    // Durations written with `step()` or `range()` take this query's.
    let resolved;
    let expr = if parser::has_duration_params(expr) {
        let mut copy = expr.clone();
        let step = if grid.start == grid.end { 0 } else { grid.step };
        copy.resolve_durations(
            Duration::from_millis(step.max(0) as u64),
            Duration::from_millis((grid.end - grid.start).max(0) as u64),
        )
        .map_err(bad)?;
        resolved = copy;
        &resolved
    } else {
        expr
    };
    let mut plan = plan_with(expr, grid, settings, Means::Fast)?;
    if plan.sql.contains(EXACT_MEANS_MARKER) {
        plan.fallback = Some(Box::new(Plan {
            promql: promql.to_string(),
            ..plan_with(expr, grid, settings, Means::Exact)?
        }));
    }
    plan.promql = promql.to_string();
    Ok(plan)
}

fn plan_with(
    expr: &Expr,
    grid: Grid,
    settings: &PlanSettings,
    means: Means,
) -> Result<Plan, PlanError> {
    let mut planner = Planner {
        params: SqlCondition::default(),
        lookback: millis(settings.lookback_delta),
        subquery_step: millis(settings.default_subquery_step),
        query_step: if grid.start == grid.end && grid.n() == 1 {
            0
        } else {
            grid.step
        },
        query_start: grid.start,
        query_end: grid.end,
        windows: false,
        drops_series: false,
        means,
        histogram_metrics: settings.histogram_metrics.clone(),
        histogram_only_metrics: settings.histogram_only_metrics.clone(),
    };
    let instant = grid.n() == 1 && grid.start == grid.end;
    let node = match planner.node(expr, &grid)? {
        // An instant query's answer is rows either way.
        Node::Series(rel) if instant => Node::Vector(planner.series_rows(&rel, &grid)),
        other => other,
    };
    let (sql, kind) = match node {
        // Every series-major relation's columns are `labels, vals, dn`.
        // The metric name is dropped (where `dn`) and the series sorted in
        // Comet, and so are the few series without a value that other
        // nodes leave: no further stage for ClickHouse to plan (each costs
        // its analyzer 1-2 ms) unless a node may empty many series.
        Node::Series(rel) => (
            if planner.drops_series {
                rel.sql_with_values()
            } else {
                rel.sql()
            },
            PlanKind::Series {
                start: grid.start,
                step: grid.step,
            },
        ),
        Node::Str(s) if instant => (String::new(), PlanKind::String(s)),
        Node::Str(_) => {
            return Err(bad(
                "invalid expression type \"string\" for range query, must be Scalar or instant Vector",
            ));
        }
        Node::Scalar(s) => (
            format!(
                "SELECT CAST([], 'Array(Tuple(String, String))') AS labels, t, v FROM ({}) ORDER BY t",
                planner.scalar_rel(s, &grid)
            ),
            PlanKind::Scalar,
        ),
        Node::Matrix(m) if instant && planner.raw_matrix_reads_histograms(&m) => {
            (planner.raw_mixed_matrix(&m, &grid)?, PlanKind::MixedMatrix)
        }
        Node::Matrix(m) if instant => (planner.raw_matrix(&m, &grid)?, PlanKind::Matrix),
        Node::Matrix(_) => {
            return Err(bad(
                "invalid expression type \"range vector\" for range query, must be Scalar or instant Vector",
            ));
        }
        Node::Mixed(rel) => (native::mixed_output(&rel), PlanKind::Mixed),
        Node::Vector(rel) => {
            let order = if instant { sort_order(expr) } else { None };
            let order_by = order.unwrap_or_else(|| "labels, t".to_string());
            (
                format!(
                    "SELECT if(dn = 1, {dropped}, labels) AS labels, t, v \
                     FROM ({rel}) ORDER BY {order_by}",
                    dropped = drop_name("labels")
                ),
                PlanKind::Vector,
            )
        }
    };
    let settings = if planner.windows {
        vec![("max_block_size", WINDOW_BLOCK_ROWS.to_string())]
    } else {
        Vec::new()
    };
    Ok(Plan {
        sql,
        params: planner.params.params,
        kind,
        label_order: if instant { label_order(expr) } else { None },
        settings,
        fallback: None,
        promql: String::new(),
    })
}

/// The ORDER BY of an instant query whose outermost function sorts.
fn sort_order(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Paren(p) => sort_order(&p.expr),
        Expr::Call(call) => match call.func.name {
            "sort" => Some("isNaN(v), v, labels".into()),
            "sort_desc" => Some("isNaN(v), v DESC, labels".into()),
            // Natural order is applied to the rows in Rust (see `label_order`).
            "sort_by_label" | "sort_by_label_desc" => Some("labels".into()),
            _ => None,
        },
        // topk/bottomk without grouping return their series best first.
        Expr::Aggregate(a) if a.modifier.is_none() => match a.op.to_string().as_str() {
            "topk" => Some("isNaN(v), v DESC, labels".into()),
            "bottomk" => Some("isNaN(v), v, labels".into()),
            _ => None,
        },
        _ => None,
    }
}

/// `sort_by_label(_desc)` at the top of an instant query: the labels to
/// sort by, naturally, and whether descending.
fn label_order(expr: &Expr) -> Option<(Vec<String>, bool)> {
    match expr {
        Expr::Paren(p) => label_order(&p.expr),
        Expr::Call(call) if call.func.name.starts_with("sort_by_label") => {
            let names = call
                .args
                .args
                .iter()
                .skip(1)
                .filter_map(|a| match a.as_ref() {
                    Expr::StringLiteral(s) => Some(s.val.clone()),
                    _ => None,
                })
                .collect();
            Some((names, call.func.name.ends_with("_desc")))
        }
        _ => None,
    }
}

/// A compiled node.
pub(crate) enum Node {
    Scalar(Scalar),
    /// A row relation `(labels, t, v, dn)`.
    Vector(String),
    /// A series-major relation `(labels, vals, dn)` (see [`series`]).
    Series(SeriesRel),
    /// A row relation `(labels, t, v, h, is_h, dn)` of floats and native
    /// histograms (see [`native`]).
    Mixed(String),
    Matrix(Matrix),
    Str(String),
}

/// A scalar on the grid.
#[derive(Debug, Clone)]
pub(crate) enum Scalar {
    Lit(f64),
    /// An SQL expression over the step column `t`.
    Expr(String),
    /// A relation `(t, v)` with one row per step.
    Rel(String),
}

/// A range vector, evaluated by the function that takes it.
#[derive(Debug, Clone)]
pub(crate) struct Matrix {
    pub source: Source,
    pub range: i64,
    pub offset: i64,
    pub at: Option<i64>,
    /// `anchored` or `smoothed`: the window reads past its range.
    pub modifier: RangeModifier,
}

impl Matrix {
    /// How far before a window's end its samples are read (ms).
    pub(crate) fn reach_back(&self, lookback: i64) -> i64 {
        self.range + self.modifier.before(lookback)
    }

    /// How far after a window's end its samples are read (ms).
    pub(crate) fn reach_forward(&self, lookback: i64) -> i64 {
        self.modifier.after(lookback)
    }
}

#[derive(Debug, Clone)]
pub(crate) enum Source {
    Selector(parser::VectorSelector),
    Subquery { expr: Box<Expr>, step: i64 },
}

pub(crate) struct Planner {
    pub params: SqlCondition,
    pub lookback: i64,
    pub subquery_step: i64,
    /// The outermost query's range, for `@ start()` and `@ end()`.
    pub query_start: i64,
    pub query_end: i64,
    /// The outermost query's step (0 for an instant query), for `step()`.
    pub query_step: i64,
    /// A node computes range functions over window slices of per-series
    /// arrays (see [`WINDOW_BLOCK_ROWS`]).
    pub windows: bool,
    /// A series-major node may leave a series without any value (a filter,
    /// `topk`, vector matching): the statement then drops such series
    /// before they leave ClickHouse.
    pub drops_series: bool,
    /// How means are computed.
    pub means: Means,
    /// See [`PlanSettings::histogram_metrics`].
    pub histogram_metrics: Arc<BTreeSet<String>>,
    /// See [`PlanSettings::histogram_only_metrics`].
    pub histogram_only_metrics: Arc<BTreeSet<String>>,
}

/// Rows per block for a statement with window slices: a series' windows
/// are cut into one array of arrays (samples x steps in the window), so a
/// block's memory grows with its series; 8 series at a time keep a
/// 10,000-series `predict_linear(x[1h])` far under 1 GiB, and on the
/// benchmark data ran window plans 1.5-2x faster than 64 (the windows stay
/// in the CPU's caches) and 3x faster than the default 65,536.
const WINDOW_BLOCK_ROWS: u64 = 8;

pub(crate) fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

pub(crate) fn offset_ms(offset: &Option<Offset>) -> i64 {
    match offset {
        None => 0,
        Some(Offset::Pos(d)) => millis(*d),
        Some(Offset::Neg(d)) => -millis(*d),
    }
}

/// A float as an SQL literal of type Float64.
pub(crate) fn lit(v: f64) -> String {
    if v.is_nan() {
        "nan".into()
    } else if v == f64::INFINITY {
        "inf".into()
    } else if v == f64::NEG_INFINITY {
        "-inf".into()
    } else {
        format!("toFloat64({v:?})")
    }
}

/// Prefix of an error message raised inside a statement by [`fail_if`].
pub const EXECUTION_ERROR_MARKER: &str = "COMET_EXECUTION_ERROR:";

/// A condition that is true, or fails the statement with the message (SQL
/// string expression) of the first of `checks` whose condition holds, so
/// the checks keep their order. `throwIf` takes only constant messages; a
/// failed cast carries one built from the data, and the engine turns it
/// back into an `execution` error.
pub(crate) fn fail_if(checks: &[(&str, &str)]) -> String {
    let branches: Vec<String> = checks
        .iter()
        .map(|(cond, message)| {
            // materialize: a constant message would be cast, and fail, at
            // planning time whatever the rows.
            format!("{cond}, toUInt8(concat('{EXECUTION_ERROR_MARKER}', materialize({message})))")
        })
        .collect();
    format!("multiIf({}, 0) = 0", branches.join(", "))
}

/// The labels of a `Map(name, value)` column as an array of (name, value)
/// sorted by name, the form every query result uses.
pub(crate) fn sorted_labels(map_column: &str) -> String {
    format!(
        "CAST(arraySort(arrayZip(mapKeys({map_column}), mapValues({map_column}))), \
         'Array(Tuple(String, String))')"
    )
}

/// The labels that go when the metric name is dropped: the name, and the
/// type and unit labels Prometheus 3 drops with it.
pub const DROPPED_WITH_NAME: [&str; 3] = ["__name__", "__type__", "__unit__"];

/// The label column `col` without [`DROPPED_WITH_NAME`].
pub(crate) fn drop_name(col: &str) -> String {
    let names: Vec<String> = DROPPED_WITH_NAME.iter().map(|n| format!("'{n}'")).collect();
    format!("arrayFilter(x -> x.1 NOT IN ({}), {col})", names.join(", "))
}

/// The value of label `name` (SQL string) in the label column `col`; ""
/// when the label is absent.
pub(crate) fn label_value(name: &str, col: &str) -> String {
    format!("arrayFirst(x -> x.1 = {name}, {col}).2")
}

impl Planner {
    /// A string as a query parameter placeholder.
    pub fn string(&mut self, value: &str) -> String {
        self.params.param(value)
    }

    /// An array of strings as a query parameter placeholder.
    pub fn strings(&mut self, values: &[String]) -> String {
        let parts: Vec<String> = values.iter().map(|v| self.string(v)).collect();
        format!("CAST([{}], 'Array(String)')", parts.join(", "))
    }

    pub(crate) fn at_ms(&self, at: &Option<AtModifier>) -> Option<i64> {
        match at {
            None => None,
            Some(AtModifier::Start) => Some(self.query_start),
            Some(AtModifier::End) => Some(self.query_end),
            Some(AtModifier::At(time)) => Some(system_time_ms(*time)),
        }
    }

    pub fn node(&mut self, expr: &Expr, grid: &Grid) -> Result<Node, PlanError> {
        match expr {
            Expr::Paren(p) => self.node(&p.expr, grid),
            Expr::NumberLiteral(n) => Ok(Node::Scalar(Scalar::Lit(n.val))),
            Expr::StringLiteral(s) => Ok(Node::Str(s.val.clone())),
            Expr::VectorSelector(vs) if RangeModifier::of(vs) == RangeModifier::Smoothed => {
                self.smoothed_selector(vs, grid)
            }
            Expr::VectorSelector(vs) if self.may_read_histograms(vs) => {
                let at = self.at_ms(&vs.at);
                Ok(Node::Mixed(self.mixed_selector(vs, at, grid, false)?))
            }
            Expr::VectorSelector(vs) => {
                let at = self.at_ms(&vs.at);
                if at.is_none() && grid.n() > 0 {
                    return Ok(Node::Series(self.series_selector(vs, grid)?));
                }
                Ok(Node::Vector(self.vector_selector(vs, at, grid, false)?))
            }
            Expr::MatrixSelector(ms) => Ok(Node::Matrix(Matrix {
                source: Source::Selector(ms.vs.clone()),
                range: millis(ms.range),
                offset: offset_ms(&ms.vs.offset),
                at: self.at_ms(&ms.vs.at),
                modifier: RangeModifier::of(&ms.vs),
            })),
            Expr::Subquery(sq) => Ok(Node::Matrix(Matrix {
                source: Source::Subquery {
                    expr: sq.expr.clone(),
                    step: sq.step.map(millis).unwrap_or(self.subquery_step),
                },
                range: millis(sq.range),
                offset: offset_ms(&sq.offset),
                at: self.at_ms(&sq.at),
                modifier: RangeModifier::Plain,
            })),
            // `+x` is x, name and all.
            Expr::Unary(u) if !u.is_neg() => self.node(&u.expr, grid),
            Expr::Unary(u) => match self.node(&u.expr, grid)? {
                Node::Scalar(s) => Ok(Node::Scalar(self.scalar_map(s, |x| format!("-({x})")))),
                Node::Series(rel) => Ok(Node::Series(self.series_map(&rel, "-x", "toUInt8(1)"))),
                Node::Vector(rel) => Ok(Node::Vector(format!(
                    "SELECT labels, t, -v AS v, toUInt8(1) AS dn FROM ({rel})"
                ))),
                Node::Mixed(rel) => Ok(Self::mixed_negation(&rel)),
                _ => Err(bad(
                    "unary expression only allowed on expressions of type scalar or instant vector",
                )),
            },
            Expr::Binary(b) => self.binary(b, grid),
            Expr::Aggregate(a) => self.aggregate(a, grid),
            Expr::Call(c) => self.call(c, grid),
            Expr::Extension(_) => Err(PlanError::Unsupported(
                "extension expressions are not supported".into(),
            )),
        }
    }

    /// A smoothed instant selector: interpolated from the samples a
    /// lookback delta either side. Kept out of [`Self::node`], whose stack
    /// frame every level of a nested query pays for.
    #[inline(never)]
    fn smoothed_selector(&mut self, vs: &VectorSelector, grid: &Grid) -> Result<Node, PlanError> {
        let m = Matrix {
            source: Source::Selector(vs.clone()),
            range: 0,
            offset: offset_ms(&vs.offset),
            at: self.at_ms(&vs.at),
            modifier: RangeModifier::Smoothed,
        };
        if self.may_read_histograms(vs) {
            return self.smoothed_mixed(&m, grid);
        }
        self.windowed(&m, grid, &extended::smoothed_instant(), Vec::new())
    }

    /// Compiles `expr`, which must be an instant vector.
    pub fn vector(&mut self, expr: &Expr, grid: &Grid) -> Result<String, PlanError> {
        let node = self.node(expr, grid)?;
        self.rows_of(node, expr, grid)
    }

    /// A compiled `expr` that must be an instant vector, as a row relation.
    pub(crate) fn rows_of(
        &self,
        node: Node,
        expr: &Expr,
        grid: &Grid,
    ) -> Result<String, PlanError> {
        match node {
            Node::Vector(rel) => Ok(rel),
            Node::Series(rel) => Ok(self.series_rows(&rel, grid)),
            // Histograms are left out where they are not evaluated yet.
            Node::Mixed(rel) => Ok(Self::float_rows(&rel)),
            _ => Err(bad(format!(
                "expected type instant vector, got {}",
                type_name(expr)
            ))),
        }
    }

    /// Compiles `expr`, which must be a scalar.
    pub fn scalar(&mut self, expr: &Expr, grid: &Grid) -> Result<Scalar, PlanError> {
        match self.node(expr, grid)? {
            Node::Scalar(s) => Ok(s),
            _ => Err(bad(format!(
                "expected type scalar, got {}",
                type_name(expr)
            ))),
        }
    }

    /// Compiles `expr`, which must be a range vector.
    pub fn matrix(&mut self, expr: &Expr, grid: &Grid) -> Result<Matrix, PlanError> {
        match self.node(expr, grid)? {
            Node::Matrix(m) => Ok(m),
            _ => Err(bad(format!(
                "expected type range vector, got {}",
                type_name(expr)
            ))),
        }
    }

    /// The labels of column `col` named in `names`.
    pub(crate) fn keep_labels(&mut self, names: &[String], col: &str) -> String {
        let arr = self.strings(names);
        format!("arrayFilter(x -> has({arr}, x.1), {col})")
    }

    /// The labels of column `col` not named in `names`.
    pub(crate) fn drop_labels(&mut self, names: &[String], col: &str) -> String {
        let arr = self.strings(names);
        format!("arrayFilter(x -> NOT has({arr}, x.1), {col})")
    }

    /// The labels `by (...)`/`on (...)` keep, or `without (...)`/
    /// `ignoring (...)` leave (which never include the metric name).
    pub(crate) fn grouping_labels(&mut self, modifier: &LabelModifier, col: &str) -> String {
        match modifier {
            LabelModifier::Include(ls) => self.keep_labels(&ls.labels, col),
            LabelModifier::Exclude(ls) => {
                let mut names = ls.labels.to_vec();
                names.push("__name__".into());
                self.drop_labels(&names, col)
            }
        }
    }

    /// Applies `f` to the SQL value of a scalar.
    pub fn scalar_map(&mut self, s: Scalar, f: impl Fn(&str) -> String) -> Scalar {
        match s {
            Scalar::Lit(v) => Scalar::Expr(f(&lit(v))),
            Scalar::Expr(e) => Scalar::Expr(f(&e)),
            Scalar::Rel(rel) => Scalar::Rel(format!("SELECT t, {} AS v FROM ({rel})", f("v"))),
        }
    }

    /// A scalar as a relation `(t, v)` over the grid.
    pub fn scalar_rel(&mut self, s: Scalar, grid: &Grid) -> String {
        match s {
            Scalar::Lit(v) => format!("SELECT t, {} AS v FROM ({})", lit(v), grid.steps_rel()),
            Scalar::Expr(e) => format!("SELECT t, toFloat64({e}) AS v FROM ({})", grid.steps_rel()),
            Scalar::Rel(rel) => rel,
        }
    }

    /// Makes a scalar usable as a column `name` next to a vector `rel`:
    /// returns the FROM clause (aliased `a`) and the SQL of the value.
    pub fn with_scalar(&mut self, rel: &str, s: Scalar, name: &str) -> (String, String) {
        self.with_scalar_as(rel, s, name, "a")
    }

    /// [`Self::with_scalar`] with the vector aliased `alias`.
    pub fn with_scalar_as(
        &mut self,
        rel: &str,
        s: Scalar,
        name: &str,
        alias: &str,
    ) -> (String, String) {
        match s {
            Scalar::Lit(v) => (format!("({rel}) AS {alias}"), lit(v)),
            Scalar::Expr(e) => (format!("({rel}) AS {alias}"), format!("toFloat64({e})")),
            Scalar::Rel(srel) => (
                format!(
                    "({rel}) AS {alias} INNER JOIN (SELECT t AS {name}_t, v AS {name} FROM ({srel})) AS {name}_s ON {alias}.t = {name}_s.{name}_t"
                ),
                name.to_string(),
            ),
        }
    }

    /// Replicates a relation computed at one instant onto every step of
    /// `grid` (for `@`).
    pub fn replicate(&self, rel: &str, grid: &Grid) -> String {
        format!(
            "SELECT labels, t, v, dn FROM (SELECT labels, v, dn FROM ({rel})) ARRAY JOIN {} AS t",
            grid.steps()
        )
    }
}

/// Milliseconds since the epoch, negative before it.
pub fn system_time_ms(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// Prometheus's name of an expression's type, for error messages.
pub(crate) fn type_name(expr: &Expr) -> &'static str {
    use promql_parser::parser::value::ValueType;
    match expr.value_type() {
        ValueType::Scalar => "scalar",
        ValueType::String => "string",
        ValueType::Vector => "instant vector",
        ValueType::Matrix => "range vector",
    }
}
