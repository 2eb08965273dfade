//! OTLP metrics export requests, protobuf or JSON (by the first byte), as
//! the OTLP receivers and Kafka decode and translate them.
#![no_main]

use comet_ingest::kafka::format::{MessageDecoder, MessageFormat};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static DECODER: LazyLock<MessageDecoder> = LazyLock::new(comet_fuzz::decoder);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, payload)) = data.split_first() else {
        return;
    };
    let format = if mode & 1 == 0 {
        MessageFormat::OtlpProtobuf
    } else {
        MessageFormat::OtlpJson
    };
    let _ = DECODER.decode(format, Some(payload), 1_700_000_000_000);
});
