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

/// mimalloc: decoding allocates many short strings per record, and glibc malloc/free were 13%
/// of decode time (benches/RESULTS.md); the benchmarks use the same allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// Replay logs through the full detector: decode every file under PATH (format sniffed per
    /// file, mixed formats allowed), merge in event-time order, detect, and write alerts as
    /// native JSON lines (stdout unless --alerts-out); a summary goes to stderr.
    Replay(ReplayArgs),
    /// Run the service: event ingest, detector, alert store, API, feed and web UI.
    Serve(Box<ServeArgs>),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Publish JSON log files (Management API, Entra exports ...) to a Kafka topic, one record
    /// per message, keyed by tenant, in event-time order; creates the topic if missing.
    Publish(PublishArgs),
    /// Write the per-session feature frame (Parquet): decode the logs, sessionize and score
    /// them with the live detector, one row per session with every feature the scorers use
    /// and, with --labels, the label.
    Features(FeaturesArgs),
    /// Fit the model layer (Gaussian-mixture density with conformal calibration; with labels, a
    /// logistic-regression re-ranker) and write models/NAME: model.json and MODEL.md.
    Train(TrainArgs),
    /// Evaluate on labelled data: the detector with and without a model beside the reference
    /// rules; metrics.json, REPORT.md and SVG plots in --report.
    Eval(EvalArgs),
}

