//! Runs PromQL test scripts against the real thing: `load` goes through
//! the caller's [`Loader`] (the ingest writer in `comet promqltest`) into a
//! fresh ClickHouse database per file, `eval` goes through the planner and
//! ClickHouse, and results are judged as upstream's `promqltest` judges them.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use comet_schema::ddl::{DATA_TABLES, quote_identifier};
use comet_schema::migrate::{latest_version, migrate};
use comet_schema::model::STALE_NAN_BITS;
use comet_schema::{
    Labels, NameValidation, Sample, SchemaOptions, Store, StoreSettings, TimeSeries, Topology,
};
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use thiserror::Error;

use super::{Command, Eval, EvalTime, Expect, Expected, Load, MessageMatch, PointValue};
use crate::engine::{Engine, QueryError, QueryRange};
use crate::plan::{self, PlanSettings};
use crate::value::{Point, QueryValue, format_labels};

/// Which part of the suite a case belongs to (see the suite's README).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tier {
    StableFloat,
    NativeHistogram,
    Experimental,
}

impl Tier {
    pub fn name(self) -> &'static str {
        match self {
            Tier::StableFloat => "stable-float",
            Tier::NativeHistogram => "native-histogram",
            Tier::Experimental => "experimental",
        }
    }
}

/// Files of the newer/experimental syntax tier.
const EXPERIMENTAL_FILES: &[&str] = &[
    "duration_expression",
    "extended_vectors",
    "fill-modifier",
    "info",
    "limit",
    "start_timestamps",
    "type_and_unit",
];

/// Why a case failed.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureKind {
    /// The `promql-parser` crate rejects the query.
    Parse,
    /// The engine does not support the query yet.
    Unsupported,
    /// ClickHouse rejected or failed the statement.
    Sql,
    /// The result differs from the expected one.
    Mismatch,
}

#[derive(Debug, Clone)]
pub struct CaseFailure {
    pub line: usize,
    pub query: String,
    pub tier: Tier,
    pub kind: FailureKind,
    pub reason: String,
}

/// Results of one file.
#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub file: String,
    pub passed: usize,
    pub failed: usize,
    /// Passed and total cases per tier.
    pub tiers: Vec<(Tier, usize, usize)>,
    pub failures: Vec<CaseFailure>,
}

impl FileReport {
    fn count(&mut self, tier: Tier, passed: bool) {
        if passed {
            self.passed += 1;
        } else {
            self.failed += 1;
        }
        match self.tiers.iter_mut().find(|(t, _, _)| *t == tier) {
            Some((_, p, n)) => {
                *p += passed as usize;
                *n += 1;
            }
            None => self.tiers.push((tier, passed as usize, 1)),
        }
    }
}

#[derive(Debug, Error)]
pub enum RunError {
    #[error("cannot read {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("{path}: {error}")]
    Script {
        path: String,
        error: super::ScriptError,
    },
    #[error("ClickHouse: {0}")]
    Store(String),
}

