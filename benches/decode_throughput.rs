//! Decoding throughput of Management API MailItemsAccessed NDJSON (~1.5 KB records) against a
//! parse-only baseline (serde_json into a minimal struct) measured in the same run.
//!
//! `cargo bench -p mailsentry-ingest --bench decode_throughput`; results in benches/RESULTS.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailsentry_ingest::{DecodeOptions, Decoded, StreamDecoder};
use std::sync::Arc;

#[path = "shipped_allocator.rs"]
mod shipped_allocator;

#[path = "ual_records.rs"]
mod ual_records;

#[path = "parse_only.rs"]
mod parse_only;

const RECORDS: usize = 20_000;

/// Runs `parse` on a mutable copy of each line (simd-json parses in place), counting `true`s.
fn for_each_line_copy(
    input: &[u8],
    scratch: &mut Vec<u8>,
    mut parse: impl FnMut(&mut [u8]) -> bool,
) -> u64 {
    let mut n = 0u64;
    for line in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
        scratch.clear();
        scratch.extend_from_slice(line);
        n += parse(scratch) as u64;
    }
    black_box(n)
}

fn bench(c: &mut Criterion) {
    // Leaked so each iteration reads it in place (a clone per iteration was 2% of the time).
    let input: &'static [u8] = ual_records::ndjson(RECORDS).leak();
    let mut group = c.benchmark_group("ual_mail_items_accessed_ndjson");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.sample_size(20);

    group.bench_function("parse_only_serde_minimal", |b| {
        b.iter(|| black_box(parse_only::parse_all(input)))
    });

    group.bench_function("breakdown_framing_only", |b| {
        b.iter(|| {
            let mut framer = mailsentry_ingest::json_framing::JsonFramer::new(
                std::io::Cursor::new(input),
                1 << 20,
            );
            let mut n = 0u64;
            while let Some(item) = framer.next_item().unwrap() {
                if let mailsentry_ingest::json_framing::Framed::Record { .. } = item {
                    n += framer.record().unwrap().len() as u64;
                }
            }
            black_box(n)
        })
    });

    group.bench_function("breakdown_record_parse_only", |b| {
        b.iter(|| {
            let mut n = 0u64;
            for line in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let rec: mailsentry_ingest::json_record::JsonRecord =
                    serde_json::from_slice(line).unwrap();
                n += rec.operation_count.is_some() as u64;
            }
            black_box(n)
        })
    });

    group.bench_function("breakdown_record_parse_simd_json", |b| {
        let mut buffers = simd_json::Buffers::new(2048);
        let mut scratch = Vec::new();
        b.iter(|| {
            for_each_line_copy(input, &mut scratch, |line| {
                let rec: mailsentry_ingest::json_record::JsonRecord =
                    simd_json::serde::from_slice_with_buffers(line, &mut buffers).unwrap();
                rec.operation_count.is_some()
            })
        })
    });

    group.bench_function("breakdown_record_parse_strict", |b| {
        let mut buffers = mailsentry_ingest::strict_json::StrictBuffers::default();
        let mut order = mailsentry_ingest::loose_json::KeyOrder::default();
        b.iter(|| {
            let mut n = 0u64;
            for line in input.split(|&c| c == b'\n').filter(|l| !l.is_empty()) {
                let text = std::str::from_utf8(line).unwrap();
                let mut rec = mailsentry_ingest::json_record::JsonRecord::default();
                mailsentry_ingest::strict_json::read_strict(text, &mut buffers, |de| {
                    mailsentry_ingest::json_record::JsonRecord::fill_strict(
                        de,
                        &mut rec,
                        Some(&mut order),
                    )
                })
                .unwrap();
                n += rec.operation_count.is_some() as u64;
            }
            black_box(n)
        })
    });

    group.bench_function("breakdown_simd_json_tape_only", |b| {
        let mut buffers = simd_json::Buffers::new(2048);
        let mut scratch = Vec::new();
        b.iter(|| {
            for_each_line_copy(input, &mut scratch, |line| {
                simd_json::to_tape_with_buffers(line, &mut buffers).is_ok()
            })
        })
    });

    group.bench_function("mailsentry_decode", |b| {
        b.iter(|| {
            let stream = StreamDecoder::from_reader(
                Arc::from("bench"),
                Box::new(std::io::Cursor::new(input)),
                DecodeOptions::default(),
                None,
            );
            let mut events = 0u64;
            for item in stream {
                if let Decoded::Event(e) = item {
                    events += 1;
                    black_box(&e);
                }
            }
            assert_eq!(events, RECORDS as u64);
            events
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
