//! Answers identical to Prometheus 3.5's to the last character where
//! Prometheus defines them: the same samples go to both over remote-write,
//! and the same queries are asked of both.

mod common;

use std::collections::BTreeSet;

use common::api::{ApiComet, now_ms, series, write_to};
use common::peers::Prometheus;
use serde_json::Value;

/// Prometheus takes the samples over remote-write and evaluates Prometheus
/// 3's experimental functions as Comet does.
///
/// Not compared: which of equal values `topk`, `bottomk` and `limitk`
/// keep. Prometheus walks its series in the order its head created them
/// (selects are unsorted), e.g. `limitk(3, x)` over series written as
/// `a, b, c, 10, 2` keeps `a, b, c`; another storage cannot know that
/// order, and Comet keeps the first in label order (`10, 2, a`).
const PROMETHEUS_ARGS: [&str; 3] = [
    "--web.enable-remote-write-receiver",
    "--enable-feature=promql-experimental-functions",
    // Duration expressions (`[5m + 1m]`, `offset -(1h * 2)`).
    "--enable-feature=promql-duration-expr",
];

/// Values whose text Go and ClickHouse write differently: beyond 1e21 and
/// below 1e-4 ClickHouse switches to an exponent, Go's `'f'` never does.
const VALUES: [f64; 14] = [
    3.038_116_475_658_663_5e300,
    1e21,
    123_456_789_012_345_680_000.0,
    1e-7,
    -2.5e25,
    12_345_678.9,
    1.5e-10,
    0.1,
    -1e-300,
    5e-324,
    f64::MAX,
    -0.0,
    f64::INFINITY,
    f64::NAN,
];

/// The result of an instant query as (labels, value text) pairs.
fn answer(data: &Value) -> BTreeSet<(String, String)> {
    data["result"]
        .as_array()
        .unwrap_or_else(|| panic!("no result: {data}"))
        .iter()
        .map(|s| {
            (
                s["metric"].to_string(),
                s["value"][1].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn count_values_labels_values_as_prometheus_writes_them() {
    let mut prometheus = Prometheus::start_with_args("global: {}\n", &PROMETHEUS_ARGS);
    prometheus.wait_ready().await;
    let comet = ApiComet::start(&[]).await;
    let at = now_ms() - 10_000;
    let at = at - at % 1000;
    let request = comet_schema::prompb::v1::WriteRequest {
        timeseries: VALUES
            .iter()
            .enumerate()
            .map(|(i, v)| {
                series(
                    &[("__name__", "edge"), ("i", &i.to_string())],
                    vec![(at, *v)],
                )
            })
            .collect(),
        ..Default::default()
    };
    comet.write(&request).await;
    write_to(
        &comet.client,
        &format!("{}/api/v1/write", prometheus.url()),
        &request,
    )
    .await;

    let time = format!("{}", (at + 1000) / 1000);
    for query in [
        "count_values(\"v\", edge)",
        "count_values by (i) (\"v\", edge)",
        "count_values(\"v\", edge * 3)",
    ] {
        let params = [("query", query.to_string()), ("time", time.clone())];
        let theirs = prometheus.api("/api/v1/query", &params).await;
        let ours = comet
            .data("/api/v1/query", &[("query", query), ("time", &time)])
            .await;
        assert!(!answer(&theirs).is_empty(), "{query}: {theirs}");
        assert_eq!(answer(&ours), answer(&theirs), "{query}");
    }
}

/// The queries of the upstream PromQL test suite's `eval` lines, when the
/// suite is present (`$COMET_PROMQLTEST_DIR` or `../shared/promqltest`).
fn upstream_queries() -> Vec<String> {
    let dir = std::env::var_os("COMET_PROMQLTEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::workspace_dir().join("../shared/promqltest"));
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut files: Vec<_> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "test"))
        .collect();
    files.sort();
    let mut queries = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read a test file");
        for line in text.lines() {
            let mut words = line.split_whitespace();
            if !words.next().is_some_and(|w| w.starts_with("eval")) {
                continue;
            }
            // `instant at T` or `range from A to B step S`, then the query.
            let skip = match words.next() {
                Some("instant") => 2,
                Some("range") => 6,
                _ => continue,
            };
            let rest: Vec<&str> = line.split_whitespace().skip(2 + skip).collect();
            if !rest.is_empty() {
                // Whitespace inside the query is kept as written.
                let start = line.find(rest[0]).unwrap_or(0);
                queries.push(line[start..].trim().to_string());
            }
        }
    }
    queries
}

/// Why Comet's `format_query` text may differ from Prometheus 3.5's.
const UTF8: &str = "Comet refuses a string that is not UTF-8 once unescaped (README)";
/// Where Comet's `format_query` knowingly differs from Prometheus 3.5's.
const FORMAT_DIFFERENCES: [(&str, &str); 2] = [
    ("count_values(\"a\\xc5z\", version)", UTF8),
    (
        "label_replace(testmetric, \"\\xff\", \"\", \"src\", \"(.*)\")",
        UTF8,
    ),
];

#[tokio::test]
async fn format_query_prints_the_upstream_suite_as_prometheus_does() {
    let queries = upstream_queries();
    if queries.is_empty() {
        eprintln!("no upstream PromQL test suite here: nothing to compare");
        return;
    }
    let mut prometheus = Prometheus::start_with_args("global: {}\n", &PROMETHEUS_ARGS);
    prometheus.wait_ready().await;
    let comet = ApiComet::start(&[]).await;
    let client = reqwest::Client::new();
    let (mut same, mut differ, mut stale) = (0, Vec::new(), Vec::new());
    for query in &queries {
        let ask = |base: String| {
            let request = client
                .get(format!("{base}/api/v1/format_query"))
                .query(&[("query", query)]);
            async move {
                let body: Value = request
                    .send()
                    .await
                    .expect("GET")
                    .json()
                    .await
                    .expect("JSON");
                (body["status"] == "success").then(|| body["data"].clone())
            }
        };
        // Prometheus's refusals (syntax it lacks flags for) are not compared.
        let Some(theirs) = ask(prometheus.url()).await else {
            continue;
        };
        let ours = ask(comet.url("")).await;
        let known = FORMAT_DIFFERENCES.iter().any(|(q, _)| q == query);
        if ours.as_ref() == Some(&theirs) {
            same += 1;
            if known {
                stale.push(query.clone());
            }
        } else if !FORMAT_DIFFERENCES.iter().any(|(q, _)| q == query) {
            differ.push(format!(
                "{query}\n  Prometheus: {theirs}\n  Comet: {ours:?}"
            ));
        }
    }
    eprintln!(
        "format_query: {same} identical, {} known differences",
        FORMAT_DIFFERENCES.len()
    );
    assert!(same > 1000, "only {same} compared");
    // The list of differences holds only real ones.
    assert!(
        stale.is_empty(),
        "listed in FORMAT_DIFFERENCES but printed as Prometheus does: {stale:?}"
    );
    assert!(
        differ.is_empty(),
        "{} differ:\n{}",
        differ.len(),
        differ.join("\n")
    );
}
