//! Reading whole inputs: format sniffing per file, transparent gzip, framing, decoding, and the
//! counters. [`StreamDecoder`] is an iterator of events and rejects that holds at most one record
//! (plus its events) in memory, whatever the size of the input.

use crate::decoder::{
    DecodeStats, Decoder, InputFormat, RawRecord, RecordError, RecordOutcome, Reject, RejectClass,
};
use crate::exchange_onprem::{EwsLogDecoder, IisW3cDecoder};
use crate::json_decoder::JsonDecoder;
use crate::json_framing::{Framed, JsonFramer};
use crate::line_framing::LineFramer;
use crate::mime_transport::MimeDecoder;
use crate::purview_csv::PurviewCsvDecoder;
use mailsentry_events::Event;
use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Default maximum record size: 1 MiB (the Event Hubs message limit).
pub const DEFAULT_MAX_RECORD_SIZE: usize = 1 << 20;

/// How to decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Records (lines, JSON values, message header blocks) larger than this are rejected.
    pub max_record_size: usize,
    /// Force a format instead of sniffing each file.
    pub format: Option<InputFormat>,
}

impl Default for DecodeOptions {
    fn default() -> Self {
        DecodeOptions {
            max_record_size: DEFAULT_MAX_RECORD_SIZE,
            format: None,
        }
    }
}

/// One item of a decoded stream.
// Events are the common item: boxing them would cost an allocation per event to shrink the rare
// reject.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// An event.
    Event(Event),
    /// A rejected record (or a file that could not be read).
    Reject(Reject),
}

/// Why a file's format was not recognised, or the sniffed format.
pub fn sniff_format(prefix: &[u8], path: Option<&Path>) -> Result<InputFormat, String> {
    let p = prefix
        .strip_prefix(&[0xEF, 0xBB, 0xBF][..])
        .unwrap_or(prefix);
    let first_non_ws = p.iter().position(|c| !c.is_ascii_whitespace());
    let Some(start) = first_non_ws else {
        return Err("empty input".into());
    };
    let body = &p[start..];
    if body[0] == b'{' || body[0] == b'[' {
        return Ok(InputFormat::Json);
    }
    if body.starts_with(b"From ") {
        return Ok(InputFormat::Mbox);
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(16 * 1024)]);
    let mut lines = text.lines();
    let first = lines.next().unwrap_or("");
    if first.contains("AuditData") && first.contains(',') {
        return Ok(InputFormat::PurviewCsv);
    }
    if first.starts_with("DateTime,") && first.contains("SoapAction") {
        return Ok(InputFormat::EwsLog);
    }
    if text.contains("#Log-type: EWS Logs") {
        return Ok(InputFormat::EwsLog);
    }
    if let Some(log_type) = text.lines().find_map(|l| l.strip_prefix("#Log-type:")) {
        return Err(format!(
            "Exchange log type {:?} carries no mailbox access (mailsentry reads EWS logs and IIS logs)",
            log_type.trim()
        ));
    }
    if text.contains("#Software: Microsoft Internet Information Services")
        || text
            .lines()
            .any(|l| l.starts_with("#Fields:") && l.contains("cs-uri-stem"))
    {
        return Ok(InputFormat::IisW3c);
    }
    // Bare W3C lines (no directives): `2015-06-08 04:19:25 …` after any comments.
    let first_data = text
        .lines()
        .find(|l| !l.starts_with('#') && !l.trim().is_empty());
    if let Some(line) = first_data {
        let b = line.as_bytes();
        let looks_w3c = b.len() > 20
            && b[4] == b'-'
            && b[7] == b'-'
            && b[10] == b' '
            && b[13] == b':'
            && line.contains(" /");
        if looks_w3c {
            return Ok(InputFormat::IisW3c);
        }
    }
    if looks_like_rfc5322(first) {
        return Ok(InputFormat::Eml);
    }
    if path
        .and_then(|p| p.extension())
        .is_some_and(|e| e.eq_ignore_ascii_case("eml"))
    {
        return Ok(InputFormat::Eml);
    }
    Err(format!(
        "unrecognised format (starts with {:?})",
        crate::record_helpers::excerpt(first, 40)
    ))
}

