//! Scale-out: two `mailsentry serve` instances in one Kafka consumer group over a partitioned
//! topic of simulator data, sharing one PostgreSQL store. One is killed (SIGKILL) mid-stream and
//! restarted; when the group has read everything, the alerts in the shared store are exactly
//! those of a single-instance `mailsentry replay` of the same files: nothing lost, nothing
//! doubled. Needs the broker and PostgreSQL that `.ci/services` starts.

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::{free_port, repo_root, wait_healthy};

const TOKEN: &str = "scale-test-admin-token";

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} must be set (.ci/services sets it)"))
}

fn bin() -> PathBuf {
    assert_cmd::cargo::cargo_bin("mailsentry")
}

fn demo_json() -> Vec<PathBuf> {
    let root = repo_root().join("datasets/demo/logs");
    ["m365-audit", "entra-signins", "entra-audit"]
        .iter()
        .map(|d| root.join(d))
        .collect()
}

struct Instance {
    child: Child,
}

/// The instance's log, appended across restarts, next to its data directory.
fn log(data: &Path) -> std::fs::File {
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(data.with_extension("log"))
        .unwrap()
}

fn start(topic: &str, group: &str, pg: &str, data: &Path, port: u16) -> Instance {
    let demo = repo_root().join("datasets/demo");
    let child = Command::new(bin())
        .env("MAILSENTRY_BOOTSTRAP_TOKEN", TOKEN)
        .env("MAILSENTRY_POSTGRES", pg)
        .args([
            "serve",
            "--postgres",
            "--checkpoint-secs",
            "1",
            "--rate-limit",
            "10000",
        ])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--kafka-brokers", &env("MAILSENTRY_TEST_KAFKA")])
        .args(["--kafka-topic", topic, "--kafka-group", group])
        .args(["--kafka-property", "session.timeout.ms=6000"])
        .args(["--kafka-property", "heartbeat.interval.ms=500"])
        .arg("--asn-db")
        .arg(demo.join("asn.csv"))
        .arg("--asn-db")
        .arg(demo.join("country.csv"))
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::null())
        .stderr(log(data))
        .spawn()
        .unwrap();
    wait_healthy(port, &|| {
        format!(
            ": {}",
            std::fs::read_to_string(data.with_extension("log")).unwrap_or_default()
        )
    });
    Instance { child }
}

fn metric(port: u16, name: &str) -> u64 {
    common::metric(port, TOKEN, name).unwrap_or(0)
}

fn stop(mut i: Instance) {
    common::interrupt(&mut i.child);
}

/// Alert id → (score, severity) from a native alert JSON-lines file or a store.
type AlertSet = BTreeMap<String, (u64, String)>;

fn from_json(v: &serde_json::Value) -> (String, (u64, String)) {
    (
        v["id"].as_str().unwrap().to_owned(),
        (
            v["score"].as_u64().unwrap(),
            v["severity"].as_str().unwrap().to_owned(),
        ),
    )
}

#[test]
fn two_instances_one_killed_raise_exactly_the_single_instance_alerts() {
    let brokers = env("MAILSENTRY_TEST_KAFKA");
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let topic = format!("ms-scale-{nanos}");
    let group = format!("ms-scale-group-{nanos}");

    // A schema of its own in the test database, so the shared store starts empty.
    let schema = common::PgSchema::create(&env("MAILSENTRY_TEST_PG"), &format!("scale_{nanos}"));

    // The reference: one detector over the files.
    let work = tempfile::tempdir().unwrap();
    let reference_out = work.path().join("reference.jsonl");
    let status = Command::new(bin())
        .env("SOURCE_DATE_EPOCH", "0")
        .arg("replay")
        .arg("--asn-db")
        .arg(repo_root().join("datasets/demo/asn.csv"))
        .arg("--asn-db")
        .arg(repo_root().join("datasets/demo/country.csv"))
        .arg("--alerts-out")
        .arg(&reference_out)
        .args(demo_json())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let reference: AlertSet = std::fs::read_to_string(&reference_out)
        .unwrap()
        .lines()
        .map(|l| from_json(&serde_json::from_str(l).unwrap()))
        .collect();
    assert!(reference.len() >= 4, "{reference:?}");

    // The data on a four-partition topic, keyed by tenant.
    let out = Command::new(bin())
        .args([
            "publish",
            "--brokers",
            &brokers,
            "--topic",
            &topic,
            "--partitions",
            "4",
        ])
        // One record per batch: tansu 0.6 skips the tail of a batch when a consumer resumes
        // inside it (see crates/pipeline/tests/kafka.rs).
        .args(["--kafka-property", "batch.num.messages=1"])
        .args(demo_json())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("published "), "{said}");
    // `partition P: N records, end offset E` for each partition that got records.
    let ends: Vec<(i32, i64)> = said
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("partition ")?;
            let (p, rest) = rest.split_once(':')?;
            let end = rest.rsplit_once("end offset ")?.1;
            Some((p.parse().ok()?, end.trim().parse().ok()?))
        })
        .collect();
    assert!(
        ends.len() >= 2,
        "the tenants spread over partitions: {said}"
    );

    let (da, db) = (work.path().join("a"), work.path().join("b"));
    let (pa, pb) = (free_port(), free_port());
    let a = start(&topic, &group, &schema.url, &da, pa);
    let b = start(&topic, &group, &schema.url, &db, pb);
    // Kill the first instance once it has done part of its share.
    let deadline = Instant::now() + Duration::from_secs(120);
    while metric(pa, "mailsentry_events_processed_total") < 1500 {
        assert!(Instant::now() < deadline, "instance a made no progress");
        std::thread::sleep(Duration::from_millis(20));
    }
    let mut killed = a.child;
    killed.kill().unwrap();
    killed.wait().unwrap();

    // Done when the group's committed offsets reach the end of every partition.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", &group)
        .create()
        .unwrap();
    let at_end = || {
        ends.iter().all(|&(p, end)| {
            let mut tpl = rdkafka::TopicPartitionList::new();
            tpl.add_partition(&topic, p);
            probe
                .committed_offsets(tpl, Duration::from_secs(5))
                .ok()
                .and_then(|t| t.find_partition(&topic, p).map(|e| e.offset()))
                .is_some_and(|o| o == rdkafka::Offset::Offset(end))
        })
    };
    assert!(!at_end(), "the kill came mid-stream");
    let a = start(&topic, &group, &schema.url, &da, pa);
    let deadline = Instant::now() + Duration::from_secs(240);
    while !at_end() {
        assert!(
            Instant::now() < deadline,
            "the group did not finish the topic"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    stop(a);
    stop(b);

    let store = mailsentry_store::postgres_store::PgStore::connect(&schema.url).unwrap();
    use mailsentry_store::AlertStore;
    let page = store.feed(0, 100_000).unwrap();
    let got: AlertSet = page
        .items
        .iter()
        .map(|s| from_json(&serde_json::to_value(&s.alert).unwrap()))
        .collect();
    schema.drop_schema();
    assert_eq!(
        got, reference,
        "two instances, one killed and restarted, raise exactly the single-instance alerts"
    );
}