/// Where a script's `load` blocks go. `comet promqltest` loads through the
/// ingest writer, the path every source takes (the query crate does not
/// depend on ingest, so the caller provides it).
pub trait Loader: Send {
    /// Stores `series` and returns once they are in ClickHouse.
    fn load(&mut self, series: Vec<TimeSeries>) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the loader after everything is stored (before a `clear`, whose
    /// tables are emptied under it, and at the end of a file).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Runs script files against one ClickHouse server.
pub struct Runner {
    /// Where ClickHouse is; each file gets its own database.
    pub store: StoreSettings,
    pub plan: PlanSettings,
}

/// The data loaded since the last `clear`, to classify cases.
#[derive(Default)]
struct Loaded {
    /// Label sets (sorted, with `__name__`) of series with native
    /// histogram samples.
    histogram_series: HashSet<Vec<(String, String)>>,
}

impl Runner {
    /// Runs one script; `open` makes a loader for the file's database.
    pub async fn run_file<L: Loader>(
        &self,
        path: &Path,
        open: impl Fn(&Store) -> Result<L, String>,
    ) -> Result<FileReport, RunError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|error| RunError::Read {
            path: display.clone(),
            error,
        })?;
        let commands = super::parse_script(&text).map_err(|error| RunError::Script {
            path: display.clone(),
            error,
        })?;
        let stem = path
            .file_stem()
            .map(|s| s.to_string_lossy().to_string())
            .unwrap_or_default();
        let file_tier = if EXPERIMENTAL_FILES.contains(&stem.as_str()) {
            Tier::Experimental
        } else if stem == "native_histograms" {
            Tier::NativeHistogram
        } else {
            Tier::StableFloat
        };
        let database = format!(
            "comet_promqltest_{}_{}",
            stem.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            std::process::id()
        );
        let store = self.fresh_database(&database).await?;
        let engine = Engine::new(store.clone(), self.plan.clone());
        let mut loader = open(&store).map_err(RunError::Store)?;
        let mut loaded = Loaded::default();
        let mut report = FileReport {
            file: path
                .file_name()
                .map(|s| s.to_string_lossy().to_string())
                .unwrap_or(display),
            ..Default::default()
        };
        for command in &commands {
            match command {
                Command::Load(load) => {
                    let series = series_of(load, &mut loaded).map_err(RunError::Store)?;
                    if let Err(reason) = loader.load(series).await {
                        return Err(RunError::Store(format!(
                            "load at line {}: {reason}",
                            load.line
                        )));
                    }
                }
                Command::Clear => {
                    loader.close().await;
                    for table in DATA_TABLES {
                        store
                            .execute(&format!(
                                "TRUNCATE TABLE {}.{}",
                                quote_identifier(&database),
                                quote_identifier(table.name)
                            ))
                            .await
                            .map_err(|e| RunError::Store(e.to_string()))?;
                    }
                    // A new loader: the old one may remember which series
                    // rows it wrote.
                    loader = open(&store).map_err(RunError::Store)?;
                    loaded = Loaded::default();
                }
                Command::Eval(eval) => {
                    let tier = case_tier(file_tier, eval, &loaded);
                    match judge(&engine, eval).await {
                        Ok(()) => report.count(tier, true),
                        Err((kind, reason)) => {
                            report.count(tier, false);
                            report.failures.push(CaseFailure {
                                line: eval.line,
                                query: eval.query.clone(),
                                tier,
                                kind,
                                reason,
                            });
                        }
                    }
                }
            }
        }
        loader.close().await;
        let _ = store
            .execute(&format!(
                "DROP DATABASE IF EXISTS {}",
                quote_identifier(&database)
            ))
            .await;
        report.tiers.sort();
        Ok(report)
    }

    /// Drops and recreates `database` on the runner's server, migrated to
    /// the latest schema without retention (test data is from 1970).
    pub async fn fresh_database(&self, database: &str) -> Result<Store, RunError> {
        let settings = StoreSettings {
            database: database.to_string(),
            ..self.store.clone()
        };
        let store = Store::new(settings).map_err(|e| RunError::Store(e.to_string()))?;
        store
            .execute(&format!(
                "DROP DATABASE IF EXISTS {}",
                quote_identifier(database)
            ))
            .await
            .map_err(|e| RunError::Store(e.to_string()))?;
        // No retention: the scripts' samples are from 1970.
        let options = SchemaOptions {
            database: database.to_string(),
            retention: None,
            topology: Topology::SingleNode,
        };
        migrate(&store, &options, latest_version())
            .await
            .map_err(|e| RunError::Store(e.to_string()))?;
        Ok(store)
    }
}

/// The series a `load` block stores (the `0+10x5` notation expanded), for
/// other readers of the notation such as rule unit tests.
pub fn load_series(load: &Load) -> Result<Vec<TimeSeries>, String> {
    series_of(load, &mut Loaded::default())
}

