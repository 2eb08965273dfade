//! A Comet serving the Prometheus HTTP API over a database of its own, and
//! a fixed data set written to it (and, for comparisons, to a real
//! Prometheus) through remote-write.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use comet_schema::prompb::v1;
use prost::Message;
use serde_json::Value;

use super::{CometProcess, serve_new_database, unique_database};

/// One sample every 15 s over the last 30 minutes.
pub const SCRAPE_MS: i64 = 15_000;
pub const POINTS: i64 = 120;

pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as i64
}

/// A running `comet serve` on a fresh database.
pub struct ApiComet {
    pub process: CometProcess,
    pub database: String,
    pub client: reqwest::Client,
}

impl ApiComet {
    pub async fn start(extra: &[&str]) -> Self {
        let (process, database) = serve_new_database("comet_api", extra);
        Self::ready(process, database).await
    }

    /// [`ApiComet::start`] on the ClickHouse at `url` (a cluster's node).
    pub async fn start_on(url: &str, extra: &[&str]) -> Self {
        Self::start_on_database(url, &unique_database("comet_api"), extra).await
    }

    /// [`ApiComet::start_on`] an existing `database` (a second Comet).
    pub async fn start_on_database(url: &str, database: &str, extra: &[&str]) -> Self {
        let database = database.to_string();
        let mut args = vec![
            "serve",
            "--clickhouse-url",
            url,
            "--clickhouse-database",
            &database,
        ];
        args.extend_from_slice(extra);
        Self::ready(CometProcess::spawn(&args), database).await
    }

    async fn ready(mut process: CometProcess, database: String) -> Self {
        process.wait_ready(Duration::from_secs(180)).await;
        Self {
            process,
            database,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(60))
                .build()
                .expect("HTTP client"),
        }
    }

    pub fn url(&self, path: &str) -> String {
        self.process.url(path)
    }

    /// Writes a remote-write 1.0 request; expects 204.
    pub async fn write(&self, request: &v1::WriteRequest) {
        write_to(&self.client, &self.url("/api/v1/write"), request).await;
    }

    /// GET with query parameters: (status, JSON body).
    pub async fn get(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .get(self.url(path))
            .query(params)
            .send()
            .await
            .expect("GET");
        decode(response).await
    }

    /// POST with a form body: (status, JSON body).
    pub async fn post_form(&self, path: &str, params: &[(&str, &str)]) -> (u16, Value) {
        let response = self
            .client
            .post(self.url(path))
            .form(params)
            .send()
            .await
            .expect("POST");
        decode(response).await
    }

    /// `data` of a successful GET.
    pub async fn data(&self, path: &str, params: &[(&str, &str)]) -> Value {
        let (status, body) = self.get(path, params).await;
        assert_eq!(status, 200, "{path} {params:?}: {body}");
        assert_eq!(body["status"], "success", "{body}");
        body["data"].clone()
    }

    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }
}

async fn decode(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let body = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, body)
}

/// Posts a snappy remote-write 1.0 request to `url`; expects a 2xx.
pub async fn write_to(client: &reqwest::Client, url: &str, request: &v1::WriteRequest) {
    let body = snap::raw::Encoder::new()
        .compress_vec(&request.encode_to_vec())
        .expect("snappy");
    let response = client
        .post(url)
        .header("Content-Encoding", "snappy")
        .header("Content-Type", "application/x-protobuf")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .body(body)
        .send()
        .await
        .expect("remote write");
    let status = response.status();
    let text = response.text().await.unwrap_or_default();
    assert!(
        status.is_success(),
        "remote write to {url}: {status} {text}"
    );
}

/// One series of a remote-write request, labels sorted by name.
pub fn series(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> v1::TimeSeries {
    let mut labels: Vec<v1::Label> = labels
        .iter()
        .map(|(n, v)| v1::Label {
            name: n.to_string(),
            value: v.to_string(),
        })
        .collect();
    labels.sort_by(|a, b| a.name.cmp(&b.name));
    v1::TimeSeries {
        labels,
        samples: samples
            .into_iter()
            .map(|(timestamp, value)| v1::Sample { value, timestamp })
            .collect(),
        ..Default::default()
    }
}

/// The data set: counters, a gauge, a classic histogram and a series that
/// stopped 20 minutes before `end_ms`; samples every 15 s for 30 minutes
/// up to half a second before `end_ms` rounded down to the second. Queries
/// at whole seconds then never have a sample on a window's edge, where
/// Prometheus 2 (closed windows) and 3 (left-open) differ.
pub fn fixture(end_ms: i64) -> v1::WriteRequest {
    let end_ms = end_ms - end_ms % 1000 - 500;
    let start = end_ms - (POINTS - 1) * SCRAPE_MS;
    let times = |from: i64, n: i64| (0..n).map(move |i| from + i * SCRAPE_MS);
    let mut timeseries = Vec::new();
    for (instance, code, rate) in [
        ("a:80", "200", 10.0),
        ("b:80", "200", 4.0),
        ("a:80", "500", 0.5),
    ] {
        timeseries.push(series(
            &[
                ("__name__", "http_requests_total"),
                ("job", "api"),
                ("instance", instance),
                ("code", code),
            ],
            times(start, POINTS)
                .enumerate()
                .map(|(i, t)| (t, i as f64 * rate * 15.0))
                .collect(),
        ));
    }
    for room in ["kitchen", "hall"] {
        let base = if room == "kitchen" { 21.0 } else { 18.0 };
        timeseries.push(series(
            &[
                ("__name__", "temperature_celsius"),
                ("job", "sensors"),
                ("room", room),
            ],
            times(start, POINTS)
                .enumerate()
                .map(|(i, t)| (t, base + (i % 7) as f64 * 0.25))
                .collect(),
        ));
    }
    for (le, share) in [("0.1", 0.5), ("0.5", 0.8), ("1", 0.95), ("+Inf", 1.0)] {
        timeseries.push(series(
            &[
                ("__name__", "request_duration_seconds_bucket"),
                ("job", "api"),
                ("le", le),
            ],
            times(start, POINTS)
                .enumerate()
                .map(|(i, t)| (t, (i as f64 * 20.0 * share).floor()))
                .collect(),
        ));
    }
    // Ended 20 minutes ago: outside a "last 10 minutes" range.
    timeseries.push(series(
        &[("__name__", "batch_job_last_run"), ("job", "batch")],
        times(start, 40).map(|t| (t, 1.0)).collect(),
    ));
    let mut exemplar_series = series(
        &[
            ("__name__", "request_duration_seconds_count"),
            ("job", "api"),
        ],
        times(start, POINTS)
            .enumerate()
            .map(|(i, t)| (t, i as f64 * 20.0))
            .collect(),
    );
    exemplar_series.exemplars = vec![v1::Exemplar {
        labels: vec![v1::Label {
            name: "trace_id".into(),
            value: "abc123".into(),
        }],
        value: 0.42,
        timestamp: end_ms - 60_000,
    }];
    timeseries.push(exemplar_series);
    v1::WriteRequest {
        timeseries,
        metadata: vec![v1::MetricMetadata {
            r#type: v1::MetricType::Counter as i32,
            metric_family_name: "http_requests_total".into(),
            help: "Requests served.".into(),
            unit: String::new(),
        }],
    }
}
