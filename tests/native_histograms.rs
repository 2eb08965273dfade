//! Native histograms over remote-write 1.0 and 2.0 into a running comet and
//! a real ClickHouse, read back from the `histograms` table with SQL field
//! by field; bad histograms refused and counted with the good data of the
//! same request kept; deduplicated batches stored once.

mod common;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comet_ingest::{IngestMetrics, Series, SeriesHistograms, WriteBatch, Writer, WriterSettings};
use comet_schema::model::{STALE_NAN_BITS, stale_nan};
use comet_schema::prompb::v1::histogram::{Count, ZeroCount};
use comet_schema::prompb::v1::{self, BucketSpan};
use comet_schema::prompb::v2;
use comet_schema::{CounterResetHint, HistogramCounts, Labels, NameValidation, NativeHistogram};
use common::peers::Prometheus;
use common::{CometProcess, TestDb, http_query, metric_value, serve_new_database};
use prost::Message;
use serde_json::Value;

const START: Duration = Duration::from_secs(120);
const V2_TYPE: &str = "application/x-protobuf;proto=io.prometheus.write.v2.Request";

struct Comet {
    process: CometProcess,
    database: String,
    client: reqwest::Client,
}

impl Comet {
    async fn start() -> Self {
        let (mut process, database) = serve_new_database("comet_nh", &[]);
        process.wait_ready(START).await;
        Self {
            process,
            database,
            client: reqwest::Client::new(),
        }
    }

    async fn post(&self, body: Vec<u8>, content_type: &str) -> reqwest::Response {
        self.client
            .post(self.process.url("/api/v1/write"))
            .header("Content-Encoding", "snappy")
            .header("Content-Type", content_type)
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .body(snap::raw::Encoder::new().compress_vec(&body).unwrap())
            .send()
            .await
            .unwrap()
    }

    async fn write_v1(&self, request: &v1::WriteRequest) -> reqwest::Response {
        self.post(request.encode_to_vec(), "application/x-protobuf")
            .await
    }

    async fn write_v2(&self, request: &v2::Request) -> reqwest::Response {
        self.post(request.encode_to_vec(), V2_TYPE).await
    }

    /// Every stored field of the histograms of `metric`, one TSV line per
    /// sample in time order; floats that must be bit-exact as bits.
    async fn rows(&self, metric: &str) -> Vec<String> {
        stored_rows(&self.database, metric).await
    }

    async fn query(&self, sql: &str) -> String {
        http_query(&sql.replace("{db}", &format!("`{}`", self.database))).await
    }
}

async fn stored_rows(database: &str, metric: &str) -> Vec<String> {
    http_query(&format!(
        "SELECT timestamp_ms, start_timestamp_ms, float_histogram, schema, reset_hint, \
         zero_threshold, zero_count, count, zero_count_float, count_float, \
         hex(reinterpretAsUInt64(sum)), positive_index, positive_counts, positive_counts_float, \
         negative_index, negative_counts, negative_counts_float, custom_values \
         FROM `{database}`.histograms WHERE metric_name = '{metric}' \
         ORDER BY timestamp_ms FORMAT TSV"
    ))
    .await
    .lines()
    .map(str::to_string)
    .collect()
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

fn spans(pairs: &[(i32, u32)]) -> Vec<BucketSpan> {
    pairs
        .iter()
        .map(|&(offset, length)| BucketSpan { offset, length })
        .collect()
}

fn bits(v: f64) -> String {
    format!("{:016X}", v.to_bits())
}

/// Integer histogram: positive buckets -2, -1, 3 (1, 3, 2), negative 0, 1
/// (2, 1), zero bucket 4 under 0.001: 13 observations.
fn integer(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(13)),
        sum: 42.5,
        schema: 3,
        zero_threshold: 0.001,
        zero_count: Some(ZeroCount::ZeroCountInt(4)),
        negative_spans: spans(&[(0, 2)]),
        negative_deltas: vec![2, -1],
        positive_spans: spans(&[(-2, 2), (3, 1)]),
        positive_deltas: vec![1, 2, -1],
        reset_hint: 3,
        timestamp,
        ..Default::default()
    }
}

