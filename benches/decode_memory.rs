//! Peak memory of `mailsentry decode`'s stream decoder against input size: the same ~1.5 KB
//! MailItemsAccessed NDJSON records, 10 thousand to 1 million of them (11 MB to 1.1 GB), each
//! decoded in a fresh child process that reports its peak resident set (`VmHWM`).
//!
//! `cargo bench -p mailsentry-ingest --bench decode_memory`; results in benches/RESULTS.md.
//! Set `MAILSENTRY_MEM_SIZES=10000,100000` to choose the sizes.

use mailsentry_ingest::{DecodeOptions, Decoded, StreamDecoder};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::process::Command;
use std::time::Instant;

#[path = "shipped_allocator.rs"]
mod shipped_allocator;

#[path = "ual_records.rs"]
mod ual_records;

const CHILD_ENV: &str = "MAILSENTRY_MEM_CHILD";

fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc/self/status")
}

/// Child: decode the file, print `events peak_kib seconds`.
fn child(path: &Path) {
    let start = Instant::now();
    let stream = StreamDecoder::open(path, DecodeOptions::default()).expect("open input");
    let mut events = 0u64;
    for item in stream {
        if let Decoded::Event(e) = item {
            events += 1;
            std::hint::black_box(&e);
        }
    }
    println!(
        "{events} {} {:.3}",
        peak_rss_kib(),
        start.elapsed().as_secs_f64()
    );
}

fn write_input(path: &Path, records: usize) {
    let mut out = BufWriter::new(std::fs::File::create(path).expect("create input"));
    for i in 0..records {
        out.write_all(ual_records::mail_items_accessed(i).as_bytes())
            .unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.flush().unwrap();
}

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("decode_memory: bench");
        return;
    }
    let sizes: Vec<usize> = std::env::var("MAILSENTRY_MEM_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".into())
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .expect("MAILSENTRY_MEM_SIZES: comma-separated counts")
        })
        .collect();
    let dir = tempfile::tempdir().expect("temp dir");
    let exe = std::env::current_exe().expect("own path");
    println!("| records | file MB | events | peak RSS MiB | seconds | records/s |");
    println!("|---|---|---|---|---|---|");
    for records in sizes {
        let path = dir.path().join(format!("ual-{records}.ndjson"));
        write_input(&path, records);
        let size = std::fs::metadata(&path).unwrap().len();
        let out = Command::new(&exe)
            .env(CHILD_ENV, &path)
            .output()
            .expect("run child");
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts = text.split_whitespace();
        let events: u64 = parts.next().unwrap().parse().unwrap();
        let peak_kib: u64 = parts.next().unwrap().parse().unwrap();
        let secs: f64 = parts.next().unwrap().parse().unwrap();
        assert_eq!(events, records as u64, "every record decodes");
        println!(
            "| {records} | {:.0} | {events} | {:.1} | {secs:.2} | {:.0} |",
            size as f64 / 1e6,
            peak_kib as f64 / 1024.0,
            records as f64 / secs
        );
        std::fs::remove_file(&path).ok();
    }
}
