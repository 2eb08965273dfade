//! Ingest metrics, shown on Comet's /metrics.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

/// Counters and histograms of the ingest path. Cheap to clone.
#[derive(Clone)]
pub struct IngestMetrics {
    /// Samples received by source, before validation.
    pub samples_received: IntCounterVec,
    /// Samples acknowledged as stored, by source.
    pub samples_written: IntCounterVec,
    /// Samples refused, by source and reason.
    pub samples_rejected: IntCounterVec,
    /// Native histogram samples received by source, before validation.
    pub histograms_received: IntCounterVec,
    /// Native histogram samples acknowledged as stored, by source.
    pub histograms_written: IntCounterVec,
    /// Native histogram samples refused, by source and reason.
    pub histograms_rejected: IntCounterVec,
    /// Requests by source and HTTP status (or gRPC code).
    pub requests: IntCounterVec,
    /// Whole requests refused (undecodable, too large, ...), by reason.
    pub requests_rejected: IntCounterVec,
    pub exemplars_written: IntCounter,
    pub metadata_written: IntCounter,
    /// New (series, day) rows written to the series table.
    pub series_created: IntCounter,
    pub batches: IntCounter,
    pub batch_rows: Histogram,
    pub insert_duration: HistogramVec,
    pub insert_failures: IntCounterVec,
    /// Bytes of accepted-but-not-yet-stored data held in memory.
    pub buffered_bytes: IntGauge,
    /// Writes refused because the buffered-memory ceiling was reached.
    pub backpressure_events: IntCounterVec,
    /// OTLP data points received (a histogram point counts once).
    pub otlp_points_received: IntCounterVec,
    /// OTLP data points not stored, by reason (`rejected_data_points`).
    pub otlp_points_rejected: IntCounterVec,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let m = Self {
            samples_received: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_samples_received_total",
                    "Samples received, before validation.",
                ),
                &["source"],
            )?,
            samples_written: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_samples_written_total",
                    "Samples stored in ClickHouse and acknowledged.",
                ),
                &["source"],
            )?,
            samples_rejected: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_samples_rejected_total",
                    "Samples refused, by reason.",
                ),
                &["source", "reason"],
            )?,
            histograms_received: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_histograms_received_total",
                    "Native histogram samples received, before validation.",
                ),
                &["source"],
            )?,
            histograms_written: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_histograms_written_total",
                    "Native histogram samples stored in ClickHouse and acknowledged.",
                ),
                &["source"],
            )?,
            histograms_rejected: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_histograms_rejected_total",
                    "Native histogram samples refused, by reason.",
                ),
                &["source", "reason"],
            )?,
            requests: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_requests_total",
                    "Ingest requests by source and response status.",
                ),
                &["source", "status"],
            )?,
            requests_rejected: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_requests_rejected_total",
                    "Whole requests refused, by reason.",
                ),
                &["source", "reason"],
            )?,
            exemplars_written: IntCounter::new(
                "comet_ingest_exemplars_written_total",
                "Exemplars stored in ClickHouse.",
            )?,
            metadata_written: IntCounter::new(
                "comet_ingest_metadata_written_total",
                "Metric metadata rows stored in ClickHouse.",
            )?,
            series_created: IntCounter::new(
                "comet_ingest_series_created_total",
                "Series rows written (one per series per day it is active).",
            )?,
            batches: IntCounter::new(
                "comet_ingest_batches_total",
                "Batches flushed to ClickHouse.",
            )?,
            batch_rows: Histogram::with_opts(
                HistogramOpts::new("comet_ingest_batch_samples", "Samples per flushed batch.")
                    .buckets(prometheus::exponential_buckets(100.0, 4.0, 9)?),
            )?,
            insert_duration: HistogramVec::new(
                HistogramOpts::new(
                    "comet_ingest_insert_duration_seconds",
                    "Time for ClickHouse to accept one insert, retries included.",
                )
                .buckets(prometheus::exponential_buckets(0.001, 2.5, 12)?),
                &["table"],
            )?,
            insert_failures: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_insert_failures_total",
                    "Batches ClickHouse did not accept, after retries.",
                ),
                &["table"],
            )?,
            buffered_bytes: IntGauge::new(
                "comet_ingest_buffered_bytes",
                "Memory held by accepted data waiting to be stored.",
            )?,
            backpressure_events: IntCounterVec::new(
                Opts::new(
                    "comet_ingest_backpressure_total",
                    "Writes refused (to be retried by the sender) because the buffer ceiling was reached.",
                ),
                &["source"],
            )?,
            otlp_points_received: IntCounterVec::new(
                Opts::new(
                    "comet_otlp_data_points_received_total",
                    "OTLP data points received; a histogram or summary point counts once.",
                ),
                &["source"],
            )?,
            otlp_points_rejected: IntCounterVec::new(
                Opts::new(
                    "comet_otlp_data_points_rejected_total",
                    "OTLP data points not stored (reported as rejected_data_points), by reason.",
                ),
                &["source", "reason"],
            )?,
        };
        registry.register(Box::new(m.samples_received.clone()))?;
        registry.register(Box::new(m.samples_written.clone()))?;
        registry.register(Box::new(m.samples_rejected.clone()))?;
        registry.register(Box::new(m.histograms_received.clone()))?;
        registry.register(Box::new(m.histograms_written.clone()))?;
        registry.register(Box::new(m.histograms_rejected.clone()))?;
        registry.register(Box::new(m.requests.clone()))?;
        registry.register(Box::new(m.requests_rejected.clone()))?;
        registry.register(Box::new(m.exemplars_written.clone()))?;
        registry.register(Box::new(m.metadata_written.clone()))?;
        registry.register(Box::new(m.series_created.clone()))?;
        registry.register(Box::new(m.batches.clone()))?;
        registry.register(Box::new(m.batch_rows.clone()))?;
        registry.register(Box::new(m.insert_duration.clone()))?;
        registry.register(Box::new(m.insert_failures.clone()))?;
        registry.register(Box::new(m.buffered_bytes.clone()))?;
        registry.register(Box::new(m.backpressure_events.clone()))?;
        registry.register(Box::new(m.otlp_points_received.clone()))?;
        registry.register(Box::new(m.otlp_points_rejected.clone()))?;
        Ok(m)
    }

    /// Metrics registered nowhere (benchmarks, tools).
    pub fn unregistered() -> Self {
        Self::new(&Registry::new()).unwrap_or_else(|_| unreachable!("fresh registry"))
    }
}
