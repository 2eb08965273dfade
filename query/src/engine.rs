//! The PromQL engine: plans a query into one SQL statement, runs it on
//! ClickHouse and shapes the rows into Prometheus's value types.

use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::Duration;

use clickhouse::Row;
use comet_schema::Store;
use comet_schema::store::{StoreError, server_error_code};
use serde::Deserialize;
use thiserror::Error;
use tracing::{debug, warn};

use crate::plan::{self, Grid, Plan, PlanError, PlanKind, PlanSettings};
use crate::value::{
    CounterResetHint, Histogram, HistogramPoint, Point, QueryValue, Sample, Series, format_labels,
};

/// Why a query failed, in Prometheus's error classes.
#[derive(Debug, Error)]
pub enum QueryError {
    /// `bad_data`: the query is invalid.
    #[error("{0}")]
    BadData(String),
    /// `execution`: valid, but evaluation failed (e.g. many-to-many
    /// matching, duplicate label sets).
    #[error("{0}")]
    Execution(String),
    /// Valid PromQL that Comet does not evaluate yet.
    #[error("{0}")]
    Unsupported(String),
    /// ClickHouse failed or could not be reached.
    #[error("{0}")]
    Store(#[from] StoreError),
    /// `timeout`: the query ran longer than its timeout and was stopped.
    #[error("query timed out in expression evaluation")]
    Timeout,
    /// `canceled`: ClickHouse cancelled the query (e.g. `KILL QUERY`).
    #[error("query was canceled in expression evaluation")]
    Canceled,
    /// `execution`: more samples would be read than allowed.
    #[error("query processing would load too many samples into memory in query execution")]
    TooManySamples,
    /// `execution`: the result would have more series than allowed.
    #[error("query returned more than {0} series (limit query.max_series)")]
    TooManySeries(u64),
    /// `execution`: ClickHouse would need more memory than allowed.
    #[error("query processing would use more than {0} bytes of memory (limit query.max_memory)")]
    TooMuchMemory(u64),
}

impl From<PlanError> for QueryError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::BadData(m) => QueryError::BadData(m),
            PlanError::Unsupported(m) => QueryError::Unsupported(m),
        }
    }
}

/// A query's time range: `start..=end` every `step` ms; an instant query
/// is a range of one step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryRange {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

impl QueryRange {
    pub fn instant(t_ms: i64) -> Self {
        Self {
            start_ms: t_ms,
            end_ms: t_ms,
            step_ms: 0,
        }
    }

    fn is_instant(&self) -> bool {
        self.step_ms == 0
    }

    /// The evaluation steps of the range.
    pub fn grid(&self) -> Grid {
        if self.is_instant() {
            Grid::instant(self.start_ms)
        } else {
            Grid::range(self.start_ms, self.end_ms, self.step_ms)
        }
    }
}

/// Bounds on one query, enforced inside ClickHouse so a query over them
/// stops there too. `None` means unbounded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryLimits {
    /// Wall time; ClickHouse stops at `max_execution_time` and Comet kills
    /// the query if it is still running shortly after.
    pub timeout: Option<Duration>,
    /// Rows ClickHouse may read (samples and series rows).
    pub max_samples: Option<u64>,
    /// Series in the result.
    pub max_series: Option<u64>,
    /// Bytes of memory ClickHouse may use for the statement.
    pub max_memory_bytes: Option<u64>,
}

/// What one query cost, from ClickHouse's summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueryStats {
    pub rows_read: u64,
    pub bytes_read: u64,
    pub result_rows: u64,
}

/// Kills a ClickHouse query that is still running when its request is
/// dropped (client gone, timeout): nothing is left running on the server.
struct KillOnDrop {
    store: Store,
    query_id: String,
    armed: bool,
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let client = self.store.server_client();
        let query_id = std::mem::take(&mut self.query_id);
        runtime.spawn(async move {
            let kill = client
                .query("KILL QUERY WHERE query_id = ? ASYNC")
                .bind(query_id.as_str())
                .execute()
                .await;
            match kill {
                Ok(()) => debug!(%query_id, "killed an abandoned query"),
                Err(e) => warn!(%query_id, error = %e, "could not kill an abandoned query"),
            }
        });
    }
}

