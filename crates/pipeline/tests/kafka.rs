//! The Kafka source against a real Kafka-protocol broker on loopback (`.ci/services` starts
//! tansu and sets `MAILSENTRY_TEST_KAFKA`): the demo's JSON logs published keyed by tenant over
//! four partitions give the same alerts as replaying the files; a second instance joining the
//! group mid-stream takes partitions over with their state, and the alerts still match; the
//! alert sink publishes every alert to a topic; a broken record is counted and skipped.

use mailsentry_detect::{DetectConfig, Enrichment};
use mailsentry_pipeline::kafka_publish::{ensure_topic, publish};
use mailsentry_pipeline::kafka_source::{KafkaConfig, KafkaSource};
use mailsentry_pipeline::Pipeline;
use mailsentry_store::{AlertStore, Store};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::ClientConfig;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;

fn brokers() -> String {
    std::env::var("MAILSENTRY_TEST_KAFKA").expect(
        "MAILSENTRY_TEST_KAFKA must name a Kafka-protocol broker for the tests (.ci/services starts tansu)",
    )
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("ms-{name}-{}-{nanos}", std::process::id())
}

/// The demo's JSON logs (the bus formats); IIS and mbox belong to the tail.
fn demo_json() -> Vec<PathBuf> {
    let root = common::manifest_dir().join("../../datasets/demo");
    ["m365-audit", "entra-signins", "entra-audit"]
        .iter()
        .map(|d| root.join("logs").join(d))
        .collect()
}

/// tansu 0.6 answers a fetch that starts inside a record batch with the *next* batch, so a
/// consumer resuming from a committed offset mid-batch would miss the batch's tail (the source
/// counts such gaps; see `KafkaStats::gaps`). Real Kafka returns the straddling batch. The tests
/// publish one record per batch so that every committed offset is batch-aligned.
fn one_record_batches() -> Vec<(String, String)> {
    vec![("batch.num.messages".into(), "1".into())]
}

fn enrichment() -> Arc<Enrichment> {
    let root = common::manifest_dir().join("../../datasets/demo");
    let mut e = Enrichment::none();
    e.load(&root.join("asn.csv")).unwrap();
    e.load(&root.join("country.csv")).unwrap();
    Arc::new(e)
}

/// Alert id → (severity, score, tenant) of everything in a store.
fn alerts(store: &dyn AlertStore) -> BTreeMap<String, (String, u8, String)> {
    let page = store.feed(0, 100_000).unwrap();
    page.items
        .into_iter()
        .map(|s| {
            (
                s.alert.id.clone(),
                (
                    format!("{:?}", s.alert.severity),
                    s.alert.score,
                    s.alert.tenant_id.clone(),
                ),
            )
        })
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// What replaying the same files through one detector raises.
fn file_replay(files: Vec<PathBuf>) -> BTreeMap<String, (String, u8, String)> {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("ms.db")).unwrap());
    let rt = runtime();
    rt.block_on(async {
        let p = Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap();
        let files = mailsentry_ingest::collect_input_files(&files)
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        p.replay_files(files).await.unwrap();
        p.shutdown().await.unwrap();
    });
    alerts(store.as_ref())
}

