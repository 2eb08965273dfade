//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
//!
//! Codes follow the OTLP specification: OK (with partial success) once
//! ClickHouse accepted the rows; RESOURCE_EXHAUSTED with a `RetryInfo`
//! delay when the ingest buffer is full; UNAVAILABLE when ClickHouse is
//! down (both retried by exporters); INVALID_ARGUMENT for requests that
//! can never be stored. Gzip-compressed requests are accepted.

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tonic::codec::CompressionEncoding;
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_types::{ErrorDetails, StatusExt};

use super::http::grpc_code;
use super::{ExportError, OtlpReceiver};

const SOURCE: &str = "otlp_grpc";

struct Service(OtlpReceiver);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let receiver = &self.0;
        match receiver.export(request.into_inner(), SOURCE).await {
            Ok(response) => {
                receiver.answered(SOURCE, "OK");
                Ok(Response::new(response))
            }
            Err(error) => {
                receiver.refused(SOURCE, &error);
                let code = grpc_code(&error);
                receiver.answered(SOURCE, code.description());
                let retry = match &error {
                    ExportError::Overloaded { retry_after, .. } => Some(*retry_after),
                    ExportError::Unavailable(_) => Some(std::time::Duration::from_secs(5)),
                    _ => None,
                };
                Err(match retry {
                    Some(delay) => Status::with_error_details(
                        code,
                        error.to_string(),
                        ErrorDetails::with_retry_info(Some(delay)),
                    ),
                    None => Status::new(code, error.to_string()),
                })
            }
        }
    }
}

/// The gRPC service as an axum router, so that it is served (HTTP/2
/// cleartext or TLS) behind the same listener code and authentication as
/// the HTTP API.
pub fn router(receiver: OtlpReceiver) -> axum::Router {
    let limit = receiver.settings().max_request_bytes;
    let service = MetricsServiceServer::new(Service(receiver))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    Routes::new(service).into_axum_router()
}
