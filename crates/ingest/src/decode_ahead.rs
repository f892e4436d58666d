//! Decoding on a thread of its own, ahead of the consumer: [`DecodeAhead`] runs any stream of
//! [`Decoded`] items (a [`crate::StreamDecoder`], a [`crate::MergedEvents`]) on a separate
//! thread and hands its items over in order, in batches, so decoding and what consumes the
//! events (the detector) overlap on two cores.

use crate::Decoded;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// Items handed over at once by the replay and training passes: large enough that the
/// hand-over costs little per item, small enough that the detector starts at once.
pub const DECODE_AHEAD_BATCH: usize = 512;
/// Batches that may wait between the two threads (bounds the memory decoding ahead takes).
pub const DECODE_AHEAD_DEPTH: usize = 4;

/// A stream decoded on a thread of its own; iterating it yields the stream's items in order.
/// At most `depth` batches of `batch` items wait between the two threads. When no thread can
/// be started, the stream is decoded on the consumer's thread instead (same items, one core).
pub struct DecodeAhead<S> {
    mode: Mode<S>,
    /// The stream's count (see [`DecodeAhead::spawn_counting`]) as of the batch being read.
    count: u64,
    counter: fn(&S) -> u64,
}

enum Mode<S> {
    Thread {
        batches: Receiver<(Vec<Decoded>, u64)>,
        current: std::vec::IntoIter<Decoded>,
        thread: JoinHandle<Option<S>>,
    },
    Inline(S),
}

impl<S: Iterator<Item = Decoded> + Send + 'static> DecodeAhead<S> {
    /// Starts decoding `stream` on a new thread.
    pub fn spawn(stream: S, batch: usize, depth: usize) -> Self {
        Self::spawn_counting(stream, batch, depth, |_| 0)
    }

    /// [`DecodeAhead::spawn`], reading `counter` of the stream (the records it has read, for a
    /// progress report) each time a batch is handed over: [`DecodeAhead::counted`] gives it as
    /// of the batch the consumer is reading.
    pub fn spawn_counting(stream: S, batch: usize, depth: usize, counter: fn(&S) -> u64) -> Self {
        let batch = batch.max(1);
        let (sender, batches) = sync_channel::<(Vec<Decoded>, u64)>(depth);
        // The stream goes to the thread once it runs, so that it stays here if none starts.
        let (give, take) = sync_channel::<S>(1);
        let started = std::thread::Builder::new()
            .name("decode-ahead".into())
            .spawn(move || {
                let mut stream = take.recv().ok()?;
                let mut items = Vec::with_capacity(batch);
                while let Some(item) = stream.next() {
                    items.push(item);
                    if items.len() == batch {
                        let full = std::mem::replace(&mut items, Vec::with_capacity(batch));
                        if sender.send((full, counter(&stream))).is_err() {
                            // The consumer stopped listening.
                            return Some(stream);
                        }
                    }
                }
                if !items.is_empty() {
                    sender.send((items, counter(&stream))).ok();
                }
                Some(stream)
            });
        let mode = match started {
            Ok(thread) => {
                give.send(stream)
                    .unwrap_or_else(|_| unreachable!("the thread waits for its stream"));
                Mode::Thread {
                    batches,
                    current: Vec::new().into_iter(),
                    thread,
                }
            }
            Err(_) => Mode::Inline(stream),
        };
        DecodeAhead {
            mode,
            count: 0,
            counter,
        }
    }

    /// Whether the stream is decoded on a thread of its own (false when none could start).
    pub fn on_own_thread(&self) -> bool {
        matches!(self.mode, Mode::Thread { .. })
    }

    /// The stream's count as of the batch being read (as of the item just read when decoding
    /// on the consumer's thread); 0 without a counter.
    pub fn counted(&self) -> u64 {
        match &self.mode {
            Mode::Thread { .. } => self.count,
            Mode::Inline(stream) => (self.counter)(stream),
        }
    }

    /// Stops the decoding thread (the items not yet taken are dropped) and gives the stream
    /// back, for its statistics. A panic on the decoding thread is resumed here.
    pub fn finish(self) -> S {
        match self.mode {
            Mode::Inline(stream) => stream,
            Mode::Thread {
                batches, thread, ..
            } => {
                drop(batches);
                match thread.join() {
                    Ok(stream) => stream.expect("the thread was given its stream"),
                    Err(panic) => std::panic::resume_unwind(panic),
                }
            }
        }
    }
}

impl<S: Iterator<Item = Decoded>> Iterator for DecodeAhead<S> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        match &mut self.mode {
            Mode::Inline(stream) => stream.next(),
            Mode::Thread {
                batches, current, ..
            } => loop {
                if let Some(item) = current.next() {
                    return Some(item);
                }
                let (batch, count) = batches.recv().ok()?;
                *current = batch.into_iter();
                self.count = count;
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DecodeOptions, StreamDecoder};
    use std::sync::Arc;

    fn stream() -> StreamDecoder {
        let lines = b"{\"Id\":\"a\"}\n{broken\n{\"Id\":\"b\"}\n".to_vec();
        StreamDecoder::from_reader(
            Arc::from("memory"),
            Box::new(std::io::Cursor::new(lines)),
            DecodeOptions::default(),
            None,
        )
    }

    fn describe(item: Decoded) -> String {
        match item {
            Decoded::Event(e) => format!("event {}", e.id),
            Decoded::Reject(r) => format!("reject {r}"),
        }
    }

    /// What happens when no thread can be started (which a test cannot bring about):
    /// the same items, the count read from the stream itself, the stream given back.
    #[test]
    fn without_a_thread_the_stream_is_read_on_the_consumers() {
        let expected: Vec<String> = stream().map(describe).collect();
        assert_eq!(expected.len(), 3, "{expected:?}");
        let mut inline = DecodeAhead {
            mode: Mode::Inline(stream()),
            count: 0,
            counter: |s: &StreamDecoder| s.stats().records,
        };
        assert!(!inline.on_own_thread());
        let mut got = Vec::new();
        let mut counts = Vec::new();
        while let Some(item) = inline.next() {
            got.push(describe(item));
            counts.push(inline.counted());
        }
        assert_eq!(got, expected);
        assert_eq!(counts.last(), Some(&3), "{counts:?}");
        assert_eq!(inline.finish().stats().records, 3);
    }
}
