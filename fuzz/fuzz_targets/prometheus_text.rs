//! The Prometheus text exposition format of Kafka messages.
#![no_main]

use comet_ingest::kafka::format::{MessageDecoder, MessageFormat};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static DECODER: LazyLock<MessageDecoder> = LazyLock::new(comet_fuzz::decoder);

fuzz_target!(|data: &[u8]| {
    let _ = DECODER.decode(MessageFormat::PrometheusText, Some(data), 1_700_000_000_000);
});
