//! Runs PromQL test scripts against the real thing: `load` goes through
//! the caller's [`Loader`] (the ingest writer in `comet promqltest`) into a
//! fresh ClickHouse database per file, `eval` goes through the planner and
//! ClickHouse, and results are judged as upstream's `promqltest` judges them.

use std::collections::HashSet;
use std::future::Future;
use std::path::Path;
use std::time::Duration;

use comet_schema::ddl::DATA_TABLES;
use comet_schema::histogram::{CUSTOM_BUCKETS_SCHEMA, HistogramCounts, NativeHistogram};
use comet_schema::migrate::{latest_version, migrate};
use comet_schema::model::STALE_NAN_BITS;
use comet_schema::nhcb::{ClassicHistograms, ClassicSuffix, ClassicValue, classic_part};
use comet_schema::{
    Labels, NameValidation, Sample, SchemaOptions, Store, StoreSettings, TimeSeries, Topology,
};
use promql_parser::label::Matcher;
use promql_parser::parser::Expr;
use promql_parser::util::{ExprVisitor, walk_expr};
use thiserror::Error;

use super::values::histogram_notation;
use super::{Command, Eval, EvalTime, Expect, Expected, Load, MessageMatch, PointValue};
use crate::engine::{Engine, QueryError, QueryRange};
use crate::plan::{self, PlanSettings};
use crate::value::{self, Histogram, Point, QueryValue, format_labels};

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

/// One series of a `load` block: its float samples (staleness markers
/// included) and its native histograms (float histograms, hints as
/// written), each in time order. A series may have both, at different
/// times.
#[derive(Debug, Clone)]
pub struct LoadSeries {
    pub labels: Labels,
    pub samples: Vec<Sample>,
    pub histograms: Vec<NativeHistogram>,
}

/// Where a script's `load` blocks go. `comet promqltest` loads through the
/// ingest writer, the path every source takes (the query crate does not
/// depend on ingest, so the caller provides it).
pub trait Loader: Send {
    /// Stores `series` and returns once they are in ClickHouse.
    fn load(&mut self, series: Vec<LoadSeries>) -> impl Future<Output = Result<(), String>> + Send;
    /// Stops the loader after everything is stored (before a `clear`, whose
    /// tables are emptied under it, and at the end of a file).
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Runs script files against one ClickHouse server.
pub struct Runner {
    /// Where ClickHouse is; each file gets its own database.
    pub store: StoreSettings,
    /// A single server or a cluster.
    pub topology: Topology,
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
                            .execute(&self.schema(&database).truncate(table))
                            .await
                            .map_err(|e| RunError::Store(e.to_string()))?;
                    }
                    // Emptied: no metric has histograms any more.
                    comet_schema::histogram_names::forget(&store);
                    // A new loader: the old one may remember which series
                    // rows it wrote.
                    loader = open(&store).map_err(RunError::Store)?;
                    loaded = Loaded::default();
                }
                Command::Eval(eval) => {
                    let tier = case_tier(file_tier, eval, &loaded);
                    // Native histograms have row plans only, for instant
                    // and range queries alike, and ClickHouse takes
                    // seconds to analyse them: their range mode would
                    // double the suite's time and check no other plan.
                    let range_mode = tier != Tier::NativeHistogram;
                    match judge(&engine, eval, range_mode).await {
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
        let _ = store.execute(&self.schema(&database).drop_database()).await;
        report.tiers.sort();
        Ok(report)
    }

    /// The schema of a file's `database`, without retention: the scripts'
    /// samples are from 1970.
    fn schema(&self, database: &str) -> SchemaOptions {
        SchemaOptions {
            database: database.to_string(),
            retention: None,
            topology: self.topology.clone(),
        }
    }

    /// Drops and recreates `database` on the runner's server, migrated to
    /// the latest schema without retention (test data is from 1970).
    pub async fn fresh_database(&self, database: &str) -> Result<Store, RunError> {
        let settings = StoreSettings {
            database: database.to_string(),
            ..self.store.clone()
        };
        let store = Store::new(settings).map_err(|e| RunError::Store(e.to_string()))?;
        let options = self.schema(database);
        store
            .execute(&options.drop_database())
            .await
            .map_err(|e| RunError::Store(e.to_string()))?;
        migrate(&store, &options, latest_version())
            .await
            .map_err(|e| RunError::Store(e.to_string()))?;
        Ok(store)
    }
}

/// The float series a `load` block stores (the `0+10x5` notation
/// expanded), for other readers of the notation such as rule unit tests,
/// which do not store native histograms.
pub fn load_series(load: &Load) -> Result<Vec<TimeSeries>, String> {
    series_of(load, &mut Loaded::default())?
        .into_iter()
        .map(|s| {
            if s.histograms.is_empty() {
                Ok(TimeSeries {
                    labels: s.labels,
                    samples: s.samples,
                })
            } else {
                Err(format!(
                    "{:?}: native histograms are not stored here",
                    s.labels
                ))
            }
        })
        .collect()
}

