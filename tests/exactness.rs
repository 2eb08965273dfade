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
const PROMETHEUS_ARGS: [&str; 2] = [
    "--web.enable-remote-write-receiver",
    "--enable-feature=promql-experimental-functions",
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
