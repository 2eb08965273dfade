//! Remote-write (1.0, 2.0) and remote-read against a running comet and a
//! real ClickHouse: the happy paths, the bad-input table, backpressure and
//! storage failures.

mod common;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comet_schema::model::{STALE_NAN_BITS, stale_nan};
use comet_schema::prompb::{v1, v2};
use common::{CometProcess, http_query, metric_value, serve_new_database};
use prost::Message;

const START: Duration = Duration::from_secs(120);
const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Comet {
    process: CometProcess,
    database: String,
    client: reqwest::Client,
}

impl Comet {
    async fn start(extra: &[&str]) -> Self {
        let (mut process, database) = serve_new_database("comet_rw", extra);
        process.wait_ready(START).await;
        Self {
            process,
            database,
            client: reqwest::Client::new(),
        }
    }

    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        content_type: Option<&str>,
    ) -> reqwest::Response {
        let mut req = self
            .client
            .post(self.process.url(path))
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(body);
        if let Some(ct) = content_type {
            req = req.header("Content-Type", ct);
        }
        req.send().await.unwrap()
    }

    async fn write_v1(&self, request: &v1::WriteRequest) -> reqwest::Response {
        self.post(
            "/api/v1/write",
            snappy(&request.encode_to_vec()),
            Some("application/x-protobuf"),
        )
        .await
    }

    async fn count(&self, sql_from_where: &str) -> u64 {
        http_query(&format!(
            "SELECT count() FROM `{}`.{sql_from_where} FORMAT TSV",
            self.database
        ))
        .await
        .trim()
        .parse()
        .unwrap()
    }

    async fn metrics(&self) -> String {
        self.process.metrics_text().await
    }
}