/// The series of a `load` block, one per label set: a series listed twice
/// is one series, and a later point at the same time replaces the earlier
/// one, as in Prometheus's test storage. Notes which series have native
/// histograms in `loaded`.
fn series_of(load: &Load, loaded: &mut Loaded) -> Result<Vec<LoadSeries>, String> {
    let step = load.interval.as_millis() as i64;
    let mut merged: Vec<MergedSeries> = Vec::new();
    for series in &load.series {
        if series.start_timestamps {
            continue;
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
                    merged[at].1.insert(timestamp_ms, LoadPoint::Float(*v));
                }
                // A float, as upstream's parser makes it, also amid
                // histograms.
                Some(PointValue::Stale) => {
                    merged[at].1.insert(
                        timestamp_ms,
                        LoadPoint::Float(f64::from_bits(STALE_NAN_BITS)),
                    );
                }
                Some(PointValue::Histogram { histogram, .. }) => {
                    loaded.histogram_series.insert(merged[at].0.clone());
                    merged[at]
                        .1
                        .insert(timestamp_ms, LoadPoint::Histogram(histogram));
                }
                None => {}
            }
        }
    }
    let mut converted = if load.with_nhcb {
        custom_bucket_histograms(&merged)?
    } else {
        Vec::new()
    };
    for (pairs, _) in &converted {
        loaded.histogram_series.insert(pairs.clone());
    }
    let mut out = Vec::with_capacity(merged.len() + converted.len());
    for (pairs, points) in merged {
        // A converted histogram may share its labels with a loaded series.
        let also = converted
            .iter()
            .position(|(p, _)| *p == pairs)
            .map(|i| converted.swap_remove(i).1);
        if points.is_empty() && also.is_none() {
            continue;
        }
        let labels = Labels::new(
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            NameValidation::Utf8,
        )
        .map_err(|e| format!("series {pairs:?}: {e}"))?;
        let mut samples = Vec::new();
        let mut histograms = Vec::new();
        for (timestamp_ms, point) in points {
            match point {
                LoadPoint::Float(value) => samples.push(Sample {
                    timestamp_ms,
                    value,
                }),
                LoadPoint::Histogram(h) => histograms.push(
                    native_histogram(timestamp_ms, h)
                        .map_err(|e| format!("series {pairs:?} at {timestamp_ms}ms: {e}"))?,
                ),
            }
        }
        if let Some(also) = also {
            histograms.extend(also);
            histograms.sort_by_key(|h| h.timestamp_ms);
        }
        out.push(LoadSeries {
            labels,
            samples,
            histograms,
        });
    }
    for (pairs, histograms) in converted {
        let labels = Labels::new(
            pairs.iter().map(|(n, v)| (n.as_str(), v.as_str())),
            NameValidation::Utf8,
        )
        .map_err(|e| format!("series {pairs:?}: {e}"))?;
        out.push(LoadSeries {
            labels,
            samples: Vec::new(),
            histograms,
        });
    }
    Ok(out)
}

/// What `load_with_nhcb` adds, as upstream's runner does: the classic
/// histograms of the block (`x_bucket{le}`, `x_count`, `x_sum`) also as
/// native histograms with custom buckets, series `x` without `le`. They are
/// stored as float histograms, as upstream stores them; a histogram that
/// does not convert fails the load, as upstream's does.
fn custom_bucket_histograms(merged: &[MergedSeries<'_>]) -> Result<Vec<Converted>, String> {
    let mut classic = ClassicHistograms::new();
    for (pairs, points) in merged {
        let value = |name: &str| pairs.iter().find(|(n, _)| n == name).map(|(_, v)| v);
        let Some((base, suffix)) = value("__name__").and_then(|name| classic_part(name)) else {
            continue;
        };
        let part = match suffix {
            ClassicSuffix::Bucket => {
                // Go's `ParseFloat`; a bucket without a number is skipped.
                match value("le").map(|le| le.parse::<f64>()) {
                    Some(Ok(le)) if !le.is_nan() => ClassicValue::Bucket { le },
                    _ => continue,
                }
            }
            ClassicSuffix::Count => ClassicValue::Count,
            ClassicSuffix::Sum => ClassicValue::Sum,
        };
        let key: Vec<(String, String)> = pairs
            .iter()
            .filter(|(n, _)| n != "le")
            .map(|(n, v)| match n.as_str() {
                "__name__" => (n.clone(), base.to_string()),
                _ => (n.clone(), v.clone()),
            })
            .collect();
        for (&timestamp_ms, point) in points {
            // Native histogram points of such a series are no part of it.
            if let LoadPoint::Float(v) = point {
                classic.add(&key, part, timestamp_ms, *v);
            }
        }
    }
    let converted = classic
        .convert()
        .map_err(|e| format!("classic histogram {:?} as custom buckets: {e}", e.key))?;
    Ok(converted
        .into_iter()
        .map(|(key, histograms)| {
            let histograms = histograms
                .into_iter()
                .map(|h| NativeHistogram {
                    counts: h.counts.to_float(),
                    ..h
                })
                .collect();
            (key, histograms)
        })
        .collect())
}

/// A histogram converted from classic series: its sorted labels and its
/// native histograms by time.
type Converted = (Vec<(String, String)>, Vec<NativeHistogram>);

/// A loaded series: its sorted labels and its points by time.
type MergedSeries<'a> = (
    Vec<(String, String)>,
    std::collections::BTreeMap<i64, LoadPoint<'a>>,
);