fn float(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountFloat(7.5)),
        sum: -3.25,
        schema: 0,
        zero_threshold: 1e-9,
        zero_count: Some(ZeroCount::ZeroCountFloat(0.5)),
        negative_spans: spans(&[(-1, 1)]),
        negative_counts: vec![1.5],
        positive_spans: spans(&[(5, 1), (0, 2)]),
        positive_counts: vec![2.0, 0.0, 3.5],
        reset_hint: 1,
        timestamp,
        ..Default::default()
    }
}

fn custom(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(6)),
        sum: 2.0,
        schema: -53,
        positive_spans: spans(&[(0, 2), (1, 1)]),
        positive_deltas: vec![1, 1, 1],
        custom_values: vec![0.1, 0.5, 1.0],
        reset_hint: 2,
        timestamp,
        ..Default::default()
    }
}

/// Numbers Go's `%g` writes in exponent form, and plain ones: schema -1,
/// so bucket 10 is (2^18, 2^20].
fn wide(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountFloat(2.5e6)),
        sum: 1.5e-7,
        schema: -1,
        zero_threshold: 1e-5,
        zero_count: Some(ZeroCount::ZeroCountFloat(5e5)),
        negative_spans: spans(&[(-3, 1)]),
        negative_counts: vec![0.5],
        positive_spans: spans(&[(10, 2)]),
        positive_counts: vec![1e6, 999_999.5],
        timestamp,
        ..Default::default()
    }
}

/// Schema 9: buckets 1..=4 (1, 2, 3, 4) become schema 8's 1, 2 (3, 7).
fn fine(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(10)),
        sum: 9.0,
        schema: 9,
        positive_spans: spans(&[(1, 4)]),
        positive_deltas: vec![1, 1, 1, 1],
        timestamp,
        ..Default::default()
    }
}

fn stale(timestamp: i64) -> v1::Histogram {
    v1::Histogram {
        sum: stale_nan(),
        timestamp,
        ..Default::default()
    }
}

fn series(labels: &[(&str, &str)], histograms: Vec<v1::Histogram>) -> v1::TimeSeries {
    v1::TimeSeries {
        labels: labels.iter().map(|(n, v)| label(n, v)).collect(),
        histograms,
        ..Default::default()
    }
}

fn fingerprint(labels: &[(&str, &str)]) -> u64 {
    Labels::new(labels.iter().copied(), NameValidation::Legacy)
        .unwrap()
        .fingerprint()
}

