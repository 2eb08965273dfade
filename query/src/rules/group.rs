//! One evaluation of a rule group: its rules in order, each queried at the
//! evaluation time (less the group's query offset); recording rules' output
//! and alerting rules' ALERTS/ALERTS_FOR_STATE written through the sink and
//! acknowledged before the next rule runs (so later rules see it); stale
//! markers for series a rule stopped producing; alerts handed to the
//! notifier; and Prometheus's `prometheus_rule_*` metrics.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use comet_schema::labels::{Labels, NameValidation};
use comet_schema::model::stale_nan;
use comet_schema::{Sample as StoredSample, TimeSeries};
use prometheus::{GaugeVec, Histogram, HistogramOpts, IntCounterVec, Opts, Registry};
use tracing::{debug, warn};

use super::SampleSink;
use super::alert::{AlertContext, AlertRuleParams, AlertSet, OutputSample};
use super::file::{GroupSpec, RuleKind, RuleSpec};
use super::notifier::{Notifier, postable};
use crate::engine::{Engine, QueryRange};
use crate::value::{LabelPairs, QueryValue, Sample};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    Unknown,
    Ok,
    Err,
}

impl Health {
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "unknown",
            Health::Ok => "ok",
            Health::Err => "err",
        }
    }
}

/// A rule and what its evaluations left behind.
#[derive(Debug, Clone)]
pub struct RuleState {
    pub spec: RuleSpec,
    /// The expression as Prometheus prints it (`/api/v1/rules` `query`).
    pub query: String,
    pub health: Health,
    pub last_error: Option<String>,
    pub last_evaluation: Option<SystemTime>,
    pub evaluation_time: Duration,
    pub alerts: AlertSet,
    /// Series written by the last evaluation, to mark the ones that
    /// disappear as stale.
    pub previous_series: HashSet<LabelPairs>,
}

impl RuleState {
    pub fn new(spec: RuleSpec) -> Self {
        let query = crate::plan::parse(&spec.expr)
            .map(|e| e.to_string())
            .unwrap_or_else(|_| spec.expr.clone());
        Self {
            spec,
            query,
            health: Health::Unknown,
            last_error: None,
            last_evaluation: None,
            evaluation_time: Duration::ZERO,
            alerts: AlertSet::default(),
            previous_series: HashSet::new(),
        }
    }
}

/// A group and its rules' state.
#[derive(Debug, Clone)]
pub struct GroupState {
    pub spec: GroupSpec,
    pub rules: Vec<RuleState>,
    pub last_evaluation: Option<SystemTime>,
    pub evaluation_time: Duration,
    /// Unix ms of the last evaluation.
    pub last_eval_ts: Option<i64>,
}

impl GroupState {
    pub fn new(spec: GroupSpec) -> Self {
        let rules = spec.rules.iter().cloned().map(RuleState::new).collect();
        Self {
            spec,
            rules,
            last_evaluation: None,
            evaluation_time: Duration::ZERO,
            last_eval_ts: None,
        }
    }

    /// `file;name`, the `rule_group` label of the metrics.
    pub fn key(&self) -> String {
        group_key(&self.spec)
    }

    /// Takes over a reloaded group's state: alerts of rules with the same
    /// name (the n-th rule of a name gets the old n-th's), stale-series
    /// tracking and last evaluation, as Prometheus's `CopyState` does.
    pub fn copy_state_from(&mut self, old: &GroupState) {
        self.last_evaluation = old.last_evaluation;
        self.evaluation_time = old.evaluation_time;
        self.last_eval_ts = old.last_eval_ts;
        let mut used = vec![false; old.rules.len()];
        for rule in &mut self.rules {
            let Some(i) = old.rules.iter().enumerate().position(|(i, o)| {
                !used[i]
                    && o.spec.name == rule.spec.name
                    && o.spec.is_alerting() == rule.spec.is_alerting()
            }) else {
                continue;
            };
            used[i] = true;
            let o = &old.rules[i];
            rule.previous_series = o.previous_series.clone();
            rule.health = o.health;
            rule.last_error = o.last_error.clone();
            rule.last_evaluation = o.last_evaluation;
            rule.evaluation_time = o.evaluation_time;
            rule.alerts = o.alerts.clone();
        }
    }
}

pub fn group_key(spec: &GroupSpec) -> String {
    format!("{};{}", spec.file, spec.name)
}

/// Locks a group's state; a panic elsewhere does not make it unusable.
pub fn lock(group: &Mutex<GroupState>) -> MutexGuard<'_, GroupState> {
    group.lock().unwrap_or_else(|e| e.into_inner())
}