/// The series of a `load` block, one per label set: a series listed twice
/// is one series, and a later point at the same time replaces the earlier
/// one, as in Prometheus's test storage. Notes which metrics are native
/// histograms (not loaded) in `loaded`.
fn series_of(load: &Load, loaded: &mut Loaded) -> Result<Vec<TimeSeries>, String> {
    let step = load.interval.as_millis() as i64;
    let mut merged: Vec<MergedSeries> = Vec::new();
    for series in &load.series {
        if series.start_timestamps {
            continue;
        }
        if load.with_nhcb
            && let Some((_, name)) = series.labels.iter().find(|(n, _)| n == "__name__")
            && let Some(base) = name.strip_suffix("_bucket")
        {
            // Also loaded as a native histogram with custom buckets.
            let mut labels: Vec<(String, String)> = series
                .labels
                .iter()
                .filter(|(n, _)| n != "le")
                .map(|(n, v)| match n.as_str() {
                    "__name__" => (n.clone(), base.to_string()),
                    _ => (n.clone(), v.clone()),
                })
                .collect();
            labels.sort();
            loaded.histogram_series.insert(labels);
        }
        let mut key = series.labels.clone();
        key.sort();
        let at = match merged.iter().position(|(k, _)| *k == key) {
            Some(i) => i,
            None => {
                merged.push((key, Default::default()));
                merged.len() - 1
            }
        };
        for (i, point) in series.points.iter().enumerate() {
            let timestamp_ms = i as i64 * step;
            match point {
                Some(PointValue::Float(v)) => {
                    merged[at].1.insert(timestamp_ms, *v);
                }
                Some(PointValue::Stale) => {
                    merged[at]
                        .1
                        .insert(timestamp_ms, f64::from_bits(STALE_NAN_BITS));
                }
                Some(PointValue::Histogram { .. }) => {
                    loaded.histogram_series.insert(merged[at].0.clone());
                }
                None => {}
            }
        }
    }
    let mut out = Vec::with_capacity(merged.len());
    for (pairs, points) in merged {
        if points.is_empty() {
            continue;
        }
        let labels = Labels::new(
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            NameValidation::Utf8,
        )
        .map_err(|e| format!("series {pairs:?}: {e}"))?;
        let samples = points
            .into_iter()
            .map(|(timestamp_ms, value)| Sample {
                timestamp_ms,
                value,
            })
            .collect();
        out.push(TimeSeries { labels, samples });
    }
    Ok(out)
}

/// A loaded series: its sorted labels and its points by time.
type MergedSeries = (Vec<(String, String)>, std::collections::BTreeMap<i64, f64>);

fn case_tier(file_tier: Tier, eval: &Eval, loaded: &Loaded) -> Tier {
    if file_tier != Tier::StableFloat {
        return file_tier;
    }
    let expects_histogram = match &eval.expected {
        Expected::Series(series) => series.iter().any(|s| {
            s.points
                .iter()
                .any(|p| matches!(p, Some(PointValue::Histogram { .. })))
        }),
        Expected::Scalar(_) => false,
    };
    let reads_histograms = loaded
        .histogram_series
        .iter()
        .any(|labels| may_read_series(&eval.query, labels));
    if expects_histogram || reads_histograms {
        Tier::NativeHistogram
    } else {
        Tier::StableFloat
    }
}

/// Whether a selector of `query` matches the series `labels`. Falls back
/// to a word search for its metric name when the query does not parse.
fn may_read_series(query: &str, labels: &[(String, String)]) -> bool {
    struct Reads<'a> {
        labels: &'a [(String, String)],
        found: bool,
    }
    impl Reads<'_> {
        fn value(&self, name: &str) -> &str {
            self.labels
                .iter()
                .find(|(n, _)| n == name)
                .map_or("", |(_, v)| v.as_str())
        }
        fn accepts(&self, group: &[Matcher]) -> bool {
            group.iter().all(|m| m.is_match(self.value(&m.name)))
        }
    }
    impl ExprVisitor for Reads<'_> {
        type Error = std::convert::Infallible;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, Self::Error> {
            let vs = match expr {
                Expr::VectorSelector(vs) => vs,
                Expr::MatrixSelector(ms) => &ms.vs,
                _ => return Ok(true),
            };
            let named = vs
                .name
                .as_deref()
                .is_none_or(|n| n == self.value("__name__"));
            let matchers = &vs.matchers;
            self.found |= named
                && if matchers.or_matchers.is_empty() {
                    self.accepts(&matchers.matchers)
                } else {
                    matchers.or_matchers.iter().any(|g| self.accepts(g))
                };
            Ok(!self.found)
        }
    }
    match promql_parser::parser::parse(query) {
        Ok(expr) => {
            let mut reads = Reads {
                labels,
                found: false,
            };
            let _ = walk_expr(&mut reads, &expr);
            reads.found
        }
        Err(_) => labels
            .iter()
            .find(|(n, _)| n == "__name__")
            .is_some_and(|(_, name)| contains_word(query, name)),
    }
}

fn contains_word(text: &str, word: &str) -> bool {
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        let is_ident =
            |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == ':');
        !is_ident(before) && !is_ident(after)
    })
}