fn looks_like_rfc5322(line: &str) -> bool {
    match line.split_once(':') {
        Some((name, _)) => {
            !name.is_empty()
                && name.len() < 80
                && name.bytes().all(|c| c.is_ascii_graphic() && c != b':')
        }
        None => false,
    }
}

enum Framing {
    Json(JsonFramer<Box<dyn BufRead + Send>>),
    Lines(LineFramer<Box<dyn BufRead + Send>>),
    Eml(Option<Box<dyn BufRead + Send>>),
    Mbox(MboxFramer),
    Done,
}

/// How much of a stream format sniffing looks at.
const SNIFF_LEN: u64 = 16 * 1024;

/// Reads up to [`SNIFF_LEN`] bytes (fewer only at the end of the stream) and gives them back
/// with a reader that yields them again followed by the rest.
fn read_head(reader: Box<dyn Read + Send>) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = Vec::new();
    let mut limited = reader.take(SNIFF_LEN);
    limited.read_to_end(&mut head)?;
    let rest = limited.into_inner();
    let again = io::Cursor::new(head.clone());
    Ok((head, Box::new(again.chain(rest))))
}

/// Decodes one input stream (a file, standard input, an HTTP body).
pub struct StreamDecoder {
    framing: Framing,
    options: DecodeOptions,
    out: Output,
}

/// The decoding side of a [`StreamDecoder`], apart from the framing that feeds it, so a record
/// is decoded where the framer holds it (in the read buffer, not copied out).
struct Output {
    file: Arc<str>,
    decoder: Box<dyn Decoder + Send>,
    /// Rejects not yet handed out.
    pending: VecDeque<Decoded>,
    /// The events of the last record, last first (handed out with `pop`, no copy through a
    /// queue). A record yields events or a reject, never both, so one of the two is empty.
    events: Vec<Event>,
    stats: DecodeStats,
}

impl StreamDecoder {
    /// Opens a file (gzip is detected and decompressed) and sniffs its format unless forced.
    /// A file that cannot be opened is an `Err`; a file whose format is not recognised yields
    /// one `unknown_format` reject.
    pub fn open(path: &Path, options: DecodeOptions) -> io::Result<StreamDecoder> {
        let file = File::open(path)?;
        Ok(StreamDecoder::from_reader(
            Arc::from(path.to_string_lossy().as_ref()),
            Box::new(file),
            options,
            Some(path),
        ))
    }