/// A query id unique to this process, so abandoned queries can be killed.
fn next_query_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let n = NEXT.fetch_add(1, AtomicOrdering::Relaxed);
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("comet-{}-{started:x}-{n}", std::process::id())
}

#[derive(Debug, Row, Deserialize)]
struct ResultRow {
    labels: Vec<(String, String)>,
    t: i64,
    v: f64,
}

/// One series of a series-major answer ([`PlanKind::Series`]).
#[derive(Debug, Row, Deserialize)]
struct SeriesRow {
    labels: Vec<(String, String)>,
    vals: Vec<Option<f64>>,
    /// 1 when the metric name is to be dropped.
    dn: u8,
}

/// One sample of a [`PlanKind::Mixed`] answer: a float, or where `is_h`
/// a native histogram in parts.
#[derive(Debug, Row, Deserialize)]
struct MixedRow {
    labels: Vec<(String, String)>,
    t: i64,
    v: f64,
    is_h: u8,
    schema: i8,
    zero_threshold: f64,
    zero_count: f64,
    count: f64,
    sum: f64,
    positive_index: Vec<i32>,
    positive_counts: Vec<f64>,
    negative_index: Vec<i32>,
    negative_counts: Vec<f64>,
    custom_values: Vec<f64>,
    reset_hint: i8,
}

impl MixedRow {
    /// The histogram, when the row is one.
    fn histogram(&mut self) -> Option<Histogram> {
        if self.is_h == 0 {
            return None;
        }
        let pairs = |index: &mut Vec<i32>, counts: &mut Vec<f64>| {
            std::mem::take(index)
                .into_iter()
                .zip(std::mem::take(counts))
                .collect()
        };
        Some(Histogram {
            schema: i32::from(self.schema),
            zero_threshold: self.zero_threshold,
            zero_count: self.zero_count,
            count: self.count,
            sum: self.sum,
            positive: pairs(&mut self.positive_index, &mut self.positive_counts),
            negative: pairs(&mut self.negative_index, &mut self.negative_counts),
            custom_values: std::mem::take(&mut self.custom_values),
            reset_hint: CounterResetHint::from_wire(i32::from(self.reset_hint)),
        })
    }
}

/// The rows of an answer, as the plan's kind reads them.
enum Rows {
    Points(Vec<ResultRow>),
    Series(Vec<SeriesRow>),
    Mixed(Vec<MixedRow>),
}

/// Fetches every row of `query` as `T`, with what the statement read.
async fn fetch_all<T>(
    query: clickhouse::query::Query,
) -> Result<(Vec<T>, QueryStats), clickhouse::error::Error>
where
    T: clickhouse::RowOwned + clickhouse::RowRead,
{
    let mut cursor = query.fetch::<T>()?;
    let mut rows = Vec::new();
    while let Some(row) = cursor.next().await? {
        rows.push(row);
    }
    let summary = cursor.summary();
    let stats = QueryStats {
        rows_read: summary.and_then(|s| s.read_rows()).unwrap_or_default(),
        bytes_read: summary.and_then(|s| s.read_bytes()).unwrap_or_default(),
        result_rows: rows.len() as u64,
    };
    Ok((rows, stats))
}

/// Plans and runs PromQL queries against one ClickHouse database.
#[derive(Clone, Debug)]
pub struct Engine {
    store: Store,
    settings: PlanSettings,
}

impl Engine {
    pub fn new(store: Store, settings: PlanSettings) -> Self {
        Self { store, settings }
    }

    /// The store queries run on.
    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn settings(&self) -> &PlanSettings {
        &self.settings
    }

    /// The SQL statement `query` becomes over `range`.
    pub async fn plan(&self, query: &str, range: QueryRange) -> Result<Plan, QueryError> {
        let settings = self.settings_now(&self.settings).await?;
        Ok(plan::plan(query, range.grid(), &settings)?)
    }

