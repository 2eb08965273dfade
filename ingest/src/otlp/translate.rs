//! An OTLP `ExportMetricsServiceRequest` to a [`WriteBatch`], as
//! Prometheus's OTLP receiver translates it:
//! - labels: the point's attributes, promoted resource attributes, scope
//!   labels (if enabled), `job` from `service.namespace`/`service.name` and
//!   `instance` from `service.instance.id`; attribute keys that escape to
//!   the same name have their values joined with `;` in key order;
//! - Gauge -> gauge; monotonic Sum -> counter (`_total`); other Sum ->
//!   gauge; Histogram -> `_bucket{le}`, `_sum`, `_count`; Summary ->
//!   `{quantile}`, `_sum`, `_count`; ExponentialHistogram -> a native
//!   histogram (or classic buckets, by setting);
//! - delta temporality -> cumulative through [`SeriesState`], or refused;
//! - the no-recorded-value flag -> Prometheus's staleness marker;
//! - other resource attributes -> `target_info`.
//!
//! Points that cannot be stored are counted as rejected with a reason;
//! the rest of the request is kept.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use comet_schema::model::{format_float, stale_nan};
use comet_schema::rows::ExemplarRow;
use comet_schema::{Labels, Metadata, MetricType, Sample};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, ExponentialHistogramDataPoint, HistogramDataPoint, Metric,
    NumberDataPoint, SummaryDataPoint, exemplar, metric::Data, number_data_point,
};
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use super::names::{self, NameKind, TranslationStrategy};
use super::native;
use super::state::SeriesState;
use crate::batch::{Rejection, SeriesHistograms, SeriesSamples, WriteBatch};
use crate::series::{Series, SeriesRegistry};

/// What to do with delta temporality.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeltaPolicy {
    /// Keep a running total per series in memory and store cumulative
    /// values (one Comet instance must see all of a series' points).
    #[default]
    Cumulate,
    /// Refuse delta points (send cumulative, or convert in the collector
    /// with its `deltatocumulative` processor).
    Reject,
}

/// What to do with exponential histograms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExponentialPolicy {
    /// Store native histograms, as Prometheus's OTLP receiver does (see
    /// [`super::native`]).
    #[default]
    Native,
    /// Convert to classic `_bucket{le}` series at the point's scale, made
    /// coarser until at most `max_exponential_buckets` remain.
    ClassicBuckets,
    /// Refuse them.
    Reject,
}

/// Translation choices, after Prometheus's `otlp` configuration block.
#[derive(Debug, Clone)]
pub struct TranslateSettings {
    pub strategy: TranslationStrategy,
    /// Resource attributes added as labels to every series of the resource.
    pub promote_resource_attributes: Vec<String>,
    /// Promote every resource attribute except `ignore_resource_attributes`.
    pub promote_all_resource_attributes: bool,
    pub ignore_resource_attributes: Vec<String>,
    /// Keep `service.*` identifying attributes in `target_info` too.
    pub keep_identifying_resource_attributes: bool,
    /// Add `otel_scope_name`, `otel_scope_version`, `otel_scope_schema_url`
    /// and `otel_scope_<attribute>` labels.
    pub promote_scope_metadata: bool,
    pub delta: DeltaPolicy,
    pub exponential_histograms: ExponentialPolicy,
    pub max_exponential_buckets: usize,
    /// A 0 sample at a cumulative series' start time, once per start
    /// time (Prometheus's created-timestamp zero ingestion).
    pub created_timestamp_zero_samples: bool,
    /// `target_info` gets a sample every half of this across the request's
    /// time span, so a query's lookback always finds one.
    pub lookback_delta: Duration,
}

impl Default for TranslateSettings {
    fn default() -> Self {
        Self {
            strategy: TranslationStrategy::default(),
            promote_resource_attributes: Vec::new(),
            promote_all_resource_attributes: false,
            ignore_resource_attributes: Vec::new(),
            keep_identifying_resource_attributes: false,
            promote_scope_metadata: false,
            delta: DeltaPolicy::default(),
            exponential_histograms: ExponentialPolicy::default(),
            max_exponential_buckets: 160,
            created_timestamp_zero_samples: false,
            lookback_delta: Duration::from_secs(300),
        }
    }
}

/// A translated request.
#[derive(Debug, Default)]
pub struct Translated {
    pub batch: WriteBatch,
    pub rejections: Vec<Rejection>,
    /// Data points in the request (a histogram point counts once).
    pub received_points: u64,
    /// Data points not stored, as OTLP's `rejected_data_points` counts them.
    pub rejected_points: u64,
}

const SERVICE_NAME: &str = "service.name";
const SERVICE_NAMESPACE: &str = "service.namespace";
const SERVICE_INSTANCE_ID: &str = "service.instance.id";
const NO_RECORDED_VALUE: u32 = 1;
const DELTA: i32 = AggregationTemporality::Delta as i32;
const CUMULATIVE: i32 = AggregationTemporality::Cumulative as i32;

/// Translates a whole request.
pub fn translate(
    request: &ExportMetricsServiceRequest,
    settings: &TranslateSettings,
    registry: &SeriesRegistry,
    state: &SeriesState,
) -> Translated {
    let mut t = Translator {
        settings,
        registry,
        state,
        out: Translated::default(),
        index: HashMap::new(),
        histogram_index: HashMap::new(),
        metadata_seen: HashSet::new(),
        rejected: HashMap::new(),
        scratch: Vec::with_capacity(512),
    };
    for resource_metrics in &request.resource_metrics {
        let empty = Vec::new();
        let resource_attributes = resource_metrics
            .resource
            .as_ref()
            .map_or(&empty, |r| &r.attributes);
        let resource = ResourceLabels::new(resource_attributes, settings);
        let mut span = TimeSpan::default();
        for scope_metrics in &resource_metrics.scope_metrics {
            let scope = t.scope_labels(scope_metrics.scope.as_ref(), &scope_metrics.schema_url);
            let key = resource.key(&scope);
            for metric in &scope_metrics.metrics {
                t.metric(metric, &resource, (&scope, key), &mut span);
            }
        }
        t.target_info(resource_attributes, &resource, &span);
    }
    t.finish()
}

/// Labels every series of one resource gets.
struct ResourceLabels {
    job: Option<String>,
    instance: Option<String>,
    /// Promoted attributes by original key.
    promoted: Vec<(String, String)>,
}

