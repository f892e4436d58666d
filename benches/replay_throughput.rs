//! End-to-end replay throughput (decode → sessionize → score → alerts) beside a parse-only
//! baseline in the same run, on simulated Management API NDJSON (the bulk of real input); one
//! core, and the two-thread replay `mailsentry replay` runs; last, the one-core replay's share of
//! parse-only measured in back-to-back pairs (`paired_share`), which the drift of a shared
//! machine between criterion's rows moves far less. For reading the rows, serde_json parsing
//! just the fields the replay reads (`parse_replay_fields_serde`).
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
    // For reading the rows above, not a target's baseline: serde_json reading just what the
    // replay reads from each record.
    group.bench_function("parse_replay_fields_serde", |b| {
        b.iter(|| black_box(parse_only::parse_all_replay_fields(input)))
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
        b.iter(|| black_box(replay(decoder(), &enrichment)))
    });
    // What `mailsentry replay` does on a machine with two cores or more: decoding on a thread
    // of its own, ahead of the detector (two threads, so not comparable with the one-core
    // rows above; reported beside them).
    group.bench_function("replay_decode_ahead_two_threads", |b| {
        b.iter(|| {
            let mut ahead = mailsentry_ingest::DecodeAhead::spawn(
                decoder(),
                mailsentry_ingest::DECODE_AHEAD_BATCH,
                mailsentry_ingest::DECODE_AHEAD_DEPTH,
            );
            let alerts = replay(ahead.by_ref(), &enrichment);
            drop(ahead.finish());
            black_box(alerts)
        })
    });
    group.finish();
    paired_share(input, records, &decoder, &enrichment);
}

/// The replay of a decoded stream: sessionize, score, alerts; returns the number of alerts.
fn replay(stream: impl Iterator<Item = Decoded>, enrichment: &Arc<Enrichment>) -> usize {
    let mut detector = Detector::new(DetectConfig::default(), enrichment.clone());
    for item in stream {
        if let Decoded::Event(e) = item {
            detector.process(&e);
        }
    }
    detector.finish();
    detector
        .alerts(chrono::DateTime::from_timestamp(0, 0).unwrap())
        .len()
}

/// The one-core replay's share of parse-only, measured in pairs: criterion runs its rows one
/// after the other, and on a shared machine whose speed drifts by ±20% between rows the ratio
/// of two medians taken minutes apart moves with it. Here each round times parse-only and
/// the replay back to back (alternating which goes first) and takes their ratio; the median
/// ratio over the rounds is printed. Skipped when a filter names other rows (profiling).
fn paired_share(
    input: &'static [u8],
    records: usize,
    decoder: &dyn Fn() -> StreamDecoder,
    enrichment: &Arc<Enrichment>,
) {
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    if !filters.iter().all(|f| "paired_share".contains(f.as_str())) {
        return;
    }
    let parse_timed = || {
        let t = std::time::Instant::now();
        black_box(parse_only::parse_all(input));
        t.elapsed().as_secs_f64()
    };
    let replay_timed = || {
        let t = std::time::Instant::now();
        black_box(replay(decoder(), enrichment));
        t.elapsed().as_secs_f64()
    };
    const ROUNDS: usize = 21;
    let (mut shares, mut parse_rates, mut replay_rates) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        let (p, r) = if round % 2 == 0 {
            let p = parse_timed();
            (p, replay_timed())
        } else {
            let r = replay_timed();
            (parse_timed(), r)
        };
        shares.push(p / r);
        parse_rates.push(records as f64 / p / 1e3);
        replay_rates.push(records as f64 / r / 1e3);
    }
    for v in [&mut shares, &mut parse_rates, &mut replay_rates] {
        v.sort_by(f64::total_cmp);
    }
    let (lo, mid, hi) = (ROUNDS / 4, ROUNDS / 2, ROUNDS - 1 - ROUNDS / 4);
    println!(
        "replay_sim_management_api/paired_share: replay_decode_detect / parse_only_serde_minimal \
         over {ROUNDS} back-to-back pairs: median {:.1}% (quartiles {:.1}-{:.1}%); \
         medians {:.0} k and {:.0} k records/s",
        100.0 * shares[mid],
        100.0 * shares[lo],
        100.0 * shares[hi],
        replay_rates[mid],
        parse_rates[mid],
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
