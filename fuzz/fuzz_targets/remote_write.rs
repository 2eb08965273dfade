//! Remote-write 1.0 and 2.0 bodies. The input is the uncompressed
//! protobuf (so the fuzzer works on the message, not on snappy); its first
//! byte picks the version, or sends the rest as a raw (possibly invalid)
//! snappy body.
#![no_main]

use comet_ingest::kafka::format::MessageDecoder;
use comet_ingest::remote_write::decode::{decode_v1, decode_v2};
use libfuzzer_sys::fuzz_target;
use std::sync::LazyLock;

static DECODER: LazyLock<MessageDecoder> = LazyLock::new(comet_fuzz::decoder);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, message)) = data.split_first() else {
        return;
    };
    let compressed;
    let body = if mode & 2 == 0 {
        compressed = match snap::raw::Encoder::new().compress_vec(message) {
            Ok(c) => c,
            Err(_) => return,
        };
        compressed.as_slice()
    } else {
        message
    };
    let (options, registry) = (&DECODER.remote_write, &DECODER.registry);
    let _ = if mode & 1 == 0 {
        decode_v1(body, options, registry)
    } else {
        decode_v2(body, options, registry)
    };
});
