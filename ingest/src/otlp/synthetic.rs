//! Synthetic OTLP requests shaped like a service's metrics (gauges with
//! many attributes), for the load generator and the benchmarks.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    Gauge, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// Shape of one OTLP request.
#[derive(Debug, Clone, Copy)]
pub struct OtlpShape {
    pub metrics: usize,
    pub points: usize,
    pub attributes: usize,
}

impl OtlpShape {
    pub fn points_per_request(&self) -> usize {
        self.metrics * self.points
    }
}

/// The request for series block `block` (each block is one request's
/// worth of series: `metrics x points`) at `time_ns`; values grow with
/// `round`.
pub fn request(
    shape: OtlpShape,
    prefix: &str,
    block: usize,
    time_ns: u64,
    round: usize,
) -> ExportMetricsServiceRequest {
    let kv = |k: &str, v: String| KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v)),
        }),
        ..Default::default()
    };
    const KEYS: [&str; 10] = [
        "host.name",
        "point",
        "region",
        "zone",
        "service.version",
        "deployment.environment",
        "k8s.pod.name",
        "container.name",
        "team",
        "shard",
    ];
    let metrics = (0..shape.metrics)
        .map(|m| {
            let data_points = (0..shape.points)
                .map(|p| {
                    let attributes = (0..shape.attributes)
                        .map(|a| {
                            let key = KEYS
                                .get(a)
                                .map_or_else(|| format!("attr.{a}"), |k| k.to_string());
                            let value = match a {
                                0 => format!("host-{block}"),
                                1 => p.to_string(),
                                _ => format!("v{}", (block + p + a) % 5),
                            };
                            kv(&key, value)
                        })
                        .collect();
                    NumberDataPoint {
                        attributes,
                        time_unix_nano: time_ns,
                        value: Some(number_data_point::Value::AsDouble(
                            (round * (m + p + 1)) as f64,
                        )),
                        ..Default::default()
                    }
                })
                .collect();
            Metric {
                name: format!("{prefix}.otlp.{m}"),
                unit: "1".into(),
                description: "comet bench ingest".into(),
                data: Some(Data::Gauge(Gauge { data_points })),
                ..Default::default()
            }
        })
        .collect();
    let resource = ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![
                kv("service.name", "comet-bench".into()),
                kv("service.instance.id", format!("bench-{block}")),
            ],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        ..Default::default()
    };
    ExportMetricsServiceRequest {
        resource_metrics: vec![resource],
    }
}
