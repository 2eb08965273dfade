//! Replays the requests Grafana's Prometheus data source sends (Grafana
//! 10-12, default settings, read from `pkg/promlib` and
//! `packages/grafana-prometheus`): bodies encoded as Go's
//! `url.Values.Encode` (keys sorted, `+` for spaces) or the browser's
//! `URLSearchParams`, times as Grafana forms them, Grafana's headers; and
//! checks each answer the way Grafana parses it.

mod common;

use common::api::{ApiComet, fixture, now_ms};
use serde_json::Value;

/// `url.QueryEscape` / `URLSearchParams`: unreserved bytes as they are,
/// space as `+`, the rest percent-encoded.
fn escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body with keys in the given order.
fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// Go's `url.Values.Encode`: keys sorted.
fn go_body(pairs: &[(&str, &str)]) -> String {
    let mut sorted = pairs.to_vec();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    form(&sorted)
}

struct Grafana<'a> {
    comet: &'a ApiComet,
}

impl Grafana<'_> {
    /// A backend (Go) request: POST, form body, Grafana's forwarded headers.
    async fn backend_post(&self, path: &str, encoded: String) -> (u16, Value) {
        let response = self
            .comet
            .client
            .post(self.comet.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", "Grafana/12.1.0")
            .header("X-Dashboard-Uid", "comet-host")
            .header("X-Panel-Id", "4")
            .header("X-Grafana-Org-Id", "1")
            .header("X-Datasource-Uid", "comet")
            .body(encoded)
            .send()
            .await
            .expect("POST");
        read(response).await
    }

    /// A resource request proxied from the browser, GET with a raw query.
    async fn resource_get(&self, path: &str, query: String) -> (u16, Value) {
        let url = if query.is_empty() {
            self.comet.url(path)
        } else {
            format!("{}?{query}", self.comet.url(path))
        };
        let response = self
            .comet
            .client
            .get(url)
            .header("Accept", "application/json, text/plain, */*")
            .header("X-Grafana-Org-Id", "1")
            .header("X-Grafana-Cache", "private, max-age=60")
            .send()
            .await
            .expect("GET");
        read(response).await
    }
}

async fn read(response: reqwest::Response) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or_else(|e| {
        panic!("Grafana: response couldn't be parsed, it is non-json ({e}): {text}")
    });
    (status, value)
}

/// The envelope as `parseResponse` reads it: 200, `status` a string that is
/// "success", `warnings`/`infos` arrays of strings when present.
fn envelope(status: u16, body: &Value, what: &str) -> Value {
    assert_eq!(status, 200, "{what}: {body}");
    assert_eq!(body["status"], "success", "{what}: {body}");
    for key in ["warnings", "infos"] {
        if let Some(list) = body.get(key) {
            assert!(
                list.as_array()
                    .is_some_and(|l| l.iter().all(Value::is_string)),
                "{what}: {key} must be strings: {body}"
            );
        }
    }
    body["data"].clone()
}

/// `[ts, "v"]` as `readTimeValuePair` reads it.
fn time_value_pair(pair: &Value, what: &str) {
    let pair = pair
        .as_array()
        .unwrap_or_else(|| panic!("{what}: pair {pair}"));
    assert_eq!(pair.len(), 2, "{what}: {pair:?}");
    assert!(
        pair[0].is_number(),
        "{what}: timestamp must be a number: {pair:?}"
    );
    let v = pair[1]
        .as_str()
        .unwrap_or_else(|| panic!("{what}: value must be a string: {pair:?}"));
    let parsed = match v {
        "NaN" | "+Inf" | "-Inf" | "Inf" => true,
        other => other.parse::<f64>().is_ok(),
    };
    assert!(parsed, "{what}: value {v:?} is not a float");
}

fn label_map(labels: &Value, what: &str) {
    let map = labels
        .as_object()
        .unwrap_or_else(|| panic!("{what}: labels {labels}"));
    assert!(
        map.values().all(Value::is_string),
        "{what}: label values must be strings: {labels}"
    );
}

/// `ReadPrometheusStyleResult`: resultType, then result by type. Returns
/// the number of series (or 1 for scalars and strings).
fn query_data(data: &Value, what: &str) -> usize {
    let result = &data["result"];
    match data["resultType"].as_str() {
        Some("matrix") | Some("vector") => {
            let series = result
                .as_array()
                .unwrap_or_else(|| panic!("{what}: {data}"));
            for s in series {
                if let Some(metric) = s.get("metric") {
                    label_map(metric, what);
                }
                if let Some(value) = s.get("value") {
                    time_value_pair(value, what);
                }
                if let Some(values) = s.get("values") {
                    for pair in values.as_array().expect("values") {
                        time_value_pair(pair, what);
                    }
                }
            }
            series.len()
        }
        Some("scalar") => {
            time_value_pair(result, what);
            1
        }
        Some("string") => {
            assert!(
                result[0].is_number() && result[1].is_string(),
                "{what}: {data}"
            );
            1
        }
        other => panic!("{what}: unknown result type {other:?}: {data}"),
    }
}

