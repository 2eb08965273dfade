//! The ingest writer for callers that wait for each write before the next
//! (rule groups, and the loads of `comet promqltest` and `comet rules
//! test`): a writer of its own that flushes at once, since lingering for a
//! bigger batch would only delay them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use comet_ingest::batch::{SeriesHistograms, SeriesSamples, WriteBatch};
use comet_ingest::metrics::IngestMetrics;
use comet_ingest::series::Series;
use comet_ingest::writer::{Writer, WriterSettings};
use comet_query::promqltest::{LoadSeries, Loader};
use comet_query::rules::SampleSink;
use comet_schema::{Store, TimeSeries};

pub struct DirectWriter {
    writer: Writer,
    /// The source name in ingest metrics.
    source: &'static str,
}

impl DirectWriter {
    pub fn start(store: &Store, metrics: IngestMetrics, source: &'static str) -> Self {
        let settings = WriterSettings {
            min_batch_samples: 1,
            linger: Duration::from_millis(5),
            max_buffered_bytes: 64 << 20,
            series_cache_bytes: 16 << 20,
            ..WriterSettings::default()
        };
        Self {
            writer: Writer::start(store.clone(), settings, metrics),
            source,
        }
    }

    /// Stores `series`; returns once ClickHouse accepted them.
    pub async fn write_series(&self, series: Vec<TimeSeries>) -> Result<(), String> {
        let batch = WriteBatch {
            series: series
                .into_iter()
                .map(|s| SeriesSamples::new(Arc::new(Series::new(s.labels)), s.samples))
                .collect(),
            ..WriteBatch::default()
        };
        self.write_batch(batch).await
    }

    /// Stores the floats and native histograms of `series`.
    pub async fn write_loaded(&self, series: Vec<LoadSeries>) -> Result<(), String> {
        let mut batch = WriteBatch::default();
        for s in series {
            // One series for both kinds: the same labels and fingerprint.
            let shared = Arc::new(Series::new(s.labels));
            if !s.samples.is_empty() {
                batch
                    .series
                    .push(SeriesSamples::new(Arc::clone(&shared), s.samples));
            }
            if !s.histograms.is_empty() {
                batch.histograms.push(SeriesHistograms {
                    series: shared,
                    histograms: s.histograms,
                });
            }
        }
        self.write_batch(batch).await
    }

    async fn write_batch(&self, batch: WriteBatch) -> Result<(), String> {
        self.writer
            .write(batch, self.source)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Stores what was accepted and stops.
    pub async fn shutdown(&self) {
        self.writer.shutdown().await;
    }
}

impl SampleSink for DirectWriter {
    fn write(
        &self,
        series: Vec<TimeSeries>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
        Box::pin(self.write_series(series))
    }
}

impl Loader for DirectWriter {
    async fn load(&mut self, series: Vec<LoadSeries>) -> Result<(), String> {
        self.write_loaded(series).await
    }

