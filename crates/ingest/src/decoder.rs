//! The decoder contract: one small type per format behind [`Decoder`], rejects with a class and
//! a location, and the counters that account for every record.

use mailsentry_events::{Event, Origin, SourceFormat};
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// The file-level formats `--format` names. JSON shapes are told apart per record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputFormat {
    /// Any JSON: Management API NDJSON or content blobs, Sentinel / Defender rows, Entra
    /// diagnostic exports (`{"records":[...]}` or one per line), Graph activity, Panther copies.
    Json,
    /// Purview audit search CSV export.
    PurviewCsv,
    /// IIS W3C extended log (on-prem Exchange client access).
    IisW3c,
    /// Exchange EWS protocol log (CSV with `#Fields`).
    EwsLog,
    /// One RFC 5322 message (`.eml`, a Maildir file).
    Eml,
    /// An mbox file of messages.
    Mbox,
}

impl InputFormat {
    /// All formats, in `--format` order.
    pub const ALL: [InputFormat; 6] = [
        InputFormat::Json,
        InputFormat::PurviewCsv,
        InputFormat::IisW3c,
        InputFormat::EwsLog,
        InputFormat::Eml,
        InputFormat::Mbox,
    ];

    /// The `--format` spelling.
    pub fn name(self) -> &'static str {
        match self {
            InputFormat::Json => "json",
            InputFormat::PurviewCsv => "purview-csv",
            InputFormat::IisW3c => "iis-w3c",
            InputFormat::EwsLog => "ews-log",
            InputFormat::Eml => "eml",
            InputFormat::Mbox => "mbox",
        }
    }

    /// Parses a `--format` spelling.
    pub fn from_name(name: &str) -> Option<InputFormat> {
        InputFormat::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }
}

impl fmt::Display for InputFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record was rejected. Each class is counted separately.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum RejectClass {
    /// Not valid JSON (syntax error).
    InvalidJson,
    /// Bytes that are not UTF-8 where text was required.
    InvalidUtf8,
    /// Larger than the configured maximum record size.
    Oversize,
    /// Nested deeper than the decoder allows.
    TooDeep,
    /// The input ended in the middle of a record.
    Truncated,
    /// No usable event time.
    MissingTime,
    /// An event time that could not be parsed.
    BadTime,
    /// A field every event of its kind needs is missing.
    MissingField,
    /// A CSV / W3C row that does not fit its header.
    BadRow,
    /// A data line before any `#Fields:` header.
    NoHeader,
    /// A message whose headers could not be parsed.
    BadMessage,
    /// A JSON record of a shape mailsentry does not know.
    UnrecognizedRecord,
    /// A file whose format could not be recognised.
    UnknownFormat,
    /// The file could not be read.
    Io,
}

impl RejectClass {
    /// The snake_case name used in messages and metrics.
    pub fn name(self) -> &'static str {
        match self {
            RejectClass::InvalidJson => "invalid_json",
            RejectClass::InvalidUtf8 => "invalid_utf8",
            RejectClass::Oversize => "oversize",
            RejectClass::TooDeep => "too_deep",
            RejectClass::Truncated => "truncated",
            RejectClass::MissingTime => "missing_time",
            RejectClass::BadTime => "bad_time",
            RejectClass::MissingField => "missing_field",
            RejectClass::BadRow => "bad_row",
            RejectClass::NoHeader => "no_header",
            RejectClass::BadMessage => "bad_message",
            RejectClass::UnrecognizedRecord => "unrecognized_record",
            RejectClass::UnknownFormat => "unknown_format",
            RejectClass::Io => "io_error",
        }
    }
}

impl fmt::Display for RejectClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A record that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{class}: {detail}")]
pub struct RecordError {
    /// Class.
    pub class: RejectClass,
    /// What exactly was wrong (never the record's content beyond a short excerpt).
    pub detail: String,
}

impl RecordError {
    /// Builds an error.
    pub fn new(class: RejectClass, detail: impl Into<String>) -> RecordError {
        RecordError {
            class,
            detail: detail.into(),
        }
    }
}

/// A rejected record with its location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    /// File.
    pub file: Arc<str>,
    /// 1-based line where the record starts (0 when unknown).
    pub line: u64,
    /// Byte offset of the record's start.
    pub offset: u64,
    /// Why.
    pub error: RecordError,
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.line > 0 {
            write!(f, "{}:{}: {}", self.file, self.line, self.error)
        } else {
            write!(f, "{}:@{}: {}", self.file, self.offset, self.error)
        }
    }
}

/// What decoding one record produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordOutcome {
    /// Events were appended (possibly several).
    Decoded,
    /// A header or comment line that configures the decoder (`#Fields:`).
    Meta,
    /// A well-formed record of no interest.
    Skipped(&'static str),
}