    /// `settings` with what the planner must know of the data now: the
    /// metric names that have native histograms.
    pub async fn settings_now(&self, settings: &PlanSettings) -> Result<PlanSettings, QueryError> {
        let known = comet_schema::histogram_names::current(&self.store).await?;
        Ok(PlanSettings {
            histogram_metrics: known.names,
            histogram_only_metrics: known.only_histograms,
            ..settings.clone()
        })
    }

    /// Evaluates `query` over `range`.
    pub async fn query(&self, query: &str, range: QueryRange) -> Result<QueryValue, QueryError> {
        let plan = self.plan(query, range).await?;
        self.execute(&plan, range).await
    }

    /// Runs a plan and shapes its rows.
    pub async fn execute(&self, plan: &Plan, range: QueryRange) -> Result<QueryValue, QueryError> {
        let limits = QueryLimits {
            timeout: Some(self.store.settings().query_timeout),
            ..QueryLimits::default()
        };
        Ok(self.execute_limited(plan, range, &limits).await?.0)
    }

    /// Runs a plan within `limits` and shapes its rows; also returns what
    /// the statement cost. A statement whose fast means overflow is run
    /// again as its exact fallback.
    pub async fn execute_limited(
        &self,
        plan: &Plan,
        range: QueryRange,
        limits: &QueryLimits,
    ) -> Result<(QueryValue, QueryStats), QueryError> {
        match (
            self.execute_statement(plan, range, limits).await,
            &plan.fallback,
        ) {
            (Err(Attempt::MeansOverflow), Some(exact)) => {
                debug!("a mean overflowed: running the exact statement");
                Ok(self.execute_statement(exact, range, limits).await?)
            }
            (done, _) => Ok(done?),
        }
    }

    async fn execute_statement(
        &self,
        plan: &Plan,
        range: QueryRange,
        limits: &QueryLimits,
    ) -> Result<(QueryValue, QueryStats), Attempt> {
        if let PlanKind::String(s) = &plan.kind {
            let value = QueryValue::String {
                t: range.end_ms,
                value: s.clone(),
            };
            return Ok((value, QueryStats::default()));
        }
        debug!(sql = %plan.sql, "running PromQL statement");
        let mut guard = KillOnDrop {
            store: self.store.clone(),
            query_id: next_query_id(),
            armed: true,
        };
        let mut q = self
            .store
            .client()
            .query(&plan.sql)
            .with_setting("allow_experimental_time_series_aggregate_functions", "1")
            .with_setting("query_id", guard.query_id.clone())
            // The summary (rows and bytes read) is complete only then.
            .with_setting("wait_end_of_query", "1")
            .with_setting("cancel_http_readonly_queries_on_client_close", "1")
            .with_setting("log_comment", log_comment(&plan.promql));
        if let Some(timeout) = limits.timeout {
            let seconds = timeout.as_secs_f64().max(0.001);
            q = q
                .with_setting("max_execution_time", format!("{seconds:.3}"))
                .with_setting("timeout_overflow_mode", "throw");
        }
        if let Some(max) = limits.max_samples {
            q = q
                .with_setting("max_rows_to_read", max.to_string())
                .with_setting("read_overflow_mode", "throw");
        }
        if let Some(max) = limits.max_memory_bytes {
            q = q.with_setting("max_memory_usage", max.to_string());
        }
        if let Some(max) = limits.max_series {
            // A series is one row, or at most one row per step.
            let rows = if matches!(plan.kind, PlanKind::Series { .. }) {
                max
            } else {
                max.saturating_mul(range.grid().n().max(1) as u64)
            };
            q = q
                .with_setting("max_result_rows", rows.to_string())
                .with_setting("result_overflow_mode", "throw");
        }
        for (name, value) in &plan.settings {
            q = q.with_setting(*name, value.clone());
        }
        for (name, value) in &plan.params {
            q = q.param(name, value);
        }
        let fetch = async {
            match plan.kind {
                PlanKind::Series { .. } => {
                    let (rows, stats) = fetch_all::<SeriesRow>(q).await?;
                    Ok::<_, clickhouse::error::Error>((Rows::Series(rows), stats))
                }
                PlanKind::Mixed | PlanKind::MixedMatrix => {
                    let (rows, stats) = fetch_all::<MixedRow>(q).await?;
                    Ok((Rows::Mixed(rows), stats))
                }
                _ => {
                    let (rows, stats) = fetch_all::<ResultRow>(q).await?;
                    Ok((Rows::Points(rows), stats))
                }
            }
        };
        // ClickHouse stops at max_execution_time; this bounds a server
        // that does not answer at all, and the guard kills the query.
        let grace = Duration::from_secs(1);
        let fetched = match limits.timeout {
            Some(timeout) => match tokio::time::timeout(timeout + grace, fetch).await {
                Ok(fetched) => fetched,
                Err(_) => return Err(QueryError::Timeout.into()),
            },
            None => fetch.await,
        };
        // ClickHouse answered: the statement is over either way.
        guard.armed = false;
        let (rows, stats) = fetched.map_err(|error| {
            if error.to_string().contains(plan::EXACT_MEANS_MARKER) {
                Attempt::MeansOverflow
            } else {
                Attempt::Failed(classify(error, limits))
            }
        })?;
        let mut value = shape(rows, &plan.kind, range.is_instant())?;
        if let (Some(max), QueryValue::Matrix(series)) = (limits.max_series, &value) {
            if series.len() as u64 > max {
                return Err(QueryError::TooManySeries(max).into());
            }
        }
        if let (Some((names, desc)), QueryValue::Vector(samples)) = (&plan.label_order, &mut value)
        {
            samples.sort_by(|a, b| {
                let key = |s: &Sample, n: &str| {
                    s.labels
                        .iter()
                        .find(|(k, _)| k == n)
                        .map(|(_, v)| v.clone())
                        .unwrap_or_default()
                };
                let mut ord = std::cmp::Ordering::Equal;
                for n in names {
                    ord = ord.then_with(|| natural_cmp(&key(a, n), &key(b, n)));
                }
                let ord = ord.then_with(|| {
                    let flat = |s: &Sample| {
                        s.labels
                            .iter()
                            .map(|(k, v)| format!("{k}\u{1}{v}"))
                            .collect::<Vec<_>>()
                            .join("\u{2}")
                    };
                    natural_cmp(&flat(a), &flat(b))
                });
                if *desc { ord.reverse() } else { ord }
            });
        }
        Ok((value, stats))
    }
}

