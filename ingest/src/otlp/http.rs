//! OTLP/HTTP: `POST /v1/metrics` (the OTLP port) and Prometheus's path
//! `/api/v1/otlp/v1/metrics` (the main port), with binary protobuf or
//! JSON bodies, optionally gzip-compressed.
//!
//! Answers follow the OTLP/HTTP specification: 200 with an
//! `ExportMetricsServiceResponse` (partial success included) in the
//! request's encoding; 400 for bodies that can never be stored; 415 for an
//! unknown media type or encoding; 429 with `Retry-After` when the ingest
//! buffer is full; 503 when ClickHouse is unavailable. Errors carry a
//! `google.rpc.Status` body.

use std::io::Read;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use flate2::read::GzDecoder;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message;

use super::{ExportError, OtlpReceiver};

const SOURCE: &str = "otlp_http";
const PROTOBUF: &str = "application/x-protobuf";
const JSON: &str = "application/json";

/// The path OTLP exporters post to on the OTLP/HTTP port.
pub const OTLP_PATH: &str = "/v1/metrics";
/// Prometheus's path for the same receiver on its main port.
pub const PROMETHEUS_PATH: &str = "/api/v1/otlp/v1/metrics";

/// `google.rpc.Status`, the body of an OTLP/HTTP error.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Protobuf => PROTOBUF,
            Encoding::Json => JSON,
        }
    }
}

/// A router serving both paths.
pub fn router(receiver: OtlpReceiver) -> Router {
    Router::new()
        .route(OTLP_PATH, post(export))
        .route(PROMETHEUS_PATH, post(export))
        .with_state(receiver)
}

async fn export(State(receiver): State<OtlpReceiver>, headers: HeaderMap, body: Body) -> Response {
    let encoding = match media_type(&headers) {
        Ok(encoding) => encoding,
        Err(message) => {
            let error = ExportError::Invalid(message);
            receiver.refused(SOURCE, &error);
            return reply_error(
                &receiver,
                Encoding::Protobuf,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                &error,
            );
        }
    };
    let limit = receiver.settings().max_request_bytes;
    let request = match read_request(&headers, body, encoding, limit).await {
        Ok(request) => request,
        Err((status, message)) => {
            let error = ExportError::Invalid(message);
            receiver.refused(SOURCE, &error);
            return reply_error(&receiver, encoding, status, &error);
        }
    };
    match receiver.export(request, SOURCE).await {
        Ok(response) => {
            receiver.answered(SOURCE, StatusCode::OK.as_str());
            let body = match encoding {
                Encoding::Protobuf => response.encode_to_vec(),
                Encoding::Json => serde_json::to_vec(&response).unwrap_or_default(),
            };
            (
                StatusCode::OK,
                [(header::CONTENT_TYPE, encoding.content_type())],
                body,
            )
                .into_response()
        }
        Err(error) => {
            receiver.refused(SOURCE, &error);
            let status = match &error {
                ExportError::Invalid(_) => StatusCode::BAD_REQUEST,
                ExportError::Overloaded { .. } => StatusCode::TOO_MANY_REQUESTS,
                ExportError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                ExportError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            let mut response = reply_error(&receiver, encoding, status, &error);
            if let Some(after) = error.retry_after() {
                response.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(after.as_secs().max(1)),
                );
            }
            response
        }
    }
}

/// The body's encoding from `Content-Type`.
fn media_type(headers: &HeaderMap) -> Result<Encoding, String> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let media = content_type.split(';').next().unwrap_or_default().trim();
    if media.eq_ignore_ascii_case(PROTOBUF) {
        Ok(Encoding::Protobuf)
    } else if media.eq_ignore_ascii_case(JSON) {
        Ok(Encoding::Json)
    } else {
        Err(format!(
            "unsupported Content-Type {content_type:?}; expected {PROTOBUF} or {JSON}"
        ))
    }
}

/// Reads, decompresses and decodes the body within `limit` bytes.
async fn read_request(
    headers: &HeaderMap,
    body: Body,
    encoding: Encoding,
    limit: usize,
) -> Result<ExportMetricsServiceRequest, (StatusCode, String)> {
    let too_large = move || {
        (
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body is over the limit of {limit} bytes"),
        )
    };
    let gzip = match headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    {
        None | Some("") | Some("identity") => false,
        Some(e) if e.eq_ignore_ascii_case("gzip") => true,
        Some(other) => {
            return Err((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Encoding {other:?}; expected gzip or none"),
            ));
        }
    };
    let raw = axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())?;
    // Decoding is CPU work: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let bytes = if gzip {
            let mut out = Vec::with_capacity(raw.len() * 4);
            GzDecoder::new(&raw[..])
                .take(limit as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| (StatusCode::BAD_REQUEST, format!("invalid gzip body: {e}")))?;
            if out.len() > limit {
                return Err(too_large());
            }
            out.into()
        } else {
            raw
        };
        match encoding {
            Encoding::Protobuf => ExportMetricsServiceRequest::decode(bytes).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("body is not a valid ExportMetricsServiceRequest protobuf: {e}"),
                )
            }),
            Encoding::Json => serde_json::from_slice(&bytes).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    format!("body is not a valid OTLP/JSON ExportMetricsServiceRequest: {e}"),
                )
            }),
        }
    })
    .await
    .map_err(|e| {
        (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("decoding failed: {e}"),
        )
    })?
}

fn reply_error(
    receiver: &OtlpReceiver,
    encoding: Encoding,
    status: StatusCode,
    error: &ExportError,
) -> Response {
    receiver.answered(SOURCE, status.as_str());
    let rpc = RpcStatus {
        code: error.grpc_code() as i32,
        message: error.to_string(),
    };
    let body = match encoding {
        Encoding::Protobuf => rpc.encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({ "code": rpc.code, "message": rpc.message }))
                .unwrap_or_default()
        }
    };
    (
        status,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn media_types() {
        let mut h = HeaderMap::new();
        assert!(media_type(&h).is_err());
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static(PROTOBUF));
        assert_eq!(media_type(&h), Ok(Encoding::Protobuf));
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
        assert_eq!(media_type(&h), Ok(Encoding::Json));
        h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        assert!(media_type(&h).is_err());
    }
}