#[tokio::test]
async fn v1_histograms_are_stored_field_by_field() {
    let comet = Comet::start().await;
    let t = now_ms() - 60_000;
    let request = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "rpc_seconds"), ("job", "api")],
                vec![integer(t), stale(t + 15_000)],
            ),
            series(&[("__name__", "float_h")], vec![float(t)]),
            series(&[("__name__", "custom_h")], vec![custom(t)]),
            series(&[("__name__", "fine_h")], vec![fine(t)]),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);

    assert_eq!(
        comet.rows("rpc_seconds").await,
        [
            format!(
                "{t}\t0\tfalse\t3\tgauge\t0.001\t4\t13\t0\t0\t{}\t[-2,-1,3]\t[1,3,2]\t[]\t[0,1]\t[2,1]\t[]\t[]",
                bits(42.5)
            ),
            format!(
                "{}\t0\tfalse\t0\tunknown\t0\t0\t0\t0\t0\t{}\t[]\t[]\t[]\t[]\t[]\t[]\t[]",
                t + 15_000,
                bits(stale_nan())
            ),
        ]
    );
    assert_eq!(bits(stale_nan()), format!("{STALE_NAN_BITS:016X}"));
    assert_eq!(
        comet.rows("float_h").await,
        [format!(
            "{t}\t0\ttrue\t0\treset\t1e-9\t0\t0\t0.5\t7.5\t{}\t[5,6,7]\t[]\t[2,0,3.5]\t[-1]\t[]\t[1.5]\t[]",
            bits(-3.25)
        )]
    );
    assert_eq!(
        comet.rows("custom_h").await,
        [format!(
            "{t}\t0\tfalse\t-53\tnot_reset\t0\t0\t6\t0\t0\t{}\t[0,1,3]\t[1,2,3]\t[]\t[]\t[]\t[]\t[0.1,0.5,1]",
            bits(2.0)
        )]
    );
    assert_eq!(
        comet.rows("fine_h").await,
        [format!(
            "{t}\t0\tfalse\t8\tunknown\t0\t0\t10\t0\t0\t{}\t[1,2]\t[3,7]\t[]\t[]\t[]\t[]\t[]",
            bits(9.0)
        )]
    );

    // The series' labels are in `series`, under the same fingerprint.
    let fp = fingerprint(&[("__name__", "rpc_seconds"), ("job", "api")]);
    assert_eq!(
        comet
            .query("SELECT DISTINCT fingerprint FROM {db}.histograms WHERE metric_name = 'rpc_seconds' FORMAT TSV")
            .await
            .trim(),
        fp.to_string()
    );
    assert_eq!(
        comet
            .query(&format!(
                "SELECT toJSONString(labels) FROM {{db}}.series FINAL WHERE fingerprint = {fp} FORMAT TSV"
            ))
            .await
            .trim(),
        r#"{"__name__":"rpc_seconds","job":"api"}"#
    );
    // And in `series_activity`, for time-bounded label look-ups.
    assert_eq!(
        comet
            .query(&format!(
                "SELECT min(min_ts), max(max_ts) FROM {{db}}.series_activity WHERE fingerprint = {fp} FORMAT TSV"
            ))
            .await
            .trim(),
        format!("{t}\t{}", t + 15_000)
    );
    let metrics = comet.process.metrics_text().await;
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_histograms_written_total{source=\"remote_write_v1\"}"
        ),
        5.0
    );
}

#[tokio::test]
async fn v2_histograms_count_in_the_header_and_keep_start_timestamps() {
    let comet = Comet::start().await;
    let t = now_ms() - 60_000;
    let mut own_start = integer(t + 15_000);
    own_start.start_timestamp = t - 5_000;
    let request = v2::Request {
        symbols: vec![
            "".into(),
            "__name__".into(),
            "rpc_seconds".into(),
            "job".into(),
            "api".into(),
            "custom_h".into(),
        ],
        timeseries: vec![
            v2::TimeSeries {
                labels_refs: vec![1, 2, 3, 4],
                histograms: vec![integer(t), own_start],
                // An older sender's per-series created timestamp.
                created_timestamp: t - 10_000,
                ..Default::default()
            },
            v2::TimeSeries {
                labels_refs: vec![1, 5],
                histograms: vec![custom(t)],
                samples: vec![v2::Sample {
                    value: 1.0,
                    timestamp: t,
                }],
                ..Default::default()
            },
        ],
    };
    let response = comet.write_v2(&request).await;
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "1");
    assert_eq!(h["x-prometheus-remote-write-histograms-written"], "3");
    let rows = comet.rows("rpc_seconds").await;
    assert_eq!(rows.len(), 2);
    assert!(
        rows[0].starts_with(&format!("{t}\t{}\tfalse\t3\tgauge\t", t - 10_000)),
        "{}",
        rows[0]
    );
    assert!(
        rows[1].starts_with(&format!("{}\t{}\tfalse\t3\t", t + 15_000, t - 5_000)),
        "{}",
        rows[1]
    );
    assert!(rows[1].ends_with("[-2,-1,3]\t[1,3,2]\t[]\t[0,1]\t[2,1]\t[]\t[]"));
    assert_eq!(comet.rows("custom_h").await.len(), 1);
    assert_eq!(
        comet
            .query("SELECT count() FROM {db}.samples WHERE metric_name = 'custom_h' FORMAT TSV")
            .await
            .trim(),
        "1"
    );
}

