#![no_main]
//! Differential fuzzing of the JSON decoder's strict fast path: for any record, the decoder
//! with the fast path and the general parsers alone must produce the same events or the same
//! reject.

use libfuzzer_sys::fuzz_target;
use mailsentry_ingest::{decode_record, JsonDecoder};

fuzz_target!(|data: &[u8]| {
    let fast = decode_record(&mut JsonDecoder::default(), data);
    let general = decode_record(&mut JsonDecoder::general_parsers_only(), data);
    assert_eq!(fast, general);
});
