//! Simulation rate and peak memory: `mailsentry_sim::simulate` for 7 and 28 days of the same
//! tenants, each in a fresh child process that reports records written, seconds and peak
//! resident set (`VmHWM`). Memory should not grow with the number of days (the simulator
//! streams to disk).
//!
//! `cargo bench -p mailsentry-sim --bench simulate_rate`; results in benches/RESULTS.md.
//! `MAILSENTRY_SIM_BENCH="7,28"` chooses the day counts, `MAILSENTRY_SIM_TENANTS` (6) and
//! `MAILSENTRY_SIM_SCALE` (2) the size of a day.

use mailsentry_sim::{simulate, SimConfig};
use std::process::Command;
use std::time::Instant;

const CHILD_ENV: &str = "MAILSENTRY_SIM_CHILD";

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .expect("read /proc/self/status")
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM")
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    if let Ok(days) = std::env::var(CHILD_ENV) {
        let dir = tempfile::tempdir().expect("temp dir");
        let config = SimConfig {
            seed: 7,
            days: days.parse().expect("days"),
            tenants: env_or("MAILSENTRY_SIM_TENANTS", 6),
            scale: env_or("MAILSENTRY_SIM_SCALE", 2.0),
            ..Default::default()
        };
        let start = Instant::now();
        let report = simulate(&config, dir.path()).expect("simulate");
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{} {} {secs:.3} {}",
            report.total_records(),
            report.bytes,
            peak_rss_kib()
        );
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        println!("simulate_rate: bench");
        return;
    }
    let exe = std::env::current_exe().expect("own path");
    println!("| days | records | MB written | seconds | records/s | peak RSS MiB |");
    println!("|---|---|---|---|---|---|");
    for days in std::env::var("MAILSENTRY_SIM_BENCH")
        .unwrap_or_else(|_| "7,28".into())
        .split(',')
    {
        let out = Command::new(&exe)
            .env(CHILD_ENV, days.trim())
            .output()
            .expect("run child");
        assert!(out.status.success(), "child failed: {out:?}");
        let text = String::from_utf8_lossy(&out.stdout);
        let f: Vec<f64> = text
            .split_whitespace()
            .map(|x| x.parse().unwrap())
            .collect();
        println!(
            "| {} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} |",
            days.trim(),
            f[0],
            f[1] / 1e6,
            f[2],
            f[0] / f[2],
            f[3] / 1024.0
        );
    }
}
