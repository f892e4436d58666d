//! Tails a directory of line-oriented logs (NDJSON, IIS W3C, EWS and Purview CSV) the way a
//! collector drops them: new complete lines are read from where the last poll stopped, files
//! are followed by inode across renames (logrotate), a truncated file (copytruncate) or a new
//! file under an old name is read from the start, and the position of every file is
//! checkpointed in the store, so a restart neither loses nor repeats records. Header context
//! (the latest `#Fields:` line of a W3C log, the header row of a CSV) is kept per file so
//! appended lines decode on their own.

use mailsentry_events::Event;
use mailsentry_ingest::{
    collect_input_files, decode_bytes, sniff_format, DecodeOptions, Decoded, InputFormat,
};
use mailsentry_store::AlertStore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Per file, keyed by `device:inode`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
struct FileState {
    path: PathBuf,
    offset: u64,
    /// Hash of the file's first bytes when first seen (guards against inode reuse).
    fingerprint: u64,
    fingerprint_len: u64,
    format: Option<String>,
    /// Lines to put before new lines so they decode alone (W3C `#Fields:`, CSV header).
    header: Option<String>,
}

/// What one poll did.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TailStats {
    /// Files read from.
    pub files: u64,
    /// Bytes read.
    pub bytes: u64,
    /// Events decoded.
    pub events: u64,
    /// Records rejected.
    pub rejected: u64,
    /// Files started again from the beginning (truncated, or a new file under an old name).
    pub restarted: u64,
}

/// The tail of one directory.
pub struct DirectoryTail {
    dir: PathBuf,
    store: Arc<dyn AlertStore>,
    files: BTreeMap<String, FileState>,
    key: String,
}

const FINGERPRINT_BYTES: u64 = 1024;
/// Most bytes read from one file in one poll (the rest waits for the next).
const MAX_CHUNK: u64 = 64 << 20;

fn fingerprint(path: &Path, len: u64) -> std::io::Result<u64> {
    let mut buf = vec![0; len as usize];
    std::fs::File::open(path)?.read_exact(&mut buf)?;
    Ok(xxhash_rust::xxh3::xxh3_64(&buf))
}

impl DirectoryTail {
    /// A tail of `dir` whose positions live in `store`.
    pub fn new(
        dir: &Path,
        store: Arc<dyn AlertStore>,
    ) -> Result<Self, mailsentry_store::StoreError> {
        let key = format!("source:tail:{}", dir.display());
        let files = store
            .load_checkpoint(&key)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Ok(DirectoryTail {
            dir: dir.to_owned(),
            store,
            files,
            key,
        })
    }

    /// Reads what was appended since the last poll.
    pub fn poll(
        &mut self,
        stats: &mut TailStats,
    ) -> Result<Vec<Event>, mailsentry_store::StoreError> {
        let mut events = Vec::new();
        let mut present = BTreeMap::new();
        for path in collect_input_files(std::slice::from_ref(&self.dir))
            .into_iter()
            .filter_map(Result::ok)
        {
            let Ok(meta) = std::fs::metadata(&path) else {
                continue;
            };
            let id = format!("{}:{}", meta.dev(), meta.ino());
            let size = meta.len();
            let mut state = match self.files.remove(&id) {
                Some(mut s) => {
                    let same = s.fingerprint_len == 0
                        || (size >= s.fingerprint_len
                            && fingerprint(&path, s.fingerprint_len).ok() == Some(s.fingerprint));
                    if !same || size < s.offset {
                        // Truncated in place, or the inode now holds another file.
                        stats.restarted += 1;
                        s.offset = 0;
                        s.fingerprint_len = 0;
                        s.header = None;
                        s.format = None;
                    }
                    s.path = path.clone();
                    s
                }
                None => FileState {
                    path: path.clone(),
                    offset: 0,
                    fingerprint: 0,
                    fingerprint_len: 0,
                    format: None,
                    header: None,
                },
            };
            if state.fingerprint_len == 0 && size > 0 {
                let len = size.min(FINGERPRINT_BYTES);
                if let Ok(f) = fingerprint(&path, len) {
                    state.fingerprint = f;
                    state.fingerprint_len = len;
                }
            }
            if size > state.offset {
                if let Ok(chunk) = read_complete_lines(&path, state.offset, size) {
                    if !chunk.is_empty() {
                        stats.files += 1;
                        stats.bytes += chunk.len() as u64;
                        self.decode_chunk(&mut state, &chunk, &mut events, stats);
                        state.offset += chunk.len() as u64;
                    }
                }
            }
            present.insert(id, state);
        }
        // Files that are gone are forgotten; the rest is the new state.
        self.files = present;
        self.store.save_checkpoint(
            &self.key,
            &serde_json::to_vec(&self.files).expect("state serializes"),
        )?;
        Ok(events)
    }

    fn decode_chunk(
        &self,
        state: &mut FileState,
        chunk: &[u8],
        events: &mut Vec<Event>,
        stats: &mut TailStats,
    ) {
        let format = match state.format.as_deref().and_then(InputFormat::from_name) {
            Some(f) => f,
            None => match sniff_format(chunk, Some(&state.path)) {
                Ok(f) => {
                    state.format = Some(f.name().to_owned());
                    f
                }
                Err(_) => return,
            },
        };
        let text = String::from_utf8_lossy(chunk);
        // Keep the context appended lines need.
        match format {
            InputFormat::IisW3c => {
                if let Some(fields) = text.lines().rev().find(|l| l.starts_with("#Fields:")) {
                    state.header = Some(fields.to_owned());
                }
            }
            InputFormat::EwsLog | InputFormat::PurviewCsv if state.header.is_none() => {
                state.header = text.lines().next().map(str::to_owned);
            }
            _ => {}
        }
        let mut body = Vec::with_capacity(chunk.len() + 256);
        let starts_with_header = state.header.as_deref().is_some_and(|h| text.starts_with(h));
        if let (Some(h), false) = (&state.header, starts_with_header) {
            body.extend_from_slice(h.as_bytes());
            body.push(b'\n');
        }
        body.extend_from_slice(chunk);
        let name = state.path.display().to_string();
        let options = DecodeOptions {
            format: Some(format),
            ..Default::default()
        };
        let (items, s) = decode_bytes(&name, &body, options);
        stats.rejected += s.rejected_total();
        for d in items {
            if let Decoded::Event(e) = d {
                stats.events += 1;
                events.push(e);
            }
        }
    }
}

/// The bytes from `offset` up to the last newline before `size` (a line still being written
/// waits for the next poll).
fn read_complete_lines(path: &Path, offset: u64, size: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    f.seek(SeekFrom::Start(offset))?;
    let mut buf = Vec::new();
    f.take((size - offset).min(MAX_CHUNK))
        .read_to_end(&mut buf)?;
    match memchr_last_newline(&buf) {
        Some(end) => {
            buf.truncate(end + 1);
            Ok(buf)
        }
        None => Ok(Vec::new()),
    }
}

fn memchr_last_newline(buf: &[u8]) -> Option<usize> {
    buf.iter().rposition(|&b| b == b'\n')
}
