//! Splits a JSON stream into records without ever holding more than one record in memory.
//!
//! Accepted layouts, in one stream: NDJSON (one record per line), content-blob arrays
//! (`[{…},{…}]`, pretty-printed or not), Event Hub / storage envelopes (`{"records":[…]}`, and
//! OData `{"value":[…]}`), and concatenated pretty-printed objects. The layout is learnt from
//! the first value: when it closes on the line it opened, the stream is NDJSON and a line that
//! ends inside a record is a truncated record (rejected; the next line is read normally).
//!
//! Bounds: a record longer than `max_record` bytes is not buffered past the limit and becomes an
//! `oversize` reject; nesting deeper than [`MAX_DEPTH`] becomes `too_deep`. Only the structure
//! (brackets, strings, escapes) is checked here; the record decoder checks the rest.

use crate::decoder::{RecordError, RejectClass};
use std::io::{self, BufRead};

/// Deepest nesting accepted inside one record.
pub const MAX_DEPTH: u32 = 128;

/// True when `record` nests brackets deeper than `max` outside strings (the check the scanner
/// makes as it frames, for records taken whole by the NDJSON fast path).
pub fn nests_deeper_than(record: &[u8], max: u32) -> bool {
    let mut depth = 0u32;
    let mut in_string = false;
    let mut escape = false;
    for &c in record {
        if in_string {
            match (escape, c) {
                (true, _) => escape = false,
                (false, b'\\') => escape = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return true;
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    false
}

/// What the framer found next.
#[derive(Debug)]
pub enum Framed {
    /// A record; its bytes are [`JsonFramer::record`].
    Record {
        /// 1-based line of its first byte.
        line: u64,
        /// Byte offset of its first byte.
        offset: u64,
    },
    /// Something that is not a record, with where it started.
    Reject {
        /// 1-based line.
        line: u64,
        /// Byte offset.
        offset: u64,
        /// Why.
        error: RecordError,
    },
}

/// Streaming JSON record splitter over any reader.
///
/// A record on a line of its own (the NDJSON fast path) is handed out where it lies in the
/// reader's buffer: its bytes stay unconsumed until the next call, so `fill_buf` must give
/// unconsumed bytes back without reading (as `BufReader`, `Cursor` and `&[u8]` do).
pub struct JsonFramer<R> {
    reader: R,
    state: ScanState,
    /// Bytes scanned but left in the reader's buffer while the record in them is read.
    unconsumed: usize,
}

/// The scanner's state, kept apart from the reader so a chunk can be scanned in place.
struct ScanState {
    max_record: usize,
    record: Vec<u8>,
    /// Where in the chunk scanned last the record taken whole lies (then `record` is unused).
    in_place: Option<std::ops::Range<usize>>,
    record_len: u64,
    oversize: bool,
    too_deep: bool,
    offset: u64,
    line: u64,
    in_record: bool,
    discard: bool,
    rec_line: u64,
    rec_offset: u64,
    depth: u32,
    in_string: bool,
    escape: bool,
    container: u32,
    scalar: bool,
    envelope_probe: bool,
    line_mode: Option<bool>,
    skip_line: bool,
    started: bool,
    finished: bool,
}

impl<R: BufRead> JsonFramer<R> {
    /// A framer reading `reader`, refusing records over `max_record` bytes.
    pub fn new(reader: R, max_record: usize) -> Self {
        JsonFramer {
            reader,
            state: ScanState::new(max_record),
            unconsumed: 0,
        }
    }

    /// The bytes of the record last returned by [`JsonFramer::next_item`]: in the reader's
    /// buffer for a whole line, else as the scanner gathered them.
    pub fn record(&mut self) -> io::Result<&[u8]> {
        match self.state.in_place.clone() {
            Some(range) => Ok(&self.reader.fill_buf()?[range]),
            None => Ok(&self.state.record),
        }
    }

    /// Bytes consumed so far.
    pub fn position(&self) -> u64 {
        self.state.offset
    }

    /// The next record or reject; `None` at the end of the stream. I/O errors are returned as
    /// errors (the caller reports them against the file).
    pub fn next_item(&mut self) -> io::Result<Option<Framed>> {
        self.reader.consume(std::mem::take(&mut self.unconsumed));
        self.state.in_place = None;
        if self.state.finished {
            return Ok(None);
        }
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                self.state.finished = true;
                return Ok(self.state.at_end());
            }
            let (consumed, result) = self.state.scan(chunk);
            if self.state.in_place.is_some() {
                self.unconsumed = consumed;
            } else {
                self.reader.consume(consumed);
            }
            if result.is_some() {
                return Ok(result);
            }
        }
    }
}

impl ScanState {
    fn new(max_record: usize) -> Self {
        ScanState {
            max_record,
            record: Vec::with_capacity(4096),
            in_place: None,
            record_len: 0,
            oversize: false,
            too_deep: false,
            offset: 0,
            line: 1,
            in_record: false,
            discard: false,
            rec_line: 0,
            rec_offset: 0,
            depth: 0,
            in_string: false,
            escape: false,
            container: 0,
            scalar: false,
            envelope_probe: false,
            line_mode: None,
            skip_line: false,
            started: false,
            finished: false,
        }
    }

    fn start_record(&mut self, first: u8, scalar: bool, offset: u64) {
        self.in_record = true;
        self.discard = false;
        self.scalar = scalar;
        self.rec_line = self.line;
        self.rec_offset = offset;
        self.record.clear();
        self.record_len = 0;
        self.oversize = false;
        self.too_deep = false;
        self.envelope_probe = self.container == 0 && first == b'{';
        if !scalar {
            self.depth += 1;
        }
    }

    fn keep(&mut self, bytes: &[u8]) {
        if self.discard {
            return;
        }
        self.record_len += bytes.len() as u64;
        if self.oversize {
            return;
        }
        if self.record.len() + bytes.len() > self.max_record {
            self.oversize = true;
            return;
        }
        self.record.extend_from_slice(bytes);
    }

    fn finish_record(&mut self) -> Option<Framed> {
        self.in_record = false;
        self.scalar = false;
        if self.discard {
            self.discard = false;
            return None;
        }
        if self.container == 0 && self.line_mode.is_none() {
            self.line_mode = Some(self.rec_line == self.line);
        }
        let (line, offset) = (self.rec_line, self.rec_offset);
        if self.oversize {
            return Some(Framed::Reject {
                line,
                offset,
                error: RecordError::new(
                    RejectClass::Oversize,
                    format!(
                        "record of {} bytes exceeds the maximum record size of {} bytes",
                        self.record_len, self.max_record
                    ),
                ),
            });
        }
        if self.too_deep {
            return Some(Framed::Reject {
                line,
                offset,
                error: RecordError::new(
                    RejectClass::TooDeep,
                    format!("nested deeper than {MAX_DEPTH} levels"),
                ),
            });
        }
        Some(Framed::Record { line, offset })
    }

    fn abort_record(&mut self, class: RejectClass, detail: String) -> Option<Framed> {
        let discard = self.discard;
        let (line, offset) = (self.rec_line, self.rec_offset);
        self.in_record = false;
        self.discard = false;
        self.scalar = false;
        self.in_string = false;
        self.escape = false;
        self.depth = 0;
        self.container = 0;
        if discard {
            return None;
        }
        Some(Framed::Reject {
            line,
            offset,
            error: RecordError::new(class, detail),
        })
    }

    /// True when the record so far reads `{"records":` or `{"value":` (whitespace and key case
    /// aside). Only called while the record is still short.
    fn is_envelope_prefix(&self) -> bool {
        const MAX_PREFIX: usize = 64;
        if self.record.len() > MAX_PREFIX {
            return false;
        }
        let mut compact = [0u8; MAX_PREFIX];
        let mut n = 0;
        for &c in self.record.iter().filter(|c| !c.is_ascii_whitespace()) {
            compact[n] = c;
            n += 1;
        }
        let compact = &compact[..n];
        compact.eq_ignore_ascii_case(b"{\"records\":")
            || compact.eq_ignore_ascii_case(b"{\"value\":")
    }

    /// NDJSON fast path: at the start of a line in a stream known to hold one record per line,
    /// a complete line that opens with `{` and closes with `}` is taken whole, found with
    /// `memchr` instead of scanning every byte, and left where it is (`in_place`). Anything
    /// else (a line split across reads, an array, a line that does not close, an oversize
    /// line) is left to the full scanner, and the record decoder checks the JSON itself: a
    /// line that ends inside a string is a truncated record, and one nested deeper than
    /// [`MAX_DEPTH`] is rejected as too deep before any parser that recurses reads it
    /// ([`nests_deeper_than`]).
    fn take_whole_line(&mut self, chunk: &[u8], i: usize) -> Option<(usize, Framed)> {
        let rest = &chunk[i..];
        let nl = memchr::memchr(b'\n', rest)?;
        if nl > self.max_record {
            return None;
        }
        let line = &rest[..nl];
        let end = line
            .iter()
            .rposition(|c| !c.is_ascii_whitespace())
            .map_or(0, |p| p + 1);
        if rest.first() != Some(&b'{') || end == 0 || line[end - 1] != b'}' {
            return None;
        }
        self.in_place = Some(i..i + end);
        self.record_len = end as u64;
        let framed = Framed::Record {
            line: self.line,
            offset: self.offset + i as u64,
        };
        self.line += 1;
        Some((i + nl + 1, framed))
    }

    /// Scans one chunk: returns how many bytes were consumed and what was found, if anything.
    fn scan(&mut self, chunk: &[u8]) -> (usize, Option<Framed>) {
        {
            let mut i = 0;
            let mut result = None;
            if !self.started {
                self.started = true;
                if chunk.starts_with(&[0xEF, 0xBB, 0xBF]) {
                    i = 3;
                }
            }
            let mut seg_start = i;
            while i < chunk.len() {
                let c = chunk[i];
                if self.skip_line {
                    match memchr::memchr(b'\n', &chunk[i..]) {
                        Some(n) => {
                            i += n + 1;
                            self.line += 1;
                            self.skip_line = false;
                            seg_start = i;
                            continue;
                        }
                        None => {
                            i = chunk.len();
                            seg_start = i;
                            break;
                        }
                    }
                }
                if self.in_record {
                    if self.in_string {
                        if self.escape {
                            self.escape = false;
                            i += 1;
                            continue;
                        }
                        match memchr::memchr3(b'"', b'\\', b'\n', &chunk[i..]) {
                            None => {
                                i = chunk.len();
                                break;
                            }
                            Some(n) => {
                                i += n;
                                match chunk[i] {
                                    b'"' => self.in_string = false,
                                    b'\\' => self.escape = true,
                                    _ => {
                                        // A raw newline inside a string: never valid JSON.
                                        if self.line_mode == Some(true) {
                                            self.keep(&chunk[seg_start..i]);
                                            let line = self.line;
                                            self.line += 1;
                                            i += 1;
                                            seg_start = i;
                                            result = self.abort_record(
                                                RejectClass::Truncated,
                                                format!("line {line} ends inside a string"),
                                            );
                                            if result.is_some() {
                                                break;
                                            }
                                            continue;
                                        }
                                        self.line += 1;
                                    }
                                }
                                i += 1;
                                continue;
                            }
                        }
                    }
                    match c {
                        b'"' => self.in_string = true,
                        b'{' | b'[' => {
                            self.depth += 1;
                            if self.depth - self.container > MAX_DEPTH {
                                self.too_deep = true;
                            }
                            if self.envelope_probe && c == b'[' && self.depth == 2 {
                                self.keep(&chunk[seg_start..i]);
                                seg_start = i;
                                if self.is_envelope_prefix() {
                                    // Enter the envelope: its array's elements are the records.
                                    self.in_record = false;
                                    self.container = 2;
                                    self.envelope_probe = false;
                                    i += 1;
                                    seg_start = i;
                                    continue;
                                }
                            }
                            if self.record.len() > 32 {
                                self.envelope_probe = false;
                            }
                        }
                        b'}' | b']' => {
                            if self.scalar && self.depth == self.container {
                                // End of a scalar element: the bracket closes the container.
                                self.keep(&chunk[seg_start..i]);
                                seg_start = i;
                                result = self.finish_record();
                                if result.is_some() {
                                    break;
                                }
                                continue;
                            }
                            if self.depth == 0 {
                                i += 1;
                                result = self.abort_record(
                                    RejectClass::InvalidJson,
                                    "unbalanced closing bracket".into(),
                                );
                                seg_start = i;
                                if result.is_some() {
                                    break;
                                }
                                continue;
                            }
                            self.depth -= 1;
                            if self.depth == self.container && !self.scalar {
                                i += 1;
                                self.keep(&chunk[seg_start..i]);
                                seg_start = i;
                                result = self.finish_record();
                                if result.is_some() {
                                    break;
                                }
                                continue;
                            }
                        }
                        b',' if self.scalar && self.depth == self.container => {
                            self.keep(&chunk[seg_start..i]);
                            seg_start = i;
                            result = self.finish_record();
                            if result.is_some() {
                                break;
                            }
                            continue;
                        }
                        b'\n' => {
                            if self.line_mode == Some(true) && !self.discard {
                                self.keep(&chunk[seg_start..i]);
                                let line = self.line;
                                self.line += 1;
                                i += 1;
                                seg_start = i;
                                result = self.abort_record(
                                    RejectClass::Truncated,
                                    format!("line {line} ends inside a record (unclosed brackets)"),
                                );
                                if result.is_some() {
                                    break;
                                }
                                continue;
                            }
                            self.line += 1;
                        }
                        _ => {}
                    }
                    i += 1;
                    continue;
                }

                // Between records.
                if c == b'{' && self.line_mode == Some(true) && self.container == 0 {
                    if let Some((next, framed)) = self.take_whole_line(chunk, i) {
                        i = next;
                        result = Some(framed);
                        break;
                    }
                }
                match c {
                    b'\n' => self.line += 1,
                    b' ' | b'\t' | b'\r' => {}
                    b',' if self.container > 0 => {}
                    b'[' if self.container == 0 => {
                        self.container = 1;
                        self.depth = 1;
                        if self.line_mode.is_none() {
                            self.line_mode = Some(false);
                        }
                    }
                    b']' if self.container > 0 => {
                        if self.container == 2 {
                            // The rest of the envelope object is read and ignored.
                            self.container = 0;
                            self.depth = 1;
                            self.in_record = true;
                            self.discard = true;
                            self.rec_line = self.line;
                            self.rec_offset = self.offset + i as u64;
                        } else {
                            self.container = 0;
                            self.depth = 0;
                        }
                    }
                    b'{' | b'[' => {
                        self.start_record(c, false, self.offset + i as u64);
                        seg_start = i;
                    }
                    _ if self.container > 0 => {
                        self.start_record(c, true, self.offset + i as u64);
                        seg_start = i;
                        if c == b'"' {
                            self.in_string = true;
                        }
                    }
                    _ => {
                        let line = self.line;
                        let offset = self.offset + i as u64;
                        self.skip_line = true;
                        i += 1;
                        result = Some(Framed::Reject {
                            line,
                            offset,
                            error: RecordError::new(
                                RejectClass::InvalidJson,
                                format!(
                                    "unexpected {:?} where a JSON record should start",
                                    c as char
                                ),
                            ),
                        });
                        seg_start = i;
                        break;
                    }
                }
                i += 1;
                if !self.in_record {
                    seg_start = i;
                }
            }
            if self.in_record && seg_start < i {
                self.keep(&chunk[seg_start..i]);
            }
            self.offset += i as u64;
            (i, result)
        }
    }

    fn at_end(&mut self) -> Option<Framed> {
        if self.in_record {
            if self.scalar && self.container > 0 {
                return self
                    .abort_record(RejectClass::Truncated, "input ends inside an array".into());
            }
            let begun = self.rec_line;
            return self.abort_record(
                RejectClass::Truncated,
                format!("input ends inside a record begun at line {begun}"),
            );
        }
        if self.container > 0 {
            self.container = 0;
            return Some(Framed::Reject {
                line: self.line,
                offset: self.offset,
                error: RecordError::new(RejectClass::Truncated, "input ends inside an array"),
            });
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every record (its bytes) and reject (its class) as framed, through a buffer of
    /// `capacity` bytes.
    fn framed(input: &[u8], capacity: usize) -> Vec<(u64, u64, String)> {
        let reader = io::BufReader::with_capacity(capacity, input);
        let mut framer = JsonFramer::new(reader, 1 << 20);
        let mut out = Vec::new();
        while let Some(item) = framer.next_item().expect("in memory") {
            out.push(match item {
                Framed::Record { line, offset } => {
                    let bytes = framer.record().expect("in memory");
                    (line, offset, String::from_utf8_lossy(bytes).into_owned())
                }
                Framed::Reject {
                    line,
                    offset,
                    error,
                } => (line, offset, format!("reject {:?}", error.class)),
            });
        }
        out
    }

    #[test]
    fn whole_lines_read_in_place_are_the_records_whatever_the_buffer() {
        let input = b"{\"a\":1}\n{\"b\":\"x\\\"y\"}  \r\n\n{\"c\":\n2}\n{\"d\":[1,2]}\n{\"e\":0}";
        let whole = framed(input, 4096);
        let text = |(line, offset, s): &(u64, u64, String)| (*line, *offset, s.clone());
        assert_eq!(text(&whole[0]), (1, 0, r#"{"a":1}"#.into()));
        assert_eq!(text(&whole[1]), (2, 8, r#"{"b":"x\"y"}"#.into()));
        // A record broken over two lines of a one-record-per-line stream: two located rejects.
        assert_eq!(text(&whole[2]), (4, 25, "reject Truncated".into()));
        assert_eq!(text(&whole[3]), (5, 31, "reject InvalidJson".into()));
        assert_eq!(text(&whole[4]), (6, 34, r#"{"d":[1,2]}"#.into()));
        // The last line has no newline: the scanner gathers it.
        assert_eq!(text(&whole[5]), (7, 46, r#"{"e":0}"#.into()));
        assert_eq!(whole.len(), 6);
        // Small buffers split lines (the scanner gathers them); large ones hold whole lines,
        // which are handed out where they lie. Both frame alike.
        for capacity in [1, 3, 8, 16, 64] {
            assert_eq!(framed(input, capacity), whole, "buffer of {capacity} bytes");
        }
    }
}
