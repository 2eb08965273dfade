//! `POST /api/v1/write`: Prometheus remote-write 1.0 and 2.0.
//!
//! Status codes follow the specification's retry rules: 2xx only after
//! ClickHouse accepted the rows; 5xx (503 with `Retry-After`) when Comet or
//! ClickHouse is overloaded or down, so the sender retries; 4xx only for
//! requests that can never succeed (the sender drops them). Prometheus 2.x
//! does not retry 429 unless told to, so overload answers 503 by default.

pub mod decode;
pub mod histogram;
pub mod wire;

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracing::debug;

use crate::metrics::IngestMetrics;
use crate::writer::{WriteError, Writer};
use decode::{DecodeOptions, Decoded, RequestError, decode_v1, decode_v2};

/// Settings of the remote-write receiver.
#[derive(Debug, Clone)]
pub struct RemoteWriteSettings {
    /// Largest compressed body accepted (413 above it).
    pub max_request_bytes: usize,
    pub decode: DecodeOptions,
    /// Status for "buffer full, retry": 503 (default) or 429.
    pub overload_status: StatusCode,
}

impl Default for RemoteWriteSettings {
    fn default() -> Self {
        Self {
            max_request_bytes: 32 << 20,
            decode: DecodeOptions::default(),
            overload_status: StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

#[derive(Clone)]
struct RemoteWrite {
    writer: Writer,
    settings: RemoteWriteSettings,
    metrics: IngestMetrics,
}

/// The protocol version of a request, from its headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    V1,
    V2,
}

impl Protocol {
    fn source(self) -> &'static str {
        match self {
            Protocol::V1 => "remote_write_v1",
            Protocol::V2 => "remote_write_v2",
        }
    }
}

const V2_PROTO: &str = "io.prometheus.write.v2.Request";
const V1_PROTO: &str = "prometheus.WriteRequest";

/// Picks the protocol from `Content-Type` and checks `Content-Encoding`, or
/// says why the request is unsupported (415).
pub fn protocol(headers: &HeaderMap) -> Result<Protocol, String> {
    if let Some(encoding) = headers.get(header::CONTENT_ENCODING) {
        let encoding = encoding.to_str().unwrap_or_default().trim();
        if !encoding.eq_ignore_ascii_case("snappy") {
            return Err(format!(
                "unsupported Content-Encoding {encoding:?}; remote-write bodies must be snappy"
            ));
        }
    }
    let Some(content_type) = headers.get(header::CONTENT_TYPE) else {
        return Ok(Protocol::V1);
    };
    let content_type = content_type.to_str().unwrap_or_default();
    let mut parts = content_type.split(';');
    let media = parts.next().unwrap_or_default().trim();
    if !media.eq_ignore_ascii_case("application/x-protobuf") {
        return Err(format!(
            "unsupported Content-Type {content_type:?}; expected application/x-protobuf"
        ));
    }
    let proto = parts
        .filter_map(|p| p.split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("proto"))
        .map(|(_, v)| v.trim().trim_matches('"'));
    match proto {
        None | Some(V1_PROTO) => Ok(Protocol::V1),
        Some(V2_PROTO) => Ok(Protocol::V2),
        Some(other) => Err(format!(
            "unsupported remote-write message {other:?}; expected {V1_PROTO} or {V2_PROTO}"
        )),
    }
}

/// The router serving `/api/v1/write`.
pub fn router(writer: Writer, settings: RemoteWriteSettings, metrics: IngestMetrics) -> Router {
    Router::new()
        .route("/api/v1/write", post(handle))
        .with_state(RemoteWrite {
            writer,
            settings,
            metrics,
        })
}

async fn handle(State(rw): State<RemoteWrite>, headers: HeaderMap, body: Body) -> Response {
    let protocol = match protocol(&headers) {
        Ok(p) => p,
        Err(message) => {
            return rw.refuse(
                "remote_write",
                "unsupported_media_type",
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                message,
            );
        }
    };
    let source = protocol.source();
    let limit = rw.settings.max_request_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(body) => body,
        Err(_) => {
            return rw.refuse(
                source,
                "too_large",
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("request body is over the limit of {limit} bytes"),
            );
        }
    };
    let options = rw.settings.decode;
    let registry = rw.writer.registry().clone();
    // Decoding is CPU work: keep it off the async workers' hot path.
    let decoded = tokio::task::spawn_blocking(move || match protocol {
        Protocol::V1 => decode_v1(&body, &options, &registry),
        Protocol::V2 => decode_v2(&body, &options, &registry),
    })
    .await;
    let decoded = match decoded {
        Ok(Ok(decoded)) => decoded,
        Ok(Err(err)) => {
            let status = match err {
                RequestError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                _ => StatusCode::BAD_REQUEST,
            };
            return rw.refuse(source, err.reason(), status, err.to_string());
        }
        Err(join) => {
            return rw.refuse(
                source,
                "internal",
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("decoding failed: {join}"),
            );
        }
    };
    rw.store(protocol, decoded).await
}