#[tokio::test]
async fn bad_histograms_are_refused_and_counted_and_the_rest_kept() {
    let comet = Comet::start().await;
    let t = now_ms() - 60_000;
    // 1.0: floats, a good histogram, a bad one (count 12 for 13 in buckets)
    // in the same series, and a series whose only histogram is bad.
    let mut bad = integer(t + 15_000);
    bad.count = Some(Count::CountInt(12));
    let mut mixed = series(
        &[("__name__", "rpc_seconds")],
        vec![integer(t), bad, integer(t + 30_000)],
    );
    mixed.samples = vec![v1::Sample {
        value: 1.0,
        timestamp: t,
    }];
    let mut negative = custom(t);
    negative.custom_values = vec![0.5, 0.1, 1.0];
    let request = v1::WriteRequest {
        timeseries: vec![
            mixed,
            series(&[("__name__", "custom_h")], vec![negative]),
            v1::TimeSeries {
                labels: vec![label("__name__", "plain")],
                samples: vec![v1::Sample {
                    value: 2.0,
                    timestamp: t,
                }],
                ..Default::default()
            },
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 400);
    let text = response.text().await.unwrap();
    assert_eq!(
        text,
        format!(
            "series rpc_seconds{{}}: histogram at {} ms: 13 observations found in buckets, but the \
             Count field is 12: histogram's observation count should equal the number of \
             observations found in the buckets (in absence of NaN) (and 1 more rejected series)\n",
            t + 15_000
        )
    );
    let times: Vec<String> = comet
        .rows("rpc_seconds")
        .await
        .iter()
        .map(|r| r.split('\t').next().unwrap().to_string())
        .collect();
    assert_eq!(times, [t.to_string(), (t + 30_000).to_string()]);
    assert!(comet.rows("custom_h").await.is_empty());
    assert_eq!(
        comet
            .query("SELECT metric_name, count() FROM {db}.samples GROUP BY metric_name ORDER BY metric_name FORMAT TSV")
            .await,
        "plain\t1\nrpc_seconds\t1\n"
    );

    // 2.0: the same as a partial write, with the written counts.
    let request = v2::Request {
        symbols: vec!["".into(), "__name__".into(), "v2_h".into()],
        timeseries: vec![v2::TimeSeries {
            labels_refs: vec![1, 2],
            histograms: vec![integer(t), {
                let mut h = integer(t + 15_000);
                h.schema = 53;
                h
            }],
            samples: vec![v2::Sample {
                value: 3.0,
                timestamp: t,
            }],
            ..Default::default()
        }],
    };
    let response = comet.write_v2(&request).await;
    assert_eq!(response.status(), 400);
    let h = response.headers();
    assert_eq!(h["x-prometheus-remote-write-samples-written"], "1");
    assert_eq!(h["x-prometheus-remote-write-histograms-written"], "1");
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("histogram has an invalid schema")
    );
    assert_eq!(comet.rows("v2_h").await.len(), 1);

    let metrics = comet.process.metrics_text().await;
    let rejected = |source: &str, reason: &str| {
        metric_value(
            &metrics,
            &format!(
                "comet_ingest_histograms_rejected_total{{reason=\"{reason}\",source=\"{source}\"}}"
            ),
        )
    };
    assert_eq!(rejected("remote_write_v1", "histogram_count_mismatch"), 1.0);
    assert_eq!(
        rejected("remote_write_v1", "histogram_custom_bounds_not_increasing"),
        1.0
    );
    assert_eq!(rejected("remote_write_v2", "histogram_invalid_schema"), 1.0);
    assert_eq!(
        metric_value(
            &metrics,
            "comet_ingest_histograms_received_total{source=\"remote_write_v1\"}"
        ),
        4.0
    );
    // Histogram rejections are not counted as float samples.
    assert!(
        !metrics
            .contains("comet_ingest_samples_rejected_total{reason=\"histogram_count_mismatch\"")
    );
}

