//! The Purview (Microsoft 365 compliance portal) audit search CSV export: one row per record,
//! the Management API record as JSON in the `AuditData` column (quotes doubled), dates in US
//! format. Columns are found by name in the header row, so old (`CreationDate,UserIds,
//! Operations,AuditData`) and new (`RecordId,CreationDate,RecordType,Operation,UserId,AuditData,…`)
//! layouts both work.

use crate::decoder::{Decoder, InputFormat, RawRecord, RecordError, RecordOutcome, RejectClass};
use crate::exchange_onprem::split_csv;
use crate::json_decoder::classify_json_error;
use crate::json_record::JsonRecord;
use crate::loose_json::Loose;
use crate::management_api::{decode_ual_record, OuterRow};
use mailsentry_events::{Event, SourceFormat};
use std::borrow::Cow;

/// Decodes Purview CSV rows.
#[derive(Debug, Default)]
pub struct PurviewCsvDecoder {
    audit_data: Option<usize>,
    creation_date: Option<usize>,
    record_id: Option<usize>,
    columns: usize,
    row: Vec<String>,
}

impl Decoder for PurviewCsvDecoder {
    fn format(&self) -> InputFormat {
        InputFormat::PurviewCsv
    }

    fn decode(
        &mut self,
        raw: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError> {
        if raw.bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(RecordOutcome::Meta);
        }
        split_csv(raw.bytes, b',', &mut self.row)?;
        let position = |row: &[String], name: &str| {
            row.iter().position(|c| {
                c.trim()
                    .trim_start_matches('\u{feff}')
                    .eq_ignore_ascii_case(name)
            })
        };
        if let Some(audit) = position(&self.row, "AuditData") {
            self.audit_data = Some(audit);
            self.creation_date = position(&self.row, "CreationDate");
            self.record_id = position(&self.row, "RecordId");
            self.columns = self.row.len();
            return Ok(RecordOutcome::Meta);
        }
        let Some(audit) = self.audit_data else {
            return Err(RecordError::new(
                RejectClass::NoHeader,
                "row before the header row naming AuditData",
            ));
        };
        if self.row.len() != self.columns {
            return Err(RecordError::new(
                RejectClass::BadRow,
                format!(
                    "{} columns where the header has {}",
                    self.row.len(),
                    self.columns
                ),
            ));
        }
        let json = self.row[audit].as_str();
        let rec: JsonRecord = serde_json::from_str(json).map_err(|e| {
            let mut err = classify_json_error(json.as_bytes(), &e);
            err.detail = format!("AuditData column: {}", err.detail);
            err
        })?;
        let mut outer = JsonRecord::default();
        if let Some(i) = self.creation_date {
            outer.timestamp = Some(Loose::Str(Cow::Borrowed(self.row[i].as_str())));
        }
        if let Some(i) = self.record_id {
            outer.report_id = Some(Loose::Str(Cow::Borrowed(self.row[i].as_str())));
        }
        decode_ual_record(
            &rec,
            SourceFormat::PurviewCsv,
            OuterRow { row: Some(&outer) },
            &raw,
            out,
        )
    }
}
