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

use common::peers::{NodeExporter, Prometheus, sum_metric};
use serde_json::Value;

/// How long Prometheus scrapes node_exporter and writes to Comet.
const RUN: Duration = Duration::from_secs(20);
/// Within the run: the fixed evaluation time of the compared queries.
const EVAL_OFFSET: Duration = Duration::from_secs(12);
/// The bit pattern of Prometheus's staleness marker (a NaN).
const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

fn remote_write_yaml(comet: &common::CometProcess) -> String {
    format!(
        r#"remote_write:
  - url: {url}
    remote_timeout: 30s
    send_exemplars: false
    metadata_config:
      send: true
      send_interval: 5s
    queue_config:
      batch_send_deadline: 1s
      max_samples_per_send: 500
"#,
        url = comet.url("/api/v1/write")
    )
}

/// The writer's configuration. Without a target the `node` job stays but
/// is empty: Prometheus then ends the target's series with staleness
/// markers (removing the whole job would cancel them).
fn writer_config(target: Option<&str>, remote_write: &str) -> String {
    let targets = target.map_or("[]".to_string(), |t| format!("['{t}']"));
    format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1m\n\
         scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: {targets}\n\
         {remote_write}"
    )
}

/// The remote-write counters of the Prometheus, summed over queues.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Counters {
    sent: f64,
    failed: f64,
    retried: f64,
    dropped: f64,
    pending: f64,
    samples_in: f64,
    head_appended: f64,
    metadata_sent: f64,
    metadata_failed: f64,
}

impl Counters {
    async fn read(prometheus: &Prometheus) -> Self {
        let text = prometheus.metrics_text().await;
        let get = |name: &str| sum_metric(&text, name);
        Self {
            sent: get("prometheus_remote_storage_samples_total"),
            failed: get("prometheus_remote_storage_samples_failed_total"),
            retried: get("prometheus_remote_storage_samples_retried_total"),
            dropped: get("prometheus_remote_storage_samples_dropped_total"),
            pending: get("prometheus_remote_storage_samples_pending"),
            samples_in: get("prometheus_remote_storage_samples_in_total"),
            head_appended: get("prometheus_tsdb_head_samples_appended_total"),
            metadata_sent: get("prometheus_remote_storage_metadata_total"),
            metadata_failed: get("prometheus_remote_storage_metadata_failed_total"),
        }
    }
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