impl ResourceLabels {
    /// A hash of everything here, part of every series key.
    fn key(&self, scope: &[(String, String)]) -> u128 {
        let mut h = Xxh3::new();
        h.update(b"otlp\0");
        for part in [&self.job, &self.instance] {
            match part {
                Some(v) => {
                    h.update(&[1]);
                    h.update(v.as_bytes());
                }
                None => h.update(&[0]),
            }
            h.update(&[0xff]);
        }
        for (k, v) in self.promoted.iter().chain(scope) {
            h.update(k.as_bytes());
            h.update(&[0xfe]);
            h.update(v.as_bytes());
            h.update(&[0xff]);
        }
        h.digest128()
    }
}

impl ResourceLabels {
    fn new(attributes: &[KeyValue], settings: &TranslateSettings) -> Self {
        let find = |key: &str| {
            attributes
                .iter()
                .find(|kv| kv.key == key)
                .map(|kv| value_string(kv.value.as_ref()).into_owned())
        };
        let job = find(SERVICE_NAME).map(|name| match find(SERVICE_NAMESPACE) {
            Some(ns) if !ns.is_empty() => format!("{ns}/{name}"),
            _ => name,
        });
        let promoted = attributes
            .iter()
            .filter(|kv| {
                if settings.promote_all_resource_attributes {
                    !settings.ignore_resource_attributes.contains(&kv.key)
                } else {
                    settings.promote_resource_attributes.contains(&kv.key)
                }
            })
            .map(|kv| (kv.key.clone(), value_string(kv.value.as_ref()).into_owned()))
            .collect();
        Self {
            job,
            instance: find(SERVICE_INSTANCE_ID),
            promoted,
        }
    }
}

/// The earliest and latest point times of a resource.
#[derive(Default)]
struct TimeSpan {
    range: Option<(i64, i64)>,
}

impl TimeSpan {
    fn see(&mut self, ms: i64) {
        self.range = Some(match self.range {
            None => (ms, ms),
            Some((lo, hi)) => (lo.min(ms), hi.max(ms)),
        });
    }
}

/// One output series of a data point: its name and extra label.
struct Output<'a> {
    name: &'a str,
    extra: Option<(&'static str, &'a str)>,
}

struct Translator<'a> {
    settings: &'a TranslateSettings,
    registry: &'a SeriesRegistry,
    state: &'a SeriesState,
    out: Translated,
    /// Series of the batch by registry key.
    index: HashMap<u128, usize>,
    /// Histogram series of the batch by fingerprint.
    histogram_index: HashMap<u128, usize>,
    metadata_seen: HashSet<String>,
    /// Rejected points by reason: (count, first message).
    rejected: HashMap<&'static str, (u64, String)>,
    /// Reused for series keys.
    scratch: Vec<u8>,
}

