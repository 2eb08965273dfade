//! The Prometheus HTTP API of a running comet over a real ClickHouse:
//! JSON shapes, parameters, error types and codes, limits stopped in
//! ClickHouse, the catalog endpoints' match[] and time ranges, and caches.

mod common;

use common::api::{ApiComet, POINTS, SCRAPE_MS, fixture, now_ms, series, write_to};
use common::{http_query, metric_value as metric};
use serde_json::Value;

fn secs(ms: i64) -> String {
    format!("{}", ms as f64 / 1000.0)
}

fn sorted_strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {v}"))
        .iter()
        .map(|s| s.as_str().expect("string").to_string())
        .collect();
    out.sort();
    out
}

#[tokio::test]
async fn queries_answer_in_prometheus_shapes() {
    let comet = ApiComet::start(&[]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let end = end - end % 1000;
    let t = secs(end);

    // Instant vector, GET and POST form alike.
    let params = [
        ("query", "sum by (code) (http_requests_total)"),
        ("time", t.as_str()),
    ];
    let (status, get) = comet.get("/api/v1/query", &params).await;
    assert_eq!(status, 200, "{get}");
    let (status, post) = comet.post_form("/api/v1/query", &params).await;
    assert_eq!(status, 200, "{post}");
    assert_eq!(get, post);
    assert_eq!(get["status"], "success");
    assert_eq!(get["data"]["resultType"], "vector");
    let result = get["data"]["result"].as_array().expect("result");
    assert_eq!(result.len(), 2, "{get}");
    for sample in result {
        let value = &sample["value"];
        assert!(value[0].is_number(), "time is a number: {value}");
        assert!(value[1].is_string(), "value is a string: {value}");
        assert_eq!(value[0].as_f64().unwrap(), end as f64 / 1000.0);
    }
    let ok = result
        .iter()
        .find(|s| s["metric"]["code"] == "200")
        .expect("code 200");
    let expected = (POINTS - 1) as f64 * 15.0 * (10.0 + 4.0);
    assert_eq!(ok["value"][1], format!("{expected}"));

    // Scalar: Grafana's health check.
    let (status, body) = comet
        .post_form("/api/v1/query", &[("query", "1+1"), ("time", "4")])
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        body,
        serde_json::json!({"status":"success","data":{"resultType":"scalar","result":[4,"2"]}})
    );

    // String.
    let data = comet
        .data("/api/v1/query", &[("query", "\"hello\""), ("time", "10.5")])
        .await;
    assert_eq!(
        data,
        serde_json::json!({"resultType":"string","result":[10.5,"hello"]})
    );

    // A range selector in an instant query is a matrix of raw samples.
    let data = comet
        .data(
            "/api/v1/query",
            &[
                ("query", "temperature_celsius{room=\"hall\"}[1m]"),
                ("time", &t),
            ],
        )
        .await;
    assert_eq!(data["resultType"], "matrix");
    assert_eq!(data["result"][0]["values"].as_array().unwrap().len(), 4);

    // Range query, RFC 3339 times and a float step; NaN and Inf as strings.
    let start = end - 10 * 60_000;
    let rfc = |ms: i64| {
        humantime::format_rfc3339_millis(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms as u64),
        )
        .to_string()
    };
    let data = comet
        .data(
            "/api/v1/query_range",
            &[
                ("query", "rate(http_requests_total{code=\"500\"}[1m]) / 0"),
                ("start", &rfc(start)),
                ("end", &rfc(end)),
                ("step", "60"),
            ],
        )
        .await;
    assert_eq!(data["resultType"], "matrix");
    let series = data["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{data}");
    let values = series[0]["values"].as_array().unwrap();
    assert_eq!(values.len(), 11);
    assert_eq!(values[0][0].as_f64().unwrap(), start as f64 / 1000.0);
    assert_eq!(values[0][1], "+Inf");
    assert!(series[0]["metric"].get("__name__").is_none());

    // stats=all adds the statistics Prometheus returns.
    let data = comet
        .data(
            "/api/v1/query",
            &[
                ("query", "http_requests_total"),
                ("time", &t),
                ("stats", "all"),
            ],
        )
        .await;
    assert!(
        data["stats"]["timings"]["evalTotalTime"].is_number(),
        "{data}"
    );
    assert!(
        data["stats"]["samples"]["totalQueryableSamples"]
            .as_u64()
            .unwrap()
            > 0
    );

    // format_query and parse_query.
    let data = comet
        .data(
            "/api/v1/format_query",
            &[("query", "sum(rate(x[5m]))by(job)")],
        )
        .await;
    assert_eq!(data, "sum by (job) (rate(x[5m]))");
    let data = comet
        .data("/api/v1/parse_query", &[("query", "up == 1")])
        .await;
    assert_eq!(data["type"], "binaryExpr", "{data}");
}

