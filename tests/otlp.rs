//! OTLP ingestion against a running comet and a real ClickHouse: the
//! official OpenTelemetry Python SDK exporting over gRPC and HTTP, read back
//! through PromQL; OTLP/JSON, gzip, partial success, staleness and
//! exemplars; and the retryable answers when the buffer is full or
//! ClickHouse is down.

mod common;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{CometProcess, free_port, metric_value, serve_new_database, workspace_dir};
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Exemplar, Gauge, Metric, NumberDataPoint, ResourceMetrics,
    ScopeMetrics, Sum, exemplar, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use prost::Message;
use serde_json::Value;
use tonic_types::StatusExt;

const START: Duration = Duration::from_secs(120);

/// The Python with the OpenTelemetry SDK (scripts/install-test-clients.sh).
fn otel_python() -> PathBuf {
    let python = std::env::var_os("COMET_TEST_OTEL_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_dir().join(".otel-venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run scripts/install-test-clients.sh (make test does)",
        python.display()
    );
    python
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

struct OtlpComet {
    process: CometProcess,
    grpc: String,
    http: String,
    client: reqwest::Client,
}

impl OtlpComet {
    async fn start(extra: &[&str]) -> Self {
        Self::start_with(None, extra).await
    }

    /// With `clickhouse_url`, on that server instead of the shared one.
    async fn start_with(clickhouse_url: Option<&str>, extra: &[&str]) -> Self {
        let grpc = format!("127.0.0.1:{}", free_port());
        let http = format!("127.0.0.1:{}", free_port());
        let mut args = vec![
            "--otlp-grpc-listen-address",
            &grpc,
            "--otlp-http-listen-address",
            &http,
        ];
        args.extend_from_slice(extra);
        let mut process = match clickhouse_url {
            None => serve_new_database("comet_otlp", &args).0,
            Some(url) => {
                let mut full = vec!["serve", "--clickhouse-url", url];
                full.extend_from_slice(&args);
                CometProcess::spawn(&full)
            }
        };
        process.wait_ready(START).await;
        Self {
            process,
            grpc: format!("http://{grpc}"),
            http: format!("http://{http}"),
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
        }
    }

    /// Runs tests/otlp/export.py with the SDK's gRPC or HTTP exporter.
    async fn python_export(&self, protocol: &str, run_id: &str) {
        let endpoint = if protocol == "grpc" {
            &self.grpc
        } else {
            &self.http
        };
        let script = workspace_dir().join("tests/otlp/export.py");
        let run = tokio::process::Command::new(otel_python())
            .arg(script)
            .args([protocol, endpoint, run_id])
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(120), run)
            .await
            .expect("the SDK export finished in time")
            .expect("python runs");
        assert!(
            output.status.success(),
            "export.py {protocol} failed: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// An instant query at `time` (now when `None`): label sets (without
    /// nothing removed) and values.
    async fn query(&self, promql: &str, time: Option<f64>) -> Vec<(BTreeMap<String, String>, f64)> {
        let mut params = vec![("query", promql.to_string())];
        if let Some(t) = time {
            params.push(("time", format!("{t:.3}")));
        }
        let body: Value = self
            .client
            .get(self.process.url("/api/v1/query"))
            .query(&params)
            .send()
            .await
            .expect("query")
            .json()
            .await
            .expect("JSON");
        assert_eq!(body["status"], "success", "{promql}: {body}");
        body["data"]["result"]
            .as_array()
            .expect("vector")
            .iter()
            .map(|s| {
                let labels = s["metric"]
                    .as_object()
                    .expect("labels")
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_string()))
                    .collect();
                let value = s["value"][1]
                    .as_str()
                    .expect("value")
                    .parse()
                    .expect("number");
                (labels, value)
            })
            .collect()
    }

    /// The single value of `promql`, failing when there is not exactly one.
    async fn value(&self, promql: &str) -> f64 {
        let result = self.query(promql, None).await;
        assert_eq!(result.len(), 1, "{promql}: {result:?}");
        result[0].1
    }

    async fn post(&self, url: String, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(url)
            .header("Content-Type", content_type)
            .body(body)
            .send()
            .await
            .expect("POST")
    }

    async fn metrics(&self) -> String {
        self.process.metrics_text().await
    }
}