impl Translator<'_> {
    fn finish(mut self) -> Translated {
        for series in &mut self.out.batch.series {
            if !series.samples.is_sorted_by_key(|s| s.timestamp_ms) {
                series.samples.sort_by_key(|s| s.timestamp_ms);
            }
        }
        for series in &mut self.out.batch.histograms {
            if !series.histograms.is_sorted_by_key(|h| h.timestamp_ms) {
                series.histograms.sort_by_key(|h| h.timestamp_ms);
            }
        }
        let mut rejected: Vec<_> = self.rejected.into_iter().collect();
        rejected.sort_by_key(|(reason, _)| *reason);
        for (reason, (samples, message)) in rejected {
            self.out.rejected_points += samples;
            self.out.rejections.push(Rejection {
                reason,
                message,
                samples,
                histograms: 0,
            });
        }
        self.out
    }

    fn reject(&mut self, reason: &'static str, message: impl FnOnce() -> String) {
        self.rejected
            .entry(reason)
            .and_modify(|(n, _)| *n += 1)
            .or_insert_with(|| (1, message()));
    }

    fn scope_labels(
        &self,
        scope: Option<&InstrumentationScope>,
        schema_url: &str,
    ) -> Vec<(String, String)> {
        let Some(scope) = scope.filter(|_| self.settings.promote_scope_metadata) else {
            return Vec::new();
        };
        let mut labels = vec![
            ("otel_scope_name".to_string(), scope.name.clone()),
            ("otel_scope_version".to_string(), scope.version.clone()),
            ("otel_scope_schema_url".to_string(), schema_url.to_string()),
        ];
        for kv in &scope.attributes {
            if let Some(name) = names::label_name(&kv.key, self.settings.strategy) {
                labels.push((
                    format!("otel_scope_{name}"),
                    value_string(kv.value.as_ref()).into_owned(),
                ));
            }
        }
        labels
    }

    fn metric(
        &mut self,
        metric: &Metric,
        resource: &ResourceLabels,
        (scope, key): (&[(String, String)], u128),
        span: &mut TimeSpan,
    ) {
        let strategy = self.settings.strategy;
        let Some(data) = &metric.data else {
            return self.reject("empty_metric", || {
                format!("metric {:?} has no data", metric.name)
            });
        };
        let (kind, metric_type) = match data {
            Data::Gauge(_) => (NameKind::Gauge, MetricType::Gauge),
            Data::Sum(s) if s.is_monotonic => (NameKind::Counter, MetricType::Counter),
            Data::Sum(_) => (NameKind::Other, MetricType::Gauge),
            Data::Histogram(_) | Data::ExponentialHistogram(_) => {
                (NameKind::Other, MetricType::Histogram)
            }
            Data::Summary(_) => (NameKind::Other, MetricType::Summary),
        };
        let name = names::metric_name(&metric.name, &metric.unit, kind, strategy);
        if name.is_empty() {
            let points = point_count(data);
            for _ in 0..points {
                self.reject("invalid_metric_name", || {
                    format!("metric name {:?} translates to an empty name", metric.name)
                });
            }
            return;
        }
        if self.metadata_seen.insert(name.clone()) {
            self.out.batch.metadata.push(Metadata {
                metric_family_name: name.clone(),
                metric_type,
                unit: names::unit_name(&metric.unit, strategy),
                help: metric.description.clone(),
            });
        }
        let ctx = MetricContext {
            name: &name,
            resource,
            scope,
            key,
        };
        match data {
            Data::Gauge(g) => {
                for p in &g.data_points {
                    self.number_point(&ctx, p, None, 0, span);
                }
            }
            Data::Sum(s) => {
                let temporality = s.aggregation_temporality;
                if !self.temporality_ok(&metric.name, temporality, s.data_points.len()) {
                    return;
                }
                for p in &s.data_points {
                    // Only counters have a created timestamp.
                    let start = if s.is_monotonic {
                        p.start_time_unix_nano
                    } else {
                        0
                    };
                    self.number_point(&ctx, p, Some(temporality), start, span);
                }
            }
            Data::Histogram(h) => {
                let temporality = h.aggregation_temporality;
                if !self.temporality_ok(&metric.name, temporality, h.data_points.len()) {
                    return;
                }
                for p in &h.data_points {
                    self.histogram_point(&ctx, p, temporality, span);
                }
            }
            Data::ExponentialHistogram(h) => {
                if self.settings.exponential_histograms == ExponentialPolicy::Reject {
                    for _ in &h.data_points {
                        self.reject("exponential_histogram", || {
                            format!(
                                "exponential histogram {:?} refused: otlp.exponential_histograms is reject",
                                metric.name
                            )
                        });
                    }
                    return;
                }
                let temporality = h.aggregation_temporality;
                if !self.temporality_ok(&metric.name, temporality, h.data_points.len()) {
                    return;
                }
                for p in &h.data_points {
                    match self.settings.exponential_histograms {
                        ExponentialPolicy::Native => self.native_point(&ctx, p, temporality, span),
                        _ => self.exponential_point(&ctx, p, temporality, span),
                    }
                }
            }
            Data::Summary(s) => {
                for p in &s.data_points {
                    self.summary_point(&ctx, p, span);
                }
            }
        }
    }

    /// Whether points of this temporality can be stored; rejects them all
    /// otherwise.
    fn temporality_ok(&mut self, metric: &str, temporality: i32, points: usize) -> bool {
        let (reason, why) = match temporality {
            CUMULATIVE => return true,
            DELTA if self.settings.delta == DeltaPolicy::Cumulate => return true,
            DELTA => (
                "delta_temporality",
                "delta temporality is refused by configuration (otlp.delta_temporality: reject)",
            ),
            _ => (
                "invalid_temporality",
                "aggregation temporality is unspecified",
            ),
        };
        for _ in 0..points {
            self.reject(reason, || format!("metric {metric:?}: {why}"));
        }
        false
    }

    fn number_point(
        &mut self,
        ctx: &MetricContext,
        p: &NumberDataPoint,
        temporality: Option<i32>,
        start_nanos: u64,
        span: &mut TimeSpan,
    ) {
        self.out.received_points += 1;
        let Some(ts) = self.timestamp(ctx.name, p.time_unix_nano) else {
            return;
        };
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let value = match p.value {
            Some(number_data_point::Value::AsDouble(v)) => v,
            Some(number_data_point::Value::AsInt(v)) => v as f64,
            None if stale => 0.0,
            None => {
                return self.reject("missing_value", || {
                    format!("a point of {:?} has no value", ctx.name)
                });
            }
        };
        let mut point = self.point(ctx, &p.attributes);
        let Some(series) = self.series(
            ctx,
            &mut point,
            &Output {
                name: ctx.name,
                extra: None,
            },
        ) else {
            return;
        };
        span.see(ts);
        let stored = match self.cumulative(&series, ts, value, stale, temporality, start_nanos) {
            Some(v) => v,
            None => return,
        };
        for e in &p.exemplars {
            self.exemplar(&series, e);
        }
        self.push(series, ts, stored);
    }

    fn histogram_point(
        &mut self,
        ctx: &MetricContext,
        p: &HistogramDataPoint,
        temporality: i32,
        span: &mut TimeSpan,
    ) {
        self.out.received_points += 1;
        let Some(ts) = self.timestamp(ctx.name, p.time_unix_nano) else {
            return;
        };
        if !p.bucket_counts.is_empty() && p.bucket_counts.len() != p.explicit_bounds.len() + 1 {
            return self.reject("invalid_histogram", || {
                format!(
                    "histogram {:?}: {} bucket counts for {} bounds (want bounds + 1)",
                    ctx.name,
                    p.bucket_counts.len(),
                    p.explicit_bounds.len()
                )
            });
        }
        let mut point = self.point(ctx, &p.attributes);
        let mut buckets = Vec::with_capacity(p.bucket_counts.len());
        let mut cumulative = 0u64;
        for (i, count) in p.bucket_counts.iter().enumerate() {
            cumulative = cumulative.saturating_add(*count);
            let bound = p.explicit_bounds.get(i).copied().unwrap_or(f64::INFINITY);
            if bound.is_infinite() && bound > 0.0 {
                break;
            }
            buckets.push((bound, cumulative as f64));
        }
        let histogram = Classic {
            buckets,
            count: p.count as f64,
            sum: p.sum,
        };
        span.see(ts);
        let temporality = Some(temporality);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        self.classic(
            ctx,
            &mut point,
            &histogram,
            ts,
            stale,
            temporality,
            p.start_time_unix_nano,
            &p.exemplars,
        );
    }

    fn exponential_point(
        &mut self,
        ctx: &MetricContext,
        p: &ExponentialHistogramDataPoint,
        temporality: i32,
        span: &mut TimeSpan,
    ) {
        self.out.received_points += 1;
        let Some(ts) = self.timestamp(ctx.name, p.time_unix_nano) else {
            return;
        };
        let mut point = self.point(ctx, &p.attributes);
        let histogram = exponential_to_classic(p, self.settings.max_exponential_buckets);
        span.see(ts);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        self.classic(
            ctx,
            &mut point,
            &histogram,
            ts,
            stale,
            Some(temporality),
            p.start_time_unix_nano,
            &p.exemplars,
        );
    }

    /// An exponential histogram point as a native histogram of the
    /// metric's own name. Delta points are gauge histograms, as in
    /// Prometheus, not running totals.
    fn native_point(
        &mut self,
        ctx: &MetricContext,
        p: &ExponentialHistogramDataPoint,
        temporality: i32,
        span: &mut TimeSpan,
    ) {
        self.out.received_points += 1;
        let Some(ts) = self.timestamp(ctx.name, p.time_unix_nano) else {
            return;
        };
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let histogram = match native::exponential_to_native(p, temporality, ts, stale) {
            Ok(h) => h,
            Err(err) => {
                self.reject(err.reason(), || format!("metric {:?}: {err}", ctx.name));
                return;
            }
        };
        let mut point = self.point(ctx, &p.attributes);
        let output = Output {
            name: ctx.name,
            extra: None,
        };
        let Some(series) = self.series(ctx, &mut point, &output) else {
            return;
        };
        span.see(ts);
        let key = u128::from(series.fingerprint());
        match self.histogram_index.get(&key) {
            Some(&i) => self.out.batch.histograms[i].histograms.push(histogram),
            None => {
                self.histogram_index
                    .insert(key, self.out.batch.histograms.len());
                self.out.batch.histograms.push(SeriesHistograms {
                    series: Arc::clone(&series),
                    histograms: vec![histogram],
                });
            }
        }
        for e in &p.exemplars {
            self.exemplar(&series, e);
        }
    }

    fn summary_point(&mut self, ctx: &MetricContext, p: &SummaryDataPoint, span: &mut TimeSpan) {
        self.out.received_points += 1;
        let Some(ts) = self.timestamp(ctx.name, p.time_unix_nano) else {
            return;
        };
        let mut point = self.point(ctx, &p.attributes);
        span.see(ts);
        let stale = p.flags & NO_RECORDED_VALUE != 0;
        let sum_name = format!("{}_sum", ctx.name);
        let count_name = format!("{}_count", ctx.name);
        let mut outputs: Vec<(Output, f64, bool)> = Vec::new();
        let quantiles: Vec<String> = p
            .quantile_values
            .iter()
            .map(|q| format_float(q.quantile))
            .collect();
        for (q, label) in p.quantile_values.iter().zip(&quantiles) {
            outputs.push((
                Output {
                    name: ctx.name,
                    extra: Some(("quantile", label)),
                },
                q.value,
                false,
            ));
        }
        outputs.push((
            Output {
                name: &sum_name,
                extra: None,
            },
            p.sum,
            true,
        ));
        outputs.push((
            Output {
                name: &count_name,
                extra: None,
            },
            p.count as f64,
            true,
        ));
        for (output, value, counter) in outputs {
            if let Some(series) = self.series(ctx, &mut point, &output) {
                let start = if counter { p.start_time_unix_nano } else { 0 };
                if let Some(v) = self.cumulative(&series, ts, value, stale, Some(CUMULATIVE), start)
                {
                    self.push(series, ts, v);
                }
            }
        }
    }

    /// The `_bucket`, `_sum` and `_count` series of a classic histogram.
    #[allow(clippy::too_many_arguments)]
    fn classic(
        &mut self,
        ctx: &MetricContext,
        point: &mut PointSeries,
        h: &Classic,
        ts: i64,
        stale: bool,
        temporality: Option<i32>,
        start_nanos: u64,
        exemplars: &[Exemplar],
    ) {
        let bucket_name = format!("{}_bucket", ctx.name);
        let sum_name = format!("{}_sum", ctx.name);
        let count_name = format!("{}_count", ctx.name);
        let les: Vec<String> = h.buckets.iter().map(|(b, _)| format_float(*b)).collect();
        let mut bucket_series = Vec::with_capacity(les.len() + 1);
        for ((bound, count), le) in h.buckets.iter().zip(&les) {
            bucket_series.push((*bound, *count, le.as_str()));
        }
        bucket_series.push((f64::INFINITY, h.count, "+Inf"));
        let mut exemplar_targets: Vec<(f64, Arc<Series>)> = Vec::new();
        for (bound, count, le) in bucket_series {
            let output = Output {
                name: &bucket_name,
                extra: Some(("le", le)),
            };
            if let Some(series) = self.series(ctx, point, &output) {
                if let Some(v) =
                    self.cumulative(&series, ts, count, stale, temporality, start_nanos)
                {
                    exemplar_targets.push((bound, Arc::clone(&series)));
                    self.push(series, ts, v);
                }
            }
        }
        let mut rest = vec![(&count_name, h.count)];
        if let Some(sum) = h.sum {
            rest.push((&sum_name, sum));
        }
        for (name, value) in rest {
            if let Some(series) = self.series(ctx, point, &Output { name, extra: None }) {
                if let Some(v) =
                    self.cumulative(&series, ts, value, stale, temporality, start_nanos)
                {
                    self.push(series, ts, v);
                }
            }
        }
        // An exemplar goes to the first bucket that holds its value.
        for e in exemplars {
            let value = exemplar_value(e);
            if let Some((_, series)) = exemplar_targets.iter().find(|(b, _)| value <= *b) {
                let series = Arc::clone(series);
                self.exemplar(&series, e);
            }
        }
    }

    /// The value to store for a point of `series`: delta points become
    /// running totals, no-recorded-value points the staleness marker. Adds
    /// the created-timestamp zero sample when enabled.
    fn cumulative(
        &mut self,
        series: &Arc<Series>,
        ts: i64,
        value: f64,
        stale: bool,
        temporality: Option<i32>,
        start_nanos: u64,
    ) -> Option<f64> {
        if stale {
            return Some(stale_nan());
        }
        match temporality {
            Some(DELTA) => match self.state.accumulate(series.fingerprint(), ts, value) {
                Ok(total) => Some(total),
                Err(e) => {
                    self.reject("delta_out_of_order", || {
                        format!(
                            "series {}: delta point at {ts} ms is not after the last one at {} ms",
                            series.labels(),
                            e.last_ms
                        )
                    });
                    None
                }
            },
            Some(CUMULATIVE) => {
                let start_ms = (start_nanos / 1_000_000) as i64;
                if self.settings.created_timestamp_zero_samples
                    && start_ms > 0
                    && start_ms < ts
                    && self.state.new_start(series.fingerprint(), start_ms)
                {
                    self.push(Arc::clone(series), start_ms, 0.0);
                }
                Some(value)
            }
            _ => Some(value),
        }
    }

    fn push(&mut self, series: Arc<Series>, timestamp_ms: i64, value: f64) {
        let key = u128::from(series.fingerprint());
        let sample = Sample {
            timestamp_ms,
            value,
        };
        match self.index.get(&key) {
            Some(&i) => self.out.batch.series[i].samples.push(sample),
            None => {
                self.index.insert(key, self.out.batch.series.len());
                self.out
                    .batch
                    .series
                    .push(SeriesSamples::new(series, vec![sample]));
            }
        }
    }

    fn exemplar(&mut self, series: &Series, e: &Exemplar) {
        let mut labels = Vec::new();
        if !e.trace_id.is_empty() {
            labels.push(("trace_id".to_string(), hex(&e.trace_id)));
        }
        if !e.span_id.is_empty() {
            labels.push(("span_id".to_string(), hex(&e.span_id)));
        }
        for kv in &e.filtered_attributes {
            if let Some(name) = names::label_name(&kv.key, self.settings.strategy) {
                labels.push((name, value_string(kv.value.as_ref()).into_owned()));
            }
        }
        self.out.batch.exemplars.push(ExemplarRow {
            metric_name: series.metric_name().to_string(),
            fingerprint: series.fingerprint(),
            timestamp_ms: (e.time_unix_nano / 1_000_000) as i64,
            value: exemplar_value(e),
            labels,
        });
    }

    fn timestamp(&mut self, name: &str, nanos: u64) -> Option<i64> {
        if nanos == 0 {
            self.reject("missing_timestamp", || {
                format!("a point of {name:?} has no time (time_unix_nano is 0)")
            });
            return None;
        }
        Some((nanos / 1_000_000) as i64)
    }

    /// A point's labels without the metric name, sorted by name: attributes
    /// (escaped, colliding keys joined), promoted resource attributes the
    /// point does not have, scope labels, `job` and `instance`.
    fn point_labels(&self, ctx: &MetricContext, attributes: &[KeyValue]) -> Vec<(String, String)> {
        let strategy = self.settings.strategy;
        let mut keyed: Vec<(String, &str, Cow<str>)> =
            Vec::with_capacity(attributes.len() + ctx.resource.promoted.len());
        for kv in attributes {
            if let Some(name) = names::label_name(&kv.key, strategy) {
                keyed.push((name, &kv.key, value_string(kv.value.as_ref())));
            }
        }
        for (key, value) in &ctx.resource.promoted {
            if !attributes.iter().any(|kv| &kv.key == key)
                && let Some(name) = names::label_name(key, strategy)
            {
                keyed.push((name, key, Cow::Borrowed(value)));
            }
        }
        keyed.sort_by(|a, b| (&a.0, a.1).cmp(&(&b.0, b.1)));
        let mut labels: Vec<(String, String)> = Vec::with_capacity(keyed.len() + 4);
        for (name, _, value) in keyed {
            match labels.last_mut() {
                Some((last, joined)) if *last == name => {
                    joined.push(';');
                    joined.push_str(&value);
                }
                _ => labels.push((name, value.into_owned())),
            }
        }
        let mut set = |name: &str, value: &str| match labels.iter_mut().find(|(n, _)| n == name) {
            Some((_, v)) => *v = value.to_string(),
            None => labels.push((name.to_string(), value.to_string())),
        };
        for (name, value) in ctx.scope {
            set(name, value);
        }
        if let Some(job) = &ctx.resource.job {
            set("job", job);
        }
        if let Some(instance) = &ctx.resource.instance {
            set("instance", instance);
        }
        labels.retain(|(_, v)| !v.is_empty());
        labels.sort_by(|a, b| a.0.cmp(&b.0));
        labels
    }

    /// A point's series key from its context and raw attributes (in the
    /// order sent: another order only costs another registry entry).
    fn point<'p>(&mut self, ctx: &MetricContext, attributes: &'p [KeyValue]) -> PointSeries<'p> {
        let buf = &mut self.scratch;
        buf.clear();
        buf.extend_from_slice(&ctx.key.to_le_bytes());
        for kv in attributes {
            buf.extend_from_slice(kv.key.as_bytes());
            buf.push(0xff);
            raw_value(kv.value.as_ref(), buf);
            buf.push(0xfe);
        }
        PointSeries {
            key: xxh3_128(buf),
            attributes,
            labels: None,
        }
    }

    /// The registered series of `point` for one output (name and extra
    /// label), validated and registered when new.
    fn series(
        &mut self,
        ctx: &MetricContext,
        point: &mut PointSeries,
        output: &Output,
    ) -> Option<Arc<Series>> {
        let buf = &mut self.scratch;
        buf.clear();
        buf.extend_from_slice(&point.key.to_le_bytes());
        buf.extend_from_slice(output.name.as_bytes());
        if let Some((name, value)) = output.extra {
            buf.push(0xff);
            buf.extend_from_slice(name.as_bytes());
            buf.push(0xfe);
            buf.extend_from_slice(value.as_bytes());
        }
        let key = xxh3_128(buf);
        if let Some(series) = self.registry.get(key) {
            return Some(series);
        }
        let base = match &point.labels {
            Some(labels) => labels,
            None => point
                .labels
                .insert(self.point_labels(ctx, point.attributes)),
        };
        let extra_name = output.extra.map(|(n, _)| n);
        let mut pairs: Vec<(String, String)> = base
            .iter()
            .filter(|(n, _)| Some(n.as_str()) != extra_name && n != "__name__")
            .cloned()
            .collect();
        pairs.push(("__name__".to_string(), output.name.to_string()));
        if let Some((name, value)) = output.extra {
            pairs.push((name.to_string(), value.to_string()));
        }
        match Labels::new(pairs, self.settings.strategy.name_validation())
            .and_then(|labels| self.registry.admit(key, labels))
        {
            Ok(series) => Some(series),
            Err(err) => {
                self.reject(err.reason(), || format!("metric {:?}: {err}", output.name));
                None
            }
        }
    }

    /// `target_info` for a resource with attributes beyond `service.*`.
    fn target_info(&mut self, attributes: &[KeyValue], resource: &ResourceLabels, span: &TimeSpan) {
        let Some((first, last)) = span.range else {
            return;
        };
        let identifying = [SERVICE_NAME, SERVICE_NAMESPACE, SERVICE_INSTANCE_ID];
        let kept: Vec<KeyValue> = attributes
            .iter()
            .filter(|kv| {
                self.settings.keep_identifying_resource_attributes
                    || !identifying.contains(&kv.key.as_str())
            })
            .cloned()
            .collect();
        if !attributes
            .iter()
            .any(|kv| !identifying.contains(&kv.key.as_str()))
        {
            return;
        }
        let info_resource = ResourceLabels {
            job: resource.job.clone(),
            instance: resource.instance.clone(),
            promoted: Vec::new(),
        };
        let ctx = MetricContext {
            name: "target_info",
            resource: &info_resource,
            scope: &[],
            key: info_resource.key(&[]),
        };
        let mut point = self.point(&ctx, &kept);
        let Some(series) = self.series(
            &ctx,
            &mut point,
            &Output {
                name: "target_info",
                extra: None,
            },
        ) else {
            return;
        };
        if self.metadata_seen.insert("target_info".to_string()) {
            self.out.batch.metadata.push(Metadata {
                metric_family_name: "target_info".to_string(),
                metric_type: MetricType::Gauge,
                unit: String::new(),
                help: "Target metadata".to_string(),
            });
        }
        let step = (self.settings.lookback_delta.as_millis() as i64 / 2).max(1);
        // Points far apart in one request (a bad clock, or a hostile
        // client) would ask for billions of samples: only the newest
        // TARGET_INFO_MAX_SAMPLES intervals get one.
        let mut ts = first.max(last.saturating_sub(step.saturating_mul(TARGET_INFO_MAX_SAMPLES)));
        while ts < last {
            self.push(Arc::clone(&series), ts, 1.0);
            ts += step;
        }
        self.push(series, last, 1.0);
    }
}

