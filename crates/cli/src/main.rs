//! The `mailsentry` binary.

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use mailsentry_ingest::{
    collect_input_files, DecodeOptions, DecodeStats, Decoded, InputFormat, StreamDecoder,
    DEFAULT_MAX_RECORD_SIZE,
};
use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

#[derive(Parser)]
#[command(
    name = "mailsentry",
    version,
    about = "Catch the misuse of trusted mail connectors"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Decode log files into normalized events (JSON lines on stdout); rejects go to stderr as
    /// `file:line: class: reason`, then a summary.
    Decode(DecodeArgs),
    /// Simulate Microsoft 365 tenants and their connectors: logs in the real formats, IP-to-ASN
    /// and country tables, and labels.json with the attack campaigns and benign confounders.
    Simulate(SimulateArgs),
}

#[derive(clap::Args)]
struct SimulateArgs {
    /// Output directory (created if missing; existing files of the same names are replaced).
    #[arg(long)]
    out: PathBuf,
    /// Seed: the same seed and parameters write the same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Days to simulate.
    #[arg(long, default_value_t = 21)]
    days: u32,
    /// Tenants.
    #[arg(long, default_value_t = 3)]
    tenants: u32,
    /// Mailboxes per tenant relative to the tenant templates (0.25 for a small demo, 4 for a
    /// large benchmark set).
    #[arg(long, default_value_t = 1.0)]
    scale: f64,
    /// First day, UTC (YYYY-MM-DD).
    #[arg(long, default_value = "2024-03-01")]
    start: chrono::NaiveDate,
    /// Days before the first attack (the detector's learning period).
    #[arg(long, default_value_t = 10)]
    learning_days: u32,
    /// Continuity monitor poll interval, minutes.
    #[arg(long, default_value_t = 15)]
    poll_minutes: u32,
    /// Write every log file gzip-compressed.
    #[arg(long)]
    gzip: bool,
}

#[derive(clap::Args)]
struct DecodeArgs {
    /// Force one format instead of sniffing each file:
    /// json, purview-csv, iis-w3c, ews-log, eml, mbox.
    #[arg(long, value_parser = parse_format)]
    format: Option<InputFormat>,
    /// Largest record accepted, in bytes; larger records are rejected as `oversize`.
    #[arg(long, default_value_t = DEFAULT_MAX_RECORD_SIZE)]
    max_record_size: usize,
    /// Exit with status 1 when any record was rejected.
    #[arg(long)]
    strict: bool,
    /// Do not print each reject (the summary still counts them).
    #[arg(long)]
    quiet_rejects: bool,
    /// Files or directories (walked recursively); `-` reads standard input.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn parse_format(s: &str) -> Result<InputFormat, String> {
    InputFormat::from_name(s).ok_or_else(|| {
        let names: Vec<&str> = InputFormat::ALL.iter().map(|f| f.name()).collect();
        format!("unknown format {s:?}; one of: {}", names.join(", "))
    })
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Decode(args) => decode(args),
        Command::Simulate(args) => simulate(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("mailsentry: {e:#}");
            ExitCode::from(2)
        }
    }
}

/// Writes events and rejects; returns false when stdout was closed (e.g. `| head`).
fn drain(
    stream: &mut StreamDecoder,
    out: &mut impl Write,
    err: &mut impl Write,
    quiet_rejects: bool,
) -> Result<bool> {
    for item in stream.by_ref() {
        match item {
            Decoded::Event(event) => {
                let written = serde_json::to_writer(&mut *out, &event)
                    .map_err(io::Error::from)
                    .and_then(|_| out.write_all(b"\n"));
                if let Err(e) = written {
                    if e.kind() == io::ErrorKind::BrokenPipe {
                        return Ok(false);
                    }
                    return Err(e).context("writing events");
                }
            }
            Decoded::Reject(reject) => {
                if !quiet_rejects {
                    writeln!(err, "{reject}").ok();
                }
            }
        }
    }
    Ok(true)
}

fn decode(args: DecodeArgs) -> Result<ExitCode> {
    let options = DecodeOptions {
        max_record_size: args.max_record_size,
        format: args.format,
    };
    let stdout = io::stdout();
    let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
    let stderr = io::stderr();
    let mut err = BufWriter::new(stderr.lock());
    let mut total = DecodeStats::default();
    let mut unreadable_paths = 0;
    let (stdin_paths, file_paths): (Vec<PathBuf>, Vec<PathBuf>) =
        args.paths.into_iter().partition(|p| p.as_os_str() == "-");
    let mut open = true;
    if !stdin_paths.is_empty() {
        let mut stream =
            StreamDecoder::from_reader(Arc::from("-"), Box::new(io::stdin()), options, None);
        open = drain(&mut stream, &mut out, &mut err, args.quiet_rejects)?;
        total.merge(stream.stats());
    }
    for entry in collect_input_files(&file_paths) {
        if !open {
            break;
        }
        let path = match entry {
            Ok(p) => p,
            Err((p, e)) => {
                writeln!(err, "{}: cannot read: {e}", p.display()).ok();
                unreadable_paths += 1;
                continue;
            }
        };
        let mut stream = match StreamDecoder::open(&path, options) {
            Ok(s) => s,
            Err(e) => {
                writeln!(err, "{}: cannot open: {e}", path.display()).ok();
                unreadable_paths += 1;
                continue;
            }
        };
        open = drain(&mut stream, &mut out, &mut err, args.quiet_rejects)?;
        total.merge(stream.stats());
    }
    if open {
        if let Err(e) = out.flush() {
            if e.kind() != io::ErrorKind::BrokenPipe {
                return Err(e).context("writing events");
            }
        }
    }
    writeln!(err, "decode summary: {total}").ok();
    err.flush().ok();
    if unreadable_paths > 0 {
        return Ok(ExitCode::from(2));
    }
    if args.strict && total.rejected_total() > 0 {
        return Ok(ExitCode::from(1));
    }
    Ok(ExitCode::SUCCESS)
}

fn simulate(args: SimulateArgs) -> Result<ExitCode> {
    let command = std::env::args()
        .skip(1)
        .map(|a| if a.contains(' ') { format!("{a:?}") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let config = mailsentry_sim::SimConfig {
        seed: args.seed,
        days: args.days,
        tenants: args.tenants,
        scale: args.scale,
        start: args.start,
        learning_days: args.learning_days,
        gzip: args.gzip,
        poll_minutes: args.poll_minutes,
        command: format!("mailsentry {command}"),
        ..Default::default()
    };
    let started = std::time::Instant::now();
    let report = mailsentry_sim::simulate(&config, &args.out)
        .with_context(|| format!("simulating into {}", args.out.display()))?;
    let secs = started.elapsed().as_secs_f64();
    let by_format: Vec<String> = report
        .records
        .iter()
        .map(|(f, n)| format!("{f} {n}"))
        .collect();
    eprintln!(
        "simulate summary: records {} ({}), files {}, {:.1} MB, campaigns {}, records suppressed by throttling {}, {:.1} s ({:.0} records/s); labels in {}",
        report.total_records(),
        by_format.join(", "),
        report.files,
        report.bytes as f64 / 1e6,
        report.campaigns,
        report.throttled_records,
        secs,
        report.total_records() as f64 / secs.max(1e-9),
        args.out.join("labels.json").display()
    );
    Ok(ExitCode::SUCCESS)
}