/// Everything the SDK sent, for one exporter, as PromQL reads it back.
async fn check_sdk_export(comet: &OtlpComet, instance: &str) {
    let sel = |name: &str, extra: &str| {
        format!(r#"{name}{{job="shop/checkout", instance="{instance}"{extra}}}"#)
    };
    let http_attrs = r#", http_method="GET", http_route="/cart", status_code="200""#;
    // Scope and promoted resource labels are on every series.
    let counter = comet
        .query(&sel("test_requests_total", http_attrs), None)
        .await;
    assert_eq!(counter.len(), 1, "{counter:?}");
    let (labels, value) = &counter[0];
    assert_eq!(*value, 12.0);
    assert_eq!(labels["otel_scope_name"], "comet-test");
    assert_eq!(labels["otel_scope_version"], "1.2.3");
    assert_eq!(labels["deployment_environment"], "test");
    assert!(!labels.contains_key("host_name"), "{labels:?}");

    assert_eq!(
        comet
            .value(&sel("test_queue_size", r#", queue="orders""#))
            .await,
        7.0
    );
    assert_eq!(
        comet
            .value(&sel("test_temperature_celsius", r#", room="lab""#))
            .await,
        22.25
    );
    // Exported as deltas, stored as the running total.
    assert_eq!(
        comet
            .value(&sel("test_delta_events_total", r#", kind="click""#))
            .await,
        12.0
    );

    // Explicit buckets [0.01, 0.1, 1] over 0.002, 0.02, 0.2, 2.
    for (le, count) in [("0.01", 1.0), ("0.1", 2.0), ("1", 3.0), ("+Inf", 4.0)] {
        let extra = format!(r#"{http_attrs}, le="{le}""#);
        assert_eq!(
            comet
                .value(&sel("test_duration_seconds_bucket", &extra))
                .await,
            count,
            "le={le}"
        );
    }
    let sum = comet
        .value(&sel("test_duration_seconds_sum", http_attrs))
        .await;
    assert!((sum - 2.222).abs() < 1e-9, "{sum}");
    assert_eq!(
        comet
            .value(&sel("test_duration_seconds_count", http_attrs))
            .await,
        4.0
    );
    let p50 = comet
        .value(&format!(
            "histogram_quantile(0.5, {})",
            sel("test_duration_seconds_bucket", http_attrs)
        ))
        .await;
    assert!((0.01..=0.1).contains(&p50), "{p50}");

    // The exponential histogram of 1, 2, 4, 1000 is a native histogram
    // of the metric's own name, as Prometheus's OTLP receiver stores it.
    let size = sel("test_size_bytes", "");
    assert_eq!(comet.value(&format!("histogram_count({size})")).await, 4.0);
    assert_eq!(comet.value(&format!("histogram_sum({size})")).await, 1007.0);
    // Two of the four observations are at most 2 and two at least 4:
    // Prometheus takes the median from the top (for q >= 0.5), at the
    // lower edge of the bucket that holds 4, whatever scale the SDK chose.
    let median = comet
        .value(&format!("histogram_quantile(0.5, {size})"))
        .await;
    assert!((2.0..4.0).contains(&median), "{median}");
    let fraction = comet
        .value(&format!("histogram_fraction(0, 4.5, {size})"))
        .await;
    assert!((fraction - 0.75).abs() < 1e-9, "{fraction}");
    assert!(
        comet
            .query(&sel("test_size_bytes_bucket", ""), None)
            .await
            .is_empty(),
        "no classic buckets by default"
    );

    // The other resource attributes are in target_info, service.* is not.
    let info = comet.query(&sel("target_info", ""), None).await;
    assert_eq!(info.len(), 1, "{info:?}");
    let labels = &info[0].0;
    assert_eq!(labels["host_name"], "test-host");
    assert_eq!(labels["deployment_environment"], "test");
    assert_eq!(labels["comet_run"], "run-1");
    assert_eq!(labels["telemetry_sdk_language"], "python");
    assert!(!labels.contains_key("service_name"), "{labels:?}");
}

/// Both official exporters' data reads back with Prometheus's names,
/// labels, job/instance, target_info, metadata and the values sent.
#[tokio::test]
async fn python_sdk_grpc_and_http_exporters_read_back_through_promql() {
    let comet = OtlpComet::start(&[
        "--otlp-promote-scope-metadata",
        "true",
        "--otlp-promote-resource-attributes",
        "deployment.environment",
    ])
    .await;
    comet.python_export("grpc", "run-1").await;
    comet.python_export("http", "run-1").await;
    check_sdk_export(&comet, "instance-grpc").await;
    check_sdk_export(&comet, "instance-http").await;

    let body: Value = comet
        .client
        .get(comet.process.url("/api/v1/metadata"))
        .send()
        .await
        .expect("metadata")
        .json()
        .await
        .expect("JSON");
    let meta = |name: &str| body["data"][name][0].clone();
    assert_eq!(meta("test_requests_total")["type"], "counter");
    assert_eq!(meta("test_requests_total")["help"], "Requests served.");
    assert_eq!(meta("test_duration_seconds")["type"], "histogram");
    assert_eq!(meta("test_duration_seconds")["unit"], "seconds");
    assert_eq!(meta("test_queue_size")["type"], "gauge");
    assert_eq!(meta("test_temperature_celsius")["unit"], "celsius");

    let metrics = comet.metrics().await;
    for source in ["otlp_grpc", "otlp_http"] {
        let received = metric_value(
            &metrics,
            &format!("comet_otlp_data_points_received_total{{source=\"{source}\"}}"),
        );
        // 3 collections (2 flushes and the one at shutdown) x (counter,
        // up-down counter, gauge, 2 histograms) + 2 non-empty deltas.
        assert_eq!(received, 17.0, "{source}\n{metrics}");
    }
    assert!(
        metric_value(
            &metrics,
            "comet_ingest_requests_total{source=\"otlp_grpc\",status=\"Ok\"}"
        ) >= 4.0,
        "{metrics}"
    );
}

fn kv(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        ..Default::default()
    }
}

fn point(time: u64, value: f64) -> NumberDataPoint {
    NumberDataPoint {
        time_unix_nano: time,
        value: Some(number_data_point::Value::AsDouble(value)),
        ..Default::default()
    }
}

fn request(service: &str, metrics: Vec<Metric>) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: vec![kv("service.name", service)],
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

fn metric(name: &str, data: Data) -> Metric {
    Metric {
        name: name.into(),
        data: Some(data),
        ..Default::default()
    }
}

/// A request with two good metrics (a gauge that goes stale, a counter
/// with an exemplar) and two bad points.
fn mixed_request(service: &str, t: u64) -> ExportMetricsServiceRequest {
    let minute = 60_000_000_000;
    let half = 30_000_000_000;
    let stale = NumberDataPoint {
        time_unix_nano: t - half,
        flags: 1, // no recorded value
        ..Default::default()
    };
    let counter = NumberDataPoint {
        exemplars: vec![Exemplar {
            time_unix_nano: t - minute,
            trace_id: vec![0x4b; 16],
            span_id: vec![0x1f; 8],
            value: Some(exemplar::Value::AsDouble(3.0)),
            ..Default::default()
        }],
        ..point(t - minute, 3.0)
    };
    request(
        service,
        vec![
            metric(
                "door.open",
                Data::Gauge(Gauge {
                    data_points: vec![point(t - minute, 1.0), stale],
                }),
            ),
            metric(
                "visits",
                Data::Sum(Sum {
                    data_points: vec![counter],
                    aggregation_temporality: AggregationTemporality::Cumulative as i32,
                    is_monotonic: true,
                }),
            ),
            metric(
                "no.temporality",
                Data::Sum(Sum {
                    data_points: vec![point(t, 1.0)],
                    aggregation_temporality: 0,
                    is_monotonic: true,
                }),
            ),
            metric(
                "no.time",
                Data::Gauge(Gauge {
                    data_points: vec![point(0, 1.0)],
                }),
            ),
        ],
    )
}

/// OTLP/HTTP and gRPC answers: JSON and gzip bodies, partial success with
/// reasons, staleness and exemplars stored, and 400/415 for bad requests.
#[tokio::test]
async fn json_gzip_partial_success_staleness_exemplars_and_bad_requests() {
    let comet = OtlpComet::start(&[]).await;
    let t = now_ns();
    let t_s = t as f64 / 1e9;

    // OTLP/JSON on the OTLP port and on Prometheus's path of the main port.
    let json = |service: &str| {
        format!(
            r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"{service}"}}}}]}},
            "scopeMetrics":[{{"scope":{{"name":"json"}},"metrics":[{{"name":"json.load","unit":"1",
            "gauge":{{"dataPoints":[{{"timeUnixNano":"{t}","asDouble":0.5,
            "attributes":[{{"key":"cpu","value":{{"intValue":"3"}}}}]}}]}}}}]}}]}}]}}"#
        )
    };
    for (url, service) in [
        (format!("{}/v1/metrics", comet.http), "json-a"),
        (comet.process.url("/api/v1/otlp/v1/metrics"), "json-b"),
    ] {
        let r = comet
            .post(url, "application/json", json(service).into_bytes())
            .await;
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.expect("JSON response");
        assert!(
            body.get("partialSuccess").is_none_or(|p| p.is_null()),
            "{body}"
        );
        assert_eq!(
            comet
                .value(&format!(r#"json_load_ratio{{job="{service}", cpu="3"}}"#))
                .await,
            0.5
        );
    }

    // Protobuf, gzip-compressed, with two points that cannot be stored.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&mixed_request("mixed", t).encode_to_vec())
        .expect("gzip");
    let r = comet
        .client
        .post(format!("{}/v1/metrics", comet.http))
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gzip"))
        .send()
        .await
        .expect("POST");
    assert_eq!(r.status(), 200);
    let response =
        ExportMetricsServiceResponse::decode(r.bytes().await.expect("body")).expect("protobuf");
    let partial = response.partial_success.expect("partial success");
    assert_eq!(partial.rejected_data_points, 2, "{}", partial.error_message);
    assert!(
        partial.error_message.contains("invalid_temporality")
            && partial.error_message.contains("missing_timestamp"),
        "{}",
        partial.error_message
    );

    // The gauge reads 1 until its no-recorded-value point, then nothing.
    let door = r#"door_open{job="mixed"}"#;
    assert_eq!(comet.query(door, Some(t_s - 45.0)).await.len(), 1);
    assert_eq!(comet.query(door, Some(t_s - 10.0)).await, vec![]);
    assert_eq!(comet.value(r#"visits_total{job="mixed"}"#).await, 3.0);
    let exemplars: Value = comet
        .client
        .get(comet.process.url("/api/v1/query_exemplars"))
        .query(&[
            ("query", "visits_total"),
            ("start", &format!("{}", t_s - 120.0)),
            ("end", &format!("{t_s}")),
        ])
        .send()
        .await
        .expect("exemplars")
        .json()
        .await
        .expect("JSON");
    let e = &exemplars["data"][0]["exemplars"][0];
    assert_eq!(e["labels"]["trace_id"], "4b".repeat(16), "{exemplars}");
    assert_eq!(e["labels"]["span_id"], "1f".repeat(8));
    assert_eq!(e["value"], "3");

    // The same over gRPC: OK with the partial success.
    let mut grpc = MetricsServiceClient::connect(comet.grpc.clone())
        .await
        .expect("gRPC connect");
    let answer = grpc
        .export(mixed_request("mixed-grpc", t))
        .await
        .expect("gRPC export")
        .into_inner();
    assert_eq!(
        answer
            .partial_success
            .expect("partial")
            .rejected_data_points,
        2
    );
    assert_eq!(comet.value(r#"visits_total{job="mixed-grpc"}"#).await, 3.0);

    // Requests that can never succeed: undecodable over gRPC...
    let mut raw = tonic::client::Grpc::new(
        tonic::transport::Endpoint::from_shared(comet.grpc.clone())
            .expect("URL")
            .connect()
            .await
            .expect("gRPC connect"),
    );
    raw.ready().await.expect("ready");
    let codec: tonic_prost::ProstCodec<RawExport, ExportMetricsServiceResponse> =
        tonic_prost::ProstCodec::default();
    let refused = raw
        .unary(
            tonic::Request::new(RawExport {
                resource_metrics: vec![b"\xff\xff\xff".to_vec()],
            }),
            tonic::codegen::http::uri::PathAndQuery::from_static(
                "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
            ),
            codec,
        )
        .await
        .expect_err("undecodable");
    assert_eq!(refused.code(), tonic::Code::InvalidArgument, "{refused:?}");
    // ...and over HTTP.
    let bad = comet
        .post(
            format!("{}/v1/metrics", comet.http),
            "application/x-protobuf",
            b"\xff\xff\xff not protobuf".to_vec(),
        )
        .await;
    assert_eq!(bad.status(), 400);
    let status = tonic_types::Status::decode(bad.bytes().await.expect("body")).expect("Status");
    assert_eq!(status.code, tonic::Code::InvalidArgument as i32);
    assert!(status.message.contains("protobuf"), "{}", status.message);
    let bad_json = comet
        .post(
            format!("{}/v1/metrics", comet.http),
            "application/json",
            b"{\"resourceMetrics\": 7}".to_vec(),
        )
        .await;
    assert_eq!(bad_json.status(), 400);
    let text = comet
        .post(
            format!("{}/v1/metrics", comet.http),
            "text/plain",
            b"x".to_vec(),
        )
        .await;
    assert_eq!(text.status(), 415);

    let metrics = comet.metrics().await;
    for (source, reason) in [
        ("otlp_http", "invalid_temporality"),
        ("otlp_http", "missing_timestamp"),
        ("otlp_grpc", "invalid_temporality"),
    ] {
        assert_eq!(
            metric_value(
                &metrics,
                &format!(
                    "comet_otlp_data_points_rejected_total{{reason=\"{reason}\",source=\"{source}\"}}"
                )
            ),
            1.0,
            "{source} {reason}\n{metrics}"
        );
    }
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_requests_rejected_total{reason=\"invalid_request\",source=\"otlp_http\"}"
        ),
        3.0,
        "{metrics}"
    );
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_requests_total{source=\"otlp_grpc\",status=\"InvalidArgument\"}"
        ),
        1.0,
        "{metrics}"
    );
}

/// An `ExportMetricsServiceRequest` whose resources are raw bytes (the same
/// wire format), to send what no encoder would.
#[derive(Clone, PartialEq, Message)]
struct RawExport {
    #[prost(bytes = "vec", repeated, tag = "1")]
    resource_metrics: Vec<Vec<u8>>,
}

/// A gauge request with `n` series, big enough to fill a small buffer.
fn wide_request(service: &str, n: usize, t: u64) -> ExportMetricsServiceRequest {
    let points = (0..n)
        .map(|i| NumberDataPoint {
            attributes: vec![kv("i", &i.to_string())],
            ..point(t, i as f64)
        })
        .collect();
    request(
        service,
        vec![metric(
            "load",
            Data::Gauge(Gauge {
                data_points: points,
            }),
        )],
    )
}

/// A full buffer answers 429 / RESOURCE_EXHAUSTED with a retry delay, and
/// ClickHouse down answers 503 / UNAVAILABLE: both retried by exporters.
#[tokio::test]
async fn full_buffer_and_clickhouse_down_answer_retryable_codes() {
    // A ClickHouse of its own, so stopping it does not disturb other tests.
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut server, url) = common::spawn_clickhouse(dir.path());
    let comet = OtlpComet::start_with(
        Some(&url),
        &[
            "--ingest-max-buffered-bytes",
            "4KiB",
            "--ingest-batch-linger",
            "3s",
            "--ingest-batch-max-samples",
            "1000000",
            "--clickhouse-max-retries",
            "1",
            "--clickhouse-connect-timeout",
            "1s",
        ],
    )
    .await;
    let t = now_ns();
    let body = |service: &str| wide_request(service, 300, t).encode_to_vec();
    // The first export holds the whole budget for the 3 s linger...
    let first = {
        let client = comet.client.clone();
        let url = format!("{}/v1/metrics", comet.http);
        let body = body("first");
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("Content-Type", "application/x-protobuf")
                .body(body)
                .send()
                .await
                .expect("POST");
            r.status()
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...so the next ones are refused at once, with a retry delay.
    let second = comet
        .post(
            format!("{}/v1/metrics", comet.http),
            "application/x-protobuf",
            body("second"),
        )
        .await;
    assert_eq!(second.status(), 429);
    assert!(second.headers().contains_key("retry-after"));
    let mut grpc = MetricsServiceClient::connect(comet.grpc.clone())
        .await
        .expect("gRPC connect");
    let refused = grpc
        .export(wide_request("third", 300, t))
        .await
        .expect_err("refused while full");
    assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
    assert!(refused.get_details_retry_info().is_some(), "{refused:?}");
    assert_eq!(first.await.expect("first export"), 200);

    // ClickHouse stops (comet clickhouse stops its server on SIGTERM).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("SIGTERM");
    server.wait().expect("ClickHouse exits");
    let down = comet
        .post(
            format!("{}/v1/metrics", comet.http),
            "application/x-protobuf",
            wide_request("down", 1, t).encode_to_vec(),
        )
        .await;
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    let unavailable = grpc
        .export(wide_request("down", 1, t))
        .await
        .expect_err("ClickHouse is down");
    assert_eq!(unavailable.code(), tonic::Code::Unavailable);
}

/// The OTLP load generator works end to end over both transports (a smoke
/// run, not a measurement): every point is acknowledged and stored once.
#[tokio::test]
async fn bench_ingest_otlp_smoke_run_stores_every_point() {
    let comet = OtlpComet::start(&[]).await;
    for (protocol, endpoint) in [("otlp-grpc", &comet.grpc), ("otlp-http", &comet.http)] {
        let prefix = protocol.replace('-', "_");
        let url = comet.process.url("");
        // 2 requests of 10 metrics x 7 points per round, 3 rounds.
        let stdout = common::comet_stdout(&[
            "bench",
            "ingest",
            "--protocol",
            protocol,
            "--url",
            &url,
            "--otlp-endpoint",
            endpoint,
            "--series",
            "140",
            "--samples",
            "420",
            "--otlp-metrics",
            "10",
            "--concurrency",
            "2",
            "--prefix",
            &prefix,
        ])
        .await;
        assert!(
            stdout.contains("data points sent and acknowledged: 420 of 420"),
            "{stdout}"
        );
        assert!(stdout.contains("data points/s"), "{stdout}");
        let stored = comet
            .query(
                &format!("count(count_over_time({{__name__=~\"{prefix}_otlp_.*\"}}[1h]))"),
                None,
            )
            .await;
        assert_eq!(stored[0].1, 140.0, "{protocol}: series");
        let points = comet
            .query(
                &format!("sum(count_over_time({{__name__=~\"{prefix}_otlp_.*\"}}[1h]))"),
                None,
            )
            .await;
        assert_eq!(points[0].1, 420.0, "{protocol}: points");
    }
}