/// One framed record handed to a decoder.
#[derive(Debug, Clone, Copy)]
pub struct RawRecord<'r> {
    /// The record's bytes (for messages: the header block).
    pub bytes: &'r [u8],
    /// The file it came from.
    pub file: &'r Arc<str>,
    /// 1-based line of its start.
    pub line: u64,
    /// Byte offset of its start.
    pub offset: u64,
    /// Full length of the record when `bytes` holds only part of it (a message's headers).
    pub total_len: u64,
}

impl RawRecord<'_> {
    /// The origin of an event decoded from this record.
    pub fn origin(&self, format: SourceFormat, record_id: Option<String>) -> Origin {
        Origin {
            format,
            file: Arc::clone(self.file),
            line: self.line,
            offset: self.offset,
            record_id,
        }
    }

    /// An id for a record that has none of its own: a hash of its bytes seeded with its offset,
    /// so two identical lines (an IIS log repeats them) still get different ids.
    pub fn positional_id(&self) -> String {
        format!(
            "h{:016x}",
            xxhash_rust::xxh3::xxh3_64_with_seed(self.bytes, self.offset)
        )
    }

    /// An event id: the record id when there is one, else a hash of the record's bytes.
    pub fn event_id(&self, record_id: Option<&str>) -> String {
        match record_id {
            Some(id) => id.to_owned(),
            None => format!("h{:016x}", xxhash_rust::xxh3::xxh3_64(self.bytes)),
        }
    }
}

/// A decoder of one format: turns framed records into events.
pub trait Decoder {
    /// The format it reads.
    fn format(&self) -> InputFormat;

    /// Decodes one record, appending its events to `out`. A decoder may keep state between
    /// records of one stream (the current `#Fields:` header).
    fn decode(
        &mut self,
        record: RawRecord<'_>,
        out: &mut Vec<Event>,
    ) -> Result<RecordOutcome, RecordError>;
}

/// Decodes one in-memory record with `decoder` (file `memory`, line 1): what it returned and
/// the events it produced. For tests and fuzz targets that drive a decoder directly.
pub fn decode_record(
    decoder: &mut dyn Decoder,
    bytes: &[u8],
) -> (Result<RecordOutcome, RecordError>, Vec<Event>) {
    let file: Arc<str> = Arc::from("memory");
    let raw = RawRecord {
        bytes,
        file: &file,
        line: 1,
        offset: 0,
        total_len: bytes.len() as u64,
    };
    let mut out = Vec::new();
    let result = decoder.decode(raw, &mut out);
    (result, out)
}

/// Counters for everything read: every record ends up in exactly one of events-producing,
/// meta, skipped or rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeStats {
    /// Files opened.
    pub files: u64,
    /// Records framed (including rejected and skipped ones, excluding meta lines).
    pub records: u64,
    /// Records that produced events.
    pub records_decoded: u64,
    /// Events produced.
    pub events: u64,
    /// Events by kind.
    pub events_by_kind: BTreeMap<&'static str, u64>,
    /// Rejected records by class.
    pub rejected: BTreeMap<RejectClass, u64>,
    /// Skipped records by reason.
    pub skipped: BTreeMap<&'static str, u64>,
    /// Files by detected format.
    pub files_by_format: BTreeMap<&'static str, u64>,
}

impl DecodeStats {
    /// Total rejects.
    pub fn rejected_total(&self) -> u64 {
        self.rejected.values().sum()
    }

    /// Total skips.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }

    /// The accounting invariant: every record read is decoded, skipped or rejected, exactly once.
    pub fn all_records_accounted(&self) -> bool {
        self.records == self.records_decoded + self.skipped_total() + self.rejected_total()
    }

    /// Adds another set of counters into this one.
    pub fn merge(&mut self, other: &DecodeStats) {
        self.files += other.files;
        self.records += other.records;
        self.records_decoded += other.records_decoded;
        self.events += other.events;
        for (k, v) in &other.events_by_kind {
            *self.events_by_kind.entry(k).or_default() += v;
        }
        for (k, v) in &other.rejected {
            *self.rejected.entry(*k).or_default() += v;
        }
        for (k, v) in &other.skipped {
            *self.skipped.entry(k).or_default() += v;
        }
        for (k, v) in &other.files_by_format {
            *self.files_by_format.entry(k).or_default() += v;
        }
    }
}

impl fmt::Display for DecodeStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "files {}, records {}, events {}, rejected {}, skipped {}",
            self.files,
            self.records,
            self.events,
            self.rejected_total(),
            self.skipped_total()
        )?;
        if !self.events_by_kind.is_empty() {
            let kinds: Vec<String> = self
                .events_by_kind
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "\n  events by kind: {}", kinds.join(" "))?;
        }
        if !self.rejected.is_empty() {
            let classes: Vec<String> = self
                .rejected
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "\n  rejected by class: {}", classes.join(" "))?;
        }
        if !self.skipped.is_empty() {
            let reasons: Vec<String> = self
                .skipped
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "\n  skipped by reason: {}", reasons.join(" "))?;
        }
        if !self.files_by_format.is_empty() {
            let formats: Vec<String> = self
                .files_by_format
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            write!(f, "\n  files by format: {}", formats.join(" "))?;
        }
        Ok(())
    }
}