/// The longest `log_comment` sent: ClickHouse refuses one longer than
/// its `max_query_size`, and a comment is for finding a query, not for
/// keeping it whole.
const LOG_COMMENT_MAX_BYTES: usize = 4096;

/// `promql` cut to [`LOG_COMMENT_MAX_BYTES`] on a character boundary.
fn log_comment(promql: &str) -> &str {
    let mut end = promql.len().min(LOG_COMMENT_MAX_BYTES);
    while !promql.is_char_boundary(end) {
        end -= 1;
    }
    &promql[..end]
}

/// How one statement of a plan ended, when it did not answer.
enum Attempt {
    /// A fast mean overflowed (see `plan::EXACT_MEANS_MARKER`).
    MeansOverflow,
    Failed(QueryError),
}

impl From<QueryError> for Attempt {
    fn from(e: QueryError) -> Self {
        Attempt::Failed(e)
    }
}

impl From<Attempt> for QueryError {
    fn from(a: Attempt) -> Self {
        match a {
            // Only an exact statement, which has no fast means, is run
            // without a fallback.
            Attempt::MeansOverflow => QueryError::Execution(
                "a mean overflowed in a statement without its exact form".into(),
            ),
            Attempt::Failed(e) => e,
        }
    }
}

/// A failed statement in Prometheus's error classes.
fn classify(error: clickhouse::error::Error, limits: &QueryLimits) -> QueryError {
    let text = error.to_string();
    if let Some(message) = built_message(&text) {
        return QueryError::Execution(message);
    }
    let code = server_error_code(&text);
    // MEMORY_LIMIT_EXCEEDED, from max_memory_usage
    if let (Some(241), Some(max)) = (code, limits.max_memory_bytes) {
        return QueryError::TooMuchMemory(max);
    }
    match (code, limits.max_series) {
        (Some(159), _) => QueryError::Timeout, // TIMEOUT_EXCEEDED
        (Some(158), _) => QueryError::TooManySamples, // TOO_MANY_ROWS
        (Some(394), _) => QueryError::Canceled, // QUERY_WAS_CANCELLED
        // TOO_MANY_ROWS_OR_BYTES, from max_result_rows
        (Some(396), Some(max)) => QueryError::TooManySeries(max),
        _ => QueryError::Store(StoreError::ClickHouse {
            operation: "PromQL query".into(),
            error,
        }),
    }
}

