//! Smoke test for `comet bench query`: a tiny data set loaded into the test
//! ClickHouse, every dashboard query run once, the table printed. Behaviour,
//! not speed; a query the engine cannot answer yet is an error row, not a
//! failed run.

mod common;

const QUERIES: [&str; 8] = [
    "rate(http_requests_total[5m])",
    "sum by (job) (rate(http_requests_total[5m]))",
    "histogram_quantile(0.9, sum by (le) (rate(http_request_duration_seconds_bucket[5m])))",
    "topk(5, rate(http_requests_total[5m]))",
    "avg_over_time(node_memory_free_bytes[10m])",
    "sum(rate(http_requests_total{status=\"500\"}[5m])) / on() sum(rate(http_requests_total[5m]))",
    "count by (status) (http_requests_total)",
    "max_over_time(rate(http_requests_total[5m])[30m:1m])",
];

async fn bench_query(extra: &[&str]) -> (String, String, String) {
    let database = common::unique_database("comet_bench_query");
    let output = tokio::process::Command::new(common::COMET)
        .args(["bench", "query", "--clickhouse-url"])
        .arg(common::clickhouse_url())
        .args(["--database", &database])
        .args([
            "--series",
            "50",
            "--hours",
            "1",
            "--runs",
            "1",
            "--warmups",
            "0",
        ])
        .args(extra)
        .output()
        .await
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert!(output.status.success(), "{stdout}\n{stderr}");
    (database, stdout, stderr)
}

/// One table row per query, each with a timing or an error.
fn assert_table(stdout: &str, with_prometheus: bool) {
    assert!(
        stdout.contains("60 series (3 targets), 1 h at 15s scrape interval = 14400 samples"),
        "{stdout}"
    );
    assert!(stdout.contains("machine: "), "{stdout}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with("#  Comet p50 ms"))
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    assert_eq!(header.contains("Prometheus p50 ms"), with_prometheus);
    for (i, query) in QUERIES.iter().enumerate() {
        let row = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{} ", i + 1)) && l.ends_with(query))
            .unwrap_or_else(|| panic!("no row for {query}:\n{stdout}"));
        let cells: Vec<&str> = row.split_whitespace().collect();
        let comet = cells[1];
        assert!(comet == "error" || comet.parse::<f64>().is_ok(), "{row}");
        if comet == "error" {
            assert!(
                stdout.contains(&format!("#{} Comet error: ", i + 1)),
                "{stdout}"
            );
        }
        if with_prometheus {
            // Prometheus answers every one of these.
            assert!(cells[4].parse::<f64>().is_ok(), "{row}");
        }
    }
}

#[tokio::test]
async fn bench_query_loads_the_data_set_and_prints_the_table() {
    let (database, stdout, _) = bench_query(&[]).await;
    assert_table(&stdout, false);
    // Everything went through the writer into the bench's own database.
    let count = common::http_query(&format!("SELECT count() FROM {database}.samples")).await;
    assert_eq!(count.trim(), "14400");
    let series = common::http_query(&format!(
        "SELECT uniqExact(fingerprint) FROM {database}.series"
    ))
    .await;
    assert_eq!(series.trim(), "60");
    common::http_query(&format!("DROP DATABASE {database}")).await;
}

#[tokio::test]
async fn bench_query_compares_with_prometheus() {
    let Some(prometheus) = ["/usr/bin/prometheus", "/usr/local/bin/prometheus"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
    else {
        panic!("no prometheus binary; install the peers with scripts/install-peers.sh");
    };
    let (database, stdout, _) = bench_query(&["--prometheus", prometheus]).await;
    assert_table(&stdout, true);
    assert!(
        stdout.contains("Prometheus: prometheus, version"),
        "{stdout}"
    );
    common::http_query(&format!("DROP DATABASE {database}")).await;
}
