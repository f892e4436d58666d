//! Kafka scale-out figures, measured on real processes: the same simulator data (its JSON logs)
//! replayed from files by `mailsentry replay`, and consumed from a four-partition topic by one
//! `mailsentry serve` instance, by two in one consumer group, and by two of which one is
//! SIGKILLed halfway and restarted (lag recovery). Instances share one PostgreSQL store.
//!
//! Needs the broker and PostgreSQL of `.ci/services` (`MAILSENTRY_TEST_KAFKA`,
//! `MAILSENTRY_TEST_PG`). Sizes: `KAFKA_SCALE_DAYS` (default 14), `KAFKA_SCALE_TENANTS` (8),
//! `KAFKA_SCALE_SCALE` (1.0). Run: `cargo bench -p mailsentry-cli --bench kafka_scale`.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[path = "../tests/common/mod.rs"]
mod common;
use common::{free_port, wait_healthy};

const TOKEN: &str = "kafka-scale-bench-token";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (source .ci/services)"))
}

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mailsentry"))
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

struct Instance {
    child: Child,
    port: u16,
}

fn start(topic: &str, group: &str, pg: &str, data: &Path, asn: &[PathBuf]) -> Instance {
    let port = free_port();
    let mut cmd = Command::new(bin());
    cmd.env("MAILSENTRY_BOOTSTRAP_TOKEN", TOKEN)
        .env("MAILSENTRY_POSTGRES", pg)
        .args(["serve", "--postgres", "--checkpoint-secs", "1"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--kafka-brokers", &env("MAILSENTRY_TEST_KAFKA")])
        .args(["--kafka-topic", topic, "--kafka-group", group])
        .args(["--kafka-property", "session.timeout.ms=6000"])
        .args(["--kafka-property", "heartbeat.interval.ms=500"]);
    for a in asn {
        cmd.arg("--asn-db").arg(a);
    }
    let child = cmd
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(port, &String::new);
    Instance { child, port }
}

fn processed(i: &Instance) -> u64 {
    metric(i, "mailsentry_events_processed_total")
}

fn metric(i: &Instance, name: &str) -> u64 {
    common::metric(i.port, TOKEN, name).unwrap_or(0)
}

fn stop(mut i: Instance) {
    common::interrupt(&mut i.child);
}

fn at_end(probe: &BaseConsumer, topic: &str, ends: &[(i32, i64)]) -> bool {
    ends.iter().all(|&(p, end)| {
        let mut tpl = rdkafka::TopicPartitionList::new();
        tpl.add_partition(topic, p);
        probe
            .committed_offsets(tpl, Duration::from_secs(5))
            .ok()
            .and_then(|t| t.find_partition(topic, p).map(|e| e.offset()))
            .is_some_and(|o| o == rdkafka::Offset::Offset(end))
    })
}

struct Run {
    seconds: f64,
    /// From the first processed event to the end (without process start and group join).
    steady: f64,
    kill_to_resume: Option<f64>,
    /// Offsets skipped (tansu's mid-batch fetch) and messages read, by the surviving instances.
    gaps: u64,
    messages: u64,
}

/// Consumes the topic with `n` instances in a new group; with `kill`, the first instance is
/// SIGKILLed once the group has processed half the events and restarted at once.
fn run(
    topic: &str,
    ends: &[(i32, i64)],
    events: u64,
    n: usize,
    kill: bool,
    asn: &[PathBuf],
    work: &Path,
) -> Run {
    let id = unique();
    let group = format!("bench-{id}");
    let schema = common::PgSchema::create(&env("MAILSENTRY_TEST_PG"), &format!("bench_{id}"));
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", env("MAILSENTRY_TEST_KAFKA"))
        .set("group.id", &group)
        .create()
        .unwrap();
    let data: Vec<PathBuf> = (0..n).map(|i| work.join(format!("{id}-{i}"))).collect();
    let started = Instant::now();
    let mut instances: Vec<Instance> = data
        .iter()
        .map(|d| start(topic, &group, &schema.url, d, asn))
        .collect();
    while instances.iter().map(processed).sum::<u64>() == 0 {
        std::thread::sleep(Duration::from_millis(20));
    }
    let first_event = Instant::now();
    let mut kill_to_resume = None;
    if kill {
        while instances.iter().map(processed).sum::<u64>() < events / 2 {
            std::thread::sleep(Duration::from_millis(50));
        }
        let victim = instances.remove(0);
        let mut child = victim.child;
        child.kill().unwrap();
        child.wait().unwrap();
        let killed_at = Instant::now();
        let restarted = start(topic, &group, &schema.url, &data[0], asn);
        while processed(&restarted) == 0 && !at_end(&probe, topic, ends) {
            std::thread::sleep(Duration::from_millis(20));
        }
        kill_to_resume = Some(killed_at.elapsed().as_secs_f64());
        instances.push(restarted);
    }
    while !at_end(&probe, topic, ends) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let seconds = started.elapsed().as_secs_f64();
    let steady = first_event.elapsed().as_secs_f64();
    let gaps = instances
        .iter()
        .map(|i| metric(i, "mailsentry_kafka_offset_gaps_total"))
        .sum();
    let messages = instances
        .iter()
        .map(|i| metric(i, "mailsentry_kafka_messages_total"))
        .sum();
    for i in instances {
        stop(i);
    }
    schema.drop_schema();
    Run {
        seconds,
        steady,
        kill_to_resume,
        gaps,
        messages,
    }
}

fn main() {
    let work = tempfile::tempdir().unwrap();
    let sim = work.path().join("sim");
    let days = env_or("KAFKA_SCALE_DAYS", "14");
    let tenants = env_or("KAFKA_SCALE_TENANTS", "8");
    let scale = env_or("KAFKA_SCALE_SCALE", "1.0");
    let ok = Command::new(bin())
        .args([
            "simulate",
            "--seed",
            "21",
            "--days",
            &days,
            "--tenants",
            &tenants,
        ])
        .args(["--scale", &scale, "--out"])
        .arg(&sim)
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .success();
    assert!(ok, "simulate");
    let json: Vec<PathBuf> = ["m365-audit", "entra-signins", "entra-audit"]
        .iter()
        .map(|d| sim.join("logs").join(d))
        .collect();
    let asn = vec![sim.join("asn.csv"), sim.join("country.csv")];

    // Files: one detector over the same JSON logs.
    let t = Instant::now();
    let out = Command::new(bin())
        .arg("replay")
        .args(
            asn.iter()
                .flat_map(|a| [PathBuf::from("--asn-db"), a.clone()]),
        )
        .arg("--alerts-out")
        .arg(work.path().join("alerts.jsonl"))
        .args(&json)
        .output()
        .unwrap();
    let file_seconds = t.elapsed().as_secs_f64();
    assert!(out.status.success());
    let summary = String::from_utf8_lossy(&out.stderr).to_string();
    let events: u64 = summary
        .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
        .collect::<Vec<_>>()
        .windows(2)
        .find_map(|w| (w[0] == "events").then(|| w[1].parse().ok()).flatten())
        .unwrap_or_else(|| panic!("no event count in the replay summary: {summary}"));

    // The same records on four-partition topics, keyed by tenant: one with librdkafka's usual
    // batching (throughput), one with a record per batch (the kill run: tansu 0.6 skips the
    // tail of a batch when a consumer resumes inside it).
    let publish = |topic: &str, single: bool| -> (f64, Vec<(i32, i64)>) {
        let t = Instant::now();
        let mut cmd = Command::new(bin());
        cmd.args([
            "publish",
            "--brokers",
            &env("MAILSENTRY_TEST_KAFKA"),
            "--topic",
            topic,
        ])
        .args(["--partitions", "4"]);
        if single {
            cmd.args(["--kafka-property", "batch.num.messages=1"]);
        }
        let out = cmd.args(&json).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stderr).to_string();
        let ends = said
            .lines()
            .filter_map(|l| {
                let rest = l.strip_prefix("partition ")?;
                let (p, rest) = rest.split_once(':')?;
                Some((
                    p.parse().ok()?,
                    rest.rsplit_once("end offset ")?.1.trim().parse().ok()?,
                ))
            })
            .collect();
        (t.elapsed().as_secs_f64(), ends)
    };
    let batched = format!("bench-batched-{}", unique());
    let (publish_batched, ends) = publish(&batched, false);
    let single = format!("bench-single-{}", unique());
    let (publish_single, single_ends) = publish(&single, true);
    let records: i64 = ends.iter().map(|e| e.1).sum();

    let one = run(&batched, &ends, events, 1, false, &asn, work.path());
    let two = run(&batched, &ends, events, 2, false, &asn, work.path());
    let two_single = run(&single, &single_ends, events, 2, false, &asn, work.path());
    let killed = run(&single, &single_ends, events, 2, true, &asn, work.path());

    let rate = |s: f64| records as f64 / s / 1000.0;
    println!("data: simulate --seed 21 --days {days} --tenants {tenants} --scale {scale}; JSON logs: {records} records, {events} events; partitions used: {}", ends.len());
    println!("publish: {publish_batched:.1} s batched, {publish_single:.1} s one record per batch");
    println!("| run | topic batches | wall s | k records/s | from first event: s | k records/s | offsets skipped | messages read |");
    println!("|---|---|---:|---:|---:|---:|---:|---:|");
    println!(
        "| files: mailsentry replay | — | {file_seconds:.1} | {:.1} | — | — | — | — |",
        rate(file_seconds)
    );
    for (name, kind, r) in [
        ("kafka: 1 instance", "batched", &one),
        ("kafka: 2 instances", "batched", &two),
        ("kafka: 2 instances", "1 record", &two_single),
        (
            "kafka: 2 instances, one SIGKILLed at 50% and restarted",
            "1 record",
            &killed,
        ),
    ] {
        println!(
            "| {name} | {kind} | {:.1} | {:.1} | {:.1} | {:.1} | {} | {} |",
            r.seconds,
            rate(r.seconds),
            r.steady,
            rate(r.steady),
            r.gaps,
            r.messages
        );
    }
    println!(
        "lag recovery: {:.1} s longer than the undisturbed 2-instance run on the same topic; the restarted instance processed again {:.1} s after the kill",
        killed.seconds - two_single.seconds,
        killed.kill_to_resume.unwrap_or(f64::NAN)
    );
}