/// Prometheus's rule-manager metrics, by `rule_group` (`file;name`).
#[derive(Clone)]
pub struct RuleMetrics {
    eval_duration: Histogram,
    group_duration: Histogram,
    evaluations: IntCounterVec,
    failures: IntCounterVec,
    pub(crate) missed: IntCounterVec,
    pub(crate) iterations: IntCounterVec,
    interval: GaugeVec,
    last_timestamp: GaugeVec,
    last_duration: GaugeVec,
    rules: GaugeVec,
    last_samples: GaugeVec,
}

impl RuleMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let buckets = vec![
            0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ];
        let g = &["rule_group"];
        let m = Self {
            eval_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "prometheus_rule_evaluation_duration_seconds",
                    "The duration for a rule to execute.",
                )
                .buckets(buckets.clone()),
            )?,
            group_duration: Histogram::with_opts(
                HistogramOpts::new(
                    "prometheus_rule_group_duration_seconds",
                    "The duration of rule group evaluations.",
                )
                .buckets(buckets),
            )?,
            evaluations: IntCounterVec::new(
                Opts::new(
                    "prometheus_rule_evaluations_total",
                    "The total number of rule evaluations.",
                ),
                g,
            )?,
            failures: IntCounterVec::new(
                Opts::new(
                    "prometheus_rule_evaluation_failures_total",
                    "The total number of rule evaluation failures.",
                ),
                g,
            )?,
            missed: IntCounterVec::new(
                Opts::new(
                    "prometheus_rule_group_iterations_missed_total",
                    "The total number of rule group evaluations missed due to slow rule group evaluation.",
                ),
                g,
            )?,
            iterations: IntCounterVec::new(
                Opts::new(
                    "prometheus_rule_group_iterations_total",
                    "The total number of scheduled rule group evaluations, whether executed or missed.",
                ),
                g,
            )?,
            interval: GaugeVec::new(
                Opts::new(
                    "prometheus_rule_group_interval_seconds",
                    "The interval of a rule group.",
                ),
                g,
            )?,
            last_timestamp: GaugeVec::new(
                Opts::new(
                    "prometheus_rule_group_last_evaluation_timestamp_seconds",
                    "The timestamp of the last rule group evaluation in seconds.",
                ),
                g,
            )?,
            last_duration: GaugeVec::new(
                Opts::new(
                    "prometheus_rule_group_last_duration_seconds",
                    "The duration of the last rule group evaluation.",
                ),
                g,
            )?,
            rules: GaugeVec::new(
                Opts::new("prometheus_rule_group_rules", "The number of rules."),
                g,
            )?,
            last_samples: GaugeVec::new(
                Opts::new(
                    "prometheus_rule_group_last_evaluation_samples",
                    "The number of samples returned during the last rule group evaluation.",
                ),
                g,
            )?,
        };
        registry.register(Box::new(m.eval_duration.clone()))?;
        registry.register(Box::new(m.group_duration.clone()))?;
        for c in [&m.evaluations, &m.failures, &m.missed, &m.iterations] {
            registry.register(Box::new(c.clone()))?;
        }
        for gauge in [
            &m.interval,
            &m.last_timestamp,
            &m.last_duration,
            &m.rules,
            &m.last_samples,
        ] {
            registry.register(Box::new(gauge.clone()))?;
        }
        Ok(m)
    }

    /// Metrics nobody scrapes (tools, tests).
    pub fn unregistered() -> Self {
        // A registry of its own never has name clashes.
        match Self::new(&Registry::new()) {
            Ok(m) => m,
            Err(e) => unreachable!("fresh registry refused rule metrics: {e}"),
        }
    }

    pub(crate) fn group_started(&self, spec: &GroupSpec) {
        let key = group_key(spec);
        self.interval
            .with_label_values(&[&key])
            .set(spec.interval.as_secs_f64());
        self.rules
            .with_label_values(&[&key])
            .set(spec.rules.len() as f64);
        // Present from the start at 0, as Prometheus's, so rate() and
        // alerts on them work before the first miss or failure.
        for c in [
            &self.evaluations,
            &self.failures,
            &self.missed,
            &self.iterations,
        ] {
            c.with_label_values(&[&key]);
        }
    }

    pub(crate) fn group_removed(&self, key: &str) {
        for g in [
            &self.interval,
            &self.last_timestamp,
            &self.last_duration,
            &self.rules,
            &self.last_samples,
        ] {
            let _ = g.remove_label_values(&[key]);
        }
        for c in [
            &self.evaluations,
            &self.failures,
            &self.missed,
            &self.iterations,
        ] {
            let _ = c.remove_label_values(&[key]);
        }
    }
}