fn ms(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Runs one `eval` and compares as upstream does.
async fn judge(engine: &Engine, eval: &Eval) -> Result<(), (FailureKind, String)> {
    let range = match eval.time {
        EvalTime::Instant { at } => QueryRange::instant(ms(at)),
        EvalTime::Range { start, end, step } => QueryRange {
            start_ms: ms(start),
            end_ms: ms(end),
            step_ms: ms(step),
        },
    };
    let expected_failure = eval.expects.iter().find_map(|e| match e {
        Expect::Fail(m) => Some(m.clone()),
        _ => None,
    });
    if let Err(e) = plan::parse(&eval.query)
        && expected_failure.is_none()
    {
        return Err((FailureKind::Parse, e.to_string()));
    }
    let result = engine.query(&eval.query, range).await;
    if let Some(message) = expected_failure {
        return match result {
            Ok(_) => Err((
                FailureKind::Mismatch,
                "expected an error, got a result".into(),
            )),
            Err(QueryError::BadData(m)) | Err(QueryError::Execution(m)) => match message {
                None => Ok(()),
                Some(MessageMatch::Exact(want)) if m == want => Ok(()),
                Some(MessageMatch::Regex(re))
                    if regex::Regex::new(&re).is_ok_and(|r| r.is_match(&m)) =>
                {
                    Ok(())
                }
                Some(want) => Err((
                    FailureKind::Mismatch,
                    format!("error {m:?} does not match expected {want:?}"),
                )),
            },
            Err(e) => Err(classify(e)),
        };
    }
    let value = result.map_err(classify)?;
    compare(eval, range, value).map_err(|m| (FailureKind::Mismatch, m))
}

fn classify(e: QueryError) -> (FailureKind, String) {
    match e {
        QueryError::Unsupported(m) => (FailureKind::Unsupported, m),
        QueryError::Store(e) => (FailureKind::Sql, e.to_string()),
        other => (FailureKind::Mismatch, format!("unexpected error: {other}")),
    }
}

/// Upstream's float comparison: equal within a relative epsilon of 1e-6,
/// NaN equal to NaN.
pub fn almost_equal(a: f64, b: f64) -> bool {
    const EPSILON: f64 = 1e-6;
    const MIN_NORMAL: f64 = f64::MIN_POSITIVE;
    if a.is_nan() && b.is_nan() {
        return true;
    }
    if a == b {
        return true;
    }
    let abs_sum = a.abs() + b.abs();
    let diff = (a - b).abs();
    if a == 0.0 || b == 0.0 || abs_sum < MIN_NORMAL {
        return diff < EPSILON * MIN_NORMAL;
    }
    diff / abs_sum.min(f64::MAX) < EPSILON
}

fn expected_float(p: &PointValue) -> Result<f64, String> {
    match p {
        PointValue::Float(v) => Ok(*v),
        PointValue::Stale => Ok(f64::from_bits(STALE_NAN_BITS)),
        PointValue::Histogram { spec, .. } => Err(format!("expected a native histogram {spec}")),
    }
}

fn sorted(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut l = labels.to_vec();
    l.sort();
    l
}

/// A wrong number of result series, listing what came.
fn count_mismatch(want: usize, got: impl ExactSizeIterator<Item = String>) -> String {
    let n = got.len();
    format!(
        "expected {want} series, got {n}: {}",
        got.collect::<Vec<_>>().join("; ")
    )
}

fn compare(eval: &Eval, range: QueryRange, value: QueryValue) -> Result<(), String> {
    if let Some(want) = eval.expects.iter().find_map(|e| match e {
        Expect::String(s) => Some(s),
        _ => None,
    }) {
        return match value {
            QueryValue::String { value, .. } if &value == want => Ok(()),
            other => Err(format!("expected string {want:?}, got {other:?}")),
        };
    }
    match (&eval.expected, value) {
        (Expected::Scalar(p), QueryValue::Scalar(got)) => {
            let want = expected_float(p)?;
            if almost_equal(want, got.v) {
                Ok(())
            } else {
                Err(format!("expected scalar {want}, got {}", got.v))
            }
        }
        (Expected::Scalar(_), other) => {
            Err(format!("expected a scalar, got {}", other.type_name()))
        }
        (Expected::Series(want), QueryValue::Vector(got)) => {
            if want.len() != got.len() {
                return Err(count_mismatch(
                    want.len(),
                    got.iter()
                        .map(|s| format!("{} {}", format_labels(&s.labels), s.point.v)),
                ));
            }
            for (i, w) in want.iter().enumerate() {
                let labels = sorted(&w.labels);
                let found = got.iter().position(|s| s.labels == labels);
                let Some(pos) = found else {
                    return Err(format!(
                        "series {} missing from the result",
                        format_labels(&labels)
                    ));
                };
                if eval.is_ordered() && pos != i {
                    return Err(format!(
                        "series {} at position {pos}, expected {i}",
                        format_labels(&labels)
                    ));
                }
                let want_v = match w.points.first() {
                    Some(Some(p)) => expected_float(p)?,
                    _ => return Err("expected series without a value".into()),
                };
                let got_v = got[pos].point.v;
                if !almost_equal(want_v, got_v) {
                    return Err(format!(
                        "series {}: expected {want_v}, got {got_v}",
                        format_labels(&labels)
                    ));
                }
            }
            Ok(())
        }
        (Expected::Series(want), QueryValue::Matrix(got)) => {
            let step = if range.step_ms == 0 { 1 } else { range.step_ms };
            if want.len() != got.len() {
                return Err(count_mismatch(
                    want.len(),
                    got.iter()
                        .map(|s| format!("{} {:?}", format_labels(&s.labels), s.points)),
                ));
            }
            for w in want {
                let labels = sorted(&w.labels);
                let Some(series) = got.iter().find(|s| s.labels == labels) else {
                    return Err(format!(
                        "series {} missing from the result",
                        format_labels(&labels)
                    ));
                };
                let expected_points: Vec<Point> = if range.step_ms == 0 {
                    // An instant query of a range vector: raw samples; the
                    // script lists their values in order.
                    w.points
                        .iter()
                        .flatten()
                        .zip(series.points.iter())
                        .map(|(p, g)| expected_float(p).map(|v| Point { t: g.t, v }))
                        .collect::<Result<_, _>>()?
                } else {
                    w.points
                        .iter()
                        .enumerate()
                        .filter_map(|(i, p)| p.as_ref().map(|p| (i, p)))
                        .map(|(i, p)| {
                            expected_float(p).map(|v| Point {
                                t: range.start_ms + i as i64 * step,
                                v,
                            })
                        })
                        .collect::<Result<_, _>>()?
                };
                let want_count = w.points.iter().flatten().count();
                if want_count != series.points.len() || expected_points.len() != series.points.len()
                {
                    return Err(format!(
                        "series {}: expected {} points, got {:?}",
                        format_labels(&labels),
                        want_count,
                        series.points
                    ));
                }
                for (e, g) in expected_points.iter().zip(series.points.iter()) {
                    if e.t != g.t || !almost_equal(e.v, g.v) {
                        return Err(format!(
                            "series {}: expected {:?}, got {:?}",
                            format_labels(&labels),
                            expected_points,
                            series.points
                        ));
                    }
                }
            }
            Ok(())
        }
        (Expected::Series(want), QueryValue::Scalar(p)) => {
            // A range query of a scalar is a matrix with one series `{}`.
            match want.as_slice() {
                [w] if w.labels.is_empty() => match w.points.first() {
                    Some(Some(e)) if almost_equal(expected_float(e)?, p.v) => Ok(()),
                    _ => Err(format!("expected {:?}, got scalar {}", w.points, p.v)),
                },
                _ => Err(format!("expected series, got scalar {}", p.v)),
            }
        }
        (_, other) => Err(format!("unexpected result type {}", other.type_name())),
    }
}

/// The summary line for a set of reports: `N passed, M failed`.
pub fn summary(reports: &[FileReport]) -> String {
    let passed: usize = reports.iter().map(|r| r.passed).sum();
    let failed: usize = reports.iter().map(|r| r.failed).sum();
    format!("{passed} passed, {failed} failed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_float_comparison() {
        assert!(almost_equal(1.0, 1.0 + 1e-9));
        assert!(!almost_equal(1.0, 1.001));
        assert!(almost_equal(f64::NAN, f64::NAN));
        assert!(almost_equal(0.0, 0.0));
        assert!(!almost_equal(0.0, 1e-300));
        assert!(almost_equal(f64::INFINITY, f64::INFINITY));
        assert!(!almost_equal(f64::INFINITY, f64::NEG_INFINITY));
    }

    #[test]
    fn words_in_queries() {
        assert!(contains_word("rate(foo[5m])", "foo"));
        assert!(!contains_word("rate(foo_bar[5m])", "foo"));
    }
}