/// Most `target_info` samples one resource of one request gets (every
/// half lookback: 41 hours at the default 5m), before the one at its
/// newest point.
const TARGET_INFO_MAX_SAMPLES: i64 = 1000;

struct MetricContext<'a> {
    name: &'a str,
    resource: &'a ResourceLabels,
    scope: &'a [(String, String)],
    /// [`ResourceLabels::key`] of the resource and scope.
    key: u128,
}

/// The series of one data point: found in the registry by a hash of the
/// point's raw inputs (which determine its labels), so a known series costs
/// no label building; the labels are built once, on the first miss.
struct PointSeries<'p> {
    key: u128,
    attributes: &'p [KeyValue],
    labels: Option<Vec<(String, String)>>,
}

/// A classic histogram: cumulative counts by finite upper bound.
#[derive(Debug, PartialEq)]
struct Classic {
    buckets: Vec<(f64, f64)>,
    count: f64,
    sum: Option<f64>,
}

/// An exponential histogram as classic buckets: negative buckets (upper
/// bound -base^i), the zero bucket (upper bound the zero threshold), then
/// positive buckets (upper bound base^(i+1)), counts made cumulative.
fn exponential_to_classic(p: &ExponentialHistogramDataPoint, max_buckets: usize) -> Classic {
    let empty = Vec::new();
    let (mut pos_offset, mut pos) = p
        .positive
        .as_ref()
        .map_or((0, empty.clone()), |b| (b.offset, b.bucket_counts.clone()));
    let (mut neg_offset, mut neg) = p
        .negative
        .as_ref()
        .map_or((0, empty), |b| (b.offset, b.bucket_counts.clone()));
    let mut scale = p.scale;
    // Coarser by one scale merges bucket pairs: index i goes to i >> 1.
    while pos.len() + neg.len() > max_buckets.max(1) && scale > -10 {
        (pos_offset, pos) = downscale(pos_offset, &pos);
        (neg_offset, neg) = downscale(neg_offset, &neg);
        scale -= 1;
    }
    let bound = |index: i64| 2f64.powf(index as f64 * 2f64.powi(-scale));
    let mut buckets = Vec::with_capacity(pos.len() + neg.len() + 1);
    let mut cumulative = 0u64;
    for (i, count) in neg.iter().enumerate().rev() {
        cumulative = cumulative.saturating_add(*count);
        buckets.push((-bound(neg_offset as i64 + i as i64), cumulative as f64));
    }
    cumulative = cumulative.saturating_add(p.zero_count);
    if p.zero_count > 0 || !neg.is_empty() || !pos.is_empty() {
        buckets.push((p.zero_threshold.max(0.0), cumulative as f64));
    }
    for (i, count) in pos.iter().enumerate() {
        cumulative = cumulative.saturating_add(*count);
        let upper = bound(pos_offset as i64 + i as i64 + 1);
        if upper.is_finite() {
            buckets.push((upper, cumulative as f64));
        }
    }
    // Bounds that coincide after rounding would make duplicate `le`s.
    buckets.dedup_by(|later, earlier| {
        if later.0 <= earlier.0 {
            earlier.1 = later.1;
            true
        } else {
            false
        }
    });
    Classic {
        buckets,
        count: p.count as f64,
        sum: p.sum,
    }
}