fn duplicate(labels: &[(String, String)]) -> QueryError {
    debug!(labels = %format_labels(labels), "duplicate label set in result");
    QueryError::Execution("vector cannot contain metrics with the same labelset".into())
}

/// Rows into a Prometheus value.
fn shape(rows: Rows, kind: &PlanKind, instant: bool) -> Result<QueryValue, QueryError> {
    match rows {
        Rows::Points(rows) => shape_points(rows, kind, instant),
        Rows::Series(rows) => match kind {
            PlanKind::Series { start, step } => shape_series(rows, *start, *step),
            _ => Err(QueryError::Execution(
                "series rows for a plan that is not series-major".into(),
            )),
        },
        Rows::Mixed(rows) => shape_mixed(rows, instant && *kind != PlanKind::MixedMatrix),
    }
}

/// Mixed rows (sorted by labels, then time) into a vector or a matrix of
/// floats and histograms.
fn shape_mixed(rows: Vec<MixedRow>, instant: bool) -> Result<QueryValue, QueryError> {
    if instant {
        let mut seen = std::collections::HashSet::with_capacity(rows.len());
        let mut out = Vec::with_capacity(rows.len());
        for mut r in rows {
            if !seen.insert(r.labels.clone()) {
                return Err(duplicate(&r.labels));
            }
            let histogram = r.histogram().map(Box::new);
            let v = if histogram.is_some() { 0.0 } else { r.v };
            out.push(Sample {
                labels: r.labels,
                point: Point { t: r.t, v },
                histogram,
            });
        }
        return Ok(QueryValue::Vector(out));
    }
    let mut out: Vec<Series> = Vec::new();
    let mut last_t = None;
    for mut r in rows {
        let same = out.last().is_some_and(|s| s.labels == r.labels);
        if same && last_t == Some(r.t) {
            return Err(duplicate(&r.labels));
        }
        last_t = Some(r.t);
        if !same {
            out.push(Series::floats(std::mem::take(&mut r.labels), Vec::new()));
        }
        let Some(series) = out.last_mut() else {
            continue;
        };
        match r.histogram() {
            Some(h) => series.histograms.push(HistogramPoint { t: r.t, h }),
            None => series.points.push(Point { t: r.t, v: r.v }),
        }
    }
    Ok(QueryValue::Matrix(out))
}

/// Series-major rows into a matrix sorted by labels, the metric name
/// dropped where the row says so. Rows whose labels became equal are one
/// series, as long as they never have a value at the same step.
fn shape_series(mut rows: Vec<SeriesRow>, start: i64, step: i64) -> Result<QueryValue, QueryError> {
    for row in rows.iter_mut().filter(|r| r.dn == 1) {
        row.labels
            .retain(|(name, _)| !plan::DROPPED_WITH_NAME.contains(&name.as_str()));
    }
    rows.sort_by(|a, b| a.labels.cmp(&b.labels));
    let mut out: Vec<Series> = Vec::with_capacity(rows.len());
    for row in rows {
        let points = row.vals.iter().enumerate().filter_map(|(k, v)| {
            v.map(|v| Point {
                t: start + k as i64 * step,
                v,
            })
        });
        match out.last_mut() {
            Some(s) if s.labels == row.labels => {
                let mut merged: Vec<Point> = s.points.drain(..).chain(points).collect();
                merged.sort_by_key(|p| p.t);
                if merged.windows(2).any(|w| w[0].t == w[1].t) {
                    return Err(duplicate(&row.labels));
                }
                s.points = merged;
            }
            _ => {
                let points: Vec<Point> = points.collect();
                if !points.is_empty() {
                    out.push(Series::floats(row.labels, points));
                }
            }
        }
    }
    Ok(QueryValue::Matrix(out))
}