fn wait_for(what: &str, limit: Duration, f: impl Fn() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn config(topic: &str, group: &str) -> KafkaConfig {
    let mut c = KafkaConfig::new(&brokers(), topic, group);
    c.checkpoint_every = Duration::from_millis(500);
    c.properties = vec![
        ("session.timeout.ms".into(), "6000".into()),
        ("heartbeat.interval.ms".into(), "500".into()),
    ];
    c
}

#[test]
fn kafka_alerts_equal_a_file_replay_and_survive_a_handover() {
    let topic = unique("raw");
    ensure_topic(&brokers(), &topic, 4, &[]).unwrap();
    let published = publish(&brokers(), &topic, &demo_json(), &one_record_batches()).unwrap();
    assert!(published.records > 10_000, "{published:?}");
    assert!(published.keys >= 3, "keyed by tenant: {published:?}");
    assert!(published.skipped_files.is_empty(), "{published:?}");
    let expected = file_replay(demo_json());
    assert!(
        expected.len() >= 4,
        "the campaigns in the JSON logs alert: {expected:?}"
    );

    // One instance reads the four partitions.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("a.db")).unwrap());
    let rt = runtime();
    let pipeline = rt.block_on(async {
        Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap()
    });
    let source = KafkaSource::start(config(&topic, &unique("g1")), pipeline.clone()).unwrap();
    let stats = source.stats.clone();
    wait_for("every message", Duration::from_secs(180), || {
        stats.messages.load(Ordering::Relaxed) >= published.records
    });
    source.stop();
    rt.block_on(pipeline.shutdown()).unwrap();
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);
    assert_eq!(
        alerts(store.as_ref()),
        expected,
        "one instance over four partitions raises what a file replay raises"
    );

    // Two instances in a new group sharing one store; the second joins mid-stream, so the first
    // hands some partitions over (checkpointed state, committed offsets) during the run.
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("b.db")).unwrap());
    let group = unique("g2");
    let (p1, p2) = rt.block_on(async {
        (
            Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap(),
            Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap(),
        )
    });
    let first = KafkaSource::start(config(&topic, &group), p1.clone()).unwrap();
    let s1 = first.stats.clone();
    wait_for(
        "the first instance to start",
        Duration::from_secs(60),
        || s1.messages.load(Ordering::Relaxed) > 1000,
    );
    let second = KafkaSource::start(config(&topic, &group), p2.clone()).unwrap();
    let s2 = second.stats.clone();
    wait_for("the group to rebalance", Duration::from_secs(60), || {
        s1.revoked.load(Ordering::Relaxed) > 0 && s2.assigned.load(Ordering::Relaxed) > 0
    });
    // Done when every partition's committed offset reaches its end.
    let probe: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", &group)
        .create()
        .unwrap();
    wait_for(
        "the group to reach the end",
        Duration::from_secs(180),
        || {
            published.partitions.iter().all(|(&p, &(_, end))| {
                let mut tpl = rdkafka::TopicPartitionList::new();
                tpl.add_partition(&topic, p);
                probe
                    .committed_offsets(tpl, Duration::from_secs(5))
                    .ok()
                    .and_then(|t| t.find_partition(&topic, p).map(|e| e.offset()))
                    .is_some_and(|o| o == rdkafka::Offset::Offset(end))
            })
        },
    );
    first.stop();
    second.stop();
    rt.block_on(async {
        p1.shutdown().await.unwrap();
        p2.shutdown().await.unwrap();
    });
    let messages = s1.messages.load(Ordering::Relaxed) + s2.messages.load(Ordering::Relaxed);
    eprintln!(
        "handover run: {messages} messages read, gaps {} {}, {} already absorbed, {} published; partitions {:?}",
        s1.gaps.load(Ordering::Relaxed),
        s2.gaps.load(Ordering::Relaxed),
        s1.already_absorbed.load(Ordering::Relaxed) + s2.already_absorbed.load(Ordering::Relaxed),
        published.records,
        published.partitions
    );
    assert_eq!(
        s1.gaps.load(Ordering::Relaxed) + s2.gaps.load(Ordering::Relaxed),
        0,
        "no offset skipped"
    );
    assert!(messages >= published.records, "every record was read");
    assert_eq!(
        alerts(store.as_ref()),
        expected,
        "a partition handed over mid-stream keeps its baseline: same alerts, none doubled"
    );
}