fn snappy(raw: &[u8]) -> Vec<u8> {
    snap::raw::Encoder::new().compress_vec(raw).unwrap()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn label(name: &str, value: &str) -> v1::Label {
    v1::Label {
        name: name.into(),
        value: value.into(),
    }
}

fn series(labels: &[(&str, &str)], samples: &[(i64, f64)]) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        samples: samples
            .iter()
            .map(|&(timestamp, value)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

#[tokio::test]
async fn v1_write_is_stored_before_the_ack_and_reads_back() {
    let comet = Comet::start(&[]).await;
    let t = now_ms() - 60_000;
    let mut request = v1::WriteRequest {
        timeseries: vec![
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "200"),
                    ("job", "api"),
                ],
                &[(t, 1.0), (t + 15_000, 2.0), (t + 30_000, f64::NAN)],
            ),
            series(
                &[
                    ("__name__", "http_requests_total"),
                    ("code", "500"),
                    ("job", "api"),
                ],
                &[(t, f64::INFINITY), (t + 15_000, stale_nan())],
            ),
            // Label values a query must not be able to break out of.
            series(
                &[("__name__", "weird"), ("path", "') OR 1=1 -- \\ \"x\" ä")],
                &[(t, -0.5)],
            ),
        ],
        metadata: vec![v1::MetricMetadata {
            r#type: v1::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    };
    request.timeseries[0].exemplars.push(v1::Exemplar {
        labels: vec![label("trace_id", "abc123")],
        value: 1.0,
        timestamp: t,
    });
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{}", response.text().await.unwrap());
    // Acknowledged means stored: no waiting.
    assert_eq!(comet.count("samples").await, 6);
    assert_eq!(comet.count("series").await, 3);
    assert_eq!(comet.count("metadata").await, 1);
    assert_eq!(comet.count("exemplars").await, 1);
    let stale = http_query(&format!(
        "SELECT reinterpretAsUInt64(value) FROM `{}`.samples WHERE timestamp_ms = {} AND value != value AND fingerprint = (SELECT fingerprint FROM `{}`.series WHERE labels['code'] = '500') FORMAT TSV",
        comet.database, t + 15_000, comet.database
    ))
    .await;
    assert_eq!(stale.trim().parse::<u64>().unwrap(), STALE_NAN_BITS);

    // The same series again on the same day writes no new series rows.
    let again = v1::WriteRequest {
        timeseries: vec![series(
            &[
                ("__name__", "http_requests_total"),
                ("code", "200"),
                ("job", "api"),
            ],
            &[(t + 45_000, 3.0)],
        )],
        metadata: vec![],
    };
    assert_eq!(comet.write_v1(&again).await.status(), 204);
    assert_eq!(comet.count("series").await, 3);
    let metrics = comet.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_samples_written_total{source=\"remote_write_v1\"}"
        ),
        7.0
    );
    assert_eq!(
        metric_value(&metrics, "comet_ingest_series_created_total"),
        3.0
    );
    assert!(metrics.contains("comet_ingest_insert_duration_seconds_bucket{table=\"samples\""));
    assert!(metrics.contains("comet_ingest_batch_samples_bucket"));
    assert!(metrics.contains("comet_ingest_buffered_bytes 0"));

    // Remote-read gives back exactly what was written.
    let read = v1::ReadRequest {
        queries: vec![
            v1::Query {
                start_timestamp_ms: t - 1,
                end_timestamp_ms: t + 60_000,
                matchers: vec![
                    v1::LabelMatcher {
                        r#type: v1::MatchType::Eq as i32,
                        name: "__name__".into(),
                        value: "http_requests_total".into(),
                    },
                    v1::LabelMatcher {
                        r#type: v1::MatchType::Re as i32,
                        name: "code".into(),
                        value: "2..|5.+".into(),
                    },
                ],
                hints: None,
            },
            v1::Query {
                start_timestamp_ms: t - 1,
                end_timestamp_ms: t + 60_000,
                matchers: vec![v1::LabelMatcher {
                    r#type: v1::MatchType::Eq as i32,
                    name: "path".into(),
                    value: "') OR 1=1 -- \\ \"x\" ä".into(),
                }],
                hints: None,
            },
            v1::Query {
                start_timestamp_ms: t - 1,
                end_timestamp_ms: t + 60_000,
                matchers: vec![v1::LabelMatcher {
                    r#type: v1::MatchType::Re as i32,
                    name: "path".into(),
                    value: "'\\) OR 1=1 --.*".into(),
                }],
                hints: None,
            },
        ],
        accepted_response_types: vec![v1::ResponseType::Samples as i32],
    };
    let response = comet
        .post(
            "/api/v1/read",
            snappy(&read.encode_to_vec()),
            Some("application/x-protobuf"),
        )
        .await;
    let status = response.status();
    let bytes = response.bytes().await.unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let body = snap::raw::Decoder::new().decompress_vec(&bytes).unwrap();
    let result = v1::ReadResponse::decode(body.as_slice()).unwrap();
    let first = &result.results[0].timeseries;
    assert_eq!(first.len(), 2);
    assert_eq!(
        first[0].labels,
        vec![
            label("__name__", "http_requests_total"),
            label("code", "200"),
            label("job", "api")
        ]
    );
    let values: Vec<(i64, u64)> = first[0]
        .samples
        .iter()
        .map(|s| (s.timestamp, s.value.to_bits()))
        .collect();
    assert_eq!(
        values,
        vec![
            (t, 1f64.to_bits()),
            (t + 15_000, 2f64.to_bits()),
            (t + 30_000, f64::NAN.to_bits()),
            (t + 45_000, 3f64.to_bits())
        ]
    );
    assert_eq!(first[1].samples[1].value.to_bits(), STALE_NAN_BITS);
    assert_eq!(
        result.results[1].timeseries.len(),
        1,
        "exact match of an adversarial value"
    );
    assert_eq!(
        result.results[2].timeseries.len(),
        1,
        "regex over an adversarial value"
    );

    // An invalid regex is the client's mistake: 400, not 500.
    let bad = v1::ReadRequest {
        queries: vec![v1::Query {
            start_timestamp_ms: t,
            end_timestamp_ms: t + 1,
            matchers: vec![v1::LabelMatcher {
                r#type: v1::MatchType::Re as i32,
                name: "path".into(),
                value: "') OR (".into(),
            }],
            hints: None,
        }],
        accepted_response_types: vec![],
    };
    let response = comet
        .post("/api/v1/read", snappy(&bad.encode_to_vec()), None)
        .await;
    assert_eq!(response.status(), 400);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("invalid regular expression")
    );
}