/// Everything an evaluation needs besides the group.
pub struct Evaluator {
    pub engine: Engine,
    pub sink: Arc<dyn SampleSink>,
    pub notifier: Option<Notifier>,
    pub context: AlertContext,
    pub resend_delay: Duration,
    pub metrics: RuleMetrics,
}

/// What one rule's query and state change produced.
struct RuleOutcome {
    samples: Vec<OutputSample>,
    error: Option<String>,
}

impl Evaluator {
    /// Evaluates the group at `ts` (Unix ms).
    pub async fn eval_group(&self, group: &Mutex<GroupState>, ts: i64) {
        let started = Instant::now();
        let wall = SystemTime::now();
        let (spec, key) = {
            let g = lock(group);
            (g.spec.clone(), g.key())
        };
        let query_ts = ts - spec.query_offset.as_millis() as i64;
        let mut samples_total = 0usize;
        for (i, rule) in spec.rules.iter().enumerate() {
            let rule_started = Instant::now();
            let rule_wall = SystemTime::now();
            self.metrics.evaluations.with_label_values(&[&key]).inc();
            let result = self.query(&rule.expr, query_ts).await;
            let outcome = {
                let mut g = lock(group);
                let Some(state) = g.rules.get_mut(i) else {
                    break;
                };
                self.apply(&spec, state, ts, result)
            };
            let mut error = outcome.error;
            samples_total += outcome.samples.len();
            if error.is_none() {
                let previous = lock(group).rules[i].previous_series.clone();
                let current: HashSet<LabelPairs> =
                    outcome.samples.iter().map(|(l, _)| l.clone()).collect();
                let mut series: Vec<TimeSeries> = Vec::new();
                for (labels, value) in &outcome.samples {
                    push_series(&mut series, labels, query_ts, *value);
                }
                for gone in previous.difference(&current) {
                    push_series(&mut series, gone, query_ts, stale_nan());
                }
                // Acknowledged before the next rule runs: later rules of
                // the group see this output.
                if !series.is_empty()
                    && let Err(e) = self.sink.write(series).await
                {
                    warn!(group = %key, rule = %rule.name, error = %e, "writing rule output failed");
                    error = Some(format!("writing rule output: {e}"));
                }
                lock(group).rules[i].previous_series = current;
            }
            if rule.is_alerting() {
                self.notify(group, i, ts, spec.interval);
            }
            let elapsed = rule_started.elapsed();
            self.metrics.eval_duration.observe(elapsed.as_secs_f64());
            let mut g = lock(group);
            let state = &mut g.rules[i];
            state.evaluation_time = elapsed;
            state.last_evaluation = Some(rule_wall);
            match error {
                None => {
                    state.health = Health::Ok;
                    state.last_error = None;
                }
                Some(e) => {
                    debug!(group = %key, rule = %rule.name, error = %e, "rule evaluation failed");
                    self.metrics.failures.with_label_values(&[&key]).inc();
                    state.health = Health::Err;
                    state.last_error = Some(e);
                }
            }
        }
        let elapsed = started.elapsed();
        let mut g = lock(group);
        g.last_evaluation = Some(wall);
        g.evaluation_time = elapsed;
        g.last_eval_ts = Some(ts);
        self.metrics.group_duration.observe(elapsed.as_secs_f64());
        self.metrics
            .last_duration
            .with_label_values(&[&key])
            .set(elapsed.as_secs_f64());
        self.metrics
            .last_timestamp
            .with_label_values(&[&key])
            .set(ts as f64 / 1000.0);
        self.metrics
            .last_samples
            .with_label_values(&[&key])
            .set(samples_total as f64);
    }

