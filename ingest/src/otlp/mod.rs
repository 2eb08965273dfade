//! OTLP metrics: `MetricsService/Export` over gRPC ([`grpc`]) and
//! `POST /v1/metrics` over HTTP with protobuf or JSON bodies ([`http`]),
//! translated to Prometheus series ([`translate`], [`names`]) and stored
//! through the shared [`Writer`].
//!
//! A request is answered only after ClickHouse accepted its rows. Points
//! that cannot be stored are reported in the response's partial success
//! (`rejected_data_points` and a message) and counted by reason; the rest
//! of the request is stored.

pub mod grpc;
pub mod http;
pub mod names;
pub mod native;
pub mod state;
pub mod synthetic;
pub mod translate;

use std::sync::Arc;
use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use thiserror::Error;
use tracing::debug;

use crate::metrics::IngestMetrics;
use crate::writer::{WriteError, Writer};
pub use names::TranslationStrategy;
use state::SeriesState;
pub use translate::{DeltaPolicy, ExponentialPolicy, TranslateSettings, Translated, translate};

/// Settings of both OTLP receivers.
#[derive(Debug, Clone)]
pub struct OtlpSettings {
    pub translate: TranslateSettings,
    /// Largest request body (after decompression for HTTP; the gRPC
    /// message size limit).
    pub max_request_bytes: usize,
    /// Series whose delta-to-cumulative total and start time are kept.
    pub state_max_series: u64,
    /// A series' state is dropped after this long without points.
    pub state_idle: Duration,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            translate: TranslateSettings::default(),
            max_request_bytes: 32 << 20,
            state_max_series: 1_000_000,
            state_idle: Duration::from_secs(3600),
        }
    }
}

/// Why an export was not stored.
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum ExportError {
    /// The request can never succeed (undecodable, wrong media type).
    #[error("{0}")]
    Invalid(String),
    /// The ingest buffer is full: retry after the delay.
    #[error("{message}")]
    Overloaded {
        message: String,
        retry_after: Duration,
    },
    /// ClickHouse is down or Comet is stopping: retry later.
    #[error("{0}")]
    Unavailable(String),
    #[error("{0}")]
    Internal(String),
}

impl ExportError {
    /// The gRPC code (also in the HTTP error body).
    pub fn grpc_code(&self) -> tonic::Code {
        match self {
            ExportError::Invalid(_) => tonic::Code::InvalidArgument,
            ExportError::Overloaded { .. } => tonic::Code::ResourceExhausted,
            ExportError::Unavailable(_) => tonic::Code::Unavailable,
            ExportError::Internal(_) => tonic::Code::Internal,
        }
    }

    /// When the exporter should try again, for the errors worth retrying.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ExportError::Overloaded { retry_after, .. } => Some(*retry_after),
            ExportError::Unavailable(_) => Some(Duration::from_secs(5)),
            ExportError::Invalid(_) | ExportError::Internal(_) => None,
        }
    }

    /// A short code for metrics labels.
    pub fn reason(&self) -> &'static str {
        match self {
            ExportError::Invalid(_) => "invalid_request",
            ExportError::Overloaded { .. } => "overloaded",
            ExportError::Unavailable(_) => "storage_unavailable",
            ExportError::Internal(_) => "internal",
        }
    }
}

/// The receiver both transports hand decoded requests to. Cheap to clone.
#[derive(Clone)]
pub struct OtlpReceiver {
    writer: Writer,
    settings: Arc<OtlpSettings>,
    state: SeriesState,
    metrics: IngestMetrics,
}

impl OtlpReceiver {
    pub fn new(writer: Writer, settings: OtlpSettings, metrics: IngestMetrics) -> Self {
        let state = SeriesState::new(settings.state_max_series, settings.state_idle);
        Self {
            writer,
            settings: Arc::new(settings),
            state,
            metrics,
        }
    }

    pub fn settings(&self) -> &OtlpSettings {
        &self.settings
    }

    /// The delta running totals, shared with the Kafka source's OTLP topics.
    pub fn state(&self) -> &SeriesState {
        &self.state
    }

    /// Translates and stores one request; `source` names the transport in
    /// metrics (`otlp_grpc`, `otlp_http`).
    pub async fn export(
        &self,
        request: ExportMetricsServiceRequest,
        source: &'static str,
    ) -> Result<ExportMetricsServiceResponse, ExportError> {
        let receiver = self.clone();
        // Translation is CPU work: keep it off the async workers.
        let translated = tokio::task::spawn_blocking(move || {
            translate(
                &request,
                &receiver.settings.translate,
                receiver.writer.registry(),
                &receiver.state,
            )
        })
        .await
        .map_err(|e| ExportError::Internal(format!("translation failed: {e}")))?;
        self.store(translated, source).await
    }

    async fn store(
        &self,
        translated: Translated,
        source: &'static str,
    ) -> Result<ExportMetricsServiceResponse, ExportError> {
        let m = &self.metrics;
        m.otlp_points_received
            .with_label_values(&[source])
            .inc_by(translated.received_points);
        for r in &translated.rejections {
            m.otlp_points_rejected
                .with_label_values(&[source, r.reason])
                .inc_by(r.samples);
        }
        self.writer
            .try_write(translated.batch, source)
            .await
            .map_err(|err| match err {
                WriteError::Overloaded { retry_after, .. } => ExportError::Overloaded {
                    message: err.to_string(),
                    retry_after,
                },
                WriteError::ShuttingDown => ExportError::Unavailable(err.to_string()),
                WriteError::Store {
                    transient: true, ..
                } => ExportError::Unavailable(err.to_string()),
                WriteError::Store { .. } => ExportError::Internal(err.to_string()),
            })?;
        let partial_success = (translated.rejected_points > 0).then(|| {
            // One per reason, already in reason order.
            let message: Vec<String> = translated
                .rejections
                .iter()
                .map(|r| format!("{} {}: {}", r.samples, r.reason, r.message))
                .collect();
            debug!(
                source,
                rejected = translated.rejected_points,
                "OTLP points rejected"
            );
            ExportMetricsPartialSuccess {
                rejected_data_points: translated.rejected_points as i64,
                error_message: message.join("; "),
            }
        });
        Ok(ExportMetricsServiceResponse { partial_success })
    }

    /// Counts a refused request.
    fn refused(&self, source: &'static str, error: &ExportError) {
        debug!(source, reason = error.reason(), %error, "OTLP request refused");
        self.metrics
            .requests_rejected
            .with_label_values(&[source, error.reason()])
            .inc();
    }

    fn answered(&self, source: &'static str, status: &str) {
        self.metrics
            .requests
            .with_label_values(&[source, status])
            .inc();
    }
}