#[tokio::test]
async fn v2_write_reports_written_counts_and_415_for_other_types() {
    let comet = Comet::start(&[]).await;
    let t = now_ms();
    let request = v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "jobs_total".into(),
            "job".into(),
            "x".into(),
            "Jobs.".into(),
            "trace_id".into(),
            "t1".into(),
        ],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2, 3, 4],
            samples: vec![
                v2::Sample {
                    value: 1.0,
                    timestamp: t,
                },
                v2::Sample {
                    value: 2.0,
                    timestamp: t + 1000,
                },
            ],
            exemplars: vec![v2::Exemplar {
                labels_refs: vec![6, 7],
                value: 1.0,
                timestamp: t,
            }],
            metadata: Some(v2::Metadata {
                r#type: v2::MetricType::Counter as i32,
                help_ref: 5,
                unit_ref: 0,
            }),
            ..Default::default()
        }],
    };
    let response = comet
        .post(
            "/api/v1/write",
            snappy(&request.encode_to_vec()),
            Some(V2_TYPE),
        )
        .await;
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "2");
    assert_eq!(h["x-prometheus-remote-write-histograms-written"], "0");
    assert_eq!(h["x-prometheus-remote-write-exemplars-written"], "1");
    assert_eq!(comet.count("samples").await, 2);
    assert_eq!(
        comet
            .count("metadata WHERE help = 'Jobs.' AND type = 'counter'")
            .await,
        1
    );

    for bad in [
        "application/json",
        "application/x-protobuf;proto=io.prometheus.write.v3.Request",
        "text/plain",
    ] {
        let response = comet
            .post("/api/v1/write", snappy(&request.encode_to_vec()), Some(bad))
            .await;
        assert_eq!(response.status(), 415, "{bad}");
    }
    let metrics = comet.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_requests_rejected_total{reason=\"unsupported_media_type\""
        ),
        3.0
    );
}

/// The bad-input table: each case gets its status, a one-line reason, and a
/// count by reason in /metrics; good data in the same request is kept.
#[tokio::test]
async fn bad_input_gets_the_right_status_and_is_counted() {
    let comet = Comet::start(&["--remote-write-max-request-bytes", "64KiB"]).await;
    let t = now_ms();
    // Over the default label limits: 101 labels, a 1,025-byte name, a
    // 4,097-byte value.
    let many: Vec<(String, String)> = std::iter::once(("__name__".to_string(), "up".to_string()))
        .chain((0..100).map(|i| (format!("l{i:03}"), "v".to_string())))
        .collect();
    let long_name = vec![
        ("__name__".to_string(), "up".to_string()),
        ("a".repeat(1025), "v".to_string()),
    ];
    let long_value = vec![
        ("__name__".to_string(), "up".to_string()),
        ("v".to_string(), "x".repeat(4097)),
    ];
    let limited = |labels: &[(String, String)]| {
        let labels: Vec<(&str, &str)> = labels
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        snappy(
            &v1::WriteRequest {
                timeseries: vec![series(&labels, &[(t, 1.0)])],
                metadata: vec![],
            }
            .encode_to_vec(),
        )
    };
    let cases: Vec<(&str, Vec<u8>, u16, &str, &str)> = vec![
        (
            "too many labels",
            limited(&many),
            400,
            "ingest.max_labels_per_series",
            "too_many_labels",
        ),
        (
            "long label name",
            limited(&long_name),
            400,
            "ingest.max_label_name_bytes",
            "label_name_too_long",
        ),
        (
            "long label value",
            limited(&long_value),
            400,
            "ingest.max_label_value_bytes",
            "label_value_too_long",
        ),
        (
            "corrupt snappy",
            b"\xff\xfe\xfd not snappy".to_vec(),
            400,
            "snappy",
            "invalid_snappy",
        ),
        (
            "truncated protobuf",
            {
                let full = v1::WriteRequest {
                    timeseries: vec![series(&[("__name__", "up")], &[(t, 1.0)])],
                    metadata: vec![],
                }
                .encode_to_vec();
                snappy(&full[..full.len() - 3])
            },
            400,
            "protobuf",
            "invalid_protobuf",
        ),
        (
            "missing name",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(&[("job", "a")], &[(t, 1.0)])],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "no metric name",
            "missing_metric_name",
        ),
        (
            "duplicate label",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(
                        &[("__name__", "up"), ("a", "1"), ("a", "2")],
                        &[(t, 1.0)],
                    )],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "duplicate label name",
            "duplicate_label_name",
        ),
        (
            "invalid label name",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(
                        &[("__name__", "up"), ("bad-name", "1")],
                        &[(t, 1.0)],
                    )],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "invalid label name",
            "invalid_label_name",
        ),
        (
            "invalid metric name",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(&[("__name__", "5xx-errors")], &[(t, 1.0)])],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "invalid metric name",
            "invalid_metric_name",
        ),
        (
            "unsorted labels",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(&[("job", "a"), ("__name__", "up")], &[(t, 1.0)])],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "not sorted",
            "unsorted_labels",
        ),
        (
            "out of order",
            snappy(
                &v1::WriteRequest {
                    timeseries: vec![series(&[("__name__", "up")], &[(t, 1.0), (t - 1000, 2.0)])],
                    metadata: vec![],
                }
                .encode_to_vec(),
            ),
            400,
            "comes after",
            "out_of_order",
        ),
        (
            "invalid native histogram",
            {
                let mut ts = series(&[("__name__", "latency")], &[]);
                // A count of 5 with no observations in any bucket.
                ts.histograms.push(v1::Histogram {
                    count: Some(v1::histogram::Count::CountInt(5)),
                    sum: 1.0,
                    schema: 3,
                    timestamp: t,
                    ..Default::default()
                });
                snappy(
                    &v1::WriteRequest {
                        timeseries: vec![ts],
                        metadata: vec![],
                    }
                    .encode_to_vec(),
                )
            },
            400,
            "0 observations found in buckets, but the Count field is 5",
            "histogram_count_mismatch",
        ),
        (
            "oversized",
            snappy(&vec![7u8; 200_000])
                .into_iter()
                .chain(std::iter::repeat_n(0u8, 70_000))
                .collect(),
            413,
            "over the limit",
            "too_large",
        ),
    ];
    for (name, body, status, message, reason) in &cases {
        let response = comet
            .post(
                "/api/v1/write",
                body.clone(),
                Some("application/x-protobuf"),
            )
            .await;
        assert_eq!(response.status().as_u16(), *status, "{name}");
        let text = response.text().await.unwrap();
        assert_eq!(text.lines().count(), 1, "{name}: one line: {text:?}");
        assert!(text.contains(message), "{name}: {text:?}");
        let metrics = comet.metrics().await;
        assert!(
            metrics.contains(&format!("reason=\"{reason}\"")),
            "{name}: no {reason} in /metrics"
        );
    }
    // Nothing of the refused series was stored.
    assert_eq!(comet.count("samples").await, 0);

    // A request mixing good and bad series keeps the good ones (400 tells the
    // sender not to retry), including NaN and Inf values.
    let mixed = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "good"), ("k", "v")],
                &[(t, f64::NAN), (t + 1, f64::NEG_INFINITY)],
            ),
            series(&[("job", "no-name")], &[(t, 1.0)]),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&mixed).await;
    assert_eq!(response.status(), 400);
    assert_eq!(comet.count("samples WHERE metric_name = 'good'").await, 2);
    let metrics = comet.metrics().await;
    assert!(
        metric_value(
            &metrics,
            "comet_ingest_samples_rejected_total{reason=\"missing_metric_name\""
        ) >= 2.0
    );
    // The process is still fine after all of it.
    assert_eq!(
        reqwest::get(comet.process.url("/-/ready"))
            .await
            .unwrap()
            .status(),
        200
    );
}

