//! A real Prometheus (3.5 LTS) scraping a real node_exporter every second
//! and remote-writing to Comet, with the exact accounting of what it sent
//! and of what ClickHouse stored. The remote-storage comparison and the
//! outage tests share it.

use std::time::{Duration, Instant};

use super::peers::{NodeExporter, Prometheus, sum_metric};

/// The bit pattern of Prometheus's staleness marker (a NaN).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;
/// How long the queue may take to send everything once scraping stopped.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(120);

/// The remote-write counters of a Prometheus, summed over queues.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Counters {
    /// Samples in send attempts: a retried sample counts once per attempt.
    pub sent: f64,
    pub failed: f64,
    pub retried: f64,
    pub dropped: f64,
    pub pending: f64,
    /// Samples read from the WAL into the queue.
    pub samples_in: f64,
    pub head_appended: f64,
    pub metadata_sent: f64,
    pub metadata_failed: f64,
}

impl Counters {
    pub async fn read(prometheus: &Prometheus) -> Self {
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

    /// Samples sent, each counted once however often it was retried.
    pub fn delivered(&self) -> u64 {
        (self.sent - self.retried) as u64
    }
}

/// The `remote_write` section pointing at `url` (Comet's
/// `/api/v1/write`). Backoff tops out at 1 s so a sender resumes soon
/// after an outage ends. `queue` adds lines to `queue_config`.
pub fn remote_write_yaml(url: &str, queue: &[&str]) -> String {
    let queue: String = queue.iter().map(|line| format!("      {line}\n")).collect();
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
      min_backoff: 50ms
      max_backoff: 1s
{queue}"#
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

/// node_exporter scraped every second by a Prometheus that remote-writes.
pub struct Sender {
    pub node: NodeExporter,
    pub prometheus: Prometheus,
    remote_write: String,
    /// When scraping stopped (see [`Sender::stop_scraping`]).
    scraping_stopped: Option<Instant>,
}

impl Sender {
    /// Starts node_exporter and Prometheus writing to `write_url`, and
    /// waits for the first successful scrape.
    pub async fn start(write_url: &str) -> Self {
        Self::start_with_queue(write_url, &[]).await
    }

    /// [`Sender::start`] with more `queue_config` lines.
    pub async fn start_with_queue(write_url: &str, queue: &[&str]) -> Self {
        let node = NodeExporter::start();
        let remote_write = remote_write_yaml(write_url, queue);
        let mut prometheus =
            Prometheus::start(&writer_config(Some(&node.address()), &remote_write));
        prometheus.wait_ready().await;
        // The discovery manager hands targets over every 5 s.
        let waiting = Instant::now();
        loop {
            let targets = prometheus.active_targets().await;
            if targets.iter().any(|t| t["health"] == "up") {
                break;
            }
            assert!(
                waiting.elapsed() < Duration::from_secs(60),
                "node_exporter not scraped successfully within 60 s: {targets:?}\n\
                 --- prometheus log:\n{}",
                prometheus.process.log_text()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Self {
            node,
            prometheus,
            remote_write,
            scraping_stopped: None,
        }
    }

    pub async fn counters(&self) -> Counters {
        Counters::read(&self.prometheus).await
    }

    /// Panics (with `context` and Prometheus's log) if Prometheus has
    /// exited or has failed or dropped a sample: retrying is fine.
    pub async fn assert_nothing_lost(&mut self, context: &dyn Fn() -> String) -> Counters {
        self.prometheus.process.assert_running();
        let counters = self.counters().await;
        assert!(
            counters.failed == 0.0 && counters.dropped == 0.0,
            "Prometheus failed or dropped samples: {counters:?}\n{}\n--- prometheus log:\n{}",
            context(),
            self.prometheus.process.log_text()
        );
        counters
    }

    /// Keeps the sender running for `period`, checking every second that
    /// nothing is failed or dropped.
    pub async fn run_for(&mut self, period: Duration, context: &dyn Fn() -> String) {
        let started = Instant::now();
        while started.elapsed() < period {
            tokio::time::sleep(Duration::from_secs(1)).await;
            self.assert_nothing_lost(context).await;
        }
    }

    /// Stops scraping without stopping Prometheus: a config with no
    /// scrape target and the same remote-write section (so its queue lives
    /// on and sends the staleness markers too).
    pub async fn stop_scraping(&mut self) {
        self.prometheus
            .reload(&writer_config(None, &self.remote_write))
            .await;
        let reloaded = Instant::now();
        while !self.prometheus.active_targets().await.is_empty() {
            assert!(
                reloaded.elapsed() < Duration::from_secs(30),
                "the scrape target is still active 30 s after the reload"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.scraping_stopped = Some(Instant::now());
    }

    /// After [`Sender::stop_scraping`]: waits until everything is sent.
    /// The staleness markers come about 2.1 scrape intervals after the
    /// target went; then nothing is pending, every sample read from the
    /// WAL was delivered, and no counter moved for 3 s.
    pub async fn settle(&self, context: &dyn Fn() -> String) -> Counters {
        let removed = self.scraping_stopped.expect("stop_scraping before settle");
        let mut last = self.counters().await;
        let mut stable_since = Instant::now();
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let now = self.counters().await;
            if now != last {
                last = now;
                stable_since = Instant::now();
            }
            if now.pending == 0.0
                && now.delivered() as f64 == now.samples_in
                && removed.elapsed() >= Duration::from_secs(5)
                && stable_since.elapsed() >= Duration::from_secs(3)
            {
                return now;
            }
            assert!(
                removed.elapsed() < SETTLE_TIMEOUT,
                "Prometheus's remote-write queue did not settle: {now:?}\n{}\n\
                 --- prometheus log:\n{}",
                context(),
                self.prometheus.process.log_text()
            );
        }
    }

    /// What Prometheus's own TSDB holds: a raw range selector over the
    /// last hour returns every real (not stale) sample.
    pub async fn local_samples(&self) -> SampleTotals {
        let raw = self.prometheus.query(r#"{__name__=~".+"}[1h]"#).await;
        let series = raw["result"].as_array().expect("a matrix");
        let mut totals = SampleTotals {
            series: series.len() as u64,
            ..SampleTotals::default()
        };
        for s in series {
            for point in s["values"].as_array().expect("values") {
                totals.samples += 1;
                let ts = point[0].as_f64().expect("a timestamp");
                totals.timestamp_sum += (ts * 1000.0).round() as u64;
            }
        }
        totals
    }
}

/// Real samples, the series they belong to and the sum of their
/// timestamps (ms): equal totals mean the same samples, not just as many.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SampleTotals {
    pub samples: u64,
    pub series: u64,
    pub timestamp_sum: u64,
}

/// What one database's tables hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stored {
    /// Rows of `samples`, duplicates included.
    pub rows: u64,
    /// Distinct (series, timestamp) pairs, staleness markers included.
    pub distinct: u64,
    pub stale: u64,
    /// The distinct real samples.
    pub real: SampleTotals,
    /// Series with samples that have no `series` row (never visible).
    pub series_missing: u64,
}

impl Stored {
    /// Reads the totals of `database` on the ClickHouse at `url`.
    pub async fn read(url: &str, database: &str) -> Self {
        let text = super::http_query_on(
            url,
            &format!(
                "WITH d AS (SELECT DISTINCT fingerprint, timestamp_ms, \
                        reinterpretAsUInt64(value) = {STALE_NAN_BITS} AS stale \
                        FROM {database}.samples) \
                 SELECT (SELECT count() FROM {database}.samples), \
                        count(), countIf(stale), countIf(NOT stale), \
                        uniqExactIf(fingerprint, NOT stale), \
                        sumIf(timestamp_ms, NOT stale), \
                        (SELECT count() FROM (SELECT DISTINCT fingerprint FROM {database}.samples) \
                         WHERE fingerprint NOT IN (SELECT fingerprint FROM {database}.series)) \
                 FROM d FORMAT TSV"
            ),
        )
        .await;
        let fields: Vec<u64> = text
            .split_whitespace()
            .map(|f| f.parse().expect("a number"))
            .collect();
        let [
            rows,
            distinct,
            stale,
            samples,
            series,
            timestamp_sum,
            series_missing,
        ] = fields[..]
        else {
            panic!("unexpected ClickHouse answer: {text:?}");
        };
        Self {
            rows,
            distinct,
            stale,
            real: SampleTotals {
                samples,
                series,
                timestamp_sum,
            },
            series_missing,
        }
    }

    /// Panics unless ClickHouse holds exactly what Prometheus delivered
    /// and what its own TSDB holds: every sample once (a sample stored
    /// twice by a retry is counted in `rows` only), every series visible.
    pub fn assert_exactly(&self, counters: &Counters, local: &SampleTotals, context: &str) {
        assert_eq!(
            self.distinct,
            counters.delivered(),
            "Prometheus delivered {} samples (sent {} - retried {}) but ClickHouse holds {} \
             distinct ones: {self:?} {counters:?}\n{context}",
            counters.delivered(),
            counters.sent,
            counters.retried,
            self.distinct
        );
        assert_eq!(
            self.real, *local,
            "ClickHouse's real samples (left) differ from Prometheus's own TSDB (right)\n{context}"
        );
        assert_eq!(
            self.series_missing, 0,
            "series with samples but no series row: {self:?}\n{context}"
        );
        assert!(self.stale > 0, "no staleness marker stored: {self:?}");
    }
}

/// Stops scraping, waits for the queue to settle, and checks that
/// ClickHouse holds exactly what Prometheus delivered; returns what was
/// stored and the counters.
pub async fn settle_and_count(
    sender: &mut Sender,
    clickhouse: &str,
    database: &str,
    context: &dyn Fn() -> String,
) -> (Stored, Counters) {
    sender.stop_scraping().await;
    let counters = sender.settle(context).await;
    assert!(
        counters.failed == 0.0 && counters.dropped == 0.0,
        "Prometheus failed or dropped samples: {counters:?}\n{}",
        context()
    );
    let stored = Stored::read(clickhouse, database).await;
    let local = sender.local_samples().await;
    stored.assert_exactly(&counters, &local, &context());
    (stored, counters)
}