#[derive(clap::Args)]
struct FeaturesArgs {
    /// Logs (files or directories), e.g. a `mailsentry simulate` output.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// The Parquet file to write.
    #[arg(long)]
    out: PathBuf,
    /// Labels: labels.json ground truth, or analyst-labelled alerts exported from the API.
    /// Default: DATA/labels.json when present.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// TOML configuration (its `[detect]` table).
    #[arg(long)]
    config: Option<PathBuf>,
    /// IP-to-ASN / country databases (default: DATA/asn.csv and DATA/country.csv when present).
    #[arg(long)]
    asn_db: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct TrainArgs {
    /// Logs (a directory) or a feature frame written by `mailsentry features` (.parquet).
    #[arg(long)]
    data: PathBuf,
    /// The model directory to write (model.json, MODEL.md).
    #[arg(long)]
    out: PathBuf,
    /// Labels: labels.json ground truth, or analyst-labelled alerts exported from the API.
    /// Default: DATA/labels.json when DATA is a directory holding one.
    #[arg(long)]
    labels: Option<PathBuf>,
    /// Seed of every random choice: the same data and seed give the same model.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Mixture components.
    #[arg(long, default_value_t = 4)]
    components: usize,
    /// The model's weight in the detector's combination of signals.
    #[arg(long, default_value_t = 0.3)]
    weight: f64,
    /// Model name (default: the --out directory's name), versioned with the training window's
    /// last day.
    #[arg(long)]
    name: Option<String>,
    /// TOML configuration (its `[detect]` table), when DATA is logs.
    #[arg(long)]
    config: Option<PathBuf>,
    /// IP-to-ASN / country databases, when DATA is logs (default: DATA/asn.csv, country.csv).
    #[arg(long)]
    asn_db: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct EvalArgs {
    /// Labelled logs, e.g. a `mailsentry simulate` output on a seed the model was not trained on.
    #[arg(long)]
    data: PathBuf,
    /// Ground truth (default: DATA/labels.json).
    #[arg(long)]
    labels: Option<PathBuf>,
    /// The model to evaluate (ablation: with and without it).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Directory for metrics.json, REPORT.md and the SVG plots.
    #[arg(long)]
    report: PathBuf,
    /// TOML configuration (its `[detect]` table).
    #[arg(long)]
    config: Option<PathBuf>,
    /// IP-to-ASN / country databases (default: DATA/asn.csv and DATA/country.csv when present).
    #[arg(long)]
    asn_db: Vec<PathBuf>,
}

#[derive(clap::Args)]
struct PublishArgs {
    /// Bootstrap servers (host:port,...).
    #[arg(long)]
    brokers: String,
    /// Topic.
    #[arg(long)]
    topic: String,
    /// Partitions of the topic when it has to be created.
    #[arg(long, default_value_t = 4)]
    partitions: i32,
    /// Extra librdkafka producer property KEY=VALUE (security.protocol, sasl.* ...); repeatable.
    #[arg(long = "kafka-property", value_parser = parse_property)]
    properties: Vec<(String, String)>,
    /// Files or directories.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

fn parse_property(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .filter(|(k, _)| !k.is_empty())
        .ok_or_else(|| format!("{s:?} is not KEY=VALUE"))
}

#[derive(clap::Args)]
struct ServeArgs {
    /// TOML configuration; its `[detect]` table overrides the detector's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Replay the committed demo set (datasets/demo) through the live pipeline at start.
    #[arg(long)]
    demo: bool,
    /// How much faster than real time the demo's event time runs (its two weeks take about a
    /// minute at the default); 0 replays as fast as possible.
    #[arg(long, default_value_t = 20_000.0)]
    demo_speed: f64,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: std::net::SocketAddr,
    /// Model layer: a directory written by `mailsentry train` (overrides the config's
    /// `model`). Its file is watched: a retrained model is swapped in without a restart, and
    /// one that does not load is refused while the current one stays.
    #[arg(long)]
    model: Option<PathBuf>,
    /// State directory (SQLite store).
    #[arg(long = "data-dir", alias = "data", default_value = "mailsentry-data")]
    data: PathBuf,
    /// Log format on stderr: `text` or `json` (one JSON object per line).
    #[arg(long, default_value = "text", value_parser = ["text", "json"])]
    log_format: String,
    /// IP-to-ASN / IP-to-country database (.mmdb or ip-location-db CSV); repeatable.
    #[arg(long)]
    asn_db: Vec<PathBuf>,
    /// Largest accepted request body, bytes.
    #[arg(long, default_value_t = mailsentry_server::DEFAULT_MAX_BODY)]
    max_body: usize,
    /// Keep alerts in PostgreSQL (connection string in `MAILSENTRY_POSTGRES`, e.g.
    /// `host=db user=mailsentry dbname=mailsentry`) instead of SQLite, so several instances share
    /// one feed and one UI.
    #[arg(long)]
    postgres: bool,
    /// Tail a directory of line-oriented logs (NDJSON, IIS W3C, EWS / Purview CSV) dropped by a
    /// collector, with positions checkpointed; repeatable.
    #[arg(long)]
    tail: Vec<PathBuf>,
    /// Read this Entra tenant's audit log from the Office 365 Management Activity API (app
    /// `--m365-client-id`, secret in `MAILSENTRY_M365_CLIENT_SECRET`).
    #[arg(long, requires = "m365_client_id")]
    m365_tenant: Option<String>,
    /// The app (client) id for the Management Activity API.
    #[arg(long, requires = "m365_tenant")]
    m365_client_id: Option<String>,
    /// Authenticate to the Management Activity API with this certificate (PEM) instead of a
    /// secret; needs --m365-key.
    #[arg(long, requires = "m365_key")]
    m365_cert: Option<PathBuf>,
    /// The RSA private key (PEM) of --m365-cert.
    #[arg(long, requires = "m365_cert")]
    m365_key: Option<PathBuf>,
    /// Management Activity API base URL (sovereign clouds differ).
    #[arg(long, default_value = "https://manage.office.com")]
    m365_api_base: String,
    /// Token endpoint (default: the commercial cloud's for the tenant).
    #[arg(long)]
    m365_token_url: Option<String>,
    /// Consume raw log records from Kafka (or Event Hubs' Kafka endpoint) at these bootstrap
    /// servers, in the consumer group --kafka-group, from --kafka-topic.
    #[arg(long, requires = "kafka_topic")]
    kafka_brokers: Option<String>,
    /// The topic of raw log records (keyed by tenant).
    #[arg(long, requires = "kafka_brokers")]
    kafka_topic: Option<String>,
    /// The consumer group; instances in one group share the topic's partitions.
    #[arg(long, default_value = "mailsentry")]
    kafka_group: String,
    /// Publish every alert change (native JSON, keyed by alert id) to this topic.
    #[arg(long, requires = "kafka_brokers")]
    kafka_alerts_topic: Option<String>,
    /// Extra librdkafka property KEY=VALUE for the consumer and the alert producer
    /// (security.protocol, sasl.mechanism, session.timeout.ms ...); repeatable.
    #[arg(long = "kafka-property", value_parser = parse_property)]
    kafka_properties: Vec<(String, String)>,
    /// Seconds between Management Activity API polls.
    #[arg(long, default_value_t = 300)]
    m365_poll_secs: u64,
    /// Push every alert change to this webhook (signed with `MAILSENTRY_WEBHOOK_SECRET`).
    #[arg(long)]
    webhook: Option<String>,
    /// Push every alert change as RFC 5424 syslog with CEF to this TCP collector (host:port).
    #[arg(long)]
    syslog: Option<String>,
    /// Send syslog over TLS, trusting the CA certificates in this PEM file (the host part of
    /// --syslog is the name checked in the collector's certificate).
    #[arg(long, requires = "syslog")]
    syslog_ca: Option<PathBuf>,
    /// Push every alert change to this Splunk HEC base URL (token in `MAILSENTRY_HEC_TOKEN`).
    #[arg(long)]
    splunk_hec: Option<String>,
    /// Longest time between detector checkpoints, seconds (also every 200 batches and at
    /// shutdown).
    #[arg(long, default_value_t = 60)]
    checkpoint_secs: u64,
    /// Requests per second per client (token); bursts of four seconds' worth; over it, 429.
    #[arg(long, default_value_t = 50.0)]
    rate_limit: f64,
    /// Serve HTTPS with this PEM certificate chain (TLS 1.3, TLS 1.2 ECDHE only).
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Create a token and print it once (only its hash is stored).
    Create {
        /// Scopes, comma-separated: ingest, read, triage, admin.
        #[arg(long, required = true, value_delimiter = ',')]
        scope: Vec<String>,
        /// A name to recognise it by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// State directory (SQLite store).
        #[arg(long = "data-dir", alias = "data", default_value = "mailsentry-data")]
        data: PathBuf,
    },
}

#[derive(clap::Args)]
struct ReplayArgs {
    /// TOML configuration; its `[detect]` table overrides the detector's defaults.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Directory holding the detector's state: restored at start when present, saved at the
    /// end (open sessions stay open, so a later replay continues where this one stopped).
    #[arg(long)]
    state: Option<PathBuf>,
    /// Write alerts to this file instead of stdout.
    #[arg(long)]
    alerts_out: Option<PathBuf>,
    /// IP-to-ASN / IP-to-country database: MaxMind .mmdb (GeoLite2-ASN, GeoLite2-Country,
    /// DB-IP) or ip-location-db CSV; repeat for several.
    #[arg(long)]
    asn_db: Vec<PathBuf>,
    /// Do not print each reject (the summary still counts them).
    #[arg(long)]
    quiet_rejects: bool,
    /// Largest record accepted, in bytes.
    #[arg(long, default_value_t = DEFAULT_MAX_RECORD_SIZE)]
    max_record_size: usize,
    /// Model layer: a directory written by `mailsentry train` (overrides the config's `model`).
    #[arg(long)]
    model: Option<PathBuf>,
    /// Files or directories (walked recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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
    /// Times each of the eight attack scenarios is played (on different tenants and days).
    #[arg(long, default_value_t = 1)]
    campaign_rounds: usize,
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
        Command::Replay(args) => replay(args),
        Command::Serve(args) => serve(*args),
        Command::Token(TokenCommand::Create { scope, name, data }) => {
            token_create(&scope, &name, &data)
        }
        Command::Publish(args) => publish(args),
        Command::Features(args) => features(args),
        Command::Train(args) => train(args),
        Command::Eval(args) => eval(args),
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
        campaign_rounds: args.campaign_rounds,
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

/// A configuration file: the `[detect]` table and the model layer's directory.
#[derive(serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    #[serde(default)]
    detect: Option<mailsentry_detect::DetectConfig>,
    /// `model = "models/default"`: the model layer (a `--model` flag overrides it).
    #[serde(default)]
    model: Option<PathBuf>,
}

fn read_config_file(path: Option<&PathBuf>) -> Result<ConfigFile> {
    let Some(path) = path else {
        return Ok(ConfigFile::default());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("config {}", path.display()))
}

fn load_config(path: Option<&PathBuf>) -> Result<mailsentry_detect::DetectConfig> {
    Ok(read_config_file(path)?.detect.unwrap_or_default())
}

/// The detector settings and the model directory (`--model`, else the configuration file's
/// `model`), from one read of the configuration file.
fn load_config_and_model(
    config: Option<&PathBuf>,
    model_flag: Option<&PathBuf>,
) -> Result<(mailsentry_detect::DetectConfig, Option<PathBuf>)> {
    let file = read_config_file(config)?;
    Ok((
        file.detect.unwrap_or_default(),
        model_flag.cloned().or(file.model),
    ))
}

/// Loads the model layer for a one-shot run (`replay`, `eval`).
fn load_model(dir: &std::path::Path) -> Result<Arc<mailsentry_detect::model::Model>> {
    let model = mailsentry_detect::model::Model::load(dir)?;
    eprintln!("model {} loaded from {}", model.name, dir.display());
    Ok(Arc::new(model))
}

/// Wall time for `created_at`: `SOURCE_DATE_EPOCH` when set (reproducible output), else now.
fn wall_time() -> chrono::DateTime<chrono::Utc> {
    std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .and_then(|s| s.parse::<i64>().ok())
        .and_then(|s| chrono::DateTime::from_timestamp(s, 0))
        .unwrap_or_else(chrono::Utc::now)
}

const STATE_FILE: &str = "detector.json";

fn replay(args: ReplayArgs) -> Result<ExitCode> {
    use mailsentry_detect::Detector;
    let started = std::time::Instant::now();
    let (config, model) = load_config_and_model(args.config.as_ref(), args.model.as_ref())?;
    let enrichment = Arc::new(asn_dbs(&args.asn_db)?);
    let mut detector = match &args.state {
        Some(dir) if dir.join(STATE_FILE).exists() => {
            let path = dir.join(STATE_FILE);
            let bytes =
                std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
            let mut d = Detector::restore(&bytes, enrichment.clone())
                .with_context(|| format!("{} is not a detector state", path.display()))?;
            if args.config.is_some() {
                d.set_config(config);
            }
            d
        }
        _ => Detector::new(config, enrichment.clone()),
    };
    if let Some(dir) = model {
        detector.set_model(Some(load_model(&dir)?));
    }
    let stderr = io::stderr();
    let mut err = BufWriter::new(stderr.lock());
    let mut unreadable = 0;
    let mut files = Vec::new();
    for entry in collect_input_files(&args.paths) {
        match entry {
            Ok(p) => files.push(p),
            Err((p, e)) => {
                writeln!(err, "{}: cannot read: {e}", p.display()).ok();
                unreadable += 1;
            }
        }
    }
    let options = DecodeOptions {
        max_record_size: args.max_record_size,
        format: None,
    };
    let merged = mailsentry_ingest::MergedEvents::new(files, options);
    for (p, e) in merged.failures() {
        writeln!(err, "{}: cannot open: {e}", p.display()).ok();
        unreadable += 1;
    }
    // Decoding and the event-time merge run on a thread of their own, ahead of the detector
    // on this one: on two cores the replay takes about as long as the slower of the two.
    let mut ahead = mailsentry_ingest::DecodeAhead::spawn(
        merged,
        mailsentry_ingest::DECODE_AHEAD_BATCH,
        mailsentry_ingest::DECODE_AHEAD_DEPTH,
    );
    for item in ahead.by_ref() {
        match item {
            Decoded::Event(e) => detector.process(&e),
            Decoded::Reject(r) => {
                if !args.quiet_rejects {
                    writeln!(err, "{r}").ok();
                }
            }
        }
    }
    let merged = ahead.finish();
    match &args.state {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let tmp = dir.join(format!("{STATE_FILE}.tmp"));
            std::fs::write(&tmp, detector.snapshot())
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, dir.join(STATE_FILE)).context("saving detector state")?;
        }
        None => detector.finish(),
    }
    let alerts = detector.alerts(wall_time());
    let mut sink: Box<dyn Write> = match &args.alerts_out {
        Some(path) => Box::new(BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(BufWriter::new(io::stdout().lock())),
    };
    for a in &alerts {
        serde_json::to_writer(&mut sink, a).context("writing alerts")?;
        sink.write_all(b"\n").context("writing alerts")?;
    }
    sink.flush().context("writing alerts")?;
    let stats = merged.stats();
    let d = detector.stats();
    let mut by_severity: std::collections::BTreeMap<&str, usize> = Default::default();
    for a in &alerts {
        *by_severity.entry(a.severity.name()).or_default() += 1;
    }
    let severities: Vec<String> = by_severity
        .iter()
        .map(|(k, v)| format!("{k} {v}"))
        .collect();
    let secs = started.elapsed().as_secs_f64();
    writeln!(err, "replay summary: {stats}").ok();
    writeln!(
        err,
        "  detector: events used {}, ignored {}, late {}, sessions {} (open {}, evicted {}, quarantined {}), tokens joined {}, throttled mailboxes (24 h blind spots) {}",
        d.used,
        d.ignored,
        d.late,
        d.sessions_opened,
        detector.open_sessions(),
        d.sessions_evicted,
        d.sessions_quarantined,
        d.tokens_joined,
        d.throttled_mailboxes
    )
    .ok();
    writeln!(
        err,
        "  alerts {} ({}); {:.1} s, {:.0} records/s",
        alerts.len(),
        if severities.is_empty() {
            "none".to_owned()
        } else {
            severities.join(", ")
        },
        secs,
        stats.records as f64 / secs.max(1e-9)
    )
    .ok();
    err.flush().ok();
    // Exit 0 unless it could not run: unreadable paths are reported, but only stop the
    // replay from counting as run when nothing at all could be read.
    if unreadable > 0 && stats.files == 0 {
        return Ok(ExitCode::from(2));
    }
    Ok(ExitCode::SUCCESS)
}

fn open_store(data: &std::path::Path) -> Result<mailsentry_store::Store> {
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    mailsentry_store::Store::open(&data.join("alerts.db"))
        .with_context(|| format!("opening the store in {}", data.display()))
}

fn token_create(scopes: &[String], name: &str, data: &std::path::Path) -> Result<ExitCode> {
    let mut parsed = Vec::new();
    for s in scopes {
        parsed.push(
            mailsentry_store::Scope::parse(s).with_context(|| {
                format!("unknown scope {s:?}; one of ingest, read, triage, admin")
            })?,
        );
    }
    let store = open_store(data)?;
    let token = store.create_token(name, &parsed)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// The demo set: `datasets/demo` under the current directory, else the one in the source tree
/// this binary was built from.
fn demo_dir() -> Option<PathBuf> {
    let here = PathBuf::from("datasets/demo");
    if here.join("labels.json").exists() {
        return Some(here);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../datasets/demo");
    built.join("labels.json").exists().then_some(built)
}

fn serve(args: ServeArgs) -> Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(io::stderr);
    if args.log_format == "json" {
        logs.json().init();
    } else {
        logs.init();
    }
    let (config, model) = load_config_and_model(args.config.as_ref(), args.model.as_ref())?;
    let mut enrichment = asn_dbs(&args.asn_db)?;
    let demo = if args.demo {
        let dir =
            demo_dir().context("--demo: datasets/demo not found (run from the repository)")?;
        for table in ["asn.csv", "country.csv"] {
            enrichment
                .load(&dir.join(table))
                .context("loading the demo's tables")?;
        }
        Some(dir)
    } else {
        None
    };
    let store: Arc<dyn mailsentry_store::AlertStore> = if args.postgres {
        let params =
            std::env::var("MAILSENTRY_POSTGRES").context("--postgres needs MAILSENTRY_POSTGRES")?;
        Arc::new(
            mailsentry_store::postgres_store::PgStore::connect(&params)
                .context("connecting to PostgreSQL")?,
        )
    } else {
        Arc::new(open_store(&args.data)?)
    };
    std::fs::create_dir_all(&args.data)
        .with_context(|| format!("creating {}", args.data.display()))?;
    let bootstrap_token = std::env::var("MAILSENTRY_BOOTSTRAP_TOKEN")
        .ok()
        .filter(|t| !t.is_empty());
    if demo.is_some() && bootstrap_token.is_none() {
        // A token for the person trying the demo, written to a private file (never logged).
        let path = args.data.join("demo-admin-token");
        if !path.exists() {
            let token = store.create_token("demo", &[mailsentry_store::Scope::Admin])?;
            write_private(&path, &token)?;
        }
        eprintln!(
            "demo: an admin token for the UI and API is in {}",
            path.display()
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let pipeline =
            mailsentry_pipeline::Pipeline::start(config, Arc::new(enrichment), store.clone(), 64)?;
        if let Some(dir) = model {
            pipeline
                .start_model_watcher(dir, std::time::Duration::from_secs(5))
                .context("--model")?;
        }
        if let (Some(tenant), Some(client)) = (&args.m365_tenant, &args.m365_client_id) {
            use mailsentry_pipeline::management_api_source::{ClientCredential, ManagementApiConfig};
            let credential = match (&args.m365_cert, &args.m365_key) {
                (Some(cert), Some(key)) => ClientCredential::Certificate {
                    cert_pem: cert.clone(),
                    key_pem: key.clone(),
                },
                _ => ClientCredential::Secret(
                    std::env::var("MAILSENTRY_M365_CLIENT_SECRET")
                        .context("--m365-tenant needs --m365-cert/--m365-key or MAILSENTRY_M365_CLIENT_SECRET")?,
                ),
            };
            let mut m365 = ManagementApiConfig::commercial(tenant, client, "");
            m365.credential = credential;
            m365.api_base = args.m365_api_base.clone();
            if let Some(url) = &args.m365_token_url {
                m365.token_url = url.clone();
            }
            pipeline.start_management_api(m365, store.clone(), std::time::Duration::from_secs(args.m365_poll_secs.max(10)))?;
            tracing::info!(tenant = %tenant, "Management Activity API source started");
        }
        if args.postgres {
            // Labels set through another instance reach this one's detectors through the feed.
            pipeline.start_label_follower(store.clone(), std::time::Duration::from_secs(2))?;
        }
        let kafka = match (&args.kafka_brokers, &args.kafka_topic) {
            (Some(brokers), Some(topic)) => {
                let mut k = mailsentry_pipeline::kafka_source::KafkaConfig::new(brokers, topic, &args.kafka_group);
                k.checkpoint_every = std::time::Duration::from_secs(args.checkpoint_secs.max(1));
                k.properties = args.kafka_properties.clone();
                let source = mailsentry_pipeline::kafka_source::KafkaSource::start(k, pipeline.clone())
                    .context("starting the Kafka source")?;
                tracing::info!(topic = %topic, group = %args.kafka_group, "Kafka source started");
                Some(source)
            }
            _ => None,
        };
        for dir in &args.tail {
            pipeline.start_tail(dir.clone(), store.clone(), std::time::Duration::from_secs(2))?;
            tracing::info!(dir = %dir.display(), "tailing");
        }
        let mut sinks = Vec::new();
        if let Some(url) = &args.webhook {
            let secret = std::env::var("MAILSENTRY_WEBHOOK_SECRET")
                .context("--webhook needs MAILSENTRY_WEBHOOK_SECRET for the HMAC signature")?;
            sinks.push(mailsentry_pipeline::sinks::SinkKind::Webhook { url: url.clone(), secret });
        }
        if let Some(address) = &args.syslog {
            sinks.push(match &args.syslog_ca {
                Some(ca) => mailsentry_pipeline::sinks::SinkKind::SyslogTls {
                    address: address.clone(),
                    ca_pem: ca.clone(),
                },
                None => mailsentry_pipeline::sinks::SinkKind::Syslog { address: address.clone() },
            });
        }
        if let Some(url) = &args.splunk_hec {
            let token = std::env::var("MAILSENTRY_HEC_TOKEN").context("--splunk-hec needs MAILSENTRY_HEC_TOKEN")?;
            sinks.push(mailsentry_pipeline::sinks::SinkKind::SplunkHec { url: url.clone(), token });
        }
        if let (Some(brokers), Some(topic)) = (&args.kafka_brokers, &args.kafka_alerts_topic) {
            sinks.push(mailsentry_pipeline::sinks::SinkKind::Kafka {
                brokers: brokers.clone(),
                topic: topic.clone(),
                properties: args.kafka_properties.clone(),
            });
        }
        let sink_handles: Vec<_> = sinks
            .into_iter()
            .map(|kind| {
                let name = match &kind {
                    mailsentry_pipeline::sinks::SinkKind::Webhook { .. } => "webhook",
                    mailsentry_pipeline::sinks::SinkKind::Syslog { .. }
                    | mailsentry_pipeline::sinks::SinkKind::SyslogTls { .. } => "syslog",
                    mailsentry_pipeline::sinks::SinkKind::SplunkHec { .. } => "splunk-hec",
                    mailsentry_pipeline::sinks::SinkKind::Kafka { .. } => "kafka",
                };
                tracing::info!(sink = name, "push sink started");
                mailsentry_pipeline::sinks::start_sink(
                    mailsentry_pipeline::sinks::Sink { name: name.into(), kind },
                    store.clone(),
                    mailsentry_server::alert_formats::cef,
                    std::time::Duration::from_secs(1),
                )
            })
            .collect();
        if let Some(dir) = demo {
            let p = pipeline.clone();
            let args_demo_speed = args.demo_speed;
            tokio::spawn(async move {
                let files: Vec<PathBuf> = collect_input_files(&[dir.join("logs")])
                    .into_iter()
                    .filter_map(|r| r.ok())
                    .collect();
                let speed = (args_demo_speed > 0.0).then_some(args_demo_speed);
                match p.replay_files_paced(files, speed).await {
                    Ok((records, events, rejected)) => {
                        let _ = p.flush().await;
                        tracing::info!(records, events, rejected, "demo replayed");
                    }
                    Err(e) => tracing::error!(error = %e, "demo replay failed"),
                }
            });
        }
        let state = Arc::new(mailsentry_server::AppState {
            store,
            pipeline: pipeline.clone(),
            bootstrap_token,
            limiter: mailsentry_server::RateLimiter::new(args.rate_limit, args.rate_limit * 4.0),
        });
        let app = mailsentry_server::router(state, args.max_body);
        let shutdown = async {
            #[cfg(unix)]
            {
                let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            #[cfg(not(unix))]
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down");
        };
        match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => {
                let config = mailsentry_server::tls::server_config(cert, key).context("TLS")?;
                let listener = mailsentry_server::tls::bind(args.listen, config)
                    .await
                    .with_context(|| format!("listening on {}", args.listen))?;
                tracing::info!(address = %args.listen, "serving HTTPS");
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("serving")?;
            }
            _ => {
                let listener = tokio::net::TcpListener::bind(args.listen)
                    .await
                    .with_context(|| format!("listening on {}", args.listen))?;
                tracing::info!(address = %args.listen, "serving HTTP (use --tls-cert/--tls-key beyond loopback)");
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown)
                    .await
                    .context("serving")?;
            }
        }
        if let Some(source) = kafka {
            // Checkpoint and commit every owned partition, then leave the group.
            tokio::task::spawn_blocking(move || source.stop()).await.ok();
        }
        pipeline.shutdown().await?;
        for h in sink_handles {
            h.stop();
        }
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn publish(args: PublishArgs) -> Result<ExitCode> {
    use mailsentry_pipeline::kafka_publish;
    kafka_publish::ensure_topic(
        &args.brokers,
        &args.topic,
        args.partitions,
        &args.properties,
    )
    .with_context(|| format!("topic {}", args.topic))?;
    let started = std::time::Instant::now();
    let stats = kafka_publish::publish(&args.brokers, &args.topic, &args.paths, &args.properties)
        .context("publishing")?;
    for (path, why) in &stats.skipped_files {
        eprintln!("{}: skipped: {why}", path.display());
    }
    for (partition, (records, end)) in &stats.partitions {
        eprintln!("partition {partition}: {records} records, end offset {end}");
    }
    if stats.failed > 0 {
        anyhow::bail!(
            "{} records were not acknowledged by the broker",
            stats.failed
        );
    }
    eprintln!(
        "published {} records from {} files ({} tenants as keys) to {} in {:.1} s",
        stats.records,
        stats.files,
        stats.keys,
        args.topic,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Writes a secret readable only by the owner.
fn write_private(path: &std::path::Path, secret: &str) -> Result<()> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    writeln!(f, "{secret}").with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Enrichment from the `--asn-db` databases.
fn asn_dbs(dbs: &[PathBuf]) -> Result<mailsentry_detect::Enrichment> {
    let mut enrichment = mailsentry_detect::Enrichment::none();
    for db in dbs {
        enrichment.load(db).context("loading --asn-db")?;
    }
    Ok(enrichment)
}

/// Enrichment from `--asn-db`, else the data directory's own tables (a simulator output).
fn data_enrichment(
    dbs: &[PathBuf],
    data: &std::path::Path,
) -> Result<Arc<mailsentry_detect::Enrichment>> {
    let mut enrichment = asn_dbs(dbs)?;
    if dbs.is_empty() {
        for table in ["asn.csv", "country.csv"] {
            let p = data.join(table);
            if p.is_file() {
                enrichment
                    .load(&p)
                    .with_context(|| format!("loading {}", p.display()))?;
            }
        }
    }
    Ok(Arc::new(enrichment))
}

/// `--labels`, else `DATA/labels.json` when there is one.
fn data_labels(
    flag: Option<&PathBuf>,
    data: &std::path::Path,
) -> Result<Option<mailsentry_train::labels::Labels>> {
    let path = match flag {
        Some(p) => p.clone(),
        None => {
            let p = data.join("labels.json");
            if !p.is_file() {
                return Ok(None);
            }
            p
        }
    };
    Ok(Some(mailsentry_train::labels::Labels::load(&path)?))
}

/// The logs of a data directory: its `logs/` folder when it is a simulator output.
fn data_logs(data: &std::path::Path) -> Vec<PathBuf> {
    let logs = data.join("logs");
    vec![if logs.is_dir() { logs } else { data.to_owned() }]
}

/// This process's peak resident set so far, MiB (Linux; `None` elsewhere).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn peak_note() -> String {
    peak_rss_mib()
        .map(|m| format!(", peak RSS {m:.0} MiB"))
        .unwrap_or_default()
}

/// A progress bar on stderr for long runs (hidden when stderr is not a terminal): over the
/// data's event-time span when it is known (a simulator output's labels), else a spinner.
fn progress_bar(what: &str, span: Option<(i64, i64)>) -> indicatif::ProgressBar {
    let bar = match span {
        Some((start, end)) if end > start => {
            let bar = indicatif::ProgressBar::new((end - start) as u64);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix}: [{bar:30}] {percent:>3}% of event time · {msg} · {elapsed_precise} (ETA {eta})",
                )
                .expect("template")
                .progress_chars("=> "),
            );
            bar
        }
        _ => {
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {prefix}: {msg} [{elapsed_precise}]",
                )
                .expect("template"),
            );
            bar
        }
    };
    bar.set_prefix(what.to_owned());
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

/// The event-time span of labelled simulator data.
fn truth_span(labels: Option<&mailsentry_train::labels::Labels>) -> Option<(i64, i64)> {
    let t = labels?.truth()?;
    let start = t.start.and_hms_opt(0, 0, 0)?.and_utc().timestamp();
    Some((start, start + i64::from(t.days) * 86_400))
}

/// Shows on `bar` how far a pass has got (in event time when the span is known); `pass` names
/// it when a command makes several.
fn show_progress(
    bar: &indicatif::ProgressBar,
    span: Option<(i64, i64)>,
    pass: Option<&str>,
    p: &mailsentry_train::pass::Progress,
) {
    if let Some((start, end)) = span {
        bar.set_position((p.event_time.clamp(start, end) - start) as u64);
    }
    bar.set_message(format!(
        "{}{} records, {} sessions",
        pass.map(|x| format!("{x}: ")).unwrap_or_default(),
        p.records,
        p.sessions
    ));
}

fn features(args: FeaturesArgs) -> Result<ExitCode> {
    let first = args.data[0].clone();
    let enrichment = data_enrichment(&args.asn_db, &first)?;
    let labels = data_labels(args.labels.as_ref(), &first)?;
    let config = load_config(args.config.as_ref())?;
    let paths: Vec<PathBuf> = args.data.iter().flat_map(|d| data_logs(d)).collect();
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    let span = truth_span(labels.as_ref());
    let bar = progress_bar("features", span);
    let started = std::time::Instant::now();
    let stats = mailsentry_train::frame::extract_features(
        &paths,
        config,
        enrichment,
        labels.as_ref(),
        &args.out,
        &mut |p| show_progress(&bar, span, None, p),
    )?;
    bar.finish_and_clear();
    eprintln!(
        "features: {} records ({} rejected), {} events → {} sessions ({} labelled attack) in {} ({:.1} s{})",
        stats.records,
        stats.rejected,
        stats.events,
        stats.rows,
        stats.attack_rows,
        args.out.display(),
        started.elapsed().as_secs_f64(),
        peak_note()
    );
    Ok(ExitCode::SUCCESS)
}

fn train(args: TrainArgs) -> Result<ExitCode> {
    use mailsentry_train::{fit, frame};
    let started = std::time::Instant::now();
    let labels = if args.data.is_dir() {
        data_labels(args.labels.as_ref(), &args.data)?
    } else {
        args.labels
            .as_ref()
            .map(|p| mailsentry_train::labels::Labels::load(p))
            .transpose()?
    };
    let mut rows = if args.data.is_dir() {
        let enrichment = data_enrichment(&args.asn_db, &args.data)?;
        let config = load_config(args.config.as_ref())?;
        let span = truth_span(labels.as_ref());
        let bar = progress_bar("sessions", span);
        let (pass, sessions) = mailsentry_train::pass::run_pass(
            &data_logs(&args.data),
            &config,
            &enrichment,
            None,
            false,
            &mut |p| show_progress(&bar, span, None, p),
        );
        bar.finish_and_clear();
        eprintln!(
            "train: {} records ({} rejected) → {} sessions",
            pass.records,
            pass.rejected,
            sessions.len()
        );
        frame::Rows::from_features(&sessions, labels.as_ref())
    } else {
        frame::read_rows(&args.data)?
    };
    if let (Some(l), false) = (&labels, args.data.is_dir()) {
        fit::relabel(&mut rows, l);
    }
    let base = args
        .name
        .clone()
        .or_else(|| {
            args.out
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "model".into());
    let last_day = rows
        .last
        .iter()
        .copied()
        .max()
        .and_then(|t| chrono::DateTime::from_timestamp(t, 0))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| "empty".into());
    let mut command = format!(
        "mailsentry train --data {} --out {} --seed {} --components {} --weight {}",
        args.data.display(),
        args.out.display(),
        args.seed,
        args.components,
        args.weight
    );
    if let Some(l) = &args.labels {
        command.push_str(&format!(" --labels {}", l.display()));
    }
    let options = fit::TrainOptions {
        seed: args.seed,
        components: args.components,
        weight: args.weight,
        name: format!("{base}@{last_day}"),
        command,
        data: match labels.as_ref().and_then(|l| l.truth()) {
            Some(t) => format!("{} (made by `{}`)", args.data.display(), t.command),
            None => args.data.display().to_string(),
        },
        ..Default::default()
    };
    let bar = progress_bar("fitting", None);
    bar.set_message(format!("{} scored sessions", rows.len()));
    let (model, summary) = fit::train(&rows, &options)?;
    bar.finish_and_clear();
    fit::write_model(&args.out, &model, &summary, &options)?;
    eprintln!(
        "train: model {} ({} components, {} fitting + {} calibration sessions, {} attacks{}) written to {} in {:.1} s{}",
        model.name,
        summary.components,
        summary.fit_rows,
        summary.calibration_rows,
        summary.attack_rows,
        if model.reranker.is_some() { ", re-ranker" } else { "" },
        args.out.display(),
        started.elapsed().as_secs_f64(),
        peak_note()
    );
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> Result<ExitCode> {
    let labels = data_labels(args.labels.as_ref(), &args.data)?
        .context("eval needs ground truth: --labels FILE or DATA/labels.json")?;
    let Some(truth) = labels.truth().cloned() else {
        anyhow::bail!("eval needs labels.json ground truth (campaigns with their windows), not analyst labels");
    };
    let enrichment = data_enrichment(&args.asn_db, &args.data)?;
    let config = load_config(args.config.as_ref())?;
    let model = args.model.as_deref().map(load_model).transpose()?;
    let span = truth_span(Some(&labels));
    let bar = progress_bar("eval", span);
    let result = mailsentry_train::eval::run_eval(
        &data_logs(&args.data),
        &truth,
        &config,
        &enrichment,
        model,
        &mut |pass, p| show_progress(&bar, span, Some(pass), p),
    );
    bar.finish_and_clear();
    mailsentry_train::eval::write_report(&args.report, &result)?;
    for d in &result.detectors {
        eprintln!(
            "{:<28} recall {:>5.1} %  false alerts {:>5}  median minutes to detect {}",
            d.detector,
            d.recall * 100.0,
            d.false_alerts,
            d.median_minutes_to_detect
                .map(|m| format!("{m:.0}"))
                .unwrap_or_else(|| "–".into())
        );
    }
    eprintln!("{}", result.verdict);
    eprintln!(
        "report: {} (passes {}{})",
        args.report.join("REPORT.md").display(),
        result
            .pass_seconds
            .iter()
            .map(|s| format!("{s:.1} s"))
            .collect::<Vec<_>>()
            .join(" + "),
        peak_note()
    );
    Ok(ExitCode::SUCCESS)
}
