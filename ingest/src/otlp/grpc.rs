//! OTLP/gRPC: `opentelemetry.proto.collector.metrics.v1.MetricsService/Export`.
//!
//! Codes follow the OTLP specification: OK (with partial success) once
//! ClickHouse accepted the rows; RESOURCE_EXHAUSTED with a `RetryInfo`
//! delay when the ingest buffer is full; UNAVAILABLE when ClickHouse is
//! down (both retried by exporters); INVALID_ARGUMENT for requests that
//! cannot be decoded (plain tonic would answer INTERNAL, which exporters
//! retry forever). Gzip-compressed requests are accepted.

use std::convert::Infallible;
use std::task::{Context, Poll};

use axum::http;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;
use tonic::codec::{Codec, CompressionEncoding, DecodeBuf, Decoder};
use tonic::codegen::BoxFuture;
use tonic::server::{NamedService, UnaryService};
use tonic::service::Routes;
use tonic::{Request, Response, Status};
use tonic_prost::ProstEncoder;
use tonic_types::{ErrorDetails, StatusExt};

use super::{ExportError, OtlpReceiver};

const SOURCE: &str = "otlp_grpc";
const EXPORT_PATH: &str = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";

/// The gRPC service as an axum router, so that it is served (HTTP/2
/// cleartext or TLS) behind the same listener code and authentication as
/// the HTTP API.
pub fn router(receiver: OtlpReceiver) -> axum::Router {
    Routes::new(MetricsService(receiver)).into_axum_router()
}

#[derive(Clone)]
struct MetricsService(OtlpReceiver);

impl NamedService for MetricsService {
    const NAME: &'static str = "opentelemetry.proto.collector.metrics.v1.MetricsService";
}

impl<B> tower::Service<http::Request<B>> for MetricsService
where
    B: http_body::Body + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Self::Response, Self::Error>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let receiver = self.0.clone();
        if request.uri().path() != EXPORT_PATH {
            return Box::pin(async {
                Ok(Status::unimplemented("only MetricsService/Export is served").into_http())
            });
        }
        let limit = receiver.settings().max_request_bytes;
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(ExportCodec(receiver.clone()))
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
                .max_decoding_message_size(limit);
            Ok(grpc.unary(Export(receiver), request).await)
        })
    }
}

struct Export(OtlpReceiver);

impl UnaryService<ExportMetricsServiceRequest> for Export {
    type Response = ExportMetricsServiceResponse;
    type Future = BoxFuture<Response<Self::Response>, Status>;

    fn call(&mut self, request: Request<ExportMetricsServiceRequest>) -> Self::Future {
        let receiver = self.0.clone();
        Box::pin(async move { export(&receiver, request.into_inner()).await })
    }
}

async fn export(
    receiver: &OtlpReceiver,
    request: ExportMetricsServiceRequest,
) -> Result<Response<ExportMetricsServiceResponse>, Status> {
    match receiver.export(request, SOURCE).await {
        Ok(response) => {
            receiver.answered(SOURCE, &format!("{:?}", tonic::Code::Ok));
            Ok(Response::new(response))
        }
        Err(error) => {
            receiver.refused(SOURCE, &error);
            let code = error.grpc_code();
            receiver.answered(SOURCE, &format!("{code:?}"));
            Err(match error.retry_after() {
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

/// Protobuf in and out, with undecodable requests as INVALID_ARGUMENT
/// (counted, as tonic answers them without calling the service).
struct ExportCodec(OtlpReceiver);

impl Codec for ExportCodec {
    type Encode = ExportMetricsServiceResponse;
    type Decode = ExportMetricsServiceRequest;
    type Encoder = ProstEncoder<ExportMetricsServiceResponse>;
    type Decoder = ExportDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::default()
    }

    fn decoder(&mut self) -> Self::Decoder {
        ExportDecoder(self.0.clone())
    }
}

struct ExportDecoder(OtlpReceiver);

impl Decoder for ExportDecoder {
    type Item = ExportMetricsServiceRequest;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        ExportMetricsServiceRequest::decode(buf)
            .map(Some)
            .map_err(|e| {
                let error = ExportError::Invalid(format!(
                    "body is not a valid ExportMetricsServiceRequest protobuf: {e}"
                ));
                self.0.refused(SOURCE, &error);
                self.0
                    .answered(SOURCE, &format!("{:?}", tonic::Code::InvalidArgument));
                Status::invalid_argument(error.to_string())
            })
    }
}
