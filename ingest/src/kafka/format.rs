//! The message formats a topic may carry, and turning one message into a
//! [`WriteBatch`] with the same decoders the HTTP receivers use.

use std::fmt;
use std::str::FromStr;

use comet_schema::NameValidation;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use prost::Message as _;
use thiserror::Error;

use crate::batch::{Rejection, WriteBatch};
use crate::otlp::state::SeriesState;
use crate::otlp::translate::{TranslateSettings, translate};
use crate::remote_write::decode::{DecodeOptions, RequestError, decode_v1};
use crate::series::SeriesRegistry;

use super::text;

/// A message header that names the format of its message, overriding the
/// topic's (values as in the configuration: `remote-write`, ...).
pub const FORMAT_HEADER: &str = "comet-format";

/// What the messages of a topic are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MessageFormat {
    /// Prometheus remote-write 1.0: a snappy-compressed
    /// `prometheus.WriteRequest`, as Prometheus, vmagent and Alloy write it.
    #[default]
    RemoteWrite,
    /// An OTLP `ExportMetricsServiceRequest` in protobuf.
    OtlpProtobuf,
    /// An OTLP `ExportMetricsServiceRequest` in OTLP/JSON.
    OtlpJson,
    /// Prometheus text exposition lines, each with a timestamp (lines
    /// without one get the message's timestamp).
    PrometheusText,
}

impl MessageFormat {
    pub const ALL: [MessageFormat; 4] = [
        MessageFormat::RemoteWrite,
        MessageFormat::OtlpProtobuf,
        MessageFormat::OtlpJson,
        MessageFormat::PrometheusText,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            MessageFormat::RemoteWrite => "remote-write",
            MessageFormat::OtlpProtobuf => "otlp-proto",
            MessageFormat::OtlpJson => "otlp-json",
            MessageFormat::PrometheusText => "prometheus-text",
        }
    }
}

impl fmt::Display for MessageFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MessageFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        MessageFormat::ALL
            .into_iter()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = MessageFormat::ALL.iter().map(|f| f.as_str()).collect();
                format!(
                    "unknown Kafka message format {s:?}; one of {}",
                    names.join(", ")
                )
            })
    }
}

/// A message that cannot be stored at all (it goes to the dead-letter
/// topic).
#[derive(Debug, Clone, Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("message has no payload")]
    Empty,
    #[error("{0}")]
    RemoteWrite(#[from] RequestError),
    #[error("not a valid OTLP ExportMetricsServiceRequest protobuf: {0}")]
    OtlpProtobuf(String),
    #[error("not a valid OTLP/JSON ExportMetricsServiceRequest: {0}")]
    OtlpJson(String),
    #[error("not valid Prometheus text exposition: {0}")]
    Text(#[from] text::TextError),
    #[error("header {FORMAT_HEADER}: {0}")]
    Header(String),
}

impl DecodeError {
    /// A short code for /metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Empty => "empty",
            DecodeError::RemoteWrite(e) => e.reason(),
            DecodeError::OtlpProtobuf(_) => "invalid_otlp_protobuf",
            DecodeError::OtlpJson(_) => "invalid_otlp_json",
            DecodeError::Text(_) => "invalid_text",
            DecodeError::Header(_) => "unknown_format",
        }
    }
}

/// One decoded message.
#[derive(Debug, Default)]
pub struct DecodedMessage {
    pub batch: WriteBatch,
    /// Series or points that could not be stored; the rest of the message is.
    pub rejections: Vec<Rejection>,
    /// Samples (OTLP: data points) in the message, stored or not.
    pub received: u64,
}

/// Decodes messages of every format. Cheap to clone.
#[derive(Clone)]
pub struct MessageDecoder {
    pub remote_write: DecodeOptions,
    pub otlp: TranslateSettings,
    pub otlp_state: SeriesState,
    pub registry: SeriesRegistry,
    /// For text exposition.
    pub name_validation: NameValidation,
}

impl MessageDecoder {
    pub fn decode(
        &self,
        format: MessageFormat,
        payload: Option<&[u8]>,
        timestamp_ms: i64,
    ) -> Result<DecodedMessage, DecodeError> {
        let payload = payload
            .filter(|p| !p.is_empty())
            .ok_or(DecodeError::Empty)?;
        match format {
            MessageFormat::RemoteWrite => {
                let d = decode_v1(payload, &self.remote_write, &self.registry)?;
                Ok(DecodedMessage {
                    batch: d.batch,
                    rejections: d.rejections,
                    received: d.received_samples,
                })
            }
            MessageFormat::OtlpProtobuf => {
                let request = ExportMetricsServiceRequest::decode(payload)
                    .map_err(|e| DecodeError::OtlpProtobuf(e.to_string()))?;
                Ok(self.translate(&request))
            }
            MessageFormat::OtlpJson => {
                let request: ExportMetricsServiceRequest = serde_json::from_slice(payload)
                    .map_err(|e| DecodeError::OtlpJson(e.to_string()))?;
                Ok(self.translate(&request))
            }
            MessageFormat::PrometheusText => {
                let text = std::str::from_utf8(payload).map_err(|e| text::TextError {
                    line: 0,
                    message: format!("not UTF-8: {e}"),
                })?;
                let parsed = text::parse(text, timestamp_ms, self.name_validation, &self.registry)?;
                Ok(DecodedMessage {
                    batch: parsed.batch,
                    rejections: parsed.rejections,
                    received: parsed.samples,
                })
            }
        }
    }

    fn translate(&self, request: &ExportMetricsServiceRequest) -> DecodedMessage {
        let t = translate(request, &self.otlp, &self.registry, &self.otlp_state);
        DecodedMessage {
            batch: t.batch,
            rejections: t.rejections,
            received: t.received_points,
        }
    }
}

/// The format of a message: its `comet-format` header, else its topic's.
pub fn message_format(
    header: Option<&[u8]>,
    topic_format: MessageFormat,
) -> Result<MessageFormat, DecodeError> {
    match header {
        None => Ok(topic_format),
        Some(value) => std::str::from_utf8(value)
            .map_err(|_| DecodeError::Header("not UTF-8".into()))?
            .trim()
            .parse()
            .map_err(DecodeError::Header),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip_their_names() {
        for f in MessageFormat::ALL {
            assert_eq!(f.as_str().parse::<MessageFormat>(), Ok(f));
        }
        assert!("protobuf".parse::<MessageFormat>().is_err());
    }

    #[test]
    fn the_header_overrides_the_topic() {
        assert_eq!(
            message_format(None, MessageFormat::OtlpJson),
            Ok(MessageFormat::OtlpJson)
        );
        assert_eq!(
            message_format(Some(b"prometheus-text"), MessageFormat::RemoteWrite),
            Ok(MessageFormat::PrometheusText)
        );
        assert!(message_format(Some(b"nope"), MessageFormat::RemoteWrite).is_err());
    }
}