/// A full buffer answers 503 with Retry-After instead of growing.
#[tokio::test]
async fn backpressure_answers_503_with_retry_after() {
    let comet = Comet::start(&[
        "--ingest-max-buffered-bytes",
        "4KiB",
        "--ingest-batch-linger",
        "3s",
        "--ingest-batch-max-samples",
        "1000000",
    ])
    .await;
    let t = now_ms();
    let big = |t: i64| {
        let request = v1::WriteRequest {
            timeseries: (0..200)
                .map(|i| {
                    series(
                        &[("__name__", "load"), ("i", &i.to_string())],
                        &[(t, i as f64)],
                    )
                })
                .collect(),
            metadata: vec![],
        };
        snappy(&request.encode_to_vec())
    };
    let body = big(t);
    let url = comet.process.url("/api/v1/write");
    // The first write holds the whole budget for the 3 s linger...
    let first = {
        let client = comet.client.clone();
        let body = body.clone();
        let url = url.clone();
        tokio::spawn(async move {
            let r = client
                .post(url)
                .header("Content-Encoding", "snappy")
                .body(body)
                .send()
                .await
                .unwrap();
            (r.status(), r.text().await.unwrap())
        })
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    // ...so the second is refused at once, to be retried.
    let second_body = big(t + 1000);
    let second = comet.post("/api/v1/write", second_body.clone(), None).await;
    assert_eq!(second.status(), 503);
    assert!(second.headers().contains_key("retry-after"));
    let (status, text) = first.await.unwrap();
    assert_eq!(status, 204, "{text}");
    // Once the buffer drained, the retry succeeds and nothing was lost.
    let retry = comet.post("/api/v1/write", second_body, None).await;
    assert_eq!(retry.status(), 204);
    assert_eq!(comet.count("samples").await, 400);
    let metrics = comet.metrics().await;
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_backpressure_total{source=\"remote_write_v1\"}"
        ),
        1.0
    );
}