    /// Decodes any reader; `name` is what rejects and origins call it.
    pub fn from_reader(
        name: Arc<str>,
        reader: Box<dyn Read + Send>,
        options: DecodeOptions,
        path: Option<&Path>,
    ) -> StreamDecoder {
        let mut stats = DecodeStats {
            files: 1,
            ..Default::default()
        };
        let mut pending = VecDeque::new();
        let mut framing = Framing::Done;
        let mut decoder: Box<dyn Decoder + Send> = Box::<JsonDecoder>::default();
        let reject = |error: RecordError| {
            Decoded::Reject(Reject {
                file: Arc::clone(&name),
                line: 0,
                offset: 0,
                error,
            })
        };
        // The format is sniffed from the first few KiB however the reader delivers them (a
        // pipe or an HTTP body may hand out a few bytes per read).
        let opened = read_head(reader).and_then(|(head, reader)| {
            if head.starts_with(&[0x1f, 0x8b]) {
                read_head(Box::new(flate2::read::MultiGzDecoder::new(reader)))
            } else {
                Ok((head, reader))
            }
        });
        match opened {
            Err(e) => pending.push_back(reject(RecordError::new(RejectClass::Io, e.to_string()))),
            Ok((head, reader)) => {
                let buffered: Box<dyn BufRead + Send> =
                    Box::new(BufReader::with_capacity(1 << 16, reader));
                let sniffed = match options.format {
                    Some(f) => Ok(f),
                    None => sniff_format(&head, path),
                };
                match sniffed {
                    Ok(format) => {
                        *stats.files_by_format.entry(format.name()).or_default() += 1;
                        let max = options.max_record_size;
                        let chosen: (Framing, Box<dyn Decoder + Send>) = match format {
                            InputFormat::Json => (
                                Framing::Json(JsonFramer::new(buffered, max)),
                                Box::<JsonDecoder>::default(),
                            ),
                            InputFormat::PurviewCsv => (
                                Framing::Lines(LineFramer::new(buffered, max, true)),
                                Box::new(PurviewCsvDecoder::default()),
                            ),
                            InputFormat::IisW3c => (
                                Framing::Lines(LineFramer::new(buffered, max, false)),
                                Box::new(IisW3cDecoder::default()),
                            ),
                            InputFormat::EwsLog => (
                                Framing::Lines(LineFramer::new(buffered, max, true)),
                                Box::new(EwsLogDecoder::default()),
                            ),
                            InputFormat::Eml => (
                                Framing::Eml(Some(buffered)),
                                Box::new(MimeDecoder::default()),
                            ),
                            InputFormat::Mbox => (
                                Framing::Mbox(MboxFramer::new(buffered, max)),
                                Box::new(MimeDecoder::for_mbox()),
                            ),
                        };
                        (framing, decoder) = chosen;
                    }
                    Err(why) => {
                        let class = if why == "empty input" {
                            None
                        } else {
                            Some(RejectClass::UnknownFormat)
                        };
                        if let Some(class) = class {
                            pending.push_back(reject(RecordError::new(class, why)));
                        }
                    }
                }
            }
        }
        for item in &pending {
            if let Decoded::Reject(r) = item {
                *stats.rejected.entry(r.error.class).or_default() += 1;
                stats.records += 1;
            }
        }
        StreamDecoder {
            framing,
            options,
            out: Output {
                file: name,
                decoder,
                pending,
                events: Vec::new(),
                stats,
            },
        }
    }

    /// Counters so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &DecodeStats {
        &self.out.stats
    }

    fn io_failure(&mut self, e: io::Error, offset: u64) {
        let class =
            if e.kind() == io::ErrorKind::InvalidData || e.kind() == io::ErrorKind::UnexpectedEof {
                RejectClass::Truncated
            } else {
                RejectClass::Io
            };
        self.out.reject(
            0,
            offset,
            RecordError::new(class, format!("reading stopped: {e}")),
        );
        self.framing = Framing::Done;
    }

    /// Frames and decodes until something is pending or the input is exhausted.
    fn fill(&mut self) {
        while self.out.pending.is_empty() && self.out.events.is_empty() {
            match &mut self.framing {
                Framing::Done => return,
                Framing::Json(framer) => match framer.next_item() {
                    Ok(None) => self.framing = Framing::Done,
                    Ok(Some(Framed::Record { line, offset })) => match framer.record() {
                        Ok(bytes) => {
                            let len = bytes.len() as u64;
                            self.out.run_decoder(bytes, line, offset, len);
                        }
                        Err(e) => {
                            let at = framer.position();
                            self.io_failure(e, at);
                        }
                    },
                    Ok(Some(Framed::Reject {
                        line,
                        offset,
                        error,
                    })) => self.out.reject(line, offset, error),
                    Err(e) => {
                        let at = framer.position();
                        self.io_failure(e, at);
                    }
                },
                Framing::Lines(framer) => match framer.next_line() {
                    Ok(None) => self.framing = Framing::Done,
                    Ok(Some(l)) => {
                        if l.oversize {
                            let max = self.options.max_record_size;
                            self.out.reject(
                                l.line,
                                l.offset,
                                RecordError::new(
                                    RejectClass::Oversize,
                                    format!("line of {} bytes exceeds the maximum record size of {max} bytes", l.len),
                                ),
                            );
                            continue;
                        }
                        if l.unterminated_quote {
                            self.out.reject(
                                l.line,
                                l.offset,
                                RecordError::new(
                                    RejectClass::Truncated,
                                    "input ends inside a quoted CSV field",
                                ),
                            );
                            continue;
                        }
                        self.out
                            .run_decoder(framer.bytes(), l.line, l.offset, l.len);
                    }
                    Err(e) => self.io_failure(e, 0),
                },
                Framing::Eml(reader) => {
                    let Some(reader) = reader.take() else {
                        self.framing = Framing::Done;
                        continue;
                    };
                    match read_message_headers(reader, self.options.max_record_size) {
                        Ok((headers, total)) => self.out.run_decoder(&headers, 1, 0, total),
                        Err(e) => self.io_failure(e, 0),
                    }
                    self.framing = Framing::Done;
                }
                Framing::Mbox(framer) => match framer.next_message() {
                    Ok(None) => self.framing = Framing::Done,
                    Ok(Some(m)) => {
                        if m.oversize_headers {
                            let max = self.options.max_record_size;
                            self.out.reject(
                                m.line,
                                m.offset,
                                RecordError::new(
                                    RejectClass::Oversize,
                                    format!("message header block exceeds the maximum record size of {max} bytes"),
                                ),
                            );
                            continue;
                        }
                        self.out
                            .run_decoder(framer.headers(), m.line, m.offset, m.total_len);
                    }
                    Err(e) => self.io_failure(e, 0),
                },
            }
        }
    }
}

