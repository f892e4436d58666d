//! Decoding on a thread of its own, ahead of the consumer: [`DecodeAhead`] runs any stream of
//! [`Decoded`] items (a [`crate::StreamDecoder`], a [`crate::MergedEvents`]) on a separate
//! thread and hands its items over in order, in batches, so decoding and what consumes the
//! events (the detector) overlap on two cores.

use crate::Decoded;
use std::sync::mpsc::{sync_channel, Receiver};
use std::thread::JoinHandle;

/// A stream decoded on a thread of its own; iterating it yields the stream's items in order.
/// At most `depth` batches of `batch` items wait between the two threads.
pub struct DecodeAhead<S> {
    batches: Receiver<Vec<Decoded>>,
    current: std::vec::IntoIter<Decoded>,
    thread: JoinHandle<S>,
}

impl<S: Iterator<Item = Decoded> + Send + 'static> DecodeAhead<S> {
    /// Starts decoding `stream` on a new thread.
    pub fn spawn(stream: S, batch: usize, depth: usize) -> std::io::Result<Self> {
        let batch = batch.max(1);
        let (sender, batches) = sync_channel::<Vec<Decoded>>(depth);
        let thread = std::thread::Builder::new()
            .name("decode-ahead".into())
            .spawn(move || {
                let mut stream = stream;
                let mut items = Vec::with_capacity(batch);
                for item in stream.by_ref() {
                    items.push(item);
                    if items.len() == batch {
                        let full = std::mem::replace(&mut items, Vec::with_capacity(batch));
                        if sender.send(full).is_err() {
                            // The consumer stopped listening.
                            return stream;
                        }
                    }
                }
                if !items.is_empty() {
                    sender.send(items).ok();
                }
                stream
            })?;
        Ok(DecodeAhead {
            batches,
            current: Vec::new().into_iter(),
            thread,
        })
    }

    /// Stops the decoding thread (the items not yet taken are dropped) and gives the stream
    /// back, for its statistics. A panic on the decoding thread is resumed here.
    pub fn finish(self) -> S {
        drop(self.batches);
        match self.thread.join() {
            Ok(stream) => stream,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl<S> Iterator for DecodeAhead<S> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        loop {
            if let Some(item) = self.current.next() {
                return Some(item);
            }
            self.current = self.batches.recv().ok()?.into_iter();
        }
    }
}
