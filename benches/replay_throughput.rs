//! End-to-end replay throughput (decode → sessionize → score → alerts) beside a parse-only
//! baseline in the same run, on simulated Management API NDJSON (the bulk of real input); one
//! core, and last the two-thread replay `mailsentry replay` runs.
//!
//! `cargo bench -p mailsentry-detect --bench replay_throughput`; results in benches/RESULTS.md.

use criterion::{black_box, criterion_group, criterion_main, Criterion, Throughput};
use mailsentry_detect::{DetectConfig, Detector, Enrichment};
use mailsentry_ingest::{DecodeOptions, Decoded, StreamDecoder};
use std::path::Path;
use std::sync::Arc;

#[path = "shipped_allocator.rs"]
mod shipped_allocator;

#[path = "parse_only.rs"]
mod parse_only;

fn ndjson_files(dir: &Path, out: &mut Vec<u8>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            ndjson_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "ndjson") {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let config = mailsentry_sim::SimConfig {
        seed: 3,
        days: 14,
        tenants: 4,
        scale: 1.0,
        ..Default::default()
    };
    mailsentry_sim::simulate(&config, dir.path()).unwrap();
    let mut input = Vec::new();
    ndjson_files(&dir.path().join("logs/m365-audit"), &mut input);
    let input: &'static [u8] = input.leak();
    let records = input.iter().filter(|&&b| b == b'\n').count();
    let mut enrichment = Enrichment::none();
    enrichment.load(&dir.path().join("asn.csv")).unwrap();
    enrichment.load(&dir.path().join("country.csv")).unwrap();
    let enrichment = Arc::new(enrichment);
    eprintln!(
        "{records} Management API records, {:.1} MB",
        input.len() as f64 / 1e6
    );

    let mut group = c.benchmark_group("replay_sim_management_api");
    group.throughput(Throughput::Elements(records as u64));
    group.sample_size(10);
    group.bench_function("parse_only_serde_minimal", |b| {
        b.iter(|| black_box(parse_only::parse_all(input)))
    });
    let decoder = || {
        StreamDecoder::from_reader(
            Arc::from("bench"),
            Box::new(std::io::Cursor::new(input)),
            DecodeOptions::default(),
            None,
        )
    };
    group.bench_function("decode_only", |b| {
        b.iter(|| black_box(decoder().filter(|d| matches!(d, Decoded::Event(_))).count()))
    });
    // The detector alone, on events decoded beforehand.
    let events: Vec<_> = decoder()
        .filter_map(|d| match d {
            Decoded::Event(e) => Some(e),
            _ => None,
        })
        .collect();
    group.bench_function("breakdown_detect_only", |b| {
        b.iter(|| {
            let mut detector = Detector::new(DetectConfig::default(), enrichment.clone());
            for e in &events {
                detector.process(e);
            }
            detector.finish();
            black_box(detector.stats().evaluations)
        })
    });
    group.bench_function("replay_decode_detect", |b| {
        b.iter(|| {
            let stream = decoder();
            let mut detector = Detector::new(DetectConfig::default(), enrichment.clone());
            for item in stream {
                if let Decoded::Event(e) = item {
                    detector.process(&e);
                }
            }
            detector.finish();
            black_box(
                detector
                    .alerts(chrono::DateTime::from_timestamp(0, 0).unwrap())
                    .len(),
            )
        })
    });
    // What `mailsentry replay` does on a machine with two cores or more: decoding on a thread
    // of its own, ahead of the detector (two threads, so not comparable with the one-core
    // rows above; reported beside them).
    group.bench_function("replay_decode_ahead_two_threads", |b| {
        b.iter(|| {
            let mut ahead = mailsentry_ingest::DecodeAhead::spawn(decoder(), 512, 4).unwrap();
            let mut detector = Detector::new(DetectConfig::default(), enrichment.clone());
            for item in ahead.by_ref() {
                if let Decoded::Event(e) = item {
                    detector.process(&e);
                }
            }
            drop(ahead.finish());
            detector.finish();
            black_box(
                detector
                    .alerts(chrono::DateTime::from_timestamp(0, 0).unwrap())
                    .len(),
            )
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