fn downscale(offset: i32, counts: &[u64]) -> (i32, Vec<u64>) {
    if counts.is_empty() {
        return (offset, Vec::new());
    }
    let new_offset = offset >> 1;
    let mut out: Vec<u64> = Vec::with_capacity(counts.len() / 2 + 1);
    for (i, count) in counts.iter().enumerate() {
        let index = ((offset + i as i32) >> 1) - new_offset;
        let index = index as usize;
        if out.len() <= index {
            out.resize(index + 1, 0);
        }
        out[index] = out[index].saturating_add(*count);
    }
    (new_offset, out)
}

fn point_count(data: &Data) -> usize {
    match data {
        Data::Gauge(g) => g.data_points.len(),
        Data::Sum(s) => s.data_points.len(),
        Data::Histogram(h) => h.data_points.len(),
        Data::ExponentialHistogram(h) => h.data_points.len(),
        Data::Summary(s) => s.data_points.len(),
    }
}

fn exemplar_value(e: &Exemplar) -> f64 {
    match e.value {
        Some(exemplar::Value::AsDouble(v)) => v,
        Some(exemplar::Value::AsInt(v)) => v as f64,
        None => 0.0,
    }
}

/// An attribute value as the label value Prometheus makes of it
/// (`pcommon.Value.AsString`): JSON for arrays and maps, base64 for bytes.
fn value_string(value: Option<&AnyValue>) -> Cow<'_, str> {
    match value.and_then(|v| v.value.as_ref()) {
        None => Cow::Borrowed(""),
        Some(any_value::Value::StringValue(s)) => Cow::Borrowed(s),
        Some(other) => Cow::Owned(match other {
            any_value::Value::BoolValue(b) => b.to_string(),
            any_value::Value::IntValue(i) => i.to_string(),
            any_value::Value::DoubleValue(d) => format_float(*d),
            any_value::Value::BytesValue(b) => base64::engine::general_purpose::STANDARD.encode(b),
            _ => json_value(other).to_string(),
        }),
    }
}

