//! Rule unit tests in `promtool test rules` format (`rule_files`,
//! `evaluation_interval`, `tests` with `input_series`, `alert_rule_test`,
//! `promql_expr_test`, `external_labels`, `external_url`), run against
//! Comet's engine: each test group gets a fresh database, its input series
//! go through the given sink (the ingest writer), the groups are evaluated
//! at every evaluation interval from 0 to the last `eval_time` as promtool
//! does, and failures are reported in promtool's words.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;

use super::SampleSink;
use super::alert::{AlertContext, AlertState};
use super::file::load_paths;
use super::group::{Evaluator, GroupState, Health, RuleMetrics, lock};
use crate::duration::parse_duration;
use crate::engine::{Engine, QueryRange};
use crate::plan::PlanSettings;
use crate::promqltest::{
    Load, PointValue, Runner, SeriesPoints, almost_equal, expand_points, load_series,
    parse_series_selector,
};
use crate::value::{LabelPairs, QueryValue};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestFile {
    #[serde(default)]
    rule_files: Vec<String>,
    #[serde(default)]
    evaluation_interval: Option<String>,
    #[serde(default)]
    group_eval_order: Vec<String>,
    #[serde(default)]
    tests: Vec<TestGroup>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TestGroup {
    #[serde(default)]
    interval: Option<String>,
    #[serde(default)]
    input_series: Vec<InputSeries>,
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
    #[serde(default)]
    promql_expr_test: Vec<ExprTest>,
    #[serde(default)]
    external_labels: BTreeMap<String, String>,
    #[serde(default)]
    external_url: Option<String>,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct InputSeries {
    series: String,
    #[serde(default)]
    values: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AlertTest {
    eval_time: String,
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<ExpAlert>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpAlert {
    #[serde(default)]
    exp_labels: BTreeMap<String, String>,
    #[serde(default)]
    exp_annotations: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExprTest {
    expr: String,
    eval_time: String,
    #[serde(default)]
    exp_samples: Vec<ExpSample>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpSample {
    #[serde(default)]
    labels: String,
    value: serde_norway::Value,
}

/// The outcome of one test file.
#[derive(Debug, Clone, PartialEq)]
pub struct TestFileReport {
    pub file: String,
    /// Empty when every test passed; otherwise promtool-style messages.
    pub errors: Vec<String>,
}

impl TestFileReport {
    pub fn passed(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Prometheus's `model.Duration` text (`1h5m`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis() as u64;
    if ms == 0 {
        return "0s".into();
    }
    let mut out = String::new();
    let units: [(&str, u64, bool); 7] = [
        ("y", 365 * 86_400_000, true),
        ("w", 7 * 86_400_000, true),
        ("d", 86_400_000, false),
        ("h", 3_600_000, false),
        ("m", 60_000, false),
        ("s", 1000, false),
        ("ms", 1, false),
    ];
    for (unit, mult, exact) in units {
        if exact && ms % mult != 0 {
            continue;
        }
        let v = ms / mult;
        if v > 0 {
            out.push_str(&format!("{v}{unit}"));
            ms -= v * mult;
        }
    }
    out
}

fn duration(text: &str, what: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|e| format!("{what}: {e}"))
}

fn format_pairs(pairs: &[(String, String)]) -> String {
    let inner: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    format!("{{{}}}", inner.join(", "))
}

/// promtool's list of alerts: `[\n0:\n  Labels:{...}\n  Annotations:{...}\n]`.
fn format_alerts(alerts: &[(LabelPairs, LabelPairs)]) -> String {
    if alerts.is_empty() {
        return "[]".into();
    }
    let mut s = String::from("[");
    for (i, (labels, annotations)) in alerts.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        s.push_str(&format!(
            "\n{i}:\n  Labels:{}\n  Annotations:{}",
            format_pairs(labels),
            format_pairs(annotations)
        ));
    }
    s.push_str("\n]");
    s.replace('\n', "\n            ")
}

fn format_samples(samples: &[(LabelPairs, f64)]) -> String {
    let items: Vec<String> = samples
        .iter()
        .map(|(l, v)| format!("{} {}", format_pairs(l), v))
        .collect();
    format!("[{}]", items.join(", "))
}

/// Runs rule unit-test files on one ClickHouse server.
pub struct RuleTester {
    /// Where ClickHouse is; each test group gets a database of its own.
    pub runner: Runner,
}

impl RuleTester {
    pub fn new(store: comet_schema::StoreSettings, plan: PlanSettings) -> Self {
        Self {
            // Test groups' databases are scratch space on the server Comet
            // talks to, also in front of a cluster.
            runner: Runner {
                store,
                topology: comet_schema::Topology::SingleNode,
                plan,
            },
        }
    }

    /// Runs one file; `open` makes the sink input series and rule output
    /// are written through, for a test group's database. An `Err` is a
    /// file that could not be run at all (unreadable, invalid, ClickHouse
    /// down).
    pub async fn run_file<F>(&self, path: &Path, open: F) -> Result<TestFileReport, String>
    where
        F: Fn(&comet_schema::Store) -> Result<Arc<dyn SampleSink>, String>,
    {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| format!("{display}: {e}"))?;
        let file: TestFile =
            serde_norway::from_str(&text).map_err(|e| format!("{display}: {e}"))?;
        let eval_interval = match &file.evaluation_interval {
            Some(s) => duration(s, "evaluation_interval")?,
            None => Duration::from_secs(60),
        };
        let base = path.parent().unwrap_or(Path::new("."));
        let mut rule_paths: Vec<PathBuf> = Vec::new();
        for pattern in &file.rule_files {
            let full = base.join(pattern).display().to_string();
            let files = super::file::expand_patterns(&[full]).map_err(|e| e.to_string())?;
            if files.is_empty() {
                return Err(format!("{display}: rule file {pattern:?} not found"));
            }
            rule_paths.extend(files);
        }
        let mut specs = load_paths(&rule_paths, eval_interval).map_err(|errors| {
            errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n")
        })?;
        if !file.group_eval_order.is_empty() {
            let order: HashMap<&str, usize> = file
                .group_eval_order
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), i))
                .collect();
            specs.sort_by_key(|g| order.get(g.name.as_str()).copied().unwrap_or(usize::MAX));
        }
        let mut errors = Vec::new();
        for (n, test) in file.tests.iter().enumerate() {
            let database = format!("comet_rulestest_{}_{n}", std::process::id());
            let store = self
                .runner
                .fresh_database(&database)
                .await
                .map_err(|e| e.to_string())?;
            let sink = open(&store)?;
            let outcome =
                run_group(test, &specs, eval_interval, &store, &self.runner.plan, sink).await;
            let _ = store
                .execute(&format!("DROP DATABASE IF EXISTS `{database}`"))
                .await;
            errors.extend(outcome?);
        }
        Ok(TestFileReport {
            file: display,
            errors,
        })
    }
}

/// One test group: returns its failures, or `Err` when it could not run.
async fn run_group(
    test: &TestGroup,
    specs: &[super::file::GroupSpec],
    eval_interval: Duration,
    store: &comet_schema::Store,
    plan: &PlanSettings,
    sink: Arc<dyn SampleSink>,
) -> Result<Vec<String>, String> {
    let interval = match &test.interval {
        Some(s) => duration(s, "interval")?,
        None => eval_interval,
    };
    // Input series, through the sink (the ingest path).
    let mut series = Vec::new();
    for input in &test.input_series {
        let (labels, rest) = parse_series_selector(&input.series)?;
        if !rest.trim().is_empty() {
            return Err(format!("invalid series {:?}", input.series));
        }
        let points = expand_points(&input.values)?;
        if points
            .iter()
            .any(|p| matches!(p, Some(PointValue::Histogram { .. })))
        {
            return Err(format!(
                "{}: native histograms are not stored yet",
                input.series
            ));
        }
        series.push(SeriesPoints {
            labels,
            points,
            start_timestamps: false,
        });
    }
    let load = Load {
        line: 0,
        interval,
        with_nhcb: false,
        series,
    };
    let to_write = load_series(&load)?;
    if !to_write.is_empty() {
        sink.write(to_write)
            .await
            .map_err(|e| format!("loading input_series: {e}"))?;
    }

    let external_labels: LabelPairs = test
        .external_labels
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let engine = Engine::new(store.clone(), plan.clone());
    let evaluator = Evaluator {
        engine: engine.clone(),
        sink,
        notifier: None,
        context: AlertContext {
            external_labels,
            external_url: test.external_url.clone().unwrap_or_default(),
        },
        resend_delay: Duration::from_secs(60),
        metrics: RuleMetrics::unregistered(),
    };
    let groups: Vec<Mutex<GroupState>> = specs
        .iter()
        .cloned()
        .map(|spec| {
            let mut state = GroupState::new(spec);
            // As promtool: ALERTS are written from the first evaluation.
            for rule in &mut state.rules {
                rule.alerts.restored = true;
            }
            Mutex::new(state)
        })
        .collect();

    let mut alert_tests: Vec<(Duration, &AlertTest)> = Vec::new();
    for t in &test.alert_rule_test {
        alert_tests.push((duration(&t.eval_time, "eval_time")?, t));
    }
    alert_tests.sort_by_key(|(d, _)| *d);
    let mut max_eval = alert_tests.last().map(|(d, _)| *d).unwrap_or_default();
    for t in &test.promql_expr_test {
        max_eval = max_eval.max(duration(&t.eval_time, "eval_time")?);
    }
    let name_prefix = test
        .name
        .as_ref()
        .map(|n| format!("    name: {n},\n"))
        .unwrap_or_default();
    let step = eval_interval.as_millis().max(1) as i64;
    let max_ms = max_eval.as_millis() as i64;
    let mut errors = Vec::new();
    let mut next_alert_test = 0;
    let mut ts = 0i64;
    while ts <= max_ms {
        let mut eval_errors = Vec::new();
        for group in &groups {
            evaluator.eval_group(group, ts).await;
            let g = lock(group);
            for rule in &g.rules {
                if rule.health == Health::Err {
                    eval_errors.push(format!(
                        "    rule: {}, time: {}, err: {}",
                        rule.spec.name,
                        format_duration(Duration::from_millis(ts as u64)),
                        rule.last_error.clone().unwrap_or_default()
                    ));
                }
            }
        }
        if !eval_errors.is_empty() {
            errors.extend(eval_errors);
            return Ok(errors);
        }
        // Alert tests whose eval_time falls in [ts, ts + interval).
        while let Some((at, t)) = alert_tests.get(next_alert_test) {
            let at_ms = at.as_millis() as i64;
            if !(ts <= at_ms && at_ms < ts + step) {
                break;
            }
            let mut got: Vec<(LabelPairs, LabelPairs)> = Vec::new();
            for group in &groups {
                let g = lock(group);
                for rule in g.rules.iter().filter(|r| r.spec.name == t.alertname) {
                    for a in rule.alerts.active_alerts() {
                        if a.state == AlertState::Firing {
                            got.push((a.labels.clone(), sorted(a.annotations.clone())));
                        }
                    }
                }
            }
            let mut exp: Vec<(LabelPairs, LabelPairs)> = t
                .exp_alerts
                .iter()
                .map(|a| {
                    let mut labels: LabelPairs = a
                        .exp_labels
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    labels.retain(|(k, _)| k != "alertname");
                    labels.push(("alertname".into(), t.alertname.clone()));
                    let annotations = a
                        .exp_annotations
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect();
                    (sorted(labels), annotations)
                })
                .collect();
            got.sort();
            exp.sort();
            if got != exp {
                errors.push(format!(
                    "{name_prefix}    alertname: {}, time: {}, \n        exp:{}, \n        got:{}",
                    t.alertname,
                    format_duration(*at),
                    format_alerts(&exp),
                    format_alerts(&got)
                ));
            }
            next_alert_test += 1;
        }
        ts += step;
    }

    for t in &test.promql_expr_test {
        let at = duration(&t.eval_time, "eval_time")?;
        let time = format_duration(at);
        let got = match engine
            .query(&t.expr, QueryRange::instant(at.as_millis() as i64))
            .await
        {
            Ok(QueryValue::Vector(v)) => v
                .into_iter()
                .map(|s| (sorted(s.labels), s.point.v))
                .collect::<Vec<_>>(),
            Ok(QueryValue::Scalar(p)) => vec![(Vec::new(), p.v)],
            Ok(other) => {
                errors.push(format!(
                    "    expr: {:?}, time: {time}, err: rule result is not a vector or scalar: {}",
                    t.expr,
                    other.type_name()
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!("    expr: {:?}, time: {time}, err: {e}", t.expr));
                continue;
            }
        };
        let mut exp = Vec::new();
        let mut bad = None;
        for s in &t.exp_samples {
            let labels = if s.labels.trim().is_empty() {
                Vec::new()
            } else {
                match parse_series_selector(&s.labels) {
                    Ok((labels, rest)) if rest.trim().is_empty() => labels,
                    Ok(_) | Err(_) => {
                        bad = Some(format!(
                            "    expr: {:?}, time: {time}, err: labels {:?}: invalid series",
                            t.expr, s.labels
                        ));
                        break;
                    }
                }
            };
            let value = match &s.value {
                serde_norway::Value::Number(n) => n.as_f64(),
                serde_norway::Value::String(v) => match v.as_str() {
                    "NaN" => Some(f64::NAN),
                    "Inf" | "+Inf" => Some(f64::INFINITY),
                    "-Inf" => Some(f64::NEG_INFINITY),
                    other => other.parse().ok(),
                },
                _ => None,
            };
            let Some(value) = value else {
                bad = Some(format!(
                    "    expr: {:?}, time: {time}, err: value {:?} is not a number",
                    t.expr, s.value
                ));
                break;
            };
            exp.push((sorted(labels), value));
        }
        if let Some(b) = bad {
            errors.push(b);
            continue;
        }
        let mut got = got;
        got.sort_by(|a, b| a.0.cmp(&b.0));
        exp.sort_by(|a, b| a.0.cmp(&b.0));
        let same = got.len() == exp.len()
            && got
                .iter()
                .zip(&exp)
                .all(|(g, e)| g.0 == e.0 && almost_equal(g.1, e.1));
        if !same {
            errors.push(format!(
                "    expr: {:?}, time: {time},\n        exp: {}\n        got: {}",
                t.expr,
                format_samples(&exp),
                format_samples(&got)
            ));
        }
    }
    Ok(errors)
}

fn sorted(mut labels: LabelPairs) -> LabelPairs {
    labels.retain(|(_, v)| !v.is_empty());
    labels.sort();
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_print_as_prometheus() {
        assert_eq!(format_duration(Duration::ZERO), "0s");
        assert_eq!(format_duration(Duration::from_secs(3900)), "1h5m");
        assert_eq!(format_duration(Duration::from_secs(14 * 86400)), "2w");
        assert_eq!(format_duration(Duration::from_secs(90 * 86400)), "90d");
        assert_eq!(format_duration(Duration::from_millis(1500)), "1s500ms");
    }

    #[test]
    fn alert_lists_print_as_promtool() {
        assert_eq!(format_alerts(&[]), "[]");
        let a = vec![(
            vec![("alertname".to_string(), "A".to_string())],
            vec![("summary".to_string(), "s".to_string())],
        )];
        assert_eq!(
            format_alerts(&a),
            "[\n            0:\n              Labels:{alertname=\"A\"}\n              Annotations:{summary=\"s\"}\n            ]"
        );
    }
}
