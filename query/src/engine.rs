//! The PromQL engine: plans a query into one SQL statement, runs it on
//! ClickHouse and shapes the rows into Prometheus's value types.

use clickhouse::Row;
use comet_schema::Store;
use comet_schema::store::StoreError;
use serde::Deserialize;
use thiserror::Error;
use tracing::debug;

use crate::plan::{self, Grid, Plan, PlanError, PlanKind, PlanSettings};
use crate::value::{Point, QueryValue, Sample, Series, format_labels};

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

#[derive(Debug, Row, Deserialize)]
struct ResultRow {
    labels: Vec<(String, String)>,
    t: i64,
    v: f64,
}

/// Errors raised inside the statement with `throwIf`, by their message.
const EXECUTION_ERRORS: &[&str] = &[
    "many-to-many matching not allowed",
    "multiple matches for labels",
];

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

    pub fn settings(&self) -> &PlanSettings {
        &self.settings
    }

    /// The SQL statement `query` becomes over `range`.
    pub fn plan(&self, query: &str, range: QueryRange) -> Result<Plan, QueryError> {
        Ok(plan::plan(query, range.grid(), &self.settings)?)
    }

    /// Evaluates `query` over `range`.
    pub async fn query(&self, query: &str, range: QueryRange) -> Result<QueryValue, QueryError> {
        let plan = self.plan(query, range)?;
        self.execute(&plan, range).await
    }

    /// Runs a plan and shapes its rows.
    pub async fn execute(&self, plan: &Plan, range: QueryRange) -> Result<QueryValue, QueryError> {
        if let PlanKind::String(s) = &plan.kind {
            return Ok(QueryValue::String {
                t: range.end_ms,
                value: s.clone(),
            });
        }
        debug!(sql = %plan.sql, "running PromQL statement");
        let mut q = self
            .store
            .client()
            .query(&plan.sql)
            .with_setting("allow_experimental_time_series_aggregate_functions", "1");
        for (name, value) in &plan.params {
            q = q.param(name, value);
        }
        let rows: Vec<ResultRow> = match self.store.fetch_all(q, "PromQL query").await {
            Ok(rows) => rows,
            Err(e) => {
                let text = e.to_string();
                if let Some(known) = EXECUTION_ERRORS.iter().find(|m| text.contains(*m)) {
                    let message = text
                        .split("DB::Exception: ")
                        .nth(1)
                        .and_then(|m| m.split(": while executing").next())
                        .unwrap_or(known);
                    let message = message.split(" (FUNCTION_THROW").next().unwrap_or(message);
                    return Err(QueryError::Execution(message.trim().to_string()));
                }
                return Err(QueryError::Store(e));
            }
        };
        let mut value = shape(rows, &plan.kind, range.is_instant())?;
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
        Ok(value)
    }
}

/// Rows into a Prometheus value.
fn shape(rows: Vec<ResultRow>, kind: &PlanKind, instant: bool) -> Result<QueryValue, QueryError> {
    let duplicate = |labels: &[(String, String)]| {
        debug!(labels = %format_labels(labels), "duplicate label set in result");
        QueryError::Execution("vector cannot contain metrics with the same labelset".into())
    };
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
                out.push(Sample {
                    labels: r.labels,
                    point: Point { t: r.t, v: r.v },
                });
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
                    _ => out.push(Series {
                        labels: r.labels,
                        points: vec![Point { t: r.t, v: r.v }],
                    }),
                }
            }
            Ok(QueryValue::Matrix(out))
        }
    }
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
    fn natural_order() {
        assert_eq!(natural_cmp("cpu2", "cpu10"), Ordering::Less);
        assert_eq!(natural_cmp("1.11.3", "1.2.3"), Ordering::Greater);
        assert_eq!(natural_cmp("4m5", "4m600"), Ordering::Less);
        assert_eq!(natural_cmp("a", "a"), Ordering::Equal);
    }
}
