//! The ingest writer for callers that wait for each write before the next
//! (rule groups, and the loads of `comet promqltest` and `comet rules
//! test`): a writer of its own that flushes at once, since lingering for a
//! bigger batch would only delay them.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use comet_ingest::batch::{SeriesSamples, WriteBatch};
use comet_ingest::metrics::IngestMetrics;
use comet_ingest::series::Series;
use comet_ingest::writer::{Writer, WriterSettings};
use comet_query::promqltest::Loader;
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
    async fn load(&mut self, series: Vec<TimeSeries>) -> Result<(), String> {
        self.write_series(series).await
    }

    async fn close(self) {
        self.shutdown().await;
    }
}