/// A point of a loaded series, the histogram borrowed from the script.
enum LoadPoint<'a> {
    Float(f64),
    Histogram(&'a Histogram),
}

/// A parsed histogram as stored: a float histogram, the layout as written.
fn native_histogram(timestamp_ms: i64, h: &Histogram) -> Result<NativeHistogram, String> {
    let schema = i8::try_from(h.schema).map_err(|_| format!("schema {} out of range", h.schema))?;
    Ok(NativeHistogram {
        timestamp_ms,
        start_timestamp_ms: 0,
        schema,
        reset_hint: h.reset_hint,
        zero_threshold: h.zero_threshold,
        sum: h.sum,
        positive_index: h.positive.iter().map(|&(i, _)| i).collect(),
        negative_index: h.negative.iter().map(|&(i, _)| i).collect(),
        counts: HistogramCounts::Float {
            count: h.count,
            zero_count: h.zero_count,
            positive: h.positive.iter().map(|&(_, c)| c).collect(),
            negative: h.negative.iter().map(|&(_, c)| c).collect(),
        },
        custom_values: h.custom_values.clone(),
    })
}

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

/// The evaluation times of an `eval`.
fn query_range(time: &EvalTime) -> QueryRange {
    match *time {
        EvalTime::Instant { at } => QueryRange::instant(ms(at)),
        EvalTime::Range { start, end, step } => QueryRange {
            start_ms: ms(start),
            end_ms: ms(end),
            step_ms: ms(step),
        },
    }
}

/// Runs one `eval` and compares as upstream does; with `range_mode`, an
/// instant one again as a range query.
async fn judge(
    engine: &Engine,
    eval: &Eval,
    range_mode: bool,
) -> Result<(), (FailureKind, String)> {
    let range = query_range(&eval.time);
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
    let (vector, scalar) = (
        matches!(value, QueryValue::Vector(_)),
        matches!(value, QueryValue::Scalar(_)),
    );
    compare(eval, range, value).map_err(|m| (FailureKind::Mismatch, m))?;
    match eval.time {
        // Ordering is not defined for range queries, and `step()`,
        // `range()`, `start()` and `end()` are the query's range.
        EvalTime::Instant { at }
            if range_mode
                && (vector || scalar)
                && !eval.is_ordered()
                && !depends_on_range(&eval.query) =>
        {
            in_range_mode(engine, eval, ms(at), range, scalar).await
        }
        _ => Ok(()),
    }
}

/// Whether a query calls one of the functions whose value is the query's
/// range itself.
fn depends_on_range(query: &str) -> bool {
    ["step", "range", "start", "end"].iter().any(|f| {
        query.match_indices(f).any(|(i, _)| {
            let before = query[..i].chars().next_back();
            let after = query[i + f.len()..].trim_start();
            !before.is_some_and(|c| c.is_alphanumeric() || c == '_')
                && after.starts_with('(')
                && after[1..].trim_start().starts_with(')')
        })
    })
}

/// Upstream's range mode: an instant query's answer must also be the
/// middle step of the same query over the minute before and after, which
/// is where range queries take their own (series-major) plans.
async fn in_range_mode(
    engine: &Engine,
    eval: &Eval,
    at: i64,
    instant: QueryRange,
    scalar: bool,
) -> Result<(), (FailureKind, String)> {
    let around = QueryRange {
        start_ms: at - 60_000,
        end_ms: at + 60_000,
        step_ms: 60_000,
    };
    let value = engine.query(&eval.query, around).await.map_err(|e| {
        let (kind, m) = classify(e);
        (kind, format!("range mode: {m}"))
    })?;
    // The samples at `at`, a scalar when the instant query's answer was.
    let middle = match value {
        QueryValue::Matrix(series) => {
            let samples: Vec<value::Sample> = series
                .into_iter()
                .filter_map(|s| {
                    let float = s.points.iter().find(|p| p.t == at).map(|p| value::Sample {
                        labels: s.labels.clone(),
                        point: *p,
                        histogram: None,
                    });
                    float.or_else(|| {
                        s.histograms
                            .into_iter()
                            .find(|h| h.t == at)
                            .map(|h| value::Sample {
                                labels: s.labels,
                                point: Point { t: at, v: 0.0 },
                                histogram: Some(Box::new(h.h)),
                            })
                    })
                })
                .collect();
            match samples.first() {
                Some(s) if scalar => QueryValue::Scalar(s.point),
                _ => QueryValue::Vector(samples),
            }
        }
        other => other,
    };
    compare(eval, instant, middle).map_err(|m| (FailureKind::Mismatch, format!("range mode: {m}")))
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
        PointValue::Histogram { histogram, .. } => Err(format!(
            "expected a native histogram {}",
            histogram_notation(histogram)
        )),
    }
}