impl Output {
    fn reject(&mut self, line: u64, offset: u64, error: RecordError) {
        *self.stats.rejected.entry(error.class).or_default() += 1;
        self.stats.records += 1;
        self.pending.push_back(Decoded::Reject(Reject {
            file: Arc::clone(&self.file),
            line,
            offset,
            error,
        }));
    }

    fn run_decoder(&mut self, bytes: &[u8], line: u64, offset: u64, total_len: u64) {
        let raw = RawRecord {
            bytes,
            file: &self.file,
            line,
            offset,
            total_len,
        };
        self.events.clear();
        match self.decoder.decode(raw, &mut self.events) {
            Ok(RecordOutcome::Decoded) => {
                self.stats.records += 1;
                self.stats.records_decoded += 1;
                for event in &self.events {
                    self.stats.events += 1;
                    *self
                        .stats
                        .events_by_kind
                        .entry(event.kind.name())
                        .or_default() += 1;
                }
                self.events.reverse();
                return;
            }
            Ok(RecordOutcome::Meta) => {}
            Ok(RecordOutcome::Skipped(reason)) => {
                self.stats.records += 1;
                *self.stats.skipped.entry(reason).or_default() += 1;
            }
            Err(error) => {
                self.reject(line, offset, error);
            }
        }
        // Only a decoded record hands out what its decoder produced.
        self.events.clear();
    }
}

impl Iterator for StreamDecoder {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        self.fill();
        match self.out.events.pop() {
            Some(event) => Some(Decoded::Event(event)),
            None => self.out.pending.pop_front(),
        }
    }
}

/// Reads a message's header block (up to the first empty line, at most `max` bytes kept) and
/// counts the whole message.
fn read_message_headers(
    mut reader: Box<dyn BufRead + Send>,
    max: usize,
) -> io::Result<(Vec<u8>, u64)> {
    let mut headers = Vec::new();
    let mut total: u64 = 0;
    let mut line = Vec::new();
    loop {
        line.clear();
        let n = (&mut reader)
            .take(max as u64 + 2)
            .read_until(b'\n', &mut line)?;
        if n == 0 {
            return Ok((headers, total));
        }
        total += n as u64;
        if headers.len() + line.len() <= max {
            headers.extend_from_slice(&line);
        }
        if line == b"\n" || line == b"\r\n" {
            break;
        }
    }
    total += io::copy(&mut reader, &mut io::sink())?;
    Ok((headers, total))
}