#[test]
fn broken_records_are_counted_and_the_alert_sink_publishes() {
    let topic = unique("mixed");
    ensure_topic(&brokers(), &topic, 1, &[]).unwrap();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .create()
        .unwrap();
    let good = |id: &str| {
        serde_json::json!({
            "Id": id, "CreationTime": "2024-03-12T10:00:00", "Operation": "MailItemsAccessed",
            "OrganizationId": "t1", "RecordType": 50, "Workload": "Exchange", "UserId": "app@x",
            "ClientIPAddress": "203.0.113.9", "AppId": "app", "ClientAppId": "app",
            "MailboxOwnerUPN": "a@x", "OperationCount": 1,
            "OperationProperties": [{"Name": "MailAccessType", "Value": "Bind"}]
        })
        .to_string()
    };
    for value in [good("r1"), "{\"Id\": ".to_string(), good("r2")] {
        producer
            .send(BaseRecord::to(&topic).key("t1").payload(&value))
            .map_err(|(e, _)| e)
            .unwrap();
    }
    producer.flush(Duration::from_secs(10)).unwrap();

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("c.db")).unwrap());
    let rt = runtime();
    let pipeline = rt.block_on(async {
        Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap()
    });
    let source = KafkaSource::start(config(&topic, &unique("g3")), pipeline.clone()).unwrap();
    let stats = source.stats.clone();
    wait_for("three messages", Duration::from_secs(60), || {
        stats.messages.load(Ordering::Relaxed) >= 3
    });
    source.stop();
    rt.block_on(pipeline.shutdown()).unwrap();
    assert_eq!(stats.events.load(Ordering::Relaxed), 2, "both good records");
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 1, "the broken one");
    let rejects = pipeline.metrics.rejects.lock().unwrap().clone();
    assert_eq!(rejects.values().sum::<u64>(), 1, "{rejects:?}");

    // The alert sink: two alerts from the store arrive on a topic, keyed by id, in order.
    let out = unique("alerts");
    ensure_topic(&brokers(), &out, 1, &[]).unwrap();
    let mk = |id: &str, score: u8| -> mailsentry_events::Alert {
        serde_json::from_value(serde_json::json!({
            "id": id, "version": 1, "created_at": "2024-03-12T10:00:00Z",
            "detected_at": "2024-03-12T10:00:00Z", "tenant_id": "t1", "connector": {"app_id": "app"},
            "session": {"client_ips": ["203.0.113.9"], "asns": [], "first_event": null, "last_event": null,
                        "events": 1, "mailboxes": 1, "items": 1, "bytes": 0},
            "score": score, "severity": "high", "p_value": 1e-6, "reasons": [], "evidence": {"event_ids": []}, "status": "new"
        }))
        .unwrap()
    };
    store
        .upsert_alerts(&[mk("alert-1", 70), mk("alert-2", 80)])
        .unwrap();
    let sink = mailsentry_pipeline::sinks::start_sink(
        mailsentry_pipeline::sinks::Sink {
            name: "kafka".into(),
            kind: mailsentry_pipeline::sinks::SinkKind::Kafka {
                brokers: brokers(),
                topic: out.clone(),
                properties: Vec::new(),
            },
        },
        store.clone(),
        |a| format!("CEF:0|{}", a.id),
        Duration::from_millis(100),
    );
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers())
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&[&out]).unwrap();
    let mut got = Vec::new();
    let start = Instant::now();
    while got.len() < 2 && start.elapsed() < Duration::from_secs(60) {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8(m.key().unwrap().to_vec()).unwrap();
            let alert: mailsentry_events::Alert =
                serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(key, alert.id);
            got.push(alert.id);
        }
    }
    sink.stop();
    assert_eq!(got, ["alert-1", "alert-2"]);
}