/// Point rows into a Prometheus value.
fn shape_points(
    rows: Vec<ResultRow>,
    kind: &PlanKind,
    instant: bool,
) -> Result<QueryValue, QueryError> {
    match kind {
        PlanKind::Scalar if instant => {
            let row = rows.into_iter().next();
            Ok(QueryValue::Scalar(match row {
                Some(r) => Point { t: r.t, v: r.v },
                None => Point { t: 0, v: f64::NAN },
            }))
        }
        PlanKind::Vector if instant => {
            let mut seen = std::collections::HashSet::with_capacity(rows.len());
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                if !seen.insert(r.labels.clone()) {
                    return Err(duplicate(&r.labels));
                }
                out.push(Sample::float(r.labels, Point { t: r.t, v: r.v }));
            }
            Ok(QueryValue::Vector(out))
        }
        _ => {
            // Rows come sorted by labels then time.
            let raw = matches!(kind, PlanKind::Matrix);
            let mut out: Vec<Series> = Vec::new();
            for r in rows {
                match out.last_mut() {
                    Some(s) if s.labels == r.labels => {
                        if !raw && s.points.last().is_some_and(|p| p.t == r.t) {
                            return Err(duplicate(&r.labels));
                        }
                        s.points.push(Point { t: r.t, v: r.v });
                    }
                    _ => out.push(Series::floats(r.labels, vec![Point { t: r.t, v: r.v }])),
                }
            }
            Ok(QueryValue::Matrix(out))
        }
    }
}

/// The message a statement built from its data (a failed cast of
/// `EXECUTION_ERROR_MARKER` + message), unquoted. Only a failed cast
/// counts: other errors may quote the statement, marker included.
fn built_message(text: &str) -> Option<String> {
    let cast = format!("Cannot parse string '{}", plan::EXECUTION_ERROR_MARKER);
    let start = text.find(&cast)? + cast.len();
    let rest = &text[start..];
    let end = rest.find("' as UInt8").unwrap_or(rest.len());
    let mut out = String::with_capacity(end);
    let mut chars = rest[..end].chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Natural order: runs of digits compare as numbers (`cpu2` < `cpu10`).
fn natural_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    let (mut x, mut y) = (a.as_bytes(), b.as_bytes());
    loop {
        match (x.first(), y.first()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(c), Some(d)) if c.is_ascii_digit() && d.is_ascii_digit() => {
                let n = x.iter().take_while(|c| c.is_ascii_digit()).count();
                let m = y.iter().take_while(|c| c.is_ascii_digit()).count();
                let (dx, dy) = (&x[..n], &y[..m]);
                let tx = dx.iter().skip_while(|c| **c == b'0').count();
                let ty = dy.iter().skip_while(|c| **c == b'0').count();
                let ord = tx
                    .cmp(&ty)
                    .then_with(|| dx[n - tx..].cmp(&dy[m - ty..]))
                    .then_with(|| n.cmp(&m));
                if ord != Ordering::Equal {
                    return ord;
                }
                x = &x[n..];
                y = &y[m..];
            }
            (Some(c), Some(d)) => {
                if c != d {
                    return c.cmp(d);
                }
                x = &x[1..];
                y = &y[1..];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::natural_cmp;
    use std::cmp::Ordering;

    #[test]
    fn messages_built_in_a_statement_come_back_whole() {
        let text = "Code: 6. DB::Exception: Cannot parse string \
            'COMET_EXECUTION_ERROR:found duplicate series for the match group {a=\"it\\'s\"} on the right' \
            as UInt8: syntax error at begin of string. (CANNOT_PARSE_TEXT)";
        assert_eq!(
            super::built_message(text).as_deref(),
            Some("found duplicate series for the match group {a=\"it's\"} on the right")
        );
        assert_eq!(super::built_message("Code: 159. timeout"), None);
    }

    #[test]
    fn natural_order() {
        assert_eq!(natural_cmp("cpu2", "cpu10"), Ordering::Less);
        assert_eq!(natural_cmp("1.11.3", "1.2.3"), Ordering::Greater);
        assert_eq!(natural_cmp("4m5", "4m600"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    }
}