/// One value of a result: a float or a native histogram.
#[derive(Clone, Copy)]
enum Got<'a> {
    Float(f64),
    Histogram(&'a Histogram),
}

impl std::fmt::Display for Got<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Got::Float(v) => write!(f, "{v}"),
            Got::Histogram(h) => f.write_str(&histogram_notation(h)),
        }
    }
}

/// Compares one expected value with one result value as upstream does: a
/// float where a histogram is expected (or the reverse) is a mismatch.
fn compare_value(want: &PointValue, got: Got) -> Result<(), String> {
    match (want, got) {
        (
            PointValue::Histogram {
                histogram,
                reset_hint_given,
            },
            Got::Histogram(h),
        ) => {
            if histograms_match(histogram, h, *reset_hint_given) {
                Ok(())
            } else {
                Err(format!(
                    "expected {}, got {}",
                    histogram_notation(histogram),
                    histogram_notation(h)
                ))
            }
        }
        (PointValue::Histogram { histogram, .. }, Got::Float(v)) => Err(format!(
            "expected histogram {}, got float {v}",
            histogram_notation(histogram)
        )),
        (want, Got::Histogram(h)) => Err(format!(
            "expected float {}, got histogram {}",
            expected_float(want)?,
            histogram_notation(h)
        )),
        (want, Got::Float(v)) => {
            let want = expected_float(want)?;
            if almost_equal(want, v) {
                Ok(())
            } else {
                Err(format!("expected {want}, got {v}"))
            }
        }
    }
}

/// Upstream's `compareNativeHistogram` after its callers' `Compact(0)`:
/// schema equal, counts and sum almost equal, the zero threshold exact,
/// custom bounds equal for custom buckets, the counter reset hint only when
/// the expectation spells it. Compacting drops every empty bucket on both
/// sides, and with absolute indexes what `spansMatch` tolerates (empty or
/// split spans) cannot differ, so the populated (index, count) lists are
/// compared: indexes equal, counts almost equal.
pub(crate) fn histograms_match(want: &Histogram, got: &Histogram, hint_given: bool) -> bool {
    fn buckets_match(want: &[(i32, f64)], got: &[(i32, f64)]) -> bool {
        let mut want = want.iter().filter(|(_, c)| *c != 0.0);
        let mut got = got.iter().filter(|(_, c)| *c != 0.0);
        loop {
            match (want.next(), got.next()) {
                (None, None) => return true,
                (Some((wi, wc)), Some((gi, gc))) if wi == gi && almost_equal(*wc, *gc) => {}
                _ => return false,
            }
        }
    }
    let custom_ok = want.schema != CUSTOM_BUCKETS_SCHEMA
        || (want.custom_values.len() == got.custom_values.len()
            && want
                .custom_values
                .iter()
                .zip(&got.custom_values)
                .all(|(a, b)| a == b));
    want.schema == got.schema
        && almost_equal(want.count, got.count)
        && almost_equal(want.sum, got.sum)
        && custom_ok
        && want.zero_threshold == got.zero_threshold
        && almost_equal(want.zero_count, got.zero_count)
        && buckets_match(&want.negative, &got.negative)
        && buckets_match(&want.positive, &got.positive)
        && (!hint_given || want.reset_hint == got.reset_hint)
}

fn sample_value(s: &crate::value::Sample) -> Got<'_> {
    match &s.histogram {
        Some(h) => Got::Histogram(h),
        None => Got::Float(s.point.v),
    }
}