#[test]
fn a_label_set_through_another_instance_reaches_the_detector() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("l.db")).unwrap());
    let rt = runtime();
    let pipeline = rt.block_on(async {
        let p = Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap();
        let files = mailsentry_ingest::collect_input_files(&demo_json())
            .into_iter()
            .filter_map(Result::ok)
            .collect();
        p.replay_files(files).await.unwrap();
        p.flush().await.unwrap();
        p
    });
    let alert = store.feed(0, 1000).unwrap().items[0].alert.clone();
    pipeline
        .start_label_follower(store.clone(), Duration::from_millis(100))
        .unwrap();
    // Another instance triages through the shared store; this instance never sees the request.
    store
        .triage(
            &alert.id,
            &mailsentry_store::Triage {
                status: "closed".into(),
                label: Some("false_positive".into()),
                note: None,
            },
            "analyst@other-instance",
        )
        .unwrap();
    wait_for(
        "the label to reach the detector",
        Duration::from_secs(30),
        || pipeline.metrics.labels_applied.load(Ordering::Relaxed) == 1,
    );
    rt.block_on(pipeline.shutdown()).unwrap();
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_port(port: u16) {
    wait_for("the port to open", Duration::from_secs(20), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
}

/// Kills a child process when dropped.
struct Reaped(std::process::Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Accepts TLS on `port` with `cert` and forwards the plaintext to `inner`.
fn tls_terminator(cert: &rcgen::CertifiedKey, port: u16, inner: u16) -> tokio::runtime::Runtime {
    let acceptor = tokio_rustls::TlsAcceptor::from(common::tls_server_config(cert));
    let rt = runtime();
    rt.spawn(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
            .await
            .unwrap();
        loop {
            let (tcp, _) = listener.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = tokio::net::TcpStream::connect(("127.0.0.1", inner)).await
                else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    rt
}

#[test]
fn records_travel_over_tls_and_weak_suites_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".into()]).unwrap();
    let (cert_pem, key_pem) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_pem, cert.cert.pem()).unwrap();
    std::fs::write(&key_pem, cert.key_pair.serialize_pem()).unwrap();
    let tls = vec![
        ("security.protocol".to_owned(), "SSL".to_owned()),
        ("ssl.ca.location".to_owned(), cert_pem.display().to_string()),
    ];

    // A broker reached over TLS only: tansu (whose own TLS listener does not work in 0.6)
    // behind a rustls terminator that holds the certificate; tansu advertises the terminator's
    // address, so every connection the client makes is TLS.
    let (inner, port) = (free_port(), free_port());
    let _broker = Reaped(
        std::process::Command::new("tansu")
            .args(["broker", "--storage-engine", "memory://tansu/"])
            .args(["--listener-url", &format!("tcp://127.0.0.1:{inner}")])
            .args([
                "--advertised-listener-url",
                &format!("tcp://localhost:{port}"),
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("tansu on PATH (.ci/services installs it)"),
    );
    wait_port(inner);
    let _terminator = tls_terminator(&cert, port, inner);
    wait_port(port);
    let brokers = format!("localhost:{port}");
    let topic = unique("tls");
    ensure_topic(&brokers, &topic, 1, &tls).unwrap();
    let published = publish(&brokers, &topic, &demo_json()[2..], &tls).unwrap();
    assert!(
        published.records > 0 && published.failed == 0,
        "{published:?}"
    );
    let store: Arc<dyn AlertStore> = Arc::new(Store::open(&dir.path().join("t.db")).unwrap());
    let rt = runtime();
    let pipeline = rt.block_on(async {
        Pipeline::start(DetectConfig::default(), enrichment(), store.clone(), 16).unwrap()
    });
    let mut config = KafkaConfig::new(&brokers, &topic, &unique("tls-group"));
    config.properties = tls.clone();
    let source = KafkaSource::start(config, pipeline.clone()).unwrap();
    let stats = source.stats.clone();
    wait_for("the records over TLS", Duration::from_secs(60), || {
        stats.messages.load(Ordering::Relaxed) >= published.records
    });
    source.stop();
    rt.block_on(pipeline.shutdown()).unwrap();
    assert_eq!(stats.rejected.load(Ordering::Relaxed), 0);

    // A server offering only TLS 1.2 with RSA key exchange (no forward secrecy): the client
    // must refuse to negotiate it.
    let port = free_port();
    let mut weak = std::process::Command::new("openssl")
        .args(["s_server", "-tls1_2", "-cipher", "AES128-GCM-SHA256"])
        .args(["-accept", &port.to_string()])
        .arg("-cert")
        .arg(&cert_pem)
        .arg("-key")
        .arg(&key_pem)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("openssl on PATH");
    wait_port(port);
    let client: BaseConsumer =
        mailsentry_pipeline::kafka_source::client_config(&format!("localhost:{port}"), &tls)
            .set("group.id", "weak")
            .create()
            .unwrap();
    let answer = client.fetch_metadata(None, Duration::from_secs(5));
    assert!(answer.is_err(), "metadata from a non-forward-secret server");
    drop(client);
    let _ = weak.kill();
    let out = weak.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("no shared cipher"), "{said}");
}
