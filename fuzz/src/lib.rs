//! What the fuzz targets share: Comet's decoders set up as `comet serve`
//! sets them up by default, so a crash here is a crash there.

use comet_ingest::SeriesRegistry;
use comet_ingest::kafka::format::MessageDecoder;
use comet_ingest::otlp::state::SeriesState;
use comet_ingest::remote_write::decode::DecodeOptions;
use std::time::Duration;

/// The Kafka message decoder, which holds every ingest format's decoder
/// (remote-write, OTLP protobuf and JSON, Prometheus text) with the
/// defaults of `comet serve`.
pub fn decoder() -> MessageDecoder {
    MessageDecoder {
        remote_write: DecodeOptions::default(),
        otlp: Default::default(),
        otlp_state: SeriesState::new(10_000, Duration::from_secs(600)),
        registry: SeriesRegistry::new(16 << 20),
        name_validation: Default::default(),
    }
}
