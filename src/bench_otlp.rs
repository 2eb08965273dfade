//! The OTLP side of `comet bench ingest`: pre-encoded
//! `ExportMetricsServiceRequest`s (by default 100 gauge metrics x 7 points
//! x 10 attributes each) sent over OTLP/HTTP or OTLP/gRPC.
//!
//! gRPC requests are pre-encoded too: each resource is kept as its encoded
//! bytes in a message whose field 1 is `repeated bytes`, which is the same
//! wire format as `repeated ResourceMetrics`, so sending costs no encoding.

use std::time::Duration;

use bytes::Bytes;
use comet_ingest::otlp::synthetic;
pub use comet_ingest::otlp::synthetic::OtlpShape;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceResponse;
use prost::Message;
use tonic::transport::Channel;

/// A request as it goes on the wire: the encoded resource (gRPC) and the
/// whole encoded request (HTTP).
pub struct OtlpRequest {
    pub resource: Bytes,
    pub body: Bytes,
}

/// The request for series block `block` at `time_ns`, encoded once: the
/// HTTP body is the resource wrapped as field 1.
pub fn encode(
    shape: OtlpShape,
    prefix: &str,
    block: usize,
    time_ns: u64,
    round: usize,
) -> OtlpRequest {
    let request = synthetic::request(shape, prefix, block, time_ns, round);
    let resource = Bytes::from(
        request
            .resource_metrics
            .first()
            .map(|r| r.encode_to_vec())
            .unwrap_or_default(),
    );
    let body = PreEncodedExport {
        resource_metrics: vec![resource.clone()],
    }
    .encode_to_vec();
    OtlpRequest {
        resource,
        body: Bytes::from(body),
    }
}

/// `ExportMetricsServiceRequest` with its resources already encoded.
#[derive(Clone, PartialEq, Message)]
struct PreEncodedExport {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    resource_metrics: Vec<Bytes>,
}

/// What a send came to.
pub enum Outcome {
    /// Stored; the points the receiver reported as rejected.
    Stored { rejected: i64 },
    /// Worth another try (overloaded, unavailable, connection trouble).
    Retry,
    /// Refused for good.
    Refused(String),
}

/// Sends one pre-encoded request over gRPC.
pub async fn send_grpc(channel: &Channel, resource: &Bytes) -> Outcome {
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    if grpc.ready().await.is_err() {
        return Outcome::Retry;
    }
    let request = tonic::Request::new(PreEncodedExport {
        resource_metrics: vec![resource.clone()],
    });
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(
        "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    );
    let codec: tonic_prost::ProstCodec<PreEncodedExport, ExportMetricsServiceResponse> =
        tonic_prost::ProstCodec::default();
    match grpc.unary(request, path, codec).await {
        Ok(response) => Outcome::Stored {
            rejected: response
                .into_inner()
                .partial_success
                .map_or(0, |p| p.rejected_data_points),
        },
        Err(status) => match status.code() {
            tonic::Code::Unavailable
            | tonic::Code::ResourceExhausted
            | tonic::Code::Aborted
            | tonic::Code::DeadlineExceeded
            | tonic::Code::Cancelled => Outcome::Retry,
            _ => Outcome::Refused(format!("{:?}: {}", status.code(), status.message())),
        },
    }
}

/// Sends one request over OTLP/HTTP.
pub async fn send_http(client: &reqwest::Client, url: &str, body: &Bytes) -> Outcome {
    let response = client
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .timeout(Duration::from_secs(60))
        .body(body.clone())
        .send()
        .await;
    match response {
        Ok(r) if r.status().is_success() => {
            let bytes = r.bytes().await.unwrap_or_default();
            let rejected = ExportMetricsServiceResponse::decode(bytes)
                .ok()
                .and_then(|r| r.partial_success)
                .map_or(0, |p| p.rejected_data_points);
            Outcome::Stored { rejected }
        }
        Ok(r) if r.status().is_server_error() || r.status() == 429 => Outcome::Retry,
        Ok(r) => Outcome::Refused(format!("HTTP {}", r.status())),
        Err(_) => Outcome::Retry,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
    use opentelemetry_proto::tonic::metrics::v1::metric::Data;

    #[test]
    fn pre_encoded_resources_are_a_valid_request() {
        let shape = OtlpShape {
            metrics: 3,
            points: 2,
            attributes: 10,
        };
        let request = encode(shape, "b", 4, 1_000, 1);
        let raw = PreEncodedExport {
            resource_metrics: vec![request.resource.clone()],
        }
        .encode_to_vec();
        assert_eq!(raw, request.body.to_vec());
        // The same bytes prost writes for the whole request.
        let whole = synthetic::request(shape, "b", 4, 1_000, 1).encode_to_vec();
        assert_eq!(whole, raw);
        let decoded = ExportMetricsServiceRequest::decode(&raw[..]).expect("decodes");
        let metrics = &decoded.resource_metrics[0].scope_metrics[0].metrics;
        assert_eq!(metrics.len(), 3);
        let Some(Data::Gauge(g)) = &metrics[0].data else {
            panic!("gauge expected");
        };
        assert_eq!(g.data_points.len(), 2);
        assert_eq!(g.data_points[0].attributes.len(), 10);
    }
}
