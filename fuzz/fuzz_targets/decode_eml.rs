#![no_main]
//! Fuzzes the Eml decoder (format forced, small record limit to reach the oversize paths).

use libfuzzer_sys::fuzz_target;
use mailsentry_ingest::{decode_bytes, DecodeOptions, InputFormat};

fuzz_target!(|data: &[u8]| {
    let options = DecodeOptions {
        max_record_size: 4096,
        format: Some(InputFormat::Eml),
    };
    let (_, stats) = decode_bytes("fuzz", data, options);
    assert!(stats.all_records_accounted());
});