fn strings(data: &Value, what: &str) -> Vec<String> {
    let list = data
        .as_array()
        .unwrap_or_else(|| panic!("{what}: not an array: {data}"));
    list.iter()
        .map(|v| {
            v.as_str()
                .unwrap_or_else(|| panic!("{what}: {v}"))
                .to_string()
        })
        .collect()
}

#[tokio::test]
async fn grafana_request_shapes_get_answers_grafana_parses() {
    let comet = ApiComet::start(&[]).await;
    let now = now_ms();
    comet.write(&fixture(now - 5_000)).await;
    let grafana = Grafana { comet: &comet };

    // Save & test: POST query=1+1&time=4, exactly 200, then buildinfo.
    let (status, body) = grafana
        .backend_post("/api/v1/query", go_body(&[("query", "1+1"), ("time", "4")]))
        .await;
    let data = envelope(status, &body, "health check");
    assert_eq!(
        data,
        serde_json::json!({"resultType":"scalar","result":[4,"2"]})
    );
    let (status, body) = grafana
        .resource_get("/api/v1/status/buildinfo", String::new())
        .await;
    let data = envelope(status, &body, "buildinfo");
    let version = data["version"].as_str().expect("version is a string");
    assert_eq!(version.split('.').count(), 3, "semver: {version}");
    assert!(
        data.get("features").is_none(),
        "features would make Grafana say Mimir"
    );

    // Data source init: recording rules, then the exemplar probe with
    // start/end in milliseconds.
    let (status, body) = grafana.resource_get("/api/v1/rules", String::new()).await;
    assert!(envelope(status, &body, "rules")["groups"].is_array());
    let (status, body) = grafana
        .backend_post(
            "/api/v1/query_exemplars",
            form(&[
                ("query", "test"),
                ("start", &(now - 3_600_000).to_string()),
                ("end", &now.to_string()),
            ]),
        )
        .await;
    assert_eq!(body["status"], "success", "exemplar probe: {status} {body}");

    // Query editor start: metric names, label names, metadata; start/end
    // snapped to minutes (cache level Low) from a 6 h range.
    let to_s = (now + 999) / 1000;
    let from_s = to_s - 6 * 3600;
    let (s, e) = (
        (from_s / 60 * 60).to_string(),
        ((to_s + 59) / 60 * 60).to_string(),
    );
    let (status, body) = grafana
        .resource_get(
            "/api/v1/label/__name__/values",
            form(&[("limit", "40000"), ("start", &s), ("end", &e)]),
        )
        .await;
    let names = strings(&envelope(status, &body, "metric names"), "metric names");
    assert!(
        names.contains(&"http_requests_total".to_string()),
        "{names:?}"
    );
    let (status, body) = grafana
        .backend_post(
            "/api/v1/labels",
            form(&[("limit", "40000"), ("start", &s), ("end", &e)]),
        )
        .await;
    let labels = strings(&envelope(status, &body, "labels"), "labels");
    assert!(labels.contains(&"instance".to_string()), "{labels:?}");
    let (status, body) = grafana
        .resource_get("/api/v1/metadata", form(&[("limit", "40000")]))
        .await;
    let metadata = envelope(status, &body, "metadata");
    for (name, entries) in metadata.as_object().expect("metadata object") {
        for entry in entries.as_array().expect("entries") {
            for key in ["type", "help", "unit"] {
                assert!(entry[key].is_string(), "metadata {name}: {entry}");
            }
        }
    }
    assert_eq!(metadata["http_requests_total"][0]["type"], "counter");

    // Metric browser: label keys of a selector, values with match[],
    // metric search by regex.
    let (status, body) = grafana
        .backend_post(
            "/api/v1/labels",
            form(&[
                ("limit", "40000"),
                ("start", &s),
                ("end", &e),
                ("match[]", "{__name__=\"http_requests_total\",job=\"api\"}"),
            ]),
        )
        .await;
    let keys = strings(&envelope(status, &body, "labels of a selector"), "labels");
    assert_eq!(keys, ["__name__", "code", "instance", "job"]);
    let (status, body) = grafana
        .resource_get(
            "/api/v1/label/instance/values",
            form(&[
                ("limit", "40000"),
                ("start", &s),
                ("end", &e),
                ("match[]", "{__name__=\"http_requests_total\"}"),
            ]),
        )
        .await;
    let values = strings(&envelope(status, &body, "label values"), "label values");
    assert_eq!(values, ["a:80", "b:80"]);
    let (status, body) = grafana
        .resource_get(
            "/api/v1/label/__name__/values",
            form(&[
                ("limit", "1000"),
                ("start", &s),
                ("end", &e),
                ("match[]", "{__name__=~\".*duration.*\"}"),
            ]),
        )
        .await;
    let found = strings(&envelope(status, &body, "metric search"), "metric search");
    assert_eq!(
        found,
        [
            "request_duration_seconds_bucket",
            "request_duration_seconds_count"
        ]
    );

    // Template variables: query_result() and a series query.
    let (status, body) = grafana
        .backend_post(
            "/api/v1/query",
            form(&[
                ("query", "topk(1, http_requests_total)"),
                ("time", &to_s.to_string()),
            ]),
        )
        .await;
    let data = envelope(status, &body, "query_result");
    assert_eq!(data["resultType"], "vector");
    assert_eq!(query_data(&data, "query_result"), 1);
    let (status, body) = grafana
        .backend_post(
            "/api/v1/series",
            form(&[
                ("match[]", "temperature_celsius"),
                ("start", &from_s.to_string()),
                ("end", &to_s.to_string()),
            ]),
        )
        .await;
    let series = envelope(status, &body, "series");
    let series = series.as_array().expect("series array");
    assert_eq!(series.len(), 2);
    series.iter().for_each(|s| label_map(s, "series"));

    // A dashboard panel: range query with step and start/end aligned to it,
    // $__rate_interval already interpolated, optional timeout; then the
    // instant half of Explore's "Both" with a millisecond time.
    let step = 60;
    let (rs, re) = ((to_s - 3600) / step * step, to_s / step * step);
    for timeout in [None, Some("30s")] {
        let mut params = vec![
            (
                "query",
                "sum by (code) (rate(http_requests_total{job=\"api\"}[2m]))".to_string(),
            ),
            ("start", rs.to_string()),
            ("end", re.to_string()),
            ("step", step.to_string()),
        ];
        if let Some(t) = timeout {
            params.push(("timeout", t.to_string()));
        }
        let pairs: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (status, body) = grafana
            .backend_post("/api/v1/query_range", go_body(&pairs))
            .await;
        let data = envelope(status, &body, "panel range query");
        assert_eq!(data["resultType"], "matrix");
        assert_eq!(query_data(&data, "panel"), 2);
        assert!(data.get("stats").is_none(), "stats only when asked for");
        let first = data["result"][0]["values"][0][0].as_f64().unwrap();
        assert_eq!((first as i64 - rs) % step, 0, "steps on Grafana's grid");
    }
    let time = format!("{}.{:03}", now / 1000, now % 1000);
    let (status, body) = grafana
        .backend_post(
            "/api/v1/query",
            go_body(&[
                ("query", "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))"),
                ("time", &time),
            ]),
        )
        .await;
    let data = envelope(status, &body, "instant panel query");
    assert_eq!(query_data(&data, "instant"), 1);

    // Exemplars of a panel.
    let (status, body) = grafana
        .backend_post(
            "/api/v1/query_exemplars",
            go_body(&[
                ("query", "rate(request_duration_seconds_count[5m])"),
                ("start", &rs.to_string()),
                ("end", &(re + step).to_string()),
            ]),
        )
        .await;
    let data = envelope(status, &body, "exemplars");
    let groups = data.as_array().expect("exemplar groups");
    assert_eq!(groups.len(), 1, "{data}");
    label_map(&groups[0]["seriesLabels"], "exemplars");
    for e in groups[0]["exemplars"].as_array().expect("exemplars") {
        label_map(&e["labels"], "exemplar");
        assert!(e["value"].is_string() && e["timestamp"].is_number(), "{e}");
    }

    // A bad query: an error envelope with a status Grafana reads (400).
    let (status, body) = grafana
        .backend_post(
            "/api/v1/query_range",
            go_body(&[
                ("query", "rate(x[5m]"),
                ("start", "1"),
                ("end", "2"),
                ("step", "1"),
            ]),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(body["status"], "error");
    assert!(
        body["errorType"].is_string() && body["error"].is_string(),
        "{body}"
    );
}