    async fn close(self) {
        self.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use comet_ingest::metrics::IngestMetrics;
    use comet_query::plan::PlanSettings;
    use comet_query::promqltest::{LoadSeries, Loader, Runner};
    use comet_schema::{RetryPolicy, Store, StoreSettings};

    use super::DirectWriter;

    /// The writer, reading back what it stored before the runner drops the
    /// file's database.
    struct Recording {
        writer: DirectWriter,
        store: Store,
        tables: Arc<Mutex<String>>,
    }

    impl Loader for Recording {
        async fn load(&mut self, series: Vec<LoadSeries>) -> Result<(), String> {
            self.writer.load(series).await
        }

        async fn close(self) {
            self.writer.shutdown().await;
            let db = self.store.database().to_string();
            let mut text = String::new();
            for sql in [
                "SELECT metric_name, fingerprint, timestamp_ms, float_histogram, schema, \
                 reset_hint, zero_threshold, count_float, zero_count_float, sum, positive_index, \
                 positive_counts_float, negative_index, negative_counts_float, custom_values \
                 FROM {db}.histograms ORDER BY metric_name, timestamp_ms FORMAT TSV",
                "SELECT metric_name, fingerprint, timestamp_ms, hex(reinterpretAsUInt64(value)) \
                 FROM {db}.samples ORDER BY metric_name, timestamp_ms FORMAT TSV",
                "SELECT DISTINCT fingerprint, labels FROM {db}.series FINAL \
                 ORDER BY fingerprint FORMAT TSV",
            ] {
                let sql = sql.replace("{db}", &format!("`{db}`"));
                let response = reqwest::Client::new()
                    .post(&self.store.settings().url)
                    .body(sql)
                    .send()
                    .await
                    .expect("ClickHouse");
                text.push_str(&response.text().await.expect("ClickHouse body"));
                text.push_str("--\n");
            }
            *self.tables.lock().expect("lock") = text;
        }
    }

    /// `comet promqltest`'s loader stores a script's native histograms in
    /// `histograms` as written, next to the same series' floats (needs
    /// `COMET_TEST_CLICKHOUSE_URL`).
    #[tokio::test]
    async fn loads_native_histograms() {
        let Ok(url) = std::env::var("COMET_TEST_CLICKHOUSE_URL") else {
            eprintln!("COMET_TEST_CLICKHOUSE_URL is not set; skipping");
            return;
        };
        let runner = Runner {
            store: StoreSettings {
                url,
                user: "default".into(),
                password: String::new(),
                database: "default".into(),
                tls_ca_file: None,
                connect_timeout: Duration::from_secs(5),
                compression: true,
                query_timeout: Duration::from_secs(60),
                retry: RetryPolicy::default(),
                topology_settings: Vec::new(),
            },
            topology: comet_schema::Topology::SingleNode,
            plan: PlanSettings::default(),
        };
        let dir = std::env::temp_dir().join(format!("comet_loader_{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("nh_load.test");
        std::fs::write(
            &path,
            "load 1m\n\
             \x20 m{a=\"1\"} {{schema:0 sum:4 count:4 buckets:[1 2 1]}}+{{sum:2 count:1 buckets:[1] offset:1}}x2 stale 5\n\
             \x20 nh {{schema:-53 sum:1 count:1 custom_values:[5 10] buckets:[1 0] counter_reset_hint:gauge}} _ {{z_bucket_w:0.5 z_bucket:1 count:1 n_buckets:[1 0 3] n_offset:-1}}\n",
        )
        .expect("write script");
        let tables = Arc::new(Mutex::new(String::new()));
        let recorded = Arc::clone(&tables);
        let report = runner
            .run_file(&path, |store: &Store| {
                Ok(Recording {
                    writer: DirectWriter::start(store, IngestMetrics::unregistered(), "test"),
                    store: store.clone(),
                    tables: Arc::clone(&recorded),
                })
            })
            .await
            .expect("run the script");
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(report.passed + report.failed, 0);
        let text = tables.lock().expect("lock").clone();
        let parts: Vec<&str> = text.split("--\n").collect();
        let histograms: Vec<Vec<&str>> =
            parts[0].lines().map(|l| l.split('\t').collect()).collect();
        let samples: Vec<Vec<&str>> = parts[1].lines().map(|l| l.split('\t').collect()).collect();
        let without_fingerprint = |rows: &[Vec<&str>]| -> Vec<String> {
            rows.iter()
                .map(|r| {
                    let mut r = r.clone();
                    r.remove(1);
                    r.join(" ")
                })
                .collect()
        };
        assert_eq!(
            without_fingerprint(&histograms),
            [
                "m 0 true 0 unknown 0 4 0 4 [0,1,2] [1,2,1] [] [] []",
                "m 60000 true 0 unknown 0 5 0 6 [0,1,2] [1,3,1] [] [] []",
                "m 120000 true 0 unknown 0 6 0 8 [0,1,2] [1,4,1] [] [] []",
                "nh 0 true -53 gauge 0 1 0 1 [0,1] [1,0] [] [] [5,10]",
                "nh 120000 true 0 unknown 0.5 1 1 0 [] [] [-1,0,1] [1,0,3] []",
            ]
        );
        // The stale marker stays a float, in the same series.
        assert_eq!(
            without_fingerprint(&samples),
            ["m 180000 7FF0000000000002", "m 240000 4014000000000000"]
        );
        assert_eq!(samples[0][1], histograms[0][1]);
        let series: Vec<&str> = parts[2].lines().collect();
        assert_eq!(series.len(), 2, "{series:?}");
    }
}
