//! Event-time merge across files: many log files (of any formats) read as one stream, ordered
//! by each file's next event, with only the files that have reached the current time open.
//!
//! Files are first peeked (decoding stops at their first event) and sorted by first event
//! time; a file is opened when the merged stream reaches that time and closed when it ends, so
//! a month of daily files keeps about one day's files open. Within a file, events come in file
//! order (audit files are not strictly time-ordered; the detector's watermark absorbs that).

use crate::decoder::DecodeStats;
use crate::decoder::Reject;
use crate::stream_decoder::{DecodeOptions, Decoded, StreamDecoder};
use mailsentry_events::Event;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::path::PathBuf;

struct OpenFile {
    stream: StreamDecoder,
    head: Option<Event>,
}

/// Files that could not be opened, with why.
pub type OpenFailures = Vec<(PathBuf, std::io::Error)>;

/// The merged stream; yields events in (approximately) event-time order and every reject.
pub struct MergedEvents {
    options: DecodeOptions,
    files: Vec<(i64, PathBuf)>,
    next_file: usize,
    open: Vec<Option<OpenFile>>,
    heap: BinaryHeap<Reverse<(i64, usize)>>,
    pending: VecDeque<Decoded>,
    stats: DecodeStats,
    failures: OpenFailures,
    max_open: usize,
}

impl MergedEvents {
    /// Peeks every file and prepares the merge. Files that cannot be opened are listed in
    /// [`MergedEvents::failures`] and skipped.
    pub fn new(paths: Vec<PathBuf>, options: DecodeOptions) -> Self {
        let mut failures = Vec::new();
        let mut files = Vec::with_capacity(paths.len());
        for path in paths {
            match StreamDecoder::open(&path, options) {
                Ok(mut stream) => {
                    let first = stream
                        .by_ref()
                        .find_map(|d| match d {
                            Decoded::Event(e) => Some(e.time.timestamp()),
                            Decoded::Reject(_) => None,
                        })
                        .unwrap_or(i64::MIN);
                    files.push((first, path));
                }
                Err(e) => failures.push((path, e)),
            }
        }
        files.sort();
        MergedEvents {
            options,
            files,
            next_file: 0,
            open: Vec::new(),
            heap: BinaryHeap::new(),
            pending: VecDeque::new(),
            stats: DecodeStats::default(),
            failures,
            max_open: 0,
        }
    }

    /// Counters of every file finished so far (complete once the iterator is exhausted).
    pub fn stats(&self) -> &DecodeStats {
        &self.stats
    }

    /// Files that could not be opened.
    pub fn failures(&self) -> &OpenFailures {
        &self.failures
    }

    /// The most files that were open at once.
    pub fn max_open(&self) -> usize {
        self.max_open
    }

    /// Pulls a file's next event into its slot (rejects go to the pending queue); closes the
    /// file at its end.
    fn advance(&mut self, slot: usize) {
        let Some(file) = self.open[slot].as_mut() else {
            return;
        };
        file.head = None;
        for item in file.stream.by_ref() {
            match item {
                Decoded::Event(e) => {
                    let t = e.time.timestamp();
                    file.head = Some(e);
                    self.heap.push(Reverse((t, slot)));
                    return;
                }
                Decoded::Reject(r) => self.pending.push_back(Decoded::Reject(r)),
            }
        }
        let done = self.open[slot].take().expect("open");
        self.stats.merge(done.stream.stats());
    }

    fn open_next(&mut self) {
        let (_, path) = &self.files[self.next_file];
        let path = path.clone();
        self.next_file += 1;
        match StreamDecoder::open(&path, self.options) {
            Ok(stream) => {
                let slot = match self.open.iter().position(Option::is_none) {
                    Some(s) => s,
                    None => {
                        self.open.push(None);
                        self.open.len() - 1
                    }
                };
                self.open[slot] = Some(OpenFile { stream, head: None });
                let now_open = self.open.iter().filter(|f| f.is_some()).count();
                self.max_open = self.max_open.max(now_open);
                self.advance(slot);
            }
            Err(e) => {
                self.pending.push_back(Decoded::Reject(Reject {
                    file: std::sync::Arc::from(path.display().to_string().as_str()),
                    line: 0,
                    offset: 0,
                    error: crate::decoder::RecordError::new(
                        crate::decoder::RejectClass::Io,
                        format!("cannot reopen: {e}"),
                    ),
                }));
            }
        }
    }
}

impl Iterator for MergedEvents {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if let Some(d) = self.pending.pop_front() {
                return Some(d);
            }
            let head_time = self.heap.peek().map(|Reverse((t, _))| *t);
            if self.next_file < self.files.len()
                && head_time.is_none_or(|t| self.files[self.next_file].0 <= t)
            {
                self.open_next();
                continue;
            }
            let Reverse((_, slot)) = self.heap.pop()?;
            let event = self.open[slot]
                .as_mut()
                .and_then(|f| f.head.take())
                .expect("a heap entry has its head");
            self.advance(slot);
            return Some(Decoded::Event(event));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(minute: u32, id: &str) -> String {
        format!(
            r#"{{"CreationTime":"2024-03-10T02:{minute:02}:00","Id":"{id}","Operation":"MailItemsAccessed","RecordType":50,"OrganizationId":"t","AppId":"a","ClientAppId":"a","UserType":5,"ClientIPAddress":"203.0.113.9","MailboxOwnerUPN":"u@x"}}"#
        )
    }

    #[test]
    fn merges_files_by_event_time_and_keeps_rejects() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.ndjson");
        let b = dir.path().join("b.ndjson");
        std::fs::write(
            &a,
            [
                record(1, "a1"),
                record(5, "a5"),
                "{broken".into(),
                record(9, "a9"),
            ]
            .join("\n"),
        )
        .unwrap();
        std::fs::write(
            &b,
            [record(2, "b2"), record(3, "b3"), record(10, "b10")].join("\n"),
        )
        .unwrap();
        let mut merged = MergedEvents::new(vec![b.clone(), a.clone()], DecodeOptions::default());
        let mut ids = Vec::new();
        let mut rejects = 0;
        for d in merged.by_ref() {
            match d {
                Decoded::Event(e) => ids.push(e.id),
                Decoded::Reject(_) => rejects += 1,
            }
        }
        assert_eq!(ids, ["a1", "b2", "b3", "a5", "a9", "b10"]);
        assert_eq!(rejects, 1);
        assert_eq!(merged.stats().records_decoded, 6);
        assert_eq!(merged.stats().rejected_total(), 1);
        assert!(merged.stats().all_records_accounted());
    }
}
