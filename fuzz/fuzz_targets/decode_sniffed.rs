#![no_main]
//! Fuzzes format sniffing plus whichever decoder it picks (including gzip).

use libfuzzer_sys::fuzz_target;
use mailsentry_ingest::{decode_bytes, DecodeOptions};

fuzz_target!(|data: &[u8]| {
    let (_, stats) = decode_bytes("fuzz", data, DecodeOptions::default());
    assert!(stats.all_records_accounted());
});
