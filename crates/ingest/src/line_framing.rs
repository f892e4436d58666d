//! Bounded line reading for the line-oriented formats (W3C, EWS CSV, Purview CSV, mbox).
//!
//! A line longer than the maximum is not buffered past it: the framer reports it as oversize and
//! resumes at the next line. With CSV quoting on, a newline inside a quoted field continues the
//! record (Purview's `AuditData` column may hold one).

use std::io::{self, BufRead};

/// One framed line (or CSV record spanning lines).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FramedLine {
    /// 1-based line number of its start.
    pub line: u64,
    /// Byte offset of its start.
    pub offset: u64,
    /// Its full length in bytes, terminator excluded (larger than the buffer when oversize).
    pub len: u64,
    /// Longer than the maximum: only the first `max` bytes were kept.
    pub oversize: bool,
    /// The input ended inside a quoted field.
    pub unterminated_quote: bool,
}

/// Reads bounded lines.
pub struct LineFramer<R> {
    reader: R,
    max_line: usize,
    csv_quotes: bool,
    buf: Vec<u8>,
    line: u64,
    offset: u64,
}

impl<R: BufRead> LineFramer<R> {
    /// A framer over `reader`; `csv_quotes` makes quoted newlines part of the record.
    pub fn new(reader: R, max_line: usize, csv_quotes: bool) -> Self {
        LineFramer {
            reader,
            max_line,
            csv_quotes,
            buf: Vec::with_capacity(1024),
            line: 1,
            offset: 0,
        }
    }

    /// The bytes of the last line returned (without `\n` or `\r\n`).
    pub fn bytes(&self) -> &[u8] {
        &self.buf
    }

    /// Reads the next line; `None` at end of input.
    pub fn next_line(&mut self) -> io::Result<Option<FramedLine>> {
        self.buf.clear();
        let start_line = self.line;
        let start_offset = self.offset;
        let mut len: u64 = 0;
        let mut oversize = false;
        let mut in_quotes = false;
        let mut saw_any = false;
        loop {
            let chunk = match self.reader.fill_buf() {
                Ok(c) => c,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            // Find the end of the record in this chunk.
            let mut end = None;
            let mut i = 0;
            while i < chunk.len() {
                if self.csv_quotes {
                    match memchr::memchr2(b'\n', b'"', &chunk[i..]) {
                        Some(n) => {
                            i += n;
                            if chunk[i] == b'"' {
                                in_quotes = !in_quotes;
                                i += 1;
                                continue;
                            }
                            if in_quotes {
                                self.line += 1;
                                i += 1;
                                continue;
                            }
                            end = Some(i);
                            break;
                        }
                        None => {
                            i = chunk.len();
                        }
                    }
                } else {
                    if let Some(n) = memchr::memchr(b'\n', &chunk[i..]) {
                        end = Some(i + n);
                    }
                    break;
                }
            }
            let take = end.unwrap_or(chunk.len());
            let room = self.max_line.saturating_sub(self.buf.len());
            if take > room {
                oversize = true;
            }
            self.buf.extend_from_slice(&chunk[..take.min(room)]);
            len += take as u64;
            let consumed = match end {
                Some(e) => e + 1,
                None => take,
            };
            self.offset += consumed as u64;
            self.reader.consume(consumed);
            if end.is_some() {
                self.line += 1;
                break;
            }
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
            len = len.saturating_sub(1);
        }
        Ok(Some(FramedLine {
            line: start_line,
            offset: start_offset,
            len,
            oversize,
            unterminated_quote: in_quotes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &str, max: usize, csv: bool) -> Vec<(String, FramedLine)> {
        let mut f = LineFramer::new(input.as_bytes(), max, csv);
        let mut out = Vec::new();
        while let Some(l) = f.next_line().unwrap() {
            out.push((String::from_utf8_lossy(f.bytes()).into_owned(), l));
        }
        out
    }

    #[test]
    fn lines_with_positions_and_crlf() {
        let l = lines("a\r\nbb\nccc", 100, false);
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].0, "a");
        assert_eq!((l[1].1.line, l[1].1.offset), (2, 3));
        assert_eq!(l[2].0, "ccc");
        assert_eq!((l[2].1.line, l[2].1.offset), (3, 6));
    }

    #[test]
    fn oversize_lines_are_cut_and_the_next_line_is_whole() {
        let long = "x".repeat(50);
        let l = lines(&format!("{long}\nshort\n"), 10, false);
        assert!(l[0].1.oversize);
        assert_eq!(l[0].1.len, 50);
        assert_eq!(l[0].0.len(), 10);
        assert_eq!(l[1].0, "short");
        assert!(!l[1].1.oversize);
    }

    #[test]
    fn quoted_newlines_continue_a_csv_record() {
        let l = lines("a,\"b\nc\",d\ne,f\n", 100, true);
        assert_eq!(l.len(), 2);
        assert_eq!(l[0].0, "a,\"b\nc\",d");
        assert_eq!(l[1].0, "e,f");
        assert_eq!(l[1].1.line, 3);
        let open = lines("a,\"never closed\n", 100, true);
        assert!(open[0].1.unterminated_quote);
    }
}