/// Batches written under an insert deduplication token (how Kafka makes
/// replays idempotent) store their histograms once, as their samples.
#[tokio::test]
async fn deduplicated_batches_store_histograms_once() {
    let db = TestDb::new().await;
    let writer = Writer::start(
        db.store.clone(),
        WriterSettings::default(),
        IngestMetrics::unregistered(),
    );
    let labels = Labels::new([("__name__", "dedup_h")], NameValidation::Legacy).unwrap();
    let t = now_ms() - 60_000;
    let histogram = NativeHistogram {
        timestamp_ms: t,
        start_timestamp_ms: t - 1,
        schema: 2,
        reset_hint: CounterResetHint::NotReset,
        zero_threshold: 0.0,
        sum: 1.0,
        positive_index: vec![1],
        negative_index: vec![],
        counts: HistogramCounts::Integer {
            count: 1,
            zero_count: 0,
            positive: vec![1],
            negative: vec![],
        },
        custom_values: vec![],
    };
    let batch = WriteBatch {
        histograms: vec![SeriesHistograms {
            series: Arc::new(Series::new(labels)),
            histograms: vec![histogram],
        }],
        ..Default::default()
    };
    for _ in 0..2 {
        let receipt = writer
            .write_deduplicated(batch.clone(), "test", "token-1".into())
            .await
            .unwrap();
        assert_eq!(receipt.histograms, 1);
    }
    let rows = stored_rows(db.name(), "dedup_h").await;
    assert_eq!(
        rows,
        [format!(
            "{t}\t{}\tfalse\t2\tnot_reset\t0\t0\t1\t0\t0\t{}\t[1]\t[1]\t[]\t[]\t[]\t[]\t[]",
            t - 1,
            bits(1.0)
        )]
    );
    writer.shutdown().await;
}

