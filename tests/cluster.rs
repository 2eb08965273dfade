//! Comet on a real replicated, sharded ClickHouse cluster: two shards of two
//! replicas (`comet clickhouse --cluster 2x2`: four ClickHouse 25.8 servers
//! and Debian's ZooKeeper 3.8, all on loopback), one cluster for the tests
//! of this file and a database for each test.
//!
//! Acknowledged means replicated: once remote-write answers, every node
//! sees every sample, each shard's replicas both hold its rows, and a
//! re-sent request is stored once. Queries answer as on one server.

mod common;

use comet_schema::prompb::v1;
use common::api::{ApiComet, fixture, now_ms, series, write_to};
use common::cluster::{REPLICAS, SHARDS, cluster_urls};
use common::{http_query_on, metric_value};
use serde_json::Value;

/// `comet serve` in cluster mode on the first node, on a new database.
async fn cluster_comet() -> ApiComet {
    ApiComet::start_on(&cluster_urls()[0], &["--clickhouse-cluster", "comet"]).await
}

async fn count(url: &str, sql: &str) -> u64 {
    let text = http_query_on(url, sql).await;
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{sql} on {url}: {text}"))
}

/// `requests` remote-write requests of `per_request` series with `points`
/// samples each, every series distinct (so rows spread over both shards).
fn load(requests: usize, per_request: usize, points: i64) -> Vec<v1::WriteRequest> {
    let end = now_ms() - now_ms() % 1000;
    (0..requests)
        .map(|r| v1::WriteRequest {
            timeseries: (0..per_request)
                .map(|s| {
                    let instance = format!("host-{r}-{s}");
                    series(
                        &[
                            ("__name__", "cluster_load_total"),
                            ("instance", &instance),
                            ("job", "load"),
                        ],
                        (0..points)
                            .map(|i| (end - (points - i) * 15_000, (i * (s as i64 + 1)) as f64))
                            .collect(),
                    )
                })
                .collect(),
            metadata: Vec::new(),
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_samples_are_on_every_shard_and_replica_at_once() {
    let comet = cluster_comet().await;
    let db = &comet.database;
    let requests = load(10, 100, 30);
    for request in &requests {
        comet.write(request).await;
    }
    let expected = 10 * 100 * 30;
    // Right after the last acknowledgement, nothing queued anywhere: every
    // node reads them all through the Distributed table ...
    let urls = cluster_urls();
    for url in urls {
        assert_eq!(
            count(url, &format!("SELECT count() FROM {db}.samples")).await,
            expected,
            "samples seen through {url}"
        );
    }
    // ... and each shard's rows are on both of its replicas already.
    let mut stored = 0;
    for shard in urls.chunks(REPLICAS) {
        let local = format!("SELECT count() FROM {db}.samples_local");
        let first = count(&shard[0], &local).await;
        assert!(first > 0, "a shard got no rows: {shard:?}");
        for replica in &shard[1..] {
            assert_eq!(count(replica, &local).await, first, "replicas of {shard:?}");
        }
        stored += first;
    }
    assert_eq!(stored, expected, "rows stored once over the shards");

    // A request sent again (a sender's retry) is stored once.
    comet.write(&requests[3]).await;
    for url in urls {
        assert_eq!(
            count(url, &format!("SELECT count() FROM {db}.samples")).await,
            expected,
            "after a re-sent request, through {url}"
        );
    }
    // The series table too: one row per series and day, on its shard.
    let series_rows = count(
        &urls[0],
        &format!("SELECT count() FROM (SELECT DISTINCT fingerprint FROM {db}.series)"),
    )
    .await;
    assert_eq!(series_rows, 1000);

    // /metrics shows the cluster's health: every replica answering, none
    // read-only (read every 15 s; the first read is at start-up).
    let waiting = std::time::Instant::now();
    loop {
        let metrics = comet.metrics().await;
        let answering = metric_value(&metrics, "comet_clickhouse_cluster_replicas_answering ");
        if answering == (SHARDS * REPLICAS) as f64 {
            assert_eq!(
                metric_value(&metrics, "comet_clickhouse_cluster_replicas "),
                (SHARDS * REPLICAS) as f64
            );
            let replicas: Vec<&str> = metrics
                .lines()
                .filter(|l| l.starts_with("comet_clickhouse_replica_readonly_tables{"))
                .collect();
            assert_eq!(replicas.len(), SHARDS * REPLICAS, "{metrics}");
            assert!(replicas.iter().all(|l| l.ends_with(" 0")), "{replicas:?}");
            break;
        }
        assert!(
            waiting.elapsed() < std::time::Duration::from_secs(60),
            "replicas answering: {answering}\n{metrics}"
        );
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}

/// The `data` of an API answer.
async fn answer(comet: &ApiComet, path: &str, params: &[(&str, &str)]) -> Value {
    comet.data(path, params).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queries_on_the_cluster_answer_as_on_one_server() {
    let end = now_ms();
    let data = fixture(end);
    let (cluster, single) = tokio::join!(cluster_comet(), ApiComet::start(&[]));
    // A second Comet on the same database, talking to a node of the other
    // shard: two Comets in front of one cluster answer alike.
    let second = ApiComet::start_on_database(
        &cluster_urls()[REPLICAS],
        &cluster.database,
        &["--clickhouse-cluster", "comet"],
    )
    .await;
    cluster.write(&data).await;
    single.write(&data).await;
    // Also the larger load, so aggregations combine rows of both shards.
    for request in load(4, 50, 20) {
        write_to(&cluster.client, &cluster.url("/api/v1/write"), &request).await;
        write_to(&single.client, &single.url("/api/v1/write"), &request).await;
    }

    let t = (end / 1000).to_string();
    let start = (end / 1000 - 1200).to_string();
    let queries = [
        "http_requests_total",
        "sum by (job) (rate(http_requests_total[5m]))",
        "histogram_quantile(0.9, sum by (le) (rate(request_duration_seconds_bucket[5m])))",
        "topk(3, cluster_load_total)",
        "count by (job) (cluster_load_total)",
        "sum(rate(cluster_load_total[5m])) / on() count(cluster_load_total)",
        "avg_over_time(temperature_celsius[10m])",
        "max_over_time(rate(http_requests_total[5m])[10m:1m])",
        "label_replace(up or vector(1), \"x\", \"y\", \"\", \"\")",
    ];
    for q in queries {
        let instant = [("query", q), ("time", t.as_str())];
        let on_cluster = answer(&cluster, "/api/v1/query", &instant).await;
        assert_eq!(
            on_cluster,
            answer(&single, "/api/v1/query", &instant).await,
            "instant {q}"
        );
        assert_eq!(
            on_cluster,
            answer(&second, "/api/v1/query", &instant).await,
            "instant {q} through the second Comet"
        );
        let range = [
            ("query", q),
            ("start", start.as_str()),
            ("end", t.as_str()),
            ("step", "60"),
        ];
        assert_eq!(
            answer(&cluster, "/api/v1/query_range", &range).await,
            answer(&single, "/api/v1/query_range", &range).await,
            "range {q}"
        );
    }
    // The catalog: series, label names and values.
    let window = [("start", start.as_str()), ("end", t.as_str())];
    let mut series_params = vec![("match[]", "{job=~\".+\"}")];
    series_params.extend_from_slice(&window);
    let sorted = |v: Value| {
        let mut items = v.as_array().cloned().unwrap_or_default();
        items.sort_by_key(|i| i.to_string());
        items
    };
    assert_eq!(
        sorted(answer(&cluster, "/api/v1/series", &series_params).await),
        sorted(answer(&single, "/api/v1/series", &series_params).await)
    );
    assert_eq!(
        answer(&cluster, "/api/v1/labels", &window).await,
        answer(&single, "/api/v1/labels", &window).await
    );
    assert_eq!(
        answer(&cluster, "/api/v1/label/instance/values", &window).await,
        answer(&single, "/api/v1/label/instance/values", &window).await
    );
}

/// Files of the upstream PromQL suite run on the cluster in every test run
/// (about 180 cases; the whole suite, `comet promqltest --clickhouse-cluster
/// comet`, takes about 20 minutes there and passes as on one server).
const SUITE_ON_THE_CLUSTER: &[&str] = &[
    "at_modifier.test",
    "range_queries.test",
    "selectors.test",
    "staleness.test",
    "subquery.test",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_promql_files_pass_on_the_cluster_as_on_one_server() {
    let dir = std::env::var_os("COMET_PROMQLTEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| common::workspace_dir().join("../shared/promqltest"));
    let files: Vec<std::path::PathBuf> = SUITE_ON_THE_CLUSTER.iter().map(|f| dir.join(f)).collect();
    if !files.iter().all(|f| f.exists()) {
        eprintln!("no PromQL test scripts in {}; skipped", dir.display());
        return;
    }
    let baseline = common::workspace_dir().join("query/promqltest.baseline");
    let mut args = vec![
        "promqltest".to_string(),
        "--log-level".into(),
        "warn".into(),
        "--clickhouse-url".into(),
        cluster_urls()[0].clone(),
        "--clickhouse-cluster".into(),
        "comet".into(),
        "--baseline".into(),
        baseline.display().to_string(),
    ];
    args.extend(files.iter().map(|f| f.display().to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    // Fails unless every file passes at least its baseline's cases.
    let out = common::comet_stdout(&args).await;
    assert!(out.contains(" passed, "), "{out}");
}
