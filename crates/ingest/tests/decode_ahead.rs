//! `DecodeAhead`: a stream decoded on its own thread gives the same items, in the same order,
//! as the stream itself, stops when asked and passes on a panic.

use mailsentry_ingest::{DecodeAhead, DecodeOptions, Decoded, StreamDecoder};
use std::sync::Arc;

mod common;
use common::manifest_dir;

/// Real records (OTRF Security-Datasets, see tests/fixtures/ATTRIBUTION.md) with broken lines
/// between them, so the stream has events and rejects.
fn input() -> Vec<u8> {
    let root = manifest_dir().join("../../tests/fixtures/otrf");
    let mut bytes = Vec::new();
    for name in [
        "aad-audit-events.ndjson",
        "defender-cloud-app-events.ndjson",
    ] {
        let text = std::fs::read_to_string(root.join(name)).unwrap();
        for (i, line) in text.lines().enumerate() {
            bytes.extend_from_slice(line.as_bytes());
            bytes.push(b'\n');
            if i % 3 == 0 {
                bytes.extend_from_slice(b"{\"broken\": \n");
            }
        }
    }
    bytes
}

fn stream(bytes: &[u8]) -> StreamDecoder {
    StreamDecoder::from_reader(
        Arc::from("input"),
        Box::new(std::io::Cursor::new(bytes.to_vec())),
        DecodeOptions::default(),
        None,
    )
}

fn describe(item: &Decoded) -> String {
    match item {
        Decoded::Event(e) => format!("event {} {}", e.id, e.origin.line),
        Decoded::Reject(r) => format!("reject {r}"),
    }
}

#[test]
fn items_come_in_the_stream_order_whatever_the_batch_size() {
    let bytes = input();
    let mut direct = stream(&bytes);
    let expected: Vec<String> = direct.by_ref().map(|d| describe(&d)).collect();
    assert!(expected.iter().any(|d| d.starts_with("event")));
    assert!(expected.iter().any(|d| d.starts_with("reject")));
    for (batch, depth) in [(1, 0), (3, 1), (512, 4), (100_000, 2)] {
        let mut ahead = DecodeAhead::spawn(stream(&bytes), batch, depth);
        let got: Vec<String> = ahead.by_ref().map(|d| describe(&d)).collect();
        assert_eq!(got, expected, "batch {batch}, depth {depth}");
        let back = ahead.finish();
        assert_eq!(back.stats(), direct.stats(), "batch {batch}, depth {depth}");
    }
}

#[test]
fn the_count_follows_the_stream_as_of_each_batch() {
    let bytes = input();
    let mut direct = stream(&bytes);
    let total = direct.by_ref().count();
    let records = direct.stats().records;
    let mut ahead =
        DecodeAhead::spawn_counting(stream(&bytes), 3, 1, |s: &StreamDecoder| s.stats().records);
    assert!(ahead.on_own_thread());
    assert_eq!(ahead.counted(), 0, "nothing handed over yet");
    let mut counts = Vec::new();
    while ahead.next().is_some() {
        counts.push(ahead.counted());
    }
    assert_eq!(counts.len(), total);
    assert!(counts.windows(2).all(|w| w[0] <= w[1]), "{counts:?}");
    assert!(counts[0] > 0 && counts[0] < records, "{counts:?}");
    assert_eq!(counts.last(), Some(&records));
    assert_eq!(ahead.finish().stats().records, records);
}

#[test]
fn finishing_early_stops_the_decoding_thread() {
    let bytes = input();
    let mut ahead = DecodeAhead::spawn(stream(&bytes), 1, 1);
    assert!(ahead.next().is_some());
    // The thread is blocked on a full hand-over; finishing must not wait for the rest.
    let back = ahead.finish();
    assert!(back.stats().records < stream(&bytes).by_ref().count() as u64);
}

#[test]
#[should_panic(expected = "decoder bug")]
fn a_panic_while_decoding_reaches_the_consumer() {
    let bytes = input();
    let mut seen = 0;
    let failing = stream(&bytes).inspect(move |_| {
        seen += 1;
        if seen == 5 {
            panic!("decoder bug");
        }
    });
    let mut ahead = DecodeAhead::spawn(failing, 2, 1);
    for _ in ahead.by_ref() {}
    drop(ahead.finish());
}
