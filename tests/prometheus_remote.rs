//! A real Prometheus (3.5 LTS) against Comet's remote storage.
//!
//! Prometheus scrapes a real node_exporter every second and remote-writes
//! to Comet. After the run the scrape target is removed by a config reload
//! (so Prometheus writes staleness markers and then nothing more), and once
//! its queue is drained the number of samples Prometheus says it sent must
//! equal the rows in Comet's `samples` table exactly, with nothing failed,
//! retried or dropped; the real samples must also equal what Prometheus's
//! own TSDB holds. Then a second Prometheus with no local data reads
//! everything back from Comet over remote-read, and both servers must give
//! identical answers to the same PromQL.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::peers::Prometheus;
use common::sender::{Sender, Stored};
use serde_json::Value;

/// How long Prometheus scrapes node_exporter and writes to Comet.
const RUN: Duration = Duration::from_secs(20);
/// Within the run: the fixed evaluation time of the compared queries.
const EVAL_OFFSET: Duration = Duration::from_secs(12);

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// Sorts a query result by series so two servers' answers compare equal.
fn normalized(data: &Value) -> Value {
    let mut data = data.clone();
    if let Some(result) = data["result"].as_array_mut() {
        result.sort_by_key(|series| series["metric"].to_string());
    }
    data
}

fn result_len(data: &Value) -> usize {
    data["result"].as_array().map_or(0, Vec::len)
}

fn truncated(value: &Value) -> String {
    let text = value.to_string();
    if text.len() > 4000 {
        format!("{}... ({} bytes)", &text[..4000], text.len())
    } else {
        text
    }
}

#[tokio::test]
async fn prometheus_remote_write_and_read_match_exactly() {
    let db = common::unique_database("comet_prom");
    let clickhouse = common::clickhouse_url();
    let mut comet = common::CometProcess::spawn(&[
        "serve",
        "--clickhouse-url",
        &clickhouse,
        "--clickhouse-database",
        &db,
    ]);
    comet.wait_ready(Duration::from_secs(120)).await;
    let comet_log = |comet: &common::CometProcess| format!("--- comet log:\n{}", comet.log_text());

    let mut sender = Sender::start(&comet.url("/api/v1/write")).await;

    // 1. The run: scrape every second, remote-write to Comet.
    let run_start = unix_now();
    let started = Instant::now();
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        if let Ok(Some(status)) = comet.child.try_wait() {
            panic!(
                "comet exited ({status}) during the run\n{}",
                comet_log(&comet)
            );
        }
        sender.assert_nothing_lost(&|| comet_log(&comet)).await;
    }
    let run_end = unix_now();
    let eval_time = (run_start + EVAL_OFFSET.as_secs_f64()).floor();
    let during_run = sender.counters().await;
    assert!(
        during_run.sent > 0.0,
        "Prometheus sent nothing in {RUN:?}: {during_run:?}\n--- prometheus log:\n{}",
        sender.prometheus.process.log_text()
    );

    // 2. Stop scraping and wait until everything is sent.
    sender.stop_scraping().await;
    let counters = sender.settle(&|| comet_log(&comet)).await;
    eprintln!(
        "prometheus_remote: run {:.1}s, counters after settling: {counters:?}",
        run_end - run_start
    );
    assert!(
        counters.failed == 0.0 && counters.dropped == 0.0 && counters.retried == 0.0,
        "Prometheus failed, dropped or retried samples: {counters:?}\n{}\n--- prometheus log:\n{}",
        comet_log(&comet),
        sender.prometheus.process.log_text()
    );
    assert_eq!(
        counters.metadata_failed,
        0.0,
        "Comet refused metadata: {counters:?}\n{}",
        comet_log(&comet)
    );

    // 3. Exact count: every sample Prometheus sent (and Comet acknowledged)
    //    is one row in `samples`, and the real ones are exactly those of
    //    Prometheus's own TSDB.
    let stored = Stored::read(&clickhouse, &db).await;
    let local = sender.local_samples().await;
    stored.assert_exactly(&counters, &local, &comet_log(&comet));
    assert_eq!(
        stored.rows, stored.distinct,
        "samples stored twice without a retry: {stored:?}"
    );
    eprintln!("prometheus_remote: {stored:?} = {counters:?}");

    // Metadata went through too.
    if counters.metadata_sent > 0.0 {
        let kind = common::http_query(&format!(
            "SELECT type FROM {db}.metadata FINAL \
             WHERE metric_family_name = 'node_cpu_seconds_total' FORMAT TSV"
        ))
        .await;
        assert_eq!(
            kind.trim(),
            "counter",
            "metadata of node_cpu_seconds_total in Comet"
        );
    }

    // 4. A second Prometheus with no data of its own reads from Comet; both
    //    must answer the same queries identically.
    let mut reader = Prometheus::start(&format!(
        "global:\n  scrape_interval: 1m\n  evaluation_interval: 1m\n\
         remote_read:\n  - url: {}\n    read_recent: true\n    remote_timeout: 30s\n",
        comet.url("/api/v1/read")
    ));
    reader.wait_ready().await;

    let instant_queries = [
        "count(node_cpu_seconds_total)",
        "sum(node_memory_MemTotal_bytes)",
        "up",
        "count by (mode) (node_cpu_seconds_total)",
        "max_over_time(node_load1[1m])",
        "node_cpu_seconds_total",
        "rate(node_cpu_seconds_total[5s])",
        r#"count({job="node"})"#,
        r#"{__name__=~"node_(load|memory_Mem).*"}"#,
        "count_over_time(node_load1[30s])",
    ];
    for promql in instant_queries {
        let local = normalized(&sender.prometheus.query_at(promql, eval_time).await);
        let remote = normalized(&reader.query_at(promql, eval_time).await);
        assert!(
            result_len(&local) > 0,
            "{promql} at {eval_time}: the writer has no data\n{}",
            truncated(&local)
        );
        assert!(
            local == remote,
            "{promql} at {eval_time}: the local TSDB and Comet (remote-read) differ\n\
             local:  {}\nremote: {}\n{}",
            truncated(&local),
            truncated(&remote),
            comet_log(&comet)
        );
    }

    // Over the whole run and past its end: `up` ends where the staleness
    // marker is, on both sides.
    let range_queries = [
        "up",
        "sum by (mode) (rate(node_cpu_seconds_total[5s]))",
        "node_load1",
    ];
    let range_end = unix_now().floor();
    for promql in range_queries {
        let local = normalized(
            &sender
                .prometheus
                .query_range(promql, run_start.floor(), range_end, 1.0)
                .await,
        );
        let remote = normalized(
            &reader
                .query_range(promql, run_start.floor(), range_end, 1.0)
                .await,
        );
        assert!(result_len(&local) > 0, "{promql}: the writer has no data");
        assert!(
            local == remote,
            "{promql} over the run: the local TSDB and Comet (remote-read) differ\n\
             local:  {}\nremote: {}\n{}",
            truncated(&local),
            truncated(&remote),
            comet_log(&comet)
        );
    }

    reader.stop().await;
    let status = sender.prometheus.stop().await;
    assert!(
        status.success(),
        "prometheus exited with {status}:\n{}",
        sender.prometheus.process.log_text()
    );
    let status = comet.terminate().await;
    assert!(
        status.success(),
        "comet exited with {status}\n{}",
        comet_log(&comet)
    );
}