/// (path, parameters, status, errorType, part of the message).
type ErrorCase<'a> = (&'a str, &'a [(&'a str, &'a str)], u16, &'a str, &'a str);

#[tokio::test]
async fn bad_requests_get_prometheus_errors() {
    let comet = ApiComet::start(&[]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let t = secs(end);
    // Once a stack overflow that killed the server.
    let deep = format!("{}up", "-".repeat(20_000));
    let deep_calls = format!("{}up{}", "abs(".repeat(200), ")".repeat(200));

    let cases: &[ErrorCase] = &[
        (
            "/api/v1/query",
            &[("query", "sum(rate(x[5m])")],
            400,
            "bad_data",
            "unclosed",
        ),
        (
            "/api/v1/query",
            &[("query", &deep)],
            400,
            "bad_data",
            "Comet plans at most 128 levels",
        ),
        (
            "/api/v1/query",
            &[("query", &deep_calls)],
            400,
            "bad_data",
            "the query nests 201 levels deep",
        ),
        (
            "/api/v1/query",
            &[("query", "rate(up[5m] offset 1e30)")],
            400,
            "bad_data",
            "duration out of range",
        ),
        (
            "/api/v1/query",
            &[("query", "up"), ("time", "yesterday")],
            400,
            "bad_data",
            "invalid parameter \"time\": cannot parse \"yesterday\" to a valid timestamp",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "10"),
                ("end", "5"),
                ("step", "1"),
            ],
            400,
            "bad_data",
            "end timestamp must not be before start time",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "100000"),
                ("step", "1"),
            ],
            400,
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "10"),
                ("step", "-1"),
            ],
            400,
            "bad_data",
            "zero or negative query resolution step widths are not accepted",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up"),
                ("start", "0"),
                ("end", "10"),
                ("step", "fast"),
            ],
            400,
            "bad_data",
            "invalid parameter \"step\"",
        ),
        (
            "/api/v1/query_range",
            &[
                ("query", "up[5m]"),
                ("start", "0"),
                ("end", "10"),
                ("step", "1"),
            ],
            400,
            "bad_data",
            "invalid expression type \"range vector\" for range query",
        ),
        (
            "/api/v1/query",
            &[("query", "up"), ("timeout", "soon")],
            400,
            "bad_data",
            "invalid parameter \"timeout\"",
        ),
        (
            "/api/v1/series",
            &[],
            400,
            "bad_data",
            "no match[] parameter provided",
        ),
        (
            "/api/v1/series",
            &[("match[]", "{job=\"\"}")],
            400,
            "bad_data",
            "non-empty matcher",
        ),
        (
            "/api/v1/series",
            &[("match[]", "up{")],
            400,
            "bad_data",
            "invalid parameter \"match[]\"",
        ),
        (
            "/api/v1/labels",
            &[("limit", "-1")],
            400,
            "bad_data",
            "limit must be non-negative",
        ),
        (
            "/api/v1/query",
            &[
                ("query", "http_requests_total + on(job) http_requests_total"),
                ("time", &t),
            ],
            422,
            "execution",
            "many-to-many matching not allowed",
        ),
    ];
    for (path, params, code, error_type, message) in cases {
        for post in [false, true] {
            let (status, body) = if post {
                comet.post_form(path, params).await
            } else {
                comet.get(path, params).await
            };
            assert_eq!(status, *code, "{path} {params:?} -> {body}");
            assert_eq!(body["status"], "error", "{body}");
            assert_eq!(
                body["errorType"], *error_type,
                "{path} {params:?} -> {body}"
            );
            let error = body["error"].as_str().unwrap_or_default();
            assert!(
                error.contains(message),
                "{path} {params:?}: {error:?} lacks {message:?}"
            );
        }
    }

    // An unknown endpoint is a 404.
    let response = comet
        .client
        .get(comet.url("/api/v1/nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);

    // Error counts by endpoint and code are in /metrics.
    let metrics = comet.metrics().await;
    assert!(
        metric(
            &metrics,
            "comet_api_requests_total{code=\"400\",endpoint=\"query_range\"}"
        ) >= 10.0,
        "{metrics}"
    );
}

#[tokio::test]
async fn timeouts_stop_the_query_in_clickhouse() {
    let comet = ApiComet::start(&[]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    // A query made heavy on purpose: a per-millisecond subquery.
    let query = "count(max_over_time(http_requests_total[30m:1ms]))";
    let started = std::time::Instant::now();
    let (status, body) = comet
        .get(
            "/api/v1/query",
            &[("query", query), ("time", &secs(end)), ("timeout", "300ms")],
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["errorType"], "timeout", "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Nothing of it is left running in ClickHouse.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let running = http_query(&format!(
            "SELECT count() FROM system.processes WHERE current_database = '{}' FORMAT TSV",
            comet.database
        ))
        .await;
        if running.trim() == "0" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "query still running in ClickHouse"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn sample_and_series_limits_are_enforced_in_clickhouse() {
    let comet = ApiComet::start(&["--query-max-samples", "100", "--query-max-series", "2"]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let t = secs(end);
    let (status, body) = comet
        .get(
            "/api/v1/query",
            &[
                ("query", "count_over_time(http_requests_total[30m])"),
                ("time", &t),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errorType"], "execution");
    assert_eq!(
        body["error"],
        "query processing would load too many samples into memory in query execution"
    );
    let comet = ApiComet::start(&["--query-max-series", "2"]).await;
    comet.write(&fixture(end)).await;
    let (status, body) = comet
        .get(
            "/api/v1/query_range",
            &[
                ("query", "http_requests_total"),
                ("start", &secs(end - 60_000)),
                ("end", &t),
                ("step", "15"),
            ],
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("more than 2 series"),
        "{body}"
    );
    let ok = comet
        .data(
            "/api/v1/query",
            &[("query", "sum(http_requests_total)"), ("time", &t)],
        )
        .await;
    assert_eq!(ok["result"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn memory_limit_stops_a_query_in_clickhouse_while_ingest_goes_on() {
    let comet = ApiComet::start(&["--query-max-memory", "16MiB"]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let t = secs(end);
    // 20 writes of 50 new series x 10 samples each, alongside the queries.
    let (client, url) = (comet.client.clone(), comet.url("/api/v1/write"));
    let writes = async move {
        for request in 0..20 {
            let timeseries = (0..50)
                .map(|s| {
                    let id = (request * 50 + s).to_string();
                    let samples = (0..10).map(|i| (end - (9 - i) * 1_000, i as f64)).collect();
                    series(&[("__name__", "load_test"), ("id", &id)], samples)
                })
                .collect();
            let request = comet_schema::prompb::v1::WriteRequest {
                timeseries,
                ..Default::default()
            };
            write_to(&client, &url, &request).await;
        }
    };
    // A per-millisecond subquery: millions of points per series.
    let heavy = "count(max_over_time(http_requests_total[30m:1ms]))";
    let queries = async {
        let mut answers = Vec::new();
        for _ in 0..3 {
            answers.push(
                comet
                    .get("/api/v1/query", &[("query", heavy), ("time", &t)])
                    .await,
            );
        }
        answers
    };
    let ((), answers) = tokio::join!(writes, queries);
    for (status, body) in answers {
        assert_eq!(status, 422, "{body}");
        assert_eq!(body["errorType"], "execution", "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap_or_default()
                .contains("query.max_memory"),
            "{body}"
        );
    }
    // Every write was acknowledged (write_to checks) and is all there.
    let stored = comet
        .data(
            "/api/v1/query",
            &[
                ("query", "sum(count_over_time(load_test[1m]))"),
                ("time", &t),
            ],
        )
        .await;
    assert_eq!(stored["result"][0]["value"][1], "10000", "{stored}");
    // A light query still runs under the limit.
    let ok = comet
        .data(
            "/api/v1/query",
            &[("query", "sum(http_requests_total)"), ("time", &t)],
        )
        .await;
    assert_eq!(ok["result"].as_array().map(Vec::len), Some(1), "{ok}");
}

#[tokio::test]
async fn catalog_endpoints_honour_match_and_time_range() {
    let comet = ApiComet::start(&[]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let all_start = secs(end - POINTS * SCRAPE_MS);
    let recent_start = secs(end - 10 * 60_000);
    let end_s = secs(end);

    // Label names over the whole range, then the last 10 minutes (the
    // batch job stopped 20 minutes ago: its `job` value goes, not by day).
    let names = comet
        .data("/api/v1/labels", &[("start", &all_start), ("end", &end_s)])
        .await;
    assert_eq!(
        sorted_strings(&names),
        ["__name__", "code", "instance", "job", "le", "room"]
    );
    let jobs = comet
        .data(
            "/api/v1/label/job/values",
            &[("start", &all_start), ("end", &end_s)],
        )
        .await;
    assert_eq!(sorted_strings(&jobs), ["api", "batch", "sensors"]);
    let jobs = comet
        .data(
            "/api/v1/label/job/values",
            &[("start", &recent_start), ("end", &end_s)],
        )
        .await;
    assert_eq!(sorted_strings(&jobs), ["api", "sensors"]);
    // No range: all time.
    let jobs = comet.data("/api/v1/label/job/values", &[]).await;
    assert_eq!(sorted_strings(&jobs), ["api", "batch", "sensors"]);

    // match[] narrows names and values; several match[] are ORed.
    let names = comet
        .data("/api/v1/labels", &[("match[]", "temperature_celsius")])
        .await;
    assert_eq!(sorted_strings(&names), ["__name__", "job", "room"]);
    let (status, body) = comet
        .post_form(
            "/api/v1/labels",
            &[
                ("match[]", "temperature_celsius"),
                ("match[]", "{le=\"0.1\"}"),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        sorted_strings(&body["data"]),
        ["__name__", "job", "le", "room"]
    );
    let metrics = comet
        .data(
            "/api/v1/label/__name__/values",
            &[
                ("match[]", "{job=\"api\"}"),
                ("start", &recent_start),
                ("end", &end_s),
            ],
        )
        .await;
    assert_eq!(
        sorted_strings(&metrics),
        [
            "http_requests_total",
            "request_duration_seconds_bucket",
            "request_duration_seconds_count"
        ]
    );

    // Series: label sets, sorted, with limit and its warning.
    let (status, body) = comet
        .post_form(
            "/api/v1/series",
            &[
                ("match[]", "http_requests_total{code=\"200\"}"),
                ("start", &all_start),
                ("end", &end_s),
            ],
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"],
        serde_json::json!([
            {"__name__":"http_requests_total","code":"200","instance":"a:80","job":"api"},
            {"__name__":"http_requests_total","code":"200","instance":"b:80","job":"api"}
        ])
    );
    let (_, body) = comet
        .get(
            "/api/v1/series",
            &[("match[]", "http_requests_total"), ("limit", "1")],
        )
        .await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["warnings"][0], "results truncated due to limit");
    let (_, body) = comet
        .get(
            "/api/v1/series",
            &[
                ("match[]", "batch_job_last_run"),
                ("start", &recent_start),
                ("end", &end_s),
            ],
        )
        .await;
    assert_eq!(body["data"], serde_json::json!([]));

    // Metadata and exemplars.
    let data = comet.data("/api/v1/metadata", &[]).await;
    assert_eq!(
        data["http_requests_total"],
        serde_json::json!([{"type":"counter","help":"Requests served.","unit":""}])
    );
    let data = comet
        .data(
            "/api/v1/query_exemplars",
            &[
                ("query", "rate(request_duration_seconds_count[5m])"),
                ("start", &all_start),
                ("end", &end_s),
            ],
        )
        .await;
    assert_eq!(
        data[0]["seriesLabels"]["__name__"], "request_duration_seconds_count",
        "{data}"
    );
    assert_eq!(data[0]["exemplars"][0]["labels"]["trace_id"], "abc123");
    assert_eq!(data[0]["exemplars"][0]["value"], "0.42");
    assert!(data[0]["exemplars"][0]["timestamp"].is_number());

    // Cardinality from ClickHouse.
    let data = comet.data("/api/v1/status/tsdb", &[]).await;
    assert_eq!(data["headStats"]["numSeries"], 11, "{data}");
    assert_eq!(
        data["seriesCountByMetricName"][0]["name"],
        "request_duration_seconds_bucket"
    );
    assert_eq!(data["seriesCountByMetricName"][0]["value"], 4);
    assert!(data["labelValueCountByLabelName"].as_array().unwrap().len() > 3);
    assert!(
        data["seriesCountByLabelValuePair"][0]["name"]
            .as_str()
            .unwrap()
            .contains('=')
    );

    // The same label request again is served from the cache.
    let before = comet.metrics().await;
    comet
        .data(
            "/api/v1/label/job/values",
            &[("start", &all_start), ("end", &end_s)],
        )
        .await;
    let after = comet.metrics().await;
    let hits = "comet_query_cache_requests_total{cache=\"labels\",result=\"hit\"}";
    assert_eq!(metric(&after, hits), metric(&before, hits) + 1.0, "{after}");
}

#[tokio::test]
async fn status_endpoints_and_empty_lists() {
    let comet = ApiComet::start(&[]).await;
    let data = comet.data("/api/v1/status/buildinfo", &[]).await;
    assert!(
        data["version"].as_str().unwrap().starts_with("2."),
        "{data}"
    );
    assert!(
        data.get("features").is_none(),
        "Grafana would take Comet for Mimir"
    );
    // What Comet evaluates, in Prometheus 3.9's names for it.
    let data = comet.data("/api/v1/features", &[]).await;
    assert_eq!(data["promql_functions"]["rate"], true, "{data}");
    assert_eq!(data["promql_functions"]["histogram_count"], true, "{data}");
    assert_eq!(data["promql_functions"]["start_timestamp"], false, "{data}");
    assert_eq!(data["promql"]["fill"], true, "{data}");
    assert_eq!(data["promql_operators"][">/"], true, "{data}");
    let data = comet.data("/api/v1/status/config", &[]).await;
    assert!(
        data["yaml"].as_str().unwrap().contains("lookback_delta"),
        "{data}"
    );
    let data = comet.data("/api/v1/status/flags", &[]).await;
    assert_eq!(data["query.max_points_per_series"], "11000", "{data}");
    let data = comet.data("/api/v1/status/runtimeinfo", &[]).await;
    assert!(data["startTime"].is_string(), "{data}");
    assert_eq!(
        comet.data("/api/v1/targets", &[]).await,
        serde_json::json!({"activeTargets":[],"droppedTargets":[],"droppedTargetCounts":{}})
    );
    assert_eq!(
        comet.data("/api/v1/rules", &[]).await,
        serde_json::json!({"groups":[]})
    );
    assert_eq!(
        comet.data("/api/v1/alerts", &[]).await,
        serde_json::json!({"alerts":[]})
    );
}

#[tokio::test]
async fn range_results_are_cached_by_step_except_recent_steps() {
    let comet = ApiComet::start(&["--query-results-cache-freshness", "5m"]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let step = 30_000;
    let end = end - end.rem_euclid(step);
    let query = [
        ("query", "sum by (code) (rate(http_requests_total[1m]))"),
        ("step", "30"),
    ];
    let range = |from: i64, to: i64| {
        let mut p: Vec<(&str, String)> = query.iter().map(|(k, v)| (*k, v.to_string())).collect();
        p.push(("start", secs(from)));
        p.push(("end", secs(to)));
        p
    };
    let ask = |from: i64, to: i64| {
        let params = range(from, to);
        let comet = &comet;
        async move {
            let borrowed: Vec<(&str, &str)> =
                params.iter().map(|(k, v)| (*k, v.as_str())).collect();
            comet.data("/api/v1/query_range", &borrowed).await
        }
    };
    let cache = |text: &str, result: &str| {
        metric(
            text,
            &format!("comet_query_cache_requests_total{{cache=\"results\",result=\"{result}\"}}"),
        )
    };
    let first = ask(end - 20 * 60_000, end).await;
    // A dashboard refresh a minute later: the old steps come from the
    // cache, the steps of the last 5 minutes are computed again.
    let second = ask(end - 19 * 60_000, end).await;
    let metrics = comet.metrics().await;
    assert_eq!(cache(&metrics, "miss"), 1.0, "{metrics}");
    assert_eq!(cache(&metrics, "partial"), 1.0, "{metrics}");
    // Same answer as computing it all afresh (a different query text,
    // the same meaning).
    let fresh = comet
        .data(
            "/api/v1/query_range",
            &[
                (
                    "query",
                    "sum by (code) (rate(http_requests_total{job=\"api\"}[1m]))",
                ),
                ("step", "30"),
                ("start", &secs(end - 19 * 60_000)),
                ("end", &secs(end)),
            ],
        )
        .await;
    assert_eq!(second, fresh);
    assert_eq!(
        first["result"][0]["values"].as_array().unwrap()[2..],
        second["result"][0]["values"].as_array().unwrap()[..]
    );
}

/// With every write going through this Comet, a refresh with nothing
/// written since is answered from the cache alone, and a late sample makes
/// it compute again exactly the steps from the sample's time on.
#[tokio::test]
async fn the_sole_writers_cache_recomputes_only_the_steps_a_late_sample_reaches() {
    let comet = ApiComet::start(&["--query-results-cache-sole-writer", "yes"]).await;
    let end = now_ms() - 5_000;
    comet.write(&fixture(end)).await;
    let step = 30_000;
    let end = end - end.rem_euclid(step);
    let ask = |query: &'static str, from: i64| {
        let comet = &comet;
        async move {
            comet
                .data(
                    "/api/v1/query_range",
                    &[
                        ("query", query),
                        ("step", "30"),
                        ("start", &secs(from)),
                        ("end", &secs(end)),
                    ],
                )
                .await
        }
    };
    let cached = "sum by (code) (rate(http_requests_total[1m]))";
    // The same meaning in other words: never answered from the cache.
    let uncached = "sum by (code) (rate(http_requests_total{job=\"api\"}[1m]))";
    let lookups = |text: &str, result: &str| {
        metric(
            text,
            &format!("comet_query_cache_requests_total{{cache=\"results\",result=\"{result}\"}}"),
        )
    };
    ask(cached, end - 20 * 60_000).await;
    // Nothing written since: every step, the newest too, is cached.
    let again = ask(cached, end - 19 * 60_000).await;
    let metrics = comet.metrics().await;
    assert_eq!(lookups(&metrics, "miss"), 1.0, "{metrics}");
    assert_eq!(lookups(&metrics, "hit"), 1.0, "{metrics}");
    assert_eq!(again, ask(uncached, end - 19 * 60_000).await);

    // A late series whose samples start 10 minutes back.
    let late: Vec<(i64, f64)> = (0..=40)
        .map(|i| (end - 10 * 60_000 + i * 15_000, i as f64 * 60.0))
        .collect();
    comet
        .write(&comet_schema::prompb::v1::WriteRequest {
            timeseries: vec![series(
                &[
                    ("__name__", "http_requests_total"),
                    ("job", "api"),
                    ("instance", "late:80"),
                    ("code", "500"),
                ],
                late,
            )],
            ..Default::default()
        })
        .await;
    let after = ask(cached, end - 19 * 60_000).await;
    let metrics = comet.metrics().await;
    assert_eq!(lookups(&metrics, "partial"), 1.0, "{metrics}");
    assert_ne!(after, again, "the late samples are in the answer");
    assert_eq!(after, ask(uncached, end - 19 * 60_000).await);
}

#[tokio::test]
async fn means_whose_sums_overflow_answer_as_prometheus() {
    // Sums beyond ±1.8e308 switch Prometheus to an incremental mean; Comet's
    // fast statement stops there and its exact fallback answers.
    let comet = ApiComet::start(&[]).await;
    let end = now_ms() - 5_000;
    let end = end - end % 1000;
    let big = 1e308;
    let samples = |v: f64| {
        (0..4)
            .map(|i| (end - 45_000 + i * SCRAPE_MS, v))
            .collect::<Vec<_>>()
    };
    comet
        .write(&comet_schema::prompb::v1::WriteRequest {
            timeseries: vec![
                series(&[("__name__", "big"), ("s", "1")], samples(big)),
                series(&[("__name__", "big"), ("s", "2")], samples(big)),
                series(&[("__name__", "small"), ("s", "1")], samples(2.0)),
            ],
            ..Default::default()
        })
        .await;
    let t = secs(end);
    let value = |body: &Value| -> f64 {
        body["result"][0]["value"][1]
            .as_str()
            .unwrap_or_else(|| panic!("no value: {body}"))
            .parse()
            .expect("a float")
    };
    for query in [
        "avg_over_time(big{s=\"1\"}[1m])",
        "avg(big)",
        "avg(avg_over_time(big[1m]))",
    ] {
        let body = comet
            .data("/api/v1/query", &[("query", query), ("time", &t)])
            .await;
        assert_eq!(value(&body), big, "{query}: {body}");
    }
    // The same as a range query (the series-major plan).
    let body = comet
        .data(
            "/api/v1/query_range",
            &[
                ("query", "avg_over_time(big[1m])"),
                ("start", &secs(end - 30_000)),
                ("end", &t),
                ("step", "15"),
            ],
        )
        .await;
    let result = body["result"].as_array().expect("matrix");
    assert_eq!(result.len(), 2, "{body}");
    for s in result {
        let points = s["values"].as_array().expect("points");
        assert_eq!(points.len(), 3, "{s}");
        for point in points {
            let v: f64 = point[1].as_str().expect("value").parse().expect("float");
            assert_eq!(v, big, "{s}");
        }
    }
}