/// One message of an mbox.
#[derive(Debug, Clone, Copy)]
pub struct MboxMessage {
    /// Line of its `From ` separator.
    pub line: u64,
    /// Offset of its `From ` separator.
    pub offset: u64,
    /// Message size, separator excluded.
    pub total_len: u64,
    /// The header block was larger than the maximum and was cut.
    pub oversize_headers: bool,
}

/// Splits an mbox (mboxo/mboxrd) into messages at `From ` lines, keeping headers only.
pub struct MboxFramer {
    lines: LineFramer<Box<dyn BufRead + Send>>,
    headers: Vec<u8>,
    max: usize,
    lookahead: Option<crate::line_framing::FramedLine>,
    started: bool,
}

impl MboxFramer {
    fn new(reader: Box<dyn BufRead + Send>, max: usize) -> MboxFramer {
        MboxFramer {
            lines: LineFramer::new(reader, max, false),
            headers: Vec::new(),
            max,
            lookahead: None,
            started: false,
        }
    }

    /// Header bytes of the message last returned.
    pub fn headers(&self) -> &[u8] {
        &self.headers
    }

    fn next_message(&mut self) -> io::Result<Option<MboxMessage>> {
        // Find the separator.
        let sep = match self.lookahead.take() {
            Some(l) => l,
            None => loop {
                match self.lines.next_line()? {
                    None => return Ok(None),
                    Some(l) if self.lines.bytes().starts_with(b"From ") => break l,
                    Some(_) if !self.started => continue,
                    Some(_) => continue,
                }
            },
        };
        self.started = true;
        self.headers.clear();
        let mut total: u64 = 0;
        let mut in_headers = true;
        let mut oversize = false;
        let mut previous_blank = false;
        while let Some(l) = self.lines.next_line()? {
            let bytes = self.lines.bytes();
            if previous_blank && bytes.starts_with(b"From ") {
                self.lookahead = Some(l);
                break;
            }
            total += l.len + 1;
            previous_blank = bytes.is_empty();
            if in_headers {
                if bytes.is_empty() {
                    in_headers = false;
                    self.headers.extend_from_slice(b"\r\n");
                    continue;
                }
                if self.headers.len() + bytes.len() + 2 > self.max || l.oversize {
                    oversize = true;
                } else {
                    self.headers.extend_from_slice(bytes);
                    self.headers.extend_from_slice(b"\r\n");
                }
            }
        }
        Ok(Some(MboxMessage {
            line: sep.line,
            offset: sep.offset,
            total_len: total,
            oversize_headers: oversize,
        }))
    }
}

/// Expands paths: files as given, directories walked recursively in name order (hidden files
/// and Maildir `tmp/` skipped). Paths that do not exist are returned as errors, in order.
pub fn collect_input_files(paths: &[PathBuf]) -> Vec<Result<PathBuf, (PathBuf, io::Error)>> {
    let mut out = Vec::new();
    for path in paths {
        match std::fs::metadata(path) {
            Err(e) => out.push(Err((path.clone(), e))),
            Ok(meta) if meta.is_dir() => {
                let walker = walkdir::WalkDir::new(path)
                    .follow_links(false)
                    .sort_by_file_name()
                    .into_iter()
                    .filter_entry(|e| {
                        let name = e.file_name().to_string_lossy();
                        e.depth() == 0
                            || !(name.starts_with('.') || (e.file_type().is_dir() && name == "tmp"))
                    });
                for entry in walker {
                    match entry {
                        Ok(e) if e.file_type().is_file() => out.push(Ok(e.into_path())),
                        Ok(_) => {}
                        Err(e) => {
                            let p = e
                                .path()
                                .map(Path::to_path_buf)
                                .unwrap_or_else(|| path.clone());
                            out.push(Err((p, io::Error::other(e.to_string()))));
                        }
                    }
                }
            }
            Ok(_) => out.push(Ok(path.clone())),
        }
    }
    out
}