    let node = NodeExporter::start();
    let remote_write = remote_write_yaml(&comet);
    let mut writer = Prometheus::start(&writer_config(Some(&node.address()), &remote_write));
    writer.wait_ready().await;
    // The discovery manager hands targets over every 5 s: wait for the
    // first successful scrape before the clock starts.
    let waiting = Instant::now();
    loop {
        let targets = writer.active_targets().await;
        if targets.iter().any(|t| t["health"] == "up") {
            break;
        }
        assert!(
            waiting.elapsed() < Duration::from_secs(60),
            "node_exporter not scraped successfully within 60 s: {targets:?}\n--- prometheus log:\n{}",
            writer.process.log_text()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // 1. The run: scrape every second, remote-write to Comet.
    let run_start = unix_now();
    let started = Instant::now();
    while started.elapsed() < RUN {
        tokio::time::sleep(Duration::from_secs(1)).await;
        writer.process.assert_running();
        if let Ok(Some(status)) = comet.child.try_wait() {
            panic!(
                "comet exited ({status}) during the run\n{}",
                comet_log(&comet)
            );
        }
        let counters = Counters::read(&writer).await;
        assert!(
            counters.failed == 0.0 && counters.dropped == 0.0,
            "Prometheus failed to write to Comet: {counters:?}\n{}\n--- prometheus log:\n{}",
            comet_log(&comet),
            writer.process.log_text()
        );
    }
    let run_end = unix_now();
    let eval_time = (run_start + EVAL_OFFSET.as_secs_f64()).floor();
    let during_run = Counters::read(&writer).await;
    assert!(
        during_run.sent > 0.0,
        "Prometheus sent nothing in {RUN:?}: {during_run:?}\n--- prometheus log:\n{}",
        writer.process.log_text()
    );

    // 2. Stop scraping without stopping Prometheus: reload a config with
    //    no scrape target (the remote-write section is unchanged, so its
    //    queue lives on and sends the staleness markers too).
    writer.reload(&writer_config(None, &remote_write)).await;
    let reloaded = Instant::now();
    while !writer.active_targets().await.is_empty() {
        assert!(
            reloaded.elapsed() < Duration::from_secs(30),
            "the scrape target is still active 30 s after the reload"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let removed = Instant::now();

    // 3. Wait until everything is sent: the staleness markers come about
    //    2.1 scrape intervals after the target went; then nothing pending,
    //    everything appended sent, and no counter moving for 3 s.
    let mut last = Counters::read(&writer).await;
    let mut stable_since = Instant::now();
    let counters = loop {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let now = Counters::read(&writer).await;
        if now != last {
            last = now;
            stable_since = Instant::now();
        }
        if now.pending == 0.0
            && now.sent == now.samples_in
            && removed.elapsed() >= Duration::from_secs(5)
            && stable_since.elapsed() >= Duration::from_secs(3)
        {
            break now;
        }
        assert!(
            removed.elapsed() < Duration::from_secs(120),
            "Prometheus's remote-write queue did not settle: {now:?}\n{}\n--- prometheus log:\n{}",
            comet_log(&comet),
            writer.process.log_text()
        );
    };
    eprintln!(
        "prometheus_remote: run {:.1}s, counters after settling: {counters:?}",
        run_end - run_start
    );
    assert!(
        counters.failed == 0.0 && counters.dropped == 0.0 && counters.retried == 0.0,
        "Prometheus failed, dropped or retried samples: {counters:?}\n{}\n--- prometheus log:\n{}",
        comet_log(&comet),
        writer.process.log_text()
    );
    assert_eq!(
        counters.metadata_failed,
        0.0,
        "Comet refused metadata: {counters:?}\n{}",
        comet_log(&comet)
    );

    // 4. Exact count: every sample Prometheus sent (and Comet acknowledged)
    //    is one row in `samples`.
    let sent = counters.sent as u64;
    let stats = common::http_query(&format!(
        "SELECT count(), \
                countIf(reinterpretAsUInt64(value) = {STALE_NAN_BITS}), \
                countIf(reinterpretAsUInt64(value) != {STALE_NAN_BITS}), \
                sumIf(timestamp_ms, reinterpretAsUInt64(value) != {STALE_NAN_BITS}), \
                uniqExact(fingerprint) \
         FROM {db}.samples FORMAT TSV"
    ))
    .await;
    let fields: Vec<u64> = stats
        .split_whitespace()
        .map(|f| f.parse().expect("a number"))
        .collect();
    let [rows, stale_rows, real_rows, real_ts_sum, fingerprints] = fields[..] else {
        panic!("unexpected ClickHouse answer: {stats:?}");
    };
    if rows != sent {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let later = common::http_query(&format!("SELECT count() FROM {db}.samples")).await;
        panic!(
            "Prometheus sent {sent} samples but Comet's samples table has {rows} rows \
             ({} 5 s later); counters: {counters:?}\n{}",
            later.trim(),
            comet_log(&comet)
        );
    }
    assert!(
        stale_rows > 0,
        "no staleness marker stored after the target went away ({rows} rows)"
    );

    // The real (non-stale) samples are exactly those in Prometheus's TSDB:
    // a raw range selector over the whole run returns every sample.
    let raw = writer.query(r#"{__name__=~".+"}[1h]"#).await;
    let series = raw["result"].as_array().expect("a matrix");
    let mut local_samples = 0u64;
    let mut local_ts_sum = 0u64;
    for s in series {
        for point in s["values"].as_array().expect("values") {
            local_samples += 1;
            let ts = point[0].as_f64().expect("a timestamp");
            local_ts_sum += (ts * 1000.0).round() as u64;
        }
    }
    assert_eq!(
        (real_rows, fingerprints as usize, real_ts_sum),
        (local_samples, series.len(), local_ts_sum),
        "Comet's (samples, series, timestamp sum) differ from Prometheus's own TSDB"
    );
    eprintln!(
        "prometheus_remote: {rows} rows = {sent} sent ({stale_rows} staleness markers), \
         {fingerprints} series"
    );

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

    // 5. A second Prometheus with no data of its own reads from Comet; both
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
        let local = normalized(&writer.query_at(promql, eval_time).await);
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
            &writer
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
    let status = writer.stop().await;
    assert!(
        status.success(),
        "prometheus exited with {status}:\n{}",
        writer.process.log_text()
    );
    let status = comet.terminate().await;
    assert!(
        status.success(),
        "comet exited with {status}\n{}",
        comet_log(&comet)
    );
}