    async fn query(&self, expr: &str, ts: i64) -> Result<Vec<Sample>, String> {
        match self.engine.query(expr, QueryRange::instant(ts)).await {
            Ok(QueryValue::Vector(v)) => Ok(v),
            Ok(QueryValue::Scalar(p)) => Ok(vec![Sample::float(Vec::new(), p)]),
            Ok(_) => Err("rule result is not a vector or scalar".into()),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Turns a query result into the rule's output and new state.
    fn apply(
        &self,
        group: &GroupSpec,
        state: &mut RuleState,
        ts: i64,
        result: Result<Vec<Sample>, String>,
    ) -> RuleOutcome {
        let failed = |e: String| RuleOutcome {
            samples: Vec::new(),
            error: Some(e),
        };
        let vector = match result {
            Ok(v) => v,
            Err(e) => return failed(e),
        };
        let rule = &state.spec;
        let produced = match &rule.kind {
            RuleKind::Recording => record(rule, &vector, group.limit),
            RuleKind::Alerting {
                hold,
                keep_firing_for,
                annotations,
            } => {
                let params = AlertRuleParams {
                    name: &rule.name,
                    labels: &rule.labels,
                    annotations,
                    hold: *hold,
                    keep_firing_for: *keep_firing_for,
                    limit: group.limit,
                };
                state.alerts.eval(&params, ts, &vector, &self.context)
            }
        };
        match produced {
            Ok(samples) => RuleOutcome {
                samples,
                error: None,
            },
            Err(e) => failed(e),
        }
    }

    /// Hands the alerts Alertmanager must hear of to the notifier.
    fn notify(&self, group: &Mutex<GroupState>, i: usize, ts: i64, interval: Duration) {
        let Some(notifier) = &self.notifier else {
            return;
        };
        let (alerts, query) = {
            let mut g = lock(group);
            let rule = &mut g.rules[i];
            (
                rule.alerts.take_sendable(ts, self.resend_delay, interval),
                rule.query.clone(),
            )
        };
        if alerts.is_empty() {
            return;
        }
        let url = generator_url(&self.context.external_url, &query);
        let postable = alerts
            .iter()
            .map(|a| postable(a, &url, notifier.external_labels()))
            .collect();
        notifier.send(postable);
    }
}

/// Prometheus's link to the expression in its UI.
pub fn generator_url(external_url: &str, query: &str) -> String {
    let expr: String = form_urlencoded::byte_serialize(query.as_bytes()).collect();
    format!(
        "{}/graph?g0.expr={expr}&g0.tab=1",
        external_url.trim_end_matches('/')
    )
}

/// A recording rule's output: the result renamed, with the rule's labels.
fn record(rule: &RuleSpec, vector: &[Sample], limit: usize) -> Result<Vec<OutputSample>, String> {
    let mut seen = HashSet::with_capacity(vector.len());
    let mut out = Vec::with_capacity(vector.len());
    for s in vector {
        // Written as floats only: a histogram must not become a 0.
        if s.histogram.is_some() {
            return Err(
                "recording rules that produce native histograms are not supported yet".into(),
            );
        }
        let mut labels: LabelPairs = s
            .labels
            .iter()
            .filter(|(n, _)| n != "__name__" && !rule.labels.iter().any(|(r, _)| r == n))
            .cloned()
            .collect();
        labels.push(("__name__".into(), rule.name.clone()));
        labels.extend(rule.labels.iter().filter(|(_, v)| !v.is_empty()).cloned());
        labels.sort();
        if !seen.insert(labels.clone()) {
            return Err(
                "vector contains metrics with the same labelset after applying rule labels".into(),
            );
        }
        out.push((labels, s.point.v));
    }
    if limit > 0 && out.len() > limit {
        return Err(format!("exceeded limit {limit} with {} series", out.len()));
    }
    Ok(out)
}

fn push_series(out: &mut Vec<TimeSeries>, labels: &[(String, String)], t: i64, v: f64) {
    match Labels::new(labels.iter().cloned(), NameValidation::Utf8) {
        Ok(labels) => out.push(TimeSeries {
            labels,
            samples: vec![StoredSample {
                timestamp_ms: t,
                value: v,
            }],
        }),
        Err(e) => warn!(error = %e, "rule produced a series that cannot be stored"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::value::Point;

    #[test]
    fn recording_renames_and_labels() {
        let rule = RuleSpec {
            name: "job:up:sum".into(),
            expr: "x".into(),
            labels: vec![("team".into(), "a".into()), ("drop".into(), String::new())],
            kind: RuleKind::Recording,
        };
        let s = |job: &str| Sample {
            labels: vec![
                ("__name__".into(), "up".into()),
                ("drop".into(), "x".into()),
                ("job".into(), job.into()),
            ],
            point: Point { t: 0, v: 1.0 },
            histogram: None,
        };
        let out = record(&rule, &[s("a"), s("b")], 0).unwrap();
        assert_eq!(
            out[0].0,
            vec![
                ("__name__".to_string(), "job:up:sum".to_string()),
                ("job".into(), "a".into()),
                ("team".into(), "a".into())
            ]
        );
        assert_eq!(
            record(&rule, &[s("a"), s("b")], 1).unwrap_err(),
            "exceeded limit 1 with 2 series"
        );
        let rule = RuleSpec {
            labels: vec![("job".into(), "same".into())],
            ..rule
        };
        assert!(record(&rule, &[s("a"), s("b")], 0).is_err());
    }

    #[test]
    fn generator_urls() {
        assert_eq!(
            generator_url("http://comet:9090/", "up == 0"),
            "http://comet:9090/graph?g0.expr=up+%3D%3D+0&g0.tab=1"
        );
    }
}