/// An attribute value's bytes for a series key: a type tag, then the value.
fn raw_value(value: Option<&AnyValue>, buf: &mut Vec<u8>) {
    match value.and_then(|v| v.value.as_ref()) {
        None => buf.push(0),
        Some(any_value::Value::StringValue(s)) => {
            buf.push(1);
            buf.extend_from_slice(s.as_bytes());
        }
        Some(any_value::Value::IntValue(i)) => {
            buf.push(2);
            buf.extend_from_slice(&i.to_le_bytes());
        }
        Some(any_value::Value::DoubleValue(d)) => {
            buf.push(3);
            buf.extend_from_slice(&d.to_bits().to_le_bytes());
        }
        Some(any_value::Value::BoolValue(b)) => buf.extend_from_slice(&[4, u8::from(*b)]),
        Some(_) => {
            // Rare (arrays, maps, bytes): the label value itself.
            buf.push(5);
            buf.extend_from_slice(value_string(value).as_bytes());
        }
    }
}

fn json_value(value: &any_value::Value) -> serde_json::Value {
    use serde_json::Value as J;
    match value {
        any_value::Value::StringValue(s) => J::String(s.clone()),
        any_value::Value::BoolValue(b) => J::Bool(*b),
        any_value::Value::IntValue(i) => J::from(*i),
        any_value::Value::DoubleValue(d) => J::from(*d),
        any_value::Value::BytesValue(b) => {
            J::String(base64::engine::general_purpose::STANDARD.encode(b))
        }
        any_value::Value::ArrayValue(a) => J::Array(
            a.values
                .iter()
                .map(|v| v.value.as_ref().map_or(J::Null, json_value))
                .collect(),
        ),
        any_value::Value::KvlistValue(kv) => J::Object(
            kv.values
                .iter()
                .map(|kv| {
                    let v = kv.value.as_ref().and_then(|v| v.value.as_ref());
                    (kv.key.clone(), v.map_or(J::Null, json_value))
                })
                .collect(),
        ),
        any_value::Value::StringValueStrindex(i) => J::from(*i),
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::common::v1::any_value::Value as AV;
    use opentelemetry_proto::tonic::metrics::v1::exponential_histogram_data_point::Buckets;
    use opentelemetry_proto::tonic::metrics::v1::summary_data_point::ValueAtQuantile;
    use opentelemetry_proto::tonic::metrics::v1::{
        Gauge, Histogram, ResourceMetrics, ScopeMetrics, Sum, Summary,
    };
    use opentelemetry_proto::tonic::resource::v1::Resource;

    const T: u64 = 1_700_000_000_000_000_000;
    const T_MS: i64 = 1_700_000_000_000;

    fn kv(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue {
                value: Some(AV::StringValue(value.into())),
            }),
            ..Default::default()
        }
    }

    fn request(resource: Vec<KeyValue>, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
        ExportMetricsServiceRequest {
            resource_metrics: vec![ResourceMetrics {
                resource: Some(Resource {
                    attributes: resource,
                    ..Default::default()
                }),
                scope_metrics: vec![ScopeMetrics {
                    metrics,
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
    }

    fn metric(name: &str, unit: &str, data: Data) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            description: format!("{name} help"),
            data: Some(data),
            ..Default::default()
        }
    }

    fn number(attributes: Vec<KeyValue>, time: u64, value: f64) -> NumberDataPoint {
        NumberDataPoint {
            attributes,
            time_unix_nano: time,
            value: Some(number_data_point::Value::AsDouble(value)),
            ..Default::default()
        }
    }

    fn run(request: &ExportMetricsServiceRequest, settings: &TranslateSettings) -> Translated {
        let registry = SeriesRegistry::new(1 << 20);
        let state = SeriesState::new(1000, Duration::from_secs(60));
        translate(request, settings, &registry, &state)
    }

    /// Every stored series as "labels => values", sorted.
    fn dump(t: &Translated) -> Vec<String> {
        let mut out: Vec<String> = t
            .batch
            .series
            .iter()
            .map(|s| {
                let values: Vec<String> = s
                    .samples
                    .iter()
                    .map(|x| format!("{}@{}", x.value, x.timestamp_ms - T_MS))
                    .collect();
                format!("{} => {}", s.labels(), values.join(","))
            })
            .collect();
        out.sort();
        out
    }

    #[test]
    fn target_info_is_bounded_for_points_far_apart() {
        // Found by the otlp fuzz target: a point in the year 126,000 beside
        // one today asked for billions of target_info samples.
        let far = 3_933_785_414_269_796_352;
        let req = request(
            vec![kv("service.name", "api"), kv("host.name", "h")],
            vec![metric(
                "g",
                "",
                Data::Gauge(Gauge {
                    data_points: vec![number(vec![], T, 1.0), number(vec![], far, 2.0)],
                }),
            )],
        );
        let t = run(&req, &TranslateSettings::default());
        let info = t
            .batch
            .series
            .iter()
            .find(|s| s.labels().to_string().contains("target_info"))
            .expect("target_info");
        let step = 150_000;
        assert_eq!(info.samples.len(), 1001);
        let last = (far / 1_000_000) as i64;
        assert_eq!(info.samples[0].timestamp_ms, last - 1000 * step);
        assert_eq!(info.samples[1000].timestamp_ms, last);
    }

    #[test]
    fn labels_job_instance_collisions_and_promotion() {
        let req = request(
            vec![
                kv("service.name", "api"),
                kv("service.namespace", "shop"),
                kv("service.instance.id", "i-1"),
                kv("cloud.region", "eu"),
                kv("host.name", "h1"),
            ],
            vec![metric(
                "http.requests",
                "{request}",
                Data::Sum(Sum {
                    data_points: vec![number(
                        vec![
                            kv("a.b", "1"),
                            kv("a_b", "2"),
                            kv("job", "ignored"),
                            kv("_x", "3"),
                        ],
                        T,
                        42.0,
                    )],
                    aggregation_temporality: CUMULATIVE,
                    is_monotonic: true,
                }),
            )],
        );
        let settings = TranslateSettings {
            promote_resource_attributes: vec!["cloud.region".into()],
            ..Default::default()
        };
        let t = run(&req, &settings);
        assert_eq!(t.received_points, 1);
        assert_eq!(t.rejected_points, 0);
        assert_eq!(
            dump(&t),
            vec![
                r#"http_requests_total{a_b="1;2", cloud_region="eu", instance="i-1", job="shop/api", key_x="3"} => 42@0"#,
                r#"target_info{cloud_region="eu", host_name="h1", instance="i-1", job="shop/api"} => 1@0"#,
            ]
        );
        assert_eq!(t.batch.metadata.len(), 2);
        assert_eq!(
            t.batch.metadata[0].metric_family_name,
            "http_requests_total"
        );
        assert_eq!(t.batch.metadata[0].metric_type, MetricType::Counter);
        assert_eq!(t.batch.metadata[0].help, "http.requests help");
    }

    #[test]
    fn histograms_summaries_and_staleness() {
        let histogram = HistogramDataPoint {
            time_unix_nano: T,
            count: 4,
            sum: Some(2.5),
            bucket_counts: vec![1, 2, 0, 1],
            explicit_bounds: vec![0.1, 1.0, 5.0],
            exemplars: vec![Exemplar {
                time_unix_nano: T,
                trace_id: vec![0xab; 16],
                value: Some(exemplar::Value::AsDouble(0.5)),
                ..Default::default()
            }],
            ..Default::default()
        };
        let summary = SummaryDataPoint {
            time_unix_nano: T,
            count: 10,
            sum: 20.0,
            quantile_values: vec![ValueAtQuantile {
                quantile: 0.99,
                value: 7.0,
            }],
            ..Default::default()
        };
        let stale = NumberDataPoint {
            time_unix_nano: T + 1_000_000_000,
            flags: NO_RECORDED_VALUE,
            ..Default::default()
        };
        let req = request(
            vec![kv("service.name", "svc")],
            vec![
                metric(
                    "latency",
                    "ms",
                    Data::Histogram(Histogram {
                        data_points: vec![histogram],
                        aggregation_temporality: CUMULATIVE,
                    }),
                ),
                metric(
                    "rpc",
                    "s",
                    Data::Summary(Summary {
                        data_points: vec![summary],
                    }),
                ),
                metric(
                    "temp",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], T, 3.0), stale],
                    }),
                ),
            ],
        );
        let t = run(&req, &TranslateSettings::default());
        let d = dump(&t);
        assert_eq!(
            d,
            vec![
                r#"latency_milliseconds_bucket{job="svc", le="+Inf"} => 4@0"#,
                r#"latency_milliseconds_bucket{job="svc", le="0.1"} => 1@0"#,
                r#"latency_milliseconds_bucket{job="svc", le="1"} => 3@0"#,
                r#"latency_milliseconds_bucket{job="svc", le="5"} => 3@0"#,
                r#"latency_milliseconds_count{job="svc"} => 4@0"#,
                r#"latency_milliseconds_sum{job="svc"} => 2.5@0"#,
                r#"rpc_seconds_count{job="svc"} => 10@0"#,
                r#"rpc_seconds_sum{job="svc"} => 20@0"#,
                r#"rpc_seconds{job="svc", quantile="0.99"} => 7@0"#,
                r#"temp{job="svc"} => 3@0,NaN@1000"#,
            ]
        );
        let temp = t
            .batch
            .series
            .iter()
            .find(|s| s.series.metric_name() == "temp")
            .unwrap();
        assert!(comet_schema::model::is_stale_nan(temp.samples[1].value));
        // The exemplar went to the first bucket holding its value.
        assert_eq!(t.batch.exemplars.len(), 1);
        let e = &t.batch.exemplars[0];
        let bucket = t
            .batch
            .series
            .iter()
            .find(|s| s.fingerprint() == e.fingerprint)
            .unwrap();
        assert_eq!(bucket.labels().get("le"), Some("1"));
        assert_eq!(e.labels, vec![("trace_id".to_string(), "ab".repeat(16))]);
    }

    #[test]
    fn deltas_cumulate_or_are_refused() {
        let sum = |points: Vec<NumberDataPoint>| {
            metric(
                "events",
                "",
                Data::Sum(Sum {
                    data_points: points,
                    aggregation_temporality: DELTA,
                    is_monotonic: true,
                }),
            )
        };
        let registry = SeriesRegistry::new(1 << 20);
        let state = SeriesState::new(1000, Duration::from_secs(60));
        let settings = TranslateSettings::default();
        let first = request(vec![], vec![sum(vec![number(vec![], T, 5.0)])]);
        let second = request(
            vec![],
            vec![sum(vec![
                number(vec![], T + 2_000_000_000, 7.0),
                number(vec![], T + 1_000_000_000, 1.0),
            ])],
        );
        let a = translate(&first, &settings, &registry, &state);
        let b = translate(&second, &settings, &registry, &state);
        assert_eq!(dump(&a), vec![r#"events_total{} => 5@0"#]);
        assert_eq!(dump(&b), vec![r#"events_total{} => 12@2000"#]);
        assert_eq!(b.rejected_points, 1);
        assert_eq!(b.rejections[0].reason, "delta_out_of_order");

        let refuse = TranslateSettings {
            delta: DeltaPolicy::Reject,
            ..Default::default()
        };
        let c = translate(&first, &refuse, &registry, &state);
        assert!(c.batch.series.is_empty());
        assert_eq!(c.rejected_points, 1);
        assert_eq!(c.rejections[0].reason, "delta_temporality");
    }

    #[test]
    fn bad_points_are_rejected_with_reasons() {
        let req = request(
            vec![],
            vec![
                metric(
                    "x",
                    "",
                    Data::Sum(Sum {
                        data_points: vec![number(vec![], T, 1.0)],
                        aggregation_temporality: 0,
                        is_monotonic: true,
                    }),
                ),
                metric(
                    "y",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], 0, 1.0), number(vec![], T, 2.0)],
                    }),
                ),
                metric(
                    "...",
                    "",
                    Data::Gauge(Gauge {
                        data_points: vec![number(vec![], T, 1.0)],
                    }),
                ),
            ],
        );
        let t = run(&req, &TranslateSettings::default());
        assert_eq!(t.rejected_points, 3);
        let reasons: Vec<_> = t.rejections.iter().map(|r| r.reason).collect();
        assert_eq!(
            reasons,
            vec![
                "invalid_metric_name",
                "invalid_temporality",
                "missing_timestamp"
            ]
        );
        assert_eq!(dump(&t), vec![r#"y{} => 2@0"#]);
    }

    #[test]
    fn exponential_buckets_become_classic() {
        // Scale 0: base 2; positive bucket i holds (2^i, 2^(i+1)].
        let p = ExponentialHistogramDataPoint {
            count: 6,
            sum: Some(10.0),
            scale: 0,
            zero_count: 1,
            positive: Some(Buckets {
                offset: 0,
                bucket_counts: vec![2, 1, 1],
            }),
            negative: Some(Buckets {
                offset: 1,
                bucket_counts: vec![1],
            }),
            ..Default::default()
        };
        let c = exponential_to_classic(&p, 160);
        assert_eq!(
            c.buckets,
            vec![(-2.0, 1.0), (0.0, 2.0), (2.0, 4.0), (4.0, 5.0), (8.0, 6.0)]
        );
        assert_eq!(c.count, 6.0);
        // At most 2 buckets: scale 0 -> -1 (base 4) merges pairs.
        let c = exponential_to_classic(
            &ExponentialHistogramDataPoint {
                negative: None,
                zero_count: 0,
                ..p
            },
            2,
        );
        assert_eq!(c.buckets, vec![(0.0, 0.0), (4.0, 3.0), (16.0, 4.0)]);
    }

    #[test]
    fn attribute_values_as_prometheus_writes_them() {
        let v = |value| value_string(Some(&AnyValue { value: Some(value) })).into_owned();
        assert_eq!(v(AV::IntValue(200)), "200");
        assert_eq!(v(AV::BoolValue(true)), "true");
        assert_eq!(v(AV::DoubleValue(0.5)), "0.5");
        assert_eq!(
            v(AV::ArrayValue(
                opentelemetry_proto::tonic::common::v1::ArrayValue {
                    values: vec![AnyValue {
                        value: Some(AV::StringValue("a".into()))
                    }],
                }
            )),
            r#"["a"]"#
        );
    }
}