/// `GET /api/v1/query` at `time_ms`, the `data.result` array.
async fn query_result(comet: &Comet, query: &str, time_ms: i64) -> serde_json::Value {
    let body: serde_json::Value = comet
        .client
        .get(comet.process.url("/api/v1/query"))
        .query(&[
            ("query", query.to_string()),
            ("time", format!("{}", time_ms as f64 / 1000.0)),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["status"], "success", "{query}: {body}");
    body["data"]["result"].clone()
}

#[tokio::test]
async fn histograms_answer_queries_as_prometheus_writes_them() {
    let comet = Comet::start().await;
    let t = now_ms() - 60_000;
    let request = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "rpc_seconds"), ("job", "api")],
                vec![integer(t)],
            ),
            series(&[("__name__", "custom_h")], vec![custom(t)]),
            series(&[("__name__", "wide_h")], vec![wide(t)]),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let at = t + 1_000;

    // count_values labels a histogram with its `String()`, numbers as
    // Go's `%g` writes them.
    let counted = query_result(
        &comet,
        r#"count_values("h", {__name__=~"custom_h|wide_h"})"#,
        at,
    )
    .await;
    let mut labels: Vec<&str> = counted
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["metric"]["h"].as_str().unwrap())
        .collect();
    labels.sort();
    assert_eq!(
        labels,
        [
            "{count:2.5e+06, sum:1.5e-07, [-0.015625,-0.00390625):0.5, [-1e-05,1e-05]:500000, \
             (262144,1.048576e+06]:1e+06, (1.048576e+06,4.194304e+06]:999999.5}",
            "{count:6, sum:2, [-Inf,0.1]:1, (0.1,0.5]:2, (1,+Inf]:3}",
        ]
    );

    // The histogram itself: count, sum and the buckets holding
    // observations, lowest first, each `[boundaries, lower, upper, count]`.
    let raw = query_result(&comet, "rpc_seconds", at).await;
    let h = &raw[0]["histogram"][1];
    assert_eq!(raw[0]["metric"]["job"], "api");
    assert_eq!(
        (h["count"].as_str(), h["sum"].as_str()),
        (Some("13"), Some("42.5"))
    );
    let buckets = h["buckets"].as_array().unwrap();
    let shape: Vec<(u64, &str)> = buckets
        .iter()
        .map(|b| (b[0].as_u64().unwrap(), b[3].as_str().unwrap()))
        .collect();
    // Negative buckets 1 and 0 are [lower, upper), the zero bucket closed,
    // positive buckets -2, -1 and 3 (lower, upper].
    assert_eq!(
        shape,
        [(1, "1"), (1, "2"), (3, "4"), (0, "1"), (0, "3"), (0, "2")]
    );
    assert_eq!(
        (buckets[2][1].as_str(), buckets[2][2].as_str()),
        (Some("-0.001"), Some("0.001"))
    );
    // Positive bucket 3 of schema 3 is (2^(2/8), 2^(3/8)].
    assert_eq!(buckets[5][2].as_str(), Some("1.2968395546510096"));

    for (query, value) in [
        ("histogram_count(rpc_seconds)", "13"),
        ("histogram_sum(rpc_seconds)", "42.5"),
        ("histogram_avg(custom_h)", "0.3333333333333333"),
    ] {
        let result = query_result(&comet, query, at).await;
        assert_eq!(result[0]["value"][1], value, "{query}: {result}");
        assert!(result[0]["metric"].get("__name__").is_none(), "{query}");
    }
}

/// A counter histogram of schema 0 after `i` rounds of observations: `i`
/// in bucket 0, `2i` in bucket 1, summing to `10i`.
fn counter(timestamp: i64, i: i64) -> v1::Histogram {
    v1::Histogram {
        count: Some(Count::CountInt(3 * i as u64)),
        sum: 10.0 * i as f64,
        schema: 0,
        zero_count: Some(ZeroCount::ZeroCountInt(0)),
        positive_spans: spans(&[(0, 2)]),
        positive_deltas: vec![i, i],
        timestamp,
        ..Default::default()
    }
}