impl RemoteWrite {
    /// A whole request refused: nothing of it was stored.
    fn refuse(
        &self,
        source: &'static str,
        reason: &'static str,
        status: StatusCode,
        message: String,
    ) -> Response {
        debug!(source, reason, %message, "remote-write request refused");
        self.metrics
            .requests_rejected
            .with_label_values(&[source, reason])
            .inc();
        self.count(source, status);
        (status, format!("{message}\n")).into_response()
    }

    fn count(&self, source: &'static str, status: StatusCode) {
        self.metrics
            .requests
            .with_label_values(&[source, status.as_str()])
            .inc();
    }

    async fn store(&self, protocol: Protocol, decoded: Decoded) -> Response {
        let source = protocol.source();
        let m = &self.metrics;
        m.samples_received
            .with_label_values(&[source])
            .inc_by(decoded.received_samples);
        m.histograms_received
            .with_label_values(&[source])
            .inc_by(decoded.received_histograms);
        for r in &decoded.rejections {
            if r.samples > 0 || r.histograms == 0 {
                m.samples_rejected
                    .with_label_values(&[source, r.reason])
                    .inc_by(r.samples);
            }
            if r.histograms > 0 {
                m.histograms_rejected
                    .with_label_values(&[source, r.reason])
                    .inc_by(r.histograms);
            }
        }
        let receipt = match self.writer.try_write(decoded.batch, source).await {
            Ok(receipt) => receipt,
            Err(err) => return self.write_failed(source, err),
        };
        let mut response = match decoded.rejections.first() {
            None => StatusCode::NO_CONTENT.into_response(),
            Some(first) => {
                let more = decoded.rejections.len() - 1;
                let message = if more == 0 {
                    format!("{}\n", first.message)
                } else {
                    format!("{} (and {more} more rejected series)\n", first.message)
                };
                (StatusCode::BAD_REQUEST, message).into_response()
            }
        };
        self.count(source, response.status());
        if protocol == Protocol::V2 {
            let headers = response.headers_mut();
            headers.insert(
                "X-Prometheus-Remote-Write-Samples-Written",
                HeaderValue::from(receipt.samples),
            );
            headers.insert(
                "X-Prometheus-Remote-Write-Histograms-Written",
                HeaderValue::from(receipt.histograms),
            );
            headers.insert(
                "X-Prometheus-Remote-Write-Exemplars-Written",
                HeaderValue::from(receipt.exemplars),
            );
        }
        response
    }

    fn write_failed(&self, source: &'static str, err: WriteError) -> Response {
        let (status, reason, retry_after) = match &err {
            WriteError::Overloaded { retry_after, .. } => (
                self.settings.overload_status,
                "overloaded",
                Some(*retry_after),
            ),
            WriteError::ShuttingDown => (
                StatusCode::SERVICE_UNAVAILABLE,
                "shutting_down",
                Some(Duration::from_secs(5)),
            ),
            WriteError::Store {
                transient: true, ..
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                Some(Duration::from_secs(5)),
            ),
            WriteError::Store { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "storage_error", None),
        };
        let mut response = self.refuse(source, reason, status, err.to_string());
        if let Some(after) = retry_after {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_static(v));
        }
        h
    }

    #[test]
    fn content_negotiation() {
        assert_eq!(protocol(&headers(&[])), Ok(Protocol::V1));
        assert_eq!(
            protocol(&headers(&[
                ("content-type", "application/x-protobuf"),
                ("content-encoding", "snappy")
            ])),
            Ok(Protocol::V1)
        );
        assert_eq!(
            protocol(&headers(&[(
                "content-type",
                "application/x-protobuf;proto=prometheus.WriteRequest"
            )])),
            Ok(Protocol::V1)
        );
        assert_eq!(
            protocol(&headers(&[(
                "content-type",
                "application/x-protobuf; proto=io.prometheus.write.v2.Request"
            )])),
            Ok(Protocol::V2)
        );
        assert!(protocol(&headers(&[("content-type", "application/json")])).is_err());
        assert!(
            protocol(&headers(&[(
                "content-type",
                "application/x-protobuf;proto=foo.Bar"
            )]))
            .is_err()
        );
        assert!(protocol(&headers(&[("content-encoding", "gzip")])).is_err());
    }
}