/// ClickHouse refusing or missing: 5xx, so senders retry; never 2xx.
#[tokio::test]
async fn storage_failures_answer_5xx() {
    let comet = Comet::start(&["--clickhouse-max-retries", "1"]).await;
    let t = now_ms();
    let request = v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(t, 1.0)])],
        metadata: vec![],
    };
    http_query(&format!("DROP TABLE `{}`.samples", comet.database)).await;
    let response = comet.write_v1(&request).await;
    assert!(response.status().is_server_error(), "{}", response.status());
    let text = response.text().await.unwrap();
    assert!(
        text.contains("ClickHouse did not accept the write"),
        "{text}"
    );
    let metrics = comet.metrics().await;
    assert!(
        metrics.contains("comet_ingest_insert_failures_total{table=\"samples\"} 1"),
        "{metrics}"
    );
}

/// ClickHouse going away: writes get 503 with Retry-After (transient, the
/// sender retries), readiness drops, and nothing is acknowledged.
#[tokio::test]
async fn clickhouse_down_answers_503_and_not_ready() {
    // A ClickHouse of its own, so stopping it does not disturb other tests.
    let dir = tempfile::tempdir().unwrap();
    let (mut server, url) = common::spawn_clickhouse(dir.path());
    let mut comet = CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &url,
        "--clickhouse-max-retries",
        "1",
        "--clickhouse-connect-timeout",
        "1s",
    ]);
    comet.wait_ready(START).await;
    let client = reqwest::Client::new();
    let t = now_ms();
    let request = v1::WriteRequest {
        timeseries: vec![series(&[("__name__", "up")], &[(t, 1.0)])],
        metadata: vec![],
    };
    let body = snappy(&request.encode_to_vec());
    let ok = client
        .post(comet.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 204);

    // Stop ClickHouse (comet clickhouse stops its server on SIGTERM).
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(server.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .unwrap();
    server.wait().unwrap();

    let down = client
        .post(comet.url("/api/v1/write"))
        .header("Content-Encoding", "snappy")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(down.status(), 503, "{}", down.text().await.unwrap());
    assert!(down.headers().contains_key("retry-after"));
    let ready = client.get(comet.url("/-/ready")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    // Comet itself stays up and healthy.
    let healthy = client.get(comet.url("/-/healthy")).send().await.unwrap();
    assert_eq!(healthy.status(), 200);
    assert!(comet.terminate().await.success());
}

/// The load generator works end to end (a smoke run, not a measurement):
/// everything it sends is acknowledged and stored once, by the receiver
/// and by the one it is compared with (`--compare`).
#[tokio::test]
async fn bench_ingest_smoke_run_stores_every_sample() {
    let comet = Comet::start(&[]).await;
    let second = Comet::start(&[]).await;
    let url = comet.process.url("");
    let compare = second.process.url("");
    let stdout = common::comet_stdout(&[
        "bench",
        "ingest",
        "--url",
        &url,
        "--compare",
        &compare,
        "--series",
        "300",
        "--samples",
        "1500",
        "--samples-per-request",
        "100",
        "--concurrency",
        "3",
        "--prefix",
        "smoke",
    ])
    .await;
    assert!(
        stdout.contains("samples sent and acknowledged: 1500 of 1500"),
        "{stdout}"
    );
    assert!(stdout.contains("samples/s"), "{stdout}");
    assert_eq!(
        comet
            .count("samples WHERE metric_name LIKE 'smoke_%'")
            .await,
        1500
    );
    assert_eq!(comet.count("series").await, 300);
    // The same requests went to the second receiver after the first, and
    // both appear side by side.
    assert_eq!(
        stdout
            .matches("samples sent and acknowledged: 1500 of 1500")
            .count(),
        2,
        "{stdout}"
    );
    assert!(stdout.contains(&format!("| {compare} |")), "{stdout}");
    assert_eq!(
        second
            .count("samples WHERE metric_name LIKE 'smoke_%'")
            .await,
        1500
    );
}
