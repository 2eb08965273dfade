//! Smoke test for `comet bench query`: a tiny data set loaded into the test
//! ClickHouse (and into Prometheus 3.5 and VictoriaMetrics), every query
//! run once on each, the table printed, and Comet's answers equal to
//! Prometheus's. Behaviour, not speed.

mod common;

// Only the lists this test compares; `AGGREGATING_PANELS` is a subset.
#[allow(dead_code)]
#[path = "../src/bench_queries.rs"]
mod bench_queries;

/// The built-in queries, in the bench's order.
fn queries() -> impl Iterator<Item = &'static str> {
    bench_queries::DASHBOARD_QUERIES
        .into_iter()
        .chain(bench_queries::MORE_QUERIES)
}

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

/// One table row per query, each with a timing (or an error) for every
/// system timed; the row's cells as text.
fn table_rows(stdout: &str, systems: &[&str]) -> Vec<Vec<String>> {
    assert!(
        stdout.contains("63 series (3 targets) x 1 h at a 15s scrape interval = 15120 samples"),
        "{stdout}"
    );
    assert!(stdout.contains("machine at start: "), "{stdout}");
    assert!(stdout.contains("machine at end: "), "{stdout}");
    let header = stdout
        .lines()
        .find(|l| l.starts_with('#') && l.contains("Comet p50 ms"))
        .unwrap_or_else(|| panic!("no table header:\n{stdout}"));
    for system in ["Prometheus", "VM"] {
        assert_eq!(
            header.contains(&format!("{system} p50 ms")),
            systems.contains(&system),
            "{header}"
        );
    }
    queries()
        .enumerate()
        .map(|(i, query)| {
            let row = stdout
                .lines()
                .find(|l| l.starts_with(&format!("{} ", i + 1)) && l.ends_with(query))
                .unwrap_or_else(|| panic!("no row for {query}:\n{stdout}"));
            let cells: Vec<String> = row.split_whitespace().map(str::to_string).collect();
            // Comet (p50, p95, series, and ClickHouse's peak memory when
            // its query log is on), then each other system: p50, p95,
            // series.
            let memory = usize::from(header.contains("CH peak MiB"));
            if memory == 1 {
                assert!(cells[4].parse::<f64>().is_ok_and(|m| m >= 0.0), "{row}");
            }
            for k in 0..=systems.len() {
                let p50 = &cells[1 + 3 * k + if k > 0 { memory } else { 0 }];
                assert!(p50.parse::<f64>().is_ok(), "{row}");
            }
            cells
        })
        .collect()
}

#[tokio::test]
async fn bench_query_loads_the_data_set_and_prints_the_table() {
    let (database, stdout, _) = bench_query(&[]).await;
    table_rows(&stdout, &[]);
    // A server with a query log (the managed one has it) gives ClickHouse's
    // peak memory per query.
    let query_log = common::http_query(
        "SELECT count() FROM system.tables WHERE database = 'system' AND name = 'query_log'",
    )
    .await;
    if query_log.trim() == "1" {
        assert!(stdout.contains("CH peak MiB"), "{stdout}");
    }
    // Everything went through the writer into the bench's own database.
    let count = common::http_query(&format!("SELECT count() FROM {database}.samples")).await;
    assert_eq!(count.trim(), "15120");
    let series = common::http_query(&format!(
        "SELECT uniqExact(fingerprint) FROM {database}.series"
    ))
    .await;
    assert_eq!(series.trim(), "63");
    common::http_query(&format!("DROP DATABASE {database}")).await;
}

/// Comet, Prometheus 3.5 and VictoriaMetrics on the same data: every
/// system answers every query, and Comet's answers are Prometheus's.
#[tokio::test]
async fn bench_query_compares_with_prometheus_and_victoria_metrics() {
    let prometheus = common::peers::prometheus_binary();
    let (database, stdout, _) = bench_query(&[
        "--prometheus",
        &prometheus,
        "--promtool",
        "promtool",
        "--victoria-metrics",
        "victoria-metrics",
    ])
    .await;
    for row in table_rows(&stdout, &["Prometheus", "VM"]) {
        // The first verdict is Comet's against Prometheus (then VM's).
        let line = row.join(" ");
        let same = line.find("same (");
        let diff = line.find("DIFF");
        assert!(
            same.is_some_and(|s| diff.is_none_or(|d| d > s)),
            "Comet and Prometheus disagree: {line}\n{stdout}"
        );
    }
    assert!(
        stdout.contains("Prometheus: prometheus, version 3."),
        "{stdout}"
    );
    assert!(stdout.contains("VictoriaMetrics: "), "{stdout}");
    common::http_query(&format!("DROP DATABASE {database}")).await;
}