#[tokio::test]
async fn histogram_rates_add_up_across_resets_and_series() {
    let comet = Comet::start().await;
    let t0 = now_ms() - 600_000;
    let steady: Vec<v1::Histogram> = (0..=8).map(|i| counter(t0 + 15_000 * i, i)).collect();
    // Restarts after round 6: rounds 7 and 8 count 1 and 2 again.
    let restarted: Vec<v1::Histogram> = (0..=8)
        .map(|i| counter(t0 + 15_000 * i, if i > 6 { i - 6 } else { i }))
        .collect();
    let request = v1::WriteRequest {
        timeseries: vec![
            series(&[("__name__", "req_seconds"), ("job", "a")], steady),
            series(&[("__name__", "req_seconds"), ("job", "b")], restarted),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let at = t0 + 120_000;

    // The window (60 s, 120 s] holds rounds 5 to 8: 9 observations over
    // 45 s, extrapolated 15 s to the window's start, over 60 s.
    let rates = query_result(&comet, "rate(req_seconds[1m])", at).await;
    assert_eq!(rates.as_array().unwrap().len(), 2, "{rates}");
    for rate in rates.as_array().unwrap() {
        let h = &rate["histogram"][1];
        assert_near(&h["count"], 0.2, "count");
        assert_near(&h["sum"], 10.0 / 15.0, "sum");
        let buckets = h["buckets"].as_array().unwrap();
        assert_eq!(buckets.len(), 2, "{rate}");
        assert_near(&buckets[0][3], 1.0 / 15.0, "bucket 0");
        assert_near(&buckets[1][3], 2.0 / 15.0, "bucket 1");
        assert!(rate["metric"].get("__name__").is_none());
    }
    for (query, value) in [
        ("histogram_count(sum(rate(req_seconds[1m])))", 0.4),
        ("histogram_count(increase(req_seconds[1m]))", 12.0),
        (
            "histogram_sum(sum by (job) (rate(req_seconds[1m])))",
            10.0 / 15.0,
        ),
    ] {
        let result = query_result(&comet, query, at).await;
        assert_near(&result[0]["value"][1], value, query);
    }
    // The median is a quarter into bucket (1, 2] (0.2 of the 0.4
    // observations above it, 0.267 in it), interpolated exponentially.
    let result = query_result(
        &comet,
        "histogram_quantile(0.5, sum(rate(req_seconds[1m])))",
        at,
    )
    .await;
    assert_near(&result[0]["value"][1], 2f64.powf(0.25), "median");

    // Until now the metric had histograms alone, and its plans left floats
    // out; a float written now is answered at once, not after the names
    // are read again.
    let float = v1::WriteRequest {
        timeseries: vec![v1::TimeSeries {
            labels: vec![label("__name__", "req_seconds"), label("job", "c")],
            samples: vec![v1::Sample {
                value: 7.0,
                timestamp: t0 + 110_000,
            }],
            ..Default::default()
        }],
        metadata: vec![],
    };
    let response = comet.write_v1(&float).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let selected = query_result(&comet, "req_seconds", at).await;
    let floats: Vec<&Value> = selected
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r.get("value").is_some())
        .collect();
    assert_eq!(floats.len(), 1, "{selected}");
    assert_eq!(floats[0]["metric"]["job"], "c");
    assert_eq!(floats[0]["value"][1], "7");
    let counted = query_result(&comet, "count(req_seconds)", at).await;
    assert_eq!(counted[0]["value"][1], "3", "{counted}");
}

/// A number Prometheus writes as a string, within 1e-12 of `expected`.
fn assert_near(value: &serde_json::Value, expected: f64, what: &str) {
    let got: f64 = value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(f64::NAN);
    assert!(
        (got - expected).abs() <= 1e-12 * expected.abs().max(1.0),
        "{what}: {value} is not {expected}"
    );
}

#[tokio::test]
async fn operators_scale_trim_compare_and_select_histograms() {
    let comet = Comet::start().await;
    let t = now_ms() - 60_000;
    // Round 3 of `counter`: 3 observations in (0.5, 1], 6 in (1, 2].
    let request = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "op_seconds"), ("job", "a")],
                vec![counter(t, 3)],
            ),
            series(
                &[("__name__", "op_seconds"), ("job", "b")],
                vec![counter(t, 3)],
            ),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);
    let at = t + 1_000;

    // (1, 2] cut at 1.5 on the log scale keeps 6 * (1 - log2(1.5)).
    let above = 6.0 * (1.0 - 1.5f64.log2());
    for (query, value) in [
        ("histogram_count(op_seconds{job=\"a\"} * 2)", 18.0),
        ("histogram_sum(3 * op_seconds{job=\"a\"})", 90.0),
        ("histogram_count(op_seconds{job=\"a\"} / 3)", 3.0),
        ("histogram_count(-op_seconds{job=\"a\"})", -9.0),
        // Below 1: all of (0.5, 1], at its geometric midpoint.
        ("histogram_count(op_seconds{job=\"a\"} </ 1)", 3.0),
        (
            "histogram_sum(op_seconds{job=\"a\"} </ 1)",
            3.0 * 0.5f64.sqrt(),
        ),
        ("histogram_count(op_seconds{job=\"a\"} >/ 1.5)", above),
        (
            "histogram_count(op_seconds{job=\"a\"} - ignoring (job) op_seconds{job=\"b\"})",
            0.0,
        ),
        (
            "histogram_count(op_seconds{job=\"a\"} + ignoring (job) op_seconds{job=\"b\"})",
            18.0,
        ),
        ("count(op_seconds == op_seconds)", 2.0),
        (
            "count(op_seconds unless on (job) op_seconds{job=\"a\"})",
            1.0,
        ),
        ("count(limitk(1, op_seconds))", 1.0),
        ("timestamp(op_seconds{job=\"a\"})", t as f64 / 1000.0),
    ] {
        let result = query_result(&comet, query, at).await;
        assert_near(&result[0]["value"][1], value, query);
    }
    // A histogram is present, and never a float to compare or trim.
    for query in [
        "absent(op_seconds)",
        "op_seconds > 1",
        "op_seconds == bool 1",
        "up </ 1",
    ] {
        let result = query_result(&comet, query, at).await;
        assert_eq!(result, serde_json::json!([]), "{query}");
    }
    // The trim keeps the name; arithmetic drops it.
    let trimmed = query_result(&comet, "op_seconds{job=\"a\"} </ 1", at).await;
    assert_eq!(trimmed[0]["metric"]["__name__"], "op_seconds");
    let scaled = query_result(&comet, "op_seconds{job=\"a\"} * 1", at).await;
    assert!(scaled[0]["metric"].get("__name__").is_none());
}

