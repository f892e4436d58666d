//! Decoders for every log format mailsentry reads.
//!
//! Contract:
//! - [`StreamDecoder`] turns a file, standard input or an HTTP body into [`Decoded`] items —
//!   events and located rejects — holding at most one record in memory whatever the input size.
//! - The format is sniffed per file ([`sniff_format`]); JSON shapes are told apart per record, so
//!   one file may mix Management API records, Sentinel and Defender rows and Entra logs.
//! - Every record ends in exactly one bucket of [`DecodeStats`]: decoded (events), skipped
//!   (well-formed but of no use, by reason) or rejected (by [`RejectClass`], with `file:line`).
//!   One broken record never stops the records around it, and nothing panics on any input.
//! - Records over [`DecodeOptions::max_record_size`] (default 1 MiB) are rejected without being
//!   buffered past the limit; nesting is bounded.
//!
//! Each format is a small type behind [`Decoder`]: [`JsonDecoder`], [`PurviewCsvDecoder`],
//! [`IisW3cDecoder`], [`EwsLogDecoder`], [`MimeDecoder`].

pub mod decode_ahead;
pub mod decoder;
pub mod entra_logs;
pub mod event_merge;
pub mod exchange_onprem;
pub mod field_values;
pub mod json_decoder;
pub mod json_framing;
pub mod json_record;
pub mod line_framing;
pub mod loose_json;
pub mod management_api;
pub mod mime_transport;
pub mod purview_csv;
mod record_helpers;
pub mod stream_decoder;
pub mod strict_json;

pub use decode_ahead::{DecodeAhead, DECODE_AHEAD_BATCH, DECODE_AHEAD_DEPTH};
pub use decoder::{
    decode_record, DecodeStats, Decoder, InputFormat, RawRecord, RecordError, RecordOutcome,
    Reject, RejectClass,
};
pub use event_merge::MergedEvents;
pub use exchange_onprem::{EwsLogDecoder, IisW3cDecoder};
pub use json_decoder::JsonDecoder;
pub use mime_transport::MimeDecoder;
pub use purview_csv::PurviewCsvDecoder;
pub use stream_decoder::{
    collect_input_files, sniff_format, DecodeOptions, Decoded, StreamDecoder,
    DEFAULT_MAX_RECORD_SIZE,
};

/// Decodes an in-memory input (an HTTP body, a fuzz case) completely.
pub fn decode_bytes(
    name: &str,
    bytes: &[u8],
    options: DecodeOptions,
) -> (Vec<Decoded>, DecodeStats) {
    let mut stream = StreamDecoder::from_reader(
        std::sync::Arc::from(name),
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        options,
        None,
    );
    let items: Vec<Decoded> = stream.by_ref().collect();
    (items, stream.stats().clone())
}
