//! The JSON decoder: parses a framed record once into [`JsonRecord`] and tells the shapes apart
//! per record, so one file (or one HTTP batch) may mix them.

use crate::decoder::{Decoder, InputFormat, RawRecord, RecordError, RecordOutcome, RejectClass};
use crate::entra_logs::{classify, decode_entra_record};
use crate::json_framing::{nests_deeper_than, MAX_DEPTH};
use crate::json_record::{sub, text, JsonRecord};
use crate::loose_json::KeyOrder;
use crate::management_api::{decode_ual_record, OuterRow};
use crate::strict_json::{read_strict, StrictBuffers};
use mailsentry_events::{Event, SourceFormat};

/// Decodes every JSON record shape.
///
/// Records are read in place by the strict single-pass reader ([`crate::strict_json`]), which
/// takes the common case fast and refuses anything unusual (floats, odd escapes, any error).
/// A refused record is parsed with simd-json into a copy of the record (simd-json unescapes in
/// place); when simd-json refuses it too, serde_json parses the original, so serde_json decides
/// what is accepted and its error names the reject class. All three fill the same tolerant
/// record types (the strict reader field by field, the others through serde), and
/// `crates/ingest/tests/strict_reader.rs` holds their results equal. The decoder keeps the key
/// order of the records before ([`KeyOrder`]), so a key is usually recognised by one comparison.
#[derive(Default)]
pub struct JsonDecoder {
    scratch: Vec<u8>,
    strict: StrictBuffers,
    buffers: simd_json::Buffers,
    key_order: KeyOrder,
    general_only: bool,
    refused: u64,
}

impl JsonDecoder {
    /// A decoder without the strict fast path: every record goes to the general parsers. For
    /// differential tests (both must decode alike) and benchmarks.
    pub fn general_parsers_only() -> Self {
        JsonDecoder {
            general_only: true,
            ..JsonDecoder::default()
        }
    }

    /// Records the strict reader handed to the general parsers so far.
    pub fn strict_refusals(&self) -> u64 {
        self.refused
    }
}

impl std::fmt::Debug for JsonDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JsonDecoder")
    }
}

/// Turns a serde_json error into a reject class with a located, content-free message.
pub fn classify_json_error(bytes: &[u8], e: &serde_json::Error) -> RecordError {
    if let Err(utf8) = std::str::from_utf8(bytes) {
        let valid = utf8.valid_up_to();
        return RecordError::new(
            RejectClass::InvalidUtf8,
            format!("invalid UTF-8 at byte {valid} of the record"),
        );
    }
    let message = e.to_string();
    if message.contains("recursion limit") {
        return RecordError::new(RejectClass::TooDeep, "nested too deeply");
    }
    let class = match e.classify() {
        serde_json::error::Category::Eof => RejectClass::Truncated,
        serde_json::error::Category::Data => RejectClass::UnrecognizedRecord,
        _ => RejectClass::InvalidJson,
    };
    RecordError::new(class, message)
}

impl Decoder for JsonDecoder {
    fn format(&self) -> InputFormat {
        InputFormat::Json
    }

    fn decode(
        &mut self,
        raw: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError> {
        if !self.general_only {
            if let Ok(text) = std::str::from_utf8(raw.bytes) {
                let key_order = &mut self.key_order;
                let mut rec = JsonRecord::default();
                if read_strict(text, &mut self.strict, |de| {
                    JsonRecord::fill_strict(de, &mut rec, Some(key_order))
                })
                .is_some()
                {
                    return decode_json_value(&rec, &raw, out, 0);
                }
            }
            self.refused += 1;
        }
        // The strict reader bounds nesting itself; the general parsers recurse, so a record
        // the NDJSON fast path framed without scanning is checked first, as the scanner would.
        if nests_deeper_than(raw.bytes, MAX_DEPTH) {
            return Err(RecordError::new(
                RejectClass::TooDeep,
                format!("nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        self.scratch.clear();
        self.scratch.extend_from_slice(raw.bytes);
        let parsed =
            simd_json::Deserializer::from_slice_with_buffers(&mut self.scratch, &mut self.buffers)
                .and_then(|mut de| JsonRecord::deserialize_in_order(&mut de, &mut self.key_order));
        if let Ok(rec) = parsed {
            return decode_json_value(&rec, &raw, out, 0);
        }
        let rec: JsonRecord =
            serde_json::from_slice(raw.bytes).map_err(|e| classify_json_error(raw.bytes, &e))?;
        decode_json_value(&rec, &raw, out, 0)
    }
}

/// Dispatches one parsed record to the mapper for its shape. `depth` guards wrapper recursion
/// (Panther `log` inside Panther `log` ...).
pub fn decode_json_value(
    rec: &JsonRecord<'_>,
    raw: &RawRecord<'_>,
    out: &mut Vec<Event>,
    depth: u8,
) -> Result<RecordOutcome, RecordError> {
    if depth > 4 {
        return Err(RecordError::new(
            RejectClass::TooDeep,
            "wrappers nested more than 4 deep",
        ));
    }
    // Panther test / data-lake wrapper: the record is in `log`.
    if let Some(inner) = sub(&rec.log) {
        if rec.creation_time.is_none() && rec.category.is_none() {
            return decode_json_value(inner, raw, out, depth + 1);
        }
    }
    // Defender CloudAppEvents: the Management API record is in `RawEventData`.
    if let Some(inner) = sub(&rec.raw_event_data) {
        return decode_ual_record(
            inner,
            SourceFormat::DefenderCloudAppEvents,
            OuterRow { row: Some(rec) },
            raw,
            out,
        );
    }
    // A JSON copy of a Purview row.
    if let Some(inner) = sub(&rec.audit_data) {
        return decode_ual_record(
            inner,
            SourceFormat::PurviewCsv,
            OuterRow::default(),
            raw,
            out,
        );
    }
    if let Some(log) = classify(rec) {
        return decode_entra_record(rec, log, raw, out);
    }
    let is_defender_row = rec.action_type.is_some() && rec.report_id.is_some()
        || rec.timestamp.is_some() && rec.action_type.is_some();
    if is_defender_row && rec.operation.is_none() {
        // Defender rows of other tables (DeviceEvents, IdentityDirectoryEvents) and CloudAppEvents
        // rows without the raw record: nothing that says which mailbox was read by which app.
        return Ok(RecordOutcome::Skipped("defender_row_without_raw_record"));
    }
    let table = text(&rec.record_table);
    if table.as_deref() == Some("OfficeActivity")
        || rec.workload.is_some() && rec.time_generated.is_some() && rec.creation_time.is_none()
    {
        return decode_ual_record(
            rec,
            SourceFormat::SentinelOfficeActivity,
            OuterRow::default(),
            raw,
            out,
        );
    }
    if rec.operation.is_some() && (rec.creation_time.is_some() || rec.record_type.is_some()) {
        return decode_ual_record(
            rec,
            SourceFormat::ManagementApi,
            OuterRow::default(),
            raw,
            out,
        );
    }
    Err(RecordError::new(
        RejectClass::UnrecognizedRecord,
        "JSON object is none of: Management API record, Sentinel/Defender row, Entra log record",
    ))
}