/// A query result sorted by series, so two servers' answers compare.
fn sorted_result(result: &Value) -> Value {
    let mut result = result.clone();
    if let Some(series) = result.as_array_mut() {
        series.sort_by_key(|s| s["metric"].to_string());
    }
    result
}

/// A real Prometheus 3.5 with `remote_read` pointed at Comet reads back
/// integer and float histograms (and a counter over time) and answers as
/// Comet's own API does. Custom buckets are left out: Prometheus 3.5's
/// remote-read client loses their bounds and then panics writing them.
#[tokio::test]
async fn prometheus_reads_histograms_back_over_remote_read() {
    let comet = Comet::start().await;
    let t = now_ms() - 120_000;
    let t = t - t % 1000;
    let request = v1::WriteRequest {
        timeseries: vec![
            series(
                &[("__name__", "rpc_seconds"), ("job", "api")],
                vec![integer(t)],
            ),
            series(&[("__name__", "float_h")], vec![float(t)]),
            series(&[("__name__", "wide_h")], vec![wide(t)]),
            series(
                &[("__name__", "req_seconds")],
                (0..5).map(|i| counter(t + i * 15_000, i)).collect(),
            ),
        ],
        metadata: vec![],
    };
    let response = comet.write_v1(&request).await;
    assert_eq!(response.status(), 204, "{:?}", response.text().await);

    let mut reader = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n\
         remote_read:\n  - url: {}\n    read_recent: true\n    remote_timeout: 30s\n",
        comet.process.url("/api/v1/read")
    ));
    reader.wait_ready().await;
    let at_ms = t + 60_000;
    let at = at_ms as f64 / 1000.0;
    for query in [
        "rpc_seconds",
        "float_h",
        "wide_h",
        "req_seconds",
        "req_seconds[2m]",
        "histogram_count(rpc_seconds)",
        "histogram_sum(float_h)",
        "rate(req_seconds[1m])",
        "histogram_quantile(0.9, rate(req_seconds[1m]))",
    ] {
        let theirs = sorted_result(&reader.query_at(query, at).await["result"]);
        let ours = sorted_result(&query_result(&comet, query, at_ms).await);
        assert!(
            theirs.as_array().is_some_and(|r| !r.is_empty()),
            "{query}: Prometheus read nothing: {theirs}"
        );
        assert_eq!(
            theirs, ours,
            "{query}: Prometheus (remote-read) and Comet differ"
        );
    }
    reader.stop().await;
}