/// A range result series' floats and histograms, merged by time.
fn series_values(s: &crate::value::Series) -> Vec<(i64, Got<'_>)> {
    let mut values: Vec<(i64, Got<'_>)> = s
        .points
        .iter()
        .map(|p| (p.t, Got::Float(p.v)))
        .chain(s.histograms.iter().map(|p| (p.t, Got::Histogram(&p.h))))
        .collect();
    values.sort_by_key(|(t, _)| *t);
    values
}

fn format_values(values: &[(i64, Got<'_>)]) -> String {
    let parts: Vec<String> = values.iter().map(|(t, v)| format!("{v} @{t}")).collect();
    format!("[{}]", parts.join(", "))
}

/// A label set in order, without labels whose value is empty: Prometheus
/// holds a label with an empty value the same as no label (an expected
/// `__unit__=""` is a series without `__unit__`).
fn sorted(labels: &[(String, String)]) -> Vec<(String, String)> {
    let mut l: Vec<_> = labels
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .cloned()
        .collect();
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
                        .map(|s| format!("{} {}", format_labels(&s.labels), sample_value(s))),
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
                let Some(Some(want_value)) = w.points.first() else {
                    return Err("expected series without a value".into());
                };
                compare_value(want_value, sample_value(&got[pos]))
                    .map_err(|m| format!("series {}: {m}", format_labels(&labels)))?;
            }
            Ok(())
        }
        (Expected::Series(want), QueryValue::Matrix(got)) => {
            let step = if range.step_ms == 0 { 1 } else { range.step_ms };
            if want.len() != got.len() {
                return Err(count_mismatch(
                    want.len(),
                    got.iter().map(|s| {
                        format!(
                            "{} {}",
                            format_labels(&s.labels),
                            format_values(&series_values(s))
                        )
                    }),
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
                let got_values = series_values(series);
                let mismatch = |detail: String| {
                    format!(
                        "series {}: {detail}; got {}",
                        format_labels(&labels),
                        format_values(&got_values)
                    )
                };
                if range.step_ms == 0 {
                    // An instant query of a range vector: raw samples; the
                    // script lists their values in order.
                    let want_values: Vec<&PointValue> = w.points.iter().flatten().collect();
                    if want_values.len() != got_values.len() {
                        return Err(mismatch(format!("expected {} points", want_values.len())));
                    }
                    for (e, (t, g)) in want_values.iter().zip(&got_values) {
                        compare_value(e, *g).map_err(|m| mismatch(format!("at {t}: {m}")))?;
                    }
                    continue;
                }
                // As upstream: floats and histograms are matched apart, each
                // in time order, their timestamps those of their steps.
                let (want_histograms, want_floats): (Vec<_>, Vec<_>) = w
                    .points
                    .iter()
                    .enumerate()
                    .filter_map(|(i, p)| p.as_ref().map(|p| (range.start_ms + i as i64 * step, p)))
                    .partition(|(_, p)| matches!(p, PointValue::Histogram { .. }));
                if want_floats.len() != series.points.len()
                    || want_histograms.len() != series.histograms.len()
                {
                    return Err(mismatch(format!(
                        "expected {} float points and {} histogram points",
                        want_floats.len(),
                        want_histograms.len()
                    )));
                }
                for ((t, e), g) in want_floats.iter().zip(&series.points) {
                    if *t != g.t {
                        return Err(mismatch(format!(
                            "expected a float at {t}, got one at {}",
                            g.t
                        )));
                    }
                    compare_value(e, Got::Float(g.v))
                        .map_err(|m| mismatch(format!("at {t}: {m}")))?;
                }
                for ((t, e), g) in want_histograms.iter().zip(&series.histograms) {
                    if *t != g.t {
                        return Err(mismatch(format!(
                            "expected a histogram at {t}, got one at {}",
                            g.t
                        )));
                    }
                    compare_value(e, Got::Histogram(&g.h))
                        .map_err(|m| mismatch(format!("at {t}: {m}")))?;
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
    use crate::value::CounterResetHint;

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

    fn histogram(text: &str) -> Histogram {
        super::super::parse_histogram(text).unwrap().0
    }

    #[test]
    fn histogram_comparison() {
        let want = histogram("schema:1 count:4 sum:10 z_bucket:1 buckets:[1 0 2] offset:-1");
        let got = Histogram {
            count: 4.0 + 1e-9,
            positive: vec![(-1, 1.0), (1, 2.0)],
            reset_hint: CounterResetHint::Reset,
            ..want.clone()
        };
        // Empty buckets are compacted away on both sides, counts almost equal.
        assert!(histograms_match(&want, &got, false));
        let spread = Histogram {
            positive: vec![(-2, 0.0), (-1, 1.0), (0, 0.0), (1, 2.0), (5, 0.0)],
            ..want.clone()
        };
        assert!(histograms_match(&want, &spread, false));
        // Another index, schema, zero threshold or count is a mismatch.
        let shifted = Histogram {
            positive: vec![(0, 1.0), (1, 2.0)],
            ..want.clone()
        };
        assert!(!histograms_match(&want, &shifted, false));
        for other in [
            Histogram {
                schema: 2,
                ..want.clone()
            },
            Histogram {
                zero_threshold: 1e-128,
                ..want.clone()
            },
            Histogram {
                zero_count: 2.0,
                ..want.clone()
            },
            Histogram {
                negative: vec![(0, 1.0)],
                ..want.clone()
            },
        ] {
            assert!(!histograms_match(&want, &other, false), "{other:?}");
        }
        // The hint counts only when the expectation spells it.
        assert!(!histograms_match(&want, &got, true));
        let reset = histogram(
            "schema:1 count:4 sum:10 z_bucket:1 buckets:[1 0 2] offset:-1 counter_reset_hint:reset",
        );
        assert!(histograms_match(&reset, &got, true));
        // Custom bounds are compared for custom buckets only.
        let custom = histogram("schema:-53 custom_values:[1 2] buckets:[1]");
        let other_bounds = Histogram {
            custom_values: vec![1.0, 3.0],
            ..custom.clone()
        };
        assert!(!histograms_match(&custom, &other_bounds, false));
        let exponential = Histogram {
            custom_values: vec![1.0],
            ..want.clone()
        };
        assert!(histograms_match(&want, &exponential, false));
    }

    fn sample(labels: &[(&str, &str)], v: f64, h: Option<Histogram>) -> crate::value::Sample {
        crate::value::Sample {
            labels: labels
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            point: crate::value::Point { t: 60_000, v },
            histogram: h.map(Box::new),
        }
    }

    fn eval_of(script: &str) -> (Eval, QueryRange) {
        let commands = super::super::parse_script(script).unwrap();
        let Some(Command::Eval(eval)) = commands.into_iter().next() else {
            panic!("no eval in {script}")
        };
        let range = super::query_range(&eval.time);
        (eval, range)
    }

    #[test]
    fn vectors_with_histograms() {
        let (eval, range) =
            eval_of("eval instant at 1m m\n  m{a=\"h\"} {{count:2 sum:3}}\n  m{a=\"f\"} 5\n");
        let h = histogram("count:2 sum:3");
        let right = vec![
            sample(&[("__name__", "m"), ("a", "f")], 5.0, None),
            sample(&[("__name__", "m"), ("a", "h")], 0.0, Some(h.clone())),
        ];
        assert_eq!(compare(&eval, range, QueryValue::Vector(right)), Ok(()));
        // A float where a histogram is expected, and the reverse.
        let swapped = vec![
            sample(&[("__name__", "m"), ("a", "f")], 0.0, Some(h.clone())),
            sample(&[("__name__", "m"), ("a", "h")], 0.0, Some(h.clone())),
        ];
        let err = compare(&eval, range, QueryValue::Vector(swapped)).unwrap_err();
        assert!(err.contains("expected float 5, got histogram"), "{err}");
        let floats = vec![
            sample(&[("__name__", "m"), ("a", "f")], 5.0, None),
            sample(&[("__name__", "m"), ("a", "h")], 0.0, None),
        ];
        let err = compare(&eval, range, QueryValue::Vector(floats)).unwrap_err();
        assert!(
            err.contains("expected histogram {{count:2 sum:3}}, got float 0"),
            "{err}"
        );
    }

    /// Floats and histograms of one series are matched apart, each at its
    /// step's time.
    #[test]
    fn matrices_with_histograms() {
        let (eval, range) =
            eval_of("eval range from 0 to 3m step 1m m\n  m 1 {{count:1}}+{{count:1}}x1 _\n");
        let series = |floats: Vec<(i64, f64)>, histograms: Vec<(i64, f64)>| {
            QueryValue::Matrix(vec![crate::value::Series {
                labels: vec![("__name__".into(), "m".into())],
                points: floats
                    .into_iter()
                    .map(|(t, v)| crate::value::Point { t, v })
                    .collect(),
                histograms: histograms
                    .into_iter()
                    .map(|(t, count)| crate::value::HistogramPoint {
                        t,
                        h: Histogram {
                            count,
                            ..Histogram::default()
                        },
                    })
                    .collect(),
            }])
        };
        let right = series(vec![(0, 1.0)], vec![(60_000, 1.0), (120_000, 2.0)]);
        assert_eq!(compare(&eval, range, right), Ok(()));
        let late = series(vec![(0, 1.0)], vec![(60_000, 1.0), (180_000, 2.0)]);
        assert!(compare(&eval, range, late).is_err());
        let wrong = series(vec![(0, 1.0)], vec![(60_000, 1.0), (120_000, 3.0)]);
        assert!(compare(&eval, range, wrong).is_err());
        let missing = series(vec![(0, 1.0)], vec![(60_000, 1.0)]);
        let err = compare(&eval, range, missing).unwrap_err();
        assert!(
            err.contains("1 float points and 2 histogram points"),
            "{err}"
        );
        // An instant query of a range vector: raw values in time order.
        let (eval, range) = eval_of(
            "eval instant at 2m m[3m]\n  expect range vector from 0 to 2m step 1m\n  m 1 {{count:1}} {{count:2}}\n",
        );
        let right = series(vec![(0, 1.0)], vec![(60_000, 1.0), (120_000, 2.0)]);
        assert_eq!(compare(&eval, range, right), Ok(()));
        let swapped = series(vec![(120_000, 1.0)], vec![(0, 1.0), (60_000, 2.0)]);
        assert!(compare(&eval, range, swapped).is_err());
    }

    /// A load block: histograms as float histograms in their layout, a
    /// stale marker amid them a float, the series noted as histograms.
    #[test]
    fn loads_histograms() {
        let commands = super::super::parse_script(
            "load 1m\n  m{b=\"1\", a=\"2\"} 1 {{schema:-53 count:3 sum:4 custom_values:[1] buckets:[1 0] counter_reset_hint:gauge}} stale {{z_bucket_w:0.5 n_buckets:[2 0 1] n_offset:-1}}\n",
        )
        .unwrap();
        let Some(Command::Load(load)) = commands.first() else {
            panic!("no load")
        };
        let mut loaded = Loaded::default();
        let series = series_of(load, &mut loaded).unwrap();
        assert_eq!(series.len(), 1);
        let s = &series[0];
        let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_ref()).collect();
        assert_eq!(names, ["__name__", "a", "b"]);
        let times: Vec<i64> = s.samples.iter().map(|x| x.timestamp_ms).collect();
        assert_eq!(times, [0, 120_000]);
        assert_eq!(s.samples[1].value.to_bits(), STALE_NAN_BITS);
        assert_eq!(
            s.histograms,
            vec![
                NativeHistogram {
                    timestamp_ms: 60_000,
                    start_timestamp_ms: 0,
                    schema: -53,
                    reset_hint: CounterResetHint::Gauge,
                    zero_threshold: 0.0,
                    sum: 4.0,
                    positive_index: vec![0, 1],
                    negative_index: vec![],
                    counts: HistogramCounts::Float {
                        count: 3.0,
                        zero_count: 0.0,
                        positive: vec![1.0, 0.0],
                        negative: vec![],
                    },
                    custom_values: vec![1.0],
                },
                NativeHistogram {
                    timestamp_ms: 180_000,
                    start_timestamp_ms: 0,
                    schema: 0,
                    reset_hint: CounterResetHint::Unknown,
                    zero_threshold: 0.5,
                    sum: 0.0,
                    positive_index: vec![],
                    negative_index: vec![-1, 0, 1],
                    counts: HistogramCounts::Float {
                        count: 0.0,
                        zero_count: 0.0,
                        positive: vec![],
                        negative: vec![2.0, 0.0, 1.0],
                    },
                    custom_values: vec![],
                },
            ]
        );
        assert!(loaded.histogram_series.contains(&vec![
            ("__name__".to_string(), "m".to_string()),
            ("a".to_string(), "2".to_string()),
            ("b".to_string(), "1".to_string()),
        ]));
        // Rule unit tests take floats only.
        assert!(load_series(load).is_err());
        let bad = super::super::parse_script("load 1m\n  m {{schema:300}}\n").unwrap();
        let Some(Command::Load(load)) = bad.first() else {
            panic!("no load")
        };
        assert!(series_of(load, &mut Loaded::default()).is_err());
    }

    /// `load_with_nhcb` keeps the classic series and adds the custom-bucket
    /// histogram under the base name, without `le`, as a float histogram.
    #[test]
    fn loads_classic_histograms_as_custom_buckets() {
        let commands = super::super::parse_script(
            "load_with_nhcb 1m\n  h_bucket{le=\"1\", j=\"a\"} 1 2\n  h_bucket{le=\"+Inf\", j=\"a\"} 3 4\n  h_bucket{le=\"x\", j=\"a\"} 9 9\n  h_sum{j=\"a\"} _ 7\n",
        )
        .unwrap();
        let Some(Command::Load(load)) = commands.first() else {
            panic!("no load")
        };
        let mut loaded = Loaded::default();
        let series = series_of(load, &mut loaded).unwrap();
        assert_eq!(series.len(), 5);
        let h = series
            .iter()
            .find(|s| !s.histograms.is_empty())
            .expect("a histogram series");
        let labels: Vec<(&str, &str)> = h
            .labels
            .iter()
            .map(|l| (l.name.as_ref(), l.value.as_ref()))
            .collect();
        assert_eq!(labels, [("__name__", "h"), ("j", "a")]);
        assert!(h.samples.is_empty());
        let got: Vec<(i64, f64, &HistogramCounts)> = h
            .histograms
            .iter()
            .map(|x| (x.timestamp_ms, x.sum, &x.counts))
            .collect();
        let floats = |count: f64, positive: Vec<f64>| HistogramCounts::Float {
            count,
            zero_count: 0.0,
            positive,
            negative: vec![],
        };
        assert_eq!(
            got,
            [
                (0, 0.0, &floats(3.0, vec![1.0, 2.0])),
                (60_000, 7.0, &floats(4.0, vec![2.0, 2.0])),
            ]
        );
        assert_eq!(h.histograms[0].custom_values, vec![1.0]);
        assert!(loaded.histogram_series.contains(&vec![
            ("__name__".to_string(), "h".to_string()),
            ("j".to_string(), "a".to_string()),
        ]));
        // Counts that are not cumulative fail the load, as upstream.
        let bad = super::super::parse_script(
            "load_with_nhcb 1m\n  h_bucket{le=\"1\"} 5\n  h_bucket{le=\"2\"} 3\n",
        )
        .unwrap();
        let Some(Command::Load(load)) = bad.first() else {
            panic!("no load")
        };
        assert!(series_of(load, &mut Loaded::default()).is_err());
    }

    /// The expected histograms of plain selectors in the upstream suite
    /// are the loaded ones: the notation and its `+`/`x` expansion read as
    /// upstream's do. Hints aside: Prometheus's storage rewrites them when
    /// it reads chunks.
    #[test]
    fn upstream_selectors_read_the_loaded_histograms() {
        type Data = HashMap<Vec<(String, String)>, BTreeMap<i64, Option<Histogram>>>;
        use std::collections::{BTreeMap, HashMap};
        let dir = std::env::var("COMET_PROMQLTEST_DIR").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/promqltest").to_string()
        });
        let Ok(entries) = std::fs::read_dir(&dir) else {
            eprintln!("no PromQL test suite at {dir}; skipping");
            return;
        };
        let mut checked = 0;
        let mut check = |want: &PointValue, got: Option<&Option<Histogram>>, at: String| {
            if let PointValue::Histogram { histogram, .. } = want {
                let got = got.and_then(Option::as_ref);
                assert!(
                    got.is_some_and(|g| histograms_match(histogram, g, false)),
                    "{at}: expected {}, loaded {:?}",
                    histogram_notation(histogram),
                    got.map(histogram_notation)
                );
                checked += 1;
            }
        };
        for path in entries.flatten().map(|e| e.path()) {
            if path.extension().is_none_or(|e| e != "test") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let mut data = Data::new();
            for command in super::super::parse_script(&text).unwrap() {
                let eval = match command {
                    Command::Clear => {
                        data.clear();
                        continue;
                    }
                    Command::Load(load) => {
                        for s in series_of(&load, &mut Loaded::default()).unwrap() {
                            let key = s
                                .labels
                                .iter()
                                .map(|l| (l.name.to_string(), l.value.to_string()));
                            let points = data.entry(sorted(&key.collect::<Vec<_>>())).or_default();
                            points.extend(s.samples.iter().map(|x| (x.timestamp_ms, None)));
                            points.extend(
                                s.histograms
                                    .iter()
                                    .map(|h| (h.timestamp_ms, Some(loaded(h)))),
                            );
                        }
                        continue;
                    }
                    Command::Eval(eval) => eval,
                };
                let (Ok(expr), Expected::Series(want)) = (plan::parse(&eval.query), &eval.expected)
                else {
                    continue;
                };
                let at = |line: usize| format!("{}:{line}", path.display());
                for w in want {
                    let Some(points) = data.get(&sorted(&w.labels)) else {
                        continue;
                    };
                    match (&expr, eval.time.clone()) {
                        (Expr::VectorSelector(vs), time)
                            if vs.offset.is_none() && vs.at.is_none() =>
                        {
                            let (start, end, step) = match time {
                                EvalTime::Instant { at } => (ms(at), ms(at), 1),
                                EvalTime::Range { start, end, step } => {
                                    (ms(start), ms(end), ms(step))
                                }
                            };
                            for (i, p) in w.points.iter().enumerate() {
                                let t = start + i as i64 * step;
                                if let Some(p) = p
                                    && t <= end
                                {
                                    // The latest point within the 5m lookback.
                                    let got = points.range(t - 300_000 + 1..=t).next_back();
                                    check(p, got.map(|(_, v)| v), at(eval.line));
                                }
                            }
                        }
                        (Expr::MatrixSelector(m), EvalTime::Instant { at: t })
                            if m.vs.offset.is_none() && m.vs.at.is_none() =>
                        {
                            let t = ms(t);
                            let window = points.range(t - m.range.as_millis() as i64 + 1..=t);
                            for (p, (_, got)) in w.points.iter().flatten().zip(window) {
                                check(p, Some(got), at(eval.line));
                            }
                        }
                        _ => {}
                    }
                }
            }
        }
        assert!(checked >= 10, "only {checked} histograms checked");
    }

    fn loaded(h: &NativeHistogram) -> Histogram {
        let HistogramCounts::Float {
            count,
            zero_count,
            positive,
            negative,
        } = &h.counts
        else {
            panic!("an integer histogram")
        };
        let zip = |index: &[i32], counts: &[f64]| {
            index.iter().copied().zip(counts.iter().copied()).collect()
        };
        Histogram {
            schema: i32::from(h.schema),
            zero_threshold: h.zero_threshold,
            zero_count: *zero_count,
            count: *count,
            sum: h.sum,
            positive: zip(&h.positive_index, positive),
            negative: zip(&h.negative_index, negative),
            custom_values: h.custom_values.clone(),
            reset_hint: h.reset_hint,
        }
    }

    #[test]
    fn range_dependent_queries_skip_range_mode() {
        for query in [
            "step()",
            "metric1_total offset range()",
            "end ( ) - start()",
        ] {
            assert!(depends_on_range(query), "{query}");
        }
        for query in [
            "x{step=\"a\"}",
            "max_over_time(x[5m])",
            "rate(endpoint_total[1m])",
            "starts()",
        ] {
            assert!(!depends_on_range(query), "{query}");
        }
    }

    #[test]
    fn words_in_queries() {
        assert!(contains_word("rate(foo[5m])", "foo"));
        assert!(!contains_word("rate(foo_bar[5m])", "foo"));
    }
}
